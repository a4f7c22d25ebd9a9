"""`aries refine` through `aries.cli.main`: printing, writing, resuming, and every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aries.cli import main
from aries.core.jsonl import read_jsonl
from aries.core.testing import save_tiny_llama

EXISTING = b'{"id": "old", "prompt": "kept", "chain": []}\n'


@pytest.fixture(scope="module")
def short_context_model(tmp_path_factory, tiny_model_path) -> Path:
    """A tiny model whose context is only 128 tokens, to trigger the too-long handling."""
    return save_tiny_llama(
        tmp_path_factory.mktemp("short"),
        tiny_model_path,
        tied=False,
        initializer_range=0.2,
        max_positions=128,
    )


def refine(model: Path, *args: str) -> list[str]:
    return ["refine", "--model", str(model), "--max-new-tokens", "4", *args]


def write_prompts(path: Path, prompts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


def test_single_question_prints_each_round(chatty_model_path, capsys):  # noqa: F811
    assert main(refine(chatty_model_path, "--rounds", "2", "What is 17 * 23?")) == 0
    out = capsys.readouterr().out
    assert out.count("── ") == 4
    assert out.rstrip().endswith("── final answer (last): round 2")
    assert "── answer (4 tokens, length)" in out
    assert "── refinement 1 (4 tokens, length)" in out
    assert "── refinement 2 (4 tokens, length)" in out
    assert out.index("answer") < out.index("refinement 1") < out.index("refinement 2")


def test_prompt_file_writes_chains_with_progress_and_resumes(
    chatty_model_path,  # noqa: F811
    tmp_path,
    capsys,
):
    prompts = write_prompts(tmp_path / "prompts.jsonl", ["What is 2 + 2?", "Hi", "Why?"])
    out = tmp_path / "run" / "chains.jsonl"
    command = refine(chatty_model_path, "--prompts", str(prompts), "--out", str(out))
    assert main([*command, "--rounds", "1", "--temperature", "0.7"]) == 0
    captured = capsys.readouterr()
    assert f"wrote 3 chains (1 refinement rounds) to {out}" in captured.out
    assert "generating" in captured.err and "6/6" in captured.err  # the progress bar
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ["prompts-0", "prompts-1", "prompts-2"]
    assert all([s["round"] for s in r["chain"]] == [0, 1] for r in records)
    assert all(r["picked_round"] == 1 for r in records)  # --pick last, the paper's rule
    complete = out.read_bytes()

    # kill after the first record (half of the second written), then rerun the same command
    lines = complete.splitlines(keepends=True)
    out.write_bytes(lines[0] + lines[1][:10])
    assert main([*command, "--rounds", "1", "--temperature", "0.7"]) == 0
    assert "4/4" in capsys.readouterr().err  # only the two missing prompts were generated
    assert out.read_bytes() == complete


def test_field_mapping_and_size(chatty_model_path, tmp_path):  # noqa: F811
    path = tmp_path / "q.csv"
    path.write_text("qid,question,gold\na,First?,1\nb,Second?,2\nc,Third?,3\n")
    out = tmp_path / "chains.jsonl"
    args = ["--prompts", str(path), "--out", str(out), "--rounds", "0", "--size", "2"]
    fields = ["--field", "prompt=question", "--field", "id=qid", "--field", "answer=gold"]
    assert main(refine(chatty_model_path, *args, *fields)) == 0
    records = read_jsonl(out)
    assert [(r["id"], r["prompt"], r["answer"]) for r in records] == [
        ("a", "First?", "1"),
        ("b", "Second?", "2"),
    ]


def test_built_in_source(chatty_model_path, tmp_path):  # noqa: F811
    out = tmp_path / "chains.jsonl"
    source = "reasoning-gym:basic_arithmetic?size=2&seed=1&max_terms=2"
    assert main(refine(chatty_model_path, "--prompts", source, "--out", str(out))) == 0
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ["basic_arithmetic-s1-0", "basic_arithmetic-s1-1"]
    assert all(r["answer"] and len(r["chain"]) == 3 for r in records)


# --- bad input: exit code 2, one clear line, the existing output untouched ------------------------


def run_failing(args: list[str], out: Path, capsys) -> str:
    out.write_bytes(EXISTING)
    assert main([*args, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert out.read_bytes() == EXISTING
    # transformers may draw its weight-loading bar first; then exactly one error line, at the end
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == lines[-1:] and lines[-1].startswith("aries refine: error: "), captured.err
    return lines[-1]


def test_bad_prompt_files(chatty_model_path, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "chains.jsonl"
    base = refine(chatty_model_path, "--prompts")

    message = run_failing([*base, str(tmp_path / "missing.jsonl")], out, capsys)
    assert "missing.jsonl: prompt file not found" in message

    (tmp_path / "empty.jsonl").write_text("")
    message = run_failing([*base, str(tmp_path / "empty.jsonl")], out, capsys)
    assert "empty.jsonl: file is empty" in message

    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b"\n{"prompt": "c"}\n')
    message = run_failing([*base, str(tmp_path / "bad.jsonl")], out, capsys)
    assert f"{tmp_path / 'bad.jsonl'}:2: malformed JSON" in message

    (tmp_path / "nofield.jsonl").write_text('{"prompt": "a"}\n{"question": "b"}\n')
    message = run_failing([*base, str(tmp_path / "nofield.jsonl")], out, capsys)
    assert "nofield.jsonl:2: missing prompt field 'prompt'" in message

    (tmp_path / "blank.jsonl").write_text('{"prompt": ""}\n')
    message = run_failing([*base, str(tmp_path / "blank.jsonl")], out, capsys)
    assert "blank.jsonl:1: field 'prompt' is empty or not text" in message

    (tmp_path / "latin1.jsonl").write_bytes('{"prompt": "café"}\n'.encode("latin-1"))
    message = run_failing([*base, str(tmp_path / "latin1.jsonl")], out, capsys)
    assert "latin1.jsonl: not UTF-8 text" in message

    good = write_prompts(tmp_path / "good.jsonl", ["Hi"])
    message = run_failing([*base, str(good), "--field", "prompt"], out, capsys)
    assert "--field 'prompt': expected prompt=NAME" in message


def test_question_and_rounds_checks(chatty_model_path, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "chains.jsonl"
    good = write_prompts(tmp_path / "good.jsonl", ["Hi"])
    message = run_failing(refine(chatty_model_path), out, capsys)
    assert "give either a question or --prompts" in message
    message = run_failing(refine(chatty_model_path, "Hi", "--prompts", str(good)), out, capsys)
    assert "give either a question or --prompts" in message
    message = run_failing(refine(chatty_model_path, "Hi", "--rounds", "-1"), out, capsys)
    assert "--rounds must be >= 0" in message


def test_unknown_option_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["refine", "--no-such-option", "Hi"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["refine", "--rounds", "two", "Hi"])
    assert exit_info.value.code == 2
    assert "invalid int value: 'two'" in capsys.readouterr().err


def test_prompt_longer_than_context_skipped_or_error(short_context_model, tmp_path, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", ["Hi", "word " * 150, "Why?", "long " * 200])
    out = tmp_path / "chains.jsonl"
    args = refine(short_context_model, "--prompts", str(prompts), "--rounds", "1")

    message = run_failing([*args, "--too-long", "error"], out, capsys)
    assert "2 prompt(s) do not fit the model's context (p-1, p-3...)" in message

    out.unlink()
    assert main([*args, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning: skipped 2 prompt(s) do not fit the model's context" in captured.err
    assert [r["id"] for r in read_jsonl(out)] == ["p-0", "p-2"]

    only_long = write_prompts(tmp_path / "long.jsonl", ["word " * 150])
    message = run_failing(
        refine(short_context_model, "--prompts", str(only_long), "--rounds", "1"), out, capsys
    )
    assert "1 prompt(s) do not fit" in message
    # a single question that cannot fit is an error too
    assert main(refine(short_context_model, "word " * 150)) == 2
    assert "do not fit the model's context" in capsys.readouterr().err


def test_bad_models(tmp_path, tiny_model_path, capsys, monkeypatch):
    monkeypatch.setenv("ARIES_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "chains.jsonl"
    good = write_prompts(tmp_path / "good.jsonl", ["Hi"])
    base = ["refine", "--prompts", str(good), "--model"]

    message = run_failing([*base, str(tmp_path / "no-model")], out, capsys)
    assert "no-model: model folder not found" in message

    folder = tmp_path / "no-weights"
    folder.mkdir()
    shutil.copy(tiny_model_path / "config.json", folder)
    message = run_failing([*base, str(folder)], out, capsys)
    assert "no-weights: no *.safetensors weights in the folder" in message

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00 not really")
    message = run_failing([*base, str(broken)], out, capsys)
    assert f"{broken}: cannot load GGUF file" in message

    message = run_failing([*base, str(tmp_path / "missing.gguf")], out, capsys)
    assert "missing.gguf: GGUF file not found" in message

    message = run_failing([*base, "no-such-org/no-such-model"], out, capsys)
    assert "no-such-org/no-such-model: cannot load model" in message

    message = run_failing([*base, str(tiny_model_path), "--dtype", "fp7"], out, capsys)
    assert "unknown dtype 'fp7'" in message

    with pytest.raises(SystemExit) as exit_info:  # a choice of GenerationConfig.backend
        main([*base, str(tiny_model_path), "--backend", "nope", "--out", str(out)])
    assert exit_info.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_pick_vote_records_the_voted_round(chatty_model_path, tmp_path):  # noqa: F811
    from aries.method.vote import vote_round

    prompts = write_prompts(tmp_path / "prompts.jsonl", ["What is 2 + 2?", "Hi"])
    out = tmp_path / "chains.jsonl"
    command = refine(chatty_model_path, "--prompts", str(prompts), "--out", str(out))
    assert main([*command, "--rounds", "2", "--pick", "vote"]) == 0
    for record in read_jsonl(out):
        assert record["picked_round"] == vote_round([s["text"] for s in record["chain"]])
