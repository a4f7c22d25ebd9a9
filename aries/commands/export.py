"""`aries export`: one round of a chains file in AlpacaEval, Arena-Hard or MT-Bench form."""

from __future__ import annotations

import argparse

from aries.commands.refine import (
    add_model_arguments,
    add_sampling_arguments,
    backend_from_args,
)
from aries.core.views import DEFAULT_REFINE_INSTRUCTION


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
        help="alpaca-eval: model_outputs.json; arena-hard / mt-bench (FastChat): answer JSONL",
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
        "--arena-hard-layout",
        choices=["v2", "2024"],
        default="v2",
        help="arena-hard: v2 (arena-hard-auto since April 2025: uid, messages, metadata; "
        "default) or 2024 (question_id, choices, conv_metadata)",
    )
    parser.add_argument(
        "--side-dir",
        default=None,
        help="mt-bench: folder for the chains the export generates (default: <out stem>.mt-bench "
        "beside the input chains; never the answer folder, which FastChat reads whole)",
    )
    parser.add_argument(
        "--instruction",
        default=None,
        help="mt-bench: the refinement instruction z for the generated rounds (default: the "
        "eval.json's, else the standard one)",
    )
    add_model_arguments(parser, model=None)
    add_sampling_arguments(parser)
    # unset = the sampling the eval.json was made with (else the defaults shown)
    parser.set_defaults(max_new_tokens=None, temperature=None, top_p=None, seed=None)
    parser.description += (
        " MT-Bench has a follow-up question per item and FastChat grades all 80 questions: "
        "--model (the model that wrote the chains) answers each follow-up after the exported "
        "first answer, and the questions the chains lack, refining as many rounds."
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aries.backends import Sampling
    from aries.serving.export import eval_settings, export, side_folder

    settings = eval_settings(args.chains) if args.format == "mt-bench" else {}
    given = {key: getattr(args, key) for key in ("max_new_tokens", "temperature", "top_p", "seed")}
    given = {key: value for key, value in given.items() if value is not None}
    backend = None
    if args.format == "mt-bench" and args.model is not None:
        side_folder(args.chains, args.out, args.side_dir)  # a bad folder fails before loading
        backend = backend_from_args(args)
    try:
        summary = export(
            args.chains,
            args.out,
            fmt=args.format,
            model_id=args.model_id,
            round_index=args.round,
            backend=backend,
            sampling=Sampling(**{**settings.get("sampling", {}), **given}),
            instruction=args.instruction or settings.get("instruction", DEFAULT_REFINE_INSTRUCTION),
            layout=args.arena_hard_layout,
            side_dir=args.side_dir,
        )
    finally:
        if backend is not None:
            backend.close()
    kind = args.format + (" 2 turns" if args.format == "mt-bench" else "")
    kind += f" {args.arena_hard_layout} layout" if args.format == "arena-hard" else ""
    print(f"wrote {summary['answers']} answers ({kind}, round {args.round}) to {args.out}")
    if summary["added_questions"]:
        print(
            f"answered the {summary['added_questions']} MT-Bench questions the chains lack "
            "(FastChat grades all 80)"
        )
    if summary["side_folder"]:
        print(f"generated chains in {summary['side_folder']} (keep them out of the answer folder)")
    return 0
