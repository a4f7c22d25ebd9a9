"""The raw rows of a file prompt source (`.jsonl`, `.json`, `.csv`, `.parquet`), a saved
`datasets` folder or a hub dataset, each with where it came from (`file:line`, `file[i]`,
`name row i`) so that a bad record's error can name it. aries.method.sources turns them into
prompt records.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from aries import AriesError

Row = tuple[str, dict[str, Any]]
"""A raw record and where it came from ('file:line'), for error messages."""


def rows_from_file(path: Path) -> list[Row]:
    if path.stat().st_size == 0:
        raise AriesError(f"{path}: file is empty")
    if path.suffix == ".jsonl":
        rows, number = [], 0
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                rows.append((f"{path}:{number}", line))
        return [(where, _json_object(where, line)) for where, line in rows]
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise AriesError(f"{path}:{error.lineno}: malformed JSON ({error.msg})") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise AriesError(f"{path}: expected a JSON list of objects")
        return [(f"{path}[{i}]", _object(f"{path}[{i}]", row)) for i, row in enumerate(data)]
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            return [(f"{path}:{reader.line_num}", row) for row in reader]
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for a broken file
        raise AriesError(f"{path}: cannot read Parquet ({error})") from None
    return [(f"{path} row {i}", row) for i, row in enumerate(frame.to_dict("records"))]


def _json_object(where: str, line: str) -> dict[str, Any]:
    try:
        return _object(where, json.loads(line))
    except json.JSONDecodeError as error:
        raise AriesError(f"{where}: malformed JSON ({error.msg})") from None


def _object(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AriesError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def rows_from_disk(path: Path, split: str) -> list[Row]:
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise AriesError(f"{path}: not a saved `datasets` folder") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise AriesError(f"{path}: no split {split!r} (has {', '.join(data)})")
        data = data[split]
    return [(f"{path} row {i}", row) for i, row in enumerate(data)]


def rows_from_hub(name: str, split: str, subset: str | None) -> list[Row]:
    import datasets

    try:
        data = datasets.load_dataset(name, subset, split=split)
    except Exception as error:  # hub errors come in many types; the message is what matters
        raise AriesError(
            f"{name}: cannot load hub dataset ({str(error).splitlines()[0]})"
        ) from None
    return [(f"{name} row {i}", row) for i, row in enumerate(data)]
