"""Process trees: stop a launched trainer whole; let no rank outlive the process that started it.

torchrun (and accelerate's launcher, which uses it) starts each rank in a session of its own, so
signalling the launcher's process group leaves the ranks running: `kill_tree` walks the tree
instead. A SIGKILLed parent cannot clean up at all; `die_with_parent` asks Linux to kill the child
when its parent dies (prctl PR_SET_PDEATHSIG), a no-op elsewhere.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; nothing elsewhere).

    Usable as `preexec_fn` and at the start of a rank; a process whose parent is already gone
    (reparented to init) exits at once.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        os._exit(1)


def tree(pid: int) -> list:
    """`pid`'s process and every descendant still running (psutil processes, parent first)."""
    import psutil  # accelerate's dependency

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_tree(pid: int, *, grace: float = 0.0) -> None:
    """Stop `pid` and all its descendants: SIGTERM and up to `grace` seconds to exit, then SIGKILL
    (grace 0: SIGKILL at once). Waits until they are gone."""
    import psutil

    processes = tree(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL) if grace > 0 else (signal.SIGKILL,):
        for process in processes:
            try:
                process.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        _, processes = psutil.wait_procs(processes, timeout=grace if sig == signal.SIGTERM else 30)
        if not processes:
            return


def running(pids: list[tuple[int, float]]) -> list[int]:
    """The pids of `(pid, create_time)` pairs that still name the same live process."""
    import psutil

    alive = []
    for pid, created in pids:
        try:
            process = psutil.Process(pid)
            if abs(process.create_time() - created) < 0.01 and process.status() != "zombie":
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive
