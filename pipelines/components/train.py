"""Components: the pointwise LightGBM model and the LambdaRank baseline."""

from kfp.dsl import Dataset, Input, Model, Output


def train_model(
    train: Input[Dataset],
    valid: Input[Dataset],
    hyperparameters: str,
    features: str,
    entities: str,
    objective: str,
    task: str,
    env: str,
    model: Output[Model],
) -> None:
    """``objective`` "pointwise" learns P(match) from both sides; "lambdarank" ranks by the viewer's likes."""
    import json

    import pyarrow.parquet as pq

    from app.featurestore.registry import default_registry
    from app.ranking.dataset import BASELINE_LABEL, GROUP, LABEL, columns
    from app.ranking.features import all_feature_names, check_features, feature_matrix, parse_entities
    from app.ranking.model import train_lambdarank, train_pointwise

    registry, views = default_registry(), parse_entities(entities)
    names = [f.strip() for f in features.split(",") if f.strip()] or all_feature_names(registry, views)
    check_features(names, registry, views)
    params = json.loads(hyperparameters or "{}")
    tr, va = columns(pq.read_table(train.path)), columns(pq.read_table(valid.path))
    x, xv = feature_matrix(tr, names), feature_matrix(va, names)
    if objective == "pointwise":
        booster = train_pointwise(x, tr[LABEL], xv, va[LABEL], names, params)
    elif objective == "lambdarank":
        booster = train_lambdarank(x, tr[BASELINE_LABEL], tr[GROUP], xv, va[BASELINE_LABEL], va[GROUP], names, params)
    else:
        raise ValueError(f"objective must be 'pointwise' or 'lambdarank', got {objective!r}")
    booster.save_model(model.path)
    window = {k: train.metadata.get(k) for k in ("start", "train_end", "valid_end", "end")}
    model.metadata.update(
        {
            "task": task,
            "env": env,
            "objective": objective,
            "hyperparameters": params,
            "features": names,
            "entities": entities,
            "best_iteration": booster.best_iteration,
            "data_window": window,
            "train_rows": train.metadata.get("rows"),
        }
    )
