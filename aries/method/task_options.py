"""The task options of prompt sources (`prompts.sources[i]` keys that are not the source's own
fields), checked against what each task declares: a reasoning-gym task's own config dataclass
(its field types, and its `validate()` for ranges), `MTBenchOptions` for mt-bench, none for
files, folders, hub datasets and sharegpt. Errors name `prompts.sources[i].key`.
"""

from __future__ import annotations

import collections.abc
import difflib
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Union

from aries import AriesError
from aries.core.config import Options, from_dict

MTBenchCategory = Literal[
    "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"
]


@dataclass
class MTBenchOptions(Options):
    """The task options of the `mt-bench` source."""

    category: MTBenchCategory | None = field(
        default=None, metadata={"help": "Only the questions of this MT-Bench category."}
    )


def check_task_options(
    name: str, options: dict[str, Any], where: str, source_fields: Iterable[str] = ()
) -> None:
    """Task options against the ones the source's task declares: a reasoning-gym task's own
    config dataclass (its field types, and its `validate()` for ranges), `MTBenchOptions` for
    mt-bench, none for files, folders, hub datasets and sharegpt. An unknown key or a wrong
    type is one line naming `where.key`, with a suggestion among the source's own fields
    (`source_fields`) and the task's options."""
    if not options and not name.startswith("reasoning-gym:"):
        return
    if name.startswith("reasoning-gym:"):
        declared = _reasoning_gym_options(name.split(":", 1)[1], where)
    elif name == "mt-bench":
        declared = {f.name: f.type for f in fields(MTBenchOptions)}
    else:
        declared = {}
    for key in options:
        if key not in declared:
            known = sorted({*declared, *source_fields} - {"options"})
            close = difflib.get_close_matches(key, known, n=1)
            if close:
                hint = f"; did you mean {source_key(where, close[0])}?"
            elif declared:
                hint = f"; {name} takes the task options {', '.join(declared)}"
            else:
                hint = f"; {name} takes no task options"
            raise AriesError(f"unknown config key '{source_key(where, key)}'{hint}")
    if name == "mt-bench":
        from_dict(MTBenchOptions, options, where)
    else:
        _check_reasoning_gym_values(name.split(":", 1)[1], options, where)


def source_key(where: str, key: str) -> str:
    """The dotted key of a source's field (`prompts.sources[0].size`); for a source given as a
    string (no config key), the key after its name."""
    return f"{where}.{key}" if " " not in where else f"{key} of {where}"


def _reasoning_gym_options(task: str, where: str) -> dict[str, Any]:
    """A reasoning-gym task's options and their type hints (size and seed are the source's)."""
    from reasoning_gym.factory import DATASETS

    if task not in DATASETS:
        close = difflib.get_close_matches(task, sorted(DATASETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise AriesError(
            f"{where.removesuffix('.options')}.name: reasoning-gym has no task {task!r}{hint}"
        )
    config_class = DATASETS[task][1]
    hints = typing.get_type_hints(config_class)
    return {f.name: hints[f.name] for f in fields(config_class) if f.name not in ("size", "seed")}


def _check_reasoning_gym_values(task: str, options: dict[str, Any], where: str) -> None:
    """Each option's type from the task's annotations; its range from the task's own
    `validate()` (reasoning-gym asserts there), the error naming the option it mentions."""
    from reasoning_gym.factory import DATASETS

    declared = _reasoning_gym_options(task, where)
    for key, value in options.items():
        if not _fits(declared[key], value):
            expected = _type_name(declared[key])
            raise AriesError(f"{source_key(where, key)}: expected {expected}, got {value!r}")
    config_class = DATASETS[task][1]
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    try:
        config = config_class(**values)
        if hasattr(config, "validate"):
            config.validate()
    except (AssertionError, TypeError, ValueError, KeyError) as error:
        text = str(error) or type(error).__name__
        named = [k for k in options if re.search(rf"\b{re.escape(k)}\b", text)]
        key = source_key(where, named[0]) if named else where
        raise AriesError(f"{key}: reasoning-gym task {task!r} refuses {values}: {text}") from None


def _fits(hint: Any, value: Any) -> bool:
    """Whether a YAML value fits a reasoning-gym option's annotation (lists stand for tuples);
    a type this cannot judge (a class of the task's own) is left to the task's `validate()`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(option, value) for option in args)
    if origin is Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        items = [a for a in args if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and (
            len(items) != 1 or all(_fits(items[0], v) for v in value)
        )
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (int, str, bool):
        return isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
    return True


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
