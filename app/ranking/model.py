"""The models: pointwise LightGBM on mutual matches, and the LambdaRank baseline on viewer likes.

In a two-sided market a good candidate is one who will also like the viewer back, so the
pointwise model learns P(match) from both sides' features. The usual recipe, LambdaRank on the
viewer's own likes grouped per session, orders by what the viewer wants only; it is the baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # imported where a model is trained: checking parameters (a stack's load) needs no LightGBM
    import lightgbm as lgb

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


def _fit(objective: dict[str, Any], train: lgb.Dataset, valid: lgb.Dataset, params: Mapping[str, Any]) -> lgb.Booster:
    import lightgbm as lgb

    booster_params, rounds, patience = split_params(params)
    return lgb.train(
        {**booster_params, **objective, "verbosity": -1, "num_threads": 0, "seed": 7, "deterministic": True},
        train,
        num_boost_round=rounds,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(patience, verbose=False)],
    )


def train_pointwise(
    x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, names: Sequence[str], params: Mapping[str, Any]
) -> lgb.Booster:
    import lightgbm as lgb

    train = lgb.Dataset(x, y, feature_name=list(names), free_raw_data=False)
    valid = lgb.Dataset(xv, yv, reference=train)
    return _fit({"objective": "binary", "metric": "binary_logloss"}, train, valid, params)


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
    return _fit({"objective": "lambdarank", "metric": "ndcg", "eval_at": [10]}, train, valid, params)
