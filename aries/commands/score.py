"""`aries score`: a reward for every response of a chains file (chains.jsonl → scores.jsonl)."""

from __future__ import annotations

import argparse
from pathlib import Path

from aries.core.config import Options
from aries.core.flags import add_flags, from_flags
from aries.rewards import REWARDS

SHARED = {"batch_size": "--batch-size", "device": "--device", "dtype": "--dtype"}
REWARD_FLAGS = {
    "reward-model": {
        "model": "--reward-model",
        **SHARED,
        "max_length": "--max-length",
        "label_index": "--label-index",
        "trust_remote_code": "--trust-remote-code",
    },
    "judge": {
        "model": "--judge-model",
        "mode": "--judge-mode",
        "max_new_tokens": "--judge-max-new-tokens",
        "verdict": "--judge-verdict",
        "use_reference": "--judge-use-reference",
        "backend": "--judge-backend",
        **SHARED,
    },
    "regex": {
        "pattern": "--pattern",
        "mode": "--regex-mode",
        "case_sensitive": "--case-sensitive",
        "max_chars": "--regex-max-chars",
    },
    "verifier": {
        "answer_marker": "--answer-marker",
        "timeout_s": "--timeout-s",
        "max_chars": "--max-chars",
        "last_number_fallback": "--last-number-fallback",
    },
    "exact-match": {"answer_marker": "--answer-marker", "case_sensitive": "--case-sensitive"},
}
"""Each reward type's settings as `aries score` flags; a flag shared by several types (the
reward model's and the judge's --batch-size) is read by each of them."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score every response of a chains file with a reward source",
        description="Score every chain round and sample of CHAINS with one reward source and "
        "write one record per prompt (chain_scores, sample_scores; null = could not score).",
    )
    parser.add_argument("chains", help="chains.jsonl written by `aries refine`")
    parser.add_argument(
        "--reward",
        required=True,
        choices=REWARDS,
        help="verifier (reasoning-gym / math-verify), exact-match, regex, reward-model "
        "(HF sequence classifier) or judge (LLM judge)",
    )
    for kind, flags in REWARD_FLAGS.items():
        add_flags(parser, reward_class(kind), flags)
    parser.add_argument(
        "--out", default=None, help="scores file (default: scores.jsonl beside CHAINS)"
    )
    parser.set_defaults(func=run)


def reward_settings(args: argparse.Namespace) -> Options:
    """The reward type's settings that the command-line options describe, every setting checked
    by its dataclass (errors name the flag)."""
    from aries import AriesError

    if args.reward == "reward-model" and not args.reward_model:
        raise AriesError("--reward reward-model needs --reward-model PATH")
    return from_flags(args, reward_class(args.reward), REWARD_FLAGS.get(args.reward, {}))


def reward_class(kind: str) -> type:
    """The config dataclass of reward type `kind`."""
    return REWARDS[kind].config


def run(args: argparse.Namespace) -> int:
    from aries.method.score import score_file
    from aries.rewards import make_reward_source

    out = Path(args.out) if args.out else Path(args.chains).with_name("scores.jsonl")
    stats = score_file(args.chains, make_reward_source(reward_settings(args)), out)
    mean = "n/a" if stats["mean"] is None else f"{stats['mean']:.4g}"
    print(
        f"{out}: {stats['responses']} responses of {stats['prompts']} prompts scored by "
        f"{stats['source']}; unscored {stats['unscored']}; mean {mean}"
    )
    return 0
