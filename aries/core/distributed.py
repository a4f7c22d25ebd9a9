"""One notion of the main process for every write to the run directory.

Under `accelerate launch` or `torchrun` every rank runs the train stage. The trainer already asks
accelerate's `PartialState` which rank saves; the run directory's writers (manifest, the
carried-over policy, the momentum step) ask the same state here, and the other ranks wait at a
barrier until the write is done. Without a launcher this is one process and every call is
immediate.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
LAUNCH_TOKEN_ENV = "ARIES_LAUNCH_TOKEN"
"""Set in the processes `aries run` launches (train.launcher); aries.pipeline.launch."""


def launched() -> bool:
    """Whether a launcher started this process as one rank of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launched_processes() -> int | None:
    """How many processes run this stage when `aries run` launched it (train.launcher); None when
    it runs in the loop's own process or was started by hand."""
    if LAUNCH_TOKEN_ENV not in os.environ:
        return None
    return int(os.environ.get("WORLD_SIZE", "1"))


def _state():
    import torch

    from accelerate import PartialState

    # CPU-only machines: gloo ranks (what `accelerate launch --cpu` would set, had it started
    # several processes). `cpu=True` too: a state built without it under torchrun takes the
    # one-process path, and every rank then believes it is the main process.
    cpu = not torch.cuda.is_available()
    if cpu:
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    return PartialState(cpu=cpu)


def is_main_process() -> bool:
    """Rank 0 of a launched run; always true for a single process."""
    return not launched() or _state().is_main_process


def wait_for_everyone() -> None:
    """A barrier across the launched ranks (nothing for a single process)."""
    if launched():
        _state().wait_for_everyone()


def on_main_process(write: Callable[[], T]) -> T | None:
    """Run `write` on the main process only, then let every rank continue once it is done."""
    result = write() if is_main_process() else None
    wait_for_everyone()
    return result
