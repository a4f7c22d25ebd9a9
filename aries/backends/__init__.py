"""Generation backends: one small interface, several engines.

Callers (collection, evaluation, the LLM judge, `aries serve`) only ever see `Backend.generate`:
a list of chat conversations in, one `Generation` per conversation out. Each engine imports its
heavy dependency lazily, so `import aries` never needs vLLM or an HTTP client. Each engine takes
only its own options: the caller that knows which engine it builds passes what that engine uses.
"""

from __future__ import annotations

import typing

from aries.backends.base import Backend, BackendName, Generation, Sampling, request_seeds
from aries.views import Message

__all__ = ["Backend", "BackendName", "Generation", "Message", "Sampling", "request_seeds"]

BACKENDS = typing.get_args(BackendName)


def make_backend(name: str, model: str, **options) -> Backend:
    """Build a backend by name; options go to its constructor (e.g. batch_size for hf)."""
    if name == "hf":
        from aries.backends.hf import HFBackend

        return HFBackend(model, **options)
    if name == "vllm":
        from aries.backends.vllm import VLLMBackend

        return VLLMBackend(model, **options)
    if name == "openai":
        from aries.backends.openai import OpenAIBackend

        return OpenAIBackend(model, **options)
    from aries import AriesError

    raise AriesError(f"unknown generation backend {name!r}: choose one of {', '.join(BACKENDS)}")


def check_chat_template_backend(name: str) -> None:
    """A server renders prompts with its own chat template, out of aries' reach."""
    if name == "openai":
        from aries import AriesError

        raise AriesError(
            "chat_template cannot be applied by the openai backend: its server renders prompts "
            "with its own template (start it with that template, e.g. vllm serve --chat-template "
            "FILE or aries serve --chat-template FILE, and leave chat_template unset here)"
        )


def engine_options(
    name: str,
    *,
    batch_size: int | None = None,
    device: str | None = None,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    chat_template: str | None = None,
) -> dict[str, typing.Any]:
    """The model-loading options that engine `name` takes: vLLM and OpenAI-compatible servers
    schedule their own batches and place their own weights; a server has its own dtype and
    chat template."""
    options: dict[str, typing.Any] = {"trust_remote_code": trust_remote_code}
    if chat_template is not None:
        check_chat_template_backend(name)
        options["chat_template"] = chat_template
    if name in ("hf", "vllm"):
        options["dtype"] = dtype
    if name == "hf":
        options.update(batch_size=batch_size, device=device)
        options = {k: v for k, v in options.items() if v is not None}
    return options
