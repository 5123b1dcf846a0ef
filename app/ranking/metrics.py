"""Ranking and classification metrics, computed per session (the list one viewer was shown).

Relevance is binary: the pair matched (both liked). Sessions without any match have no ideal
ordering and are left out of NDCG and MAP, as is usual; how many were used is reported.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score, roc_curve

MAX_ROC_POINTS = 300


def _ranked(groups: np.ndarray, scores: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by group then score (desc); returns (group, rank within group, relevance)."""
    order = np.lexsort((-scores, groups))
    g, r = groups[order], rel[order].astype(np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    sizes = np.diff(np.r_[starts, len(g)])
    rank = np.arange(len(g)) - np.repeat(starts, sizes)
    return g, rank, r


def ndcg_per_session(groups: np.ndarray, scores: np.ndarray, rel: np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@k of each session in ascending group order; NaN where the session has no relevant item."""
    g, rank, r = _ranked(groups, scores, rel)
    gain = np.where(rank < k, r / np.log2(rank + 2), 0.0)
    _, inv = np.unique(g, return_inverse=True)
    dcg = np.bincount(inv, weights=gain)
    ig, irank, ir = _ranked(groups, rel.astype(np.float64), rel)
    _, iinv = np.unique(ig, return_inverse=True)
    idcg = np.bincount(iinv, weights=np.where(irank < k, ir / np.log2(irank + 2), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), np.nan)


def ndcg_at_k(groups: np.ndarray, scores: np.ndarray, rel: np.ndarray, k: int = 10) -> tuple[float, int]:
    """Mean NDCG@k over sessions with at least one relevant item, and that number of sessions."""
    per = ndcg_per_session(groups, scores, rel, k)
    used = ~np.isnan(per)
    return float(np.mean(per[used])) if used.any() else float("nan"), int(used.sum())


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(a - b) over sessions resampled with replacement (a and b paired by session)."""
    diff = a - b
    if len(diff) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    # in chunks, so memory stays at 50 resamples whatever the number of sessions
    means = np.concatenate(
        [
            diff[rng.integers(0, len(diff), (min(50, samples - i), len(diff)))].mean(axis=1)
            for i in range(0, samples, 50)
        ]
    )
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def map_at_k(groups: np.ndarray, scores: np.ndarray, rel: np.ndarray, k: int = 10) -> float:
    g, rank, r = _ranked(groups, scores, rel)
    _, inv = np.unique(g, return_inverse=True)
    top = rank < k
    hits = np.where(top, r, 0.0)
    # cumulative hits within each group, in rank order (rows are sorted by group, then rank)
    cum = np.cumsum(hits)
    starts = np.r_[0, np.flatnonzero(np.diff(inv)) + 1]
    cum -= np.repeat(np.r_[0, cum[starts[1:] - 1]], np.diff(np.r_[starts, len(g)]))
    precision_at_hit = np.where(hits > 0, cum / (rank + 1), 0.0)
    n_rel = np.bincount(inv, weights=r)
    ap = np.bincount(inv, weights=precision_at_hit) / np.maximum(np.minimum(n_rel, k), 1)
    used = n_rel > 0
    return float(np.mean(ap[used])) if used.any() else float("nan")


def classification(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    return {"auc": float(roc_auc_score(labels, p)), "log_loss": float(log_loss(labels, p, labels=[0, 1]))}


def thin_curve(x: np.ndarray, y: np.ndarray, max_points: int = MAX_ROC_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` points spread evenly along the curve's length.

    Even spacing in arc length (not in index) keeps the shape where the curve bends, and the
    first and last points are always kept so the curve still runs from (0, 0) to (1, 1).
    """
    if len(x) <= max_points:
        return np.arange(len(x))
    seg = np.hypot(np.diff(x), np.diff(y))
    arc = np.r_[0.0, np.cumsum(seg)]
    targets = np.linspace(0.0, arc[-1], max_points)
    idx = np.unique(np.searchsorted(arc, targets).clip(0, len(x) - 1))
    idx[0], idx[-1] = 0, len(x) - 1
    return np.unique(idx)


def roc_points(labels: np.ndarray, scores: np.ndarray, max_points: int = MAX_ROC_POINTS) -> dict[str, list[float]]:
    fpr, tpr, thr = roc_curve(labels, scores)
    thr = np.where(np.isinf(thr), 1.0 + float(np.max(scores)), thr)
    keep = thin_curve(fpr, tpr, max_points)
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(), "thresholds": thr[keep].tolist()}
