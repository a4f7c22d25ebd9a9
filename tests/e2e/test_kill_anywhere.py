"""Killed at any moment, a run resumes with the same command: incomplete checkpoints are skipped,
folders are replaced whole, and (slow) scripts/kill_anywhere.py's many aimed SIGKILLs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from aries.core.jsonl import replace_folder
from aries.method.pairs import tiny_pairs
from aries.training import checkpoints as checkpoints_module
from aries.training import train

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kill_anywhere.py"


class Killed(Exception):
    """Stands for a SIGKILL: training stops where it is, nothing is tidied up."""


def test_resume_skips_the_checkpoint_a_kill_left_half_written(
    tmp_path, tiny_model_path, monkeypatch, capsys
):
    from transformers import TrainerCallback

    pairs = tiny_pairs(tmp_path / "pairs")
    config = train.TrainConfig(
        batch_size=2, learning_rate=1e-3, warmup_ratio=0.0, save_steps=1, max_length=256
    )
    clean = train.train_preference(str(tiny_model_path), pairs, tmp_path / "clean", config)
    assert clean["steps"] == 4

    def kill_after_writing_step_3(self, args, state, control, **kwargs):
        if state.global_step == 3:  # in the trainer's own callbacks, before the marker's
            raise Killed

    monkeypatch.setattr(TrainerCallback, "on_save", kill_after_writing_step_3)
    with pytest.raises(Killed):
        train.train_preference(str(tiny_model_path), pairs, tmp_path / "model", config)
    monkeypatch.undo()
    checkpoints = tmp_path / "model.checkpoints"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == [
        "checkpoint-2",
        "checkpoint-3",
    ]
    assert (checkpoints / "checkpoint-2" / checkpoints_module.CHECKPOINT_COMPLETE).is_file()
    (checkpoints / "checkpoint-3" / "trainer_state.json").unlink()  # as in issue 15

    resumed = train.train_preference(str(tiny_model_path), pairs, tmp_path / "model", config)
    assert "skipping checkpoint" in capsys.readouterr().out
    assert resumed["steps"] == 4 and not checkpoints.exists()
    assert resumed["train_loss"] == pytest.approx(clean["train_loss"], abs=1e-6)  # all 4 steps
    expected = load_file(tmp_path / "clean" / "model.safetensors")
    actual = load_file(tmp_path / "model" / "model.safetensors")
    assert max((expected[k] - actual[k]).abs().max().item() for k in expected) <= 1e-5
    history = json.loads((tmp_path / "model" / "log_history.json").read_text())
    assert [e["step"] for e in history if "loss" in e] == [1, 2, 3, 4]
    # killed after the model was saved, while the checkpoints were being removed (markers
    # first): the training is not done again, the removal is finished
    (checkpoints / "checkpoint-4").mkdir(parents=True)
    saved = (tmp_path / "model" / "model.safetensors").stat().st_mtime_ns
    again = train.train_preference(str(tiny_model_path), pairs, tmp_path / "model", config)
    assert again == resumed and not checkpoints.exists()
    assert (tmp_path / "model" / "model.safetensors").stat().st_mtime_ns == saved


def test_last_checkpoint_trusts_only_marked_checkpoints(tmp_path, capsys):
    def checkpoint(step: int, *, marked: bool, state: bool = True) -> None:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state:
            (folder / "trainer_state.json").write_text("{}")
        if marked:
            (folder / checkpoints_module.CHECKPOINT_COMPLETE).write_text("{}")

    checkpoint(1, marked=False)  # a kill while rotation deleted it (the marker goes first)
    checkpoint(2, marked=True)
    checkpoint(3, marked=False)  # a kill while the trainer wrote it
    checkpoint(4, marked=True, state=False)  # a file deleted by hand
    assert checkpoints_module.last_checkpoint(tmp_path, tidy=False) == str(
        tmp_path / "checkpoint-2"
    )
    assert len(list(tmp_path.iterdir())) == 4
    assert checkpoints_module.last_checkpoint(tmp_path, tidy=True) == str(tmp_path / "checkpoint-2")
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-2"]
    printed = capsys.readouterr().out
    assert "checkpoint-3" in printed and "no trainer_state.json" in printed
    assert checkpoints_module.last_checkpoint(tmp_path / "absent", tidy=True) is None


def test_replace_folder_never_leaves_a_partial_folder(tmp_path):
    folder, tmp = tmp_path / "pairs", tmp_path / "pairs.tmp"
    for version in ("old", "new"):
        tmp.mkdir()
        (tmp / "data").write_text(version)
        replace_folder(tmp, folder)
        assert (folder / "data").read_text() == version and not tmp.exists()
    # killed between the two renames: the folder is absent, the old one aside; the next call
    # clears it and puts the new one in place
    folder.rename(tmp_path / "pairs.old")
    tmp.mkdir()
    (tmp / "data").write_text("newer")
    replace_folder(tmp, folder)
    assert (folder / "data").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs"]


@pytest.mark.slow
@pytest.mark.parametrize("mode,kills", [("run", 12), ("accelerate", 6), ("loop", 8)])
def test_kill_anywhere_script(tmp_path, tiny_model_path, mode, kills):
    """scripts/kill_anywhere.py with small settings (the README's numbers come from --kills 24)."""
    command = [sys.executable, str(SCRIPT), "--mode", mode, "--kills", str(kills)]
    command += ["--workdir", str(tmp_path), "--model", str(tiny_model_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.rstrip().endswith("PASS")
    assert "model weights        equal" in result.stdout
