"""The loop's teacher stage (DNO's practical version, aries.method.teacher): another model's
answers join iteration t's chains as candidates, the chains file rewritten atomically."""

from __future__ import annotations

from typing import Any

from aries.backends import Sampling
from aries.core.jsonl import atomic_write_jsonl
from aries.method.teacher import add_teacher_responses
from aries.pipeline.runconfig import RunConfig
from aries.pipeline.rundir import RunDir
from aries.pipeline.session import Session, run_backend


def teacher(run: RunDir, config: RunConfig, t: int, session: Session) -> dict[str, Any]:
    """Teacher answers into iteration t's chains (after collect), sampled as π_t's are."""
    settings, gen = config.teacher, config.generation
    chains = run.read_chains(t)
    session.release()  # one model in memory at a time
    backend = run_backend(config, settings.backend, settings.model, settings.backend_options)
    try:
        sampling = Sampling(gen.max_new_tokens, gen.temperature, gen.top_p, config.seed + t)
        added = add_teacher_responses(
            chains, backend, sampling, settings.samples, settings.model, config.system_prompt
        )
    finally:
        backend.close()
    atomic_write_jsonl(run.chains(t), chains)
    return {"teacher_responses": added}
