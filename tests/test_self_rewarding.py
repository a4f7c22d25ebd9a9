"""Self-Rewarding (arXiv 2401.10020): a judge without a model is the current policy π_t."""

from __future__ import annotations

import pytest
import yaml

from aries.loop import run
from aries.rewards.judge import Judge, JudgeConfig
from aries.runconfig import load_run_config
from aries.rundir import RunDir
from aries.score import score_chains
from aries.testing import tiny_run_config

SELF_JUDGE = {"type": "judge", "verdict": "logprob", "use_reference": False, "batch_size": 8}
"""The policy judges its own responses, the verdict read from its probabilities (a random model
never writes a parseable one)."""


def self_rewarding_config(tmp_path, model, **changes):
    data = tiny_run_config(model, tmp_path / "runs")
    data.update(method="iterative-dpo", iterations=2, reward=SELF_JUDGE)
    data.update(changes)
    data["eval"]["enabled"] = False
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_run_config(path)


def _rescored(run_dir: RunDir, t: int, judge_model) -> list:
    judge = Judge(JudgeConfig(model=str(judge_model), verdict="logprob", use_reference=False))
    try:
        return score_chains(run_dir.read_chains(t), judge)
    finally:
        judge.close()


def _flat(scores: list[dict]) -> list[float]:
    return [s for record in scores for s in record["chain_scores"] + record["sample_scores"]]


def test_the_judge_of_iteration_1_is_the_model_trained_in_iteration_0(tmp_path, tiny_model_path):
    config = self_rewarding_config(tmp_path, tiny_model_path)
    manifest = run(config, progress=False)
    run_dir = RunDir(config.run_dir)
    assert manifest["iterations"]["0"]["stages"]["pairs"]["counts"]["pairs"] > 0
    sources = [
        manifest["iterations"][str(t)]["stages"]["score"]["counts"]["source"] for t in (0, 1)
    ]
    assert sources == [
        f"judge:pointwise:logprob:{tiny_model_path}",
        f"judge:pointwise:logprob:{run_dir.model(0)}",
    ]
    # the scores written in iteration 1 are those of the trained weights, not of π_0's
    written = _flat(run_dir.read_scores(1))
    by_trained = _flat(_rescored(run_dir, 1, run_dir.model(0)))
    by_initial = _flat(_rescored(run_dir, 1, tiny_model_path))
    assert written == pytest.approx(by_trained, abs=1e-6)
    assert written != pytest.approx(by_initial, abs=1e-6)


def test_a_named_judge_model_is_kept(tmp_path, tiny_model_path):
    from aries.stages import reward_spec

    named = {**SELF_JUDGE, "model": "embedded"}
    config = self_rewarding_config(tmp_path / "named", tiny_model_path, reward=named)
    assert reward_spec(RunDir(config.run_dir), config, 1)["model"] == "embedded"
    config = self_rewarding_config(tmp_path / "self", tiny_model_path)
    run_dir = RunDir(config.run_dir)
    assert reward_spec(run_dir, config, 0)["model"] == str(tiny_model_path)
    assert reward_spec(run_dir, config, 2)["model"] == str(run_dir.model(1))
    assert "model" not in config.reward  # the config itself is not rewritten
