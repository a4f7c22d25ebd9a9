"""The console of `aries run`: aries' lines and one progress bar per stage, the trainer's logs in
the run folder (a real run of the tiny model, in a subprocess as a person starts it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from aries.core.testing import tiny_run_config


def test_run_console_shows_progress_lines_and_logs_go_to_the_run_folder(tmp_path, tiny_model_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config(tiny_model_path, tmp_path / "runs")))
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "aries.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    console = result.stdout + result.stderr
    assert "{'loss'" not in console and "'grad_norm'" not in console
    assert "warnings.warn(" not in console
    for noise in ("Loading weights", "Writing model shards", "Tokenizing", "Computing reference"):
        assert noise not in console, noise
    assert "[aries] iteration 0: train" in console
    training = [part for part in console.replace("\r", "\n").splitlines() if "training:" in part]
    assert training and "loss=" in training[-1] and "margin=" in training[-1]
    assert "generating:" in console and "answer/s" in console
    log = (tmp_path / "runs" / "tiny" / "logs" / "iter_0" / "train.log").read_text().splitlines()
    entries = [json.loads(line) for line in log]
    steps = [e for e in entries if "loss" in e]
    assert len(steps) == 4 and all("grad_norm" in e and "rewards/margins" in e for e in steps)
    assert "train_runtime" in entries[-1]
