"""The `openai` backend against real servers on loopback.

Round-robin, failover and managed mode run against real `aries serve` servers over the tiny model;
retry, timeout and error paths run against a small scripted HTTP server that answers 429/5xx/slow
on demand (the backend under test is real in every case).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from aries import AriesError
from aries.backends import Sampling, make_backend
from aries.backends.hf import HFBackend
from aries.backends.openai import OpenAIBackend
from aries.backends.servers import free_port
from aries.serving.serve import create_app, running

QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]
GREEDY = Sampling(max_new_tokens=6, temperature=0.0)


class Scripted(ThreadingHTTPServer):
    """Answers chat completions from a script: each entry is a status code, or 'slow'."""

    def __init__(self, script: list):
        self.script = list(script)
        self.bodies: list[dict] = []
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        step = self.server.script.pop(0) if self.server.script else 200
        if step == "slow":
            time.sleep(1.0)
            step = 200
        if step == 200:
            reply = {
                "choices": [
                    {
                        "message": {"role": "assistant", "content": f" seed={body['seed']} "},
                        "finish_reason": "length" if body["max_tokens"] < 5 else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 3},
            }
        else:
            reply = {"error": {"message": f"scripted failure {step}"}}
        data = json.dumps(reply).encode()
        self.send_response(step)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def backend_for(*urls: str, **options) -> OpenAIBackend:
    options = {"max_retries": 3, "backoff": 0.01, "timeout": 120.0, **options}
    return OpenAIBackend("tiny", base_urls=list(urls), **options)


def test_retries_429_and_5xx_then_maps_the_answer():
    upstream = Scripted([429, 503, 500])
    backend = backend_for(upstream.url)
    [short] = backend.generate([QUESTION], Sampling(max_new_tokens=4, seed=7))
    assert len(upstream.bodies) == 4  # three failures, then the answer
    body = upstream.bodies[-1]
    assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"]) == (
        "tiny",
        4,
        0.0,
        1.0,
    )
    assert body["messages"] == QUESTION
    assert short.text == f"seed={body['seed']}"  # stripped like the hf backend's text
    assert (short.finish_reason, short.prompt_tokens, short.completion_tokens) == ("length", 11, 3)
    [long] = backend.generate([QUESTION], Sampling(max_new_tokens=9))
    assert long.finish_reason == "stop"


def test_seeds_reproduce_and_differ_between_parallel_samples():
    backend = backend_for(Scripted([]).url)
    first = [g.text for g in backend.generate([QUESTION] * 3, Sampling(seed=1))]
    again = [g.text for g in backend.generate([QUESTION] * 3, Sampling(seed=1))]
    other = [g.text for g in backend.generate([QUESTION] * 3, Sampling(seed=2))]
    assert first == again
    assert len(set(first)) == 3
    assert set(first).isdisjoint(other)


def test_client_errors_stop_at_once_with_endpoint_status_and_body():
    upstream = Scripted([400])
    with pytest.raises(AriesError) as error:
        backend_for(upstream.url).generate([QUESTION], GREEDY)
    assert len(upstream.bodies) == 1  # a 400 is not retried
    assert upstream.url in str(error.value)
    assert "HTTP 400" in str(error.value) and "scripted failure 400" in str(error.value)


def test_timeouts_are_retried_then_reported():
    upstream = Scripted(["slow", "slow"])
    backend = backend_for(upstream.url, timeout=0.3, max_retries=1)
    with pytest.raises(AriesError, match="no answer within 0.3 s"):
        backend.generate([QUESTION], GREEDY)
    assert len(upstream.bodies) == 2


def test_unreachable_endpoints_give_a_clear_error():
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(AriesError, match=f"failed after 3 attempts.*{dead}: connection failed"):
        backend_for(dead, max_retries=2).generate([QUESTION], GREEDY)


def test_concurrency_is_limited_per_endpoint():
    upstream = Scripted(["slow"] * 4)
    backend = backend_for(upstream.url, max_concurrency=2)
    start = time.monotonic()
    backend.generate([QUESTION] * 4, GREEDY)
    elapsed = time.monotonic() - start
    assert 2.0 <= elapsed < 3.5  # four 1-second answers, two at a time


@pytest.fixture(scope="module")
def tiny_server(tiny_model_path):
    """A real `aries serve` over the tiny model, in a thread of this process."""
    hf = HFBackend(str(tiny_model_path))
    app = create_app(hf, model_name=str(tiny_model_path), batch_wait=0.01)
    with running(app) as url:
        yield url, hf, app.state.batcher


def test_round_robin_over_two_real_servers_with_a_managed_one(tiny_server, tiny_model_path):
    url, hf, first_batcher = tiny_server
    command = "{python} -m aries.cli serve --model {model} --port {port} --log-level warning"
    managed = make_backend(
        "openai", str(tiny_model_path), serve_command=command, startup_timeout=60
    )
    try:
        (managed_url,) = managed.base_urls
        assert httpx.get(managed_url + "/models").json()["data"][0]["id"] == str(tiny_model_path)
        both = backend_for(url, managed_url, tokenizer=str(tiny_model_path))
        before = first_batcher.requests
        questions = [[{"role": "user", "content": f"Say {i}."}] for i in range(6)]
        generations = both.generate(questions, GREEDY)
        assert first_batcher.requests - before == 3  # the other three went to the managed server
        health = httpx.get(managed_url.removesuffix("/v1") + "/health").json()
        assert health["requests"] == 3
        expected = hf.generate(questions, GREEDY)
        assert [g.text for g in generations] == [g.text for g in expected]
        assert [g.prompt_tokens for g in generations] == [g.prompt_tokens for g in expected]
        assert both.count_prompt_tokens(QUESTION) == hf.count_prompt_tokens(QUESTION)
        assert both.context_length == 1024  # read from /v1/models
    finally:
        managed.close()
    assert managed.servers[0].process.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(managed_url + "/models")


def test_failover_from_a_dead_endpoint(tiny_server):
    url, _, batcher = tiny_server
    dead = f"http://127.0.0.1:{free_port()}/v1"
    backend = backend_for(dead, url)
    before = batcher.requests
    generations = backend.generate([QUESTION] * 4, GREEDY)
    assert len(generations) == 4 and all(g.completion_tokens >= 1 for g in generations)
    assert batcher.requests - before == 4


def test_estimated_token_counts_are_in_the_right_range(tiny_server):
    _, hf, _ = tiny_server
    question = [{"role": "user", "content": "Explain why the sky is blue in two sentences."}]
    estimate = backend_for("http://127.0.0.1:9/v1").count_prompt_tokens(question)
    exact = hf.count_prompt_tokens(question)
    assert exact / 3 <= estimate <= exact * 3


class Throttling(ThreadingHTTPServer):
    """Answers 429 or 503 with a given Retry-After header (None: without one), then 200."""

    def __init__(self, failures: list[tuple[int, str | None]]):
        self.failures = list(failures)
        self.requests = 0
        super().__init__(("127.0.0.1", 0), ThrottleHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class ThrottleHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests += 1
        status, after = self.server.failures.pop(0) if self.server.failures else (200, None)
        reply = {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
        data = json.dumps(reply if status == 200 else {"error": "busy"}).encode()
        self.send_response(status)
        if after is not None:
            self.send_header("Retry-After", after)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def recorded_waits(backend: OpenAIBackend, now: float = 1_000_000_000.0) -> list[float]:
    """Replace the backend's sleep by a recorder and fix its clock at `now`."""
    waits: list[float] = []
    backend.sleep, backend.clock = waits.append, lambda: now
    return waits


def test_retry_after_seconds_and_http_dates_are_honoured_and_capped():
    now = 1_000_000_000.0  # Sun, 09 Sep 2001 01:46:40 GMT
    upstream = Throttling(
        [(429, "7"), (503, "Sun, 09 Sep 2001 01:46:52 GMT"), (503, "86400"), (429, "soon")]
    )
    backend = backend_for(upstream.url, max_retries=4, backoff=0.5)
    waits = recorded_waits(backend, now)
    [answer] = backend.generate([QUESTION], GREEDY)
    assert answer.text == "ok" and upstream.requests == 5
    assert waits[:3] == [7.0, 12.0, 60.0]  # seconds, a date 12 s ahead, a day capped at MAX_WAIT
    assert 0.0 <= waits[3] <= 0.5 * 2**3  # unreadable header: the jittered backoff


def test_without_retry_after_the_backoff_is_full_jitter():
    upstream = Throttling([(503, None)] * 40)
    backend = backend_for(upstream.url, max_retries=40, backoff=1.0)
    waits = recorded_waits(backend)
    backend.generate([QUESTION], GREEDY)
    assert len(waits) == 40
    for k, wait in enumerate(waits):
        assert 0.0 <= wait <= min(60.0, 2.0**k)
    assert len(set(waits)) == 40  # random, not a fixed schedule
    assert min(waits[6:]) < 30.0 < max(waits[6:])  # spread over [0, 60], not pinned at the cap


def test_retry_after_on_other_statuses_is_ignored_and_rounds_wait_once():
    """A 500 carries no Retry-After meaning; with two endpoints the wait comes after both fail."""
    first, second = Throttling([(500, "30"), (429, "2")]), Throttling([(503, "5")])
    backend = backend_for(first.url, second.url, max_retries=3, backoff=0.1)
    waits = recorded_waits(backend)
    backend.generate([QUESTION], GREEDY)
    # round 1: first 500 (its header ignored), second 503 asks 5; round 2: first 429, second 200
    assert waits == [5.0]
    assert (first.requests, second.requests) == (2, 2)
