"""The console of `aries run`: aries' lines and one progress bar per stage, the trainer's logs in
the run folder (a real run of the tiny model, in a subprocess as a person starts it: conftest's
tiny_cli_run)."""

from __future__ import annotations

import json


def test_run_console_shows_progress_lines_and_logs_go_to_the_run_folder(tiny_cli_run):
    run_dir, console = tiny_cli_run
    assert "{'loss'" not in console and "'grad_norm'" not in console
    assert "warnings.warn(" not in console
    for noise in ("Loading weights", "Writing model shards", "Tokenizing", "Computing reference"):
        assert noise not in console, noise
    assert "[aries] iteration 0: train" in console
    training = [part for part in console.replace("\r", "\n").splitlines() if "training:" in part]
    assert training and "loss=" in training[-1] and "margin=" in training[-1]
    assert "generating:" in console and "answer/s" in console
    log = (run_dir / "logs" / "iter_0" / "train.log").read_text().splitlines()
    entries = [json.loads(line) for line in log]
    steps = [e for e in entries if "loss" in e]
    assert len(steps) == 4 and all("grad_norm" in e and "rewards/margins" in e for e in steps)
    assert "train_runtime" in entries[-1]
