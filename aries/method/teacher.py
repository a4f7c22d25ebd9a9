"""Teacher responses: another model's answers join π_t's candidates (DNO, Rosset et al. 2024,
arXiv 2404.03715, Algorithm 2: the practical version adds a stronger model's outputs to the
policy's samples before they are judged, so that the chosen response can come from the teacher).

The loop's teacher stage (aries/pipeline/teacher.py) runs after collect: it appends
`teacher.samples` answers per prompt to each chains record's `samples` (marked `"teacher":
<model>`), so scoring and selection treat them as direct candidates like any other. The teacher
runs through any generation backend (hf, vllm, or an OpenAI-compatible server); a rerun skips
records that already hold teacher answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aries.backends import ENGINES
from aries.core.config import Options, Range


@dataclass
class TeacherConfig(Options):
    """Teacher responses added to the candidates (`teacher:` in a run config)."""

    section = "teacher"

    model: str | None = field(
        default=None,
        metadata={
            "help": "Teacher model whose answers join π_t's samples as candidates (DNO, Rosset "
            "et al. 2024, arXiv 2404.03715, Algorithm 2); none: no teacher stage."
        },
    )
    backend: str = field(default="hf", metadata={"choices": ENGINES, "help": "hf, vllm or openai."})
    backend_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Extra backend constructor options (e.g. base_urls for openai)."},
    )
    samples: int = field(
        default=1, metadata={"range": Range(ge=1), "help": "Teacher answers per prompt."}
    )


def add_teacher_responses(
    chains: list[dict[str, Any]],
    backend,
    sampling,
    samples: int,
    model: str,
    system_prompt: str | None = None,
) -> int:
    """Append `samples` teacher answers to each record's samples; returns how many were added.
    The teacher sees the conversation π_t saw (with the run's `system_prompt`)."""
    from dataclasses import replace

    from aries.core.views import direct_messages
    from aries.method.collect import response_fields

    todo = [c for c in chains if not any("teacher" in s for s in c.get("samples") or [])]
    conversations = [
        direct_messages(c["prompt"], c.get("history") or [], system_prompt=system_prompt)
        for c in todo
    ]
    repeated = [conversation for conversation in conversations for _ in range(samples)]
    generations = backend.generate(repeated, replace(sampling, seed=sampling.seed + 2_000_000))
    for index, record in enumerate(todo):
        own = record.setdefault("samples", [])
        for generation in generations[index * samples : (index + 1) * samples]:
            own.append({"sample": len(own), "teacher": model, **response_fields(generation)})
    return len(generations)
