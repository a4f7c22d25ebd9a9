"""One `aries run` and one trainer per run directory at a time: `RUN/aries.lock`.

The loop holds an exclusive `flock` on the file while it runs and writes into it its own pid and
those of the trainer it launched. A SIGKILLed loop releases the lock, but its launched trainer may
still be running (ranks die with their parent where Linux allows, see aries.core.processes, yet
not on other machines, or not at once): a rerun waits for every recorded process to be gone, and
after `wait_s` stops with a line naming them, rather than start a second trainer on the same
files.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from aries import AriesError
from aries.core.processes import running, tree

WAIT_S = 60.0


class RunLock:
    """The run directory's lock; `with RunLock(root):` around the loop."""

    def __init__(self, root: Path, *, wait_s: float = WAIT_S):
        self.path = Path(root) / "aries.lock"
        self.wait_s = wait_s
        self._file = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a+")
        deadline = time.monotonic() + self.wait_s
        waited = False
        while True:
            holder = self._holders()
            if not holder:
                break
            if not waited:
                print(
                    f"[aries] waiting up to {self.wait_s:.0f} s for pid "
                    f"{', '.join(map(str, holder))}, still working on {self.path.parent}",
                    file=sys.stderr,
                    flush=True,
                )
                waited = True
            if time.monotonic() > deadline:
                self._file.close()
                raise AriesError(
                    f"{self.path.parent}: another aries process still works on this run (pid "
                    f"{', '.join(map(str, holder))}); wait for it to end or stop it, then rerun"
                )
            time.sleep(0.5)
        self.record(None)
        return self

    def _holders(self) -> list[int]:
        """Who keeps this run busy: the lock's live holder, or trainers a dead loop recorded."""
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return [self._recorded().get("loop", ["?"])[0]]
        trainers = [tuple(p) for p in self._recorded().get("trainer", [])]
        alive = running(trainers)
        if alive:
            fcntl.flock(self._file, fcntl.LOCK_UN)  # let the check run again from the start
        return alive

    def _recorded(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            return {}

    def record(self, trainer_pid: int | None) -> None:
        """Write the loop's pid and the launched trainer's process tree (None: no trainer)."""
        trainer = [[p.pid, p.create_time()] for p in tree(trainer_pid)] if trainer_pid else []
        data = {"loop": [os.getpid()], "trainer": trainer}
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps(data))
        self._file.flush()

    def __exit__(self, *exc) -> None:
        self.record(None)
        self._file.close()  # releases the flock
