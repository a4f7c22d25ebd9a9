"""Training integrations (aries/core/integrations.py): train.report_to and train.push_to_hub
reach TRL.

No network: the Hub's two calls (the trainer's create_repo at start, aries' upload_folder of the
finished model) are replaced by recorders on `huggingface_hub.HfApi`.
"""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi, RepoUrl

from aries import AriesError
from aries.core.integrations import report_targets, trainer_arguments
from aries.core.views import DEFAULT_REFINE_INSTRUCTION
from aries.method.pairs import build_pairs, save_dataset
from aries.pipeline.runconfig import resolve_config
from aries.training.config import TrainConfig
from aries.training.train import train_preference


@pytest.fixture
def pairs(tmp_path):
    selections = [
        {"id": str(i), "prompt": f"What is {i} + 1?", "chosen": f"{i + 1}", "rejected": "no"}
        for i in range(2)
    ]
    save_dataset(build_pairs(selections, instruction=DEFAULT_REFINE_INSTRUCTION), tmp_path / "p")
    return tmp_path / "p"


@pytest.fixture
def hub(monkeypatch):
    """Every Hub call the trainer or aries makes, recorded instead of sent."""
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        calls.append(("upload_folder", kwargs["repo_id"], kwargs))

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    import transformers.trainer

    if hasattr(transformers.trainer, "create_repo"):  # older releases bind the function at import
        recorded = lambda repo_id, **kwargs: create_repo(None, repo_id, **kwargs)  # noqa: E731
        monkeypatch.setattr(transformers.trainer, "create_repo", recorded)
    return calls


TINY = {"batch_size": 2, "max_steps": 1, "max_length": 128, "save_steps": 1}


def test_push_to_hub_uploads_the_finished_model_folder_once(tmp_path, tiny_model_path, pairs, hub):
    config = TrainConfig(**TINY, push_to_hub=True, hub_model_id="me/aries-run")
    out = tmp_path / "iter_0" / "model"
    train_preference(str(tiny_model_path), pairs, out, config, log_dir=tmp_path / "logs")
    assert [(name, repo) for name, repo, _ in hub] == [
        ("create_repo", "me/aries-run"),  # TRL's trainer, from DPOConfig.hub_model_id
        ("upload_folder", "me/aries-run"),
    ]
    upload = hub[1][2]
    assert upload["folder_path"] == str(out) and (out / "model.safetensors").is_file()
    assert upload["commit_message"].endswith("iter_0/model")
    # tensorboard (the default report_to) went through the trainer's own callback, into logs/
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))
    assert not (tmp_path / "iter_0" / "model.checkpoints").exists()


def test_no_hub_call_when_push_is_off(tmp_path, tiny_model_path, pairs, hub):
    config = TrainConfig(**TINY, report_to="none")
    train_preference(str(tiny_model_path), pairs, tmp_path / "model", config, log_dir=tmp_path)
    assert hub == []
    assert not list(tmp_path.rglob("events.out.tfevents.*"))  # report_to none: no events


def test_trainer_arguments_are_trl_config_arguments(tmp_path):
    from trl import DPOConfig

    arguments = trainer_arguments(
        "tensorboard", tmp_path / "run" / "iter_1" / "model", tmp_path / "logs",
        push_to_hub=True, hub_model_id="me/x",
    )  # fmt: skip
    cpu = {"bf16": False, "use_cpu": True}
    args = DPOConfig(output_dir=str(tmp_path / "checkpoints"), **cpu, **arguments)
    assert (args.report_to, args.push_to_hub, args.hub_model_id) == (["tensorboard"], True, "me/x")
    assert args.hub_strategy == "end" and args.run_name == "run/iter_1/model"
    no_logs = trainer_arguments("tensorboard", tmp_path / "model", None)
    assert DPOConfig(output_dir=str(tmp_path), **cpu, **no_logs).report_to == []


def test_report_to_and_hub_settings_are_checked_at_config_load():
    assert report_targets("none") == []
    assert report_targets(" tensorboard ") == ["tensorboard"]
    with pytest.raises(AriesError, match="'tensorbored' is not a transformers integration"):
        resolve_config({"train": {"report_to": "tensorbored"}})
    with pytest.raises(AriesError, match="needs train.hub_model_id"):
        resolve_config({"train": {"push_to_hub": True}})
    config = resolve_config({"train": {"push_to_hub": True, "hub_model_id": "me/x"}})
    assert config.train.report_to == "tensorboard" and config.train.hub_model_id == "me/x"


def test_an_integration_that_is_not_installed_names_its_package(monkeypatch):
    import transformers.integrations.integration_utils as utils

    monkeypatch.setattr(utils, "get_available_reporting_integrations", lambda: ["tensorboard"])
    with pytest.raises(AriesError, match="'wandb' needs its package: pip install wandb"):
        report_targets("tensorboard,wandb")
