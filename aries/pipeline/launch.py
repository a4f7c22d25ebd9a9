"""Training stages in processes of their own: `train.launcher` (torchrun, accelerate launch, srun).

With a launcher, the loop runs each stage that trains as `<launcher> -m aries.cli train RUN
--iteration T [--stage NAME]` and waits for it; prompts, collection, scoring, selection and
evaluation stay in the loop's process, whose generation engine is closed first so the trainer
gets the GPUs. The launched stage records itself in the manifest as `aries train` always does.
Its output goes to the console (indented `  | `) and to `RUN/logs/<stage>[-iter_<t>].log`.

Before each launch the loop writes a fresh token to `RUN/launch.json` and hands it to the ranks
in the environment: a rank that reads another token, or none, runs on a machine that does not
see the run directory, and stops at once with one line saying so.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

from aries import AriesError
from aries.core.distributed import LAUNCH_TOKEN_ENV
from aries.core.jsonl import atomic_write_json, writing
from aries.core.processes import die_with_parent, kill_tree
from aries.pipeline.runconfig import RunConfig
from aries.pipeline.rundir import RunDir
from aries.pipeline.runlock import RunLock

TRAINING_STAGES = ("sft", "warm_start", "future_model", "train")
"""The loop's stages that train a model: what a launcher runs."""
STOP_GRACE_S = 10.0
"""How long an interrupted trainer gets between SIGTERM and SIGKILL."""


def launcher_words(config: RunConfig) -> list[str]:
    """The launcher split as a shell would; a launcher whose program is not on PATH fails."""
    try:
        words = shlex.split(config.train.launcher)
    except ValueError as error:
        raise AriesError(f"train.launcher {config.train.launcher!r}: {error}") from None
    if not words or shutil.which(words[0]) is None:
        program = words[0] if words else ""
        raise AriesError(f"train.launcher: {program!r} is not on PATH ({config.train.launcher!r})")
    return words


def launch_command(config: RunConfig, name: str, t: int | None) -> list[str]:
    """The command that runs stage `name` of iteration t (None: before the first)."""
    command = [*launcher_words(config), "-m", "aries.cli", "train", str(config.run_dir)]
    if t is not None:
        command += ["--iteration", str(t)]
    return command + ([] if name == "train" else ["--stage", name])


def log_path(run: RunDir, name: str, t: int | None) -> Path:
    return run.root / "logs" / (f"{name}.log" if t is None else f"{name}-iter_{t}.log")


def run_launched(
    run: RunDir, config: RunConfig, name: str, t: int | None, lock: RunLock, progress: bool
) -> None:
    """Run stage `name` under the launcher; its whole process tree is stopped if the loop is
    interrupted (Ctrl-C, SIGTERM), and dies with the loop where Linux allows (SIGKILL)."""
    command = launch_command(config, name, t)
    label = name if t is None else f"{name} (iteration {t})"
    token = secrets.token_hex(8)
    atomic_write_json(run.root / "launch.json", {"token": token, "command": command})
    log = log_path(run, name, t)
    log.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"[aries] {label}: launched as {shlex.join(command)}", flush=True)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, LAUNCH_TOKEN_ENV: token, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # Ctrl-C reaches the loop, which stops the tree
        preexec_fn=die_with_parent,
    )
    finished = threading.Event()
    recorder = threading.Thread(target=_record, args=(lock, process.pid, finished), daemon=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        recorder.start()
        with writing(log, "the launcher's log"), log.open("wb") as out:
            for line in process.stdout:
                out.write(line)
                out.flush()
                if progress:
                    text = line.decode("utf-8", "replace").rstrip("\r\n")
                    print(f"  | {text}", flush=True)
        code = process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if process.poll() is None:
            kill_tree(process.pid, grace=STOP_GRACE_S)
        finished.set()
        recorder.join()
        lock.record(None)
    if code != 0:
        raise AriesError(f"{label} failed (exit code {code}); {log}: {_tail(log)}")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _record(lock: RunLock, pid: int, finished: threading.Event) -> None:
    """Keep the lock file's list of trainer processes current (ranks start after a while)."""
    while not finished.is_set():
        lock.record(pid)
        finished.wait(1.0)


def _tail(log: Path, lines: int = 3) -> str:
    """The last lines of a log on one line, with the last aries error line if it is earlier."""
    text = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    tail = text[-lines:]
    errors = [line for line in text if re.match(r"aries \w+: error:", line)]
    if errors and errors[-1] not in tail:
        tail = [errors[-1], "...", *tail]
    return " / ".join(tail) or "(empty)"


def check_shared_run_dir(root: Path) -> None:
    """In a launched rank: stop at once unless this machine sees the loop's run directory."""
    token = os.environ.get(LAUNCH_TOKEN_ENV)
    if token is None:
        return
    try:
        seen = json.loads((root / "launch.json").read_text())["token"]
    except (OSError, ValueError, KeyError, TypeError):
        seen = None
    if seen != token:
        found = "no launch.json" if seen is None else "a launch.json of another launch"
        raise AriesError(
            f"{root}: {found} on {socket.gethostname()}; the run directory must be on a "
            "filesystem every node sees"
        )
    die_with_parent()  # the launcher's agent: a rank never outlives it


def describe_launch(config: RunConfig) -> str:
    """For `aries run --check`: the command of each training stage the plan runs."""
    from aries.pipeline.methods import METHODS

    plan = METHODS[config.method].plan
    shown = []
    scopes = [(None, plan.once), *((t, plan.per_iteration) for t in range(config.iterations))]
    for t, steps in scopes:
        for step in steps:
            if step.name in TRAINING_STAGES and step.when(config, t):
                label = step.name if t is None else f"iteration {t} {step.name}"
                command = shlex.join(launch_command(config, step.name, t))
                shown.append(f"  {label}: launched as: {command}")
    return "\n".join(shown)
