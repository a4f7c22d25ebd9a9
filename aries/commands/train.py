"""`aries train` (one iteration's train stage, e.g. under `accelerate launch`) and `aries sft`."""

from __future__ import annotations

import argparse

from aries.core.views import DEFAULT_REFINE_INSTRUCTION


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="run the train stage of one iteration of a run (multi-GPU: accelerate launch)",
        description="Train π_{t+1} on iteration t's pairs with the run's settings. Use it under "
        "`accelerate launch --config_file accelerate/<cfg>.yaml -m aries.cli train ...` to train "
        "on several GPUs, then continue the run with `aries run` (the stage is marked done).",
    )
    parser.add_argument("run_dir", help="the run folder (runs/<name>) holding config.yaml")
    parser.add_argument("--iteration", type=int, required=True, help="iteration t to train")
    parser.set_defaults(func=train_stage)

    sft = subparsers.add_parser(
        "sft",
        help="SFT on both views from preference data (METHOD.md Eq. 4)",
        description="Supervised fine-tuning on x -> y_w and (x, y_l, z) -> y_w for every row of "
        "a preference file with prompt / chosen / rejected fields (ARIES, arXiv 2502.05605, "
        "Eq. 4), through TRL's SFTTrainer.",
    )
    sft.add_argument("--model", default="embedded", help="model to fine-tune (default: embedded)")
    sft.add_argument(
        "--data", required=True, help="JSONL/JSON/CSV/Parquet with prompt, chosen, rejected"
    )
    sft.add_argument("--out", required=True, help="output model folder")
    sft.add_argument("--learning-rate", type=float, default=1e-5, help="peak learning rate")
    sft.add_argument("--epochs", type=float, default=1.0, help="passes over the data")
    sft.add_argument("--batch-size", type=int, default=8, help="examples per step")
    sft.add_argument("--max-length", type=int, default=512, help="tokens per example")
    sft.add_argument("--seed", type=int, default=0, help="training seed")
    sft.add_argument(
        "--system-prompt", default=None, help="system message opening every example (default: none)"
    )
    sft.add_argument(
        "--chat-template",
        default=None,
        help="chat template instead of the model's own (Jinja text, a file, or 'plain'); saved "
        "with the model",
    )
    sft.set_defaults(func=sft_command)


def train_stage(args: argparse.Namespace) -> int:
    from aries import AriesError
    from aries.pipeline.loop import run_stage
    from aries.pipeline.runconfig import load_run_config
    from aries.pipeline.rundir import RunDir

    run = RunDir(args.run_dir)
    if not run.config.is_file():
        raise AriesError(f"{args.run_dir}: no config.yaml (start the run with aries run first)")
    if not run.selections(args.iteration).is_file():
        raise AriesError(f"iteration {args.iteration} has no selected pairs yet")
    run_stage(load_run_config(run.config), args.iteration, "train")
    return 0


def sft_command(args: argparse.Namespace) -> int:
    import tempfile

    from aries.core.models import resolve_model
    from aries.method.pairs import sft_dataset
    from aries.training.config import SFTConfig
    from aries.training.train import train_sft

    config = SFTConfig(
        enabled=True,
        dataset=args.data,
        learning_rate=args.learning_rate,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
    )
    model = resolve_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        examples = f"{tmp}/examples"
        count = sft_dataset(
            config.dataset, examples, DEFAULT_REFINE_INSTRUCTION, args.system_prompt
        )
        metrics = train_sft(
            model, examples, args.out, config, seed=args.seed, chat_template=args.chat_template
        )
    print(f"trained on {count} examples ({metrics['steps']} steps); model saved to {args.out}")
    return 0
