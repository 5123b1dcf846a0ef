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
    import pyarrow.parquet as pq

    from app.ranking.dataset import columns
    from app.ranking.evaluation import Gate, decide, evaluate
    from app.ranking.features import feature_matrix
    from app.ranking.impressions import oracle_for, read_oracle
    from app.ranking.registry import ModelRegistry

    table = pq.read_table(test.path)
    cols = columns(table)
    boosters = {"model": model.path, "baseline": baseline.path}
    serving = ModelRegistry(registry_uri).deployment(variant)
    if serving is not None:
        boosters["serving"] = serving.model_uri
    scores = {}
    for who, path in boosters.items():
        booster = lgb.Booster(model_file=path)
        lacking = [f for f in booster.feature_name() if f not in cols and not f.startswith("pair_")]
        if lacking:  # e.g. the stack now serves another entity version than the serving model read
            raise ValueError(
                f"the {who} model {path} reads feature(s) {lacking[:5]} this run's data lacks; "
                "train with the entities it was trained on, or deploy by hand"
            )
        scores[who] = booster.predict(feature_matrix(cols, booster.feature_name()))
    oracle = oracle_for(table, read_oracle(oracle_uri)) if oracle_uri else None
    figures, curve = evaluate(cols, scores, oracle)
    for name, value in figures.items():
        metrics.log_metric(name, value)
    roc.log_roc_curve(curve["fpr"], curve["tpr"], curve["thresholds"])
    serving_id = serving.model_id if serving else None
    ok, reason = decide(figures, Gate(gate_margin, min_oracle_ratio), serving_id)
    metrics.metadata.update({"serving_model_id": serving_id or "", "approved": ok, "reason": reason})
    out = namedtuple("Evaluation", ["metrics_json", "approved", "reason", "serving_model_id"])
    return out(json.dumps(figures), ok, reason, serving_id or "")
