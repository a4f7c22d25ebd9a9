"""What every generation backend shares: the interface, decoding settings, results, seeds."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal, Protocol

from aries.core.views import Message


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


def request_seeds(seed: int, conversations: list[list[Message]]) -> list[int]:
    """One seed per conversation from the base seed, its content and its repeat index.

    Independent of how a call is chunked, so reruns reproduce; repeats of one conversation in a
    call (parallel samples) get different seeds, so they are not copies of each other.
    """
    seen: dict[str, int] = {}
    seeds = []
    for conversation in conversations:
        key = json.dumps(conversation, sort_keys=True)
        repeat = seen[key] = seen.get(key, -1) + 1
        digest = hashlib.sha256(f"{seed}\0{repeat}\0{key}".encode()).digest()
        seeds.append(int.from_bytes(digest[:4], "little") & 0x7FFF_FFFF)
    return seeds
