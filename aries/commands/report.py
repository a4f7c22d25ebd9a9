"""`aries report RUN`: Markdown and self-contained HTML report with plots for a run directory."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write RUN/report.md, RUN/report.html and RUN/plots/*.png",
        description="Summarise a run directory: metric per iteration and refinement round, "
        "reward distributions, kept/dropped counts, training curves, timings and memory. "
        "Parts a run has not produced yet are marked 'not available'.",
    )
    parser.add_argument("run", help="the run directory (runs/<name>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aries import AriesError
    from aries.pipeline.report import build_report

    if not Path(args.run).is_dir():
        raise AriesError(f"{args.run}: not a directory")
    paths = build_report(args.run)
    print(f"wrote {paths['markdown']} and {paths['html']}")
    return 0
