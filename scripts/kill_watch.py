"""The watching half of scripts/kill_anywhere.py: which phase a run is in, and kills aimed at one.

A watcher polls the run folder (down to every 0.2 ms) and the run's output; `aimed_kills` starts
the run's command and SIGKILLs its whole process tree at a random moment in the target phase.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

from aries.core.processes import kill_tree
from aries.training.checkpoints import CHECKPOINT_COMPLETE  # imports nothing heavy

ITERATION = "0"

ORDER = {
    "evaluation (initial model)": 0,
    "prompts": 1,
    "collect": 2,
    "score": 3,
    "select": 4,
    "pairs": 5,
    "training setup": 6,
    "reference log-probs": 7,
    "training steps": 8,
    "checkpoint write": 8,  # steps and checkpoint writes alternate
    "checkpoint rotation": 8,
    "model save": 9,
    "tidy-up after the model save": 10,
    "evaluation": 11,
}
"""Where each phase comes in a run: a target behind the current phase can no longer be hit."""
DEFAULT_SECONDS = 0.005  # the length assumed for a phase too short to be seen uninterrupted
SHORTEST = 0.01  # phases shorter than this are killed as soon as they are seen


class Watcher:
    """Which phase a run process is in, read from its run folder and its output."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.iter_dir = run_dir / f"iter_{ITERATION}"
        self.checkpoints = self.iter_dir / "model.checkpoints"
        self.attempts: dict[tuple[str, str], int] = {}
        self.stale: set[str] = set()
        self.stale_save: int | None = None
        self.progress = ""
        self.tail = ""

    def start(self) -> None:
        """Forget the previous process: stage attempts so far, checkpoints it left unfinished."""
        self.attempts = {key: entry.get("attempts", 0) for key, entry in self._stages().items()}
        self.stale = set(self._unmarked())
        self.stale_save = self._save_identity()
        self.progress = ""
        self.tail = ""

    def _stages(self) -> dict[tuple[str, str], dict]:
        try:
            manifest = json.loads((self.run_dir / "manifest.json").read_text())
        except (OSError, ValueError):
            return {}
        stages = {("base", k): v for k, v in manifest["baseline"]["stages"].items()}
        its = manifest["iterations"].get(ITERATION, {}).get("stages", {})
        return stages | {(ITERATION, k): v for k, v in its.items()}

    def _checkpoint_names(self) -> list[str]:
        try:
            names = os.listdir(self.checkpoints)
        except OSError:
            return []
        return [n for n in names if re.fullmatch(r"checkpoint-\d+", n)]

    def _unmarked(self) -> list[str]:
        return [n for n in self._checkpoint_names() if not self._marked(n)]

    def _marked(self, name: str) -> bool:
        return os.path.exists(self.checkpoints / name / CHECKPOINT_COMPLETE)

    def _save_identity(self) -> int | None:
        """When `model.tmp/` last changed: a save left by a killed process keeps its time."""
        try:
            return os.stat(self.iter_dir / "model.tmp").st_ctime_ns
        except OSError:
            return None

    def see_output(self, text: str) -> None:
        """Follow the trainer's progress bars (reference log-probs first, then the steps)."""
        *lines, self.tail = re.split(r"[\r\n]", self.tail + text)
        for line in lines + [self.tail]:
            line = line.removeprefix("  | ")  # a trainer that `aries run` launched
            if "reference log probs" in line:
                self.progress = "reference log-probs"
            elif re.match(r"\s*\d+%\|.*\| \d+/\d+ \[", line) or line.startswith("{'loss'"):
                self.progress = "training steps"  # the trainer's bar has no description

    def phase(self) -> str:
        running = [
            key
            for key, entry in self._stages().items()
            if entry.get("status") == "running"
            and entry.get("attempts", 0) > self.attempts.get(key, 0)
        ]
        if not running:
            return "startup or between stages"
        scope, stage = running[0]
        if scope == "base":
            return "evaluation (initial model)" if stage == "eval" else f"{stage} (initial)"
        if stage == "eval":
            return "evaluation"
        if stage != "train":
            return stage
        self.stale &= set(self._unmarked())  # a stale one deleted on resume is stale no more
        if self._save_identity() not in (None, self.stale_save):
            return "model save"
        if (self.iter_dir / "model").exists():
            return "tidy-up after the model save"
        unmarked = set(self._unmarked()) - self.stale
        if unmarked:
            steps = {int(n.split("-")[1]): n for n in self._checkpoint_names()}
            newest = steps[max(steps)] if steps else None
            return "checkpoint write" if newest in unmarked else "checkpoint rotation"
        return self.progress or "training setup"


class Attempt:
    """One start of the command, its output kept in a log file and shown to the watcher."""

    def __init__(self, command: list[str], log: Path, watcher: Watcher, env: dict):
        watcher.start()
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: accelerate's child dies with it
            env=env,
        )
        self.reader = threading.Thread(target=self._read, args=(watcher,), daemon=True)
        self.reader.start()

    def _read(self, watcher: Watcher) -> None:
        while chunk := self.process.stdout.read1(65536):
            self.log.write(chunk)
            watcher.see_output(chunk.decode("utf-8", "replace"))

    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self, *, tree: bool = True) -> None:
        """SIGKILL the command and everything it started (torchrun starts each rank in a session
        of its own, which a kill of the launcher's process group would leave running); with
        `tree` False the command's own process only, as when a machine kills the loop alone."""
        if tree:
            kill_tree(self.process.pid)
        else:
            self.process.kill()
        self.wait()

    def wait(self) -> int:
        code = self.process.wait()
        self.reader.join()
        self.log.close()
        return code


def follow(command, log, watcher, env, durations: dict[str, list[float]]) -> int:
    """Run `command` to the end, timing each phase the watcher sees (the uninterrupted run)."""
    attempt = Attempt(command, log, watcher, env)
    phase, since = None, time.monotonic()
    while attempt.running():
        now, current = time.monotonic(), watcher.phase()
        if current != phase:
            if phase is not None:
                durations.setdefault(phase, []).append(now - since)
            phase, since = current, now
        time.sleep(0.002)
    return attempt.wait()


def aimed_kills(
    command, log, watcher, env, pending: list[str], durations, rng, *, tree: bool = True
) -> str | None:
    """Start `command`, wait for the first target of `pending` still ahead, kill at a random
    moment in the first half of that phase's uninterrupted length. A phase that recurs (steps,
    checkpoint writes) is hit at its first, second or third occurrence, so kills spread over
    steps. Targets the run has passed are dropped from `pending`.

    Returns the phase the kill landed in, or None when the command ran to its end. `tree`
    False kills the command's own process only (`Attempt.kill`).
    """
    attempt = Attempt(command, log, watcher, env)
    aimed, skip, entered, previous, length = None, 0, 0, None, DEFAULT_SECONDS
    while attempt.running():
        phase = watcher.phase()
        while pending and ORDER[pending[0]] < ORDER.get(phase, -1):
            print(f"  {pending.pop(0)}: passed before a kill could land in it", flush=True)
        if pending and pending[0] != aimed:
            aimed, entered = pending[0], 0
            skip = rng.randrange(min(3, len(durations.get(aimed, [])) or 1))
            length = mean(durations.get(aimed)) or DEFAULT_SECONDS
        if phase == aimed and previous != phase:
            entered += 1
        previous = phase
        if phase == aimed and entered > skip:
            # a phase too short to time (selection takes ~2 ms) is hit at first sight
            delay = rng.uniform(0, length / 2) if length >= SHORTEST else 0.0
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and attempt.running():
                time.sleep(0.0002)
            landed = watcher.phase()
            if attempt.running():
                attempt.kill(tree=tree)
                return landed
        time.sleep(0.0002 if length < 0.1 else 0.002)  # short phases need a quick eye
    code = attempt.wait()
    if code != 0:
        raise SystemExit(f"the restarted command failed (exit {code}); see {log}")
    return None


def mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None
