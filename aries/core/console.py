"""The console a person watches: one progress line per stage, the libraries' own chatter off.

A stage prints aries' lines and one progress bar of its own (answers/s while generating; the
loss and reward margin while training). What transformers, datasets and TRL would print on top
of it (a bar per model load, dataset map, reference pass and shard write, the trainer's raw log
dicts, deprecation warnings that the user cannot act on) is switched off for the stage's
duration, and the trainer's full logs go to the run's `logs/` folder instead (`TrainingConsole`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aries.core.jsonl import writing

NOISE = (
    # TRL 1.16 reads this deprecated alias in its activation-checkpointing helpers on every
    # step; transformers 5.x warns on each read. Nothing the user can change.
    (FutureWarning, "`is_gradient_checkpointing` is deprecated", "transformers.modeling_utils"),
)
"""(category, message start, module that warns) of warnings that are noise to an aries user."""

SHOWN = {"loss": "loss", "rewards/margins": "margin"}
"""The trainer metrics the progress line shows (when the loss logs them), by their short name."""


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Within: no progress bars from transformers, datasets or TRL, and NOISE filtered.

    Each library's own switch is used (TRL reads TQDM_DISABLE when it opens its reference
    pass bar), and restored afterwards; aries' own bars pass `disable` explicitly.
    """
    import datasets
    import transformers.utils.logging as transformers_logging

    bars_on = transformers_logging.is_progress_bar_enabled()
    datasets_bars_on = not datasets.are_progress_bars_disabled()
    tqdm_disable = os.environ.get("TQDM_DISABLE")
    transformers_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    os.environ["TQDM_DISABLE"] = "1"
    try:
        with warnings.catch_warnings():
            for category, message, module in NOISE:
                warnings.filterwarnings("ignore", message, category, module)
            yield
    finally:
        if bars_on:
            transformers_logging.enable_progress_bar()
        if datasets_bars_on:
            datasets.enable_progress_bars()
        if tqdm_disable is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = tqdm_disable


def progress_bar(total: int, *, desc: str, unit: str, enabled: bool, initial: int = 0):
    """aries' one bar per stage (tqdm), on whatever the libraries' switches say."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        disable=not enabled or total == 0,
        dynamic_ncols=True,
    )


def trainer_console(log_file: Path | None, *, desc: str, progress: bool):
    """A transformers `TrainerCallback` for the main process: one progress line with the loss
    and reward margin, and every log dict the trainer makes appended to `log_file` as a JSON
    line (the run's full training log; the console shows none of them)."""
    from transformers import TrainerCallback

    class TrainingConsole(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = progress_bar(
                    state.max_steps,
                    desc=desc,
                    unit="step",
                    enabled=progress,
                    initial=state.global_step,
                )

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            if log_file is not None:
                log_file.parent.mkdir(parents=True, exist_ok=True)
                with writing(log_file, "the training log"), log_file.open("a") as f:
                    f.write(json.dumps({"step": state.global_step, **logs}) + "\n")
            shown = {name: logs[k] for k, name in SHOWN.items() if isinstance(logs.get(k), float)}
            if self.bar is not None and shown:
                self.bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items()}, refresh=True)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return TrainingConsole()


def watch(trainer, log_file: Path | None, *, desc: str, progress: bool) -> None:
    """Replace the trainer's console output (its tqdm bar and printed log dicts) with
    `trainer_console`'s."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in list(trainer.callback_handler.callbacks):
        if isinstance(callback, ProgressCallback | PrinterCallback):
            trainer.remove_callback(callback)
    trainer.add_callback(trainer_console(log_file, desc=desc, progress=progress))
