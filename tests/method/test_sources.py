"""Prompt sources (aries/method/sources.py): files with field mapping, generated and built-in
sources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aries import AriesError
from aries.method.sources import REASONING_GYM_SUFFIX, PromptSource, load_prompts, parse_sharegpt

DATA = Path(__file__).parents[1] / "data"
MAPPING = {"prompt": "question", "id": "qid", "answer": "gold"}
ROWS = [
    {"qid": "q1", "question": "What is 2 + 3?", "gold": "5"},
    {"qid": "q2", "question": "Name a primary colour.", "gold": "red"},
    {"qid": "q3", "question": "Spell 'cat' backwards.", "gold": "tac"},
]


def _source(name: str | Path, **kwargs) -> PromptSource:
    return PromptSource(name=str(name), **kwargs)


# --- source specs -------------------------------------------------------------------------------


def test_parse_spec_string_and_dict():
    spec = "reasoning-gym:basic_arithmetic?size=5&seed=3&max_terms=2&operators=+,-"
    source = PromptSource.parse(spec)
    assert (source.name, source.size, source.seed) == ("reasoning-gym:basic_arithmetic", 5, 3)
    assert source.options == {"max_terms": 2, "operators": ["+", "-"]}
    source = PromptSource.parse({"name": "mt-bench", "size": 4, "category": "math"})
    assert (source.name, source.size, source.options) == ("mt-bench", 4, {"category": "math"})
    with pytest.raises(AriesError, match="expected key=value"):
        PromptSource.parse("mt-bench?size")
    with pytest.raises(AriesError, match=r"^name of prompt source: missing"):
        PromptSource.parse({"size": 3})


# --- files ----------------------------------------------------------------------------------------


def test_jsonl_with_field_mapping_keeps_ids_and_answers():
    records = load_prompts(_source(DATA / "prompts.jsonl", fields=MAPPING))
    assert [r["id"] for r in records] == ["q1", "q2", "q3"]
    assert records[0]["prompt"] == records[0]["question"] == "What is 2 + 3?"
    assert records[0]["answer"] == "5"  # numbers become text
    assert "answer" not in records[1]  # null gold: no answer
    assert records[2]["answer"] == "tac"
    assert all(r["source"] == str(DATA / "prompts.jsonl") for r in records)


def test_csv_without_id_column_gets_generated_ids():
    records = load_prompts(
        _source(DATA / "prompts.csv", fields={"prompt": "question", "answer": "gold"})
    )
    assert [r["id"] for r in records] == ["prompts-0", "prompts-1"]
    assert records[1]["prompt"] == "A question, with a comma"
    assert [r["answer"] for r in records] == ["5", "x"]


def test_generated_ids_are_positions_in_the_file_with_offset_and_size(tmp_path):
    path = tmp_path / "plain.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(5)))
    records = load_prompts(_source(path, offset=2, size=2, suffix=" (short)"))
    assert [r["id"] for r in records] == ["plain-2", "plain-3"]
    assert [r["prompt"] for r in records] == ["p2 (short)", "p3 (short)"]
    assert [r["question"] for r in records] == ["p2", "p3"]


@pytest.mark.parametrize("kind", ["json", "json-data", "parquet", "disk", "disk-dict"])
def test_json_parquet_and_saved_datasets(tmp_path, kind):
    if kind == "json":
        path = tmp_path / "p.json"
        path.write_text(json.dumps(ROWS))
    elif kind == "json-data":
        path = tmp_path / "p.json"
        path.write_text(json.dumps({"version": 1, "data": ROWS}))
    elif kind == "parquet":
        import pandas as pd

        path = tmp_path / "p.parquet"
        pd.DataFrame(ROWS).to_parquet(path)
    else:
        import datasets

        path = tmp_path / "saved"
        dataset = datasets.Dataset.from_list(ROWS)
        if kind == "disk-dict":
            dataset = datasets.DatasetDict({"train": dataset, "test": dataset.select([0])})
        dataset.save_to_disk(str(path))
    records = load_prompts(_source(path, fields=MAPPING))
    assert [(r["id"], r["prompt"], r["answer"]) for r in records] == [
        (row["qid"], row["question"], row["gold"]) for row in ROWS
    ]
    if kind == "disk-dict":
        test = load_prompts(_source(path, fields=MAPPING, split="test"))
        assert [r["id"] for r in test] == ["q1"]
        with pytest.raises(AriesError, match="no split 'valid'"):
            load_prompts(_source(path, fields=MAPPING, split="valid"))


def test_duplicate_ids_are_rejected(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text(
        '{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": "y"}\n{"id": "a", "prompt": "z"}\n'
    )
    with pytest.raises(AriesError, match="duplicate prompt id 'a'"):
        load_prompts(str(path))


# --- bad files ------------------------------------------------------------------------------------


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(AriesError, match="prompt file not found"):
        load_prompts(str(tmp_path / "missing.jsonl"))
    with pytest.raises(AriesError, match="no such file or folder"):
        load_prompts(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(AriesError, match="unsupported prompt file type"):
        load_prompts(str(tmp_path / "notes.txt"))
    (tmp_path / "folder.jsonl").mkdir()
    with pytest.raises(AriesError, match="not a saved `datasets` folder"):
        load_prompts(str(tmp_path / "folder.jsonl"))


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(AriesError, match="file is empty"):
        load_prompts(str(path))


def test_blank_lines_only_gives_no_prompts(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_text("\n  \n")
    with pytest.raises(AriesError, match="no prompts"):
        load_prompts(str(path))


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"prompt": "café"}\n'.encode("latin-1"))
    with pytest.raises(AriesError, match=r"latin1\.jsonl: not UTF-8 text"):
        load_prompts(str(path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.jsonl"
    path.write_text('{"prompt": "x"}\n')
    path.chmod(0)
    with pytest.raises(AriesError, match="cannot read file"):
        load_prompts(str(path))


def test_read_error_is_an_aries_error(tmp_path, monkeypatch):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "x"}\n')

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(AriesError, match=r"p\.jsonl: cannot read file \(Permission denied\)"):
        load_prompts(str(path))


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": "b",}\n{"prompt": "c"}\n')
    with pytest.raises(AriesError) as error:
        load_prompts(str(path))
    assert f"{path}:3: malformed JSON" in str(error.value)
    path.write_text('{"prompt": "a"}\n["not", "an", "object"]\n')
    with pytest.raises(AriesError, match=r"bad\.jsonl:2: expected a JSON object, got list"):
        load_prompts(str(path))


def test_malformed_json_and_parquet(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"prompt": "a"},\n  {"prompt": \n]')
    with pytest.raises(AriesError, match=r"bad\.json:4: malformed JSON"):
        load_prompts(str(path))
    path.write_text('{"prompt": "a"}')
    with pytest.raises(AriesError, match="expected a JSON list of objects"):
        load_prompts(str(path))
    broken = tmp_path / "bad.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(AriesError, match="cannot read Parquet"):
        load_prompts(str(broken))


def test_missing_or_empty_prompt_field(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n{"text": "no prompt field"}\n')
    with pytest.raises(AriesError, match=r"p\.jsonl:2: missing prompt field 'prompt'.*--field"):
        load_prompts(str(path))
    path.write_text('{"prompt": "ok"}\n{"prompt": "   "}\n')
    with pytest.raises(AriesError, match=r"p\.jsonl:2: field 'prompt' is empty or not text"):
        load_prompts(str(path))
    path.write_text('{"prompt": 42}\n')
    with pytest.raises(AriesError, match="empty or not text"):
        load_prompts(str(path))
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("question,gold\nfine,1\n,2\n")
    with pytest.raises(AriesError, match=r"p\.csv:3: field 'question' is empty"):
        load_prompts(_source(csv_path, fields={"prompt": "question"}))


# --- reasoning-gym --------------------------------------------------------------------------------

ARITHMETIC = "reasoning-gym:basic_arithmetic?size=5&seed=3&max_terms=2&operators=+,-"


def test_reasoning_gym_keeps_gold_answers_and_is_deterministic_per_seed():
    first = load_prompts(ARITHMETIC)
    assert len(first) == 5
    assert [r["id"] for r in first] == [f"basic_arithmetic-s3-{i}" for i in range(5)]
    for record in first:
        assert record["prompt"] == record["question"] + REASONING_GYM_SUFFIX
        assert record["source"] == "reasoning-gym:basic_arithmetic"
        assert record["metadata"]["num_terms"] == 2
        assert "*" not in record["metadata"]["expression"]
        # the gold answer is the value of the expression
        expression = record["metadata"]["expression"]
        assert record["answer"] == str(eval(expression))  # noqa: S307 - generated arithmetic
    assert load_prompts(ARITHMETIC) == first
    other = load_prompts(ARITHMETIC.replace("seed=3", "seed=4"))
    assert [r["question"] for r in other] != [r["question"] for r in first]
    assert {r["id"] for r in other}.isdisjoint(r["id"] for r in first)


def test_reasoning_gym_offset_continues_the_same_sequence():
    whole = load_prompts(ARITHMETIC)
    tail = load_prompts(ARITHMETIC.replace("size=5", "size=2") + "&offset=3")
    assert tail == whole[3:]


def test_reasoning_gym_bad_task_or_option():
    with pytest.raises(AriesError, match="reasoning-gym has no task 'no_such_task'"):
        load_prompts("reasoning-gym:no_such_task?size=2")
    with pytest.raises(AriesError, match="unknown config key 'no_such_option of prompt source"):
        load_prompts("reasoning-gym:basic_arithmetic?size=2&no_such_option=1")


# --- MT-Bench and ShareGPT ------------------------------------------------------------------------


def test_mt_bench_has_80_questions_and_30_references():
    records = load_prompts("mt-bench")
    assert len(records) == 80
    assert len({r["id"] for r in records}) == 80
    with_reference = [r for r in records if "answer" in r]
    assert len(with_reference) == 30
    assert {r["metadata"]["category"] for r in with_reference} == {"math", "reasoning", "coding"}
    assert all(r["prompt"].strip() and r["answer"].strip() for r in with_reference)
    math = load_prompts({"name": "mt-bench", "category": "math", "size": 3})
    assert len(math) == 3 and all(r["metadata"]["category"] == "math" for r in math)


def test_parse_sharegpt_stops_cleanly_at_the_cut():
    text = (DATA / "sharegpt_cut.json").read_text(encoding="utf-8")
    records = parse_sharegpt(text, PromptSource(name="sharegpt", size=100))
    # a1, a4, a6 start with a non-empty human turn; a7 is cut off and must not appear
    assert [r["id"] for r in records] == ["sharegpt-a1", "sharegpt-a4", "sharegpt-a6"]
    assert records[0]["prompt"] == "Hello there"
    assert records[1]["prompt"] == 'Write a haiku about "rain".'
    assert records[2]["prompt"] == "Explain [brackets], {braces}"
    assert all(r["source"] == "sharegpt" for r in records)
    # size and offset count usable prompts only
    two = parse_sharegpt(text, PromptSource(name="sharegpt", size=2, offset=1))
    assert [r["id"] for r in two] == ["sharegpt-a4", "sharegpt-a6"]


def test_parse_sharegpt_cut_anywhere_never_raises():
    text = (DATA / "sharegpt_cut.json").read_text(encoding="utf-8")
    counts = [
        len(parse_sharegpt(text[:cut], PromptSource(name="sharegpt")))
        for cut in range(1, len(text) + 1)
    ]
    assert counts == sorted(counts)  # a longer prefix never yields fewer records
    assert counts[-1] == 3
    complete = json.dumps(json.loads(text[: text.rindex("},\n  {")] + "}]"))
    assert len(parse_sharegpt(complete, PromptSource(name="sharegpt"))) == 3


def test_sharegpt_package_file():
    records = load_prompts("sharegpt?size=3&offset=1")
    assert len(records) == 3
    first = load_prompts("sharegpt?size=4")
    assert records == first[1:]
    assert all(r["prompt"].strip() and r["id"].startswith("sharegpt-") for r in records)
