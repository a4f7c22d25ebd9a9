"""The sweep's command line (`python bench/efficacy.py SPEC --pool POOL`): run or resume every
(task, pool, variant, seed), check equal budgets, write the report and archive its evidence.

Results: `<output_dir>/<pool>.md|json` and `results/efficacy.md|json` (held-out pool) or
`results/efficacy-validation.md|json` (validation pool), or `results/<--report>.md|json`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from aries import AriesError
from aries.core.jsonl import atomic_write_json, atomic_write_text
from aries.sweep.report import render
from aries.sweep.runs import EVIDENCE, REPORTS, archive_evidence, ensure_run, reported_runs
from aries.sweep.spec import POOLS, check_budgets, load_spec, run_config
from aries.sweep.stats import summarize_task


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/efficacy.py",
        description="Does ARIES beat iterative DPO at an equal budget? The multi-seed sweep.",
    )
    parser.add_argument("spec", type=Path, help="benchmark spec YAML (see bench/efficacy.yaml)")
    parser.add_argument("--pool", choices=POOLS, required=True)
    parser.add_argument("--tasks", help="comma-separated task names (default: all)")
    parser.add_argument("--variants", help="comma-separated variant names (default: all)")
    parser.add_argument("--seeds", help="comma-separated training seeds (default: the spec's)")
    parser.add_argument("--report-only", action="store_true", help="summarize finished runs only")
    parser.add_argument("--quiet", action="store_true", help="no progress output from the runs")
    parser.add_argument(
        "--runs",
        type=Path,
        help=f"where the run directories are (default: the spec's output_dir); "
        f"{EVIDENCE} recomputes the published reports from their committed evidence",
    )
    parser.add_argument(
        "--report",
        help=f"the report's name under {REPORTS}/ (default: efficacy for the held-out pool, "
        "efficacy-validation for the validation pool), e.g. methods-efficacy",
    )
    parser.add_argument(
        "--baseline",
        help="the variant the others are compared against (default: the spec's), e.g. "
        "iterative-sft to ask whether a recipe wins through its refine view or through its loss",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        spec = load_spec(args.spec, args.baseline)
        if args.runs:
            spec.output_dir = args.runs
        tasks = [t for t in spec.tasks if not args.tasks or t.name in args.tasks.split(",")]
        chosen = args.variants.split(",") if args.variants else [v.name for v in spec.variants]
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else spec.seeds
        budgets = {task.name: check_budgets(spec, task) for task in tasks}
        if not args.report_only:
            for task in tasks:
                ensure_run(run_config(spec, task, args.pool, None, 0), args.quiet)
                for seed in seeds:
                    for variant in spec.variants:
                        if variant.name in chosen:
                            ensure_run(run_config(spec, task, args.pool, variant, seed), args.quiet)
        results = [
            summarize_task(spec, task, args.pool, budgets[task.name], seeds, chosen)
            for task in tasks
        ]
    except AriesError as error:
        print(f"efficacy: error: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(
            f"efficacy: a run failed ({error}); rerun the same command to resume", file=sys.stderr
        )
        return 1
    command = f"python bench/efficacy.py {args.spec} --pool {args.pool}"
    for flag in ("tasks", "variants", "seeds", "baseline", "report"):
        if getattr(args, flag):
            command += f" --{flag} {getattr(args, flag)}"
    text = render(spec, args.pool, results, command, seeds)
    payload = {
        "command": command,
        "baseline": spec.baseline,
        "initial": [r["initial"] for r in results],
        "variants": [v for r in results for v in r["variants"]],
    }
    # the held-out report is the project's claim; the validation one shows how recipes were chosen
    published = args.report or ("efficacy" if args.pool == "heldout" else "efficacy-validation")
    copy = spec.output_dir / (f"{args.pool}-{args.report}" if args.report else args.pool)
    # recomputing from the committed evidence writes results/ only: that folder holds run files
    from_evidence = spec.output_dir.resolve() == EVIDENCE.resolve()
    targets = [REPORTS / published] + ([] if from_evidence else [copy])
    for target in targets:
        atomic_write_text(target.with_suffix(".md"), text)
        atomic_write_json(target.with_suffix(".json"), payload)
    if not from_evidence:
        names = [task.name for task in tasks]
        runs = reported_runs(spec.output_dir, names, args.pool, chosen, seeds)
        copied = archive_evidence(runs, spec.output_dir, EVIDENCE)
        print(f"evidence of {copied} runs: {EVIDENCE}/")
    print(text)
    print("written: " + ", ".join(f"{t}.md|json" for t in targets))
    return 0
