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
from app.ranking.metrics import MAX_ROC_POINTS, Classification, map_per_session, ndcg_per_session, paired_bootstrap

K = 10
PRIMARY = f"ndcg_at_{K}"
PRIMARY_METRIC = f"model_{PRIMARY}"
PROBABILISTIC = ("model", "serving", "oracle")  # scores that are match probabilities (log loss applies)


class EvaluationError(ValueError):
    """Test days the figures cannot be computed on; the message is one line saying what to change."""


class Evaluator:
    """The figures of ``evaluate``, accumulated over chunks of whole sessions (a session's rows all
    in one ``add``), so the test set is scored batch by batch: what is kept is one NDCG@k and AP@k
    per session with a match and scorer (for the bootstrap), and fixed-size histograms."""

    def __init__(self, k: int = K) -> None:
        self.k = k
        self.per_session: dict[str, list[np.ndarray]] = {}
        self.ap: dict[str, list[np.ndarray]] = {}
        self.classes: dict[str, Classification] = {}
        self.rows = self.sessions = self.matches = 0

    def add(self, groups: np.ndarray, rel: np.ndarray, scores: Mapping[str, np.ndarray]) -> None:
        """``scores``: ``model`` first, then e.g. ``baseline``, ``serving``, ``oracle``; probabilities
        already corrected for the model's negative sampling (``app/ranking/sampling.correct``)."""
        rel = np.asarray(rel, dtype=np.float64)
        if not len(rel):
            return
        self.rows += len(rel)
        self.sessions += len(np.unique(groups))
        self.matches += int(np.count_nonzero(rel))
        for who, s in scores.items():
            ndcg = ndcg_per_session(groups, s, rel, self.k)
            used = ~np.isnan(ndcg)
            self.per_session.setdefault(who, []).append(ndcg[used])
            self.ap.setdefault(who, []).append(map_per_session(groups, s, rel, self.k)[used])
            self.classes.setdefault(who, Classification(who in PROBABILISTIC)).add(rel, s)

    def result(self, max_points: int = MAX_ROC_POINTS) -> tuple[dict[str, float], dict[str, list[float]]]:
        if self.rows == 0:
            raise EvaluationError("the test days hold no rows: nothing to evaluate (widen the window)")
        if self.matches in (0, self.rows):
            what = "no match" if self.matches == 0 else "only matches"
            raise EvaluationError(
                f"the test days' {self.rows} rows hold {what}: AUC and NDCG@{self.k} are undefined "
                "(widen the window or the test days, or check the impressions' match column)"
            )
        k, metrics = self.k, {}
        per = {who: np.concatenate(parts) for who, parts in self.per_session.items()}
        for who, values in per.items():
            aps = np.concatenate(self.ap[who])
            metrics[f"{who}_ndcg_at_{k}"] = float(values.mean())
            metrics[f"{who}_map_at_{k}"] = float(aps.mean())
            metrics["sessions_with_a_match"] = len(values)
            figures = self.classes[who].result()
            if who in PROBABILISTIC:
                metrics.update({f"{who}_{name}": v for name, v in figures.items() if name != "auc_error_bound"})
            else:  # LambdaRank scores are not probabilities: rank quality (AUC) only
                metrics[f"{who}_auc"] = figures["auc"]
        metrics["model_auc_error_bound"] = self.classes["model"].result()["auc_error_bound"]
        for who in per:
            if who in ("model", "oracle"):
                continue
            lo, hi = paired_bootstrap(per["model"], per[who])
            metrics[f"model_minus_{who}_ndcg_at_{k}"] = metrics[f"model_ndcg_at_{k}"] - metrics[f"{who}_ndcg_at_{k}"]
            metrics[f"model_minus_{who}_ndcg_at_{k}_ci_low"] = lo
            metrics[f"model_minus_{who}_ndcg_at_{k}_ci_high"] = hi
        if "oracle" in per:
            metrics[f"model_vs_oracle_ndcg_at_{k}"] = metrics[f"model_ndcg_at_{k}"] / metrics[f"oracle_ndcg_at_{k}"]
        metrics["test_rows"] = float(self.rows)
        metrics["test_sessions"] = float(self.sessions)
        metrics["test_match_rate"] = self.matches / self.rows
        fpr, tpr, edges = self.classes["model"].hist.roc(max_points)
        thresholds = 1 / (1 + np.exp(-edges))  # the model's scores are probabilities: back from log-odds
        return metrics, {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()}


def evaluate(
    cols: Mapping[str, np.ndarray],
    scores: Mapping[str, np.ndarray],
    oracle: np.ndarray | None = None,
    k: int = K,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Flat metrics (``<who>_<metric>``) for every scorer in ``scores`` (``model`` first, then e.g.
    ``baseline`` and ``serving``) and the oracle when given; ``model_minus_<who>_ndcg_at_k`` with its
    bootstrap interval; the model's ROC curve thinned to at most 300 points. In memory: the test
    set in one chunk (``Evaluator`` takes it in chunks of sessions)."""
    e = Evaluator(k)
    e.add(cols[GROUP], cols[LABEL], dict(scores) if oracle is None else {**scores, "oracle": oracle})
    return e.result()


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
