"""Open the offline store a URI names: a folder (Parquet) or ``bq://PROJECT.DATASET`` (BigQuery)."""

from __future__ import annotations

from pathlib import Path

from app.featurestore.offline import OfflineStore, ParquetOfflineStore
from app.featurestore.registry import Registry


def offline_store_from_uri(uri: str, registry: Registry) -> OfflineStore:
    if uri.startswith("bq://"):
        from google.cloud import bigquery

        from app.featurestore.bigquery_store import BigQueryOfflineStore

        project, _, dataset = uri.removeprefix("bq://").partition(".")
        if not project or not dataset:
            raise ValueError(f"offline store {uri!r}: expected bq://PROJECT.DATASET")
        return BigQueryOfflineStore(bigquery.Client(project=project), project, dataset, registry)
    path = Path(uri)
    if not path.is_dir():
        raise ValueError(f"offline store {uri!r}: no such folder")
    return ParquetOfflineStore(path, registry)
