"""Component: the new model, the baseline and the variant's serving model on the same test days; the
ROC curve; the deploy decision (champion vs challenger)."""

from typing import NamedTuple

from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def evaluate_models(
    test: Input[Dataset],
    model: Input[Model],
    baseline: Input[Model],
    registry_uri: str,
    variant: str,
    oracle_uri: str,
    gate_margin: float,
    min_oracle_ratio: float,
    metrics: Output[Metrics],
    roc: Output[ClassificationMetrics],
) -> NamedTuple("Evaluation", [("metrics_json", str), ("approved", bool), ("reason", str), ("serving_model_id", str)]):
    """``oracle_uri`` (simulations only) adds the oracle's figures; ``min_oracle_ratio`` > 0 gates on
    them. ``serving_model_id`` is "" when the variant serves nothing yet."""
    import json
    from collections import namedtuple

    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from app.ranking.batches import session_chunks
    from app.ranking.dataset import GROUP, LABEL, columns
    from app.ranking.evaluation import Evaluator, Gate, decide
    from app.ranking.features import feature_matrix
    from app.ranking.impressions import KEY, ImpressionsError, read_oracle
    from app.ranking.registry import ModelRegistry
    from app.ranking.sampling import CalibratedModel, rate_of

    registry = ModelRegistry(registry_uri)
    # (path, negative sampling rate the scores are corrected by); the baseline ranks, never sampled
    boosters = {"model": (model.path, rate_of(model.metadata)), "baseline": (baseline.path, 1.0)}
    serving = registry.deployment(variant)
    if serving is not None:
        boosters["serving"] = (serving.model_uri, rate_of(registry.metadata(serving.model_id)))
    loaded = {who: CalibratedModel(lgb.Booster(model_file=path), rate) for who, (path, rate) in boosters.items()}
    truth = None  # the oracle (simulations only) as a lookup by row key, built once
    if oracle_uri:
        truth = read_oracle(oracle_uri).select([*KEY, "p_match"]).to_pandas().drop_duplicates(list(KEY))
        truth = truth.set_index(list(KEY))["p_match"]
    evaluator = Evaluator()
    for chunk in session_chunks(test.path):  # whole sessions, one batch at a time
        cols = columns(chunk)
        scores = {}
        for who, booster in loaded.items():
            lacking = [f for f in booster.feature_name() if f not in cols and not f.startswith("pair_")]
            if lacking:  # e.g. the stack now serves another entity version than the serving model read
                raise ValueError(
                    f"the {who} model {boosters[who][0]} reads feature(s) {lacking[:5]} this run's data lacks; "
                    "train with the entities it was trained on, or deploy by hand"
                )
            scores[who] = booster.predict(feature_matrix(cols, booster.feature_name()))  # corrected probabilities
        if truth is not None:
            keys = pd.MultiIndex.from_arrays([chunk.column(k).to_numpy(zero_copy_only=False) for k in KEY])
            scores["oracle"] = truth.reindex(keys).to_numpy(dtype=np.float64)
            if np.isnan(scores["oracle"]).any():
                missing = int(np.isnan(scores["oracle"]).sum())
                raise ImpressionsError(f"the oracle file has no p_match for {missing} impression(s)")
        evaluator.add(cols[GROUP], cols[LABEL], scores)
    figures, curve = evaluator.result()
    for name, value in figures.items():
        metrics.log_metric(name, value)
    roc.log_roc_curve(curve["fpr"], curve["tpr"], curve["thresholds"])
    serving_id = serving.model_id if serving else None
    ok, reason = decide(figures, Gate(gate_margin, min_oracle_ratio), serving_id)
    metrics.metadata.update({"serving_model_id": serving_id or "", "approved": ok, "reason": reason})
    out = namedtuple("Evaluation", ["metrics_json", "approved", "reason", "serving_model_id"])
    return out(json.dumps(figures), ok, reason, serving_id or "")
