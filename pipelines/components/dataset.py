"""Component: point-in-time training data from contract impressions and the offline store, split by time."""

from kfp.dsl import Dataset, Output


def make_dataset(
    offline_uri: str,
    impressions_uri: str,
    window_start: str,
    window_end: str,
    valid_days: int,
    test_days: int,
    entities: str,
    train: Output[Dataset],
    valid: Output[Dataset],
    test: Output[Dataset],
    rejected: Output[Dataset],
    window_days: int = 0,
    entity_ttl_days: str = "",
    memory_limit: str = "",
) -> str:
    """Read the impressions (docs/specs/impressions.md: bad rows are set aside with their reason in
    ``rejected``), join those in [window_start, window_end) (without a start and with
    ``window_days``: the ``window_days`` whole days up to the newest impression) with both sides'
    features as of each impression; the last ``test_days`` days are the test set, the ``valid_days`` before them
    validation. All of it runs in the engine (DuckDB out of core here, BigQuery for a ``bq://``
    store): each split is a folder of Parquet shards, every session's rows in one shard. Its
    metadata has rows, columns, bytes, shards, positives and sessions. ``entity_ttl_days`` (JSON,
    entity -> days) limits the feature rows read to [window start - TTL, window end);
    ``memory_limit`` is the engine's (default: half the step's memory). Returns the windows, the
    rejected counts and each split's size as JSON."""
    import json
    import tempfile
    from datetime import datetime
    from pathlib import Path

    from app.featurestore.engine import EngineLimits, memory_budget
    from app.featurestore.registry import default_registry
    from app.featurestore.stores import offline_store_from_uri
    from app.ranking.dataset import DatasetRequest, build_dataset
    from app.ranking.features import parse_entities

    def when(text: str) -> datetime | None:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None

    registry = default_registry()
    req = DatasetRequest(
        impressions_uri=impressions_uri,
        entities=parse_entities(entities),
        valid_days=valid_days,
        test_days=test_days,
        window_start=when(window_start),
        window_end=when(window_end),
        window_days=window_days,
        ttl_days=json.loads(entity_ttl_days) if entity_ttl_days else None,
    )
    outputs = {"train": train, "valid": valid, "test": test}
    with tempfile.TemporaryDirectory(prefix="rerank-dataset-") as work:
        built = build_dataset(
            offline_store_from_uri(offline_uri, registry),
            req,
            {name: Path(a.path) for name, a in outputs.items()},
            Path(rejected.path),
            EngineLimits(Path(work), memory_limit or memory_budget()),
            registry,
        )
    rejected.metadata.update({"rows": sum(built.rejected.values()), "reasons": built.rejected})
    for name, artifact in outputs.items():
        artifact.metadata.update({**built.splits[name].metadata(), "split": name, **built.windows.as_dict()})
    sizes = {name: built.splits[name].metadata() for name in outputs}
    return json.dumps({**built.summary(), "splits": sizes, "seconds": built.seconds})
