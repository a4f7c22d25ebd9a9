"""The sweep's spec file and the run config of each (task, pool, variant, seed).

Two pools per task come from the task's held-out generator at disjoint seeds: `validation`
(choose recipes here) and `heldout` (report once). Training prompts are filtered against both
pools, never the other way round, so the pools keep their natural difficulty. Every variant must
generate as many responses per training prompt as every other (`check_budgets`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aries import AriesError
from aries.core.config import apply_overrides, load_yaml
from aries.pipeline.runconfig import resolve_config

POOLS = ("validation", "heldout")


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
    """The task's responses per training prompt, the same for every variant or an error: equal
    budgets are the point of the comparison."""
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
