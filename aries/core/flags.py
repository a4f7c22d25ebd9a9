"""Command-line flags generated from the config dataclasses, so that no flag can drift from its
option: the flag's type, choices, help and shown default are read from the field's declaration
(help text, choices: a `Literal` or a registry, `Range`), and the dataclass built from the parsed
flags is validated by the same pass as a YAML config, its errors naming the flag.

A generated flag defaults to None ("not given"), so the dataclass's own default applies unless a
command states another one; a flag shared by several dataclasses (`--batch-size` of the reward
model and the judge) is declared once and read by each.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

from aries import AriesError
from aries.core.config import FieldError, choices, help_text, number_type

T = TypeVar("T")


def flag_names(fields: Iterable[str] | dict[str, str]) -> dict[str, str]:
    """Field name → flag: `fields` as a mapping, or field names flagged `--field-name`."""
    if isinstance(fields, dict):
        return dict(fields)
    return {name: "--" + name.replace("_", "-") for name in fields}


def all_fields(cls: type, exclude: Iterable[str] = ()) -> list[str]:
    """Every field name of config dataclass `cls` but `exclude`."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in set(exclude)]


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    fields: Iterable[str] | dict[str, str],
    *,
    defaults: dict[str, Any] | None = None,
    required: Iterable[str] = (),
    aliases: dict[str, list[str]] | None = None,
) -> None:
    """One flag per named field of `cls` (see the module docstring); `defaults` replaces a
    field's default for this command, `required` fields must be given, `aliases` adds spellings."""
    hints = typing.get_type_hints(cls)
    defaults, aliases, required = defaults or {}, aliases or {}, set(required)
    names = flag_names(fields)
    for f in dataclasses.fields(cls):
        if f.name not in names:
            continue
        default = defaults.get(f.name, _field_default(f))
        options: dict[str, Any] = {"dest": _dest(names[f.name]), "default": None}
        hint = hints[f.name]
        if hint is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif choices(hint, f) is not None:
            options["choices"] = choices(hint, f)
        elif number_type(hint) is not None:
            options["type"] = number_type(hint)
            options["metavar"] = "N" if number_type(hint) is int else "X"
        elif hint not in (str, str | None):
            raise TypeError(f"{cls.__name__}.{f.name}: no flag for a {hint} field")
        allowed = f.metadata.get("range")
        text = help_text(f) + (f" Allowed: {allowed}." if allowed is not None else "")
        if f.name in required:
            options["required"] = True
        else:
            options["default"] = defaults.get(f.name)
            text += f" (default: {default})"
        shared = parser._option_string_actions.get(names[f.name])
        if shared is not None:  # declared by another dataclass: its help names both
            shared.help += f" {cls.__name__}: " + text.replace("%", "%%")
            continue
        options["help"] = text.replace("%", "%%")
        parser.add_argument(names[f.name], *aliases.get(f.name, []), **options)


def from_flags(
    args: argparse.Namespace, cls: type[T], fields: Iterable[str] | dict[str, str], **values: Any
) -> T:
    """The `cls` that the parsed flags (and `values`) describe; an invalid value is a one-line
    error naming its flag."""
    names = flag_names(fields)
    given = {
        name: getattr(args, _dest(flag))
        for name, flag in names.items()
        if getattr(args, _dest(flag)) is not None
    }
    try:
        return cls(**{**given, **values})
    except FieldError as error:
        flag = names.get(error.name, error.name)
        raise AriesError(f"{flag}{error.problem}") from None


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default
