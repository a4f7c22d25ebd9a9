"""`aries export`: one round of a chains file in AlpacaEval, Arena-Hard or MT-Bench form."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write answers for external judges (AlpacaEval, Arena-Hard, MT-Bench)",
        description="Export one round of a chains file (or an eval.json) in the answer format "
        "of an external judge, so the run can be scored with that tool unchanged.",
    )
    parser.add_argument("chains", help="chains.jsonl, or an eval.json written by `aries eval`")
    parser.add_argument(
        "--format",
        required=True,
        choices=["alpaca-eval", "arena-hard", "mt-bench"],
        help="alpaca-eval: model_outputs.json; arena-hard / mt-bench: answer JSONL",
    )
    parser.add_argument(
        "--round",
        type=int,
        default=-1,
        help="refinement round to export: 0 is the direct answer, -1 (default) the last round",
    )
    parser.add_argument(
        "--model-id", required=True, help="name recorded as generator / model_id in the file"
    )
    parser.add_argument("--out", required=True, help="output file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aries.export import export

    count = export(
        args.chains, args.out, fmt=args.format, model_id=args.model_id, round_index=args.round
    )
    print(f"wrote {count} answers ({args.format}, round {args.round}) to {args.out}")
    return 0
