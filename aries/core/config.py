"""Typed configuration from YAML: dataclasses with help text, strict loading, dotted overrides.

Each stage's settings live in a dataclass next to the code it configures (TRL style); this module
only knows how to turn YAML + `--set key=value` overrides into those dataclasses, rejecting
unknown keys (with a suggestion) and wrong types (naming the key), and how to write the resolved
configuration back out with every default filled in.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from aries import AriesError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a dict, checking every key and value against the annotations."""
    if not isinstance(data, dict):
        raise AriesError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=1)
            hint = f"; did you mean {where + '.' if where else ''}{close[0]}?" if close else ""
            raise AriesError(f"unknown config key {path!r}{hint}")
        values[key] = _convert(hints[key], value, path)
    return cls(**values)


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value or {}, path)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, path)
            except AriesError as error:
                errors.append(str(error))
        raise AriesError(
            errors[-1] if len(errors) == 1 else f"{path}: {value!r} fits none of {hint}"
        )
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint_text = f"; did you mean {close[0]!r}?" if close else ""
            raise AriesError(f"{path} must be {_choices(choices)}, not {value!r}{hint_text}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise AriesError(f"{path}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise AriesError(f"{path}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool) or not isinstance(value, hint):
        raise AriesError(f"{path}: expected {hint.__name__}, got {value!r}")
    return value


def _choices(choices: tuple) -> str:
    if len(choices) == 2:
        return f"{choices[0]!r} or {choices[1]!r}"
    return "one of " + ", ".join(map(repr, choices))


def check_choices(config: Any, where: str = "") -> None:
    """Check every `Literal`-typed field of a dataclass built in Python (from_dict checks the
    ones it loads): a typo fails at once, with the list of choices."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        if typing.get_origin(hints[f.name]) is Literal:
            _convert(hints[f.name], getattr(config, f.name), f"{where}{f.name}")


def to_dict(config: Any) -> dict[str, Any]:
    """The resolved configuration as plain data, every default written out."""
    return dataclasses.asdict(config)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides (values parsed as YAML: `3`, `0.1`, `true`, `[a, b]`)."""
    data = json.loads(json.dumps(data))
    for override in overrides:
        key, eq, raw = override.partition("=")
        if not eq or not key:
            raise AriesError(f"--set {override!r}: expected key=value, e.g. train.beta=0.05")
        target = data
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise AriesError(f"--set {override!r}: {parent!r} is not a section")
        target[leaf] = yaml.safe_load(raw)
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise AriesError(f"{path}: cannot read config ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise AriesError(f"{where}: invalid YAML ({getattr(error, 'problem', error)})") from None
    if data is None:
        raise AriesError(f"{path}: config file is empty")
    return data


def config_hash(config: Any) -> str:
    """A short content hash of a resolved configuration (detects a changed config on resume)."""
    text = json.dumps(to_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
