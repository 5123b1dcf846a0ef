"""Evaluation on held-out days and the deploy gate: champion vs challenger on the same sessions.

The newly trained model (``model``), the LambdaRank baseline (``baseline``) and, when the variant
serves one, the model it serves (``serving``) are scored on the same test sessions. The new model
is approved when it beats the baseline and beats the serving model by the configured margin on the
primary metric; the difference comes with a 95% bootstrap interval over sessions. A simulation may
also pass the true match probabilities (the oracle): then every metric has an ``oracle_`` figure,
``model_vs_oracle_ndcg_at_10`` is reported and an opt-in gate can ask for a share of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.ranking.dataset import GROUP, LABEL
from app.ranking.metrics import classification, map_at_k, ndcg_per_session, paired_bootstrap, roc_points

K = 10
PRIMARY = f"ndcg_at_{K}"
PRIMARY_METRIC = f"model_{PRIMARY}"
PROBABILISTIC = ("model", "serving", "oracle")  # scores that are match probabilities (log loss applies)


def evaluate(
    cols: Mapping[str, np.ndarray],
    scores: Mapping[str, np.ndarray],
    oracle: np.ndarray | None = None,
    k: int = K,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Flat metrics (``<who>_<metric>``) for every scorer in ``scores`` (``model`` first, then e.g.
    ``baseline`` and ``serving``) and the oracle when given; ``model_minus_<who>_ndcg_at_k`` with its
    bootstrap interval; the model's ROC curve thinned to at most 300 points."""
    groups, rel = cols[GROUP], np.asarray(cols[LABEL], dtype=np.float64)
    everyone = dict(scores) if oracle is None else {**scores, "oracle": oracle}
    metrics: dict[str, float] = {}
    per_session: dict[str, np.ndarray] = {}
    for who, s in everyone.items():
        per = ndcg_per_session(groups, s, rel, k)
        used = ~np.isnan(per)
        per_session[who] = per[used]
        metrics[f"{who}_ndcg_at_{k}"] = float(per[used].mean()) if used.any() else float("nan")
        metrics[f"{who}_map_at_{k}"] = map_at_k(groups, s, rel, k)
        metrics["sessions_with_a_match"] = int(used.sum())
        if who in PROBABILISTIC:
            metrics.update({f"{who}_{name}": v for name, v in classification(rel, s).items()})
        else:  # LambdaRank scores are not probabilities: rank quality (AUC) only
            metrics[f"{who}_auc"] = classification(rel, 1 / (1 + np.exp(-s)))["auc"]
    for who in everyone:
        if who in ("model", "oracle"):
            continue
        lo, hi = paired_bootstrap(per_session["model"], per_session[who])
        metrics[f"model_minus_{who}_ndcg_at_{k}"] = metrics[f"model_ndcg_at_{k}"] - metrics[f"{who}_ndcg_at_{k}"]
        metrics[f"model_minus_{who}_ndcg_at_{k}_ci_low"] = lo
        metrics[f"model_minus_{who}_ndcg_at_{k}_ci_high"] = hi
    if oracle is not None:
        metrics[f"model_vs_oracle_ndcg_at_{k}"] = metrics[f"model_ndcg_at_{k}"] / metrics[f"oracle_ndcg_at_{k}"]
    metrics["test_rows"] = float(len(rel))
    metrics["test_sessions"] = float(len(np.unique(groups)))
    metrics["test_match_rate"] = float(np.mean(rel))
    return metrics, roc_points(rel, scores["model"])


@dataclass(frozen=True)
class Gate:
    """What a new model must do to be deployed: beat the baseline, and beat the serving model by
    ``margin`` on NDCG@10 (same sessions). ``min_oracle_ratio`` > 0 also asks for that share of the
    oracle's NDCG@10: an opt-in for simulations, which alone have an oracle."""

    margin: float = 0.005
    min_oracle_ratio: float = 0.0


def _diff(m: Mapping[str, Any], who: str) -> str:
    d = f"model_minus_{who}_{PRIMARY}"
    return f"difference {m[d]:+.4f}, 95% interval [{m[d + '_ci_low']:+.4f}, {m[d + '_ci_high']:+.4f}]"


def decide(m: Mapping[str, Any], gate: Gate, serving_model_id: str | None) -> tuple[bool, str]:
    """(approved, why) from ``evaluate``'s metrics; the reason names the figures it compared."""
    sessions = int(m["sessions_with_a_match"])
    new, base = m[f"model_{PRIMARY}"], m[f"baseline_{PRIMARY}"]
    if not new > base:
        return False, (
            f"NDCG@10 {new:.4f} does not beat the LambdaRank baseline {base:.4f} "
            f"on {sessions} test sessions ({_diff(m, 'baseline')})"
        )
    if gate.min_oracle_ratio > 0:
        ratio = m.get(f"model_vs_oracle_{PRIMARY}")
        if ratio is None:
            return False, f"the oracle-ratio gate ({gate.min_oracle_ratio}) needs an oracle file; none was given"
        if ratio < gate.min_oracle_ratio:
            return False, f"NDCG@10 is {ratio:.3f} of the oracle's, below the opt-in {gate.min_oracle_ratio}"
    if serving_model_id is None:
        return True, f"beats the baseline ({_diff(m, 'baseline')}); the variant serves no model yet"
    serving = m[f"serving_{PRIMARY}"]
    if new - serving > gate.margin:
        return True, (
            f"NDCG@10 {new:.4f} beats the serving model {serving_model_id} ({serving:.4f}) by more than the margin "
            f"{gate.margin} on the same {sessions} test sessions ({_diff(m, 'serving')})"
        )
    return False, (
        f"NDCG@10 {new:.4f} does not beat the serving model {serving_model_id} ({serving:.4f}) by the margin "
        f"{gate.margin} on the same {sessions} test sessions ({_diff(m, 'serving')})"
    )
