"""Stage timings of finished runs, read from their manifest.json, side by side.

Each run directory's manifest records, per iteration, every stage's wall seconds, counts and peak
RSS. This prints one column per run (before/after a change: run the same config twice), one row
per stage, plus the rates that explain a time (collect tokens/s, train pairs/s, eval answers/s),
and the issue 11 "before" of a demo-sized iteration for reference.

    python bench/iteration.py runs/demo [runs/demo-after ...] [--iteration 0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from timing import Record, add_json_flag

STAGES = ("prompts", "collect", "score", "select", "pairs", "train", "eval")
ISSUE_BEFORE = {"collect": 152.0, "train": 251.0, "eval": 78.0}
"""Issue 11, demo-sized iteration (96 prompts x 5 responses, 2 epochs, eval 160 x 3 rounds)."""


def load_stages(run_dir: Path, iteration: str) -> tuple[dict, dict]:
    """(stages of `iteration`, baseline stages) of one run; exits with a clear error if absent."""
    from aries.pipeline.rundir import RunDir

    path = RunDir(run_dir).manifest
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        sys.exit(f"{path}: cannot read the run manifest ({error})")
    iterations = manifest.get("iterations", {})
    if iteration not in iterations:
        sys.exit(f"{path}: no iteration {iteration} (has: {', '.join(iterations) or 'none'})")
    baseline = manifest.get("baseline", {}).get("stages", {})
    return iterations[iteration]["stages"], baseline


def rate(stage: dict) -> str:
    """The rate that explains a stage's time, from its counts (empty when none applies)."""
    counts, seconds = stage.get("counts", {}), stage.get("seconds") or 0
    if not seconds:
        return ""
    if "completion_tokens" in counts:
        return f"{counts['completion_tokens'] / seconds:.0f} tok/s"
    if "train_samples_per_second" in counts:
        return f"{counts['train_samples_per_second']:.2f} pairs/s in the trainer"
    if "n" in counts and "per_round" in counts:
        return f"{counts['n'] * len(counts['per_round']) / seconds:.2f} answers/s"
    return ""


def cell(stage: dict | None) -> str:
    if not stage or stage.get("status") != "done":
        return "-"
    extra = rate(stage)
    return f"{stage['seconds']:.1f} s" + (f" ({extra})" if extra else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (with manifest.json)")
    parser.add_argument("--iteration", default="0", help="iteration to show (default 0)")
    add_json_flag(parser, "iteration")
    args = parser.parse_args(argv)
    record = Record("iteration", argv)
    columns = [(run, *load_stages(run, args.iteration)) for run in args.runs]
    names = [n for n in STAGES if any(n in stages for _, stages, _ in columns)]
    names += sorted({n for _, stages, _ in columns for n in stages} - set(names))
    table = [[f"stage (iteration {args.iteration})", *(str(run) for run, _, _ in columns)]]
    table[0].append("issue 11 before")
    for name in names:
        before = f"{ISSUE_BEFORE[name]:.1f} s" if name in ISSUE_BEFORE else ""
        table.append([name, *(cell(stages.get(name)) for _, stages, _ in columns), before])
    totals = [sum(s.get("seconds") or 0 for s in stages.values()) for _, stages, _ in columns]
    table.append(["total", *(f"{t:.1f} s" for t in totals), ""])
    table.append(["baseline eval", *(cell(b.get("eval")) for _, _, b in columns), ""])
    peaks = [
        max((s.get("peak_rss_mb") or 0 for s in st.values()), default=0) for _, st, _ in columns
    ]
    table.append(["peak RSS", *(f"{p / 1024:.2f} GiB" for p in peaks), ""])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            )
        )
    record.write({"iteration": int(args.iteration), "table": table}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
