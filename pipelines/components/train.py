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
    import time

    from app.featurestore.registry import default_registry
    from app.ranking.features import all_feature_names, check_features, parse_entities
    from app.ranking.model import train_from_shards
    from app.ranking.sampling import RATE_KEY, check_rate

    registry, views = default_registry(), parse_entities(entities)
    names = [f.strip() for f in features.split(",") if f.strip()] or all_feature_names(registry, views)
    check_features(names, registry, views)
    params = json.loads(hyperparameters or "{}")
    rate = check_rate(negative_rate)
    started, read, said = time.monotonic(), [0], [0.0]

    def rows_read(n: int) -> None:  # plain progress lines: the step's log locally and on Vertex
        read[0] += n
        now = time.monotonic() - started
        if now - said[0] >= 10:
            said[0] = now
            print(f"train {objective}: {read[0]:,} feature rows binned ({read[0] / now:,.0f} rows/s)", flush=True)

    def rounds_done(done: int, most: int) -> None:
        if done % 25 == 0:
            print(f"train {objective}: boosting round {done} of at most {most}", flush=True)

    booster, learnt = train_from_shards(objective, train.path, valid.path, names, params, rate, rows_read, rounds_done)
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
