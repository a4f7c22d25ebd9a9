"""The report's PNG plots (matplotlib, headless): one function per figure, each returns its file
name under the report's `plots/` folder."""

from __future__ import annotations

import io
from pathlib import Path

from aries.core.jsonl import atomic_write_bytes

TRAINING_KEYS = ("loss", "rewards/margins", "rewards/chosen", "rewards/rejected")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, plots: Path, name: str) -> str:
    plots.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=110)
    atomic_write_bytes(plots / name, png.getvalue(), "a report plot")  # never torn by a kill
    _pyplot().close(figure)
    return name


def plot_evals(evals: list[tuple[str, dict]], plots: Path) -> str:
    """Left: metric per refinement round, one line per model. Right: per model, one line per
    round. Error bars are the bootstrap 95 % intervals."""
    plt = _pyplot()
    figure, (by_round, by_model) = plt.subplots(1, 2, figsize=(11, 4))
    metric = evals[0][1]["metric"]
    for series, (label, result) in enumerate(evals):
        rows = result["per_round"]
        by_round.errorbar(
            [r["round"] + _dodge(series, len(evals)) for r in rows],
            [100 * r["metric"] for r in rows],
            yerr=_error_bars(rows),
            marker="o",
            capsize=3,
            label=label,
        )
    rounds = max(len(result["per_round"]) for _, result in evals)
    for k in range(rounds):
        points = [
            (i, r["per_round"][k]) for i, (_, r) in enumerate(evals) if k < len(r["per_round"])
        ]
        by_model.errorbar(
            [i + _dodge(k, rounds) for i, _ in points],
            [100 * row["metric"] for _, row in points],
            yerr=_error_bars([row for _, row in points]),
            marker="o",
            capsize=3,
            label=f"round {k}" + (" (direct)" if k == 0 else ""),
        )
    by_round.set(xlabel="refinement round", ylabel=f"{metric} (%)", title=f"{metric} per round")
    by_round.set_xticks(range(rounds))
    by_model.set(xlabel="model", ylabel=f"{metric} (%)", title=f"{metric} per iteration")
    by_model.set_xticks(range(len(evals)), [label for label, _ in evals])
    for axis in (by_round, by_model):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return _save(figure, plots, "metric_by_round.png")


def _dodge(series: int, count: int) -> float:
    """A small x offset per series so that overlapping error bars stay readable."""
    return 0.06 * (series - (count - 1) / 2)


def _error_bars(rows: list[dict]) -> list[list[float]]:
    return [
        [100 * (r["metric"] - r["ci95"][0]) for r in rows],
        [100 * (r["ci95"][1] - r["metric"]) for r in rows],
    ]


def plot_rewards(rewards: dict[int, tuple[str, dict[str, list[float]]]], plots: Path) -> str:
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(rewards), figsize=(4.5 * len(rewards), 3.5), squeeze=False)
    for axis, (t, (what, groups)) in zip(axes[0], rewards.items(), strict=True):
        for name, values in groups.items():
            axis.hist(values, bins=20, alpha=0.55, label=f"{name} (n={len(values)})")
        axis.set(title=f"iteration {t}: {what}", xlabel="score", ylabel="responses")
        axis.title.set_fontsize(9)
        axis.legend(fontsize=8)
    return _save(figure, plots, "rewards.png")


def plot_counts(counts: dict[str, dict[str, int]], plots: Path) -> str:
    """Stacked bars: kept pairs and dropped prompts by reason, per iteration."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.5))
    reasons = sorted({reason for c in counts.values() for reason in c} - {"kept"})
    bottom = [0] * len(counts)
    for reason in ["kept", *reasons]:
        values = [c.get(reason, 0) for c in counts.values()]
        axis.bar(list(counts), values, bottom=bottom, label=reason)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axis.set(ylabel="prompts", title="selection: kept pairs and dropped prompts by reason")
    axis.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
    return _save(figure, plots, "selection.png")


def plot_training(curves: dict[int, dict[str, list[tuple[float, float]]]], plots: Path) -> str:
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(TRAINING_KEYS), figsize=(4 * len(TRAINING_KEYS), 3.3))
    for axis, key in zip(axes, TRAINING_KEYS, strict=True):
        for t, series in curves.items():
            if series.get(key):
                steps, values = zip(*series[key], strict=True)
                axis.plot(steps, values, marker=".", label=f"iter {t}")
        axis.set(title=key, xlabel="step")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    return _save(figure, plots, "training.png")


def plot_stages(stages: dict[str, dict[str, dict]], plots: Path) -> str:
    """Grouped bars per stage: seconds (left) and peak memory (right), one bar per iteration."""
    plt = _pyplot()
    names = list(dict.fromkeys(s for per_stage in stages.values() for s in per_stage))
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    width = 0.8 / len(stages)
    for axis, key, label in zip(
        axes, ("seconds", "peak_rss_mb"), ("seconds", "peak RSS (MB)"), strict=True
    ):
        for i, (t, per_stage) in enumerate(stages.items()):
            values = [per_stage.get(name, {}).get(key) or 0 for name in names]
            axis.bar([x + i * width for x in range(len(names))], values, width, label=t)
        axis.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names)
        axis.set(ylabel=label, title=f"{label} per stage")
        axis.legend(fontsize=8)
    return _save(figure, plots, "stages.png")
