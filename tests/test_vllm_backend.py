"""The `vllm` backend. vLLM needs a CUDA GPU: these tests skip where it is not installed, except
the one that checks the message a user gets when it is missing."""

from __future__ import annotations

import sys

import pytest

from aries import AriesError
from aries.backends import Sampling, make_backend
from aries.backends.vllm import prompt_token_ids, request_seeds


def test_missing_vllm_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail even if installed
    with pytest.raises(AriesError, match=r"pip install 'aries-llm\[vllm\]'"):
        make_backend("vllm", "embedded", dtype="auto")


def test_prompt_tokens_match_the_hf_backend(tiny_model_path):
    from aries.backends.hf import HFBackend

    hf = HFBackend(str(tiny_model_path))
    conversation = [{"role": "user", "content": "What is 2 + 3?"}]
    assert prompt_token_ids(hf.tokenizer, conversation) == hf._encode(conversation)
    hf.tokenizer.chat_template = None  # a base model: the plain template with a BOS token
    assert prompt_token_ids(hf.tokenizer, conversation) == hf._encode(conversation)


def test_request_seeds_depend_on_content_and_repeat_only():
    a, b = [{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]
    seeds = request_seeds(5, [a, a, b])
    assert len(set(seeds)) == 3
    assert request_seeds(5, [b, a, a]) == [seeds[2], seeds[0], seeds[1]]
    assert request_seeds(6, [a])[0] != seeds[0]


@pytest.fixture(scope="module")
def vllm_backend(embedded_path):
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    backend = make_backend("vllm", str(embedded_path), dtype="float32", gpu_memory_utilization=0.3)
    yield backend


def test_vllm_generates_hf_compatible_records(vllm_backend, embedded_path):
    from aries.backends.hf import HFBackend

    conversations = [[{"role": "user", "content": f"What is {i} + {i}?"}] for i in range(4)]
    greedy = Sampling(max_new_tokens=16, temperature=0.0)
    generations = vllm_backend.generate(conversations, greedy)
    hf = HFBackend(str(embedded_path), device="cuda", dtype="float32")
    expected = hf.generate(conversations, greedy)
    assert [g.prompt_tokens for g in generations] == [g.prompt_tokens for g in expected]
    assert all(g.finish_reason in ("stop", "length") for g in generations)
    assert all(1 <= g.completion_tokens <= 16 for g in generations)
    # Greedy fp32 decoding of the same tokens: the first words agree with transformers.
    assert [g.text[:10] for g in generations] == [g.text[:10] for g in expected]
    assert vllm_backend.context_length == hf.context_length


def test_vllm_sampling_is_seeded(vllm_backend):
    conversation = [[{"role": "user", "content": "Tell me a story."}]]
    sampled = Sampling(max_new_tokens=12, temperature=1.0, seed=3)
    first = vllm_backend.generate(conversation * 2, sampled)
    again = vllm_backend.generate(conversation * 2, sampled)
    assert [g.text for g in first] == [g.text for g in again]
    assert first[0].text != first[1].text  # parallel samples are not copies


def test_vllm_close_frees_gpu_memory(vllm_backend):
    import torch

    vllm_backend.close()
    free, total = torch.cuda.mem_get_info()
    assert free > 0.8 * total
