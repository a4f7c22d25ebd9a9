"""`aries select`: scored chains → preference pairs (chains + scores → selections.jsonl)."""

from __future__ import annotations

import argparse
from pathlib import Path

from aries.core.flags import add_flags, all_fields, from_flags
from aries.method.select import SelectionConfig


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "select",
        help="choose preference pairs per prompt from scored chains",
        description="Pick (chosen, rejected) per prompt with the strategies of ARIES "
        "(arXiv 2502.05605): reward max/min, rule-based last-vs-first, or verifier-first. "
        "Prints how many prompts were kept and why the others were dropped.",
    )
    parser.add_argument("chains", help="chains.jsonl written by `aries refine`")
    parser.add_argument("--scores", help="scores.jsonl from `aries score` (not needed for rule)")
    parser.add_argument(
        "--tie-scores", help="verifier + --tie-break reward: a second scores file (e.g. an RM)"
    )
    add_flags(parser, SelectionConfig, all_fields(SelectionConfig))
    parser.add_argument(
        "--out", default=None, help="pairs file (default: selections.jsonl beside CHAINS)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aries.core.jsonl import atomic_write_jsonl, read_jsonl
    from aries.method.select import select_pairs

    config = from_flags(args, SelectionConfig, all_fields(SelectionConfig))
    chains = read_jsonl(args.chains)
    scores = read_jsonl(args.scores) if args.scores else None
    tie_scores = read_jsonl(args.tie_scores) if args.tie_scores else None
    pairs, drops = select_pairs(chains, scores, config, tie_scores)
    out = Path(args.out) if args.out else Path(args.chains).with_name("selections.jsonl")
    atomic_write_jsonl(out, pairs)
    dropped = ", ".join(f"{reason} {count}" for reason, count in drops.items()) or "none"
    print(f"{out}: kept {len(pairs)} of {len(chains)} prompts; dropped: {dropped}")
    return 0
