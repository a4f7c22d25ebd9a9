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
  a two-way bootstrap interval over seeds and problems
  (`aries.evaluation.metrics.seeds_problems_ci`).

Each (task, pool, variant, seed) is an ordinary run directory under `output_dir`, so an
interrupted benchmark resumes with the same command. Results: `<output_dir>/<pool>.md|json` and
`docs/efficacy.md|json` (held-out pool) or `docs/efficacy-validation.md|json` (validation pool).
What the numbers are computed from (each run's config, manifest and per-problem outcomes, no
models) is copied to `docs/efficacy-runs/`, so anyone can recompute a report without rerunning:
`--report-only --runs docs/efficacy-runs`.

    python bench/efficacy.py bench/efficacy.yaml --pool validation
    python bench/efficacy.py bench/efficacy.yaml --pool heldout
    python bench/efficacy.py bench/efficacy.yaml --pool validation --variants aries --seeds 0
    python bench/efficacy.py bench/efficacy.yaml --pool heldout --report-only
    python bench/efficacy.py bench/efficacy.yaml --pool heldout --report-only \
        --runs docs/efficacy-runs
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from efficacy_stats import render, summarize_task

from aries import AriesError
from aries.core.config import apply_overrides, load_yaml
from aries.core.jsonl import atomic_write_bytes, atomic_write_json, atomic_write_text
from aries.pipeline.loop import finished
from aries.pipeline.runconfig import load_run_config, resolve_config

POOLS = ("validation", "heldout")
EVIDENCE = Path("docs/efficacy-runs")


@dataclass
class Variant:
    """One recipe: a method and the `--set` overrides that make it."""

    name: str
    method: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class Task:
    """A run config (training prompts, generation, training) and the seeds of its two pools;
    `overrides` scale the task for every variant alike (e.g. more prompts per iteration)."""

    name: str
    config: str
    pools: dict[str, int]
    size: int
    overrides: list[str] = field(default_factory=list)


@dataclass
class Spec:
    tasks: list[Task]
    variants: list[Variant]
    seeds: list[int]
    baseline: str
    output_dir: Path


def load_spec(path: Path, baseline: str | None = None) -> Spec:
    """The spec at `path`; `baseline` replaces its baseline variant (`--baseline`)."""
    data = load_yaml(path)
    try:
        tasks = [
            Task(t["name"], t["config"], dict(t["pools"]), int(t["size"]), list(t.get("set", [])))
            for t in data["tasks"]
        ]
        variants = [
            Variant(v["name"], v["method"], list(v.get("set", []))) for v in data["variants"]
        ]
        spec = Spec(
            tasks,
            variants,
            list(data["seeds"]),
            baseline or data["baseline"],
            Path(data["output_dir"]),
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
    data = apply_overrides(base, task.overrides + (variant.overrides if variant else []))
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


def responses_per_prompt(data: dict[str, Any]) -> float:
    """Responses generated per training prompt and iteration: the answer, its refinements, the
    samples and (DNO) the teacher's answers. Temporal Self-Rewarding generates them three times
    per iteration (π_t, π_0 from t = 1 on, the future model), so its figure is the average over
    the run's iterations: (3T - 1)/T times one collection's."""
    config = resolve_config(data)
    teacher = config.teacher.samples if config.teacher.model else 0
    per_collection = 1 + config.generation.rounds + config.generation.samples + teacher
    if config.method == "temporal-self-rewarding":
        iterations = config.iterations
        average = per_collection * (3 * iterations - 1) / iterations
        return int(average) if average.is_integer() else average
    return per_collection


def check_budgets(spec: Spec, task: Task) -> float:
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
    """Run (or resume) one run directory through the CLI, as a user would; a finished one is
    left alone without starting a process."""
    path = Path(data["output_dir"]) / f"{data['name']}.config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    if finished(resolve_config(data)):
        print(f"[efficacy] finished already: {path}", flush=True)
        return
    command = [sys.executable, "-m", "aries.cli", "run", "--config", str(path)]
    print(f"[efficacy] {' '.join(command)}", flush=True)
    started = time.time()
    subprocess.run(command + (["--quiet"] if quiet else []), check=True)
    print(f"[efficacy] done in {time.time() - started:.0f} s", flush=True)


def reported_runs(
    spec: Spec, tasks: list[Task], pool: str, chosen: list[str], seeds: list[int]
) -> list[Path]:
    """The run directories a report reads: each task's initial model and its (variant, seed)s."""
    runs = []
    for task in tasks:
        root = spec.output_dir / task.name / pool
        runs.append(root / "initial")
        runs += [root / variant / f"seed{seed}" for variant in chosen for seed in seeds]
    return runs


def archive_evidence(runs: list[Path], root: Path, target: Path) -> int:
    """Copy what a report is computed from (config, manifest, eval files: per-problem outcomes)
    of `runs` to the same place under `target` as under `root`; returns the runs copied. Only
    finished runs: one still in progress is not evidence yet (the report skips it too)."""
    copied = 0
    for run in runs:
        config = run / "config.yaml"
        if not config.is_file() or not finished(load_run_config(config)):
            continue
        sources = [run / "manifest.json", run / "config.yaml", run / "eval_base.json"]
        for source in [*sources, *run.glob("iter_*/eval.json")]:
            if source.is_file():
                destination = target / source.relative_to(root)
                atomic_write_bytes(destination, source.read_bytes())
        copied += 1
    return copied


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="benchmark spec YAML (see bench/efficacy.yaml)")
    parser.add_argument("--pool", choices=POOLS, required=True)
    parser.add_argument("--tasks", help="comma-separated task names (default: all)")
    parser.add_argument("--variants", help="comma-separated variant names (default: all)")
    parser.add_argument("--seeds", help="comma-separated training seeds (default: the spec's)")
    parser.add_argument("--report-only", action="store_true", help="summarize finished runs only")
    parser.add_argument("--quiet", action="store_true", help="no progress output from the runs")
    parser.add_argument(
        "--runs",
        type=Path,
        help=f"where the run directories are (default: the spec's output_dir); "
        f"{EVIDENCE} recomputes the published reports from their committed evidence",
    )
    parser.add_argument(
        "--report",
        help="the report's name under docs/ (default: efficacy for the held-out pool, "
        "efficacy-validation for the validation pool), e.g. methods-efficacy",
    )
    parser.add_argument(
        "--baseline",
        help="the variant the others are compared against (default: the spec's), e.g. "
        "iterative-sft to ask whether a recipe wins through its refine view or through its loss",
    )
    args = parser.parse_args()
    try:
        spec = load_spec(args.spec, args.baseline)
        if args.runs:
            spec.output_dir = args.runs
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
    for flag in ("tasks", "variants", "seeds", "baseline", "report"):
        if getattr(args, flag):
            command += f" --{flag} {getattr(args, flag)}"
    text = render(spec, args.pool, results, command, seeds)
    payload = {
        "command": command,
        "baseline": spec.baseline,
        "initial": [r["initial"] for r in results],
        "variants": [v for r in results for v in r["variants"]],
    }
    # the held-out report is the project's claim; the validation one shows how recipes were chosen
    published = args.report or ("efficacy" if args.pool == "heldout" else "efficacy-validation")
    copy = spec.output_dir / (f"{args.pool}-{args.report}" if args.report else args.pool)
    # recomputing from the committed evidence writes docs/ only: that folder holds run files
    from_evidence = spec.output_dir.resolve() == EVIDENCE.resolve()
    targets = [Path("docs") / published] + ([] if from_evidence else [copy])
    for target in targets:
        atomic_write_text(target.with_suffix(".md"), text)
        atomic_write_json(target.with_suffix(".json"), payload)
    if not from_evidence:
        runs = reported_runs(spec, tasks, args.pool, chosen, seeds)
        copied = archive_evidence(runs, spec.output_dir, EVIDENCE)
        print(f"evidence of {copied} runs: {EVIDENCE}/")
    print(text)
    print("written: " + ", ".join(f"{t}.md|json" for t in targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
