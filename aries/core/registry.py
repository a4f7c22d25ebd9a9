"""Name -> entry tables, the one pattern behind every name a config or a flag chooses (backends,
reward sources, selection strategies, losses, methods) instead of if-chains.

An entry joins its table where it is defined (`@table.register("name")`), or, when it pulls a heavy
dependency (torch, vLLM, an HTTP client), is declared by its `"module:attribute"` path and imported
on first use. A table whose entries register themselves in other modules names those modules
(`load=`): they are imported the first time the table is read, and the names come in alphabetical
order, so neither the names nor their order depend on who imported what first. The config field
that chooses an entry declares the table as its choices (`"choices": table` in its metadata,
aries.core.config), so the allowed values, the CLI choices and the configuration reference all come
from the table itself.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from aries import AriesError

T = TypeVar("T")


class Lazy(str):
    """An entry declared by its `"module:attribute"` path, imported when first looked up."""

    def resolve(self) -> Any:
        module, _, attribute = self.partition(":")
        return getattr(importlib.import_module(module), attribute)


class Registry(MutableMapping[str, T], Generic[T]):
    """The named entries of one kind (`what` names the kind in errors: "reward type")."""

    def __init__(
        self, what: str, entries: dict[str, T | Lazy] | None = None, load: Iterable[str] = ()
    ):
        self.what = what
        self._entries: dict[str, T | Lazy] = dict(entries or {})
        self._load = tuple(load)

    def _loaded(self) -> dict[str, T | Lazy]:
        while self._load:  # before reading: the modules whose entries register themselves
            module, *rest = self._load
            self._load = tuple(rest)
            importlib.import_module(module)
        return self._entries

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator adding what it decorates as `name`."""

        def add(entry: T) -> T:
            self[name] = entry
            return entry

        return add

    def __setitem__(self, name: str, entry: T | Lazy) -> None:
        if name in self._entries:
            raise ValueError(f"{name!r} is registered twice")
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __getitem__(self, name: str) -> T:
        entry = self._loaded()[name]
        if isinstance(entry, Lazy):
            entry = self._entries[name] = entry.resolve()
        return entry

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._loaded()))

    def __len__(self) -> int:
        return len(self._loaded())

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self)})"

    def lookup(self, name: Any, where: str = "") -> T:
        """The entry `name`, or a one-line error naming `where`, the choices and a near miss."""
        if name not in self:
            raise AriesError(f"{where + ': ' if where else ''}{self.unknown(name)}")
        return self[name]

    def unknown(self, name: Any) -> str:
        """What is wrong with a name that is not in the table, and what would be right."""
        close = difflib.get_close_matches(str(name), list(self), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.what} {name!r}: choose one of {', '.join(self)}{hint}"
