"""The readout's statistics on data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.experiments.stats import (
    difference,
    kendall_tau_b,
    order_agreement,
    ratio,
    sample_ratio_mismatch,
    spearman,
)


def _sessions(rng: np.random.Generator, n: int, p: float, shown: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Matches in the top ``shown`` of ``n`` sessions, each candidate matching with probability ``p``."""
    return rng.binomial(shown, p, n).astype(float), np.full(n, float(shown))


def test_a_real_lift_has_an_interval_excluding_zero_and_equal_arms_one_including_it() -> None:
    rng = np.random.default_rng(1)
    primary = ratio(*_sessions(rng, 4000, 0.05))
    better = ratio(*_sessions(rng, 4000, 0.06))  # a 20% lift in the match rate
    same = ratio(*_sessions(rng, 4000, 0.05))
    lift = difference(better, primary)
    assert lift["relative_ci_low"] > 0 and lift["ci_low"] > 0
    assert lift["relative_ci_low"] < 0.2 < lift["relative_ci_high"], "the true lift is inside"
    none = difference(same, primary)
    assert none["relative_ci_low"] < 0 < none["relative_ci_high"]
    assert none["ci_low"] < 0 < none["ci_high"]


def test_the_delta_method_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2)
    covered = 0
    for _ in range(300):
        a, p = ratio(*_sessions(rng, 300, 0.06)), ratio(*_sessions(rng, 300, 0.05))
        d = difference(a, p)
        covered += d["relative_ci_low"] <= 0.2 <= d["relative_ci_high"]
    assert 0.90 <= covered / 300 <= 0.99


def test_the_ratio_variance_matches_resampled_sessions() -> None:
    rng = np.random.default_rng(3)
    shown = rng.integers(1, 20, 500).astype(float)  # lists of different lengths: a true ratio metric
    matches = rng.binomial(shown.astype(int), 0.1).astype(float)
    r = ratio(matches, shown)
    picks = rng.integers(0, 500, (2000, 500))
    boot = matches[picks].sum(axis=1) / shown[picks].sum(axis=1)
    assert r.value == pytest.approx(matches.sum() / shown.sum())
    assert r.variance == pytest.approx(boot.var(), rel=0.15)


def test_too_few_sessions_give_no_interval_rather_than_a_false_one() -> None:
    one = ratio(np.array([2.0]), np.array([1.0]))
    assert one.value == 2.0 and np.isnan(one.variance)
    d = difference(one, ratio(np.array([1.0, 3.0]), np.ones(2)))
    assert d["difference"] == 0.0 and d["ci_low"] is None and d["relative_ci_low"] is None
    assert np.isnan(ratio(np.array([]), np.array([])).value)


def test_a_70_30_split_against_50_50_shares_is_a_sample_ratio_mismatch() -> None:
    srm = sample_ratio_mismatch({"primary": 700, "b": 300}, {"primary": 0.5, "b": 0.5})
    assert srm["detected"] is True and srm["p_value"] < 1e-30
    assert srm["chi_square"] == pytest.approx(160.0)  # (200^2 / 500) * 2
    fine = sample_ratio_mismatch({"primary": 508, "b": 492}, {"primary": 0.5, "b": 0.5})
    assert fine["detected"] is False and fine["p_value"] > 0.5
    matches_shares = sample_ratio_mismatch({"primary": 700, "b": 300}, {"primary": 0.7, "b": 0.3})
    assert matches_shares["detected"] is False and matches_shares["chi_square"] == pytest.approx(0.0)


def test_an_arm_with_no_sessions_makes_a_mismatch_and_one_arm_alone_no_test() -> None:
    srm = sample_ratio_mismatch({"primary": 100}, {"primary": 0.5, "b": 0.5})
    assert srm["observed"] == {"primary": 100, "b": 0} and srm["detected"] is True
    alone = sample_ratio_mismatch({"primary": 100}, {"primary": 1.0})
    assert alone["p_value"] is None and alone["detected"] is None


def test_order_agreement_of_same_reversed_and_partly_shared_orders() -> None:
    ids = [f"c{i}" for i in range(20)]
    scores = list(np.linspace(1, 0, 20))
    assert order_agreement(ids, scores, ids, [2 * s for s in scores], 10) == pytest.approx((1.0, 1.0, 1.0))
    overlap, tau, rho = order_agreement(ids, scores, ids, scores[::-1], 10)
    assert (overlap, tau, rho) == pytest.approx((0.0, -1.0, -1.0))
    # the second scoring knows only 5 of them, in the same order: judged on those 5
    assert order_agreement(ids, scores, ids[:5], scores[:5], 10) == pytest.approx((1.0, 1.0, 1.0))
    assert order_agreement(ids, scores, ["x", "c0"], [1.0, 0.5], 10) is None


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=15), st.lists(st.floats(-5, 5), min_size=2, max_size=15))
def test_rank_correlations_agree_with_scipy(a: list[float], b: list[float]) -> None:
    from scipy import stats

    n = min(len(a), len(b))
    x, y = np.array(a[:n]), np.array(b[:n])
    ref_tau = stats.kendalltau(x, y).statistic
    ref_rho = stats.spearmanr(x, y).statistic
    assert kendall_tau_b(x, y) == pytest.approx(ref_tau, nan_ok=True, abs=1e-9)
    assert spearman(x, y) == pytest.approx(ref_rho, nan_ok=True, abs=1e-9)
