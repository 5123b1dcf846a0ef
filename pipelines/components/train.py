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
    negative_rate: float = 1.0,
) -> None:
    """``objective`` "pointwise" learns P(match) from both sides; "lambdarank" ranks by the viewer's likes.

    The data are read batch by batch into LightGBM's binned datasets (``app/ranking/binned.py``);
    ``negative_rate`` < 1 keeps that share of the training rows' non-matches (pointwise only; the
    rate goes into the model's metadata, and every reader of its scores corrects them by it)."""
    import json

    from app.featurestore.progress import Progress
    from app.featurestore.registry import default_registry
    from app.ranking.features import all_feature_names, check_features, parse_entities
    from app.ranking.model import train_from_shards
    from app.ranking.sampling import RATE_KEY, check_rate

    registry, views = default_registry(), parse_entities(entities)
    names = [f.strip() for f in features.split(",") if f.strip()] or all_feature_names(registry, views)
    check_features(names, registry, views)
    params = json.loads(hyperparameters or "{}")
    rate = check_rate(negative_rate)
    # Progress on stderr: a bar on a terminal, a plain line every 10 s in the step's log (and on Vertex).
    binning = Progress(f"train {objective}: binning", unit="feature rows")
    boosting = Progress(f"train {objective}: boosting", unit="rounds")

    def rounds_done(done: int, most: int) -> None:
        if boosting.done == 0:
            binning.finish()
        boosting.total = most
        boosting.advance(done - boosting.done)

    booster, learnt = train_from_shards(
        objective, train.path, valid.path, names, params, rate, binning.advance, rounds_done
    )
    boosting.finish()
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
            # rows and matches the model learnt from (after negative sampling), and the rate
            "learnt_rows": learnt["rows"],
            "learnt_positives": learnt["positives"],
            RATE_KEY: rate,
        }
    )
