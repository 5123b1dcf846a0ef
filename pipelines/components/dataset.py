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
) -> str:
    """Read the impressions (docs/specs/impressions.md: bad rows are set aside with their reason in
    ``rejected``), join those in [window_start, window_end) (without a start and with
    ``window_days``: the ``window_days`` whole days up to the newest impression) with both sides'
    features as of each impression; the last ``test_days`` days are the test set, the ``valid_days`` before them
    validation. Returns the windows and the rejected counts as JSON."""
    import json
    from datetime import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from app.featurestore.registry import default_registry
    from app.featurestore.stores import offline_store_from_uri
    from app.ranking.dataset import join_features, known_rows, last_days, select_window, split, time_windows
    from app.ranking.features import parse_entities
    from app.ranking.impressions import read_impressions

    def when(text: str) -> datetime | None:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None

    registry, views = default_registry(), parse_entities(entities)
    read = read_impressions(impressions_uri)
    end = when(window_end)
    start = when(window_start) or (last_days(read.table, window_days, end) if window_days else None)
    impressions = select_window(read.table, start, end)
    windows = time_windows(impressions, valid_days, test_days)
    joined, unknown = known_rows(
        join_features(offline_store_from_uri(offline_uri, registry), impressions, registry, views), registry, views
    )
    set_aside = pa.concat_tables([read.rejected, unknown.select(read.rejected.column_names).cast(read.rejected.schema)])
    pq.write_table(set_aside, rejected.path)
    reasons = set_aside.column("reason").to_pylist()
    counts = {r: reasons.count(r) for r in sorted(set(reasons))}
    rejected.metadata.update({"rows": set_aside.num_rows, "reasons": counts})
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
    return json.dumps({**windows.as_dict(), "impression_files": read.files, "rejected": counts})
