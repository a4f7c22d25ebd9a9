"""The registries that replace if-chains cover every name the config schema allows."""

from __future__ import annotations

import importlib
import typing

import pytest

from aries.backends import ENGINES, BackendName
from aries.core.registry import Registry
from aries.method.select import Strategy
from aries.method.strategies import RANKINGS
from aries.pipeline.methods import METHODS
from aries.pipeline.plan import DESCRIPTIONS


def test_every_backend_name_builds_a_class_with_generate():
    assert set(ENGINES) == set(typing.get_args(BackendName))
    for target in ENGINES.values():
        module, _, cls = target.partition(":")
        assert callable(getattr(importlib.import_module(module), cls).generate)


def test_every_selection_strategy_has_a_ranking():
    assert set(RANKINGS) == set(typing.get_args(Strategy))


def test_every_stage_of_every_method_is_described():
    for method in METHODS.values():
        names = {step.name for step in method.plan.once + method.plan.per_iteration}
        assert names <= set(DESCRIPTIONS) | set(method.describe), method.name


def test_a_name_registered_twice_fails():
    table = Registry("test entry")
    table.register("a")(len)
    with pytest.raises(ValueError, match="'a' is registered twice"):
        table.register("a")(len)


def test_every_reward_source_can_be_closed():
    """The stages close every source they build, through the protocol (no getattr fallback)."""
    from aries.rewards.judge import Judge
    from aries.rewards.reward_model import RewardModel
    from aries.rewards.verifiers import ExactMatch, RegexVerifier, Verifier

    for source in (Verifier, ExactMatch, RegexVerifier, RewardModel, Judge):
        assert callable(source.close), source
    Verifier().close()
