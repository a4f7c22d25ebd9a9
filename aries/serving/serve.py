"""`aries serve`: an OpenAI-compatible server over any backend, with self-refinement built in.

Endpoints: `POST /v1/chat/completions` (streaming too; the wire format is
`aries.serving.serve_api`),
`GET /v1/models`, `GET /health`.
The extension body parameter `refine_rounds` (default 0) makes the server answer and then refine
its answer that many rounds through `aries.method.collect.run_chains` — the same chain code as
collection and evaluation — returning the last answer as the message and every round in the
extra response field `aries_chain`; `usage` then counts the tokens of all rounds. With
`refine_pick: "vote"` the message is the response a vote over the chain's final answers picks
(`aries.method.vote`; the round in `aries_picked_round`).

One worker thread owns the backend (a model is not safe to call from several threads). Requests
queue up; the worker takes everything waiting (up to `max_batch`, after a short `batch_wait`
so that simultaneous arrivals meet) and runs each group of requests with the same settings as one
batched backend call: concurrent clients share the batching the backends are built for.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from aries import AriesError
from aries.backends import Backend
from aries.core.views import with_system_prompt
from aries.method.collect import Chains, run_chains, split_by_context
from aries.serving.serve_api import (
    ChatRequest,
    Job,
    RequestError,
    completion,
    parse_request,
    stream_events,
)


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
            prompts = [  # the question, after the system message if any
                {"id": str(i), "prompt": job.messages[-1]["content"], "history": job.messages[:-1]}
                for i, job in enumerate(jobs)
            ]
            settings = Chains(first.rounds, first.sampling, first.instruction)
            records = run_chains(self.backend, prompts, settings, progress=False)
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
        settings = Chains(job.rounds, job.sampling, job.instruction)
        fitting, _ = split_by_context(self.backend, [prompt], settings)
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
    system_prompt: str | None = None,
):
    """The FastAPI application; the backend is closed when the application shuts down.

    `system_prompt` opens every conversation that has no system message of its own, as in the
    collection and training of a run with that system prompt (aries.core.views).
    """
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
        def field(location: tuple) -> str:  # ('body', 'temperature') -> 'temperature'
            return ".".join(map(str, location[1:] if location[:1] == ("body",) else location))

        return error(400, "; ".join(f"{field(e['loc'])}: {e['msg']}" for e in exc.errors()))

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

        from fastapi.responses import StreamingResponse

        try:
            job = parse_request(body, max_new_tokens, max_refine_rounds)
            job.messages = with_system_prompt(job.messages, system_prompt)
            chain = await asyncio.wrap_future(batcher.submit(job))
        except RequestError as problem:
            return error(400, str(problem))
        except Exception as problem:  # a backend failure: report it, keep serving
            return error(500, f"generation failed: {problem}", "server_error")
        response = completion(
            chain, model_name, with_chain=job.rounds > 0, pick=job.pick, stop=job.stop
        )
        if not body.stream:
            return response
        usage = body.stream_options is not None and body.stream_options.include_usage
        events = stream_events(response, include_usage=usage)
        return StreamingResponse(events, media_type="text/event-stream")

    return app


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

    from aries.backends.servers import free_port

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
