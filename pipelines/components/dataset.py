"""Component: point-in-time training data from the offline store, split by time."""

from kfp.dsl import Dataset, Output


def make_dataset(
    offline_uri: str,
    impressions_uri: str,
    window_start: str,
    window_end: str,
    valid_days: int,
    test_days: int,
    train: Output[Dataset],
    valid: Output[Dataset],
    test: Output[Dataset],
) -> str:
    """Join impressions in [window_start, window_end) with both sides' features as of each impression;
    the last ``test_days`` days are the test set, the ``valid_days`` before them validation. Returns
    the windows as JSON."""
    import json
    from datetime import datetime

    import pyarrow.parquet as pq

    from app.featurestore.registry import default_registry
    from app.featurestore.stores import offline_store_from_uri
    from app.ranking.dataset import join_features, select_window, split, time_windows

    def when(text: str) -> datetime | None:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None

    registry = default_registry()
    impressions = select_window(pq.read_table(impressions_uri), when(window_start), when(window_end))
    windows = time_windows(impressions, valid_days, test_days)
    joined = join_features(offline_store_from_uri(offline_uri, registry), impressions, registry)
    for name, part in split(joined, windows).items():
        artifact = {"train": train, "valid": valid, "test": test}[name]
        pq.write_table(part, artifact.path)
        artifact.metadata.update(
            {
                "rows": part.num_rows,
                "split": name,
                **windows.as_dict(),
                "sessions": len(set(part.column("session_id").to_pylist())),
            }
        )
    return json.dumps(windows.as_dict())
