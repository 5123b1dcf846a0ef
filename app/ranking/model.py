"""The models: pointwise LightGBM on mutual matches, and the LambdaRank baseline on viewer likes.

In a two-sided market a good candidate is one who will also like the viewer back, so the
pointwise model learns P(match) from both sides' features. The usual recipe, LambdaRank on the
viewer's own likes grouped per session, orders by what the viewer wants only; it is the baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # imported where a model is trained: checking parameters (a stack's load) needs no LightGBM
    import lightgbm as lgb

    from app.ranking.binned import Progress

DEFAULT_PARAMS: dict[str, Any] = {
    "num_leaves": 63,
    "learning_rate": 0.1,
    "num_boost_round": 200,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.8,
    "early_stopping_rounds": 30,
}
_TRAIN_KEYS = {"num_boost_round", "early_stopping_rounds"}


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], int, int]:
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {unknown}; known: {sorted(DEFAULT_PARAMS)}")
    merged = {**DEFAULT_PARAMS, **params}
    booster = {k: v for k, v in merged.items() if k not in _TRAIN_KEYS}
    return booster, int(merged["num_boost_round"]), int(merged["early_stopping_rounds"])


def group_sizes(groups: np.ndarray) -> np.ndarray:
    if len(groups) and np.any(np.diff(groups) < 0):
        raise ValueError("rows must be ordered by session for LambdaRank")
    _, sizes = np.unique(groups, return_counts=True)
    return sizes


POINTWISE = {"objective": "binary", "metric": "binary_logloss"}
LAMBDARANK = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10]}
Rounds = Callable[[int, int], None]  # (boosting rounds done, of at most)


def _fit(
    objective: dict[str, Any],
    train: lgb.Dataset,
    valid: lgb.Dataset,
    params: Mapping[str, Any],
    rounds_done: Rounds | None = None,
) -> lgb.Booster:
    import lightgbm as lgb

    booster_params, rounds, patience = split_params(params)
    callbacks = [lgb.early_stopping(patience, verbose=False)]
    if rounds_done is not None:
        callbacks.append(lambda env: rounds_done(env.iteration + 1, env.end_iteration))
    return lgb.train(
        {**booster_params, **objective, "verbosity": -1, "num_threads": 0, "seed": 7, "deterministic": True},
        train,
        num_boost_round=rounds,
        valid_sets=[valid],
        callbacks=callbacks,
    )


def train_from_shards(
    objective: str,
    train: str | Path,
    valid: str | Path,
    names: Sequence[str],
    params: Mapping[str, Any],
    negative_rate: float = 1.0,
    rows_read: Progress | None = None,
    rounds_done: Rounds | None = None,
) -> tuple[lgb.Booster, dict[str, int]]:
    """The pointwise model (label ``match``, the training rows' negatives kept at ``negative_rate``)
    or the LambdaRank baseline (label ``viewer_like``, one group per session, every row) from two
    dataset artifacts read batch by batch. Validation keeps its true distribution; its raw scores
    start at log(rate), so early stopping judges the corrected probabilities, the ones served.
    Returns the booster and the rows, positives and sessions it learnt from."""
    from app.ranking.binned import binned
    from app.ranking.dataset import BASELINE_LABEL, LABEL
    from app.ranking.sampling import logit_offset

    if objective == "pointwise":
        x, s = binned(train, names, LABEL, negative_rate, progress=rows_read)
        offset = logit_offset(negative_rate) if negative_rate != 1.0 else None
        xv, _ = binned(valid, names, LABEL, reference=x, init_score=offset, progress=rows_read)
        booster = _fit(POINTWISE, x, xv, params, rounds_done)
    elif objective == "lambdarank":
        if negative_rate != 1.0:
            raise ValueError("negative sampling applies to the pointwise model; LambdaRank learns from whole sessions")
        x, s = binned(train, names, BASELINE_LABEL, ranking=True, progress=rows_read)
        xv, _ = binned(valid, names, BASELINE_LABEL, ranking=True, reference=x, progress=rows_read)
        booster = _fit(LAMBDARANK, x, xv, params, rounds_done)
    else:
        raise ValueError(f"objective must be 'pointwise' or 'lambdarank', got {objective!r}")
    return booster, {"rows": s.rows, "positives": s.positives, "sessions": len(s.group_sizes)}


def train_pointwise(  # in memory: small data (bench, tests) and the in-memory comparison
    x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, names: Sequence[str], params: Mapping[str, Any]
) -> lgb.Booster:
    import lightgbm as lgb

    train = lgb.Dataset(x, y, feature_name=list(names), free_raw_data=False)
    valid = lgb.Dataset(xv, yv, reference=train)
    return _fit(POINTWISE, train, valid, params)


def train_lambdarank(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    xv: np.ndarray,
    yv: np.ndarray,
    gv: np.ndarray,
    names: Sequence[str],
    params: Mapping[str, Any],
) -> lgb.Booster:
    import lightgbm as lgb

    train = lgb.Dataset(x, y, group=group_sizes(groups), feature_name=list(names), free_raw_data=False)
    valid = lgb.Dataset(xv, yv, group=group_sizes(gv), reference=train)
    return _fit(LAMBDARANK, train, valid, params)
