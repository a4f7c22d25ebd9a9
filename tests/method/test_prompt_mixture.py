"""Weighted prompt-source mixtures (`weight:` per source in prompts.sources): exact counts."""

from __future__ import annotations

import pytest

from aries import AriesError
from aries.core.testing import TINY_ARITHMETIC
from aries.method.sources import PromptSource, mixture_counts
from aries.pipeline.runconfig import resolve_config
from aries.pipeline.rundir import RunDir
from aries.pipeline.session import Session
from aries.pipeline.stages import prompts


def test_mixture_counts_are_exact_largest_remainder_shares():
    assert mixture_counts([1.0], 64) == [64]
    assert mixture_counts([1, 1, 1], 64) == [22, 21, 21]  # 64 = 3 * 21 + 1: first source
    assert mixture_counts([3, 1], 64) == [48, 16]
    assert mixture_counts([2, 1, 1], 10) == [5, 3, 2]  # 5, 2.5, 2.5: the tie goes to the first
    assert mixture_counts([0.7, 0.2, 0.1], 9) == [6, 2, 1]  # 6.3, 1.8, 0.9
    assert mixture_counts([1, 100], 3) == [0, 3]
    with pytest.raises(AriesError, match="must be > 0"):
        mixture_counts([1, 0], 10)
    with pytest.raises(AriesError, match="no prompt sources"):
        mixture_counts([], 10)


def test_weight_parses_from_a_map_and_a_query_string_and_is_not_a_task_option():
    source = PromptSource.parse({"name": "reasoning-gym:basic_arithmetic", "weight": 3})
    assert (source.weight, source.options) == (3, {})
    assert PromptSource.parse("mt-bench?weight=0.5").weight == 0.5
    assert PromptSource.parse("mt-bench").weight == 1.0


def _config(tmp_path, sources, per_iteration=8):
    return resolve_config(
        {
            "output_dir": str(tmp_path),
            "prompts": {"sources": sources, "per_iteration": per_iteration},
            "eval": {"enabled": False},  # no held-out overlap to drop: exact counts
        }
    )


def test_prompts_stage_draws_each_source_by_weight_and_fresh_slices_per_iteration(tmp_path):
    sources = [
        {**TINY_ARITHMETIC, "seed": 1, "weight": 3},
        {**TINY_ARITHMETIC, "seed": 2},  # weight 1
    ]
    config = _config(tmp_path, sources)
    run = RunDir(config.run_dir)
    session = Session(config, progress=False)
    seen = []
    for t in (0, 1):
        assert prompts(run, config, t, session) == {"prompts": 8, "dropped_heldout_overlap": 0}
        drawn = run.read_prompts(t)
        by_seed = [sum(p["id"].split("-")[1] == f"s{seed}" for p in drawn) for seed in (1, 2)]
        assert by_seed == [6, 2]  # 8 * 3/4 and 8 * 1/4
        seen.append({p["id"] for p in drawn})
    assert not seen[0] & seen[1]
    ids = sorted(seen[1], key=lambda i: int(i.rsplit("-", 1)[1]))
    assert all(6 <= int(i.rsplit("-", 1)[1]) < 12 for i in ids if "-s1-" in i)  # slice t=1
    assert all(2 <= int(i.rsplit("-", 1)[1]) < 4 for i in ids if "-s2-" in i)


def test_bad_weights_fail_at_config_load(tmp_path):
    with pytest.raises(AriesError, match=r"prompts.sources\[0\].weight must be > 0, not 0.0"):
        _config(tmp_path, [{**TINY_ARITHMETIC, "weight": 0}])
    with pytest.raises(AriesError, match=r"prompts.sources\[0\].weight: expected float"):
        _config(tmp_path, [{**TINY_ARITHMETIC, "weight": "heavy"}])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": "1"}, r"prompts.sources\[1\].seed: expected int, got '1'"),
        ({"seed": -3}, r"prompts.sources\[1\].seed must be >= 0, not -3"),
        ({"size": 0}, r"prompts.sources\[1\].size must be >= 1, not 0"),
        ({"size": 2.5}, r"prompts.sources\[1\].size: .*2.5"),
        ({"offset": -1}, r"prompts.sources\[1\].offset must be >= 0"),
        ({"weight": float("nan")}, r"prompts.sources\[1\].weight must be > 0"),
        ({"options": [1]}, r"prompts.sources\[1\].options: expected a mapping"),
        ({"fields": "question"}, r"prompts.sources\[1\].fields: expected a mapping"),
        ({"split": 3}, r"prompts.sources\[1\].split: expected str"),
    ],
)
def test_each_prompt_source_field_is_checked_and_named(tmp_path, change, message):
    with pytest.raises(AriesError, match=message):
        _config(tmp_path, [TINY_ARITHMETIC, {**TINY_ARITHMETIC, **change}])


def test_query_string_sources_are_checked_the_same_way(tmp_path):
    with pytest.raises(AriesError, match=r"prompts.sources\[0\].seed: expected int, got 'x'"):
        _config(tmp_path, ["reasoning-gym:basic_arithmetic?seed=x"])
