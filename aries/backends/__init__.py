"""Generation backends: one small interface, several engines.

Callers (collection, evaluation, the LLM judge, `aries serve`) only ever see `Backend.generate`:
a list of chat conversations in, one `Generation` per conversation out. Each engine imports its
heavy dependency lazily, so `import aries` never needs vLLM or an HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Message = dict[str, str]
"""One chat message: {"role": "user" | "assistant" | "system", "content": str}."""


@dataclass
class Sampling:
    """Decoding settings shared by every backend (same names as vLLM/OpenAI where they exist)."""

    max_new_tokens: int = 256
    """Upper bound on generated tokens; hitting it gives finish_reason 'length'."""
    temperature: float = 0.0
    """0 means greedy decoding; > 0 samples."""
    top_p: float = 1.0
    """Nucleus sampling mass (only used when temperature > 0)."""
    seed: int = 0
    """Base seed; backends derive per-batch seeds from it so reruns reproduce the same text."""


@dataclass
class Generation:
    """One completion: what the model wrote and why it stopped."""

    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int


class Backend(Protocol):
    """A generation engine. Implementations: `hf` (transformers), `openai`, `vllm`."""

    name: str

    def generate(self, conversations: list[list[Message]], sampling: Sampling) -> list[Generation]:
        """Complete every conversation (as the assistant's next turn), results in input order."""
        ...

    def count_prompt_tokens(self, conversation: list[Message]) -> int:
        """Tokens the rendered prompt takes (used to skip prompts longer than the context)."""
        ...

    @property
    def context_length(self) -> int | None:
        """The model's maximum sequence length, or None when unknown."""
        ...

    def close(self) -> None:
        """Release memory (GPU, servers) so the next stage can use it."""
        ...


BACKENDS = ("hf", "vllm", "openai")


def make_backend(name: str, model: str, **options) -> Backend:
    """Build a backend by name; options go to its constructor (e.g. batch_size, device)."""
    if name == "hf":
        from aries.backends.hf import HFBackend

        return HFBackend(model, **options)
    # Commands pass the hf model options to every backend; vLLM and OpenAI-compatible servers
    # schedule their own batches and place their own weights, so those options do not apply.
    engine_options = {k: v for k, v in options.items() if k not in ("batch_size", "device")}
    if name == "vllm":
        from aries.backends.vllm import VLLMBackend

        return VLLMBackend(model, **engine_options)
    if name == "openai":
        from aries.backends.openai import OpenAIBackend

        engine_options.pop("dtype", None)
        return OpenAIBackend(model, **engine_options)
    from aries import AriesError

    raise AriesError(f"unknown generation backend {name!r}: choose one of {', '.join(BACKENDS)}")
