"""The statistics of an experiment readout, on per-session figures.

Sessions are the unit: each arm's metric is a ratio of per-session sums (matches per session is
matches / 1; the match rate in the top k is matches in the top k / candidates shown there), and its
variance is the delta method's for a ratio of means, which keeps the correlation between a session's
numerator and denominator (Deng et al., "Applying the Delta Method in Metric Analytics", 2018).
Arms are independent samples, so a difference's variance is the sum of theirs. Closed forms rather
than a bootstrap: the same figures at any number of sessions, in no time, with no seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))
SRM_ALPHA = 0.001  # the usual bar for a sample-ratio mismatch: a real one gives far smaller p-values


@dataclass(frozen=True)
class Ratio:
    value: float
    variance: float  # NaN with fewer than two sessions
    sessions: int


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> Ratio:
    """sum(numerator) / sum(denominator) over sessions, with its delta-method variance."""
    y, x = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    n = len(y)
    if n == 0 or x.sum() == 0:
        return Ratio(float("nan"), float("nan"), n)
    mx, my = x.mean(), y.mean()
    r = my / mx
    if n < 2:
        return Ratio(float(r), float("nan"), n)
    cov = np.cov(y, x, ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * mx * mx)
    return Ratio(float(r), float(max(var, 0.0)), n)


def difference(arm: Ratio, primary: Ratio) -> dict[str, float | None]:
    """arm - primary and arm / primary - 1, each with its 95% interval (None where undefined)."""

    def interval(value: float, var: float) -> tuple[float | None, float | None]:
        if not np.isfinite(value) or not np.isfinite(var):
            return None, None
        half = Z95 * float(np.sqrt(var))
        return value - half, value + half

    d = arm.value - primary.value
    lo, hi = interval(d, arm.variance + primary.variance)
    out: dict[str, float | None] = {
        "difference": _finite(d),
        "ci_low": lo,
        "ci_high": hi,
        "relative": None,
        "relative_ci_low": None,
        "relative_ci_high": None,
    }
    if np.isfinite(primary.value) and primary.value > 0 and np.isfinite(arm.value):
        rel = arm.value / primary.value - 1
        # gradient of a / p is (1/p, -a/p^2)
        var = arm.variance / primary.value**2 + arm.value**2 * primary.variance / primary.value**4
        rlo, rhi = interval(rel, var)
        out.update(relative=float(rel), relative_ci_low=rlo, relative_ci_high=rhi)
    return out


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def sample_ratio_mismatch(observed: Mapping[str, int], shares: Mapping[str, float]) -> dict[str, object]:
    """Pearson's chi-square test of the sessions per arm against the configured traffic shares.

    Arms with no configured share take no part in the test (their sessions are a finding of their own)."""
    arms = [a for a in shares if shares[a] > 0]
    counts = np.array([observed.get(a, 0) for a in arms], dtype=np.float64)
    total = counts.sum()
    result: dict[str, object] = {
        "observed": {a: int(c) for a, c in zip(arms, counts, strict=True)},
        "expected_share": {a: float(shares[a]) for a in arms},
        "alpha": SRM_ALPHA,
    }
    if len(arms) < 2 or total == 0:
        return {**result, "chi_square": None, "p_value": None, "detected": None}
    p = np.array([shares[a] for a in arms]) / sum(shares[a] for a in arms)
    expected = total * p
    chi = float(((counts - expected) ** 2 / expected).sum())
    pval = float(stats.chi2.sf(chi, df=len(arms) - 1))
    return {**result, "chi_square": chi, "p_value": pval, "detected": pval < SRM_ALPHA}


def top_k_ids(ids: Sequence[str], scores: Sequence[float], k: int) -> list[str]:
    """The ``k`` best-scored ids; ties keep the order they came in."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [ids[i] for i in order[:k]]


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b of two score vectors over the same items (NaN when one is constant)."""
    sa = np.sign(a[:, None] - a[None, :])
    sb = np.sign(b[:, None] - b[None, :])
    upper = np.triu_indices(len(a), k=1)
    sa, sb = sa[upper], sb[upper]
    denom = np.sqrt(float((sa * sa).sum()) * float((sb * sb).sum()))
    return float((sa * sb).sum() / denom) if denom > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties; NaN when one is constant)."""
    ra, rb = stats.rankdata(a), stats.rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def order_agreement(
    ids_a: Sequence[str], scores_a: Sequence[float], ids_b: Sequence[str], scores_b: Sequence[float], k: int
) -> tuple[float, float, float] | None:
    """(overlap@k, Kendall tau-b, Spearman) of two scorings of one request, on the candidates both
    scored; None when they share fewer than two."""
    by_b = dict(zip(ids_b, scores_b, strict=True))
    common = [(i, s) for i, s in zip(ids_a, scores_a, strict=True) if i in by_b]
    if len(common) < 2:
        return None
    ids = [i for i, _ in common]
    a = np.array([s for _, s in common], dtype=np.float64)
    b = np.array([by_b[i] for i in ids], dtype=np.float64)
    kk = min(k, len(ids))
    overlap = len(set(top_k_ids(ids, a, kk)) & set(top_k_ids(ids, b, kk))) / kk
    return overlap, kendall_tau_b(a, b), spearman(a, b)
