"""Process trees: stop a launched trainer whole; let no rank or server outlive the process that
started it.

torchrun (and accelerate's launcher, which uses it) starts each rank in a session of its own, so
signalling the launcher's process group leaves the ranks running: `kill_tree` walks the tree
instead. A SIGKILLed parent cannot clean up at all; `die_with_parent` asks Linux to kill the child
when its parent dies (prctl PR_SET_PDEATHSIG), a no-op elsewhere. That reaches the child only, not
the workers it spawned (vLLM's engine core outlives its killed API server): `guarded` runs a
command under a guard that takes the whole process group down with the parent.

Run as a script (`guarded` does), this file is the guard; it imports nothing from aries.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` (default SIGKILL) to this process when its parent dies (Linux;
    nothing elsewhere).

    Usable as `preexec_fn` and at the start of a rank; a process whose parent is already gone
    (reparented to init) exits at once. Linux counts the parent dead when the *thread* that
    started the child ends: start it from a thread that outlives it.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() == 1:
        os._exit(1)


def guarded(command: list[str]) -> list[str]:
    """`command` under `guard`, for `Popen(..., start_new_session=True)`: the guard leads the new
    process group, and when this process dies it SIGKILLs the group, workers included."""
    return [sys.executable, "-I", os.path.abspath(__file__), str(os.getpid()), *command]


def guard(parent: int, command: list[str]) -> int:
    """Run `command` in this process group and return its exit code; SIGKILL the whole group when
    `parent` dies. A SIGTERM to the group is for `command`: the guard waits for it to exit."""
    signal.signal(signal.SIGUSR1, lambda *_: os.killpg(0, signal.SIGKILL))
    signal.signal(signal.SIGTERM, lambda *_: None)  # a handler, not SIG_IGN: exec resets it
    die_with_parent(signal.SIGUSR1)
    if os.getppid() != parent:  # died before prctl took effect
        return 1
    try:
        child = subprocess.Popen(command)
    except OSError as error:
        print(f"cannot start {command[0]}: {error}", file=sys.stderr, flush=True)
        return 127
    code = child.wait()
    return code if code >= 0 else 128 - code


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
    kill(tree(pid), grace=grace)


def kill(processes: list, *, grace: float = 0.0) -> None:
    """Stop psutil `processes` as `kill_tree` does and wait until they are gone."""
    import psutil

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
    return [process.pid for process in same_processes(pids)]


def same_processes(pids: list[tuple[int, float]]) -> list:
    """The live psutil processes that `(pid, create_time)` pairs still name: a pid the system
    gave to a new process since (its create time differs) is left alone."""
    import psutil

    alive = []
    for pid, created in pids:
        try:
            process = psutil.Process(pid)
            if abs(process.create_time() - created) < 0.01 and process.status() != "zombie":
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


if __name__ == "__main__":
    sys.exit(guard(int(sys.argv[1]), sys.argv[2:]))
