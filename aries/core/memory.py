"""Keeping the CPU process's peak memory near what its tensors need (glibc malloc only).

PyTorch allocates CPU tensors with plain malloc. glibc keeps freed memory for reuse: the heap of
a closed generation model stays resident under the trainer, and activations freed after each
step leave holes that the next step's tensors do not fit. Measured on the demo (2 cores, fp32
SmolLM2-135M): the train stage starts at 0.6 instead of 1.45 GB once freed memory is trimmed,
and mmapping large allocations lowers its peak by about 80 MB more (bench/iteration.py).
"""

from __future__ import annotations

import ctypes
import gc

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
LARGE_ALLOCATION = 4 * 2**20
"""Allocations from this size on get their own mapping, returned to the OS when freed."""


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
