"""Preference-training speed: the project's train stage versus TRL's DPOTrainer with defaults.

Both train the same model on the same both-view pairs for one epoch at the same batch size and
learning rate; the figure is training tokens (prompt + chosen + rejected, as tokenised by the
chat template) per second of wall time, reference log-probabilities included. Both start from the
same policy and reference, so their first-step loss must be ln 2 = 0.6931 (checked).

    (a) TRL defaults: reference forward every step, random batches padded to the longest;
    (b) aries: `aries.training.train.train_preference` (precomputed reference log-probs,
    length-grouped
        batches in a seeded random batch order, prefix-shared pairs: the prompt once per pair,
        chosen and rejected as two branches, Wang et al. 2024, arXiv 2410.20305).

Each trainer runs in its own process, so its peak RSS is its own. `--set KEY=VALUE` changes a
TrainConfig field of (b) (e.g. `--set prefix_sharing=false` for the ablation).

Pairs: `--pairs DIR` (a run's iter_<t>/pairs) or, by default, 32 arithmetic selections in both
views (64 examples) built here. Target (issue 11): (b) >= 1.5 x (a).

    python bench/train_dpo.py [--model embedded] [--pairs DIR] [--selections 32] [--batch-size 8]
        [--set KEY=VALUE] [--skip-trl]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

from timing import Record, add_json_flag, measure


def arithmetic_selections(count: int, seed: int = 0) -> list[dict]:
    """Direct answers of realistic length: a right one and a wrong one per problem."""
    rng = random.Random(seed)
    selections = []
    for index in range(count):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        steps = " ".join(f"First, {a} times {d} is {a * d}." for d in range(1, rng.randint(2, 6)))
        selections.append(
            {
                "id": str(index),
                "prompt": f"Calculate {a} * {b}.\nEnd your response with 'Answer: <answer>'.",
                "chosen": f"{steps} So {a} * {b} = {a * b}.\nAnswer: {a * b}",
                "rejected": f"{a} * {b} = {a * b + rng.randint(1, 50)}",
            }
        )
    return selections


def token_count(pairs_dir: Path, tokenizer) -> int:
    import datasets

    total = 0
    for row in datasets.load_from_disk(str(pairs_dir)):
        for key in ("chosen", "rejected"):
            total += len(
                tokenizer.apply_chat_template(
                    row["prompt"] + row[key], tokenize=True, return_dict=False
                )
            )
    return total


def first_loss(history: list[dict]) -> float:
    return next(float(entry["loss"]) for entry in history if "loss" in entry)


def _peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_trl_defaults(model_path: str, pairs: str, batch_size: int, learning_rate: float) -> dict:
    """(a): TRL's DPOTrainer with its defaults; wall time from model loading to the last step."""
    import datasets
    import torch
    from trl import DPOConfig, DPOTrainer

    from aries.core.models import load_causal_lm, load_tokenizer

    def train(tmp: str) -> DPOTrainer:
        trainer = DPOTrainer(
            model=load_causal_lm(model_path, dtype="float32"),
            ref_model=load_causal_lm(model_path, dtype="float32"),
            args=DPOConfig(
                output_dir=f"{tmp}/trl",
                per_device_train_batch_size=batch_size,
                learning_rate=learning_rate,
                num_train_epochs=1,
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                use_cpu=not torch.cuda.is_available(),
            ),
            train_dataset=datasets.load_from_disk(pairs).remove_columns(["id", "view"]),
            processing_class=load_tokenizer(model_path),
        )
        trainer.train()
        return trainer

    with tempfile.TemporaryDirectory() as tmp:
        timing, trainer = measure(lambda: train(tmp))
    return {
        "seconds": timing.median,
        "steps": trainer.state.global_step,
        "first_loss": first_loss(trainer.state.log_history),
        "peak_rss_gib": _peak_rss_gib(),
    }


def run_aries(model_path: str, pairs: str, settings: dict) -> dict:
    """(b): `aries.training.train.train_preference`, the train stage of `aries run`."""
    from aries.training.config import TrainConfig
    from aries.training.train import train_preference

    with tempfile.TemporaryDirectory() as tmp:
        timing, metrics = measure(
            lambda: train_preference(
                model_path, pairs, Path(tmp) / "aries", TrainConfig(**settings)
            )
        )
        history = json.loads((Path(tmp) / "aries" / "log_history.json").read_text())
    return {
        "seconds": timing.median,
        "steps": metrics["steps"],
        "first_loss": first_loss(history),
        "peak_rss_gib": _peak_rss_gib(),
    }


def in_child(function, *args) -> dict:
    """Run `function` in a fresh process, so each trainer's peak RSS is its own."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--pairs", default=None, help="a saved pair dataset (default: built here)")
    parser.add_argument("--selections", type=int, default=32, help="selections built (x2 views)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-6)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig field for (b), e.g. --set prefix_sharing=false (repeatable)",
    )
    parser.add_argument("--skip-trl", action="store_true", help="time (b) only")
    add_json_flag(parser, "train_dpo")
    args = parser.parse_args(argv)
    record = Record("train_dpo", argv)

    import datasets
    import yaml

    from aries.core.models import load_tokenizer, resolve_model
    from aries.core.views import DEFAULT_REFINE_INSTRUCTION
    from aries.method.pairs import build_pairs, save_dataset

    model_path = str(resolve_model(args.model))
    tokenizer = load_tokenizer(model_path)
    settings = {
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "epochs": 1,
        "max_length": 1024,
        "save_steps": 10_000,
    }
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = yaml.safe_load(value)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = Path(args.pairs) if args.pairs else Path(tmp) / "pairs"
        if not args.pairs:
            examples = build_pairs(
                arithmetic_selections(args.selections), instruction=DEFAULT_REFINE_INSTRUCTION
            )
            save_dataset(examples, pairs)
        rows = len(datasets.load_from_disk(str(pairs)))
        tokens = token_count(pairs, tokenizer)
        print(
            f"pairs: {rows} examples ({pairs}), {tokens} training tokens per epoch "
            f"(prompt twice, as TRL feeds them), batch {args.batch_size}"
        )
        print(f"(b) settings: {settings}")
        results = {}
        if not args.skip_trl:
            results["(a) TRL DPOTrainer defaults"] = in_child(
                run_trl_defaults, model_path, str(pairs), args.batch_size, args.learning_rate
            )
        results["(b) aries train stage"] = in_child(run_aries, model_path, str(pairs), settings)

    for name, result in results.items():
        print(
            f"{name:28s} {result['seconds']:7.1f} s  {tokens / result['seconds']:7.1f} tokens/s  "
            f"{result['seconds'] / result['steps']:6.2f} s/step  "
            f"peak RSS {result['peak_rss_gib']:.2f} GiB  first loss {result['first_loss']:.4f}"
        )
    if len(results) == 2:
        trl, aries = results.values()
        print(f"speed-up (b)/(a): {trl['seconds'] / aries['seconds']:.2f}x (target >= 1.5x)")
        assert abs(trl["first_loss"] - aries["first_loss"]) < 1e-3, (
            "the trainers disagree at step 0"
        )
    figures = {
        "examples": rows,
        "tokens": tokens,
        "batch_size": args.batch_size,
        "settings": settings,
        "first_loss": round(next(iter(results.values()))["first_loss"], 4),
        "trainers": {
            name: {
                "tok_s": round(tokens / r["seconds"], 1),
                "s_per_step": round(r["seconds"] / r["steps"], 2),
                "peak_rss_gib": round(r["peak_rss_gib"], 2),
            }
            for name, r in results.items()
        },
    }
    if len(results) == 2:
        figures["speedup"] = round(trl["seconds"] / aries["seconds"], 2)
    record.write(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
