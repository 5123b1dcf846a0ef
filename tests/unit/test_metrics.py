from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import auc, ndcg_score

from app.ranking.metrics import map_at_k, ndcg_at_k, roc_points, thin_curve


def test_ndcg_matches_a_hand_computation() -> None:
    groups = np.array([1, 1, 1, 2, 2, 2, 3, 3])
    scores = np.array([0.9, 0.5, 0.1, 0.2, 0.8, 0.4, 0.5, 0.4])
    rel = np.array([0, 1, 1, 1, 0, 0, 0, 0])  # group 3 has no match: left out
    ndcg, used = ndcg_at_k(groups, scores, rel, k=10)
    g1 = (1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    g2 = (1 / np.log2(4)) / 1
    assert used == 2
    assert ndcg == pytest.approx((g1 + g2) / 2)


def test_ndcg_agrees_with_sklearn_per_group() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(50), 20)
    scores, rel = rng.random(1000), (rng.random(1000) < 0.15).astype(int)
    ours, used = ndcg_at_k(groups, scores, rel, k=10)
    keep = [g for g in range(50) if rel[groups == g].any()]
    theirs = np.mean([ndcg_score([rel[groups == g]], [scores[groups == g]], k=10) for g in keep])
    assert used == len(keep) and ours == pytest.approx(theirs)


def test_map_at_k() -> None:
    groups = np.array([1, 1, 1, 1])
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    rel = np.array([1, 0, 1, 0])
    assert map_at_k(groups, scores, rel, k=10) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert map_at_k(groups, scores, rel, k=1) == pytest.approx(1.0)


def test_perfect_and_reversed_orderings() -> None:
    groups = np.repeat(np.arange(10), 10)
    rel = np.tile(np.r_[np.ones(3), np.zeros(7)], 10)
    assert ndcg_at_k(groups, rel, rel)[0] == pytest.approx(1.0)
    assert ndcg_at_k(groups, -rel, rel)[0] < 0.5


def test_roc_thinning_keeps_ends_and_shape() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random(200_000) < 0.1).astype(int)
    scores = labels * 0.8 + rng.normal(0, 0.6, len(labels))
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    assert len(fpr) > 300
    curve = roc_points(labels, scores)
    x, y = np.array(curve["fpr"]), np.array(curve["tpr"])
    assert len(x) <= 300 and len(curve["thresholds"]) == len(x)
    assert (x[0], y[0]) == (0.0, 0.0) and (x[-1], y[-1]) == (1.0, 1.0)
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0)
    assert auc(x, y) == pytest.approx(auc(fpr, tpr), abs=0.002)
    # every thinned point lies on the full curve: the shape is sampled, not smoothed
    assert np.all(np.abs(np.interp(x, fpr, tpr) - y) < 0.02)


def test_short_curves_are_left_alone() -> None:
    assert thin_curve(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.7, 1.0])).tolist() == [0, 1, 2]
