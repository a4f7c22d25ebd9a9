"""Does ARIES beat iterative DPO at an equal budget? The multi-seed efficacy benchmark.

Runs a named list of variants (a method plus `--set` overrides of one run config) on each task of
a spec file, every variant with several training seeds, and evaluates every model on one shared
pool of problems from the task's held-out generator (EFFICACY.md's protocol):

- two pools per task from the same generator with disjoint seeds: `validation` (choose recipes
  here) and `heldout` (report once). Training prompts are filtered against both pools, never the
  other way round, so the pools keep their natural difficulty;
- equal budget: every variant must generate the same number of responses per training prompt
  (checked); generated tokens and wall time per stage are reported next to the accuracies;
- accuracy per refinement round pooled over seeds, wrong→right / right→wrong per round, and
  paired differences (same problems, same seed index) against the initial model's direct answer,
  against the baseline variant's best round, and against the model's own direct answer, each with
  a two-way bootstrap interval over seeds and problems (`aries.metrics.seeds_problems_ci`).

Each (task, pool, variant, seed) is an ordinary run directory under `output_dir`, so an
interrupted benchmark resumes with the same command. Results: `<output_dir>/<pool>.md|json`, and
for the held-out pool also `docs/efficacy.md` and `docs/efficacy.json`.

    python bench/efficacy.py bench/efficacy.yaml --pool validation
    python bench/efficacy.py bench/efficacy.yaml --pool heldout
    python bench/efficacy.py bench/efficacy.yaml --pool validation --variants aries --seeds 0
    python bench/efficacy.py bench/efficacy.yaml --pool heldout --report-only
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from aries import AriesError
from aries.config import apply_overrides, load_yaml
from aries.jsonl import atomic_write_json, atomic_write_text
from aries.metrics import seeds_problems_ci
from aries.runconfig import resolve_config
from aries.rundir import RunDir

POOLS = ("validation", "heldout")
STAGES = ("collect", "score", "select", "pairs", "train", "eval")


@dataclass
class Variant:
    """One recipe: a method and the `--set` overrides that make it."""

    name: str
    method: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class Task:
    """A run config (training prompts, generation, training) and the seeds of its two pools."""

    name: str
    config: str
    pools: dict[str, int]
    size: int


@dataclass
class Spec:
    tasks: list[Task]
    variants: list[Variant]
    seeds: list[int]
    baseline: str
    output_dir: Path


def load_spec(path: Path) -> Spec:
    data = load_yaml(path)
    try:
        tasks = [
            Task(t["name"], t["config"], dict(t["pools"]), int(t["size"])) for t in data["tasks"]
        ]
        variants = [
            Variant(v["name"], v["method"], list(v.get("set", []))) for v in data["variants"]
        ]
        spec = Spec(
            tasks, variants, list(data["seeds"]), data["baseline"], Path(data["output_dir"])
        )
    except (KeyError, TypeError) as error:
        raise AriesError(f"{path}: missing or malformed field {error}") from None
    for task in tasks:
        if set(task.pools) != set(POOLS) or len(set(task.pools.values())) != 2:
            raise AriesError(
                f"{path}: task {task.name}: pools needs two seeds, {' and '.join(POOLS)}"
            )
    if spec.baseline not in {v.name for v in variants}:
        raise AriesError(f"{path}: baseline {spec.baseline!r} is not a variant name")
    return spec


# -- the runs ---------------------------------------------------------------------------------


def pool_sources(config: dict[str, Any], seed: int, size: int) -> list[dict[str, Any]]:
    """The task's held-out generator (its `eval.sources`) at the pool's seed and size."""
    sources = config.get("eval", {}).get("sources")
    if not sources:
        raise AriesError(
            "an efficacy task's run config needs eval.sources (its held-out generator)"
        )
    return [{**source, "seed": seed, "size": size} for source in sources]


def run_config(spec: Spec, task: Task, pool: str, variant: Variant | None, seed: int) -> dict:
    """The run config of one (task, pool, variant, seed); variant None = the initial model only."""
    base = load_yaml(task.config)
    other = next(p for p in POOLS if p != pool)
    data = apply_overrides(base, variant.overrides if variant else [])
    data.update(
        name="initial" if variant is None else f"{variant.name}/seed{seed}",
        output_dir=str(spec.output_dir / task.name / pool),
        method="self-refine" if variant is None else variant.method,
        seed=seed,
    )
    data.setdefault("eval", {}).update(
        sources=pool_sources(base, task.pools[pool], task.size),
        size=task.size,
        baseline=variant is None,
    )
    data.setdefault("prompts", {})["exclude"] = pool_sources(base, task.pools[other], task.size)
    return data


def responses_per_prompt(data: dict[str, Any]) -> int:
    config = resolve_config(data)
    return 1 + config.generation.rounds + config.generation.samples


def check_budgets(spec: Spec, task: Task) -> int:
    budgets = {
        v.name: responses_per_prompt(run_config(spec, task, "validation", v, 0))
        for v in spec.variants
    }
    if len(set(budgets.values())) != 1:
        raise AriesError(
            f"task {task.name}: variants generate different numbers of responses per prompt "
            f"{budgets}: equal budgets are the point of the comparison"
        )
    return next(iter(budgets.values()))


def ensure_run(data: dict[str, Any], quiet: bool) -> None:
    """Run (or resume) one run directory through the CLI, as a user would."""
    path = Path(data["output_dir"]) / f"{data['name']}.config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    command = [sys.executable, "-m", "aries.cli", "run", "--config", str(path)]
    print(f"[efficacy] {' '.join(command)}", flush=True)
    started = time.time()
    subprocess.run(command + (["--quiet"] if quiet else []), check=True)
    print(f"[efficacy] done in {time.time() - started:.0f} s", flush=True)


# -- the numbers ------------------------------------------------------------------------------


def correctness(result: dict[str, Any], ids: list[str]) -> np.ndarray:
    """(problems, rounds) booleans in the order of `ids`, from an eval.json."""
    by_id = {p["id"]: p["scores"] for p in result["per_prompt"]}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise AriesError(f"{result['model']}: {len(missing)} pool problems were not evaluated")
    return np.array([[s >= 1.0 for s in by_id[i]] for i in ids], dtype=float)


def vote_correctness(result: dict[str, Any], ids: list[str]) -> np.ndarray | None:
    """(problems,) correctness of the response the chain's vote picks (`aries.vote`), if known."""
    by_id = {p["id"]: p for p in result["per_prompt"]}
    if any("vote_round" not in by_id[i] for i in ids):
        return None
    return np.array([by_id[i]["scores"][by_id[i]["vote_round"]] >= 1.0 for i in ids], dtype=float)


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
    spec: Spec, task: Task, pool: str, budget: int, seeds: list[int], chosen: list[str]
) -> dict[str, Any]:
    """Every number of one task and pool, from the run directories of `seeds` and `chosen`."""
    root = spec.output_dir / task.name / pool
    initial_eval = RunDir(root / "initial").read_eval(None)
    if initial_eval is None:
        raise AriesError(f"{root / 'initial'}: the initial model was not evaluated yet")
    ids = [p["id"] for p in initial_eval["per_prompt"]]
    initial = correctness(initial_eval, ids)
    initial_vote = vote_correctness(initial_eval, ids)
    tables: dict[str, list[np.ndarray]] = {}
    variants = []
    for variant in [v for v in spec.variants if v.name in chosen]:
        runs = [RunDir(root / variant.name / f"seed{s}") for s in seeds]
        manifests = [r.read_manifest() or {"iterations": {}} for r in runs]
        iterations = []
        for t in range(max((len(r.iterations()) for r in runs), default=0)):
            evals = [r.read_eval(t) for r in runs]
            if any(e is None for e in evals):
                break  # pooled numbers only when every seed has this iteration
            table = np.stack([correctness(e, ids) for e in evals])  # seeds, problems, rounds
            tables.setdefault(variant.name, []).append(table)
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
        for t, row in enumerate(entry["iterations"]):
            base = tables.get(spec.baseline, [])
            if entry["name"] == spec.baseline or t >= len(base):
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
        "(`aries.vote`, a design option), never in place of the last round. Seconds: mean per "
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="benchmark spec YAML (see bench/efficacy.yaml)")
    parser.add_argument("--pool", choices=POOLS, required=True)
    parser.add_argument("--tasks", help="comma-separated task names (default: all)")
    parser.add_argument("--variants", help="comma-separated variant names (default: all)")
    parser.add_argument("--seeds", help="comma-separated training seeds (default: the spec's)")
    parser.add_argument("--report-only", action="store_true", help="summarize finished runs only")
    parser.add_argument("--quiet", action="store_true", help="no progress output from the runs")
    args = parser.parse_args()
    try:
        spec = load_spec(args.spec)
        tasks = [t for t in spec.tasks if not args.tasks or t.name in args.tasks.split(",")]
        chosen = args.variants.split(",") if args.variants else [v.name for v in spec.variants]
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else spec.seeds
        budgets = {task.name: check_budgets(spec, task) for task in tasks}
        if not args.report_only:
            for task in tasks:
                ensure_run(run_config(spec, task, args.pool, None, 0), args.quiet)
                for seed in seeds:
                    for variant in spec.variants:
                        if variant.name in chosen:
                            ensure_run(run_config(spec, task, args.pool, variant, seed), args.quiet)
        results = [
            summarize_task(spec, task, args.pool, budgets[task.name], seeds, chosen)
            for task in tasks
        ]
    except AriesError as error:
        print(f"efficacy: error: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(
            f"efficacy: a run failed ({error}); rerun the same command to resume", file=sys.stderr
        )
        return 1
    command = f"python bench/efficacy.py {args.spec} --pool {args.pool}"
    for flag in ("tasks", "variants", "seeds"):
        if getattr(args, flag):
            command += f" --{flag} {getattr(args, flag)}"
    text = render(spec, args.pool, results, command, seeds)
    payload = {
        "command": command,
        "baseline": spec.baseline,
        "initial": [r["initial"] for r in results],
        "variants": [v for r in results for v in r["variants"]],
    }
    targets = [spec.output_dir / args.pool]
    if args.pool == "heldout":
        targets.append(Path("docs") / "efficacy")
    for target in targets:
        atomic_write_text(target.with_suffix(".md"), text)
        atomic_write_json(target.with_suffix(".json"), payload)
    print(text)
    print("written: " + ", ".join(f"{t}.md|json" for t in targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
