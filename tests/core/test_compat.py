"""The TRL and transformers internals aries relies on are checked at import, in one line."""

from __future__ import annotations

import dataclasses

import pytest

from aries import AriesError
from aries.core.compat import check_private_api, missing_private_names, training_arguments


@pytest.fixture(autouse=True)
def fresh_check():
    missing_private_names.cache_clear()
    yield
    missing_private_names.cache_clear()


def test_the_installed_versions_have_every_name():
    assert missing_private_names("trl") == ()
    assert missing_private_names("transformers") == ()


def test_a_renamed_trl_method_fails_in_one_line_naming_it_and_the_tested_versions(monkeypatch):
    from trl.trainer.dpo_trainer import DPOTrainer

    monkeypatch.delattr(DPOTrainer, "_compute_loss")
    with pytest.raises(AriesError) as error:
        check_private_api("trl")
    message = str(error.value)
    assert "\n" not in message
    assert "trl.trainer.dpo_trainer.DPOTrainer._compute_loss" in message
    assert "trl 1.16.x" in message and "pip install 'trl>=1.16,<1.17'" in message


def test_a_run_that_trains_checks_trl_before_it_writes_anything(monkeypatch, tmp_path):
    """A config load no longer imports TRL (aries/training/losses.py): the run checks it first."""
    from trl.trainer.dpo_trainer import DPOTrainer

    from aries.pipeline.loop import run
    from aries.pipeline.runconfig import resolve_config

    monkeypatch.delattr(DPOTrainer, "_compute_loss")
    with pytest.raises(AriesError, match=r"DPOTrainer\._compute_loss"):
        run(resolve_config({"output_dir": str(tmp_path / "runs")}))
    assert not (tmp_path / "runs").exists()


def test_a_changed_kernel_signature_and_a_missing_transformers_name_are_caught(monkeypatch):
    import transformers.masking_utils
    from trl.kernels import ChunkedLogProbFunction

    def forward(ctx, hidden, weight, bias, targets, temperature, chunk_size):
        raise AssertionError("never called")

    monkeypatch.setattr(ChunkedLogProbFunction, "forward", staticmethod(forward))
    monkeypatch.delattr(transformers.masking_utils, "sdpa_mask")
    assert missing_private_names("trl") == (
        "ChunkedLogProbFunction.forward('ctx', 'hidden', 'weight', 'bias', 'targets', "
        "'temperature', 'chunk_size', 'final_logit_softcapping', 'logit_scale', 'outputs')",
    )
    assert missing_private_names("transformers") == ("transformers.masking_utils.sdpa_mask",)


def test_checkpointing_reaches_the_trainer_under_the_installed_name(tmp_path):
    """transformers renamed gradient_checkpointing to activation_checkpointing within our range;
    TRL declares the old name with default True (the crash on transformers 5.17)."""
    from trl import DPOConfig

    for enabled in (False, True):
        args = DPOConfig(
            output_dir=str(tmp_path),
            use_cpu=True,
            report_to="none",
            **training_arguments(activation_checkpointing=enabled),
        )
        assert args.gradient_checkpointing is enabled
        if "activation_checkpointing" in {f.name for f in dataclasses.fields(args)}:
            assert args.activation_checkpointing is enabled
