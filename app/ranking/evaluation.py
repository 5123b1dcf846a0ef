"""Evaluation of the model, the baseline and the oracle on the same test sessions."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.ranking.dataset import GROUP, LABEL, ORACLE
from app.ranking.metrics import classification, map_at_k, ndcg_at_k, roc_points

PRIMARY_METRIC = "model_ndcg_at_10"


def evaluate(
    cols: dict[str, np.ndarray], model_scores: np.ndarray, baseline_scores: np.ndarray, k: int = 10
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Flat metrics (``<who>_<metric>``) and the model's ROC curve thinned to at most 300 points."""
    groups, rel = cols[GROUP], cols[LABEL]
    metrics: dict[str, float] = {}
    for who, scores in (("model", model_scores), ("baseline", baseline_scores), ("oracle", cols[ORACLE])):
        ndcg, sessions = ndcg_at_k(groups, scores, rel, k)
        metrics[f"{who}_ndcg_at_{k}"] = ndcg
        metrics[f"{who}_map_at_{k}"] = map_at_k(groups, scores, rel, k)
        metrics["sessions_with_a_match"] = sessions
    for who, probs in (("model", model_scores), ("oracle", cols[ORACLE])):
        for name, value in classification(rel, probs).items():
            metrics[f"{who}_{name}"] = value
    # LambdaRank scores are not probabilities: rank quality (AUC) only.
    metrics["baseline_auc"] = classification(rel, 1 / (1 + np.exp(-baseline_scores)))["auc"]
    metrics[f"model_vs_oracle_ndcg_at_{k}"] = metrics[f"model_ndcg_at_{k}"] / metrics[f"oracle_ndcg_at_{k}"]
    metrics["test_rows"] = float(len(rel))
    metrics["test_match_rate"] = float(np.mean(rel))
    return metrics, roc_points(rel, model_scores)


def approved(metrics: dict[str, Any], min_oracle_ratio: float) -> tuple[bool, str]:
    """A model is approved when it beats the baseline and comes close enough to the oracle."""
    if metrics["model_ndcg_at_10"] <= metrics["baseline_ndcg_at_10"]:
        return False, (
            f"NDCG@10 {metrics['model_ndcg_at_10']:.4f} does not beat the LambdaRank baseline "
            f"{metrics['baseline_ndcg_at_10']:.4f}"
        )
    if metrics["model_vs_oracle_ndcg_at_10"] < min_oracle_ratio:
        return False, (
            f"NDCG@10 is {metrics['model_vs_oracle_ndcg_at_10']:.3f} of the oracle's, below {min_oracle_ratio}"
        )
    return True, "beats the baseline and is within reach of the oracle"
