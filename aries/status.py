"""Plain-text summaries of a run: stage progress and the accuracy per iteration and round."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aries.report import load_evals


def stage_lines(manifest: dict[str, Any]) -> list[str]:
    """One line per iteration: every stage with its status and time."""
    lines = []
    groups = [("initial", manifest.get("baseline", {}).get("stages", {}))]
    groups += [(f"iter {t}", v["stages"]) for t, v in sorted(manifest["iterations"].items())]
    for label, stages in groups:
        if not stages:
            continue
        cells = []
        for name, entry in stages.items():
            mark = "✓" if entry.get("status") == "done" else "…"
            seconds = f" {entry['seconds']:.0f}s" if "seconds" in entry else ""
            cells.append(f"{name} {mark}{seconds}")
        lines.append(f"{label:>8}: " + ", ".join(cells))
    return lines


def summary_table(run_dir: Path, manifest: dict[str, Any]) -> str:
    """Stages, then the metric of the direct answer and each refinement round per model."""
    lines = [f"run {run_dir}", *stage_lines(manifest)]
    rows = load_evals(run_dir)
    if rows:
        rounds = max(len(r["per_round"]) for _, r in rows)
        metric = rows[0][1]["metric"]
        header = ["model", "answer"] + [f"refine {k}" for k in range(1, rounds)]
        lines += ["", f"held-out {metric} (n = {rows[0][1]['n_prompts']}):"]
        lines.append("  ".join(f"{h:>14}" for h in header))
        for label, result in rows:
            label = "initial model" if label == "base" else label.replace("iter", "after iter")
            cells = [f"{r['metric'] * 100:.1f}%" for r in result["per_round"]]
            lines.append("  ".join(f"{c:>14}" for c in [label, *cells]))
    return "\n".join(lines)
