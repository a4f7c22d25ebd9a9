"""`aries serve` on loopback over the tiny model, called with the official `openai` client."""

from __future__ import annotations

import threading

import httpx
import pytest
from openai import BadRequestError, OpenAI

from aries.backends import Sampling
from aries.backends.hf import HFBackend
from aries.collect import run_chains
from aries.serve import create_app, running
from aries.vote import vote_round


@pytest.fixture(scope="module")
def server(tiny_model_path):
    backend = HFBackend(str(tiny_model_path), batch_size=8)
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
        rounds=2,
        sampling=Sampling(max_new_tokens=6, temperature=0.0),
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
        ({"stream": True}, "stream"),
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
