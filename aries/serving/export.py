"""Answer files for the standard external judges, from any chains file and any refinement round.

Each file is what the judge's own loader reads, unchanged (tests/serving/test_export.py runs
alpaca_eval and FastChat's `llm_judge` on them, and arena-hard-auto's loading code, which is not
on PyPI):
- AlpacaEval `model_outputs.json`: a JSON list of `{"instruction", "output", "generator"}`.
  `instruction` is the original question, without the answer-format suffix a prompt source may
  add: AlpacaEval joins model and reference outputs on it.
- Arena-Hard (arena-hard-auto v2, `data/<bench>/model_answer/<model>.jsonl`): one line per
  question, `{"uid", "ans_id", "model", "messages": [user, {"role": "assistant", "content":
  {"answer"}}], "tstamp", "metadata"}`; `metadata` holds the style-control features
  (`token_len`, then header / list / bold counts, as its `utils/add_markdown_info.py` computes
  them). Layout `2024` writes the pre-v2 `{"question_id", "answer_id", "model_id", "choices":
  [{"index": 0, "turns": [{"content", "token_len"}]}], "tstamp", "conv_metadata"}`.
- MT-Bench (FastChat `llm_judge/data/mt_bench/model_answer/<model>.jsonl`): `{"question_id",
  "answer_id", "model_id", "choices": [{"index": 0, "turns": [turn 1, turn 2]}], "tstamp"}`.
  FastChat grades both turns of all 80 questions, so the export needs the model: it answers the
  follow-up question itself (`answer_second_turns`: the first question and its exported answer,
  then the second question, refined as many rounds as the exported first turn had, through the
  same chain code as everywhere else) and answers the MT-Bench questions the chains lack (an
  `aries eval --benchmark mt-bench` output holds only the 30 with reference answers). Those
  chains go to a side folder outside the answer folder: FastChat reads every `*.jsonl` there.

Question ids come from the key the question file uses (`uid` in arena-hard-auto v2,
`question_id` in MT-Bench and pre-v2 Arena-Hard), kept in each record's `metadata`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from aries import AriesError
from aries.backends import Backend, Sampling
from aries.core.docs import page
from aries.core.jsonl import atomic_write_json, atomic_write_jsonl, read_jsonl
from aries.core.views import DEFAULT_REFINE_INSTRUCTION

FORMATS = ("alpaca-eval", "arena-hard", "mt-bench")
ARENA_HARD_LAYOUTS = ("v2", "2024")


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
        raise AriesError(
            f"{path}: not a chains file (records need a 'chain' list; {page('concepts', 'chains')})"
        )
    return records


def eval_settings(path: str | Path) -> dict[str, Any]:
    """The `sampling` and `instruction` an eval.json's chains were made with ({} for a chains
    file): the turns an MT-Bench export generates reuse them unless told otherwise."""
    path = Path(path)
    if path.suffix != ".json":
        return {}
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # load_chains reports what is wrong with the file
    if not isinstance(result, dict):
        return {}
    return {key: result[key] for key in ("sampling", "instruction") if key in result}


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


def question_text(record: dict[str, Any]) -> str:
    """The question as the benchmark wrote it (`prompt` may carry an answer-format suffix)."""
    return record.get("question") or record["prompt"]


def question_id(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The benchmark's own id: the first of `keys` the question file had (kept in `metadata`),
    else the record id (what `--field id=...` mapped)."""
    metadata = record.get("metadata") or {}
    return next((metadata[key] for key in keys if metadata.get(key) is not None), record["id"])


def _answer_id(model_id: str, question: Any, text: str) -> str:
    """Deterministic, so re-exporting the same outputs gives the same file."""
    return hashlib.sha256(f"{model_id}\0{question}\0{text}".encode()).hexdigest()[:22]


_CODE_BLOCK = re.compile("```([^`]*)```")


def style_features(text: str, token_len: int) -> dict[str, Any]:
    """arena-hard-auto's style-control features of an answer, in its order (`token_len` first):
    markdown headers, lists and bold outside code blocks (its `utils/add_markdown_info.py`)."""
    for block in _CODE_BLOCK.findall(text):
        text = text.replace(block, "")

    def count(pattern: str) -> int:
        return len(re.findall(pattern, text, re.MULTILINE))

    return {
        "token_len": token_len,
        "header_count": {f"h{n}": count(rf"^#{{{n}}}\s") for n in range(1, 7)},
        "list_count": {"ordered": count(r"^\s*\d+\.\s"), "unordered": count(r"^\s*[-*+]\s")},
        "bold_count": {"**": count(r"\*\*[^*\n]+\*\*"), "__": count(r"__[^_\n]+__")},
    }


def to_alpaca_eval(records: list[dict], round_index: int, model_id: str) -> list[dict]:
    return [
        {
            "instruction": question_text(record),
            "output": pick_round(record, round_index)["text"],
            "generator": model_id,
        }
        for record in records
    ]


def to_arena_hard(
    records: list[dict], round_index: int, model_id: str, layout: str = "v2"
) -> list[dict]:
    """Arena-Hard answer lines; `token_len` counts the model's own tokens (arena-hard-auto
    counts gpt-4o's: its `utils/add_markdown_info.py` recomputes them exactly)."""
    tstamp = time.time()
    lines = []
    for record in records:
        step = pick_round(record, round_index)
        text = step["text"]
        features = style_features(text, step.get("completion_tokens", 0))
        if layout == "v2":
            uid = question_id(record, ("uid", "question_id"))
            messages = [
                {"role": "user", "content": question_text(record)},
                {"role": "assistant", "content": {"answer": text}},
            ]
            lines.append(
                {
                    "uid": uid,
                    "ans_id": _answer_id(model_id, uid, text),
                    "model": model_id,
                    "messages": messages,
                    "tstamp": tstamp,
                    "metadata": features,
                }
            )
        else:
            qid = question_id(record, ("question_id", "uid"))
            turn = {"content": text, "token_len": features["token_len"]}
            lines.append(
                {
                    "question_id": qid,
                    "answer_id": _answer_id(model_id, qid, text),
                    "model_id": model_id,
                    "choices": [{"index": 0, "turns": [turn]}],
                    "tstamp": tstamp,
                    "conv_metadata": features,
                }
            )
    return lines


def to_mt_bench(
    records: list[dict], round_index: int, model_id: str, second_turns: dict[str, str]
) -> list[dict]:
    """FastChat answer lines, both turns, sorted by question id as FastChat writes them."""
    tstamp = time.time()
    lines = []
    for record in records:
        qid = question_id(record, ("question_id", "uid"))
        turns = [pick_round(record, round_index)["text"], second_turns[record["id"]]]
        lines.append(
            {
                "question_id": qid,
                "answer_id": _answer_id(model_id, qid, "\0".join(turns)),
                "model_id": model_id,
                "choices": [{"index": 0, "turns": turns}],
                "tstamp": tstamp,
            }
        )
    return sorted(lines, key=lambda line: str(line["question_id"]).zfill(12))


def missing_mt_bench_questions(records: list[dict[str, Any]], rounds: int) -> list[dict]:
    """The MT-Bench prompts an MT-Bench chains file lacks (FastChat's `check_data` wants all
    80); ids carry `rounds` so a side file never serves chains of another length."""
    if not records or any(record.get("source") != "mt-bench" for record in records):
        return []
    from aries.method.sources import load_prompts

    present = {question_id(record, ("question_id",)) for record in records}
    return [
        {**prompt, "id": f"{prompt['id']}/rounds-{rounds}"}
        for prompt in load_prompts("mt-bench")
        if prompt["metadata"]["question_id"] not in present
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
    from aries.method.collect import Chains, run_chains

    follow_ups = []
    known: dict[int, list[str]] | None = None
    for record in records:
        metadata = record.get("metadata") or {}
        turns = metadata.get("turns") or []
        if len(turns) < 2 and record.get("source") == "mt-bench":  # chains of an older aries
            from aries.method.sources import mt_bench_turns

            known = known or mt_bench_turns()
            turns = known.get(metadata.get("question_id"), [])
        if len(turns) < 2:
            raise AriesError(
                f"record {record['id']}: no second question (metadata.turns) and not an MT-Bench "
                "question: FastChat grades two turns, so this file cannot be exported for it"
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
        backend, follow_ups, Chains(rounds, sampling, instruction), out_path=out_path
    )
    return {
        record["id"]: chain["chain"][rounds]["text"]
        for record, chain in zip(records, chains, strict=True)
    }


def side_folder(chains_path: str | Path, out_path: str | Path, side_dir: str | Path | None) -> Path:
    """Where the generated MT-Bench chains go: beside the input chains by default, never in the
    answer folder (FastChat takes every `*.jsonl` there for a model's answers)."""
    out_path = Path(out_path)
    folder = Path(side_dir) if side_dir else Path(chains_path).parent / f"{out_path.stem}.mt-bench"
    if folder.resolve() == out_path.parent.resolve():
        raise AriesError(
            f"--side-dir {folder} is the answer folder: FastChat would read the side chains as "
            "a model's answers; choose another folder"
        )
    return folder


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
    layout: str = "v2",
    side_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Write one round of a chains file (or eval.json) in an external judge's format.

    `layout` picks the Arena-Hard layout (`v2` or `2024`). For `mt-bench`, `backend` (the model
    that wrote the chains) answers the second turns and the missing MT-Bench questions, with
    their chains in `side_dir` (`side_folder`). Returns `{"answers", "added_questions",
    "side_folder"}`.
    """
    if fmt not in FORMATS:
        raise AriesError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if layout not in ARENA_HARD_LAYOUTS:
        raise AriesError(f"unknown Arena-Hard layout {layout!r}: choose v2 or 2024")
    if fmt == "mt-bench" and backend is None:
        raise AriesError(
            "FastChat grades both turns of every MT-Bench question: give --model (the model "
            "that wrote the chains) to answer the follow-up questions"
        )
    records = load_chains(chains_path)
    for record in records:
        pick_round(record, round_index)  # a bad round fails before any generation
    summary: dict[str, Any] = {"answers": len(records), "added_questions": 0, "side_folder": None}
    if fmt == "alpaca-eval":
        atomic_write_json(out_path, to_alpaca_eval(records, round_index, model_id))
        return summary
    if fmt == "arena-hard":
        atomic_write_jsonl(out_path, to_arena_hard(records, round_index, model_id, layout))
        return summary
    from aries.method.collect import Chains, run_chains

    folder = side_folder(chains_path, out_path, side_dir)
    rounds = round_index % len(records[0]["chain"])
    sampling = sampling or Sampling()
    missing = missing_mt_bench_questions(records, rounds)
    if missing:
        records += run_chains(
            backend,
            missing,
            Chains(rounds, sampling, instruction),
            out_path=folder / "turn1.chains.jsonl",
        )
    second_turns = answer_second_turns(
        backend,
        records,
        rounds,
        sampling=sampling,
        instruction=instruction,
        out_path=folder / "turn2.chains.jsonl",
    )
    atomic_write_jsonl(out_path, to_mt_bench(records, rounds, model_id, second_turns))
    return summary | {
        "answers": len(records),
        "added_questions": len(missing),
        "side_folder": str(folder),
    }
