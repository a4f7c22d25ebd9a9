"""`bench/heldout.py`'s larger held-out check of finished runs: fresh problems from the runs'
held-out sources at another seed, minus everything any of them trained on, and each model
evaluated on them with the loop's own settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aries.evaluation.evaluate import evaluate
from aries.method.sources import PromptSource, load_prompts, prompt_key
from aries.pipeline.runconfig import RunConfig
from aries.pipeline.rundir import RunDir


def heldout_folder(run: RunDir, seed: int) -> Path:
    """Where the check at `seed` writes one eval file per model of `run` (rerunning resumes)."""
    return run.root / f"heldout-{seed}"


def fresh_prompts(
    config: RunConfig, runs: list[RunDir], size: int, seed: int
) -> tuple[list[dict], int]:
    """`size` prompts per held-out source at `seed`, minus duplicates and anything trained on;
    returns them and how many were dropped."""
    trained = {prompt_key(p) for run in runs for p in run.trained_prompts()}
    prompts, seen, dropped = [], set(), 0
    for spec in config.eval.sources:
        source = PromptSource.parse(spec)
        source.size, source.seed = size, seed
        for prompt in load_prompts(source):
            if prompt_key(prompt) in trained or prompt_key(prompt) in seen:
                dropped += 1
                continue
            seen.add(prompt_key(prompt))
            prompts.append(prompt)
    return prompts, dropped


def evaluate_model(model: str, prompts: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """`evaluate` a model spec (`embedded`, a folder, a hub id) loaded with the `hf` backend,
    released afterwards so the next model gets the memory back."""
    from aries.backends import make_backend

    backend = make_backend("hf", model)
    try:
        return evaluate(backend, prompts, model=model, **options)
    finally:
        backend.close()
