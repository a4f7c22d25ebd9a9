"""Typed configuration from YAML: dataclasses with help text, strict loading, dotted overrides.

Each stage's settings live in a dataclass next to the code it configures (TRL style), and each
field declares there its help text, and for a number its allowed `Range`: the only place an option
is declared. This module turns YAML + `--set key=value` overrides into those dataclasses, and
validates every field the same way whether it came from YAML, a CLI flag or Python (`Options`
runs `validate` on construction): unknown keys get a suggestion, wrong types, choices and ranges a
one-line error naming the dotted key, the value and what is allowed. It also writes the resolved
configuration back out with every default filled in.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import hashlib
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union

import yaml

from aries import AriesError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Range:
    """The allowed values of a numeric option, declared beside it: `"range": Range(ge=1)`.

    Bounds are inclusive (`ge`, `le`) or exclusive (`gt`, `lt`); NaN and infinities are always out
    of range, so a field with no bound still declares `Range()`: any finite number.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __contains__(self, value: float) -> bool:
        return (
            math.isfinite(value)
            and (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def __str__(self) -> str:
        bounds = [
            f"{op} {bound:g}"
            for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if bound is not None
        ]
        return " and ".join(bounds) or "a finite number"


class FieldError(AriesError):
    """A bad value of one field; `from_dict` re-raises it under the field's dotted key."""

    def __init__(self, section: str, name: str, problem: str):
        self.name, self.problem = name, problem
        super().__init__(f"{section}.{name}{problem}" if section else f"{name}{problem}")


class Options:
    """Base of every config dataclass: each instance is validated when it is built, from YAML, CLI
    flags or Python alike. `section` names it in errors (`train`, `selection`, `reward`); a
    subclass's own `__post_init__` (cross-field checks) calls `super().__post_init__()` first."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        validate(self)


class AsWritten:
    """Base of a config value that its own type reads (`parse`) and that the run records as it
    was written: a reward entry, whose `type:` picks the dataclass of its settings, is one.
    `to_dict` (config.yaml, the config hash) keeps `written`, so a setting the file leaves to its
    default stays out of the record, and a new default changes no saved run's hash."""

    written: Any
    """The value as the file (or the caller) wrote it."""

    @classmethod
    def parse(cls, value: Any, where: str) -> AsWritten:
        """The typed value of `value` (one already typed is returned as is); errors name
        `where`, the dotted key."""
        raise NotImplementedError


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def validate(config: Any) -> None:
    """Check every own field of a config dataclass against its type, choices and `Range`
    (numbers given as int to a float field become floats); nested sections check themselves."""
    hints, section = _hints(type(config)), type(config).section
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            continue
        key = f"{section}.{f.name}" if section else f.name
        try:
            value = _convert(hints[f.name], value, key)
        except AriesError as error:
            raise FieldError(section, f.name, str(error)[len(key) :]) from None
        allowed = f.metadata.get("range")
        if allowed is not None and value is not None and value not in allowed:
            raise FieldError(section, f.name, f" must be {allowed}, not {value!r}")
        table = f.metadata.get("choices")
        if table is not None and value is not None and value not in table:
            raise FieldError(section, f.name, _not_a_choice(tuple(table), value))
        object.__setattr__(config, f.name, value)


def choices(hint: Any, f: dataclasses.Field) -> tuple | None:
    """The values a field may take: its `Literal`'s, or those of the registry it declares as
    `"choices"` (aries.core.registry: the table the name picks from); None for a free value."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    table = f.metadata.get("choices")
    return None if table is None else tuple(table)


def help_text(f: dataclasses.Field) -> str:
    """A field's help; a callable one is built when read (a list of registered names)."""
    text = f.metadata.get("help", "")
    return text() if callable(text) else text


def number_type(hint: Any) -> type | None:
    """int or float for `int`, `float`, `int | None`, `float | None`; None for anything else."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else ()
    kinds = [option for option in options if option is not type(None)] or [hint]
    return kinds[0] if len(kinds) == 1 and kinds[0] in (int, float) else None


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a dict, checking every key and value against the annotations."""
    if not isinstance(data, dict):
        raise AriesError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = _hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), sorted(fields), n=1)
            hint = f"; did you mean {where + '.' if where else ''}{close[0]}?" if close else ""
            raise AriesError(f"unknown config key {path!r}{hint}")
        values[key] = _convert(hints[key], value, path)
    try:
        return cls(**values)
    except FieldError as error:
        raise AriesError(f"{where + '.' if where else ''}{error.name}{error.problem}") from None


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and issubclass(hint, AsWritten):
        return hint.parse(value, path)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, {} if value is None else value, path)
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
        if value not in typing.get_args(hint):
            raise AriesError(f"{path}{_not_a_choice(typing.get_args(hint), value)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise AriesError(f"{path}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise AriesError(f"{path}: expected a mapping, got {type(value).__name__}")
        _, item = typing.get_args(hint) or (Any, Any)
        return {k: _convert(item, v, f"{path}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) != (hint is bool) or not isinstance(value, hint):
        raise AriesError(f"{path}: expected {hint.__name__}, got {value!r}")
    return value


def _not_a_choice(allowed: tuple, value: Any) -> str:
    close = difflib.get_close_matches(str(value), [str(c) for c in allowed], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = (
        f"{allowed[0]!r} or {allowed[1]!r}"
        if len(allowed) == 2
        else "one of " + ", ".join(map(repr, allowed))
    )
    return f" must be {listed}, not {value!r}{hint}"


def to_dict(config: Any) -> dict[str, Any]:
    """The resolved configuration as plain data, every default written out.

    Fields marked `"execution": True` (how to run, e.g. `train.launcher`) are left out: they change
    no result, so a run started with or without them saves the same file and hash. An `AsWritten`
    value is written as it was written.
    """
    return {
        f.name: to_dict(value)
        if dataclasses.is_dataclass(value)
        else copy.deepcopy(value.written if isinstance(value, AsWritten) else value)
        for f in dataclasses.fields(config)
        if not f.metadata.get("execution")
        for value in (getattr(config, f.name),)
    }


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides (values parsed as YAML: `3`, `0.1`, `true`, `[a, b]`)."""
    if not isinstance(data, dict):
        raise AriesError(f"config: expected a mapping, got {type(data).__name__}")
    data = copy.deepcopy(data)
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
    """A config file's data; a file that cannot be read, is not UTF-8, is not valid YAML or sets
    one key twice (PyYAML would keep the last silently) is one line naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        _check_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), path)
        data = yaml.safe_load(text)
    except OSError as error:
        raise AriesError(f"{path}: cannot read config ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise AriesError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise AriesError(f"{where}: invalid YAML ({getattr(error, 'problem', error)})") from None
    if data is None:
        raise AriesError(f"{path}: config file is empty")
    return data


def _check_duplicate_keys(node: yaml.Node | None, path: Path, prefix: str = "") -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key, line = key_node.value, key_node.start_mark.line + 1
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if key in seen and key != "<<":
                raise AriesError(f"{path}:{line}: {dotted} set twice (first at line {seen[key]})")
            seen[key] = line
            _check_duplicate_keys(value_node, path, dotted)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicate_keys(item, path, f"{prefix}[{index}]")


DOTTED_KEY = re.compile(r"(?<![\w./~-])[A-Za-z_]\w*(?:\[\d+\])*(?:\.[A-Za-z_]\w*(?:\[\d+\])*)*")
"""A dotted config key as errors name it: `train.beta`, `prompts.sources[0].seed`."""


def located_error(path: str | Path, message: str, overrides: list[str] = ()) -> str:
    """An error about a config file, prefixed with `file:line` of the key it names where the file
    sets that key (the message's first dotted key, or a bare key opening it), else `file:`;
    a key set by `--set` names no line of the file."""
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        root = None
    flags = [override.partition("=")[0] for override in overrides]
    for match in DOTTED_KEY.finditer(message):
        key, start = match.group(), match.start()
        if start and message[start - 1] not in "'\"" and not re.search(r"[.\[]", key):
            continue
        if any(key == flag or key.startswith((f"{flag}.", f"{flag}[")) for flag in flags):
            return message
        line = _line_of(root, key)
        if line is not None:
            return f"{path}:{line}: {message}"
    return f"{path}: {message}"


def _line_of(node: yaml.Node | None, key: str) -> int | None:
    """The line that sets dotted `key` in a composed YAML document; for a key the file leaves
    out, the line of its deepest section the file has (None: not even the first)."""
    line = None
    for part in re.findall(r"\[\d+\]|[^.\[\]]+", key):
        if part.startswith("[") and isinstance(node, yaml.SequenceNode):
            if int(part[1:-1]) >= len(node.value):
                break
            node = node.value[int(part[1:-1])]
            line = node.start_mark.line + 1
        elif isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if k.value == part]
            if not found:
                break
            key_node, node = found[-1]
            line = key_node.start_mark.line + 1
        else:
            break
    return line


def config_hash(config: Any) -> str:
    """A short content hash of a resolved configuration (detects a changed config on resume)."""
    text = json.dumps(to_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
