"""Drift and ground-truth checks: should the model be retrained, and why.

- Feature drift: the population stability index (PSI) of every model feature, between the
  impressions of the deployed model's training window and those of the last ``recent_days``,
  each side's features joined point-in-time (what the model saw, and what it sees now).
- Ground truth, as production sees it: the scores the deployed model served in the recent window
  (the landed prediction records) joined with the impressions' outcomes (``app/trigger/served.py``)
  give the calibration gap |mean score - match rate| and the AUC drop from the model's evaluation
  AUC (served scores are already corrected for the model's negative sampling by the worker; a
  re-scoring corrects them the same way). Only when too few served predictions landed (a new
  stack, a variant without traffic) are the recent impressions re-scored with the deployed model
  instead; the report says which it used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.featurestore.offline import OfflineStore
from app.featurestore.registry import Registry
from app.ranking.dataset import LABEL, columns, join_features, select_window
from app.ranking.features import Entities, feature_matrix
from app.ranking.metrics import classification
from app.ranking.sampling import CalibratedModel
from app.settings import DriftConfig

SAMPLE_ROWS = 20_000
EPS = 1e-4
MIN_SERVED_ROWS = 500  # fewer served (score, outcome) pairs than this: re-score the impressions instead


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` (deciles of ``expected``)."""
    expected, actual = expected[~np.isnan(expected)], actual[~np.isnan(actual)]
    if len(expected) == 0 or len(actual) == 0:
        return 0.0
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0 if np.all(actual == edges[0]) else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.histogram(expected, edges)[0] / len(expected) + EPS
    a = np.histogram(actual, edges)[0] / len(actual) + EPS
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass
class DriftReport:
    windows: dict[str, str]
    psi: dict[str, float]
    calibration_gap: float
    auc_recent: float
    auc_at_training: float
    ground_truth: dict[str, Any] = field(default_factory=dict)  # source ("served_predictions" | "rescored"), rows
    reasons: list[str] = field(default_factory=list)

    @property
    def auc_drop(self) -> float:
        return self.auc_at_training - self.auc_recent

    def to_dict(self) -> dict[str, Any]:
        top = sorted(self.psi.items(), key=lambda kv: -kv[1])[:10]
        return {
            "windows": self.windows,
            "psi_top": dict(top),
            "calibration_gap": self.calibration_gap,
            "auc_recent": self.auc_recent,
            "auc_at_training": self.auc_at_training,
            "auc_drop": self.auc_drop,
            "ground_truth": self.ground_truth,
            "retrain": bool(self.reasons),
            "reasons": self.reasons,
        }


def _sample(table: pa.Table, seed: int) -> pa.Table:
    if table.num_rows <= SAMPLE_ROWS:
        return table
    idx = np.sort(np.random.default_rng(seed).choice(table.num_rows, SAMPLE_ROWS, replace=False))
    return table.take(pa.array(idx))


def check_drift(
    store: OfflineStore,
    registry: Registry,
    impressions: pa.Table,
    model_file: str,
    model_meta: dict[str, Any],
    cfg: DriftConfig,
    entities: Entities,
    as_of: datetime | None = None,
    served: Callable[[datetime, datetime], pa.Table] | None = None,
) -> DriftReport:
    """``served(start, end)`` gives the deployed model's served (score, match) pairs in the window
    (``app/trigger/served.py``); without it, or with too few, the impressions are re-scored."""
    window = model_meta["data_window"]
    train_start = datetime.fromisoformat(window["start"])
    train_end = datetime.fromisoformat(window["train_end"])
    end = as_of or pc.max(impressions.column("impression_time")).as_py() + timedelta(microseconds=1)
    recent_start = end - timedelta(days=cfg.recent_days)
    if recent_start < train_end:
        recent_start = train_end  # never judge the model on the data it was trained on
    train = join_features(store, _sample(select_window(impressions, train_start, train_end), 1), registry, entities)
    recent = join_features(store, _sample(select_window(impressions, recent_start, end), 2), registry, entities)
    # the model's scores corrected for its negative sampling, as the worker serves them
    booster = CalibratedModel.load(model_file, model_meta)
    names = booster.feature_name()
    train_cols, recent_cols = columns(train), columns(recent)
    x_train, x_recent = feature_matrix(train_cols, names), feature_matrix(recent_cols, names)
    figures = {n: psi(x_train[:, j].astype(float), x_recent[:, j].astype(float)) for j, n in enumerate(names)}
    pairs = served(recent_start, end) if served is not None else None
    if (
        pairs is not None
        and pairs.num_rows >= MIN_SERVED_ROWS
        and 0 < pc.sum(pairs.column("match")).as_py() < pairs.num_rows
    ):
        scores = pairs.column("score").to_numpy()
        labels = pairs.column("match").to_numpy(zero_copy_only=False).astype(np.float64)
        truth = {"source": "served_predictions", "rows": pairs.num_rows}
    else:
        scores, labels = booster.predict(x_recent), recent_cols[LABEL]
        landed = 0 if pairs is None else pairs.num_rows
        truth = {"source": "rescored", "rows": len(labels), "served_rows": landed}
    gap = float(abs(scores.mean() - labels.mean()))
    auc_recent = classification(labels, scores)["auc"]
    auc_train = float(model_meta.get("metrics", {}).get("model_auc", auc_recent))
    report = DriftReport(
        {
            "training": f"{train_start.isoformat()}/{train_end.isoformat()}",
            "recent": f"{recent_start.isoformat()}/{end.isoformat()}",
        },
        figures,
        gap,
        auc_recent,
        auc_train,
        truth,
    )
    drifted = sorted(((v, n) for n, v in figures.items() if v > cfg.psi_threshold), reverse=True)
    if drifted:
        report.reasons.append(
            "feature_drift: "
            + ", ".join(f"{n} psi {v:.2f}" for v, n in drifted[:5])
            + f" (threshold {cfg.psi_threshold})"
        )
    if gap > cfg.calibration_gap_threshold:
        report.reasons.append(
            f"calibration_gap: mean score {scores.mean():.3f} vs match rate {labels.mean():.3f} "
            f"(gap {gap:.3f} > {cfg.calibration_gap_threshold})"
        )
    if report.auc_drop > cfg.auc_drop_threshold:
        report.reasons.append(
            f"auc_drop: {auc_train:.3f} at training, {auc_recent:.3f} now "
            f"(drop {report.auc_drop:.3f} > {cfg.auc_drop_threshold})"
        )
    return report
