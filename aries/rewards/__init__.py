"""Reward sources: one interface for verifiers, reward models and LLM judges.

Selection (docs/specification.md stage 2) only needs a number per response. Every source takes a
batch of `ScoreItem`s (all responses of many prompts at once, so models batch well) and returns one
float per item, or `None` when it could not score that item (no reference answer, unparseable judge
output, prompt longer than the reward model's context). `None` is counted and reported, never
turned into a zero: a silent zero would become a "rejected" answer.

Imports `aries.core` and `aries.backends` (the judge generates).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from aries import AriesError
from aries.core.config import AsWritten, Options, from_dict
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


def make_reward_source(config: Options | dict[str, Any] | str) -> RewardSource:
    """Build a reward source from its typed settings (a reward type's config dataclass), or from
    a spec as a config writes it: `{"type": ..., **fields of that type's config dataclass}`.

    A bare string is a type with default settings (the types: `REWARDS`). Unknown keys are an
    error, not ignored.
    """
    if not isinstance(config, Options):
        config = RewardSpec.parse({"type": config} if isinstance(config, str) else config).settings
    kinds = [kind for kind, reward in REWARDS.items() if type(config) is reward.config]
    if not kinds:
        raise AriesError(f"{type(config).__name__} is not the settings of a reward type")
    return REWARDS[kinds[0]].source(config)


class RewardSpec(AsWritten):
    """A `reward:` or `eval.verifier:` entry of a run config, typed when the config loads (by the
    same loader as every other section: errors name `where.key`) without loading any model:
    `kind`, its `type:`, and `settings`, that type's config dataclass, which the source is built
    from. The entry as written is what the run records (aries.core.config.AsWritten)."""

    def __init__(self, written: dict[str, Any], where: str = "reward"):
        if not isinstance(written, dict):
            raise AriesError(f"{where}: expected a mapping, got {type(written).__name__}")
        options = dict(written)
        self.kind: str = options.pop("type", None)
        reward = REWARDS.lookup(self.kind, f"{where}.type")
        self.settings: Options = from_dict(reward.config, options, where)
        self.written = copy.deepcopy(written)

    @classmethod
    def parse(cls, value: Any, where: str = "reward") -> RewardSpec:
        return value if isinstance(value, cls) else cls(value, where)

    def sets(self, name: str) -> bool:
        """Whether the entry as written sets `name` (a run's judge that leaves out its `model`
        judges with the policy)."""
        return name in self.written

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RewardSpec) and self.written == other.written

    def __repr__(self) -> str:
        return f"RewardSpec({self.written!r})"

    def __str__(self) -> str:
        return str(self.written)


def is_missing(score: float | None) -> bool:
    """True for a score that must not be used: None or NaN."""
    return score is None or (isinstance(score, float) and math.isnan(score))
