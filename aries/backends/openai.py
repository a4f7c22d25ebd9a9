"""The `openai` backend: any OpenAI-compatible chat-completions server, one or many.

This is how generation scales past one process: start `vllm serve` (or SGLang, TGI, llama.cpp,
`aries serve`) on every GPU or machine and list their base URLs. Requests are spread round-robin,
each endpoint gets at most `max_concurrency` requests in flight (its server batches them), and a
request that fails with a connection error, a timeout, 429 or 5xx is retried on the next endpoint,
backing off once every endpoint has failed it: a random wait up to an exponentially growing bound
(full jitter, so that many clients do not retry in step), or what a 429/503 asked for in
`Retry-After`, capped at `MAX_WAIT`. Other failures stop with an error that names the endpoint,
the HTTP status and the start of the response body.

*Managed* mode (`serve_command=...`): the backend starts the server(s) itself, waits until they
answer, and stops them on `close()` — so the loop can give the GPU to the trainer between
collections (aries/backends/servers.py). Only `httpx` is needed, not the `openai` package.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from aries import AriesError
from aries.backends.base import Generation, Sampling, request_seeds
from aries.backends.servers import ManagedServer, template_file
from aries.core.views import Message, prompt_token_ids

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
MAX_WAIT = 60.0
"""The longest wait between retries, whatever the backoff or a server's `Retry-After` says."""


def backoff_wait(round_: int, base: float, rng: random.Random, cap: float = MAX_WAIT) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**round_)], so retries of many clients spread
    out instead of hitting a recovering server in step."""
    return rng.uniform(0.0, min(cap, base * 2**round_))


def retry_after(value: str | None, now: float, cap: float = MAX_WAIT) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date, read against
    `now`, a Unix time), capped at `cap`; None when the header is missing or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(when - now, 0.0), cap)


def estimate_tokens(text: str) -> int:
    """Token count without a tokenizer: about 3 characters per token.

    Deliberately on the high side for English (most tokenizers average ~4 characters per token)
    so that context checks err towards skipping; pass `tokenizer=` for exact counts.
    """
    return math.ceil(len(text) / 3)


class OpenAIBackend:
    """Chat completions against a list of OpenAI-compatible endpoints (or servers it manages)."""

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_urls: str | list[str] | None = None,
        api_key: str | None = None,
        served_model_name: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 600.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        tokenizer: str | None = None,
        context_length: int | None = None,
        trust_remote_code: bool = False,
        serve_command: str | None = None,
        num_servers: int = 1,
        startup_timeout: float = 600.0,
        chat_template: str | None = None,
    ):
        """`base_urls`: a list or a comma-separated string (default: $OPENAI_BASE_URL, else
        http://127.0.0.1:8000/v1). `tokenizer`: a model spec whose tokenizer counts prompt tokens
        exactly (else they are estimated). `serve_command`: managed mode, see `ManagedServer`.
        `chat_template`: only for managed servers whose command takes it as {chat_template}."""
        import httpx

        self.servers: list[ManagedServer] = []
        self._template_file = None
        if chat_template is not None:
            from aries.backends import check_chat_template_backend

            check_chat_template_backend(self.name, serve_command)
            self._template_file = template_file(chat_template)
        if serve_command:
            from aries.core.models import resolve_model

            model = resolve_model(model)
            self.servers = [
                ManagedServer(
                    model,
                    command_template=serve_command,
                    index=i,
                    startup_timeout=startup_timeout,
                    chat_template=self._template_file or chat_template or "",
                )
                for i in range(num_servers)
            ]
            base_urls = [server.base_url for server in self.servers]
        base_urls = base_urls or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        if isinstance(base_urls, str):
            base_urls = [url.strip() for url in base_urls.split(",") if url.strip()]
        self.base_urls = [url.rstrip("/") for url in base_urls]
        self.model = served_model_name or model
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self.sleep = time.sleep  # replaceable, so that tests can record the waits
        self.clock = time.time  # Unix time, to read a Retry-After date against
        self._rng = random.Random()
        self._context_length = context_length
        self._tokenizer = None
        self._tokenizer_lock = threading.Lock()
        if tokenizer:
            from aries.core.models import ModelSettings, load_tokenizer

            self._tokenizer = load_tokenizer(
                ModelSettings(tokenizer, trust_remote_code, chat_template)
            )
        self._slots = {url: threading.BoundedSemaphore(max_concurrency) for url in self.base_urls}
        self._next = 0
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency * len(self.base_urls))
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=max_concurrency * len(self.base_urls)),
        )
        try:  # all servers load at once; then wait for each
            for server in self.servers:
                server.launch()
            for server in self.servers:
                server.wait_ready()
        except BaseException:
            self.close()
            raise

    @property
    def context_length(self) -> int | None:
        """Given, else the `max_model_len` that vLLM and `aries serve` list under /v1/models."""
        if self._context_length is None:
            models = self._request("GET", "/models", 0)["data"]
            mine = [m for m in models if m.get("id") == self.model] or models[:1]
            self._context_length = mine[0].get("max_model_len") if mine else None
        return self._context_length

    def count_prompt_tokens(self, conversation: list[Message]) -> int:
        if self._tokenizer is not None:
            with self._tokenizer_lock:  # a fast tokenizer must not be used by two threads at once
                return len(prompt_token_ids(self._tokenizer, conversation))
        # 8 tokens per message for the chat template's role markers.
        return sum(estimate_tokens(m["content"]) + 8 for m in conversation)

    def generate(self, conversations: list[list[Message]], sampling: Sampling) -> list[Generation]:
        start, self._next = self._next, self._next + len(conversations)
        jobs = [
            self._pool.submit(self._complete, conversation, sampling, seed, start + i)
            for i, (conversation, seed) in enumerate(
                zip(conversations, request_seeds(sampling.seed, conversations))
            )
        ]
        return [job.result() for job in jobs]

    def _complete(
        self, conversation: list[Message], sampling: Sampling, seed: int, turn: int
    ) -> Generation:
        body = {
            "model": self.model,
            "messages": conversation,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": seed,
        }
        response = self._request("POST", "/chat/completions", turn, json=body)
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        text = (choice["message"].get("content") or "").strip()
        prompt_tokens = usage.get("prompt_tokens")
        if prompt_tokens is None:  # a server that reports no usage
            prompt_tokens = self.count_prompt_tokens(conversation)
        return Generation(
            text=text,
            # Servers also say content_filter, tool_calls or abort: none of them is truncation.
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            prompt_tokens=prompt_tokens,
            completion_tokens=usage.get("completion_tokens") or estimate_tokens(text),
        )

    def _request(self, method: str, path: str, turn: int, **kwargs) -> dict[str, Any]:
        """One API call with failover: attempt a goes to endpoint (turn + a) mod n; once every
        endpoint has failed it, wait (the longest `Retry-After` of that round, else backoff)."""
        import httpx

        failures = []
        asked = None  # the longest Retry-After of this round of endpoints
        for attempt in range(self.max_retries + 1):
            url = self.base_urls[(turn + attempt) % len(self.base_urls)]
            try:
                with self._slots[url]:
                    response = self._client.request(method, url + path, **kwargs)
            except httpx.TimeoutException:
                failures.append(f"{url}: no answer within {self.timeout:g} s")
            except httpx.TransportError as error:
                failures.append(f"{url}: connection failed ({type(error).__name__}: {error})")
            else:
                if response.status_code == 200:
                    return response.json()
                excerpt = " ".join(response.text.split())[:300]
                failure = f"{url}{path}: HTTP {response.status_code}: {excerpt}"
                if response.status_code != 429 and response.status_code < 500:
                    raise AriesError(failure)
                failures.append(failure)
                if response.status_code in (429, 503):
                    wait = retry_after(response.headers.get("Retry-After"), self.clock())
                    if wait is not None:
                        asked = max(asked or 0.0, wait)
            if (attempt + 1) % len(self.base_urls) == 0 and attempt < self.max_retries:
                round_ = attempt // len(self.base_urls)
                jitter = backoff_wait(round_, self.backoff, self._rng)
                self.sleep(asked if asked is not None else jitter)
                asked = None
        raise AriesError(
            f"{method} {path} failed after {len(failures)} attempts; last: {failures[-1]}"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
        for server in self.servers:
            server.stop()
        if self._template_file:
            Path(self._template_file).unlink(missing_ok=True)
