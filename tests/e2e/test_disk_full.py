"""A full disk at each kind of write aries makes: one line naming the path, what was being written
and the space left, nothing half-written left where a later stage would trust it, and the same
call finishing once there is room.

Most tests fake ENOSPC where the bytes are written (os.fsync, safetensors' save_file, torch.save);
the last fills a real 40 MB tmpfs (mounted in a user namespace, no root needed) during `aries run`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from aries import AriesError
from aries.cli import main
from aries.core.jsonl import JsonlAppender, atomic_write_jsonl, read_jsonl
from aries.method.pairs import tiny_pairs

NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _fail_fsync(monkeypatch) -> None:
    def full(fd):
        raise NO_SPACE

    monkeypatch.setattr(os, "fsync", full)


def _assert_one_line(message: str, path: Path, what: str) -> None:
    assert "\n" not in message.strip()
    assert message.startswith(f"{path}: out of disk space while writing {what} (")
    assert " free there); make room and run the same command again" in message


def test_appended_jsonl_records_are_all_or_nothing(tmp_path, monkeypatch):
    path = tmp_path / "chains.jsonl"
    with JsonlAppender(path) as appender:
        appender.write([{"id": "0", "text": "kept"}])
        _fail_fsync(monkeypatch)
        with pytest.raises(AriesError) as error:
            appender.write([{"id": "1", "text": "x" * 5000}, {"id": "2", "text": "y"}])
    _assert_one_line(str(error.value), path, "2 JSONL records")
    assert path.read_text() == '{"id": "0", "text": "kept"}\n'  # no torn line left behind
    monkeypatch.undo()
    with JsonlAppender(path) as appender:  # the rerun writes what is missing
        assert appender.done_ids == {"0"}
        appender.write([{"id": "1", "text": "again"}])
    assert [r["id"] for r in read_jsonl(path)] == ["0", "1"]


def test_whole_file_writes_keep_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "scores.jsonl"
    atomic_write_jsonl(path, [{"id": "old"}])
    _fail_fsync(monkeypatch)
    with pytest.raises(AriesError) as error:
        atomic_write_jsonl(path, [{"id": "new"}])
    _assert_one_line(str(error.value), path, "JSONL records")
    assert read_jsonl(path) == [{"id": "old"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.jsonl"]  # no temporary file


def test_the_report_says_which_file_in_one_line(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    (run / "iter_0").mkdir(parents=True)
    _fail_fsync(monkeypatch)
    assert main(["report", str(run)]) == 2
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    _assert_one_line(err.removeprefix("aries report: error: "), run / "report.md", "the report")
    assert sorted(p.name for p in run.iterdir()) == ["iter_0"]
    assert main(["report", str(run)]) == 0
    assert (run / "report.md").is_file() and (run / "report.html").is_file()


def test_a_full_disk_the_commands_do_not_name_is_still_one_line(tmp_path, monkeypatch, capsys):
    """The last resort in `aries`: a write no `writing` block covers still gives one line."""
    from aries.pipeline import report

    def full(run, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "somewhere"))

    monkeypatch.setattr(report, "build_report", full)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.removeprefix("aries report: error: ")
    _assert_one_line(err, tmp_path / "somewhere", "files")


def test_pairs_folder(tmp_path, monkeypatch):
    import datasets

    def full(self, *args, **kwargs):
        Path(args[0], "data-00000-of-00001.arrow").parent.mkdir(parents=True, exist_ok=True)
        Path(args[0], "data-00000-of-00001.arrow").write_bytes(b"torn")
        raise NO_SPACE

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", full)
    with pytest.raises(AriesError) as error:
        tiny_pairs(tmp_path / "pairs")
    _assert_one_line(str(error.value), tmp_path / "pairs", "the preference pairs")
    assert list(tmp_path.iterdir()) == []  # the partial folder is gone
    monkeypatch.undo()
    assert datasets.load_from_disk(str(tiny_pairs(tmp_path / "pairs"))).num_rows > 0


def _config(**changes):
    from aries.training.train import TrainConfig

    options = dict(batch_size=2, learning_rate=1e-3, warmup_ratio=0.0, max_length=256)
    return TrainConfig(**{**options, **changes})


def test_model_folder(tmp_path, tiny_model_path, monkeypatch):
    """A full disk while saving the trained model (safetensors' error, worded as a real one)."""
    import transformers.modeling_utils
    from safetensors import SafetensorError

    from aries.training import train

    pairs = tiny_pairs(tmp_path / "pairs")
    write = transformers.modeling_utils.safe_save_file

    def full(tensors, filename, *args, **kwargs):
        write(tensors, filename, *args, **kwargs)  # written, then the device is found full
        if "checkpoint-" not in str(filename):  # checkpoints fit, the final model does not
            raise SafetensorError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)
    with pytest.raises(AriesError) as error:
        train.train_preference(str(tiny_model_path), pairs, tmp_path / "model", _config())
    _assert_one_line(str(error.value), tmp_path / "model", "the trained model")
    assert not (tmp_path / "model").exists() and not (tmp_path / "model.tmp").exists()
    monkeypatch.undo()
    result = train.train_preference(str(tiny_model_path), pairs, tmp_path / "model", _config())
    assert result["steps"] == 4 and (tmp_path / "model" / "model.safetensors").is_file()


def test_checkpoint_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_model_path, monkeypatch):
    """torch.save's error on a full disk says nothing of space; the rerun resumes from the last
    complete checkpoint and ends with the weights of a run that never stopped."""
    import torch

    from aries.training import train

    pairs = tiny_pairs(tmp_path / "pairs")
    config = _config(save_steps=1)
    clean = train.train_preference(str(tiny_model_path), pairs, tmp_path / "clean", config)
    save = torch.save
    checkpoints = tmp_path / "model.checkpoints"

    def full_at_step_3(obj, f, *args, **kwargs):
        if "checkpoint-3" in str(f):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_at_step_3)
    with pytest.raises(AriesError) as error:
        train.train_preference(str(tiny_model_path), pairs, tmp_path / "model", config)
    _assert_one_line(str(error.value), checkpoints, "a training checkpoint")
    monkeypatch.undo()
    resumed = train.train_preference(str(tiny_model_path), pairs, tmp_path / "model", config)
    assert resumed["steps"] == clean["steps"] == 4 and not checkpoints.exists()
    expected = load_file(tmp_path / "clean" / "model.safetensors")
    actual = load_file(tmp_path / "model" / "model.safetensors")
    assert max((expected[k] - actual[k]).abs().max().item() for k in expected) <= 1e-5
    history = json.loads((tmp_path / "model" / "log_history.json").read_text())
    assert [e["step"] for e in history if "loss" in e] == [1, 2, 3, 4]


def _can_mount_tmpfs() -> bool:
    """A user and mount namespace of our own (`unshare -rm`) lets a test mount a small tmpfs."""
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /tmp"]
    return subprocess.run(probe, capture_output=True).returncode == 0


FILL_AND_RESUME = """
set -u
mount -t tmpfs -o size={size} tmpfs {disk}
{aries} run --quiet --config {config} 2> {out}/first.err; echo $? > {out}/first.rc
mount -o remount,size=1g {disk}  # room again
{aries} run --quiet --config {config} 2> {out}/second.err; echo $? > {out}/second.rc
cp -r {disk}/runs/tiny/iter_0/model {out}/model
"""


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare -rm (user namespaces)")
def test_a_run_on_a_filesystem_that_fills_resumes_to_the_same_weights(
    tmp_path, tiny_model_path, tiny_cli_run
):
    """`aries run` with its run folder on a 40 MB tmpfs: the disk fills while training writes,
    the error is one line, and after the filesystem grows the same command finishes with the
    weights of a run that had room from the start (conftest's tiny_cli_run)."""
    import yaml

    from aries.core.testing import tiny_run_config

    config = tmp_path / "disk.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config(tiny_model_path, tmp_path / "disk" / "runs")))
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir(), out.mkdir()
    aries = f"{sys.executable} -m aries.cli"
    script = FILL_AND_RESUME.format(size="40m", disk=disk, out=out, aries=aries, config=config)
    subprocess.run(["unshare", "-rm", "sh", "-c", script], check=True, timeout=600)
    first_err = (out / "first.err").read_text()
    assert (out / "first.rc").read_text().strip() == "2", first_err
    [line] = [x for x in first_err.splitlines() if x.startswith("aries run: error:")]
    assert "out of disk space while writing" in line and f"{disk}/runs/tiny" in line
    assert "Traceback" not in first_err
    assert (out / "second.rc").read_text().strip() == "0", (out / "second.err").read_text()
    expected = load_file(tiny_cli_run[0] / "iter_0" / "model" / "model.safetensors")
    actual = load_file(out / "model" / "model.safetensors")
    assert max((expected[k] - actual[k]).abs().max().item() for k in expected) <= 1e-5


def test_the_manifest_and_run_config_keep_their_last_complete_state(tmp_path, monkeypatch):
    """manifest.json and config.yaml are rewritten whole: a full disk leaves the previous file."""
    from aries.pipeline.runconfig import resolve_config
    from aries.pipeline.rundir import Manifest, RunDir, prepare_run_dir

    config = resolve_config({"output_dir": str(tmp_path), "name": "r"})
    prepare_run_dir(config)
    run = RunDir(config.run_dir)
    manifest = Manifest(run, config)
    manifest.save()
    before = run.manifest.read_text()
    _fail_fsync(monkeypatch)
    with pytest.raises(AriesError) as error:
        with manifest.stage(0, "collect"):
            pass
    _assert_one_line(str(error.value), run.manifest, "the manifest")
    assert run.manifest.read_text() == before
    run.config.unlink()
    with pytest.raises(AriesError) as error:
        prepare_run_dir(config)
    _assert_one_line(str(error.value), run.config, "the run config")
    assert not run.config.exists()
    monkeypatch.undo()
    prepare_run_dir(config)
    assert run.config.is_file()


def test_the_training_log_names_its_file(tmp_path):
    """The trainer's JSONL log appended on every log step; /dev/full answers ENOSPC for real."""
    from transformers import TrainerState

    from aries.core.console import trainer_console

    callback = trainer_console(Path("/dev/full"), desc="train", progress=False)
    with pytest.raises(AriesError) as error:
        callback.on_log(None, TrainerState(), None, logs={"loss": 0.5})
    _assert_one_line(str(error.value), Path("/dev/full"), "the training log")


def test_the_launchers_log_names_its_file(tmp_path, monkeypatch, capsys):
    """A launched stage's output goes to RUN/logs/<stage>-iter_<t>.log; a full disk there stops
    the stage (its process tree too) with one line naming the log."""
    from aries.pipeline import launch
    from aries.pipeline.runconfig import resolve_config
    from aries.pipeline.rundir import RunDir
    from aries.pipeline.runlock import RunLock

    config = resolve_config(
        {"output_dir": str(tmp_path), "name": "r", "train": {"launcher": sys.executable}}
    )
    run = RunDir(config.run_dir)
    run.root.mkdir(parents=True)
    monkeypatch.setattr(launch, "log_path", lambda run, name, t: Path("/dev/full"))
    with RunLock(run.root) as lock, pytest.raises(AriesError) as error:
        launch.run_launched(run, config, "train", 0, lock, progress=False)
    _assert_one_line(str(error.value), Path("/dev/full"), "the launcher's log")
