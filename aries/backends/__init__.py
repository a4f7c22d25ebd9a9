"""Generation backends: one small interface, several engines.

Callers (collection, evaluation, the LLM judge, `aries serve`) only ever see `Backend.generate`:
a list of chat conversations in, one `Generation` per conversation out. Each engine imports its
heavy dependency lazily, so `import aries` never needs vLLM or an HTTP client. Each engine takes
only its own options: the caller that knows which engine it builds passes what that engine uses.

Imports `aries.core`.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping

from aries.backends.base import Backend, Generation, Sampling, request_seeds
from aries.core.models import ModelSettings
from aries.core.registry import Lazy, Registry
from aries.core.views import Message

__all__ = ["Backend", "Generation", "Message", "Sampling", "request_seeds"]

ENGINES: Registry[type[Backend]] = Registry(
    "generation backend",
    {
        "hf": Lazy("aries.backends.hf:HFBackend"),
        "vllm": Lazy("aries.backends.vllm:VLLMBackend"),
        "openai": Lazy("aries.backends.openai:OpenAIBackend"),
    },
)
"""Each backend name's class, declared by its `module:Class` path: imported only when that engine
is built, so that `import aries` loads neither torch nor vLLM nor an HTTP client. A config field
naming a backend takes these names as its choices."""


def make_backend(name: str, model: str, **options) -> Backend:
    """Build a backend by name; options go to its constructor (e.g. batch_size for hf)."""
    return ENGINES.lookup(name)(model, **options)


def check_chat_template_backend(name: str, serve_command: str | None = None) -> None:
    """A server renders prompts with its own chat template: the openai backend can apply one
    only to servers it starts itself, with {chat_template} in their command."""
    if name == "openai" and "{chat_template}" not in (serve_command or ""):
        from aries import AriesError

        raise AriesError(
            "chat_template with the openai backend needs servers it starts with that template: "
            "put {chat_template} in serve_command (e.g. 'vllm serve {model} --port {port} "
            "--chat-template {chat_template}'); a server started elsewhere renders with its own"
        )


def backend_options(
    name: str,
    model: ModelSettings,
    options: Mapping[str, typing.Any] | None = None,
    *,
    batch_size: int | None = None,
    device: str | None = None,
) -> dict[str, typing.Any]:
    """Engine `name`'s constructor options for `model` (whose path the caller passes on): the
    config's own `options` first, then the model's settings and the caller's batch size and
    device where that engine takes them. The one builder for the run's policy and teacher, the
    LLM judge and the command line, so that a setting reaches every engine the same way.

    vLLM and OpenAI-compatible servers schedule their own batches and place their own weights;
    a server has its own dtype, and renders with its own chat template unless aries starts it
    (`check_chat_template_backend`).
    """
    built = dict(options or {})
    built.setdefault("trust_remote_code", model.trust_remote_code)
    if model.chat_template is not None:
        check_chat_template_backend(name, built.get("serve_command"))
        built.setdefault("chat_template", model.chat_template)
    if name in ("hf", "vllm"):
        built.setdefault("dtype", model.dtype)
    if name == "hf":
        placement = {"batch_size": batch_size, "device": device}
        for key, value in placement.items():
            if value is not None:
                built.setdefault(key, value)
    return built
