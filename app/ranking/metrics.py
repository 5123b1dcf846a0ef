"""Ranking and classification metrics, computed per session (the list one viewer was shown).

Relevance is binary: the pair matched (both liked). Sessions without any match have no ideal
ordering and are left out of NDCG and MAP, as is usual; how many were used is reported.

AUC, the ROC curve, log loss and calibration are accumulated batch by batch (``Classification``):
AUC and ROC from a histogram of the scores on the log-odds scale (``AUC_BINS`` bins over
[-``LOGIT_SPAN``, +``LOGIT_SPAN``]), so memory is fixed whatever the rows. Pairs of a positive and a
negative in different bins are ordered exactly; a pair in the same bin counts one half, so the
AUC is off by at most half the share of such pairs, which ``auc_error_bound`` reports (about 1e-5
on the tests' data). Every ROC point is an exact point of the full curve (at a bin edge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_ROC_POINTS = 300
AUC_BINS = 1 << 18
LOGIT_SPAN = 20.0  # log-odds; probabilities are clipped to [1e-7, 1 - 1e-7] (|logit| < 16.2) first
CALIBRATION_BINS = 10
_EPS = 1e-7


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
    per = map_per_session(groups, scores, rel, k)
    used = ~np.isnan(per)
    return float(np.mean(per[used])) if used.any() else float("nan")


def map_per_session(groups: np.ndarray, scores: np.ndarray, rel: np.ndarray, k: int = 10) -> np.ndarray:
    """AP@k of each session in ascending group order; NaN where the session has no relevant item."""
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
    return np.where(n_rel > 0, ap, np.nan)


def log_odds(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass
class ScoreHistogram:
    """Positives and negatives per bin of a score on the log-odds scale (scores that are not
    probabilities, e.g. LambdaRank's, are binned as they are: only their order matters)."""

    bins: int = AUC_BINS
    span: float = LOGIT_SPAN
    pos: np.ndarray = field(init=False)
    neg: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.pos = np.zeros(self.bins, dtype=np.int64)
        self.neg = np.zeros(self.bins, dtype=np.int64)

    def add(self, labels: np.ndarray, raw: np.ndarray) -> None:
        x = np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0, posinf=self.span, neginf=-self.span)
        idx = np.clip(((x + self.span) * (self.bins / (2 * self.span))).astype(np.int64), 0, self.bins - 1)
        positive = np.asarray(labels) > 0
        self.pos += np.bincount(idx[positive], minlength=self.bins)
        self.neg += np.bincount(idx[~positive], minlength=self.bins)

    def auc(self) -> tuple[float, float]:
        """(AUC, its largest possible error): NaN, NaN when one class is absent."""
        p, n = float(self.pos.sum()), float(self.neg.sum())
        if p == 0 or n == 0:
            return float("nan"), float("nan")
        pos, neg = self.pos.astype(np.float64), self.neg.astype(np.float64)
        below = np.cumsum(neg) - neg
        tied = float(np.dot(pos, neg))
        return (float(np.dot(pos, below)) + 0.5 * tied) / (p * n), 0.5 * tied / (p * n)

    def roc(self, max_points: int = MAX_ROC_POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fpr, tpr, lower bin edge on the binned scale) from the highest bin down, from (0, 0) to
        (1, 1), thinned to at most ``max_points``; the first point's threshold is above every score."""
        filled = np.flatnonzero((self.pos + self.neg) > 0)[::-1]
        width = 2 * self.span / self.bins
        tp = np.r_[0, np.cumsum(self.pos[filled])].astype(np.float64)
        fp = np.r_[0, np.cumsum(self.neg[filled])].astype(np.float64)
        tpr = tp / tp[-1] if tp[-1] else tp
        fpr = fp / fp[-1] if fp[-1] else fp
        top = (filled[0] + 1) if len(filled) else self.bins
        edges = np.r_[top, filled] * width - self.span
        keep = thin_curve(fpr, tpr, max_points)
        return fpr[keep], tpr[keep], edges[keep]


@dataclass
class Classification:
    """AUC and, for probabilities, log loss and calibration, accumulated over batches."""

    probabilities: bool = True
    hist: ScoreHistogram = field(default_factory=ScoreHistogram)
    rows: int = 0
    positives: int = 0
    loss_sum: float = 0.0
    score_sum: float = 0.0
    cal_rows: np.ndarray = field(default_factory=lambda: np.zeros(CALIBRATION_BINS))
    cal_scores: np.ndarray = field(default_factory=lambda: np.zeros(CALIBRATION_BINS))
    cal_labels: np.ndarray = field(default_factory=lambda: np.zeros(CALIBRATION_BINS))

    def add(self, labels: np.ndarray, scores: np.ndarray) -> None:
        y = np.asarray(labels, dtype=np.float64)
        self.rows += len(y)
        self.positives += int(np.count_nonzero(y))
        if not self.probabilities:
            self.hist.add(y, scores)
            return
        p = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1 - _EPS)
        self.hist.add(y, np.log(p / (1 - p)))
        self.loss_sum += float(-np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))
        self.score_sum += float(np.sum(p))
        b = np.minimum((p * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
        self.cal_rows += np.bincount(b, minlength=CALIBRATION_BINS)
        self.cal_scores += np.bincount(b, weights=p, minlength=CALIBRATION_BINS)
        self.cal_labels += np.bincount(b, weights=y, minlength=CALIBRATION_BINS)

    def result(self) -> dict[str, float]:
        """``auc`` (and ``auc_error_bound``); for probabilities also ``log_loss``, ``mean_score``,
        ``calibration_gap`` (|mean score - match rate|, what the drift check watches) and ``ece`` (the
        rows-weighted gap over ten score bins)."""
        auc, bound = self.hist.auc()
        out = {"auc": auc, "auc_error_bound": bound}
        if self.probabilities and self.rows:
            rate, mean = self.positives / self.rows, self.score_sum / self.rows
            gaps = np.abs(self.cal_scores - self.cal_labels)
            out |= {
                "log_loss": self.loss_sum / self.rows,
                "mean_score": mean,
                "calibration_gap": abs(mean - rate),
                "ece": float(gaps.sum() / self.rows),
            }
        return out


def classification(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    c = Classification()
    c.add(labels, probs)
    return c.result()


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
    """The ROC curve of scores taken as they are (binned on their own scale), thinned."""
    h = ScoreHistogram()
    h.add(labels, scores)
    fpr, tpr, thr = h.roc(max_points)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}
