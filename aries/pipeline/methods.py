"""A method (`method:` in a run config) is one declaration: its plan of stages, what it implies
for the config, its one-line summary and what the stages it adds do. Everything else reads the
declaration: the config's allowed values and help, `aries run --stop-before`'s choices, `aries
run --check`'s plan and the loop itself.

The built-in methods are declared in aries/pipeline/loop.py (Temporal Self-Rewarding's in
aries/pipeline/temporal.py, beside the stages it adds); `METHODS` imports them when first read.
A new method is one `declare(Method(...))`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aries.core.registry import Registry

RunConfig = Any
"""aries.pipeline.runconfig.RunConfig, which reads `METHODS` for its choices (not imported)."""


@dataclass(frozen=True)
class Step:
    """One box of the loop diagram: a stage function and when the config asks for it."""

    name: str
    stage: Callable[..., dict[str, Any]]
    when: Callable[[RunConfig, int | None], bool] = lambda config, t: True
    """Whether the config asks for the stage in iteration t (None: before the first)."""


@dataclass(frozen=True)
class Plan:
    once: tuple[Step, ...]
    """Work on the initial model, before the first iteration (iteration None)."""
    per_iteration: tuple[Step, ...]


def _as_written(config: RunConfig) -> None:
    """A method that implies nothing beyond the config as written."""


@dataclass(frozen=True)
class Method:
    """One training method, declared once."""

    name: str
    summary: str
    """What it is, with its paper, for the help of `method:` ("iterative-dpo (N samples, ...)")."""
    plan: Plan
    resolve: Callable[[RunConfig], None] = _as_written
    """Applies (and checks) what the method implies for a validated config, in place; errors
    are AriesErrors naming the key to change."""
    describe: dict[str, str] = field(default_factory=dict)
    """`aries run --check`'s line for each stage it adds or runs its own way (by stage name)."""


METHODS: Registry[Method] = Registry("method", load=("aries.pipeline.loop",))
"""`method:` name -> its declaration."""


def declare(method: Method) -> Method:
    """Add `method` under its name: from then on a config may choose it."""
    METHODS[method.name] = method
    return method


def method_help() -> str:
    """The help of `method:`, one summary per declared method."""
    return "; ".join(method.summary for method in METHODS.values()) + "."


class StageNames:
    """The names of every declared method's iteration stages (`--stop-before`'s choices), read
    when argparse checks or shows them, so that `aries --help` imports no stage."""

    def _names(self) -> list[str]:
        names = [s.name for m in METHODS.values() for s in m.plan.per_iteration]
        return list(dict.fromkeys(names))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()
