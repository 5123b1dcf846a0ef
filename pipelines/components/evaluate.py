"""Component: metrics for the model, the baseline and the oracle; the ROC curve; approval."""

from typing import NamedTuple

from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def evaluate_models(
    test: Input[Dataset],
    model: Input[Model],
    baseline: Input[Model],
    min_oracle_ratio: float,
    metrics: Output[Metrics],
    roc: Output[ClassificationMetrics],
) -> NamedTuple("Evaluation", [("metrics_json", str), ("approved", bool), ("reason", str)]):
    import json
    from collections import namedtuple

    import lightgbm as lgb
    import pyarrow.parquet as pq

    from app.ranking.dataset import columns
    from app.ranking.evaluation import approved, evaluate
    from app.ranking.features import feature_matrix

    cols = columns(pq.read_table(test.path))
    scores = {}
    for who, artifact in (("model", model), ("baseline", baseline)):
        booster = lgb.Booster(model_file=artifact.path)
        scores[who] = booster.predict(feature_matrix(cols, booster.feature_name()))
    figures, curve = evaluate(cols, scores["model"], scores["baseline"])
    for name, value in figures.items():
        metrics.log_metric(name, value)
    roc.log_roc_curve(curve["fpr"], curve["tpr"], curve["thresholds"])
    ok, reason = approved(figures, min_oracle_ratio)
    out = namedtuple("Evaluation", ["metrics_json", "approved", "reason"])
    return out(json.dumps(figures), ok, reason)
