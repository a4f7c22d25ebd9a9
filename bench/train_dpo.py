"""Preference-training speed: the project's train stage versus TRL's DPOTrainer with defaults.

Both train the same model on the same both-view pairs for one epoch at the same batch size and
learning rate; the figure is training tokens (prompt + chosen + rejected, as tokenised by the
chat template) per second of wall time, reference log-probabilities included. Both start from the
same policy and reference, so their first-step loss must be ln 2 = 0.6931 (checked).

    (a) TRL defaults: reference forward every step, random batches padded to the longest;
    (b) aries: `aries.train.train_preference` (precomputed reference log-probs, length-grouped
        batches in a seeded random batch order).

Pairs: `--pairs DIR` (a run's iter_<t>/pairs) or, by default, 32 arithmetic selections in both
views (64 examples) built here. Target (issue 6): (b) >= 1.3 x (a).

    python bench/train_dpo.py [--model embedded] [--pairs DIR] [--selections 32] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--pairs", default=None, help="a saved pair dataset (default: built here)")
    parser.add_argument("--selections", type=int, default=32, help="selections built (x2 views)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-6)
    args = parser.parse_args(argv)

    import datasets
    import torch
    from trl import DPOConfig, DPOTrainer

    from aries.models import load_causal_lm, load_tokenizer, resolve_model
    from aries.pairs import build_pairs, save_dataset
    from aries.train import TrainConfig, train_preference
    from aries.views import DEFAULT_REFINE_INSTRUCTION

    command = "python " + shlex.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    load = os.getloadavg()
    print(f"command: {command}")
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {load[0]:.2f} {load[1]:.2f}"
    )
    model_path = resolve_model(args.model)
    tokenizer = load_tokenizer(model_path)
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
            f"pairs: {rows} examples, {tokens} training tokens per epoch, batch {args.batch_size}"
        )

        start = time.perf_counter()
        trainer = DPOTrainer(
            model=load_causal_lm(model_path, dtype="float32"),
            ref_model=load_causal_lm(model_path, dtype="float32"),
            args=DPOConfig(
                output_dir=f"{tmp}/trl",
                per_device_train_batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                num_train_epochs=1,
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                use_cpu=not torch.cuda.is_available(),
            ),
            train_dataset=datasets.load_from_disk(str(pairs)).remove_columns(["id", "view"]),
            processing_class=tokenizer,
        )
        trainer.train()
        trl_seconds = time.perf_counter() - start
        trl_loss = first_loss(trainer.state.log_history)
        del trainer

        start = time.perf_counter()
        config = TrainConfig(
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            epochs=1,
            max_length=1024,
            save_steps=10_000,
        )
        train_preference(model_path, pairs, Path(tmp) / "aries", config)
        aries_seconds = time.perf_counter() - start
        aries_loss = first_loss(json.loads((Path(tmp) / "aries" / "log_history.json").read_text()))

    trl_rate, aries_rate = tokens / trl_seconds, tokens / aries_seconds
    print(
        f"(a) TRL DPOTrainer defaults: {trl_seconds:7.1f} s  {trl_rate:7.1f} tokens/s  "
        f"first loss {trl_loss:.4f}"
    )
    print(
        f"(b) aries train stage:       {aries_seconds:7.1f} s  {aries_rate:7.1f} tokens/s  "
        f"first loss {aries_loss:.4f}"
    )
    print(f"speed-up (b)/(a): {aries_rate / trl_rate:.2f}x (target >= 1.3x)")
    assert abs(trl_loss - aries_loss) < 1e-3, "the two trainers disagree at step 0"
    return 0


if __name__ == "__main__":
    sys.exit(main())
