"""Where training reports and publishes: TRL's own integrations, pointed at the run directory.

Metrics go through transformers' `report_to` callbacks (TensorBoard, Weights & Biases, Trackio,
...), which TRL's trainers build from their config; the only thing added here is the folder:
TensorBoard events are written to the run's `logs/<stage>/` (what `aries report` reads), not
under the trainer's temporary checkpoint folder. With `push_to_hub`, the trainer creates the Hub
repository when it starts and pushes nothing while it trains (`hub_strategy="end"`); once an
iteration's model folder is complete, that folder (merged weights, `adapter/` for LoRA, the
tokenizer) is uploaded as one commit, so the Hub repository holds each iteration's policy in
its history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aries import AriesError


def report_targets(report_to: str) -> list[str]:
    """`train.report_to` as the list TRL takes; unknown or uninstalled integrations fail here,
    at config load, rather than after collection."""
    names = [name.strip() for name in report_to.split(",") if name.strip()]
    if names == ["none"]:
        return []
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    installed = get_available_reporting_integrations()
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            raise AriesError(
                f"train.report_to {name!r} is not a transformers integration; choose from "
                f"{', '.join(sorted(INTEGRATION_TO_CALLBACK))}, or none"
            )
        if name not in installed:
            raise AriesError(f"train.report_to {name!r} needs its package: pip install {name}")
    return names


def check_hub(push_to_hub: bool, hub_model_id: str | None) -> None:
    """Without an id the trainer would name the repository after its checkpoint folder."""
    if push_to_hub and not hub_model_id:
        raise AriesError("train.push_to_hub needs train.hub_model_id (e.g. your-name/aries-run)")


def trainer_arguments(
    report_to: str,
    output_dir: Path,
    log_dir: str | Path | None,
    *,
    push_to_hub: bool = False,
    hub_model_id: str | None = None,
) -> dict[str, Any]:
    """Reporting and Hub settings for a TRL config (`DPOConfig`, `SFTConfig`).

    The run name (`<run>/<iter_t>/model`) labels the run in W&B or Trackio. Without a log
    folder TensorBoard is left out: its events would be deleted with the checkpoints.
    """
    targets = report_targets(report_to)
    if log_dir is None:
        targets = [name for name in targets if name != "tensorboard"]
    check_hub(push_to_hub, hub_model_id)
    return {
        "report_to": targets or "none",
        "run_name": "/".join(Path(output_dir).absolute().parts[-3:]),
        "push_to_hub": push_to_hub,
        "hub_model_id": hub_model_id,
        "hub_strategy": "end",
    }


def log_to(trainer, log_dir: str | Path | None) -> None:
    """Point the trainer's own TensorBoard callback at the run's log folder."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and log_dir is not None:
            callback.logging_dir = str(log_dir)


def push_policy(trainer, folder: str | Path) -> None:
    """Upload a finished model folder as one commit to the repository the trainer created at
    start (`trainer.hub_model_id`, the full id of `hub_model_id`); main process only."""
    if not trainer.args.push_to_hub or not trainer.accelerator.is_main_process:
        return
    from huggingface_hub import HfApi

    folder = Path(folder)
    HfApi(token=trainer.args.hub_token).upload_folder(
        repo_id=trainer.hub_model_id,
        folder_path=str(folder),
        commit_message=f"aries: {'/'.join(folder.absolute().parts[-3:])}",
        revision=trainer.args.hub_revision,
    )
