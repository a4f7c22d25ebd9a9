"""The numbers of bench/efficacy.py: read finished run directories, pool seeds, pair models.

Every accuracy is a (training seeds × problems) table of 0/1 outcomes on one shared problem pool,
so differences between models are paired by problem and seed index; intervals come from the
two-way bootstrap of `aries.evaluation.metrics.seeds_problems_ci`. `summarize_task` returns the
`docs/efficacy.json` entries, `render` the Markdown tables and the issue's criteria.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from aries import AriesError
from aries.evaluation.metrics import seeds_problems_ci
from aries.pipeline.rundir import RunDir

if TYPE_CHECKING:
    from efficacy import Spec, Task

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


def cell(value: dict[str, Any] | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    low, high = value["ci95"]
    fmt = "{:+.1f}" if signed else "{:.1f}"
    return f"{fmt.format(value['mean'])} [{fmt.format(low)}, {fmt.format(high)}]"


def criteria(spec: Spec, results: list[dict[str, Any]]) -> list[str]:
    """The issue's done-when criteria, read off the last iteration of every ARIES variant on
    every task."""
    lines = []
    for result, ours in [(r, v) for r in results for v in r["variants"]]:
        if ours["method"] != "aries" or not ours["iterations"]:
            continue
        last = ours["iterations"][-1]
        task = result["initial"]["task"]
        moves_ok = all(
            w >= r for w, r in zip(last["w2r_per_round"], last["r2w_per_round"], strict=True)
        )
        checks = [
            (
                f"refined answer beats {spec.baseline}'s best round by ≥ 5 points, CI above 0",
                last["gain_vs_baseline"] is not None
                and last["gain_vs_baseline"]["mean"] >= 5
                and last["gain_vs_baseline"]["ci95"][0] > 0,
                cell(last["gain_vs_baseline"], True),
            ),
            (
                "refined answer ≥ 10 points above the initial direct answer, CI low > +5",
                last["gain_vs_initial"]["mean"] >= 10 and last["gain_vs_initial"]["ci95"][0] > 5,
                cell(last["gain_vs_initial"], True),
            ),
            (
                "own refinement gain ≥ +3, CI low ≥ 0, no round with more right→wrong",
                last["own_refinement_gain"]["mean"] >= 3
                and last["own_refinement_gain"]["ci95"][0] >= 0
                and moves_ok,
                cell(last["own_refinement_gain"], True),
            ),
            (
                f"not worse than {spec.baseline} (CI of the difference includes or exceeds 0)",
                last["gain_vs_baseline"] is not None and last["gain_vs_baseline"]["ci95"][1] >= 0,
                cell(last["gain_vs_baseline"], True),
            ),
        ]
        for text, ok, value in checks:
            lines.append(
                f"| {task} | {ours['name']} | {text} | {value} | {'met' if ok else 'missed'} |"
            )
    return lines


def share(counts: list[int]) -> str:
    part, whole = counts
    return f"{100 * part / whole:.0f} % ({part}/{whole})" if whole else "—"


def rewrites_table(result: dict[str, Any]) -> list[str]:
    """Finding versus fixing, per model and refinement round (`rewrite_rates`); nothing when no
    evaluation of the task counted rewrites."""
    rows = [("initial", 0, result["initial"]["rewrites_per_round"])] + [
        (v["name"], row["iteration"], row["rewrites_per_round"])
        for v in result["variants"]
        for row in v["iterations"]
    ]
    if all(rounds is None for _, _, rounds in rows):
        return []
    out = [
        "",
        "How each model refines, per round against the round before, pooled over seeds "
        "(finding a mistake versus fixing it, after Tyen et al. 2024, arXiv 2311.08516): the "
        "share of right answers the round rewrote, of wrong answers it rewrote, and of those "
        "rewritten wrong answers it made right.",
        "",
        "| model | iter | round | right answers rewritten | wrong answers rewritten "
        "| rewritten wrong answers made right |",
        "|---|---|---|---|---|---|",
    ]
    for name, iteration, rounds in rows:
        for r in rounds or []:
            out.append(
                f"| {name} | {iteration} | {r['round']} | {share(r['rewrote_right'])} | "
                f"{share(r['rewrote_wrong'])} | {share(r['fixed_of_rewritten_wrong'])} |"
            )
    return out


def render(spec: Spec, pool: str, results: list[dict[str, Any]], command: str, seeds) -> str:
    rounds = max(len(r["initial"]["accuracy_per_round"]) for r in results)
    heads = ["answer"] + [f"refine {k}" for k in range(1, rounds)]
    out = [
        f"# Efficacy: ARIES against {spec.baseline} at an equal budget ({pool} pool)",
        "",
        "Generated by `bench/efficacy.py` (EFFICACY.md's protocol). Reproduce with:",
        "",
        "```",
        command,
        "```",
        "",
        "Accuracies and gains in percentage points with 95 % intervals from a two-way bootstrap "
        f"over training seeds ({', '.join(map(str, seeds))}) and problems. Gains are paired: "
        "same problems, same seed index. w→r / r→w: answers fixed / broken by each refinement "
        "round, summed over seeds. vote: the inference-time vote over each chain's final answers "
        "(`aries.method.vote`, a design option), never in place of the last round. "
        "Seconds: mean per "
        "seed.",
    ]
    for result in results:
        first = result["variants"][0] if result["variants"] else None
        n = result["variants"][0]["n_heldout"] if first else "?"
        budget = first["responses_per_prompt"] if first else "?"
        out += [
            "",
            f"## {result['initial']['task']} (n = {n} problems, {budget} responses per training "
            "prompt)",
            "",
            "| model | iter | " + " | ".join(heads) + " | vote | w→r / r→w | vs initial | "
            f"vs {spec.baseline} | own refinement | pairs | gen. tokens "
            "| collect / train / eval s |",
            "|---" * (len(heads) + 10) + "|",
        ]
        init = result["initial"]
        moves = ", ".join(f"{w}/{r}" for w, r in zip(init["w2r_per_round"], init["r2w_per_round"]))
        out.append(
            "| initial | 0 | "
            + " | ".join(cell(a) for a in init["accuracy_per_round"])
            + f" | {cell(init['vote_accuracy'])} | {moves} | — | — | — | — | — | — |"
        )
        for variant in result["variants"]:
            for row in variant["iterations"]:
                moves = ", ".join(
                    f"{w}/{r}" for w, r in zip(row["w2r_per_round"], row["r2w_per_round"])
                )
                secs = row["seconds_per_stage"]
                times = " / ".join(f"{secs.get(s, 0):.0f}" for s in ("collect", "train", "eval"))
                out.append(
                    f"| {variant['name']} | {row['iteration']} | "
                    + " | ".join(cell(a) for a in row["accuracy_per_round"])
                    + f" | {cell(row['vote_accuracy'])} | {moves} | "
                    f"{cell(row['gain_vs_initial'], True)} | "
                    f"{cell(row['gain_vs_baseline'], True)} | "
                    f"{cell(row['own_refinement_gain'], True)} | {row['pairs']:g} | "
                    f"{row['generated_tokens']} | {times} |"
                )
        out += rewrites_table(result)
        out += ["", "Variants:", ""]
        out += [
            f"- `{v['name']}`: method {v['method']}, `{' '.join(v['overrides'])}`"
            for v in result["variants"]
        ]
    lines = criteria(spec, results)
    if lines:
        out += [
            "",
            "## The issue's criteria (last iteration)",
            "",
            "| task | variant | criterion | value | |",
            "|---|---|---|---|---|",
            *lines,
        ]
    return "\n".join(out) + "\n"
