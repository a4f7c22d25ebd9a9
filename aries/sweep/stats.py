"""The sweep's numbers: read finished run directories, pool seeds, pair models.

Every accuracy is a (training seeds × problems) table of 0/1 outcomes on one shared problem pool,
so differences between models are paired by problem and seed index; intervals come from the
two-way bootstrap of `seeds_problems_ci`. `summarize_task` returns the entries of a report's
JSON file (`results/efficacy.json`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aries import AriesError
from aries.pipeline.rundir import RunDir
from aries.sweep.spec import Spec, Task


def seeds_problems_ci(
    values: np.ndarray,
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of a (training seeds × problems) table.

    Each resample draws the seeds and the problems with replacement, independently (a two-way
    bootstrap), so the interval covers both sources of noise: which problems were drawn and how
    training went. Given paired differences (model A minus model B on the same problem and seed),
    it is the paired interval docs/efficacy-protocol.md asks for. One seed reduces it to
    `aries.evaluation.metrics.bootstrap_ci` (Efron 1979).
    """
    table = np.asarray(values, dtype=float)
    if table.ndim != 2 or table.size == 0:
        raise ValueError(f"expected a non-empty (seeds, problems) table, got shape {table.shape}")
    rng = np.random.default_rng(seed)
    n_seeds, n_problems = table.shape
    seeds = rng.integers(0, n_seeds, size=(n_resamples, n_seeds, 1))
    problems = rng.integers(0, n_problems, size=(n_resamples, 1, n_problems))
    estimates = table[seeds, problems].mean(axis=(1, 2))
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return (float(low), float(high))


STAGES = ("collect", "score", "select", "pairs", "train", "eval")


def correctness(result: dict[str, Any], ids: list[str]) -> np.ndarray:
    """(problems, rounds) booleans in the order of `ids`, from an eval.json."""
    by_id = {p["id"]: p["scores"] for p in result["per_prompt"]}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise AriesError(f"{result['model']}: {len(missing)} pool problems were not evaluated")
    return np.array([[s >= 1.0 for s in by_id[i]] for i in ids], dtype=float)


def vote_correctness(result: dict[str, Any], ids: list[str]) -> np.ndarray | None:
    """(problems,) correctness of the response the chain's vote picks (`aries.method.vote`),
    if known."""
    by_id = {p["id"]: p for p in result["per_prompt"]}
    if any("vote_round" not in by_id[i] for i in ids):
        return None
    return np.array([by_id[i]["scores"][by_id[i]["vote_round"]] >= 1.0 for i in ids], dtype=float)


def rewrite_rates(evals: list[dict[str, Any]], table: np.ndarray) -> list[dict] | None:
    """Per refinement round, pooled over seeds: the share of the previous round's right and wrong
    answers that the round rewrote, and the share of rewritten wrong answers it made right: does
    the refiner fail to find its mistakes or fail to fix them
    (`aries.evaluation.metrics.rewrites`; Tyen et
    al. 2024, arXiv 2311.08516)? None for evaluations made before eval.json counted rewrites."""
    rounds = []
    for k in range(1, table.shape[-1]):
        counts = [e["per_round"][k].get("rewrites") for e in evals]
        if any(c is None for c in counts):
            return None
        before, after = table[..., k - 1] == 1, table[..., k] == 1
        right, wrong = int(before.sum()), int((~before).sum())
        of_right = sum(c["of_right"] for c in counts)
        of_wrong = sum(c["of_wrong"] for c in counts)
        fixed = int((~before & after).sum())
        rounds.append(
            {
                "round": k,
                "rewrote_right": [of_right, right],
                "rewrote_wrong": [of_wrong, wrong],
                "fixed_of_rewritten_wrong": [fixed, of_wrong],
            }
        )
    return rounds


def interval(values: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Mean and 95 % interval in percentage points of a (seeds, problems) table."""
    low, high = seeds_problems_ci(values, seed=seed)
    return {
        "mean": round(100 * values.mean(), 2),
        "ci95": [round(100 * low, 2), round(100 * high, 2)],
    }


def stage_totals(manifests: list[dict], t: int) -> dict[str, Any]:
    """Mean seconds per stage and generated tokens of iteration t over the seeds."""
    seconds = {s: [] for s in STAGES}
    tokens, kept, pairs = [], [], []
    for manifest in manifests:
        stages = manifest["iterations"].get(str(t), {}).get("stages", {})
        for name in STAGES:
            if name in stages:
                seconds[name].append(stages[name].get("seconds", 0.0))
        tokens.append(stages.get("collect", {}).get("counts", {}).get("completion_tokens", 0))
        kept.append(stages.get("select", {}).get("counts", {}).get("kept", 0))
        pairs.append(stages.get("pairs", {}).get("counts", {}).get("pairs", 0))
    return {
        "seconds_per_stage": {k: round(float(np.mean(v)), 1) for k, v in seconds.items() if v},
        "generated_tokens": round(float(np.mean(tokens))),
        "prompts_kept": round(float(np.mean(kept)), 1),
        "pairs": round(float(np.mean(pairs)), 1),
    }


def summarize_task(
    spec: Spec, task: Task, pool: str, budget: float, seeds: list[int], chosen: list[str]
) -> dict[str, Any]:
    """Every number of one task and pool, from the run directories of `seeds` and `chosen`."""
    root = spec.output_dir / task.name / pool
    initial_eval = RunDir(root / "initial").read_eval(None)
    if initial_eval is None:
        raise AriesError(f"{root / 'initial'}: the initial model was not evaluated yet")
    ids = [p["id"] for p in initial_eval["per_prompt"]]
    initial = correctness(initial_eval, ids)
    initial_vote = vote_correctness(initial_eval, ids)
    tables: dict[str, dict[int, np.ndarray]] = {}  # variant -> iteration index -> table
    variants = []
    for variant in [v for v in spec.variants if v.name in chosen]:
        runs = [RunDir(root / variant.name / f"seed{s}") for s in seeds]
        manifests = [r.read_manifest() or {"iterations": {}} for r in runs]
        iterations = []
        for t in sorted({t for r in runs for t in r.iterations()}):
            evals = [r.read_eval(t) for r in runs]
            if any(e is None for e in evals):
                continue  # pooled numbers only when every seed has this iteration evaluated
            table = np.stack([correctness(e, ids) for e in evals])  # seeds, problems, rounds
            tables.setdefault(variant.name, {})[t] = table
            last = table[:, :, -1]
            votes = [vote_correctness(e, ids) for e in evals]
            iterations.append(
                {
                    "iteration": t + 1,
                    "accuracy_per_round": [interval(table[:, :, k]) for k in range(table.shape[2])],
                    "w2r_per_round": [
                        int(((table[:, :, k - 1] == 0) & (table[:, :, k] == 1)).sum())
                        for k in range(1, table.shape[2])
                    ],
                    "r2w_per_round": [
                        int(((table[:, :, k - 1] == 1) & (table[:, :, k] == 0)).sum())
                        for k in range(1, table.shape[2])
                    ],
                    "gain_vs_initial": interval(last - initial[None, :, 0]),
                    "own_refinement_gain": interval(last - table[:, :, 0]),
                    "rewrites_per_round": rewrite_rates(evals, table),
                    "vote_accuracy": None
                    if any(v is None for v in votes)
                    else interval(np.stack(votes)),
                    **stage_totals(manifests, t),
                }
            )
        variants.append(
            {
                "task": task.name,
                "pool": pool,
                "name": variant.name,
                "method": variant.method,
                "overrides": variant.overrides,
                "seeds": seeds,
                "n_heldout": len(ids),
                "responses_per_prompt": budget,
                "iterations": iterations,
            }
        )
    for entry in variants:  # against the baseline's best round, same iteration and seed index
        for row in entry["iterations"]:
            t = row["iteration"] - 1
            base = tables.get(spec.baseline, {})
            if entry["name"] == spec.baseline or t not in base:
                row["gain_vs_baseline"] = None
                continue
            best = int(np.argmax(base[t].mean(axis=(0, 1))))
            ours = tables[entry["name"]][t][:, :, -1]
            row["gain_vs_baseline"] = {
                **interval(ours - base[t][:, :, best]),
                "baseline_round": best,
            }
    initial_row = {
        "task": task.name,
        "pool": pool,
        "name": "initial",
        "vote_accuracy": None if initial_vote is None else interval(initial_vote[None, :]),
        "accuracy_per_round": [interval(initial[None, :, k]) for k in range(initial.shape[1])],
        "w2r_per_round": [
            int(((initial[:, k - 1] == 0) & (initial[:, k] == 1)).sum())
            for k in range(1, initial.shape[1])
        ],
        "r2w_per_round": [
            int(((initial[:, k - 1] == 1) & (initial[:, k] == 0)).sum())
            for k in range(1, initial.shape[1])
        ],
        "rewrites_per_round": rewrite_rates([initial_eval], initial[None]),
    }
    return {"initial": initial_row, "variants": variants}
