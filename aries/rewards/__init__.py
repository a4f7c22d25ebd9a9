"""Reward sources: one interface for verifiers, reward models and LLM judges.

Selection (docs/specification.md stage 2) only needs a number per response. Every source takes a
batch of `ScoreItem`s (all responses of many prompts at once, so models batch well) and returns one
float per item, or `None` when it could not score that item (no reference answer, unparseable judge
output, prompt longer than the reward model's context). `None` is counted and reported, never
turned into a zero: a silent zero would become a "rejected" answer.

Imports `aries.core` and `aries.backends` (the judge generates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from aries import AriesError
from aries.core.registry import Registry


@dataclass
class ScoreItem:
    """One response to score, with what a verifier may need to check it."""

    prompt: str
    response: str
    reference: str | None = None
    """The gold / reference answer of the prompt, when the data has one."""
    record: dict[str, Any] = field(default_factory=dict)
    """The whole chains.jsonl record (id, source, metadata), for task-specific verifiers."""


class RewardSource(Protocol):
    """Anything that scores responses; `name` is written next to every score in scores.jsonl."""

    name: str

    def score(self, items: list[ScoreItem]) -> list[float | None]:
        """One score per item, in input order; higher is better; None = could not score."""
        ...

    def close(self) -> None:
        """Release what the source holds (a model, a server); the verifiers hold nothing."""


class RewardType(NamedTuple):
    """One `type:` of a reward spec: its settings and the source built from them."""

    config: type
    """The settings dataclass (unknown keys, types and ranges checked by aries.core.config)."""
    source: type
    """The `RewardSource` class, built from the settings."""


REWARDS: Registry[RewardType] = Registry(
    "reward type",
    load=("aries.rewards.verifiers", "aries.rewards.reward_model", "aries.rewards.judge"),
)
"""`type:` name -> its `RewardType`, added by the module that defines it (none of them loads a
model before its source is built)."""


def make_reward_source(config: dict[str, Any] | str) -> RewardSource:
    """Build a reward source from `{"type": ..., **fields of that type's config dataclass}`.

    A bare string is a type with default settings (the types: `REWARDS`). Unknown keys are an
    error, not ignored.
    """
    kind, settings = reward_config(config)
    return REWARDS[kind].source(settings)


def reward_config(config: dict[str, Any] | str, where: str = "reward") -> tuple[str, Any]:
    """(type, its config dataclass) of a reward spec, checked without loading any model: what a
    run config's `reward:` and `eval.verifier:` are validated with when the config is loaded,
    by the same loader as every other section (errors name `where.key`)."""
    from aries.core.config import from_dict

    if not isinstance(config, (dict, str)):
        raise AriesError(f"{where}: expected a reward type or a mapping, got {config!r}")
    options = {"type": config} if isinstance(config, str) else dict(config)
    kind = options.pop("type", None)
    return kind, from_dict(REWARDS.lookup(kind, f"{where}.type").config, options, where)


def is_missing(score: float | None) -> bool:
    """True for a score that must not be used: None or NaN."""
    return score is None or (isinstance(score, float) and math.isnan(score))
