"""Training checkpoints that are trusted only when complete (a run killed anywhere resumes), and
the trained policy folder, renamed into place only when whole.

transformers writes `checkpoint-<step>/` in place and, on resume, takes the newest folder as the
last checkpoint, even one a kill left half-written. Here a marker is written into each checkpoint
once it is whole, rotation happens after the marker, and resume trusts only marked checkpoints
(docs/resume.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from aries.core.jsonl import atomic_write_json, fsync_tree, replace_folder, writing

CHECKPOINT_COMPLETE = "aries-checkpoint-complete.json"
"""Written into `checkpoint-<step>/` once all of it is on disk; resume trusts nothing else."""


def checkpoint_folders(folder: Path) -> list[Path]:
    """`checkpoint-<step>` folders under `folder`, oldest step first."""
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[11:]))


def incomplete(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from (None: it can)."""
    if not (checkpoint / CHECKPOINT_COMPLETE).is_file():
        return f"no {CHECKPOINT_COMPLETE}: the run was killed while writing or deleting it"
    if not (checkpoint / "trainer_state.json").is_file():
        return "no trainer_state.json"
    return None


def discard(checkpoint: Path) -> None:
    """Delete a checkpoint, its completion marker first, so a kill midway leaves it incomplete."""
    (checkpoint / CHECKPOINT_COMPLETE).unlink(missing_ok=True)
    shutil.rmtree(checkpoint, ignore_errors=True)


def last_checkpoint(folder: Path, *, tidy: bool) -> str | None:
    """The newest complete checkpoint under `folder` (None: train from the start).

    Incomplete ones (a kill while the trainer wrote or rotated them) are skipped with a message
    and, with `tidy` (the main process), deleted, so the step is trained and saved again.
    """
    if not folder.is_dir():
        return None
    complete = None
    for checkpoint in reversed(checkpoint_folders(folder)):
        reason = incomplete(checkpoint)
        if reason is None:
            complete = complete or checkpoint
            continue
        if tidy:
            print(f"[aries] skipping checkpoint {checkpoint} ({reason}); deleting it", flush=True)
            discard(checkpoint)
    return None if complete is None else str(complete)


def checkpoint_marker(accelerator, folder: Path, keep: int | None):
    """A callback that marks each checkpoint complete after the trainer wrote it, then rotates.

    transformers writes `checkpoint-<step>/` in place (weights, optimizer, scheduler, RNG state,
    trainer state) and calls `on_save` when it is whole. Its own rotation (`save_total_limit`)
    deletes older checkpoints before that, so a kill in between could leave none complete:
    rotation happens here instead, after the marker, keeping the `keep` newest.
    """
    from transformers import TrainerCallback

    class CheckpointMarker(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            accelerator.wait_for_everyone()  # DeepSpeed and FSDP write a shard per process
            if args.should_save:
                newest = folder / f"checkpoint-{state.global_step}"
                fsync_tree(newest)  # on disk before the marker vouches for it
                atomic_write_json(newest / CHECKPOINT_COMPLETE, {"step": state.global_step})
                for old in checkpoint_folders(folder)[:-keep] if keep and keep > 0 else []:
                    discard(old)
            accelerator.wait_for_everyone()

    return CheckpointMarker()


def save_policy(trainer, tokenizer, output_dir: str | Path) -> None:
    """Save the trained policy as a normal HF folder (LoRA: merged weights plus `adapter/`) with
    the trainer's log history, written to `<output_dir>.tmp` and renamed into place whole.

    `trainer.save_model` gathers sharded weights under DeepSpeed ZeRO-3 / FSDP.
    """
    output_dir = Path(output_dir)
    tmp = output_dir.with_name(output_dir.name + ".tmp")
    main = trainer.accelerator.is_main_process
    if main:
        shutil.rmtree(tmp, ignore_errors=True)  # what a killed save left
    with writing(output_dir, "the trained model", partial=tmp if main else None):
        trainer.save_model(  # _internal_call: no push of the checkpoint folder (push_policy)
            str(tmp / "adapter") if hasattr(trainer.model, "merge_and_unload") else str(tmp),
            _internal_call=True,
        )
        trainer.accelerator.wait_for_everyone()
        if main:
            if hasattr(trainer.model, "merge_and_unload"):  # PEFT: also save merged weights
                merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
                merged.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            atomic_write_json(tmp / "log_history.json", trainer.state.log_history)
            replace_folder(tmp, output_dir)
    trainer.accelerator.wait_for_everyone()
