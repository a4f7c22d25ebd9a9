"""The registries (aries.core.registry) that replace if-chains: every name a config may choose
has an entry, the choices come from the tables themselves, heavy entries load when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aries import AriesError
from aries.backends import ENGINES, make_backend
from aries.core.registry import Lazy, Registry
from aries.pipeline.methods import METHODS
from aries.pipeline.plan import DESCRIPTIONS
from aries.pipeline.runconfig import resolve_config


def test_every_backend_name_builds_a_class_with_generate():
    assert list(ENGINES) == ["hf", "openai", "vllm"]
    for name in ENGINES:
        assert callable(ENGINES[name].generate)


def test_a_config_load_imports_no_engine_and_no_trainer():
    """Choosing among the backends (a config, a flag) imports no engine's dependencies, and the
    loss settings are checked against TRL's loss types declared in aries/training/losses.py: a
    config load (aries run --check, a sweep's plan) imports neither TRL nor torch."""
    code = (
        "import sys; from aries.pipeline.runconfig import resolve_config; "
        "resolve_config({'generation': {'backend': 'vllm'}, 'train': {'report_to': 'none', "
        "'loss_type': 'inpo', 'reference': 'initial'}}); "
        "print(sorted(m for m in ('aries.backends.hf', 'aries.backends.vllm', 'trl', 'torch') "
        "if m in sys.modules))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"


def test_choices_come_from_the_registries():
    with pytest.raises(
        AriesError, match=r"^generation.backend must be one of 'hf', 'openai', 'vllm'"
    ):
        resolve_config({"generation": {"backend": "vlm"}})
    with pytest.raises(AriesError, match=r"^teacher.backend must be .*not 'x'$"):
        resolve_config({"teacher": {"backend": "x"}})
    with pytest.raises(AriesError, match=r"^unknown generation backend 'hff'.*did you mean 'hf'"):
        make_backend("hff", "embedded")


def test_every_stage_of_every_method_is_described():
    for method in METHODS.values():
        names = {step.name for step in method.plan.once + method.plan.per_iteration}
        assert names <= set(DESCRIPTIONS) | set(method.describe), method.name


def test_a_name_registered_twice_fails_and_a_lazy_entry_resolves_once():
    table = Registry("test entry", {"join": Lazy("os.path:join")})
    table.register("a")(len)
    with pytest.raises(ValueError, match="'a' is registered twice"):
        table.register("a")(len)
    import os.path

    assert table["join"] is os.path.join and list(table) == ["a", "join"]
    with pytest.raises(AriesError, match=r"^where: unknown test entry 'b': choose one of a, join$"):
        table.lookup("b", "where")


def test_every_reward_source_can_be_closed():
    """The stages close every source they build, through the protocol (no getattr fallback)."""
    from aries.rewards import REWARDS
    from aries.rewards.verifiers import Verifier

    assert list(REWARDS) == ["exact-match", "judge", "regex", "reward-model", "verifier"]
    for reward in REWARDS.values():
        assert callable(reward.source.close), reward
    Verifier().close()
