"""The ARIES loop (docs/specification.md stages 0-4): which stages run, in what order, for
each method.

    once:           sft → eval (the initial model)
    per iteration:  prompts → collect → score → select → (warm_start) → pairs → train → eval

Every stage (aries/pipeline/stages.py) reads files from the run directory
(aries/pipeline/rundir.py) and writes
files there; the manifest records which stages are done. A killed run restarted with the same
command skips finished stages, completes a partly written chains file without duplicates, and
resumes training from its last checkpoint. The methods (aries/pipeline/methods.py) are
declared here, each with its plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from aries import AriesError
from aries.core.compat import check_private_api
from aries.core.console import quiet_libraries
from aries.core.distributed import launched_processes
from aries.core.memory import return_freed_memory
from aries.method.pairs import PairsConfig
from aries.pipeline import stages, temporal
from aries.pipeline.methods import METHODS, Method, Plan, Step, declare
from aries.pipeline.runconfig import RunConfig
from aries.pipeline.rundir import Manifest, RunDir, prepare_run_dir
from aries.pipeline.session import Session
from aries.pipeline.teacher import teacher


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
SAMPLES_ITERATION = tuple(step for step in PREFERENCE_ITERATION if step.name != "warm_start")
"""The same stages without warm_start (an SFT on both views of the chains' pairs)."""


def direct_samples(config: RunConfig) -> None:
    """Iterative DPO's collection and views: no refinement rounds, pairs among the direct
    samples, the direct view only."""
    if config.generation.samples < 1:
        raise AriesError(f"method {config.method} needs generation.samples >= 1")
    config.generation = replace(config.generation, rounds=0)
    config.selection = replace(config.selection, candidates="samples")
    config.pairs = PairsConfig(w_direct=1.0, w_refine=0.0, w_keep=0.0)


def practical_dno(config: RunConfig) -> None:
    """Practical DNO (arXiv 2404.03715, Algorithm 2): iterative-dpo's collection, pairs whose
    reward margin is large, DPO against the previous policy π_t."""
    direct_samples(config)
    if config.selection.strategy != "reward" or config.selection.margin <= 0:
        raise AriesError(
            "method dno keeps large-margin pairs only: selection.strategy reward with "
            "selection.margin > 0"
        )
    if config.train.reference != "previous":
        raise AriesError("method dno trains against the previous policy: train.reference previous")


declare(
    Method(
        "aries",
        "aries (refinement chains, pairs in both views; arXiv 2502.05605)",
        Plan(INITIAL, PREFERENCE_ITERATION),
    )
)
declare(
    Method(
        "iterative-dpo",
        "iterative-dpo (N samples, direct view; arXiv 2312.11456)",
        Plan(INITIAL, SAMPLES_ITERATION),
        resolve=direct_samples,
    )
)
declare(
    Method(
        "dno",
        "dno (iterative-dpo's collection plus teacher answers, a large-margin pair filter, "
        "reference π_t; practical DNO, Rosset et al. 2024, arXiv 2404.03715)",
        Plan(INITIAL, SAMPLES_ITERATION),
        resolve=practical_dno,
    )
)
declare(
    Method(
        "temporal-self-rewarding",
        "temporal-self-rewarding (iterative-dpo's collection, rejected responses from π_0, "
        "chosen guided by a temporary future model; Wang et al. 2025, arXiv 2508.06026; with a "
        "judge without a model it is self-rewarding)",
        Plan(
            INITIAL,
            (
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
            ),
        ),
        resolve=direct_samples,
        describe=temporal.STEP_DESCRIPTIONS,
    )
)
declare(
    Method(
        "self-refine",
        "self-refine (no training, the initial model's evaluation only; Madaan et al. 2023, "
        "arXiv 2303.17651)",
        Plan(INITIAL, ()),
    )
)


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

    plan = METHODS[config.method].plan
    if any(step.name in TRAINING_STAGES for step in plan.once + plan.per_iteration):
        check_private_api("trl")  # a TRL that lacks what aries overrides: now, not after collection
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
            session.close()
    return manifest.data


def pending_steps(config: RunConfig, manifest: Manifest) -> Iterator[tuple[int | None, Step]]:
    """The steps the config asks for that the manifest does not mark done, in order (iteration
    None: before the first). Lazy, so each step sees the manifest its predecessors left."""
    plan = METHODS[config.method].plan
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
    plan = METHODS[config.method].plan
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
        session.close()


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
