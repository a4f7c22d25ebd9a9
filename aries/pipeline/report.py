"""A run's report: Markdown and a self-contained HTML page with tables and PNG plots.

Everything is read from the run directory (the contract between stages, docs/concepts.md), and every
part is optional: a run stopped after collection still gets a report, with "not available" where
a stage has not produced its files yet. What is read, per iteration `t`:

- evaluations: `eval_base.json` (the initial model), then
  `iter_<t>/eval.json` (the model trained in iteration t) — the paper's central picture, metric
  per iteration and refinement round;
- `iter_<t>/selections.jsonl` (pairs with `chosen_score` / `rejected_score`), else
  `iter_<t>/scores.jsonl`: reward distributions;
- `manifest.json`: kept / dropped counts by reason (the select stage's `counts.kept` and
  `counts.drop_counts`), seconds and peak memory per stage (baseline and iterations);
- training curves: `iter_<t>/model/log_history.json`, else any `trainer_state.json` under
  `iter_<t>/`, else TensorBoard event files under `logs/`.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from aries.core.jsonl import atomic_write_text
from aries.evaluation.evaltable import eval_table
from aries.pipeline.report_chains import chains_sections
from aries.pipeline.report_plots import (
    TRAINING_KEYS,
    plot_counts,
    plot_evals,
    plot_rewards,
    plot_stages,
    plot_training,
)
from aries.pipeline.report_section import NOT_AVAILABLE, Section
from aries.pipeline.rundir import RunDir, read_json

# ---------------------------------------------------------------------------------------------
# Reading the run


def load_rewards(run: RunDir, t: int) -> tuple[str, dict[str, list[float]]] | None:
    """Chosen vs rejected scores of iteration t's pairs, else the scores of every chain round."""
    if run.selections(t).is_file():
        pairs = run.read_selections(t)
        groups = {
            "chosen": [p["chosen_score"] for p in pairs if p.get("chosen_score") is not None],
            "rejected": [p["rejected_score"] for p in pairs if p.get("rejected_score") is not None],
        }
        return "chosen vs rejected", groups
    if run.scores(t).is_file():
        groups: dict[str, list[float]] = {}
        for record in run.read_scores(t):
            for k, score in enumerate(record.get("chain_scores", [])):
                if score is not None:
                    groups.setdefault(f"round {k}", []).append(score)
        return "all responses by round (no selections file)", groups
    return None


def load_training(run: RunDir, t: int) -> dict[str, list[tuple[float, float]]]:
    """(step, value) series for TRAINING_KEYS from the trainer's log history of iteration t."""
    history = read_json(run.training_history(t))
    if history is None:
        states = sorted(
            run.iteration(t).rglob("trainer_state.json"), key=lambda p: p.stat().st_mtime
        )
        history = (read_json(states[-1]) or {}).get("log_history") if states else None
    if history:
        return {
            key: [(e["step"], e[key]) for e in history if key in e and "step" in e]
            for key in TRAINING_KEYS
        }
    return load_tensorboard(run.logs(t))


def load_tensorboard(folder: Path) -> dict[str, list[tuple[float, float]]]:
    """The same series from TensorBoard event files (`train/loss`, `train/rewards/margins`...)."""
    if not any(folder.rglob("events.out.tfevents.*")):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[tuple[float, float]]] = {}
    for events in sorted({p.parent for p in folder.rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            key = tag.removeprefix("train/")
            if key in TRAINING_KEYS:
                series.setdefault(key, []).extend(
                    (e.step, e.value) for e in accumulator.Scalars(tag)
                )
    return series


# ---------------------------------------------------------------------------------------------
# Sections


def eval_section(evals: list[tuple[str, dict]], plots: Path) -> Section:
    section = Section("Evaluation: metric per iteration and refinement round")
    if not evals:
        section.text.append(f"Evaluation results: {NOT_AVAILABLE} (no eval.json in the run).")
        return section
    first = evals[0][1]
    section.text.append(
        f"Benchmark `{first.get('benchmark', '?')}`, metric **{first['metric']}** scored by "
        f"`{first.get('scorer', '?')}`; round 0 is the direct answer, round k the k-th "
        "refinement. Intervals are bootstrap 95 % CIs."
    )
    header, rows = eval_table(evals)
    section.tables.append((header, rows))
    section.plots.append(plot_evals(evals, plots))
    return section


def rewards_section(run: RunDir, its: list[int], plots: Path) -> Section:
    section = Section("Reward distributions")
    rewards = {t: found for t in its if (found := load_rewards(run, t)) and any(found[1].values())}
    if not rewards:
        section.text.append(f"Scores: {NOT_AVAILABLE} (no selections.jsonl or scores.jsonl).")
        return section
    section.text += [f"Iteration {t}: {what}." for t, (what, _) in rewards.items()]
    header = ["iteration", "group", "n", "mean", "min", "max"]
    rows = [
        [str(t), name, str(len(v)), f"{sum(v) / len(v):.3f}", f"{min(v):.3f}", f"{max(v):.3f}"]
        for t, (_, groups) in rewards.items()
        for name, v in groups.items()
        if v
    ]
    section.tables.append((header, rows))
    section.plots.append(plot_rewards(rewards, plots))
    return section


def manifest_stages(manifest: dict) -> dict[str, dict[str, dict]]:
    """Stage entries by label: 'base' (work on the initial model), then 'iter <t>' in order."""
    stages = {"base": manifest.get("baseline", {}).get("stages", {})}
    iterations = sorted(manifest.get("iterations", {}).items(), key=lambda kv: int(kv[0]))
    stages.update((f"iter {t}", it.get("stages", {})) for t, it in iterations)
    return {label: entries for label, entries in stages.items() if entries}


def selection_section(manifest: dict, plots: Path) -> Section:
    section = Section("Selection: kept and dropped prompts")
    counts = {}
    for label, stages in manifest_stages(manifest).items():
        if "select" in stages:
            numbers = stages["select"].get("counts", {})
            counts[label] = {"kept": numbers.get("kept", 0), **numbers.get("drop_counts", {})}
    if not counts:
        section.text.append(f"Selection counts: {NOT_AVAILABLE} (no select stage in manifest).")
        return section
    reasons = sorted({r for c in counts.values() for r in c} - {"kept"})
    header = ["model", "kept", *reasons]
    rows = [[t, *(str(c.get(r, 0)) for r in ["kept", *reasons])] for t, c in counts.items()]
    section.tables.append((header, rows))
    section.plots.append(plot_counts(counts, plots))
    return section


def training_section(run: RunDir, its: list[int], plots: Path) -> Section:
    section = Section("Training curves")
    curves = {t: c for t in its if any((c := load_training(run, t)).values())}
    if not curves:
        section.text.append(f"Training logs: {NOT_AVAILABLE} (no trainer log history or events).")
        return section
    header = ["iteration", "steps", *(f"last {k}" for k in TRAINING_KEYS)]
    rows = []
    for t, series in curves.items():
        last = [f"{series[k][-1][1]:.4f}" if series.get(k) else "-" for k in TRAINING_KEYS]
        steps = max((s[-1][0] for s in series.values() if s), default=0)
        rows.append([str(t), str(int(steps)), *last])
    section.tables.append((header, rows))
    section.plots.append(plot_training(curves, plots))
    return section


def stages_section(manifest: dict, plots: Path) -> Section:
    section = Section("Timings and memory per stage")
    stages = manifest_stages(manifest)
    if not stages:
        section.text.append(f"Stage timings: {NOT_AVAILABLE} (no manifest.json stages).")
        return section
    header = ["model", "stage", "status", "seconds", "peak RSS (MB)"]
    rows = [
        [
            t,
            name,
            str(s.get("status", "-")),
            _number(s.get("seconds")),
            _number(s.get("peak_rss_mb")),
        ]
        for t, per_stage in stages.items()
        for name, s in per_stage.items()
    ]
    section.tables.append((header, rows))
    section.plots.append(plot_stages(stages, plots))
    return section


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.0f}"


# ---------------------------------------------------------------------------------------------
# Rendering


def to_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.text:
            lines += [paragraph, ""]
        for header, rows in section.tables:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
            lines.append("")
        lines += [f"![{name}](plots/{name})\n" for name in section.plots]
    return "\n".join(lines)


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:14px}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}"
    "td{overflow-wrap:anywhere}td.text{text-align:left}"
    "img{max-width:100%;border:1px solid #eee}"
)


def to_html(title: str, sections: list[Section], plots: Path) -> str:
    """One file: styles inline and plots as base64 data URIs, nothing fetched from elsewhere."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
    ]
    parts.append(f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>")
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [f"<p>{_inline(paragraph)}</p>" for paragraph in section.text]
        for header, rows in section.tables:
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header))
            for row in rows:
                parts.append("<tr>" + "".join(_td(c) for c in row) + "</tr>")
            parts.append("</table>")
        for name in section.plots:
            data = base64.b64encode((plots / name).read_bytes()).decode()
            parts.append(f"<img alt='{name}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _td(cell: str) -> str:
    """A table cell; prose (a model's text) reads from the left, numbers from the right."""
    kind = " class='text'" if len(cell) > 40 else ""
    return f"<td{kind}>{html.escape(cell)}</td>"


def _inline(text: str) -> str:
    """The two Markdown marks the report uses (`code`, **bold**), as HTML."""
    out, code, bold = [], False, False
    for index, piece in enumerate(html.escape(text).replace("**", "\0").split("`")):
        if index:
            code = not code
            out.append("<code>" if code else "</code>")
        for j, bit in enumerate(piece.split("\0")):
            if j:
                bold = not bold
                out.append("<b>" if bold else "</b>")
            out.append(bit)
    return "".join(out)


def build_report(run_dir: str | Path) -> dict[str, Path]:
    """Write `report.md`, `report.html` and `plots/*.png` into the run directory."""
    run = RunDir(run_dir)
    plots = run.plots
    manifest = run.read_manifest() or {}

    its = run.iterations()
    sections = [
        eval_section(run.evals(), plots),
        rewards_section(run, its, plots),
        selection_section(manifest, plots),
        training_section(run, its, plots),
        stages_section(manifest, plots),
        *chains_sections(run, its),
    ]
    title = f"ARIES run report: {run.root.resolve().name}"
    overview = Section(
        "Run",
        text=[
            f"Directory `{run.root}`; {len(its)} iteration folder(s)"
            f"{' (' + ', '.join(f'iter_{t}' for t in its) + ')' if its else ''}; "
            f"manifest: {'present' if manifest else NOT_AVAILABLE}; config hash "
            f"`{manifest.get('config_hash', '-')}`."
        ],
    )
    sections.insert(0, overview)
    paths = {"markdown": run.report_markdown, "html": run.report_html}
    atomic_write_text(paths["markdown"], to_markdown(title, sections), "the report")
    atomic_write_text(paths["html"], to_html(title, sections, plots), "the report")
    return paths
