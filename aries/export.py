"""Answer files for the standard external judges, from any chains file and any refinement round.

A user with API access scores a run with AlpacaEval, Arena-Hard or MT-Bench unchanged, so each
file follows that tool's own format:
- AlpacaEval `model_outputs.json`: a JSON list of `{"instruction", "output", "generator"}`.
- Arena-Hard answers (`data/arena-hard-v0.1/model_answer/<model>.jsonl`): one line per question,
  `{"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns": [{"content",
  "token_len"}]}], "tstamp"}` (`token_len` feeds its length-controlled scores).
- MT-Bench answers (FastChat `llm_judge/data/mt_bench/model_answer/<model>.jsonl`): same envelope
  but `turns` is a list of strings, one per question turn. FastChat grades both turns, so the
  export answers the follow-up question itself (`answer_second_turns`): the model sees the first
  question and its exported answer, answers the second question and refines that answer as many
  rounds as the exported first turn had, through the same chain code as everywhere else.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from aries import AriesError
from aries.backends import Backend, Sampling
from aries.jsonl import atomic_write_json, atomic_write_jsonl, read_jsonl
from aries.views import DEFAULT_REFINE_INSTRUCTION

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


def answer_second_turns(
    backend: Backend,
    records: list[dict[str, Any]],
    round_index: int,
    *,
    sampling: Sampling,
    instruction: str,
    out_path: str | Path,
) -> dict[str, str]:
    """Second-turn answers by record id: the follow-up question (`metadata.turns[1]`) answered
    after the first question and its round-`round_index` answer, then refined to that round.

    The chains go to `out_path` and a rerun resumes them; a different first answer (another
    round or model) makes a different record id, so stale answers are never reused.
    """
    from aries.collect import run_chains

    follow_ups = []
    known: dict[int, list[str]] | None = None
    for record in records:
        metadata = record.get("metadata") or {}
        turns = metadata.get("turns") or []
        if len(turns) < 2 and record.get("source") == "mt-bench":  # chains of an older aries
            from aries.sources import mt_bench_turns

            known = known or mt_bench_turns()
            turns = known.get(metadata.get("question_id"), [])
        if len(turns) < 2:
            raise AriesError(
                f"record {record['id']}: no second question (metadata.turns) and not an MT-Bench "
                "question: export with --first-turn-only"
            )
        history = [
            {"role": "user", "content": record["prompt"]},
            {"role": "assistant", "content": pick_round(record, round_index)["text"]},
        ]
        digest = hashlib.sha256(json.dumps(history).encode()).hexdigest()[:12]
        follow_ups.append(
            {"id": f"{record['id']}/turn-2/{digest}", "prompt": turns[1], "history": history}
        )
    rounds = round_index % len(records[0]["chain"]) if records else 0
    chains = run_chains(
        backend,
        follow_ups,
        rounds=rounds,
        sampling=sampling,
        instruction=instruction,
        out_path=out_path,
    )
    return {
        record["id"]: chain["chain"][rounds]["text"]
        for record, chain in zip(records, chains, strict=True)
    }


def to_answer_lines(
    records: list[dict],
    round_index: int,
    model_id: str,
    style: str,
    second_turns: dict[str, str] | None = None,
) -> list[dict]:
    """Arena-Hard (`style='arena-hard'`) or FastChat MT-Bench (`'mt-bench'`) answer records;
    `second_turns` (MT-Bench) adds each question's follow-up answer as the second turn."""
    tstamp = time.time()
    lines = []
    for record in records:
        step = pick_round(record, round_index)
        question_id = _question_id(record)
        texts = [step["text"]]
        if style == "arena-hard":
            turns = [{"content": step["text"], "token_len": step.get("completion_tokens", 0)}]
        else:
            texts += [second_turns[record["id"]]] if second_turns is not None else []
            turns = texts
        lines.append(
            {
                "question_id": question_id,
                "answer_id": _answer_id(model_id, question_id, "\0".join(texts)),
                "model_id": model_id,
                "choices": [{"index": 0, "turns": turns}],
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
    backend: Backend | None = None,
    sampling: Sampling | None = None,
    instruction: str = DEFAULT_REFINE_INSTRUCTION,
) -> int:
    """Write one round of a chains file (or eval.json) in an external judge's format.

    For `mt-bench`, a `backend` (the model that wrote the chains) answers the second turns
    (`answer_second_turns`, chains in `<out>.turn2.chains.jsonl`); without one the file holds
    the first turn only. Returns the number of answers written.
    """
    if fmt not in FORMATS:
        raise AriesError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    records = load_chains(chains_path)
    for record in records:
        pick_round(record, round_index)  # a bad round fails before any generation
    if fmt == "alpaca-eval":
        atomic_write_json(out_path, to_alpaca_eval(records, round_index, model_id))
        return len(records)
    second_turns = None
    if fmt == "mt-bench" and backend is not None:
        out_path = Path(out_path)
        second_turns = answer_second_turns(
            backend,
            records,
            round_index,
            sampling=sampling or Sampling(),
            instruction=instruction,
            out_path=out_path.with_name(out_path.stem + ".turn2.chains.jsonl"),
        )
    atomic_write_jsonl(out_path, to_answer_lines(records, round_index, model_id, fmt, second_turns))
    return len(records)
