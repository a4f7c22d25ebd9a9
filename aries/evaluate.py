"""Evaluation in the self-refinement setting: a metric for the answer and every refinement round.

The model answers each held-out prompt and refines it K rounds through `aries.collect.run_chains`
(the same code as collection, so evaluation sees exactly what training produced). Then every
round is scored:

- checkable benchmarks (reasoning-gym tasks, GSM8K, MATH, any file with gold answers): a verifier
  gives each response a score, full credit (>= 1.0) counts as correct; metric `accuracy`;
- open-ended benchmarks (MT-Bench, any prompts with reference answers, or a fixed baseline's
  answers): a judge compares each response with the reference; metric `win_rate` (ties count
  half) plus the length-controlled win rate (`aries.metrics.length_controlled_win_rate`).

Every metric gets a seeded bootstrap 95 % interval, the mean response length per round and the
wrong→right / right→wrong counts between consecutive rounds (for win rates, "right" means the
response beat the reference).

`eval.json` schema (`"schema": "aries.eval/1"`):

    benchmark, model, metric ("accuracy" | "win_rate"), scorer (verifier or judge name),
    rounds (K), n_prompts (evaluated), skipped {"too_long", "no_reference", "unscored"},
    sampling {max_new_tokens, temperature, top_p, seed}, instruction, seconds, created,
    chains_path (relative to eval.json: the chains, one record per prompt),
    judgements_path (LLM judges only: every judge call with its raw output, one per line),
    judge {calls, unparsed, order_checks, order_agreements}  (LLM judges only: pairs judged
        in both orders and those whose two verdicts agree; low agreement = position bias),
    per_round: [{
        round, n, metric, ci95 [low, high], mean_tokens, mean_chars, truncated,
        correct                                   (accuracy only)
        wins, ties, losses, lc_win_rate, lc_ci95  (win_rate only)
        transitions {wrong_to_right, right_to_wrong, right_to_right, wrong_to_wrong}
                                                  (versus the previous round; absent for round 0)
    }],
    first_to_last: transitions from round 0 to round K,
    per_prompt: [{id, scores: [one per round]}]  (verifier scores or 1/0.5/0 outcomes)

A prompt whose response could not be scored in some round (a judge that gave no verdict) is left
out of every round, so all rounds are compared on the same prompts; the count is in `skipped`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aries import AriesError, metrics
from aries.backends import Backend, Sampling
from aries.jsonl import atomic_write_json, atomic_write_jsonl, read_jsonl
from aries.rewards.judge import Judge as LLMJudge
from aries.views import DEFAULT_REFINE_INSTRUCTION

SCHEMA = "aries.eval/1"
GSM8K_SUFFIX = "\nEnd your response with 'Answer: <number>'."
MATH_SUFFIX = "\nPut your final answer within \\boxed{}."


@dataclass
class Comparison:
    """One judged pair: is `response` better than `reference` for `prompt`?"""

    prompt: str
    response: str
    reference: str
    record: dict[str, Any]


class Verifier(Protocol):
    """Scores responses against the record's gold answer (a reward source of `aries.rewards`)."""

    name: str

    def score(self, items: list[Any]) -> list[float | None]: ...


class Judge(Protocol):
    """Pairwise verdicts: 1 response better, 0.5 tie, 0 reference better, None no verdict."""

    name: str

    def compare(self, items: list[Comparison]) -> list[float | None]: ...

    llm_judge: LLMJudge | None
    """The LLM judge behind the verdicts, for its raw outputs and counters (None: reward model)."""


def _verdict(share: float | None, tie_margin: float) -> float | None:
    """1 win, 0.5 tie, 0 loss from the response's share (reward difference or win share)."""
    if share is None:
        return None
    if abs(share) <= tie_margin:
        return 0.5
    return 1.0 if share > 0 else 0.0


class RewardJudge:
    """A pointwise reward source used as a pairwise judge: the higher reward wins.

    Rewards closer than `tie_margin` count as a tie. Reference rewards are computed once per
    prompt and reused for every round.
    """

    def __init__(self, source: Verifier, tie_margin: float = 0.0):
        self.source = source
        self.name = source.name
        self.tie_margin = tie_margin
        self.llm_judge = source if isinstance(source, LLMJudge) else None
        self._reference_scores: dict[tuple[str, str], float | None] = {}

    def compare(self, items: list[Comparison]) -> list[float | None]:
        from aries.rewards import ScoreItem

        missing = list({(c.prompt, c.reference) for c in items} - set(self._reference_scores))
        scores = self.source.score(
            [ScoreItem(prompt, reference, None, {}) for prompt, reference in missing]
        )
        self._reference_scores.update(zip(missing, scores, strict=True))
        responses = self.source.score(
            [ScoreItem(c.prompt, c.response, c.reference, c.record) for c in items]
        )
        verdicts: list[float | None] = []
        for item, reward in zip(items, responses, strict=True):
            reference = self._reference_scores[(item.prompt, item.reference)]
            margin = None if reward is None or reference is None else reward - reference
            verdicts.append(_verdict(margin, self.tie_margin))
        return verdicts


class PairwiseJudge:
    """An LLM judge's pairwise mode (`aries.rewards.judge`, both orders) used on (response,
    reference) pairs: each comparison is its own group of two, so the judge sees only that pair.

    The judge's score for the response is its share of the two verdicts; above one half is a
    win, below a loss, exactly one half (split or tied verdicts) a tie, as in MT-Bench's
    two-order pairwise grading (Zheng et al. 2023, arXiv 2306.05685). Shares within
    `tie_margin` of one half also tie: a `logprob` judge gives probabilities, never exactly 1/2.
    """

    def __init__(self, source: Verifier, tie_margin: float = 0.0):
        self.source = source
        self.name = source.name
        self.tie_margin = tie_margin
        self.llm_judge = source if isinstance(source, LLMJudge) else None

    def compare(self, items: list[Comparison]) -> list[float | None]:
        from aries.rewards import ScoreItem

        scored = []
        for index, item in enumerate(items):
            group = {"id": f"comparison-{index}"}
            scored += [
                ScoreItem(item.prompt, item.response, None, group),
                ScoreItem(item.prompt, item.reference, None, group),
            ]
        shares = self.source.score(scored)[::2]
        return [_verdict(None if s is None else s - 0.5, self.tie_margin) for s in shares]


# ---------------------------------------------------------------------------------------------
# Benchmarks


def gsm8k_gold(solution: str) -> str:
    """GSM8K's gold answer is the number after `####` (thousands separators removed)."""
    if "####" not in solution:
        raise AriesError(f"GSM8K answer without '#### <number>': {solution[:80]!r}")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def last_boxed(solution: str) -> str:
    """The content of the last `\\boxed{...}` in a MATH solution (braces balanced)."""
    start = solution.rfind("\\boxed{")
    if start < 0:
        raise AriesError(f"MATH solution without \\boxed{{}}: {solution[:80]!r}")
    depth, begin = 0, start + len("\\boxed{")
    for position in range(begin - 1, len(solution)):
        depth += {"{": 1, "}": -1}.get(solution[position], 0)
        if depth == 0:
            return solution[begin:position]
    raise AriesError(f"MATH solution with an unbalanced \\boxed{{: {solution[:80]!r}")


def _public_format(kind: str, location: str, size: int | None) -> list[dict[str, Any]]:
    """GSM8K (`question`, `answer` '... #### 42') or MATH (`problem`, `solution` with \\boxed{})
    from a local file or a hub id (test split), with the gold answer extracted."""
    from aries.sources import PromptSource, load_prompts

    prompt_field, answer_field, suffix, gold = {
        "gsm8k": ("question", "answer", GSM8K_SUFFIX, gsm8k_gold),
        "math": ("problem", "solution", MATH_SUFFIX, last_boxed),
    }[kind]
    source = PromptSource(
        name=location,
        size=size,
        suffix=suffix,
        split="test",
        fields={"prompt": prompt_field, "answer": answer_field},
    )
    records = load_prompts(source)
    for record in records:
        if "answer" not in record:
            raise AriesError(f"{location}: record {record['id']} has no {answer_field!r}")
        record["metadata"] = {**record.get("metadata", {}), "solution": record["answer"]}
        record["answer"] = gold(record["answer"])
        record["source"] = f"{kind}:{location}"
    return records


def load_benchmark(spec: str, *, size: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Prompt records of a benchmark spec.

    - a reasoning-gym task name (`gsm_symbolic`) is shorthand for `reasoning-gym:gsm_symbolic`;
    - `gsm8k:<file or hub id>` and `math:<file or hub id>` read the public formats;
    - anything else is an `aries.sources` spec (`reasoning-gym:<task>?...`, `mt-bench`, a file).
    `size` and `seed` apply unless the spec sets them itself.
    """
    kind, _, location = spec.partition(":")
    if location and kind in ("gsm8k", "math"):
        return _public_format(kind, location, size)
    if ":" not in spec and "?" not in spec and _is_reasoning_gym_task(spec):
        spec = f"reasoning-gym:{spec}"
    from aries.sources import PromptSource, load_prompts

    source = PromptSource.parse(spec)
    if "size=" not in spec:
        source.size = size or source.size
    if "seed=" not in spec:
        source.seed = seed
    return load_prompts(source)


def _is_reasoning_gym_task(name: str) -> bool:
    from reasoning_gym.factory import DATASETS

    return name in DATASETS


def check_held_out(eval_prompts: Sequence[dict], train_prompts: Sequence[dict]) -> None:
    """Refuse an evaluation whose prompts were trained on (same text up to whitespace)."""
    seen = {" ".join(p["prompt"].split()) for p in train_prompts}
    leaked = [p["id"] for p in eval_prompts if " ".join(p["prompt"].split()) in seen]
    if leaked:
        raise AriesError(
            f"{len(leaked)} evaluation prompts also appear in the training prompts "
            f"(e.g. {leaked[0]!r}): held-out prompts must be disjoint from training prompts"
        )


def load_baseline(path: str | Path, round_index: int = 0) -> dict[str, str]:
    """A fixed baseline's answers by prompt id, from its chains file (default: the direct one)."""
    return {r["id"]: r["chain"][round_index]["text"] for r in read_jsonl(path)}


# ---------------------------------------------------------------------------------------------
# Scoring


def _verify(records: list[dict], verifier: Verifier) -> list[list[float | None]]:
    from aries.rewards import ScoreItem

    items = [
        ScoreItem(r["prompt"], step["text"], r.get("answer"), r)
        for r in records
        for step in r["chain"]
    ]
    return _regroup(records, verifier.score(items))


def _judge(
    records: list[dict], judge: Judge, references: dict[str, str]
) -> list[list[float | None]]:
    items = [
        Comparison(r["prompt"], step["text"], references[r["id"]], r)
        for r in records
        for step in r["chain"]
    ]
    return _regroup(records, judge.compare(items))


def _judge_counters(llm: LLMJudge) -> dict[str, int]:
    return {
        "calls": llm.judged,
        "unparsed": llm.unparsed,
        "order_checks": llm.order_checks,
        "order_agreements": llm.order_agreements,
    }


def _regroup(records: list[dict], flat: list[float | None]) -> list[list[float | None]]:
    """Flat per-response scores back into one list per prompt (one score per round)."""
    rounds = len(records[0]["chain"]) if records else 0
    return [flat[i * rounds : (i + 1) * rounds] for i in range(len(records))]


def summarize(
    records: list[dict],
    scores: list[list[float]],
    *,
    metric: str,
    references: dict[str, str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per-round statistics from per-prompt, per-round scores (see the module docstring)."""
    table = np.asarray(scores, dtype=float).reshape(len(records), -1)
    per_round = []
    for k in range(table.shape[1]):
        steps = [r["chain"][k] for r in records]
        chars = [len(s["text"]) for s in steps]
        row: dict[str, Any] = {
            "round": k,
            "n": len(records),
            "mean_tokens": metrics.mean_length([s["completion_tokens"] for s in steps]),
            "mean_chars": metrics.mean_length(chars),
            "truncated": sum(s["finish_reason"] == "length" for s in steps),
        }
        column = table[:, k]
        if metric == "accuracy":
            correct = column >= 1.0
            row["metric"] = metrics.accuracy(correct)
            row["correct"] = int(correct.sum())
            row["ci95"] = metrics.bootstrap_ci(correct, n_resamples=n_resamples, seed=seed)
        else:
            counts = metrics.win_rate(column)
            diffs = [c - len(references[r["id"]]) for c, r in zip(chars, records, strict=True)]
            rows = np.column_stack([column, diffs])
            row["metric"] = counts.pop("win_rate")
            row.update(wins=counts["wins"], ties=counts["ties"], losses=counts["losses"])
            row["ci95"] = metrics.bootstrap_ci(column, n_resamples=n_resamples, seed=seed)
            row["lc_win_rate"] = metrics.length_controlled_win_rate(column, diffs)
            row["lc_ci95"] = metrics.bootstrap_ci(
                rows, metrics.lc_statistic, n_resamples=n_resamples, seed=seed
            )
        if k > 0:
            row["transitions"] = metrics.transitions(table[:, k - 1] >= 1.0, column >= 1.0)
        per_round.append(row)
    return per_round


# ---------------------------------------------------------------------------------------------
# The evaluation


def evaluate(
    backend: Backend,
    prompts: list[dict[str, Any]],
    *,
    rounds: int,
    sampling: Sampling,
    out_path: str | Path,
    verifier: Verifier | None = None,
    judge: Judge | None = None,
    baseline: dict[str, str] | None = None,
    instruction: str = DEFAULT_REFINE_INSTRUCTION,
    benchmark: str = "",
    model: str = "",
    n_resamples: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate answer + `rounds` refinements for `prompts`, score every round, write eval.json.

    Give a `verifier` (accuracy against each prompt's `answer`) or a `judge` (win rate against
    `baseline[id]` when given, else against the prompt's `answer` as reference). The chains go to
    `<out_path stem>.chains.jsonl` beside `out_path`; rerunning resumes their generation.
    Returns the eval.json content.
    """
    from aries.collect import run_chains, split_by_context

    if (verifier is None) == (judge is None):
        raise AriesError(
            "evaluation needs exactly one of a verifier (accuracy) or a judge (win rate)"
        )
    started = time.time()
    out_path = Path(out_path)
    metric = "accuracy" if verifier else "win_rate"
    skipped = {"too_long": 0, "no_reference": 0, "unscored": 0}
    if metric == "accuracy":
        kept = [p for p in prompts if p.get("answer") is not None]
    else:
        references = baseline or {p["id"]: p["answer"] for p in prompts if p.get("answer")}
        kept = [p for p in prompts if p["id"] in references]
    skipped["no_reference"] = len(prompts) - len(kept)
    kept, too_long = split_by_context(
        backend,
        kept,
        rounds=rounds,
        max_new_tokens=sampling.max_new_tokens,
        instruction=instruction,
    )
    skipped["too_long"] = len(too_long)
    if not kept:
        raise AriesError(f"no prompt to evaluate ({skipped})")

    chains_path = out_path.with_name(out_path.stem + ".chains.jsonl")
    records = run_chains(
        backend,
        kept,
        rounds=rounds,
        sampling=sampling,
        instruction=instruction,
        out_path=chains_path,
        progress=progress,
    )
    if any(len(r["chain"]) != rounds + 1 for r in records):
        raise AriesError(
            f"{chains_path} holds chains of another length than {rounds + 1} (an earlier "
            "evaluation with other settings): delete it or choose another output path"
        )
    judgements_path, judge_counts = None, None
    if metric == "accuracy":
        scores = _verify(records, verifier)
    else:
        llm = judge.llm_judge
        if llm is not None:  # the judge may have judged before: report this evaluation only
            first_call, before = len(llm.transcripts), _judge_counters(llm)
        scores = _judge(records, judge, references)
        if llm is not None:  # raw outputs are kept even when nothing parsed, to see why
            judgements_path = out_path.with_name(out_path.stem + ".judgements.jsonl")
            atomic_write_jsonl(judgements_path, llm.transcripts[first_call:])
            judge_counts = {k: v - before[k] for k, v in _judge_counters(llm).items()}
    scored = [(r, s) for r, s in zip(records, scores, strict=True) if None not in s]
    skipped["unscored"] = len(records) - len(scored)
    if not scored:
        raise AriesError(
            f"{(verifier or judge).name} scored no prompt in every round "
            f"({len(records)} prompts had a response without a score or verdict"
            + (f"; the judge's outputs are in {judgements_path})" if judgements_path else ")")
        )
    records, scores = [r for r, _ in scored], [s for _, s in scored]

    per_round = summarize(
        records,
        scores,
        metric=metric,
        references=None if metric == "accuracy" else references,
        n_resamples=n_resamples,
        seed=seed,
    )
    table = np.asarray(scores) >= 1.0
    result = {
        "schema": SCHEMA,
        "benchmark": benchmark,
        "model": model,
        "metric": metric,
        "scorer": (verifier or judge).name,
        "rounds": rounds,
        "n_prompts": len(records),
        "skipped": skipped,
        "sampling": asdict(sampling),
        "instruction": instruction,
        "seconds": round(time.time() - started, 1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "chains_path": chains_path.name,
        **(
            {"judgements_path": judgements_path.name, "judge": judge_counts} if judge_counts else {}
        ),
        "per_round": per_round,
        "first_to_last": metrics.transitions(table[:, 0], table[:, -1]),
        "per_prompt": [{"id": r["id"], "scores": s} for r, s in zip(records, scores, strict=True)],
    }
    atomic_write_json(out_path, result)
    return result


def evaluate_model(model: str, prompts: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """`evaluate` a model spec (`embedded`, a folder, a hub id) loaded with the `hf` backend,
    released afterwards so the next stage gets the memory back."""
    from aries.backends import make_backend

    backend = make_backend("hf", model)
    try:
        return evaluate(backend, prompts, model=model, **options)
    finally:
        backend.close()


def format_table(result: dict[str, Any]) -> str:
    """Plain aligned text: one row per round, metric with its interval, lengths, transitions."""
    win = result["metric"] == "win_rate"
    header = ["round", result["metric"], "95% CI"]
    header += ["LC win rate", "W/T/L"] if win else ["correct"]
    header += ["tokens", "chars", "trunc", "wrong→right", "right→wrong"]
    rows = [header]
    for r in result["per_round"]:
        low, high = r["ci95"]
        row = [str(r["round"]), f"{100 * r['metric']:.1f}%", f"[{100 * low:.1f}, {100 * high:.1f}]"]
        if win:
            row += [f"{100 * r['lc_win_rate']:.1f}%", f"{r['wins']}/{r['ties']}/{r['losses']}"]
        else:
            row += [f"{r['correct']}/{r['n']}"]
        moves = r.get("transitions")
        row += [
            f"{r['mean_tokens']:.0f}",
            f"{r['mean_chars']:.0f}",
            str(r["truncated"]),
            str(moves["wrong_to_right"]) if moves else "-",
            str(moves["right_to_wrong"]) if moves else "-",
        ]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    title = (
        f"{result['benchmark']}  model={result['model']}  scorer={result['scorer']}  "
        f"n={result['n_prompts']}  skipped={result['skipped']}"
    )
    counts = result.get("judge")
    if counts and counts["order_checks"]:
        agree = counts["order_agreements"] / counts["order_checks"]
        line = (
            f"judge: {counts['calls']} calls, {counts['unparsed']} unparsed; both orders agree on "
            f"{counts['order_agreements']} of {counts['order_checks']} comparisons "
            f"({100 * agree:.0f}%)"
        )
        if agree < 0.5:  # a coin-flipping judge agrees with itself half the time
            line += "; worse than chance: position bias decides, the win rates say little"
        lines.append(line)
    return "\n".join([title, *lines])
