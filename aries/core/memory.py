"""Keeping the CPU process's peak memory near what its tensors need (glibc malloc only), and
measuring each stage's own peak.

PyTorch allocates CPU tensors with plain malloc. glibc keeps freed memory for reuse: the heap of
a closed generation model stays resident under the trainer, and activations freed after each
step leave holes that the next step's tensors do not fit. Measured on the demo (2 cores, fp32
SmolLM2-135M): the train stage starts at 0.6 instead of 1.45 GB once freed memory is trimmed,
and mmapping large allocations lowers its peak by about 80 MB more (bench/iteration.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import glob
import os
import threading

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
LARGE_ALLOCATION = 4 * 2**20
"""Allocations from this size on get their own mapping, returned to the OS when freed."""
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _glibc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to tune
        return None


def return_large_allocations_promptly() -> None:
    """Give every allocation of at least 4 MiB its own mapping (freed = returned to the OS).

    glibc otherwise raises this threshold as tensors are freed (up to 32 MiB), so activation-sized
    tensors come from the heap and fragment it. Process-wide: the `aries` command calls it.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, LARGE_ALLOCATION)


def return_freed_memory() -> None:
    """Hand freed heap memory back to the OS, e.g. after a generation model is closed."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _rss_bytes(pid: int | str) -> int:
    """Resident memory of one process (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/statm") as file:
            return int(file.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _descendants(pid: int) -> list[str]:
    """Every process below `pid`, from the kernel's per-thread children lists."""
    found, todo = [], [str(pid)]
    while todo:
        parent = todo.pop()
        for task in glob.glob(f"/proc/{parent}/task/*/children"):
            try:
                with open(task) as file:
                    kids = file.read().split()
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def tree_rss_mb() -> float | None:
    """Resident memory of this process and all its children, in MB (None without /proc)."""
    if not os.path.exists("/proc/self/statm"):
        return None
    pid = os.getpid()
    return sum(_rss_bytes(p) for p in [pid, *_descendants(pid)]) / 2**20


def _own_peak_mb() -> float | None:
    """This process's peak RSS since the last `_reset_own_peak` (the kernel's VmHWM)."""
    try:
        with open("/proc/self/status") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_own_peak() -> None:
    """Restart the kernel's VmHWM count at the current RSS (Linux 4.0+; else nothing happens)."""
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")


class PeakRSS:
    """The peak resident memory of this process tree while a block runs, and what it was at the
    start: a stage's own peak, not the peak of whatever ran before it in the same process.

    A thread samples the tree (this process and every child, e.g. a training launcher) every
    `interval` seconds; this process's own peak is exact (the kernel's high-water mark, reset at
    the start). Both are None where /proc is missing (not Linux).
    """

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.start_mb: float | None = None
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="aries-peak-rss")

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, tree_rss_mb() or 0.0)

    def __enter__(self) -> PeakRSS:
        self.start_mb = tree_rss_mb()
        if self.start_mb is not None:
            _reset_own_peak()
            self.peak_mb = self.start_mb
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.start_mb is None:
            return
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, tree_rss_mb() or 0.0, _own_peak_mb() or 0.0)
