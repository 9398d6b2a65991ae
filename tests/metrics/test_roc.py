"""ROC metrics against hand-computed values."""

import numpy as np
import pytest

from privgan.metrics.roc import auc_score, bootstrap_ci, membership_metrics, roc_curve, tpr_at_fpr


def test_auc_hand_computed():
    # members 0.9, 0.4; non-members 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) -> 3/4
    assert auc_score([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.75)


def test_auc_ties_count_half():
    assert auc_score([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert auc_score([1, 0.5, 0.5, 0], [1, 1, 0, 0]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_perfect_and_reversed():
    s, y = np.arange(10.0), np.r_[np.zeros(5), np.ones(5)]
    assert auc_score(s, y) == 1.0 and auc_score(-s, y) == 0.0
    assert tpr_at_fpr(s, y, 0.0) == 1.0


def test_roc_curve_points():
    fpr, tpr, thr = roc_curve([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0])
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1]
    assert tpr.tolist() == [0, 0.5, 0.5, 1, 1]
    assert thr[0] == np.inf


def test_tpr_at_fpr_is_strict():
    # 100 non-members, 1 scoring above every member: TPR at FPR 0 is 0, at 1% it is 1
    s = np.r_[np.full(10, 5.0), np.arange(99.0) / 100, 10.0]
    y = np.r_[np.ones(10), np.zeros(100)]
    assert tpr_at_fpr(s, y, 0.0) == 0.0
    assert tpr_at_fpr(s, y, 0.01) == 1.0


def test_random_scores_near_chance_and_ci_covers():
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=2000), np.r_[np.ones(1000), np.zeros(1000)]
    m = membership_metrics(s, y, n_boot=200)
    assert abs(m["auc"] - 0.5) < 0.04
    assert m["auc_ci_low"] < 0.5 < m["auc_ci_high"]
    assert m["n_members"] == 1000 and m["n_nonmembers"] == 1000


def test_bootstrap_ci_brackets_estimate():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(200), np.zeros(200)]
    s = rng.normal(size=400) + y
    lo, hi = bootstrap_ci(auc_score, s, y, n_boot=300)
    assert lo < auc_score(s, y) < hi and hi - lo < 0.2


def test_bad_input_errors():
    with pytest.raises(ValueError, match="both members"):
        auc_score([1, 2], [1, 1])
    with pytest.raises(ValueError, match="same length"):
        auc_score([1, 2, 3], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        auc_score([np.nan, 1], [1, 0])


def test_pareto_front_both_directions():
    from privgan.reporting.plots import pareto_front

    pts = [(0.9, 0.8), (0.7, 0.2), (0.6, 0.5), (0.95, 0.9)]
    assert pareto_front(pts) == [1, 0, 3]  # (0.6, 0.5) is dominated by (0.7, 0.2)
    # with a distance as utility (lower is better) the low-distance, low-leak point dominates
    assert sorted(pareto_front(pts, higher_utility_is_better=False)) == [1, 2]


def test_large_scores_keep_their_order_and_thresholds():
    # torchmetrics would take these for logits (sigmoid(40) == 1.0 in float64): ranks avoid that
    s = np.r_[np.arange(40.0, 60.0), np.arange(30.0, 50.0)]
    y = np.r_[np.ones(20), np.zeros(20)]
    # members 50..59 beat all 20 non-members, 40..49 beat 10..19 and tie one: (200 + 145 + 5) / 400
    assert auc_score(s, y) == pytest.approx(0.875)
    fpr, tpr, thr = roc_curve([100.0, -50.0, 60.0, 60.0], [1, 0, 1, 0])
    assert thr.tolist() == [np.inf, 100.0, 60.0, -50.0]
    assert tpr.tolist() == [0, 0.5, 1, 1] and fpr.tolist() == [0, 0, 0.5, 1]


def test_fpr_is_exact_in_float64():
    # 1 false positive in 1000 is FPR 1e-3 exactly (torchmetrics alone returns float32 rates)
    s = np.r_[2.0, 3.0, np.linspace(0, 1, 999)]
    y = np.r_[1, np.zeros(1000)]
    fpr, _, _ = roc_curve(s, y)
    assert fpr.dtype == np.float64 and fpr[1] == 1e-3
    assert tpr_at_fpr(s, y, 1e-3) == 1.0 and tpr_at_fpr(s, y, 0.0) == 0.0


def test_bootstrap_ci_is_seeded_and_needs_two_per_group():
    rng = np.random.default_rng(2)
    y = np.r_[np.ones(50), np.zeros(50)]
    s = rng.normal(size=100) + y
    assert bootstrap_ci(auc_score, s, y, n_boot=100, seed=3) == bootstrap_ci(auc_score, s, y, n_boot=100, seed=3)
    assert bootstrap_ci(auc_score, s, y, n_boot=100, seed=3) != bootstrap_ci(auc_score, s, y, n_boot=100, seed=4)
    lo, hi = bootstrap_ci(auc_score, [0.9, 0.1, 0.2], [1, 0, 0], n_boot=50)
    assert np.isnan(lo) and np.isnan(hi)
    with pytest.raises(ValueError, match="both members"):
        bootstrap_ci(auc_score, [0.9, 0.1], [1, 1])
