"""Refinement chains (aries/method/collect.py) on a tiny random Llama with the real tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aries.backends import Generation, Message, Sampling
from aries.backends.hf import HFBackend
from aries.core.jsonl import read_jsonl
from aries.core.views import DEFAULT_REFINE_INSTRUCTION, direct_messages, refine_messages
from aries.method.collect import Chains, run_chains, split_by_context

PROMPTS = [
    {"id": f"p{i}", "prompt": question, "answer": str(i)}
    for i, question in enumerate(
        [
            "What is 2 + 2?",
            "Name three rivers in Europe and say which one is the longest.",
            "Hi",
            "Why is the sky blue?",
            "Write a haiku about autumn leaves falling.",
        ]
    )
]


class RecordingBackend:
    """The real hf backend, remembering every call's conversations and sampling."""

    def __init__(self, inner: HFBackend):
        self.inner = inner
        self.name = inner.name
        self.calls: list[tuple[list[list[Message]], Sampling]] = []

    def generate(self, conversations: list[list[Message]], sampling: Sampling) -> list[Generation]:
        self.calls.append((conversations, sampling))
        return self.inner.generate(conversations, sampling)

    def count_prompt_tokens(self, conversation: list[Message]) -> int:
        return self.inner.count_prompt_tokens(conversation)

    @property
    def context_length(self) -> int | None:
        return self.inner.context_length

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def hf(chatty_model_path) -> HFBackend:  # noqa: F811
    return HFBackend(str(chatty_model_path), batch_size=4, device="cpu")


@pytest.fixture
def backend(hf) -> RecordingBackend:
    return RecordingBackend(hf)


def test_chain_has_k_plus_one_rounds_and_refine_prompts_hold_the_previous_answer(backend):
    sampling = Sampling(max_new_tokens=6)
    records = run_chains(backend, PROMPTS, Chains(2, sampling), progress=False)
    assert [r["id"] for r in records] == [p["id"] for p in PROMPTS]
    for prompt, record in zip(PROMPTS, records):
        assert record["prompt"] == prompt["prompt"] and record["answer"] == prompt["answer"]
        assert [step["round"] for step in record["chain"]] == [0, 1, 2]
        for step in record["chain"]:
            assert set(step) == {
                "round",
                "text",
                "finish_reason",
                "prompt_tokens",
                "completion_tokens",
            }
            assert step["finish_reason"] == "length" and step["completion_tokens"] == 6
            assert step["text"]
        # refine prompts are longer: they carry the previous answer and the instruction
        tokens = [step["prompt_tokens"] for step in record["chain"]]
        assert tokens[1] > tokens[0] and tokens[2] > tokens[0]
    # one batched call per round, all prompts advancing together
    assert len(backend.calls) == 3
    assert backend.calls[0][0] == [direct_messages(p["prompt"]) for p in PROMPTS]
    for round_index in (1, 2):
        conversations, round_sampling = backend.calls[round_index]
        assert conversations == [
            refine_messages(
                p["prompt"], r["chain"][round_index - 1]["text"], DEFAULT_REFINE_INSTRUCTION
            )
            for p, r in zip(PROMPTS, records)
        ]
        assert round_sampling.seed != sampling.seed  # each round draws fresh randomness
        rendered = backend.inner.render(conversations[0])
        assert records[0]["chain"][round_index - 1]["text"] in rendered
        assert DEFAULT_REFINE_INSTRUCTION in rendered


def test_zero_rounds_and_custom_instruction(backend):
    records = run_chains(backend, PROMPTS[:2], Chains(0, Sampling(4)), progress=False)
    assert [len(r["chain"]) for r in records] == [1, 1]
    run_chains(
        backend,
        PROMPTS[:1],
        Chains(1, Sampling(4), instruction="Try again."),
        progress=False,
    )
    assert backend.calls[-1][0][0][-1] == {"role": "user", "content": "Try again."}


def test_n_samples(backend):
    sampling = Sampling(max_new_tokens=6, temperature=1.0, seed=3)
    records = run_chains(backend, PROMPTS[:3], Chains(1, sampling, samples=3), progress=False)
    for record in records:
        assert [s["sample"] for s in record["samples"]] == [0, 1, 2]
        texts = [s["text"] for s in record["samples"]]
        assert len(set(texts)) == 3  # independent samples, not copies
        assert all(s["completion_tokens"] == 6 for s in record["samples"])
        assert len(record["chain"]) == 2
    assert len(backend.calls) == 3  # two rounds + one call for all samples
    assert len(backend.calls[-1][0]) == 9


def test_answer_temperature_applies_to_the_first_answer_only(backend):
    sampling = Sampling(max_new_tokens=6, temperature=1.0, seed=3)
    greedy = run_chains(backend, PROMPTS[:2], Chains(0, Sampling(6)), progress=False)
    records = run_chains(
        backend,
        PROMPTS[:2],
        Chains(1, sampling, samples=1, answer_temperature=0.0),
        progress=False,
    )
    assert [c.temperature for _, c in backend.calls[-3:]] == [0.0, 1.0, 1.0]
    assert [r["chain"][0]["text"] for r in records] == [r["chain"][0]["text"] for r in greedy]


def test_chunks_give_the_same_records_as_one_chunk(backend):
    sampling = Sampling(max_new_tokens=5, temperature=0.9, seed=11)
    whole = run_chains(backend, PROMPTS, Chains(1, sampling), progress=False)
    chunked = run_chains(backend, PROMPTS, Chains(1, sampling), chunk_size=2, progress=False)
    assert chunked == whole


def _kill(path: Path, keep_lines: int) -> None:
    """What a kill mid-write leaves: `keep_lines` complete records, then half of the next one."""
    lines = path.read_bytes().splitlines(keepends=True)
    torn = lines[keep_lines][: len(lines[keep_lines]) // 2]
    path.write_bytes(b"".join(lines[:keep_lines]) + torn)


RESUME_CHAINS = Chains(2, Sampling(max_new_tokens=6, temperature=0.8, seed=5), samples=1)
RESUME_OPTIONS = dict(chunk_size=2, progress=False)


@pytest.fixture(scope="module")
def uninterrupted(hf, tmp_path_factory) -> tuple[Path, list[dict]]:
    reference = tmp_path_factory.mktemp("uninterrupted") / "chains.jsonl"
    expected = run_chains(hf, PROMPTS, RESUME_CHAINS, out_path=reference, **RESUME_OPTIONS)
    assert read_jsonl(reference) == expected
    return reference, expected


# keep_lines=1 and 3 cut inside a chunk (chunks of 2), so the rerun batches prompts differently
@pytest.mark.parametrize("keep_lines", [1, 3])
def test_resume_after_kill_gives_exactly_the_uninterrupted_records(
    tmp_path, backend, uninterrupted, keep_lines
):
    reference, expected = uninterrupted
    options = RESUME_OPTIONS
    resumed = tmp_path / "resumed.jsonl"
    shutil.copy(reference, resumed)  # the same run, then killed while writing
    _kill(resumed, keep_lines)
    kept = [r["id"] for r in read_jsonl(resumed, allow_torn_tail=True)]
    assert kept == [p["id"] for p in PROMPTS[:keep_lines]]
    calls_before = len(backend.calls)
    records = run_chains(backend, PROMPTS, RESUME_CHAINS, out_path=resumed, **options)
    assert records == expected
    assert read_jsonl(resumed) == read_jsonl(reference)  # same ids, same texts, no duplicates
    # only the missing prompts were generated again
    regenerated = [c for conversations, _ in backend.calls[calls_before:] for c in conversations]
    assert len(regenerated) == (len(PROMPTS) - keep_lines) * 4  # 3 rounds + 1 sample

    # a complete file: nothing is generated again
    calls_before = len(backend.calls)
    assert run_chains(backend, PROMPTS, RESUME_CHAINS, out_path=resumed, **options) == expected
    assert len(backend.calls) == calls_before
    assert read_jsonl(resumed) == read_jsonl(reference)


def test_split_by_context(backend):
    prompts = [
        {"id": "short", "prompt": "Hi"},
        {"id": "long", "prompt": "word " * 1100},
    ]
    kept, skipped = split_by_context(backend, prompts, Chains(2, Sampling(16)))
    assert [p["id"] for p in kept] == ["short"] and [p["id"] for p in skipped] == ["long"]
    # the refine view with two answers must fit, not only the question
    budget = backend.count_prompt_tokens(refine_messages("Hi", "", DEFAULT_REFINE_INSTRUCTION))
    fits = (backend.context_length - budget) // 2
    kept, _ = split_by_context(backend, prompts[:1], Chains(1, Sampling(fits)))
    assert len(kept) == 1
    kept, _ = split_by_context(backend, prompts[:1], Chains(1, Sampling(fits + 1)))
    assert kept == []
    direct = backend.count_prompt_tokens(direct_messages("Hi"))
    kept, _ = split_by_context(
        backend, prompts[:1], Chains(0, Sampling(backend.context_length - direct))
    )
    assert len(kept) == 1
