"""`aries select`: scored chains → preference pairs (chains + scores → selections.jsonl)."""

from __future__ import annotations

import argparse
from pathlib import Path

from aries.method.select import CANDIDATES, STRATEGIES, TIE_BREAKS, SelectionConfig

_DEFAULTS = SelectionConfig()


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "select",
        help="choose one preference pair per prompt from scored chains",
        description="Pick (chosen, rejected) per prompt with the strategies of ARIES "
        "(arXiv 2502.05605): reward max/min, rule-based last-vs-first, or verifier-first. "
        "Prints how many prompts were kept and why the others were dropped.",
    )
    parser.add_argument("chains", help="chains.jsonl written by `aries refine`")
    parser.add_argument("--scores", help="scores.jsonl from `aries score` (not needed for rule)")
    parser.add_argument(
        "--tie-scores", help="verifier + --tie-break reward: a second scores file (e.g. an RM)"
    )
    parser.add_argument(
        "--strategy",
        default=_DEFAULTS.strategy,
        choices=STRATEGIES,
        help=f"selection strategy (default: {_DEFAULTS.strategy})",
    )
    parser.add_argument(
        "--candidates",
        default=_DEFAULTS.candidates,
        choices=CANDIDATES,
        help="chain (rounds), samples (round 0 + samples: Iterative DPO) or all (ARIES) "
        f"(default: {_DEFAULTS.candidates})",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=_DEFAULTS.margin,
        help=f"reward: minimum best - worst score (default: {_DEFAULTS.margin})",
    )
    parser.add_argument(
        "--max-length-ratio",
        type=float,
        default=_DEFAULTS.max_length_ratio,
        help=f"rule: longest/shortest bound (default: {_DEFAULTS.max_length_ratio})",
    )
    parser.add_argument(
        "--max-repetition",
        type=float,
        default=_DEFAULTS.max_repetition,
        help=f"rule: repeated 4-gram share of a loop (default: {_DEFAULTS.max_repetition})",
    )
    parser.add_argument(
        "--correct-threshold",
        type=float,
        default=_DEFAULTS.correct_threshold,
        help=f"verifier: score counted correct (default: {_DEFAULTS.correct_threshold})",
    )
    parser.add_argument(
        "--tie-break",
        default=_DEFAULTS.tie_break,
        choices=TIE_BREAKS,
        help=f"verifier: shorter or reward (default: {_DEFAULTS.tie_break})",
    )
    parser.add_argument(
        "--out", default=None, help="pairs file (default: selections.jsonl beside CHAINS)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aries.core.jsonl import atomic_write_jsonl, read_jsonl
    from aries.method.select import select_pairs

    config = SelectionConfig(
        strategy=args.strategy,
        candidates=args.candidates,
        margin=args.margin,
        max_length_ratio=args.max_length_ratio,
        max_repetition=args.max_repetition,
        correct_threshold=args.correct_threshold,
        tie_break=args.tie_break,
    )
    chains = read_jsonl(args.chains)
    scores = read_jsonl(args.scores) if args.scores else None
    tie_scores = read_jsonl(args.tie_scores) if args.tie_scores else None
    pairs, drops = select_pairs(chains, scores, config, tie_scores)
    out = Path(args.out) if args.out else Path(args.chains).with_name("selections.jsonl")
    atomic_write_jsonl(out, pairs)
    dropped = ", ".join(f"{reason} {count}" for reason, count in drops.items()) or "none"
    print(f"{out}: kept {len(pairs)} of {len(chains)} prompts; dropped: {dropped}")
    return 0
