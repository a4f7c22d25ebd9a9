"""From selected `(x, y_w, y_l)` to training examples for both views (docs/specification.md,
stage 3).

    direct view:  x               -> chosen y_w, rejected y_l
    refine view:  (x, y_l, z)     -> chosen y_w, rejected y_l   (y_l "repeated unchanged")

The refine example teaches that, given the bad answer, rewriting it into the good one beats
repeating it. Both views go into one dataset in TRL's conversational preference format
(`prompt` / `chosen` / `rejected` message lists); the refine prompt is simply longer. An
off-the-shelf DPO trainer on this mixture optimises `w_direct * L_direct + w_refine * L_refine`,
with the weights realised as mixing proportions: the view with the larger weight keeps every
example, the other a seeded random subset of size `round(n * w_other / w_max)`.

An optional third view [design, not in the paper], `keep`: `(x, y_w, z) -> y_w ≻ y_l`, asks the
refiner to keep an answer that is already the better one instead of rewriting it into the
worse; weight `w_keep` (default 0, pure ARIES).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aries import AriesError
from aries.core.config import FieldError, Options, Range
from aries.core.docs import page
from aries.core.views import DEFAULT_REFINE_INSTRUCTION, direct_messages, refine_messages

VIEWS = ("direct", "refine")
"""The views of docs/specification.md; `keep` is the optional design extension."""


@dataclass
class PairsConfig(Options):
    """The view mixture of the pair dataset (`pairs:` in a run config)."""

    section = "pairs"

    w_direct: float = field(
        default=1.0,
        metadata={
            "range": Range(ge=0),
            "help": "Weight of the direct view x -> y_w/y_l (ARIES, arXiv 2502.05605).",
        },
    )
    w_refine: float = field(
        default=1.0,
        metadata={
            "range": Range(ge=0),
            "help": "Weight of the refine view (x, y_l, z) -> y_w/y_l (ARIES, arXiv 2502.05605); "
            "weights are realised as mixing proportions of the pair dataset.",
        },
    )
    w_keep: float = field(
        default=0.0,
        metadata={
            "range": Range(ge=0),
            "help": "Weight of the optional keep view (x, y_w, z) -> y_w/y_l [design, not in "
            "ARIES]: refinement keeps an answer that is already right. 0 = pure ARIES.",
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.w_direct + self.w_refine == 0:
            raise FieldError(self.section, "w_refine", ": w_direct and w_refine cannot both be 0")


def build_pairs(
    selections: list[dict[str, Any]],
    *,
    instruction: str,
    w_direct: float = 1.0,
    w_refine: float = 1.0,
    w_keep: float = 0.0,
    seed: int = 0,
    system_prompt: str | None = None,
) -> list[dict[str, Any]]:
    """Preference examples (conversational) for both views, mixed by the view weights; every
    prompt opens with `system_prompt` when given (as in collection and evaluation)."""
    weights = {"direct": w_direct, "refine": w_refine, "keep": w_keep}
    if min(weights.values()) < 0 or w_direct + w_refine == 0:
        raise AriesError(
            "view weights must be >= 0 and w_direct, w_refine not both 0 "
            f"({page('concepts', 'the-two-views')})"
        )
    top = max(weights.values())
    by_view: dict[str, list[dict[str, Any]]] = {view: [] for view in weights}
    for selection in selections:  # a record with a `view` (on-policy steps) gives that view only
        for view in [selection["view"]] if "view" in selection else weights:
            by_view[view].append(selection)
    rng = random.Random(seed)
    examples = []
    for view, weight in weights.items():
        pool = by_view[view]
        chosen_ids = set(rng.sample(range(len(pool)), round(len(pool) * weight / top)))
        examples += [
            preference_example(selection, view, instruction, system_prompt)
            for index, selection in enumerate(pool)
            if index in chosen_ids
        ]
    return examples


def preference_example(
    selection: dict[str, Any], view: str, instruction: str, system_prompt: str | None = None
) -> dict[str, Any]:
    """One conversational preference example of `view` from a selection record."""
    if view == "direct":
        prompt = direct_messages(selection["prompt"], system_prompt=system_prompt)
    else:
        previous = (
            selection.get("previous") or selection["chosen" if view == "keep" else "rejected"]
        )
        prompt = refine_messages(
            selection["prompt"], previous, instruction, system_prompt=system_prompt
        )
    return {
        "id": f"{selection['id']}:{view}",
        "view": view,
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": selection["chosen"]}],
        "rejected": [{"role": "assistant", "content": selection["rejected"]}],
        # SPPO's win-rate estimates (aries/method/winrates.py), when selection wrote them
        **{
            key: selection[key]
            for key in ("chosen_win_rate", "rejected_win_rate")
            if key in selection
        },
    }


def sft_examples(
    selections: list[dict[str, Any]], *, instruction: str, system_prompt: str | None = None
) -> list[dict[str, Any]]:
    """docs/specification.md stage 0 (Eq. 4): `x -> y_w` and `(x, y_l, z) -> y_w` per row, in TRL's
    conversational prompt-completion format."""
    examples = []
    for selection in selections:
        for view in [selection["view"]] if "view" in selection else VIEWS:
            pair = preference_example(selection, view, instruction, system_prompt)
            examples.append(
                {
                    "id": pair["id"],
                    "view": view,
                    "prompt": pair["prompt"],
                    "completion": pair["chosen"],
                }
            )
    return examples


def sft_dataset(path: str, out_dir, instruction: str, system_prompt: str | None = None) -> int:
    """Write the both-view SFT examples of Eq. 4 (docs/specification.md) from a
    prompt/chosen/rejected file."""
    from aries.method.sources import PromptSource, load_prompts

    rows = load_prompts(PromptSource(name=path))
    selections = [{"id": r["id"], "prompt": r["prompt"], **_chosen_rejected(r, path)} for r in rows]
    examples = sft_examples(selections, instruction=instruction, system_prompt=system_prompt)
    save_dataset(examples, out_dir)
    return len(examples)


def _chosen_rejected(row: dict[str, Any], where: str) -> dict[str, str]:
    """The chosen / rejected texts of a preference-data row (kept in its metadata by sources)."""
    fields = row.get("metadata", {})
    missing = [k for k in ("chosen", "rejected") if not isinstance(fields.get(k), str)]
    if missing:
        raise AriesError(f"{where}: record {row['id']!r} has no text field {' / '.join(missing)}")
    return {k: fields[k] for k in ("chosen", "rejected")}


def save_dataset(examples: list[dict[str, Any]], folder) -> None:
    """Write conversational examples as a `datasets` folder, atomically (temporary folder, then
    rename); `aries.core.views.for_tokenizer` turns them into plain text for models without a
    chat template."""
    import shutil

    import datasets

    from aries.core.jsonl import replace_folder, writing

    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # what a killed save left
    with writing(folder, "the preference pairs", partial=tmp):
        datasets.Dataset.from_list(examples).save_to_disk(str(tmp))
        replace_folder(tmp, folder)


def tiny_pairs(folder: str | Path) -> Path:
    """Eight preference examples (four prompts, direct and refine views) saved as a `datasets`
    folder: enough for a few training steps on the tiny model (the tests')."""
    selections = [
        {"id": str(i), "prompt": f"What is {i} + 1?", "chosen": f"{i + 1}", "rejected": "no idea"}
        for i in range(4)
    ]
    save_dataset(build_pairs(selections, instruction=DEFAULT_REFINE_INSTRUCTION), folder)
    return Path(folder)
