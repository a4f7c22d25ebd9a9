"""Evaluation in the self-refinement setting: a metric for the answer and every refinement round.

The model answers each held-out prompt and refines it K rounds through
`aries.method.collect.run_chains`
(the same code as collection, so evaluation sees exactly what training produced). Then every
round is scored:

- checkable benchmarks (reasoning-gym tasks, GSM8K, MATH, any file with gold answers): a verifier
  gives each response a score, full credit (>= 1.0) counts as correct; metric `accuracy`;
- open-ended benchmarks (MT-Bench, any prompts with reference answers, or a fixed baseline's
  answers): a judge compares each response with the reference; metric `win_rate` (ties count
  half) plus the length-controlled win rate (`aries.evaluation.metrics.length_controlled_win_rate`).

Every metric gets a seeded bootstrap 95 % interval, the mean response length per round and the
wrong→right / right→wrong counts between consecutive rounds (for win rates, "right" means the
response beat the reference).

`eval.json` schema (`"schema": "aries.eval/1"`):

    benchmark, model, metric ("accuracy" | "win_rate"), scorer (verifier or judge name),
    rounds (K), n_prompts (evaluated), skipped {"too_long", "no_reference", "unscored"},
    sampling {max_new_tokens, temperature, top_p, seed}, instruction, system_prompt (or null),
    seconds, created,
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
        rewrites {of_right, of_wrong}             (previous round's right / wrong answers whose
                                                  text this round changed, `metrics.rewrites`)
    }],
    first_to_last: transitions from round 0 to round K,
    per_prompt: [{id, scores: [one per round], vote_round}]  (verifier scores or 1/0.5/0
        outcomes; vote_round: the round `aries.method.vote` picks),
    vote: a per_round-like row for the vote's picks, "round": "vote" (accuracy only)

A prompt whose response could not be scored in some round (a judge that gave no verdict) is left
out of every round, so all rounds are compared on the same prompts; the count is in `skipped`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from aries import AriesError
from aries.backends import Backend, Sampling
from aries.core.jsonl import atomic_write_json, atomic_write_jsonl
from aries.core.views import DEFAULT_REFINE_INSTRUCTION
from aries.evaluation import metrics
from aries.method.sources import prompt_key
from aries.method.strategies import normalised
from aries.method.vote import vote_round
from aries.rewards import RewardSource, ScoreItem
from aries.rewards.judge import Judge
from aries.rewards.pairwise import Comparison, PairJudge

SCHEMA = "aries.eval/1"


def check_held_out(eval_prompts: Sequence[dict], train_prompts: Sequence[dict]) -> None:
    """Refuse an evaluation whose prompts were trained on (same text up to whitespace)."""
    seen = {prompt_key(p) for p in train_prompts}
    leaked = [p["id"] for p in eval_prompts if prompt_key(p) in seen]
    if leaked:
        raise AriesError(
            f"{len(leaked)} evaluation prompts also appear in the training prompts "
            f"(e.g. {leaked[0]!r}): held-out prompts must be disjoint from training prompts"
        )


# ---------------------------------------------------------------------------------------------
# Scoring


def _verify(records: list[dict], verifier: RewardSource) -> list[list[float | None]]:
    items = [
        ScoreItem(r["prompt"], step["text"], r.get("answer"), r)
        for r in records
        for step in r["chain"]
    ]
    return _regroup(records, verifier.score(items))


def _judge(
    records: list[dict], judge: PairJudge, references: dict[str, str]
) -> list[list[float | None]]:
    items = [
        Comparison(r["prompt"], step["text"], references[r["id"]], r)
        for r in records
        for step in r["chain"]
    ]
    return _regroup(records, judge.compare(items))


def _judge_counters(llm: Judge) -> dict[str, int]:
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
            rewritten = [
                normalised(s["text"]) != normalised(r["chain"][k - 1]["text"])
                for s, r in zip(steps, records, strict=True)
            ]
            row["rewrites"] = metrics.rewrites(table[:, k - 1] >= 1.0, rewritten)
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
    verifier: RewardSource | None = None,
    judge: PairJudge | None = None,
    baseline: dict[str, str] | None = None,
    instruction: str = DEFAULT_REFINE_INSTRUCTION,
    system_prompt: str | None = None,
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
    from aries.method.collect import Chains, run_chains, split_by_context

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
    settings = Chains(rounds, sampling, instruction, system_prompt)
    kept, too_long = split_by_context(backend, kept, settings)
    skipped["too_long"] = len(too_long)
    if not kept:
        raise AriesError(f"no prompt to evaluate ({skipped})")

    chains_path = out_path.with_name(out_path.stem + ".chains.jsonl")
    records = run_chains(backend, kept, settings, out_path=chains_path, progress=progress)
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
    votes = [vote_round([step["text"] for step in r["chain"]]) for r in records]
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
        "system_prompt": system_prompt,
        "seconds": round(time.time() - started, 1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "chains_path": chains_path.name,
        **(
            {"judgements_path": judgements_path.name, "judge": judge_counts} if judge_counts else {}
        ),
        "per_round": per_round,
        "first_to_last": metrics.transitions(table[:, 0], table[:, -1]),
        "per_prompt": [
            {"id": r["id"], "scores": s, "vote_round": v}
            for r, s, v in zip(records, scores, votes, strict=True)
        ],
    }
    if metric == "accuracy" and rounds > 0:
        result["vote"] = vote_row(records, scores, votes, n_resamples=n_resamples, seed=seed)
    atomic_write_json(out_path, result)
    return result


def vote_row(
    records: list[dict], scores: list[list[float]], votes: list[int], **options: Any
) -> dict[str, Any]:
    """The inference-time vote (`aries.method.vote`) as one more row: the response each chain's vote
    picks, summarised like a round. Reported beside the rounds, never in place of the last."""
    picked = [{**r, "chain": [r["chain"][v]]} for r, v in zip(records, votes, strict=True)]
    values = [[s[v]] for s, v in zip(scores, votes, strict=True)]
    row = summarize(picked, values, metric="accuracy", **options)[0]
    return {**row, "round": "vote"}
