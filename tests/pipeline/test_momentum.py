"""Accelerated preference optimisation (`train.momentum`, arXiv 2410.06293): the extrapolated
weights by hand, and two tiny iterations with a resume that must not extrapolate twice."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from aries import AriesError
from aries.core.testing import tiny_run_config
from aries.pipeline.loop import run
from aries.pipeline.runconfig import load_run_config
from aries.training.momentum import MOMENTUM_RECORD, extrapolate


def test_extrapolated_weights_by_hand():
    trained = {"w": torch.tensor([1.0, 2.0, -1.0]), "count": torch.tensor([3])}
    previous = {"w": torch.tensor([0.5, 2.5, -1.0]), "count": torch.tensor([1]), "x": torch.ones(1)}
    result = extrapolate(trained, previous, 0.5)
    # 1 + 0.5 (1 - 0.5) = 1.25; 2 + 0.5 (2 - 2.5) = 1.75; -1 + 0.5 (0) = -1
    assert torch.equal(result["w"], torch.tensor([1.25, 1.75, -1.0]))
    assert torch.equal(result["count"], torch.tensor([3]))  # integer tensors are not moved
    assert set(result) == {"w", "count"}
    half = extrapolate({"w": trained["w"].bfloat16()}, previous, 0.5)["w"]
    assert half.dtype == torch.bfloat16 and half.tolist() == [1.25, 1.75, -1.0]
    assert torch.equal(extrapolate(trained, previous, 0.0)["w"], trained["w"])


def test_extrapolation_refuses_other_architectures():
    with pytest.raises(AriesError, match="no tensor 'w'"):
        extrapolate({"w": torch.zeros(2)}, {"v": torch.zeros(2)}, 0.3)
    with pytest.raises(AriesError, match="not the same architecture"):
        extrapolate({"w": torch.zeros(2)}, {"w": torch.zeros(3)}, 0.3)


def test_momentum_config_is_checked(tmp_path, tiny_model_path):
    config = tiny_run_config(tiny_model_path, tmp_path / "runs")
    config["train"]["momentum"] = -0.1
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(AriesError, match="train.momentum must be >= 0"):
        load_run_config(path)


def _assert_extrapolated(model, trained, previous, alpha):
    """Every tensor of `model` is trained + α (trained − previous): once, not twice."""
    after, before = load_file(trained / "model.safetensors"), load_file(previous)
    extrapolated = load_file(model / "model.safetensors")
    assert set(extrapolated) == set(after)
    for name, value in after.items():
        expected = value + alpha * (value - before[name])
        torch.testing.assert_close(extrapolated[name], expected, rtol=0, atol=1e-6)
    assert any(not torch.equal(after[k], before[k]) for k in after)  # training moved something
    return extrapolated


def test_two_iterations_with_momentum_and_a_resume(tmp_path, tiny_model_path):
    alpha = 0.5
    data = tiny_run_config(tiny_model_path, tmp_path / "runs")
    data.update(iterations=2, method="iterative-dpo")
    data["train"]["momentum"] = alpha
    data["eval"]["enabled"] = False
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_run_config(path)
    run(config, progress=False)
    root = config.run_dir
    first = _assert_extrapolated(
        root / "iter_0" / "model",
        root / "iter_0" / "model_before_momentum",
        tiny_model_path / "model.safetensors",
        alpha,
    )
    previous = root / "iter_0" / "model_before_momentum" / "model.safetensors"
    _assert_extrapolated(
        root / "iter_1" / "model", root / "iter_1" / "model_before_momentum", previous, alpha
    )
    record = json.loads((root / "iter_1" / "model" / MOMENTUM_RECORD).read_text())
    assert record["alpha"] == alpha and record["previous"].endswith("model_before_momentum")
    # a kill after the extrapolated folder was written, before the manifest said so: the rerun
    # recomputes it from the kept trained weights, it does not extrapolate the extrapolation
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["iterations"]["0"]["stages"]["train"]["status"] = "running"
    (root / "manifest.json").write_text(json.dumps(manifest))
    again = run(config, progress=False)
    assert again["iterations"]["0"]["stages"]["train"]["attempts"] == 2
    resumed = _assert_extrapolated(
        root / "iter_0" / "model",
        root / "iter_0" / "model_before_momentum",
        tiny_model_path / "model.safetensors",
        alpha,
    )
    for name, value in first.items():
        torch.testing.assert_close(resumed[name], value)


def test_the_apo_config_loads():
    from pathlib import Path

    config = load_run_config(Path(__file__).parents[2] / "configs" / "methods" / "apo.yaml")
    assert config.method == "iterative-dpo" and config.train.momentum == 0.3
    assert config.train.reference == "previous" and config.iterations == 2
