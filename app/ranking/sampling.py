"""Negative sampling of training rows, and the one correction of a sampled model's scores.

Matches are rare, so training keeps every positive and a fraction ``r`` of the negatives. Which
negatives are kept depends only on the row's key (``impressions.KEY``: session and candidate),
hashed, so a rerun keeps the same rows whatever the batch size, the shard layout or the process.
A model trained so estimates q = P(match | x) on data with r times fewer negatives; the true
probability is p = q / (q + (1 - q) / r), i.e. logit(p) = logit(q) + log(r). Every place that
compares or serves a model's scores (the worker, evaluation, the drift check) calls ``correct``
with the rate the model's metadata records (``rate_of``); rank metrics do not change (the
correction is monotone), calibration does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from app.ranking.impressions import KEY

RATE_KEY = "negative_sampling_rate"  # in a model's metadata (training component, registry record)
_UNIT = float(2**53)


def check_rate(rate: float) -> float:
    if not 0 < rate <= 1:
        raise ValueError(f"negative sampling rate must be in (0, 1], got {rate}")
    return float(rate)


def correct(scores: np.ndarray, rate: float) -> np.ndarray:
    """True-distribution probabilities from a model trained on negatives kept at ``rate``."""
    q = np.asarray(scores, dtype=np.float64)
    if check_rate(rate) == 1.0:
        return q
    return q / (q + (1.0 - q) / rate)


def logit_offset(rate: float) -> float:
    """What the correction adds to the model's raw score (log-odds): log(rate)."""
    return float(np.log(check_rate(rate)))


def rate_of(metadata: Mapping[str, Any] | None) -> float:
    """The rate a model was trained at (1.0 when its metadata predates sampling or says nothing)."""
    value = (metadata or {}).get(RATE_KEY)
    return 1.0 if value is None else check_rate(float(value))


def key_fraction(rows: pa.Table | pa.RecordBatch) -> np.ndarray:
    """A number in [0, 1) per row from its key alone (pandas' fixed-key hash: stable across runs)."""
    frame = pd.DataFrame({k: rows.column(k).to_numpy(zero_copy_only=False) for k in KEY})
    h = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return (h >> np.uint64(11)).astype(np.float64) / _UNIT


def keep(rows: pa.Table | pa.RecordBatch, label: str, rate: float) -> np.ndarray:
    """Mask of the rows kept: every positive, and the negatives whose key falls below ``rate``."""
    positive = np.asarray(rows.column(label).to_numpy(zero_copy_only=False), dtype=bool)
    if check_rate(rate) == 1.0:
        return np.ones(len(positive), dtype=bool)
    return positive | (key_fraction(rows) < rate)


class Booster(Protocol):
    def predict(self, data: np.ndarray) -> np.ndarray: ...
    def feature_name(self) -> list[str]: ...


class CalibratedModel:
    """A booster whose ``predict`` returns corrected probabilities: what the worker serves, the
    drift check re-scores with and evaluation compares (rank order is the booster's own)."""

    def __init__(self, booster: Booster, rate: float = 1.0) -> None:
        self.booster, self.rate = booster, check_rate(rate)

    @classmethod
    def load(cls, model_file: str | Path, metadata: Mapping[str, Any] | None) -> CalibratedModel:
        import lightgbm as lgb

        return cls(lgb.Booster(model_file=str(model_file)), rate_of(metadata))

    def predict(self, data: np.ndarray) -> np.ndarray:
        return correct(self.booster.predict(data), self.rate)

    def feature_name(self) -> list[str]:
        return self.booster.feature_name()
