"""The eval.json table: every cell of an evaluation formatted in one place.

`aries eval` and the loop print one evaluation (`format_table`), the report shows every model of
a run (`eval_table` with a model column), and `aries status` shows the metric per model and
round (`metric_by_round`); all three read their cells from `round_cells`.
"""

from __future__ import annotations

from typing import Any

DETAIL = ["round", "metric", "95% CI", "LC win rate", "W/T/L", "correct"]
DETAIL += ["tokens", "chars", "trunc", "wrong→right", "right→wrong", "rewrote R/W"]
"""The columns of one evaluation (`format_table`)."""
BY_MODEL = ["model", "round", "n", "metric", "95% CI", "LC win rate", "W/T/L"]
BY_MODEL += ["tokens", "wrong→right", "right→wrong", "rewrote R/W"]
"""The columns of a run's evaluations side by side (the report)."""
_WIN_RATE_ONLY = {"LC win rate", "W/T/L"}
_ACCURACY_ONLY = {"correct"}


def round_cells(label: str, row: dict[str, Any]) -> dict[str, str]:
    """The formatted cells of one `per_round` entry of eval.json, by column name."""
    low, high = row["ci95"]
    moves = row.get("transitions") or {}
    cells = {
        "model": label,
        "round": str(row["round"]),
        "n": str(row["n"]),
        "metric": f"{100 * row['metric']:.1f}%",
        "95% CI": f"[{100 * low:.1f}, {100 * high:.1f}]",
        "tokens": f"{row['mean_tokens']:.0f}",
        "chars": f"{row['mean_chars']:.0f}",
        "trunc": str(row["truncated"]),
        "wrong→right": str(moves.get("wrong_to_right", "-")),
        "right→wrong": str(moves.get("right_to_wrong", "-")),
        "rewrote R/W": _rewrites(row),
    }
    if "lc_win_rate" in row:
        cells["LC win rate"] = f"{100 * row['lc_win_rate']:.1f}%"
        cells["W/T/L"] = f"{row['wins']}/{row['ties']}/{row['losses']}"
    else:
        cells["correct"] = f"{row['correct']}/{row['n']}"
    return cells


def _rewrites(row: dict[str, Any]) -> str:
    """Right/wrong: how many of the previous round's right and wrong answers this round
    rewrote (`aries.evaluation.metrics.rewrites`); "-" for the answer and for evaluations made
    before the
    count existed."""
    counts = row.get("rewrites")
    return f"{counts['of_right']}/{counts['of_wrong']}" if counts else "-"


def eval_table(
    evals: list[tuple[str, dict[str, Any]]], columns: list[str] = BY_MODEL
) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per model and round (and the vote's row, `aries.method.vote`, where
    eval.json has one); the metric column is named after it."""
    metric = evals[0][1]["metric"]
    skip = _ACCURACY_ONLY if metric == "win_rate" else _WIN_RATE_ONLY
    columns = [c for c in columns if c not in skip]
    rows = [
        [round_cells(label, row)[c] for c in columns]
        for label, result in evals
        for row in result["per_round"] + ([result["vote"]] if "vote" in result else [])
    ]
    return [metric if c == "metric" else c for c in columns], rows


def format_table(result: dict[str, Any]) -> str:
    """Plain aligned text: one row per round, metric with its interval, lengths, transitions."""
    header, rows = eval_table([("", result)], DETAIL)
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
    title = (
        f"{result['benchmark']}  model={result['model']}  scorer={result['scorer']}  "
        f"n={result['n_prompts']}  skipped={result['skipped']}"
    )
    counts = result.get("judge")
    if counts and counts["order_checks"]:
        agree = counts["order_agreements"] / counts["order_checks"]
        line = (
            f"judge: {counts['calls']} calls, {counts['unparsed']} unparsed; both orders agree on "
            f"{counts['order_agreements']} of {counts['order_checks']} comparisons "
            f"({100 * agree:.0f}%)"
        )
        if agree < 0.5:  # a coin-flipping judge agrees with itself half the time
            line += "; worse than chance: position bias decides, the win rates say little"
        lines.append(line)
    return "\n".join([title, *lines])


def metric_by_round(evals: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Compact lines: the metric of the direct answer and each refinement round per model."""
    if not evals:
        return []
    rounds = max(len(result["per_round"]) for _, result in evals)
    first = evals[0][1]
    header = ["model", "answer"] + [f"refine {k}" for k in range(1, rounds)]
    lines = ["", f"held-out {first['metric']} (n = {first['n_prompts']}):"]
    lines.append("  ".join(f"{h:>14}" for h in header))
    for label, result in evals:
        name = "initial model" if label == "base" else label.replace("iter", "after iter")
        cells = [round_cells(label, row)["metric"] for row in result["per_round"]]
        lines.append("  ".join(f"{c:>14}" for c in [name, *cells]))
    return lines
