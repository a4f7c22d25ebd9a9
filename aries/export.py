"""Answer files for the standard external judges, from any chains file and any refinement round.

A user with API access scores a run with AlpacaEval, Arena-Hard or MT-Bench unchanged, so each
file follows that tool's own format:
- AlpacaEval `model_outputs.json`: a JSON list of `{"instruction", "output", "generator"}`.
- Arena-Hard answers (`data/arena-hard-v0.1/model_answer/<model>.jsonl`): one line per question,
  `{"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns": [{"content",
  "token_len"}]}], "tstamp"}` (`token_len` feeds its length-controlled scores).
- MT-Bench answers (FastChat `llm_judge/data/mt_bench/model_answer/<model>.jsonl`): same envelope
  but `turns` is a list of strings. aries generates the first turn only, so the file holds one
  turn per question (FastChat's single-answer grading of turn 1 works; turn-2 grading does not).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from aries import AriesError
from aries.jsonl import atomic_write_json, atomic_write_jsonl, read_jsonl

FORMATS = ("alpaca-eval", "arena-hard", "mt-bench")


def load_chains(path: str | Path) -> list[dict[str, Any]]:
    """Chain records from a chains JSONL file, or from an `eval.json` (its `chains_path`)."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise AriesError(f"{path}: cannot read evaluation file ({error})") from None
        if "chains_path" not in result:
            raise AriesError(f"{path}: not an aries eval.json (no chains_path)")
        path = path.parent / result["chains_path"]
    records = read_jsonl(path)
    if not records or "chain" not in records[0]:
        raise AriesError(f"{path}: not a chains file (records need a 'chain' list)")
    return records


def pick_round(record: dict[str, Any], round_index: int) -> dict[str, Any]:
    """The chain step at `round_index` (negative counts from the end; -1 is the last round)."""
    chain = record["chain"]
    try:
        return chain[round_index]
    except IndexError:
        raise AriesError(
            f"record {record['id']}: round {round_index} requested but the chain has "
            f"{len(chain)} responses (rounds 0..{len(chain) - 1})"
        ) from None


def _question_id(record: dict[str, Any]) -> Any:
    """The benchmark's own question id when the source kept it (MT-Bench uses integers)."""
    return (record.get("metadata") or {}).get("question_id", record["id"])


def _answer_id(model_id: str, question_id: Any, text: str) -> str:
    """Deterministic, so re-exporting the same outputs gives the same file."""
    return hashlib.sha256(f"{model_id}\0{question_id}\0{text}".encode()).hexdigest()[:22]


def to_alpaca_eval(records: list[dict], round_index: int, model_id: str) -> list[dict]:
    return [
        {
            "instruction": record["prompt"],
            "output": pick_round(record, round_index)["text"],
            "generator": model_id,
        }
        for record in records
    ]


def to_answer_lines(records: list[dict], round_index: int, model_id: str, style: str) -> list[dict]:
    """Arena-Hard (`style='arena-hard'`) or FastChat MT-Bench (`'mt-bench'`) answer records."""
    tstamp = time.time()
    lines = []
    for record in records:
        step = pick_round(record, round_index)
        question_id = _question_id(record)
        if style == "arena-hard":
            turn = {"content": step["text"], "token_len": step.get("completion_tokens", 0)}
        else:
            turn = step["text"]
        lines.append(
            {
                "question_id": question_id,
                "answer_id": _answer_id(model_id, question_id, step["text"]),
                "model_id": model_id,
                "choices": [{"index": 0, "turns": [turn]}],
                "tstamp": tstamp,
            }
        )
    return lines


def export(
    chains_path: str | Path,
    out_path: str | Path,
    *,
    fmt: str,
    model_id: str,
    round_index: int = -1,
) -> int:
    """Write one round of a chains file (or eval.json) in an external judge's format.

    Returns the number of answers written.
    """
    if fmt not in FORMATS:
        raise AriesError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    records = load_chains(chains_path)
    if fmt == "alpaca-eval":
        atomic_write_json(out_path, to_alpaca_eval(records, round_index, model_id))
    else:
        atomic_write_jsonl(out_path, to_answer_lines(records, round_index, model_id, fmt))
    return len(records)
