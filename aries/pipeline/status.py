"""Plain-text summaries of a run: stage progress and the accuracy per iteration and round."""

from __future__ import annotations

from typing import Any

from aries.evaluation.evaltable import metric_by_round
from aries.pipeline.rundir import RunDir


def stage_lines(manifest: dict[str, Any]) -> list[str]:
    """One line per iteration: every stage with its status, time and memory peak (with how far
    it rose above the stage's start, the stage's own share)."""
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
            cells.append(f"{name} {mark}{seconds}{_memory(entry)}")
        lines.append(f"{label:>8}: " + ", ".join(cells))
    return lines


def summary_table(run: RunDir, manifest: dict[str, Any]) -> str:
    """Stages, then the metric of the direct answer and each refinement round per model."""
    return "\n".join([f"run {run.root}", *stage_lines(manifest), *metric_by_round(run.evals())])


def _memory(entry: dict[str, Any]) -> str:
    peak, start = entry.get("peak_rss_mb"), entry.get("start_rss_mb")
    if peak is None:
        return ""
    return f" {peak} MB" + (f" (+{peak - start})" if start is not None else "")
