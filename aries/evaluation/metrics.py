"""Metrics of the self-refinement setting: pure functions of plain lists, no model in sight.

Evaluation (`aries.evaluation.evaluate`) turns chains into per-prompt, per-round outcomes
(a correctness flag
or a preference outcome against a reference) and hands them here. Keeping the statistics free of
models and files makes every number in `eval.json` checkable by hand.

Sources: the percentile bootstrap is Efron, "Bootstrap methods: another look at the jackknife"
(Ann. Statist. 1979); the length-controlled win rate follows AlpacaEval 2 LC, Dubois et al.,
"Length-Controlled AlpacaEval" (arXiv 2404.04475, 2024); counting ties as half a win is the
AlpacaEval / Arena-Hard convention.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Statistic = Callable[[np.ndarray], float]


def accuracy(correct: Sequence[bool]) -> float:
    """Fraction of answers judged correct (0.0 for an empty list, so tables never divide by 0)."""
    return float(np.mean(np.asarray(correct, dtype=float))) if len(correct) else 0.0


def transitions(before: Sequence[bool], after: Sequence[bool]) -> dict[str, int]:
    """How correctness changed from one round to the next, prompt by prompt.

    The paper's claim is that trained refinement turns wrong answers right without breaking right
    ones; the two off-diagonal counts show that directly, where a net accuracy change hides it.
    """
    if len(before) != len(after):
        raise ValueError(f"rounds differ in length: {len(before)} vs {len(after)}")
    counts = {"wrong_to_right": 0, "right_to_wrong": 0, "right_to_right": 0, "wrong_to_wrong": 0}
    for was, now in zip(before, after, strict=True):
        key = f"{'right' if was else 'wrong'}_to_{'right' if now else 'wrong'}"
        counts[key] += 1
    return counts


def rewrites(before: Sequence[bool], changed: Sequence[bool]) -> dict[str, int]:
    """How many right and how many wrong answers a refinement round rewrote at all.

    Self-correction is two skills: finding the mistake and fixing it (Tyen et al. 2024, "LLMs
    cannot find reasoning errors, but can correct them given the error location", arXiv
    2311.08516). `of_wrong / wrong` is how often the refiner acts on a wrong answer (finding),
    `of_right / right` how often it touches a right one, and wrong→right / `of_wrong` how often
    its rewrite fixes (correcting); a net accuracy change mixes all three.
    """
    if len(before) != len(changed):
        raise ValueError(f"rounds differ in length: {len(before)} vs {len(changed)}")
    counts = {"of_right": 0, "of_wrong": 0}
    for was, rewritten in zip(before, changed, strict=True):
        if rewritten:
            counts["of_right" if was else "of_wrong"] += 1
    return counts


def mean_length(lengths: Sequence[float]) -> float:
    """Mean response length (tokens or characters): refinement that only makes answers longer
    shows up here before any judge notices it."""
    return float(np.mean(np.asarray(lengths, dtype=float))) if len(lengths) else 0.0


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Statistic = np.mean,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval (Efron 1979) of `statistic` over `values`.

    Resamples rows with replacement `n_resamples` times and returns the (1-level)/2 and
    (1+level)/2 quantiles of the recomputed statistic. `values` may be 2-D (rows resampled
    together, e.g. outcome and length difference for the LC win rate). Seeded, so reruns agree.
    """
    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(data), size=(n_resamples, len(data)))
    estimates = np.array([statistic(data[rows]) for rows in indices])
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return (float(low), float(high))


def win_rate(outcomes: Sequence[float]) -> dict[str, float]:
    """Win rate against a reference with ties as half a win, counts reported explicitly.

    `outcomes` holds 1 (win), 0.5 (tie) or 0 (loss) per prompt. Returns the rate and the counts,
    so a reader can tell "50 % from ties" from "50 % from as many wins as losses".
    """
    data = np.asarray(outcomes, dtype=float)
    if not np.isin(data, (0.0, 0.5, 1.0)).all():
        raise ValueError("outcomes must be 1 (win), 0.5 (tie) or 0 (loss)")
    return {
        "win_rate": float(data.mean()) if len(data) else 0.0,
        "wins": int((data == 1.0).sum()),
        "ties": int((data == 0.5).sum()),
        "losses": int((data == 0.0).sum()),
        "n": len(data),
    }


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_logistic(
    features: np.ndarray, targets: np.ndarray, *, l2: float = 1e-2, steps: int = 50
) -> np.ndarray:
    """Logistic regression with an intercept by Newton's method (IRLS), soft targets allowed.

    Ties enter as target 0.5 (the cross-entropy is defined for soft labels). A small L2 penalty on
    the slopes, never on the intercept, keeps the fit finite when length separates wins from
    losses perfectly — the case where an unregularised fit diverges. Returns [intercept, slopes].
    """
    x = np.column_stack([np.ones(len(features)), features])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    ridge = np.diag(penalty + 1e-9)  # the jitter keeps the Hessian invertible
    weights = np.zeros(x.shape[1])
    for _ in range(steps):
        p = _sigmoid(x @ weights)
        gradient = x.T @ (p - targets) + penalty * weights
        hessian = (x * (p * (1 - p))[:, None]).T @ x + ridge
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-10:
            break
    return weights


def length_controlled_win_rate(outcomes: Sequence[float], length_diff: Sequence[float]) -> float:
    """Win rate with the length advantage regressed out (AlpacaEval 2 LC, arXiv 2404.04475).

    Fits `P(win) = sigmoid(b0 + b1 * tanh(d / std(d)))` where `d` is the model's length minus the
    reference's, as AlpacaEval's GLM does for its length term, and reports the prediction at zero
    length difference, `sigmoid(b0)`: the win rate the model would have had with answers as long
    as the reference's. When longer answers win, the LC win rate falls below the raw one. The
    per-instruction difficulty term of AlpacaEval is left out (one baseline, no cross-model fit).
    """
    targets = np.asarray(outcomes, dtype=float)
    diff = np.asarray(length_diff, dtype=float)
    if len(targets) != len(diff):
        raise ValueError(f"{len(targets)} outcomes but {len(diff)} length differences")
    if len(targets) == 0:
        return 0.0
    scale = diff.std()
    feature = np.tanh(diff / scale) if scale > 0 else np.zeros_like(diff)
    weights = fit_logistic(feature[:, None], targets)
    return float(_sigmoid(weights[0]))


def lc_statistic(rows: np.ndarray) -> float:
    """`length_controlled_win_rate` over rows of (outcome, length_diff), for `bootstrap_ci`."""
    return length_controlled_win_rate(rows[:, 0], rows[:, 1])
