"""The `vllm` backend. The tests marked `vllm` run the real engine (vLLM's x86 CPU build, in
.venv-vllm: `make test-vllm`) on the embedded model, then on a LoRA policy (base model plus a
`LoRARequest`, the adapters of two iterations stacked into one) in the engine that starts after
the first one closed; elsewhere they skip, and the others check what needs no engine (the install
hint, prompt tokens, request seeds)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

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


# Eager mode: torch.compile would add about a minute to every engine start on a CPU.
ENGINE = {"dtype": "float32", "max_model_len": 1024, "engine_options": {"enforce_eager": True}}
PROMPTS = [
    [{"role": "user", "content": f"What is {a} + {b}? Answer with the number."}]
    for a, b in [(i * 7 % 23, i * 5 % 17) for i in range(16)]
]


def child_processes() -> dict[int, str]:
    """This process's live children and their command lines (vLLM's engine core runs in one),
    less multiprocessing's resource tracker, which lives as long as this process, and zombies
    (an exited engine core not reaped yet holds neither memory nor a port)."""
    me = str(os.getpid())
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z" and "resource_tracker" not in command:
            children[int(stat.parent.name)] = command
    return children


@pytest.fixture(scope="module")
def lora_policy(embedded_path, tmp_path_factory):
    """π_2 of a LoRA run on the embedded model: the adapters of two iterations."""
    pytest.importorskip("vllm", reason="the real engine runs in .venv-vllm: make test-vllm")
    from aries.core.testing import save_lora_iteration

    first = save_lora_iteration(embedded_path, tmp_path_factory.mktemp("iter_0"), seed=1)
    return save_lora_iteration(first, tmp_path_factory.mktemp("iter_1"), seed=2)


@pytest.fixture(scope="module")
def vllm_backend(embedded_path):
    pytest.importorskip("vllm", reason="the real engine runs in .venv-vllm: make test-vllm")
    return make_backend("vllm", str(embedded_path), **ENGINE)


@pytest.mark.vllm
def test_vllm_greedy_agrees_with_the_hf_backend(vllm_backend, embedded_path):
    from aries.backends.hf import HFBackend

    greedy = Sampling(max_new_tokens=32, temperature=0.0)
    generations = vllm_backend.generate(PROMPTS, greedy)
    hf = HFBackend(str(embedded_path), dtype="float32", batch_size=16)
    expected = hf.generate(PROMPTS, greedy)
    assert [g.prompt_tokens for g in generations] == [g.prompt_tokens for g in expected]
    assert all(g.finish_reason in ("stop", "length") for g in generations)
    # Two fp32 engines on the same tokens: their matmuls sum in different orders, so a near tie
    # may go the other way after a few tokens. Measured: all 16 identical (vLLM 0.32
    # CPU build, transformers 5.19); fewer than 14 means something is really wrong.
    same = sum(g.text == e.text for g, e in zip(generations, expected))
    assert same >= 14, [(g.text, e.text) for g, e in zip(generations, expected)]
    assert vllm_backend.context_length == 1024


@pytest.mark.vllm
def test_vllm_sampling_is_seeded(vllm_backend):
    conversation = [[{"role": "user", "content": "Tell me a story."}]]
    sampled = Sampling(max_new_tokens=12, temperature=1.0, seed=3)
    first = vllm_backend.generate(conversation * 2, sampled)
    again = vllm_backend.generate(conversation * 2, sampled)
    assert [g.text for g in first] == [g.text for g in again]
    assert first[0].text != first[1].text  # parallel samples are not copies
    other = vllm_backend.generate(conversation, Sampling(12, 1.0, seed=4))
    assert other[0].text != first[0].text


@pytest.mark.vllm
def test_vllm_close_ends_the_engine_and_a_lora_policy_starts(
    vllm_backend, lora_policy, embedded_path
):
    """The next engine in this process, after `close()`, is a LoRA policy's (as in a LoRA run's
    next iteration): one start for both checks (an engine start is 20-40 s on a CPU)."""
    from aries.backends.hf import HFBackend

    greedy = Sampling(max_new_tokens=24, temperature=0.0)
    before = vllm_backend.generate(PROMPTS, greedy)
    engines = child_processes()
    assert engines
    vllm_backend.close()  # the last test of the module: the fixture's engine is gone after it
    left = {pid: command for pid, command in child_processes().items() if pid in engines}
    assert not left, left
    again = make_backend("vllm", str(lora_policy), **ENGINE)
    try:
        assert again.lora_request is not None  # the base with an adapter, not merged weights
        generations = again.generate(PROMPTS, greedy)
        again.lora_request = None  # the base model alone, in the same engine
        assert [g.text for g in again.generate(PROMPTS, greedy)] == [g.text for g in before]
    finally:
        again.close()
    merged = HFBackend(str(lora_policy), dtype="float32", batch_size=16).generate(PROMPTS, greedy)
    base = HFBackend(str(embedded_path), dtype="float32", batch_size=16).generate(PROMPTS, greedy)
    assert [g.prompt_tokens for g in generations] == [g.prompt_tokens for g in merged]
    # Measured (vLLM 0.32 CPU build): 16 of 16 identical to the merged weights in the hf
    # backend, fewer than 14 means the adapter is applied wrong; 5 of 16 identical to the base
    # model's answers, so an engine that dropped the adapter fails the second check.
    same = sum(g.text == m.text for g, m in zip(generations, merged))
    assert same >= 14, [(g.text, m.text) for g, m in zip(generations, merged)]
    as_base = sum(g.text == b.text for g, b in zip(generations, base))
    assert as_base <= 8, [(g.text, b.text) for g, b in zip(generations, base)]
