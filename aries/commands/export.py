"""`aries export`: one round of a chains file in AlpacaEval, Arena-Hard or MT-Bench form."""

from __future__ import annotations

import argparse

from aries.commands.refine import (
    add_model_arguments,
    add_sampling_arguments,
    backend_from_args,
    sampling_from_args,
)
from aries.views import DEFAULT_REFINE_INSTRUCTION


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
    parser.add_argument(
        "--first-turn-only",
        action="store_true",
        help="mt-bench: write the first turn only instead of answering the follow-up questions "
        "with --model (FastChat then cannot grade turn 2)",
    )
    parser.add_argument(
        "--instruction",
        default=DEFAULT_REFINE_INSTRUCTION,
        help="mt-bench: the refinement instruction z for the second turn's rounds",
    )
    add_model_arguments(parser, model=None)
    add_sampling_arguments(parser)
    parser.description += (
        " MT-Bench has a follow-up question per item: --model (the model that wrote the chains) "
        "answers it after the exported first answer and refines it as many rounds."
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aries import AriesError
    from aries.export import export

    backend = None
    if args.format == "mt-bench" and not args.first_turn_only:
        if args.model is None:
            raise AriesError(
                "mt-bench answers have two turns: give --model (the model that wrote the chains) "
                "to answer the follow-up questions, or --first-turn-only"
            )
        backend = backend_from_args(args)
    try:
        count = export(
            args.chains,
            args.out,
            fmt=args.format,
            model_id=args.model_id,
            round_index=args.round,
            backend=backend,
            sampling=sampling_from_args(args),
            instruction=args.instruction,
        )
    finally:
        if backend is not None:
            backend.close()
    turns = " (2 turns)" if backend is not None else ""
    print(f"wrote {count} answers ({args.format}{turns}, round {args.round}) to {args.out}")
    return 0
