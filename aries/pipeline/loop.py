"""The ARIES loop (docs/specification.md stages 0-4): which stages run, in what order, for
each method.

    once:           sft → eval (the initial model)
    per iteration:  prompts → collect → score → select → (warm_start) → pairs → train → eval

Every stage (aries/pipeline/stages.py) reads files from the run directory
(aries/pipeline/rundir.py) and writes
files there; the manifest records which stages are done. A killed run restarted with the same
command skips finished stages, completes a partly written chains file without duplicates, and
resumes training from its last checkpoint. A new method is one more entry in `PLANS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aries import AriesError
from aries.core.console import quiet_libraries
from aries.core.distributed import launched_processes
from aries.core.memory import return_freed_memory
from aries.method.teacher import teacher
from aries.pipeline import stages, temporal
from aries.pipeline.runconfig import Method, RunConfig
from aries.pipeline.rundir import Manifest, RunDir, prepare_run_dir
from aries.pipeline.stages import Session


@dataclass(frozen=True)
class Step:
    """One box of the loop diagram: a stage function and when the config asks for it."""

    name: str
    stage: Callable[..., dict[str, Any]]
    when: Callable[[RunConfig, int | None], bool] = lambda config, t: True
    """Whether the config asks for the stage in iteration t (None: before the first)."""


@dataclass(frozen=True)
class Plan:
    once: tuple[Step, ...]
    """Work on the initial model, before the first iteration (iteration None)."""
    per_iteration: tuple[Step, ...]


def evaluated(config: RunConfig, t: int | None) -> bool:
    """Whether iteration t's model gets a held-out evaluation (eval.final_only: the last only)."""
    return config.eval.enabled and (not config.eval.final_only or t == config.iterations - 1)


INITIAL = (
    Step("sft", stages.sft, when=lambda config, t: config.sft.enabled),
    Step(
        "eval",
        stages.evaluate,
        when=lambda config, t: config.eval.enabled and config.eval.baseline,
    ),
)
PREFERENCE_ITERATION = (
    Step("prompts", stages.prompts),
    Step("collect", stages.collect),
    Step("teacher", teacher, when=lambda config, t: config.teacher.model is not None),
    Step("score", stages.score),
    Step("select", stages.select),
    Step("warm_start", stages.warm_start, when=lambda config, t: config.sft.warm_start and t == 0),
    Step("pairs", stages.pairs),
    Step("train", stages.train),
    Step("eval", stages.evaluate, when=evaluated),
)
TEMPORAL_ITERATION = (
    Step("prompts", stages.prompts),
    Step("collect", stages.collect),
    Step("score", stages.score),
    Step("anchor", temporal.anchor, when=lambda config, t: t > 0),
    Step("select", temporal.select),
    Step("future_model", temporal.future_model),
    Step("future", temporal.future),
    Step("pairs", stages.pairs),
    Step("train", stages.train),
    Step("eval", stages.evaluate, when=evaluated),
)
PLANS: dict[Method, Plan] = {
    # ARIES (arXiv 2502.05605): refinement chains, pairs in both views.
    "aries": Plan(INITIAL, PREFERENCE_ITERATION),
    # Iterative DPO (arXiv 2312.11456): the same stages; resolve_config sets samples, direct view.
    "iterative-dpo": Plan(INITIAL, PREFERENCE_ITERATION),
    # DNO, practical version (arXiv 2404.03715): the same, with teacher answers among the
    # candidates and a large-margin filter (resolve_config checks it).
    "dno": Plan(INITIAL, PREFERENCE_ITERATION),
    # Temporal Self-Rewarding (arXiv 2508.06026): rejected from π_0, chosen guided by a
    # temporary future model (aries/pipeline/temporal.py); collection as in iterative-dpo.
    "temporal-self-rewarding": Plan(INITIAL, TEMPORAL_ITERATION),
    # Self-Refine (arXiv 2303.17651): no training, the initial model's evaluation only.
    "self-refine": Plan(INITIAL, ()),
}


def run(
    config: RunConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    stop_before: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) all iterations of `config`; returns the manifest.

    With `stop_before`, stop when the next iteration stage to run is that one (e.g. 'train', to
    run it under `accelerate launch` with `aries train`).
    """
    from aries.backends.servers import recording
    from aries.pipeline.launch import TRAINING_STAGES, run_launched
    from aries.pipeline.runlock import RunLock

    run_dir = RunDir(config.run_dir)
    # Managed servers are recorded in RUN/servers; those a killed run left are stopped first.
    with RunLock(run_dir.root) as lock, recording(run_dir.servers):
        prepare_run_dir(config, overwrite=overwrite)
        manifest = Manifest(run_dir, config)
        session = Session(config, progress=progress)
        try:
            for t, step in pending_steps(config, manifest):
                if t is not None:
                    if step.name == stop_before:
                        return manifest.data
                    session.log(f"iteration {t}: {step.name}")
                if config.train.launcher and step.name in TRAINING_STAGES:
                    session.release()  # the trainer gets the GPUs
                    run_launched(run_dir, config, step.name, t, lock, progress)
                    manifest.reload()
                else:
                    _run_step(step, run_dir, config, t, manifest, session)
        finally:
            session.release()
    return manifest.data


def pending_steps(config: RunConfig, manifest: Manifest) -> Iterator[tuple[int | None, Step]]:
    """The steps the config asks for that the manifest does not mark done, in order (iteration
    None: before the first). Lazy, so each step sees the manifest its predecessors left."""
    plan = PLANS[config.method]
    for step in plan.once:
        if step.when(config, None) and not manifest.is_done(None, step.name):
            yield None, step
    for t in range(config.iterations):
        for step in plan.per_iteration:
            if step.when(config, t) and not manifest.is_done(t, step.name):
                yield t, step


def run_stage(config: RunConfig, t: int | None, name: str) -> None:
    """Run one stage on its own (`aries train` under `accelerate launch`); t None: a stage of the
    initial model (sft)."""
    plan = PLANS[config.method]
    steps = plan.once if t is None else plan.per_iteration
    step = next((s for s in steps if s.name == name and s.when(config, t)), None)
    if step is None:
        where = "before the first iteration" if t is None else f"in iteration {t}"
        raise AriesError(f"method {config.method} runs no {name} stage {where} with this config")
    run_dir = RunDir(config.run_dir)
    session = Session(config)
    try:
        _run_step(step, run_dir, config, t, Manifest(run_dir, config), session)
    finally:
        session.release()


def _run_step(
    step: Step,
    run_dir: RunDir,
    config: RunConfig,
    t: int | None,
    manifest: Manifest,
    session: Session,
) -> None:
    with manifest.stage(t, step.name, processes=launched_processes()) as counts, quiet_libraries():
        counts.update(step.stage(run_dir, config, t, session))
    # A finished trainer dies in reference cycles: collect it now, not while the next stage's
    # model is loading on top of it.
    return_freed_memory()
