"""`train.launcher`: one `aries run` launches its own trainer (torchrun, gloo ranks on a CPU).

Every check that involves several processes first checks that they formed one world: the
manifest's `processes` and the trainer's `[aries] train: 2 processes` line.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file

from aries import AriesError
from aries.cli import main
from aries.core.testing import tiny_run_config
from aries.pipeline.loop import run
from aries.pipeline.runconfig import resolve_config
from aries.pipeline.runlock import RunLock

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TWO_PROCESSES = shlex.join([*TORCHRUN, "--standalone", "--nproc_per_node", "2"])
ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _config(tmp_path: Path, model: Path, name: str, *, batch_size: int):
    config = tiny_run_config(model, tmp_path / name, prompts=12)
    config["train"].update(batch_size=batch_size, save_steps=2, learning_rate=1e-2)
    config["eval"].update(enabled=False)
    return config


def _weights(config, t: int = 0) -> dict:
    return load_file(config.run_dir / f"iter_{t}" / "model" / "model.safetensors")


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _train_entry(config, t: int) -> dict:
    manifest = json.loads((config.run_dir / "manifest.json").read_text())
    return manifest["iterations"][str(t)]["stages"]["train"]


def test_one_command_equals_the_manual_procedure(launched_runs):
    """One `aries run` with a launcher (torchrun, 2 processes) trains both iterations as the
    manual procedure on two one-process "nodes" does: the same bytes and weights."""
    launched, manual = launched_runs["launched"], launched_runs["manual"]
    for t in range(2):
        for name in ("prompts.jsonl", "chains.jsonl", "scores.jsonl", "selections.jsonl"):
            assert (launched.run_dir / f"iter_{t}" / name).read_bytes() == (
                manual.run_dir / f"iter_{t}" / name
            ).read_bytes(), (t, name)
        assert _max_diff(_weights(launched, t), _weights(manual, t)) == 0.0
        entry = _train_entry(launched, t)
        assert entry["status"] == "done" and entry["processes"] == 2
        assert "processes" not in _train_entry(manual, t)  # started by hand, not by the loop
        log = (launched.run_dir / "logs" / f"train-iter_{t}.log").read_text()
        for output in (log, launched_runs["outputs"][t]):  # one world of 2, not 2 worlds of 1
            assert "[aries] train: 2 processes" in output
    # the launcher is how to run, not what: same saved config and hash as without it
    assert (launched.run_dir / "config.yaml").read_text() == (
        manual.run_dir / "config.yaml"
    ).read_text().replace("/manual", "/launched")
    assert not list(launched.run_dir.rglob("*.tmp")) and not list(launched.run_dir.rglob("*.old"))


def test_two_processes_and_two_nodes_train_as_one_process(launched_runs):
    single = _weights(launched_runs["single"])
    start = load_file(Path(launched_runs["single"].model) / "model.safetensors")
    moved = _max_diff(single, start)
    pairs = json.loads((launched_runs["single"].run_dir / "manifest.json").read_text())
    rows = pairs["iterations"]["0"]["stages"]["pairs"]["counts"]["pairs"]
    tolerance = 1e-4 if rows % 4 == 0 else moved / 2  # a last, partial update differs
    assert _train_entry(launched_runs["launched"], 0)["processes"] == 2
    assert "[aries] train: 2 processes" in launched_runs["outputs"][0]  # the two nodes
    for name in ("launched", "manual"):  # two processes, two nodes
        assert moved > 1e-3 and _max_diff(single, _weights(launched_runs[name])) < tolerance, name


def test_check_prints_the_launch_commands_and_refuses_a_missing_launcher(
    tmp_path, tiny_model_path, capsys
):
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps(_config(tmp_path, tiny_model_path, "c", batch_size=2)))
    assert main(["run", "--config", str(config), "--launcher", TWO_PROCESSES, "--check"]) == 0
    out = capsys.readouterr().out
    expected = f"{TWO_PROCESSES} -m aries.cli train {tmp_path / 'c' / 'tiny'} --iteration 0"
    assert f"iteration 0 train: launched as: {expected}" in out
    assert main(["run", "--config", str(config), "--launcher", "no-such-launcher -n 2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "aries run: error: train.launcher: 'no-such-launcher' is not on PATH "
        "('no-such-launcher -n 2')"
    )
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_a_rank_without_the_run_directory_stops_with_one_line_and_the_run_resumes(
    tmp_path, tiny_model_path, monkeypatch
):
    """A launcher whose process runs where the run directory (relative: runs/tiny) is absent,
    as on a node without the shared filesystem; then the same run resumes without it."""
    monkeypatch.chdir(tmp_path)
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    one = shlex.join([*TORCHRUN, "--standalone", "--nproc_per_node", "1"])
    data = _config(tmp_path, tiny_model_path, "x", batch_size=2)
    data["output_dir"] = "runs"
    data["train"]["launcher"] = f"sh -c 'cd {elsewhere} && exec {one} \"$@\"' launcher"
    config = resolve_config(data)
    with pytest.raises(AriesError) as failed:
        run(config, progress=False)
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("train (iteration 0) failed (exit code 1); runs/tiny/logs/")
    assert "the run directory must be on a filesystem every node sees" in message
    manifest = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())
    assert "train" not in manifest["iterations"]["0"]["stages"]  # the rank stopped at once
    data["train"]["launcher"] = None
    manifest = run(resolve_config(data), progress=False)  # the same run, resumed
    assert manifest["iterations"]["0"]["stages"]["train"]["status"] == "done"
    assert (tmp_path / "runs" / "tiny" / "iter_0" / "model" / "model.safetensors").is_file()


def test_a_rerun_waits_for_a_trainer_still_running_then_names_it(tmp_path):
    """After a SIGKILL of the loop, the lock file still lists its trainer: a rerun waits for it,
    then stops with one line naming its pid, rather than start a second trainer."""
    orphan = subprocess.Popen(["sleep", "30"])
    try:
        dead_loop = RunLock(tmp_path).__enter__()
        dead_loop.record(orphan.pid)
        dead_loop._file.close()  # a SIGKILLed loop: the lock released, its record left behind
        with pytest.raises(AriesError) as held:
            RunLock(tmp_path, wait_s=0.5).__enter__()
    finally:
        orphan.kill()
        orphan.wait()
    assert str(held.value) == (
        f"{tmp_path}: another aries process still works on this run (pid {orphan.pid}); "
        "wait for it to end or stop it, then rerun"
    )
    with RunLock(tmp_path, wait_s=0.5):  # the trainer gone: the run goes on
        with pytest.raises(AriesError, match=f"pid {os.getpid()}"):  # one loop at a time
            RunLock(tmp_path, wait_s=0.5).__enter__()


def _sft_config(tmp_path: Path, model: Path, launcher: str) -> Path:
    """A run whose first stage trains (SFT), under `launcher`."""
    data = tmp_path / "sft.jsonl"
    data.write_text(json.dumps({"prompt": "1 + 1?", "chosen": "2", "rejected": "3"}) + "\n")
    config = _config(tmp_path, model, "runs", batch_size=2)
    config["sft"] = {"enabled": True, "dataset": str(data)}
    config["train"]["launcher"] = launcher
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_stopping_the_loop_stops_the_launched_tree(tmp_path, tiny_model_path, stop):
    """The launched trainer's process (here a rank that sets its parent-death signal, in a
    session of its own as torchrun starts ranks) ends with the loop: SIGTERM stops the tree,
    SIGKILL leaves it to the kernel; then the same command runs again."""
    pid_file = tmp_path / "rank.pid"
    rank = (
        "import os, time; from aries.core.processes import die_with_parent; die_with_parent(); "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    )
    script = tmp_path / "launcher.sh"
    script.write_text(f"#!/bin/sh\nsetsid {shlex.join([sys.executable, '-c', rank])} &\nwait\n")
    script.chmod(0o755)
    config = _sft_config(tmp_path, tiny_model_path, str(script))
    loop = subprocess.Popen(
        [sys.executable, "-m", "aries.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **ENV},
    )
    deadline = time.monotonic() + 120
    while not pid_file.is_file() or not pid_file.read_text():
        assert loop.poll() is None and time.monotonic() < deadline, loop.stdout.read()
        time.sleep(0.1)
    trainer = psutil.Process(int(pid_file.read_text()))
    loop.send_signal(getattr(signal, stop))
    assert loop.wait(timeout=60) != 0
    psutil.wait_procs([trainer], timeout=30)
    assert not trainer.is_running() or trainer.status() == psutil.STATUS_ZOMBIE
    lock = json.loads((tmp_path / "runs" / "tiny" / "aries.lock").read_text())
    assert lock["trainer"] if stop == "SIGKILL" else not lock["trainer"]
    with RunLock(tmp_path / "runs" / "tiny", wait_s=5):  # nothing left holding the run
        pass
