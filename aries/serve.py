"""`aries serve`: an OpenAI-compatible server over any backend, with self-refinement built in.

Endpoints: `POST /v1/chat/completions` (non-streaming), `GET /v1/models`, `GET /health`.
The extension body parameter `refine_rounds` (default 0) makes the server answer and then refine
its answer that many rounds through `aries.collect.run_chains` — the same chain code as
collection and evaluation — returning the last answer as the message and every round in the
extra response field `aries_chain`; `usage` then counts the tokens of all rounds. With
`refine_pick: "vote"` the message is the response a vote over the chain's final answers picks
(`aries.vote`; the round in `aries_picked_round`).

One worker thread owns the backend (a model is not safe to call from several threads). Requests
queue up; the worker takes everything waiting (up to `max_batch`, after a short `batch_wait`
so that simultaneous arrivals meet) and runs each group of requests with the same settings as one
batched backend call: concurrent clients share the batching the backends are built for.
"""

from __future__ import annotations

import queue
import random
import threading
import time
import typing
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel

from aries import AriesError
from aries.backends import Backend, Message, Sampling
from aries.collect import run_chains, split_by_context
from aries.views import DEFAULT_REFINE_INSTRUCTION
from aries.vote import Pick, pick_round


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The OpenAI chat-completions body (the fields aries serve reads) plus the extensions."""

    model: str | None = None
    messages: list[ChatMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    n: int = 1
    stream: bool = False
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
    future: Future = field(default_factory=Future)

    def group(self) -> tuple:
        """Requests with equal keys run in one backend call (a chain shares rounds and z)."""
        s = self.sampling
        return (s.max_new_tokens, s.temperature, s.top_p, s.seed, self.rounds, self.instruction)


class Batcher:
    """The worker thread that owns the backend and runs queued requests in batches."""

    def __init__(self, backend: Backend, *, max_batch: int = 32, batch_wait: float = 0.005):
        self.backend = backend
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self.requests = 0
        self.backend_calls = 0
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="aries-serve-worker", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future:
        self._queue.put(job)
        return job.future

    def stop(self) -> None:
        """Finish the batch in progress; requests still queued are answered with an error."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            jobs = [first]
            deadline = time.monotonic() + self.batch_wait
            while len(jobs) < self.max_batch:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                jobs.append(job)
            groups: dict[tuple, list[Job]] = defaultdict(list)
            for job in jobs:
                groups[job.group()].append(job)
            for group in groups.values():
                self._run_group(group)

    def _run_group(self, jobs: list[Job]) -> None:
        first = jobs[0]
        try:
            jobs = [job for job in jobs if self._fits(job)]
            if not jobs:
                return
            self.requests += len(jobs)
            self.backend_calls += first.rounds + 1
            if first.rounds == 0:
                generations = self.backend.generate([job.messages for job in jobs], first.sampling)
                for job, generation in zip(jobs, generations):
                    job.future.set_result([{"round": 0, **asdict(generation)}])
                return
            prompts = [
                {"id": str(i), "prompt": job.messages[0]["content"]} for i, job in enumerate(jobs)
            ]
            records = run_chains(
                self.backend,
                prompts,
                rounds=first.rounds,
                sampling=first.sampling,
                instruction=first.instruction,
                progress=False,
            )
            for job, record in zip(jobs, records):
                job.future.set_result(record["chain"])
        except Exception as error:  # the server must answer every request, even on a crash
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)

    def _fits(self, job: Job) -> bool:
        """Reject (HTTP 400) a request whose prompt and answers cannot fit the model's context."""
        *history, question = job.messages
        prompt = {"id": "0", "prompt": question["content"], "history": history}
        fitting, _ = split_by_context(
            self.backend,
            [prompt],
            rounds=job.rounds,
            max_new_tokens=job.sampling.max_new_tokens,
            instruction=job.instruction,
        )
        if not fitting:
            job.future.set_exception(
                RequestError(
                    f"the prompt with max_tokens={job.sampling.max_new_tokens} "
                    f"and refine_rounds={job.rounds} does not fit the model's context "
                    f"of {self.backend.context_length} tokens"
                )
            )
        return bool(fitting)


def create_app(
    backend: Backend,
    *,
    model_name: str,
    max_new_tokens: int = 256,
    max_refine_rounds: int = 8,
    max_batch: int = 32,
    batch_wait: float = 0.005,
):
    """The FastAPI application; the backend is closed when the application shuts down."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    batcher = Batcher(backend, max_batch=max_batch, batch_wait=batch_wait)

    @asynccontextmanager
    async def lifespan(app):
        yield
        batcher.stop()
        backend.close()

    app = FastAPI(title="aries serve", lifespan=lifespan)
    app.state.batcher = batcher
    created = int(time.time())

    def error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError):
        return error(
            400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "requests": batcher.requests,
            "backend_calls": batcher.backend_calls,
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {
            "id": model_name,
            "object": "model",
            "created": created,
            "owned_by": "aries",
            "max_model_len": backend.context_length,
        }
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        import asyncio

        try:
            job = _job(body, max_new_tokens, max_refine_rounds)
            chain = await asyncio.wrap_future(batcher.submit(job))
        except RequestError as problem:
            return error(400, str(problem))
        except Exception as problem:  # a backend failure: report it, keep serving
            return error(500, f"generation failed: {problem}", "server_error")
        return _response(chain, model_name, with_chain=job.rounds > 0, pick=job.pick)

    return app


def _job(body: ChatRequest, default_max_tokens: int, max_refine_rounds: int) -> Job:
    """Validate an OpenAI chat request and turn it into a Job (RequestError when unsupported)."""
    if body.stream:
        raise RequestError("stream=true is not supported by aries serve")
    if body.n != 1:
        raise RequestError("only n=1 is supported")
    if body.stop:
        raise RequestError("stop sequences are not supported by aries serve")
    if not 0 <= body.refine_rounds <= max_refine_rounds:
        raise RequestError(f"refine_rounds must be between 0 and {max_refine_rounds}")
    if body.refine_pick not in typing.get_args(Pick):
        raise RequestError(f"refine_pick must be one of {', '.join(typing.get_args(Pick))}")
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
    if max_tokens < 1:
        raise RequestError("max_tokens must be at least 1")
    # No seed: a fresh one, so repeated sampled requests differ as OpenAI clients expect.
    seed = body.seed if body.seed is not None else random.randrange(2**31)
    if body.temperature == 0:
        seed = 0  # greedy output ignores the seed; a common value lets requests batch together
    sampling = Sampling(max_tokens, body.temperature, body.top_p, seed)
    instruction = body.refine_instruction or DEFAULT_REFINE_INSTRUCTION
    return Job(messages, sampling, body.refine_rounds, instruction, body.refine_pick)


def _response(
    chain: list[dict[str, Any]], model_name: str, *, with_chain: bool, pick: Pick = "last"
) -> dict[str, Any]:
    picked = pick_round([step["text"] for step in chain], pick)
    last = chain[picked]
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
                "message": {"role": "assistant", "content": last["text"]},
                "finish_reason": last["finish_reason"],
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


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def running(app, *, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Serve `app` from a background thread (tests, notebooks, benchmarks); yields its base URL."""
    import uvicorn

    from aries.backends.openai import free_port

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="aries-serve", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise AriesError(f"aries serve could not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join()


def serve(
    model: str,
    *,
    port: int = 8000,
    host: str = "127.0.0.1",
    backend: str = "hf",
    backend_options: dict[str, Any] | None = None,
    served_model_name: str | None = None,
    log_level: str = "info",
    **app_options,
) -> None:
    """Load the backend and serve it until interrupted (what `aries serve` runs)."""
    import uvicorn

    from aries.backends import make_backend

    engine = make_backend(backend, model, **(backend_options or {}))
    app = create_app(engine, model_name=served_model_name or model, **app_options)
    # On Ctrl-C / SIGTERM, give open requests a few seconds rather than waiting for all of them.
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
