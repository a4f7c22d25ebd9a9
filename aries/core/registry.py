"""Name -> function tables that each entry joins where it is defined (instead of if-chains)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class Registry(dict[str, F]):
    """A dict of named functions; `@table.register("name")` adds the function it decorates."""

    def register(self, name: str) -> Callable[[F], F]:
        def add(function: F) -> F:
            if name in self:
                raise ValueError(f"{name!r} is registered twice")
            self[name] = function
            return function

        return add
