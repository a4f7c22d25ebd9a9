"""`aries serve` on loopback over a tiny model, called with the official `openai` client."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import httpx
import pytest
from openai import BadRequestError, OpenAI

from aries.backends import Sampling
from aries.backends.hf import HFBackend
from aries.method.collect import Chains, run_chains
from aries.method.vote import vote_round
from aries.serving.serve import create_app, running


@pytest.fixture(scope="module")
def server(chatty_model_path):
    """The tiny model that writes (random) text, so answers, streams and stops are not empty."""
    backend = HFBackend(str(chatty_model_path), batch_size=8)
    app = create_app(backend, model_name="tiny", batch_wait=0.02, max_new_tokens=12)
    with running(app) as url:
        yield url, backend, app.state.batcher


@pytest.fixture
def client(server) -> OpenAI:
    return OpenAI(base_url=server[0], api_key="x", max_retries=0)


def ask(client: OpenAI, question: str, **options):
    return client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": question}], **options
    )


def test_chat_completion_matches_the_backend(server, client):
    _, backend, _ = server
    response = ask(client, "What is 2 + 3?", max_tokens=8, temperature=0)
    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    expected = backend.generate([messages], Sampling(max_new_tokens=8, temperature=0.0))[0]
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected.text
    assert choice.finish_reason == expected.finish_reason
    assert response.usage.prompt_tokens == backend.count_prompt_tokens(messages)
    assert response.usage.completion_tokens == expected.completion_tokens
    assert response.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens
    assert response.model == "tiny"
    assert getattr(response, "aries_chain", None) is None  # plain requests stay plain OpenAI


def test_refine_rounds_return_the_whole_chain(server, client):
    _, backend, _ = server
    response = ask(
        client, "Name a prime number.", max_tokens=6, temperature=0, extra_body={"refine_rounds": 2}
    )
    chain = response.model_extra["aries_chain"]
    assert [step["round"] for step in chain] == [0, 1, 2]
    assert response.choices[0].message.content == chain[-1]["text"]
    assert response.choices[0].finish_reason == chain[-1]["finish_reason"]
    assert response.usage.completion_tokens == sum(s["completion_tokens"] for s in chain)
    # Same semantics as collection: the chain equals run_chains on the same prompt.
    reference = run_chains(
        backend,
        [{"id": "q", "prompt": "Name a prime number."}],
        Chains(2, Sampling(max_new_tokens=6, temperature=0.0)),
        progress=False,
    )[0]["chain"]
    assert chain == reference
    assert response.model_extra["aries_picked_round"] == 2  # the last round, the paper's rule
    voted = ask(
        client,
        "Name a prime number.",
        max_tokens=6,
        temperature=0,
        extra_body={"refine_rounds": 2, "refine_pick": "vote"},
    )
    picked = voted.model_extra["aries_picked_round"]
    assert picked == vote_round([step["text"] for step in chain])
    assert voted.choices[0].message.content == chain[picked]["text"]


def test_models_health_and_defaults(server, client):
    url, _, _ = server
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny"]
    assert models[0].model_extra["max_model_len"] == 1024
    assert httpx.get(url.removesuffix("/v1") + "/health").json()["status"] == "ok"
    response = ask(client, "Hello", temperature=0)  # no max_tokens: the server's default of 12
    assert response.usage.completion_tokens <= 12


def test_concurrent_requests_share_backend_calls(server, client):
    _, _, batcher = server
    requests_before, calls_before = batcher.requests, batcher.backend_calls
    results: dict[int, object] = {}

    def worker(i: int) -> None:
        results[i] = ask(client, f"Count to {i}.", max_tokens=10, temperature=0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(8))
    assert all(r.usage.completion_tokens >= 1 for r in results.values())
    assert batcher.requests - requests_before == 8
    assert batcher.backend_calls - calls_before < 8  # requests were merged into batches


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": -1}, "temperature: Input should be greater than or equal to 0"),
        ({"temperature": 2.5}, "temperature: Input should be less than or equal to 2"),
        ({"top_p": 0}, "top_p: Input should be greater than 0"),
        ({"top_p": 1.5}, "top_p: Input should be less than or equal to 1"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({"stop": ""}, "non-empty"),
        ({"stop": "x", "extra_body": {"refine_rounds": 1}}, "stop cannot be combined"),
        ({"n": 2}, "n=1"),
        ({"extra_body": {"refine_rounds": 99}}, "refine_rounds"),
        ({"extra_body": {"refine_rounds": 1, "refine_pick": "best"}}, "refine_pick"),
        ({"max_tokens": 5000}, "context"),
    ],
)
def test_unsupported_requests_get_clear_400s(client, options, message):
    with pytest.raises(BadRequestError, match=message):
        ask(client, "Hi", **options)


def test_refinement_needs_a_single_question(client):
    with pytest.raises(BadRequestError, match="exactly one user message"):
        client.chat.completions.create(
            model="tiny",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ],
            extra_body={"refine_rounds": 1},
        )


def test_cli_binds_loopback_by_default():
    from aries.cli import build_parser

    args = build_parser().parse_args(["serve", "--model", "m"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)


def test_stream_sends_openai_chunks_ending_with_done(server, client):
    """The official client reads the stream; the raw events end with `data: [DONE]`."""
    url, _, _ = server
    plain = ask(client, "What is 2 + 3?", max_tokens=8, temperature=0)
    chunks = list(
        ask(
            client,
            "What is 2 + 3?",
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and text == plain.choices[0].message.content
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == [plain.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    body = {"messages": [{"role": "user", "content": "Hi"}], "stream": True, "max_tokens": 3}
    with httpx.stream("POST", url + "/chat/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert all(json.loads(e.removeprefix("data: "))["id"] for e in events[:-1])


def test_stream_carries_the_refinement_chain(client):
    chunks = list(
        ask(client, "Name a prime.", max_tokens=4, temperature=0, stream=True,
            extra_body={"refine_rounds": 1})
    )  # fmt: skip
    last = chunks[-1]
    assert [step["round"] for step in last.model_extra["aries_chain"]] == [0, 1]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == last.model_extra["aries_chain"][-1]["text"]


@pytest.mark.parametrize("as_list", [False, True])
def test_stop_sequences_cut_the_answer(client, as_list):
    full = ask(client, "Tell me a story.", max_tokens=12, temperature=0).choices[0]
    text = full.message.content
    assert len(text) > 6, "the tiny model wrote too little to test stop sequences"
    stop = text[3:6]
    options = {"stop": [stop, "never appears \u2603"] if as_list else stop}
    cut = ask(client, "Tell me a story.", max_tokens=12, temperature=0, **options).choices[0]
    assert cut.message.content == text[: text.find(stop)]
    assert cut.finish_reason == "stop"


@pytest.mark.parametrize("package", ["pydantic", "uvicorn", "fastapi"])
def test_serve_without_its_extra_names_it(package):
    """Without the serve extra: one line naming it, exit status 2, no traceback."""
    code = f"import sys; sys.modules[{package!r}] = None; from aries.cli import main; "
    code += "sys.exit(main(['serve', '--model', 'embedded']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"aries serve: error: aries serve needs the serve extra ({package} is not installed): "
        "pip install 'aries-llm[serve]'"
    ]
