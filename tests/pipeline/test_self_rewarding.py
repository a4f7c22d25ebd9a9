"""Self-Rewarding (arXiv 2401.10020): a judge without a model is the current policy π_t; and
Temporal Self-Rewarding (arXiv 2508.06026) on top of it."""

from __future__ import annotations

import pytest
import yaml

from aries.core.jsonl import read_jsonl
from aries.core.testing import tiny_run_config
from aries.method.score import score_chains
from aries.pipeline.loop import run
from aries.pipeline.runconfig import load_run_config
from aries.pipeline.rundir import RunDir
from aries.rewards.judge import Judge, JudgeConfig

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
    from aries.pipeline.stages import reward_settings

    named = {**SELF_JUDGE, "model": "embedded"}
    config = self_rewarding_config(tmp_path / "named", tiny_model_path, reward=named)
    assert reward_settings(RunDir(config.run_dir), config, 1).model == "embedded"
    config = self_rewarding_config(tmp_path / "self", tiny_model_path)
    run_dir = RunDir(config.run_dir)
    settings = reward_settings(run_dir, config, 0)
    assert isinstance(settings, JudgeConfig) and settings.model == str(tiny_model_path)
    assert settings.verdict == "logprob" and settings.batch_size == 8  # the rest as written
    assert reward_settings(run_dir, config, 2).model == str(run_dir.model(1))
    assert not config.reward.sets("model")  # the config itself is not rewritten
    assert config.reward.settings.model == "embedded"


def _record(key: str, texts: list[str]) -> dict:
    return {
        "id": key,
        "prompt": f"question {key}",
        "chain": [{"round": 0, "text": texts[0]}],
        "samples": [{"sample": i, "text": text} for i, text in enumerate(texts[1:], start=1)],
    }


def _scores(key: str, values: list[float | None]) -> dict:
    return {"id": key, "chain_scores": values[:1], "sample_scores": values[1:]}


def test_temporal_pairs_by_hand():
    from aries.pipeline.temporal import temporal_pairs

    chains = [_record("a", ["A0", "A1"]), _record("b", ["B0", "B1"]), _record("c", ["C0", "C1"])]
    scores = [_scores("a", [3, 4]), _scores("b", [2, None]), _scores("c", [1, 5])]
    anchors = [_record("a", ["Z0", "Z1"]), _record("b", ["Y0", "Y1"])]  # none for c
    anchor_scores = [_scores("a", [2, 1]), _scores("b", [2, 3])]
    anchored = temporal_pairs(chains, scores, anchors, anchor_scores)
    # a: π_t's best A1 (4) against π_0's worst Z1 (1); b: best 2 is not above the anchor's 2
    assert [(p["chosen"], p["rejected"]) for p in anchored.pairs] == [("A1", "Z1")]
    assert anchored.pairs[0]["rejected_from"] == "anchor:sample:1"
    assert anchored.drop_counts == {"not_better": 1, "too_few_scored": 1}
    future = [_record("a", ["F0", "F1"]), _record("b", ["G0", "G1"])]
    future_scores = [_scores("a", [4, 3]), _scores("b", [2.5, 1])]
    guided = temporal_pairs(chains, scores, anchors, anchor_scores, future, future_scores)
    # a: the future's best only ties π_t's (4): π_t's stays; b: the future's 2.5 beats the anchor
    assert [(p["chosen"], p["rejected"]) for p in guided.pairs] == [("A1", "Z1"), ("G0", "Y0")]
    assert guided.pairs[1]["chosen_from"] == "future:round:0"
    assert guided.drop_counts == {"too_few_scored": 1}


def test_temporal_self_rewarding_two_iterations(tmp_path, tiny_model_path):
    config = self_rewarding_config(tmp_path, tiny_model_path, method="temporal-self-rewarding")
    assert config.generation.rounds == 0 and config.pairs.w_refine == 0
    manifest = run(config, progress=False)
    run_dir = RunDir(config.run_dir)
    stages = [list(manifest["iterations"][t]["stages"]) for t in ("0", "1")]
    common = ["prompts", "collect", "score", "select", "future_model", "future", "pairs", "train"]
    assert stages[0] == common
    assert stages[1] == common[:3] + ["anchor"] + common[3:]
    counts = manifest["iterations"]["1"]["stages"]
    for step in ("select", "future"):  # one pair or one drop reason per prompt
        assert (
            counts[step]["counts"]["kept"] + counts[step]["counts"]["dropped"]
            == (counts["prompts"]["counts"]["prompts"])
        )
    # iteration 1: the rejected responses are π_0's (the anchors), judged by π_1 like the rest
    anchors = {s["text"] for r in read_jsonl(run_dir.anchors(1)) for s in r["chain"] + r["samples"]}
    selections = run_dir.read_selections(1)
    assert selections and all(p["rejected_from"].startswith("anchor:") for p in selections)
    assert all(p["rejected"] in anchors for p in selections)
    judge = f"judge:pointwise:logprob:{run_dir.model(0)}"
    sources = {r["source"] for r in read_jsonl(run_dir.anchor_scores(1))}
    sources |= {r["source"] for r in read_jsonl(run_dir.future_scores(1))}
    assert sources == {judge}
    # the temporary future model answered too, and chosen responses come from π_1 or from it
    future_texts = {
        s["text"] for r in read_jsonl(run_dir.future_chains(1)) for s in r["chain"] + r["samples"]
    }
    present = {s["text"] for r in run_dir.read_chains(1) for s in r["chain"] + r["samples"]}
    for pair in selections:
        source = future_texts if pair["chosen_from"].startswith("future:") else present
        assert pair["chosen"] in source
    assert (run_dir.future_model(1) / "model.safetensors").is_file()
    assert (run_dir.model(1) / "model.safetensors").is_file()


@pytest.mark.parametrize("name", ["self-rewarding", "temporal-self-rewarding"])
def test_the_method_configs_judge_with_the_policy(name):
    from pathlib import Path

    config = load_run_config(Path(__file__).parents[2] / "configs" / "methods" / f"{name}.yaml")
    assert config.method == ("iterative-dpo" if name == "self-rewarding" else name)
    assert config.reward.kind == "judge" and not config.reward.sets("model")
    assert config.generation.rounds == 0 and config.generation.samples == 4
    assert config.selection.strategy == "reward"
