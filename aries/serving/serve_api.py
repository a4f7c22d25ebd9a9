"""The OpenAI chat-completions wire format of `aries serve`: request body, checks, responses.

Sampling fields are checked against the ranges OpenAI documents (temperature 0-2, top_p in
(0, 1], max_tokens >= 1): out of range is HTTP 400, as OpenAI answers. `stop` sequences (a
string or a list) cut the answer before the first one and report finish_reason "stop"; the
backends have no stop strings, so the cut is made on the finished text (usage counts the tokens
generated). `stream: true` answers with server-sent events in OpenAI's chunk format ending with
`data: [DONE]`; the backend decodes whole batches, so the answer arrives in one content chunk
once it is generated.
"""

from __future__ import annotations

import json
import random
import time
import typing
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from aries.backends import Message, Sampling
from aries.core.views import DEFAULT_REFINE_INSTRUCTION
from aries.method.vote import Pick, pick_round


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The OpenAI chat-completions body (the fields aries serve reads) plus the extensions."""

    model: str | None = None
    messages: list[ChatMessage]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    n: int | None = 1
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    refine_rounds: int = 0
    refine_instruction: str | None = None
    refine_pick: str = "last"


class RequestError(Exception):
    """A request the server cannot honour (HTTP 400 with an OpenAI-style error body)."""


@dataclass
class Job:
    """One chat request waiting for the worker."""

    messages: list[Message]
    sampling: Sampling
    rounds: int
    instruction: str
    pick: Pick = "last"
    stop: list[str] = field(default_factory=list)
    future: Future = field(default_factory=Future)

    def group(self) -> tuple:
        """Requests with equal keys run in one backend call (a chain shares rounds and z)."""
        s = self.sampling
        return (s.max_new_tokens, s.temperature, s.top_p, s.seed, self.rounds, self.instruction)


def parse_request(body: ChatRequest, default_max_tokens: int, max_refine_rounds: int) -> Job:
    """Validate an OpenAI chat request and turn it into a Job (RequestError when unsupported)."""
    if body.n not in (None, 1):
        raise RequestError("only n=1 is supported")
    if not 0 <= body.refine_rounds <= max_refine_rounds:
        raise RequestError(f"refine_rounds must be between 0 and {max_refine_rounds}")
    if body.refine_pick not in typing.get_args(Pick):
        raise RequestError(f"refine_pick must be one of {', '.join(typing.get_args(Pick))}")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if any(not sequence for sequence in stop):
        raise RequestError("stop sequences must be non-empty strings")
    if stop and body.refine_rounds:
        raise RequestError("stop cannot be combined with refine_rounds (each round reads the "
                           "whole previous answer)")  # fmt: skip
    messages = []
    for message in body.messages:
        if message.role not in ("system", "user", "assistant"):
            raise RequestError(f"unsupported message role {message.role!r}")
        content = message.content
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(
                part.get("text", "") for part in content if part.get("type") == "text"
            )
        messages.append({"role": message.role, "content": content or ""})
    if not messages or messages[-1]["role"] != "user":
        raise RequestError("the last message must come from the user")
    if body.refine_rounds and len(messages) != 1:
        raise RequestError(
            "refine_rounds needs a conversation of exactly one user message (the question)"
        )
    max_tokens = body.max_completion_tokens or body.max_tokens or default_max_tokens
    temperature = 1.0 if body.temperature is None else body.temperature  # OpenAI's defaults
    top_p = 1.0 if body.top_p is None else body.top_p
    # No seed: a fresh one, so repeated sampled requests differ as OpenAI clients expect.
    seed = body.seed if body.seed is not None else random.randrange(2**31)
    if temperature == 0:
        seed = 0  # greedy output ignores the seed; a common value lets requests batch together
    sampling = Sampling(max_tokens, temperature, top_p, seed)
    instruction = body.refine_instruction or DEFAULT_REFINE_INSTRUCTION
    return Job(messages, sampling, body.refine_rounds, instruction, body.refine_pick, stop)


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """`text` up to the earliest stop sequence (excluded, as OpenAI does), and whether one cut."""
    cuts = [index for index in (text.find(s) for s in stop) if index >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def completion(
    chain: list[dict[str, Any]], model_name: str, *, with_chain: bool, pick: Pick = "last",
    stop: list[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The chat.completion response for a finished chain (the picked round is the message)."""
    picked = pick_round([step["text"] for step in chain], pick)
    text, stopped = cut_at_stop(chain[picked]["text"], stop or [])
    prompt_tokens = sum(step["prompt_tokens"] for step in chain)
    completion_tokens = sum(step["completion_tokens"] for step in chain)
    response = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop" if stopped else chain[picked]["finish_reason"],
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if with_chain:
        response["aries_chain"] = chain
        response["aries_picked_round"] = picked
    return response


def stream_events(response: dict[str, Any], *, include_usage: bool) -> Iterator[str]:
    """A finished chat.completion as OpenAI's server-sent chat.completion.chunk events: the role,
    the content, the finish reason (with the aries_* fields), usage if asked, then [DONE]."""
    choice = response["choices"][0]
    head = {key: response[key] for key in ("id", "created", "model")}
    head["object"] = "chat.completion.chunk"

    def chunk(delta: dict, finish_reason: str | None = None, **extra: Any) -> str:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
        body = {**head, "choices": choices, **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    yield chunk({"content": choice["message"]["content"]})
    extensions = {k: v for k, v in response.items() if k.startswith("aries_")}
    yield chunk({}, choice["finish_reason"], **extensions)
    if include_usage:
        usage = {**head, "choices": [], "usage": response["usage"]}
        yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"
