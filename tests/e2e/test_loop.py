"""The loop end to end on the tiny model: a whole iteration, learning, kill-and-resume."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from aries.cli import main
from aries.core.testing import tiny_run_config
from aries.pipeline.loop import run
from aries.pipeline.runconfig import load_run_config
from aries.pipeline.session import Session
from aries.sweep.runs import finished


def tiny_config(tmp_path: Path, model: Path, **changes) -> Path:
    """`aries.core.testing.tiny_run_config`, with `section__key=value` or `section=value`
    changes."""
    config = tiny_run_config(model, tmp_path / "runs")
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            config[section][leaf] = value
        else:
            config[section] = value
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_one_iteration_end_to_end(tmp_path, tiny_model_path):
    config = load_run_config(tiny_config(tmp_path, tiny_model_path))
    # the multi-GPU path: stop before training, train through `aries train`, then continue
    partial = run(config, progress=False, stop_before="train")
    assert "train" not in partial["iterations"]["0"]["stages"]
    assert not finished(config)
    assert main(["train", str(config.run_dir), "--iteration", "0"]) == 0
    manifest = run(config, progress=False)
    run_dir = config.run_dir
    stages = manifest["iterations"]["0"]["stages"]
    assert [s for s in stages] == [
        "prompts",
        "collect",
        "score",
        "select",
        "pairs",
        "train",
        "eval",
    ]
    assert all(stage["status"] == "done" for stage in stages.values())
    assert stages["select"]["counts"]["kept"] + stages["select"]["counts"]["dropped"] == 6
    assert stages["pairs"]["counts"]["pairs"] > 0
    assert manifest["baseline"]["stages"]["eval"]["status"] == "done"
    # the next policy is a normal HF folder that transformers loads
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run_dir / "iter_0" / "model")
    assert model.config.num_hidden_layers == 2
    before = load_file(tiny_model_path / "model.safetensors")
    after = load_file(run_dir / "iter_0" / "model" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    chains = [json.loads(line) for line in (run_dir / "iter_0" / "chains.jsonl").open()]
    assert len(chains) == 6 and all(len(c["chain"]) == 2 for c in chains)
    assert all(len(c["samples"]) == 2 for c in chains)
    evaluation = json.loads((run_dir / "iter_0" / "eval.json").read_text())
    assert len(evaluation["per_round"]) == 2
    # a second run of the same config does nothing more
    assert finished(config)
    again = run(config, progress=False)
    assert again["iterations"]["0"]["stages"]["train"]["attempts"] == 1
    assert not finished(replace(config, iterations=2))  # not the configuration it holds


def test_dpo_margin_grows_for_both_views(tmp_path, tiny_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aries.core.testing import completion_logps
    from aries.core.views import DEFAULT_REFINE_INSTRUCTION
    from aries.method.pairs import build_pairs, save_dataset
    from aries.training.config import TrainConfig
    from aries.training.train import train_preference

    selections = [
        {
            "id": str(i),
            "prompt": f"What is {i} + 1?",
            "chosen": f"Answer: {i + 1}",
            "rejected": f"I think it is {i + 7} maybe",
        }
        for i in range(4)
    ]
    examples = build_pairs(selections, instruction=DEFAULT_REFINE_INSTRUCTION)
    save_dataset(examples, tmp_path / "pairs")
    config = TrainConfig(batch_size=4, epochs=3, learning_rate=5e-4, warmup_ratio=0.0)
    train_preference(str(tiny_model_path), tmp_path / "pairs", tmp_path / "model", config)

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    before = completion_logps(
        AutoModelForCausalLM.from_pretrained(tiny_model_path), tokenizer, examples
    )
    after = completion_logps(
        AutoModelForCausalLM.from_pretrained(tmp_path / "model"), tokenizer, examples
    )
    for view in ("direct", "refine"):
        index = [i for i, e in enumerate(examples) if e["view"] == view]
        margin = sum(
            (after["chosen"][i] - before["chosen"][i])
            - (after["rejected"][i] - before["rejected"][i])
            for i in index
        ) / len(index)
        assert margin > 0.5, (view, margin)


def _run_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "aries.cli", "run", "--config", str(config), "--quiet"]


def _kill_when(config: Path, ready, timeout: float = 240) -> None:
    """Start `aries run`, SIGKILL it as soon as `ready()` is true."""
    process = subprocess.Popen(
        _run_command(config),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + timeout
    while not ready() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# A kill during collection is also covered, in-process, by test_collect.py's resume test.
@pytest.mark.parametrize("moment", [pytest.param("collect", marks=pytest.mark.slow), "train"])
def test_kill_and_resume_matches_an_uninterrupted_run(
    tmp_path, tiny_model_path, tiny_cli_run, moment
):
    """SIGKILLed at `moment`, the same command (here in-process) resumes to the chains and weights
    of the same run never killed (conftest's tiny_cli_run)."""
    uninterrupted_run = tiny_cli_run[0] / "iter_0"
    killed = tiny_config(tmp_path / "killed", tiny_model_path)
    run_dir = tmp_path / "killed" / "runs" / "tiny" / "iter_0"
    if moment == "collect":
        chains = run_dir / "chains.jsonl"
        _kill_when(killed, lambda: chains.exists() and chains.read_text().count("\n") >= 2)
        assert chains.read_text().count("\n") < 6
    else:
        checkpoints = run_dir / "model.checkpoints"
        _kill_when(killed, lambda: any(checkpoints.glob("checkpoint-*/trainer_state.json")))
        assert not (run_dir / "model").exists()
    assert main(["run", "--config", str(killed), "--quiet"]) == 0

    lines = (run_dir / "chains.jsonl").read_text().splitlines()
    assert sorted(lines) == sorted((uninterrupted_run / "chains.jsonl").read_text().splitlines())
    expected = load_file(uninterrupted_run / "model" / "model.safetensors")
    resumed = load_file(run_dir / "model" / "model.safetensors")
    assert all(torch.allclose(expected[k], resumed[k], atol=1e-6) for k in expected)
    manifest = json.loads((run_dir.parent / "manifest.json").read_text())
    assert manifest["iterations"]["0"]["stages"][moment]["attempts"] == 2


def test_no_pairs_carries_the_policy_over(tmp_path, tiny_model_path):
    config = load_run_config(
        tiny_config(
            tmp_path,
            tiny_model_path,
            reward={"type": "regex", "pattern": "^never$", "mode": "match"},
            eval={"enabled": False},
        )
    )
    manifest = run(config, progress=False)
    stages = manifest["iterations"]["0"]["stages"]
    assert stages["select"]["counts"]["kept"] == 0
    assert stages["train"]["counts"]["skipped"] == "no pairs"
    before = load_file(tiny_model_path / "model.safetensors")
    after = load_file(config.run_dir / "iter_0" / "model" / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_sft_warm_start_trains_iteration_0_from_its_own_pairs(
    tmp_path, tiny_model_path, monkeypatch
):
    # learning rate 0 in the preference stage: iteration 0's model is then exactly where it
    # started, which must be the warm-start SFT model, not the initial one
    path = tiny_config(
        tmp_path,
        tiny_model_path,
        sft={"warm_start": True, "learning_rate": 1e-3, "batch_size": 4},
        train__learning_rate=0.0,
        iterations=1,
    )
    config = load_run_config(path)
    # every stage after a training starts with the trainer (its optimizer) collected
    optimizers_alive = []
    backend = Session.backend

    def counting_backend(self, model):
        optimizers_alive.append(sum(isinstance(o, torch.optim.Optimizer) for o in gc.get_objects()))
        return backend(self, model)

    monkeypatch.setattr(Session, "backend", counting_backend)
    manifest = run(config, progress=False)
    assert optimizers_alive and not any(optimizers_alive)
    stages = manifest["iterations"]["0"]["stages"]
    assert list(stages)[:5] == ["prompts", "collect", "score", "select", "warm_start"]
    kept = stages["select"]["counts"]["selected_pairs"]
    assert stages["warm_start"]["counts"]["examples"] == 2 * kept  # Eq. 4: both views per pair
    initial = load_file(tiny_model_path / "model.safetensors")
    sft = load_file(config.run_dir / "sft" / "model" / "model.safetensors")
    trained = load_file(config.run_dir / "iter_0" / "model" / "model.safetensors")
    assert any(not torch.equal(initial[k], sft[k]) for k in initial)
    assert all(torch.equal(sft[k], trained[k]) for k in sft)
    with pytest.raises(Exception, match="warm_start"):
        load_run_config(path, ["method=iterative-dpo", "generation.samples=2"])


def test_eval_final_only_evaluates_the_initial_and_the_last_model(tmp_path, tiny_model_path):
    from aries.pipeline.loop import evaluated

    config = load_run_config(
        tiny_config(tmp_path, tiny_model_path, iterations=3, eval__final_only=True)
    )
    assert [evaluated(config, t) for t in range(3)] == [False, False, True]
    every = load_run_config(tiny_config(tmp_path / "every", tiny_model_path, iterations=3))
    assert [evaluated(every, t) for t in range(3)] == [True, True, True]
