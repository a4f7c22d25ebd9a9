"""`aries train` (one iteration's train stage, e.g. under `accelerate launch`) and `aries sft`."""

from __future__ import annotations

import argparse

from aries.core.flags import add_flags, from_flags
from aries.core.views import DEFAULT_REFINE_INSTRUCTION
from aries.pipeline.runconfig import RunConfig
from aries.training.config import SFTConfig

SFT_FLAGS = [
    "dataset",
    "learning_rate",
    "epochs",
    "batch_size",
    "max_length",
    "save_steps",
    "logging_steps",
]
RUN_FLAGS = ["model", "seed", "system_prompt", "chat_template"]
"""The run-level options that `aries sft` shares with a run config."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="run the train stage of one iteration of a run (multi-GPU: accelerate launch)",
        description="Train π_{t+1} on iteration t's pairs with the run's settings. Use it under "
        "`accelerate launch --config_file accelerate/<cfg>.yaml -m aries.cli train ...` to train "
        "on several GPUs, then continue the run with `aries run` (the stage is marked done).",
    )
    parser.add_argument("run_dir", help="the run folder (runs/<name>) holding config.yaml")
    parser.add_argument(
        "--iteration", type=int, help="iteration t to train (all stages but --stage sft)"
    )
    parser.add_argument(
        "--stage",
        choices=("train", "sft", "warm_start", "future_model"),
        default="train",
        help="which training stage of the run: train (default), sft (before the first "
        "iteration), warm_start or future_model (temporal-self-rewarding); `aries run` with "
        "train.launcher runs each this way",
    )
    parser.set_defaults(func=train_stage)

    sft = subparsers.add_parser(
        "sft",
        help="SFT on both views from preference data (docs/specification.md Eq. 4)",
        description="Supervised fine-tuning on x -> y_w and (x, y_l, z) -> y_w for every row of "
        "a preference file with prompt / chosen / rejected fields (ARIES, arXiv 2502.05605, "
        "Eq. 4), through TRL's SFTTrainer.",
    )
    add_flags(sft, SFTConfig, SFT_FLAGS, required=["dataset"], aliases={"dataset": ["--data"]})
    sft.add_argument("--out", required=True, help="output model folder")
    add_flags(sft, RunConfig, RUN_FLAGS)
    sft.set_defaults(func=sft_command)


def train_stage(args: argparse.Namespace) -> int:
    from aries import AriesError
    from aries.pipeline.launch import check_shared_run_dir
    from aries.pipeline.loop import run_stage
    from aries.pipeline.runconfig import load_run_config
    from aries.pipeline.rundir import RunDir

    run = RunDir(args.run_dir)
    check_shared_run_dir(run.root)
    if (args.iteration is None) != (args.stage == "sft"):
        raise AriesError("--iteration is needed for every stage but --stage sft, and only then")
    if not run.config.is_file():
        raise AriesError(f"{args.run_dir}: no config.yaml (start the run with aries run first)")
    if args.stage == "train" and not run.selections(args.iteration).is_file():
        raise AriesError(f"iteration {args.iteration} has no selected pairs yet")
    run_stage(load_run_config(run.config), args.iteration, args.stage)
    return 0


def sft_command(args: argparse.Namespace) -> int:
    import tempfile

    from aries.core.models import resolve_model
    from aries.method.pairs import sft_dataset
    from aries.training.train import train_sft

    config = from_flags(args, SFTConfig, SFT_FLAGS, enabled=True)
    run = from_flags(args, RunConfig, RUN_FLAGS)
    model = resolve_model(run.model)
    with tempfile.TemporaryDirectory() as tmp:
        examples = f"{tmp}/examples"
        count = sft_dataset(config.dataset, examples, DEFAULT_REFINE_INSTRUCTION, run.system_prompt)
        metrics = train_sft(run.model_settings(model), examples, args.out, config, seed=run.seed)
    print(f"trained on {count} examples ({metrics['steps']} steps); model saved to {args.out}")
    return 0
