"""Two processes train an iteration as one process does, at the same global batch.

`accelerate launch --cpu --num_processes 2` starts a single process (accelerate's launcher takes
its one-process path with --cpu), so the two CPU ranks come from torchrun (gloo). Every assertion
about two processes first checks that two ranks really trained: a world of two independent
processes would take twice the steps and print no rank line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def two_runs(launched_runs):
    """The same iteration trained by one process at batch 4 and by two at batch 2 (torchrun,
    launched by `aries run`): conftest.py's launched runs, shared with e2e/test_launcher.py."""
    one, two = launched_runs["single"], launched_runs["launched"]
    return one, two, (two.run_dir / "logs" / "train-iter_0.log").read_text()


def _history(config) -> list[dict]:
    return json.loads((config.run_dir / "iter_0" / "model" / "log_history.json").read_text())


def _pairs(config) -> int:
    manifest = json.loads((config.run_dir / "manifest.json").read_text())
    return manifest["iterations"]["0"]["stages"]["pairs"]["counts"]["pairs"]


def test_two_ranks_train_the_same_updates_as_one_process(two_runs):
    one, two, console = two_runs
    assert (one.run_dir / "iter_0" / "selections.jsonl").read_bytes() == (
        two.run_dir / "iter_0" / "selections.jsonl"
    ).read_bytes()
    assert "[aries] train: 2 processes" in console  # a world of 2, not 2 worlds of 1
    steps = [
        [e for e in _history(config) if "grad_norm" in e] for config in (one, two)
    ]  # one entry per optimizer step (logging_steps 1)
    assert len(steps[0]) == len(steps[1]) >= 3
    assert steps[0][-1]["step"] == steps[1][-1]["step"]
    rows = _pairs(one)
    assert rows == _pairs(two) and len(steps[0]) == math.ceil(rows / 4)
    for single, double in zip(steps[0], steps[1], strict=True):
        if single["step"] * 4 <= rows:  # not a last, partial update (accelerate pads a rank)
            assert double["grad_norm"] == pytest.approx(single["grad_norm"], rel=1e-4)
            assert double["loss"] == pytest.approx(single["loss"], rel=1e-4)


def test_two_ranks_write_each_output_once_and_the_run_goes_on(two_runs):
    one, two, _ = two_runs
    iteration = two.run_dir / "iter_0"
    assert sorted(p.name for p in iteration.iterdir() if "model" in p.name) == ["model"]
    assert not list(two.run_dir.rglob("*.tmp")) and not list(two.run_dir.rglob(".*.tmp"))
    manifest = json.loads((two.run_dir / "manifest.json").read_text())
    train = manifest["iterations"]["0"]["stages"]["train"]
    assert train["status"] == "done" and train["attempts"] == 1
    weights = [load_file(c.run_dir / "iter_0" / "model" / "model.safetensors") for c in (one, two)]
    assert weights[0].keys() == weights[1].keys()
    # the same updates (a last, partial one would differ: accelerate pads the second rank)
    start = load_file(Path(one.model) / "model.safetensors")
    moved = max((weights[0][k] - start[k]).abs().max().item() for k in start)
    apart = max((weights[0][k] - weights[1][k]).abs().max().item() for k in start)
    assert moved > 1e-3 and apart < (1e-4 if _pairs(one) % 4 == 0 else moved / 2)
    # the run went on: the loop evaluated the two-process model
    result = json.loads((iteration / "eval.json").read_text())
    assert result["n_prompts"] == two.eval.size
    assert yaml.safe_load((two.run_dir / "config.yaml").read_text())["train"]["batch_size"] == 2
