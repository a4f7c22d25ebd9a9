"""Score stage: alignment with chains, cross-prompt batching, None accounting, file output."""

from __future__ import annotations

import reasoning_gym

from aries.core.jsonl import read_jsonl
from aries.method.score import score_chains, score_file, score_stats
from aries.rewards import make_reward_source


def _records():
    entries = reasoning_gym.create_dataset("basic_arithmetic", size=2, seed=7)
    records = []
    for index, entry in enumerate(entries):
        records.append(
            {
                "id": f"p{index}",
                "prompt": entry["question"] + " End with 'Answer: <number>'.",
                "question": entry["question"],
                "answer": entry["answer"],
                "metadata": entry["metadata"],
                "source": "reasoning-gym:basic_arithmetic",
                "chain": [
                    {"round": 0, "text": "Answer: 0.5", "finish_reason": "stop"},
                    {"round": 1, "text": f"Answer: {entry['answer']}", "finish_reason": "stop"},
                ],
                "samples": [{"sample": 0, "text": "no idea", "finish_reason": "stop"}],
            }
        )
    records.append(
        {
            "id": "open",
            "prompt": "Write a poem.",
            "source": "mt-bench",
            "chain": [{"round": 0, "text": "Roses.", "finish_reason": "stop"}],
        }
    )
    return records


class CountingSource:
    """Wraps a source and records batch sizes: the stage must call it once for everything."""

    def __init__(self, inner):
        self.inner, self.name, self.calls = inner, inner.name, []

    def score(self, items):
        self.calls.append(len(items))
        return self.inner.score(items)


def test_scores_align_with_chain_then_samples_and_batch_across_prompts():
    source = CountingSource(make_reward_source("verifier"))
    records = score_chains(_records(), source)
    assert source.calls == [7]
    assert records[0] == {
        "id": "p0",
        "source": "verifier",
        "chain_scores": [0.0, 1.0],
        "sample_scores": [0.0],
    }
    assert records[2]["chain_scores"] == [None] and records[2]["sample_scores"] == []
    stats = score_stats(records)
    assert stats["responses"] == 7 and stats["unscored"] == 1 and stats["prompts"] == 3
    assert stats["mean"] == 2 / 6


def test_score_file_writes_jsonl(tmp_path):
    from aries.core.jsonl import atomic_write_jsonl

    atomic_write_jsonl(tmp_path / "chains.jsonl", _records())
    stats = score_file(tmp_path / "chains.jsonl", make_reward_source("verifier"), tmp_path / "s")
    written = read_jsonl(tmp_path / "s")
    assert [r["id"] for r in written] == ["p0", "p1", "open"]
    assert stats["unscored"] == 1
