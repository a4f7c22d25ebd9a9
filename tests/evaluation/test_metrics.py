"""Metric functions against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from aries.evaluation import metrics


def test_accuracy_and_mean_length():
    assert metrics.accuracy([True, False, True, True]) == 0.75
    assert metrics.accuracy([]) == 0.0
    assert metrics.mean_length([10, 20, 45]) == 25.0


def test_transitions_count_each_direction():
    before = [True, True, False, False, False]
    after = [True, False, True, True, False]
    assert metrics.transitions(before, after) == {
        "wrong_to_right": 2,
        "right_to_wrong": 1,
        "right_to_right": 1,
        "wrong_to_wrong": 1,
    }
    with pytest.raises(ValueError):
        metrics.transitions([True], [True, False])


def test_rewrites_split_by_previous_correctness():
    before = [True, True, False, False, False]
    changed = [False, True, True, True, False]
    assert metrics.rewrites(before, changed) == {"of_right": 1, "of_wrong": 2}
    with pytest.raises(ValueError):
        metrics.rewrites([True], [True, False])


def test_win_rate_counts_ties_as_half():
    result = metrics.win_rate([1, 1, 0.5, 0, 0.5])
    # (1 + 1 + 0.5 + 0 + 0.5) / 5
    assert result == {"win_rate": 0.6, "wins": 2, "ties": 2, "losses": 1, "n": 5}
    with pytest.raises(ValueError):
        metrics.win_rate([0.7])


def test_lc_win_rate_removes_length_advantage():
    # Longer answers (d=+100) win 6 of 8, shorter ones (d=-100) win 1 of 4: raw 7/12.
    # The two groups sit symmetric around zero in the tanh feature, with logits +-log(3), so the
    # prediction at zero length difference is sigmoid(0) = 0.5 (up to the tiny slope penalty).
    outcomes = [1] * 6 + [0] * 2 + [1] + [0] * 3
    diffs = [100] * 8 + [-100] * 4
    raw = metrics.win_rate(outcomes)["win_rate"]
    lc = metrics.length_controlled_win_rate(outcomes, diffs)
    assert raw == pytest.approx(7 / 12)
    assert lc == pytest.approx(0.5, abs=0.01)
    assert lc < raw


def test_lc_equals_raw_when_length_does_not_matter():
    # Both length groups win 3 of 4: length explains nothing, LC = raw = 0.75.
    outcomes = [1, 1, 1, 0] * 2
    diffs = [50] * 4 + [-20] * 4
    assert metrics.length_controlled_win_rate(outcomes, diffs) == pytest.approx(0.75, abs=1e-3)
    # No length variation at all: the fit is the intercept alone.
    assert metrics.length_controlled_win_rate([1, 0.5, 0], [0, 0, 0]) == pytest.approx(0.5)


def test_lc_stays_finite_under_perfect_separation():
    lc = metrics.length_controlled_win_rate([1, 1, 0, 0], [30, 40, -30, -40])
    assert 0.0 < lc < 1.0
    assert lc == pytest.approx(0.5, abs=0.01)


def test_logistic_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    x = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(0.5 + 2.0 * x)))).astype(float)
    intercept, slope = metrics.fit_logistic(x[:, None], y, l2=0.0)
    assert intercept == pytest.approx(0.5, abs=0.15)
    assert slope == pytest.approx(2.0, abs=0.25)


def test_bootstrap_contains_point_estimate_and_is_seeded():
    values = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1]
    low, high = metrics.bootstrap_ci(values, seed=3)
    assert low <= np.mean(values) <= high
    assert low < high
    assert 0.0 <= low and high <= 1.0
    assert metrics.bootstrap_ci(values, seed=3) == (low, high)
    # Constant data: every resample gives the same value.
    assert metrics.bootstrap_ci([1, 1, 1]) == (1.0, 1.0)


def test_bootstrap_of_lc_resamples_rows_together():
    outcomes = [1] * 6 + [0] * 2 + [1] + [0] * 3
    diffs = [100] * 8 + [-100] * 4
    rows = np.column_stack([outcomes, diffs])
    low, high = metrics.bootstrap_ci(rows, metrics.lc_statistic, n_resamples=200)
    assert low <= metrics.length_controlled_win_rate(outcomes, diffs) <= high
