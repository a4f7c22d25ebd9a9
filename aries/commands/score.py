"""`aries score`: a reward for every response of a chains file (chains.jsonl → scores.jsonl)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aries.rewards import REWARD_TYPES


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
        choices=REWARD_TYPES,
        help="verifier (reasoning-gym / math-verify), exact-match, regex, reward-model "
        "(HF sequence classifier) or judge (LLM judge)",
    )
    parser.add_argument("--reward-model", help="reward-model: model folder or hub id")
    parser.add_argument(
        "--judge-model", default="embedded", help="judge: model spec (default: embedded)"
    )
    parser.add_argument(
        "--judge-mode",
        default="pointwise",
        choices=("pointwise", "pairwise"),
        help="judge: additive 5-point rubric (Yuan et al. 2024) or pairwise in both orders "
        "(default: pointwise)",
    )
    parser.add_argument(
        "--judge-max-new-tokens",
        type=int,
        default=256,
        help="judge: tokens for the justification and verdict (default: 256)",
    )
    parser.add_argument("--pattern", help="regex: the regular expression")
    parser.add_argument(
        "--regex-mode",
        default="extract",
        choices=("extract", "match"),
        help="regex: compare the extracted answer with the reference, or reward any match "
        "(default: extract)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="reward-model/judge batch size (default: 8)"
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=2048,
        help="reward-model: tokens per pair; the response is cut from the right (default: 2048)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if any)")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 GPU, fp32 CPU) or a dtype")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="reward-model: allow the repository's own Python code (off by default)",
    )
    parser.add_argument(
        "--out", default=None, help="scores file (default: scores.jsonl beside CHAINS)"
    )
    parser.set_defaults(func=run)


def reward_config(args: argparse.Namespace) -> dict[str, Any]:
    """The `make_reward_source` config that the command-line options describe."""
    from aries import AriesError

    if args.reward == "reward-model":
        if not args.reward_model:
            raise AriesError("--reward reward-model needs --reward-model PATH")
        return {
            "type": "reward-model",
            "model": args.reward_model,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "device": args.device,
            "dtype": args.dtype,
            "trust_remote_code": args.trust_remote_code,
        }
    if args.reward == "judge":
        return judge_spec(
            args, args.judge_model, batch_size=args.batch_size, device=args.device, dtype=args.dtype
        )
    if args.reward == "regex":
        return {"type": "regex", "pattern": args.pattern or "", "mode": args.regex_mode}
    return {"type": args.reward}


def judge_spec(args: argparse.Namespace, model: str, **settings: Any) -> dict[str, Any]:
    """The `judge` reward spec of the --judge-mode / --judge-max-new-tokens options (aries score
    and aries eval), with the command's own `settings`."""
    return {
        "type": "judge",
        "model": model,
        "mode": args.judge_mode,
        "max_new_tokens": args.judge_max_new_tokens,
        **settings,
    }


def run(args: argparse.Namespace) -> int:
    from aries.method.score import score_file
    from aries.rewards import make_reward_source

    out = Path(args.out) if args.out else Path(args.chains).with_name("scores.jsonl")
    stats = score_file(args.chains, make_reward_source(reward_config(args)), out)
    mean = "n/a" if stats["mean"] is None else f"{stats['mean']:.4g}"
    print(
        f"{out}: {stats['responses']} responses of {stats['prompts']} prompts scored by "
        f"{stats['source']}; unscored {stats['unscored']}; mean {mean}"
    )
    return 0
