"""The report's examples: what the model actually wrote, next to the rates.

A few chains of the latest iteration that has scores: one whose reward rose in a refinement
(wrong → right), one whose reward fell (right → wrong), and one selected pair, each with its
prompt, every round and its reward. Texts are shortened to one readable table cell.
"""

from __future__ import annotations

from typing import Any

from aries.pipeline.report_section import NOT_AVAILABLE, Section
from aries.pipeline.rundir import RunDir

SHOWN_CHARS = 400
"""Longer texts are cut to this many characters (the full text is in the run's files)."""


def _cell(text: str) -> str:
    """One line of at most SHOWN_CHARS characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _reward(score: Any) -> str:
    return "-" if score is None else f"{score:.3g}"


def _chain_rows(chain: dict[str, Any], scores: list[Any]) -> list[list[str]]:
    rows = [["prompt", _cell(chain.get("prompt", "")), ""]]
    for k, response in enumerate(chain["chain"]):
        score = scores[k] if k < len(scores) else None
        rows.append([f"round {k}", _cell(response["text"]), _reward(score)])
    return rows


def _first_change(chains, scores, rising: bool) -> dict[str, Any] | None:
    """The first chain whose reward rises (falls) from one round to the next."""
    for chain in chains:
        s = scores.get(chain["id"], [])
        steps = zip(s, s[1:])
        if any(a is not None and b is not None and (b > a if rising else b < a) for a, b in steps):
            return chain
    return None


def chains_sections(run: RunDir, its: list[int]) -> list[Section]:
    """Example chains and a kept pair of the last iteration with chains and scores, one section
    each (its caption above its table)."""
    scored = [t for t in its if run.chains(t).is_file() and run.scores(t).is_file()]
    if not scored:
        text = f"Example chains: {NOT_AVAILABLE} (no scored chains file)."
        return [Section("Example chains", text=[text])]
    t = scored[-1]
    chains = run.read_chains(t)
    scores = {r["id"]: r.get("chain_scores", []) for r in run.read_scores(t)}
    header = ["", "text", "reward"]
    sections = []
    for rising, change in ((True, "wrong → right"), (False, "right → wrong")):
        section = Section(f"Example chain: {change}")
        chain = _first_change(chains, scores, rising)
        if chain is None:
            section.text.append(
                f"Iteration {t}: no chain whose reward {'rose' if rising else 'fell'}."
            )
        else:
            section.text.append(
                f"Iteration {t}, `{chain['id']}`: the reward {'rose' if rising else 'fell'} "
                "in a refinement."
            )
            section.tables.append((header, _chain_rows(chain, scores[chain["id"]])))
        sections.append(section)
    pairs = run.read_selections(t) if run.selections(t).is_file() else []
    if pairs:
        pair = pairs[0]
        text = (
            f"Iteration {t}, `{pair['id']}`: chosen from {pair.get('chosen_from')}, "
            f"rejected from {pair.get('rejected_from')}."
        )
        rows = [
            ["prompt", _cell(pair["prompt"]), ""],
            ["chosen", _cell(pair["chosen"]), _reward(pair.get("chosen_score"))],
            ["rejected", _cell(pair["rejected"]), _reward(pair.get("rejected_score"))],
        ]
        sections.append(Section("Example kept pair", text=[text], tables=[(header, rows)]))
    return sections
