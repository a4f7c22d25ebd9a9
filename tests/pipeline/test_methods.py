"""The neighbouring methods (SimPO, INPO, SPPO, DNO) in the trainer and in the loop, and
`aries run --check`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from aries.cli import main
from aries.core.testing import tiny_run_config
from aries.pipeline.loop import run
from aries.pipeline.runconfig import load_run_config

METHOD_CONFIGS = sorted(Path(__file__).parents[2].glob("configs/methods/*.yaml"))


@pytest.mark.parametrize("path", METHOD_CONFIGS, ids=lambda p: p.stem)
def test_every_method_config_passes_check(path, capsys):
    assert main(["run", "--config", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert f"{path}: valid" in out and "train: loss" in out
    assert not (Path("runs") / yaml.safe_load(path.read_text())["name"] / "manifest.json").exists()


def test_check_prints_the_plan_and_rejects_a_bad_config(tmp_path, tiny_model_path, capsys):
    config = tiny_run_config(tiny_model_path, tmp_path / "runs")
    config["train"].update(loss_type="inpo", reference="initial", beta=0.5, inpo_tau=0.1)
    path = tmp_path / "inpo.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "loss inpo (INPO, Zhang et al. 2024, arXiv 2407.00617)" in out
    assert "reference π_0, and π_t's log-probs" in out
    assert "1 answer + 1 refinement round(s) + 2 direct sample(s)" in out
    assert not (tmp_path / "runs").exists()  # nothing ran
    for override, message in [
        ("train.loss_type=simpoo", "'simpoo' is not a loss type"),
        ("train.reference=previous", "set train.reference: initial"),
        ("train.inpo_tau=0.9", "inpo_tau <= train.beta"),
        ("method=dno", "method dno"),
        ("eval.sources=[{seed: 1}]", "eval.sources[0].name: missing"),
    ]:
        assert main(["run", "--config", str(path), "--check", "--set", override]) == 2, override
        assert message in capsys.readouterr().err, override


def _pairs(tmp_path: Path) -> Path:
    from aries.core.views import DEFAULT_REFINE_INSTRUCTION
    from aries.method.pairs import build_pairs, save_dataset

    selections = [
        {
            "id": str(i),
            "prompt": f"What is {i} + 1?",
            "chosen": f"Answer: {i + 1}",
            "rejected": f"I think it is {i + 7} maybe",
            "chosen_win_rate": 0.75,
            "rejected_win_rate": 0.25,
        }
        for i in range(2)
    ]
    save_dataset(build_pairs(selections, instruction=DEFAULT_REFINE_INSTRUCTION), tmp_path / "p")
    return tmp_path / "p"


def _trainer(model_path, pairs, loss_type, *, prefix_sharing, ref_model=None, **settings):
    import datasets
    from trl import DPOConfig

    from aries.core.models import load_causal_lm, load_tokenizer
    from aries.training.losses import loss_columns
    from aries.training.preference_trainer import PreferenceTrainer
    from aries.training.prefix_dpo import PrefixSharedDPOTrainer

    dataset = datasets.load_from_disk(str(pairs)).remove_columns(["id", "view"])
    args = DPOConfig(
        output_dir="unused",
        loss_type=[loss_type],
        beta=0.5,
        per_device_train_batch_size=4,
        max_length=128,
        precompute_ref_log_probs=True,
        report_to="none",
        use_cpu=True,
    )
    trainer_class = PrefixSharedDPOTrainer if prefix_sharing else PreferenceTrainer
    return trainer_class(
        model=load_causal_lm(str(model_path), dtype="float32"),
        ref_model=ref_model,
        args=args,
        train_dataset=loss_columns(dataset, loss_type, pairs),
        processing_class=load_tokenizer(str(model_path)),
        **settings,
    )


def _first_batch_loss(trainer) -> float:
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        return trainer._compute_loss(trainer.model, batch, False).item()


@pytest.mark.parametrize("loss_type", ["simpo", "inpo", "sppo"])
def test_aries_losses_on_both_trainer_layouts(tmp_path, tiny_model_path, loss_type):
    pairs = _pairs(tmp_path)
    settings = {"simpo_gamma": 1.0, "inpo_tau": 0.25}
    losses = []
    for prefix_sharing in (True, False):
        trainer = _trainer(
            tiny_model_path, pairs, loss_type, prefix_sharing=prefix_sharing, **settings
        )
        columns = trainer.train_dataset.column_names
        if loss_type == "simpo":  # reference-free: no reference model, no reference log-probs
            assert trainer.ref_model is None and "ref_chosen_logps" not in columns
        if loss_type == "inpo":  # π_0 = π_t at iteration 0: the same log-probs twice
            rows = trainer.train_dataset
            assert rows["previous_chosen_logps"] == rows["ref_chosen_logps"]
        assert ("chosen_win_rate" in columns) == (loss_type == "sppo")
        losses.append(_first_batch_loss(trainer))
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    # before any step the policy is π_t = π_0, so by hand (β = η = 0.5, τ = 0.25):
    # INPO: every log-ratio is the same, h = 0, loss (0 - 1/(2η))^2 = 1;
    # SPPO: Δ = 0, loss ((0.75 - 1/2)/β)^2 + ((0.25 - 1/2)/β)^2 = 0.25 + 0.25 = 0.5
    expected = {"inpo": 1.0, "sppo": 0.5}
    if loss_type in expected:
        assert losses[0] == pytest.approx(expected[loss_type], abs=1e-3)  # float32 sums
    else:
        assert losses[0] > 0


def test_inpo_precomputes_the_initial_and_the_previous_policy(tmp_path, tiny_model_path):
    from aries.core.models import load_causal_lm

    # a different π_0 (the reference) than π_t (the policy): two different sets of log-probs
    initial = load_causal_lm(str(tiny_model_path), dtype="float32")
    with torch.no_grad():
        for parameter in initial.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    trainer = _trainer(
        tiny_model_path,
        _pairs(tmp_path),
        "inpo",
        prefix_sharing=True,
        ref_model=initial,
        inpo_tau=0.25,
    )
    rows = trainer.train_dataset
    assert rows["previous_chosen_logps"] != rows["ref_chosen_logps"]
    # π_t's log-probs are the policy's own: the log-ratio part of h against π_t is 0 at start
    assert _first_batch_loss(trainer) > 0


def _run_tiny(tmp_path: Path, model: Path, **sections) -> tuple:
    config = tiny_run_config(model, tmp_path / "runs", prompts=4)
    config["eval"]["enabled"] = False
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    resolved = load_run_config(path)
    return resolved, run(resolved, progress=False)


def _trained(resolved, model: Path, t: int) -> bool:
    before = load_file(model / "model.safetensors")
    after = load_file(resolved.run_dir / f"iter_{t}" / "model" / "model.safetensors")
    return any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    ("loss_type", "train"),
    [
        ("simpo", {"beta": 2.0, "simpo_gamma": 0.8}),
        ("sppo", {"beta": 0.5}),
        ("inpo", {"beta": 0.5, "inpo_tau": 0.25, "reference": "initial"}),
    ],
)
def test_a_tiny_iteration_with_each_loss(tmp_path, tiny_model_path, loss_type, train):
    iterations = 2 if loss_type == "inpo" else 1  # INPO's π_0 and π_t differ from t = 1 on
    resolved, manifest = _run_tiny(
        tmp_path,
        tiny_model_path,
        method="iterative-dpo",
        iterations=iterations,
        train={"loss_type": loss_type, **train},
    )
    for t in range(iterations):
        stages = manifest["iterations"][str(t)]["stages"]
        assert stages["train"]["status"] == "done" and stages["train"]["counts"]["steps"] >= 1
    assert _trained(resolved, tiny_model_path, 0)
    selections = [
        json.loads(line) for line in (resolved.run_dir / "iter_0" / "selections.jsonl").open()
    ]
    assert selections and all(
        0 <= s["rejected_win_rate"] < s["chosen_win_rate"] for s in selections
    )


def test_a_tiny_dno_iteration_with_teacher_answers(tmp_path, tiny_model_path, chatty_model_path):
    resolved, manifest = _run_tiny(
        tmp_path,
        tiny_model_path,
        method="dno",
        teacher={"model": str(chatty_model_path), "samples": 2},
        selection={"strategy": "reward", "margin": 1.0},
    )
    stages = manifest["iterations"]["0"]["stages"]
    assert list(stages)[:3] == ["prompts", "collect", "teacher"]
    assert stages["teacher"]["counts"]["teacher_responses"] == 2 * 4
    chains = [json.loads(line) for line in (resolved.run_dir / "iter_0" / "chains.jsonl").open()]
    teacher = str(chatty_model_path)
    assert all(
        [s.get("teacher") for s in c["samples"]] == [None, None, teacher, teacher] for c in chains
    )
    assert all(len(c["chain"]) == 1 for c in chains)  # direct answers only
    selections = [
        json.loads(line) for line in (resolved.run_dir / "iter_0" / "selections.jsonl").open()
    ]
    assert all(s["chosen_score"] - s["rejected_score"] >= 1.0 for s in selections)
    assert stages["train"]["status"] == "done"


def test_check_piped_into_head_ends_without_a_traceback():
    """`aries run --check | head -1`: the reader leaves early; the command exits quietly."""
    import subprocess
    import sys

    config = Path(__file__).parents[2] / "configs" / "demo.yaml"
    command = f'"{sys.executable}" -m aries.cli run --config "{config}" --check | head -1'
    done = subprocess.run(command, shell=True, capture_output=True, text=True)
    assert done.stdout.strip() == f"{config}: valid"
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_the_your_own_model_config_passes_check(tmp_path, tiny_model_path, capsys):
    """configs/your-model.yaml (docs/your-own-model.md) with local folders standing in for its hub
    ids: the model, the reward model and the hub dataset of prompts."""
    data = yaml.safe_load(Path("configs/your-model.yaml").read_text())
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt_id": "a", "prompt": "Explain DPO."}) + "\n")
    source = data["prompts"]["sources"][0]
    assert (data["model"], data["reward"]["model"], source["name"]) == (
        "Qwen/Qwen2.5-1.5B-Instruct",
        "Skywork/Skywork-Reward-V2-Llama-3.1-8B",
        "HuggingFaceH4/ultrafeedback_binarized",
    )
    data["model"] = data["reward"]["model"] = str(tiny_model_path)
    source["name"] = str(prompts)
    data["output_dir"] = str(tmp_path / "runs")
    path = tmp_path / "your-model.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", "--config", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "collect: π_t writes 1 answer + 2 refinement round(s) + 2 direct sample(s)" in out
    assert "'type': 'reward-model'" in out and not (tmp_path / "runs").exists()
