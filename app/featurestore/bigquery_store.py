"""The cloud offline store: BigQuery tables ``<dataset>.<entity>_<version>``, partitioned by event date.

Same interface as the Parquet store. The streaming ingest job writes with Beam's BigQuery sink
(``WriteOfflineBigQuery``); this class serves training reads and small direct writes. Its join
is ``portable_pit_sql``, the query the tests run on DuckDB against the ASOF join. Nothing here
can be exercised against BigQuery on this machine (no emulator fits); see the issue notes.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from app.featurestore.beam_transforms import bigquery_row
from app.featurestore.events import FeatureRow
from app.featurestore.offline import OfflineStore
from app.featurestore.offline_schema import bigquery_schema
from app.featurestore.pit import FeatureView, plan_join, portable_pit_sql
from app.featurestore.registry import Registry
from app.naming import Names


def bq_quote(name: str) -> str:
    return f"`{name}`"


def create_table_ddl(
    project: str,
    dataset: str,
    spec_table: str,
    schema: list[dict[str, Any]],
    partition_expiration_days: int | None = None,
) -> str:
    """DDL equivalent of the table the Pulumi program creates (for `bq query` and reviews)."""
    cols = ",\n  ".join(f"{c['name']} {c['type']}{' NOT NULL' if c['mode'] == 'REQUIRED' else ''}" for c in schema)
    options = (
        f"\nOPTIONS (partition_expiration_days = {partition_expiration_days})" if partition_expiration_days else ""
    )
    return (
        f"CREATE TABLE IF NOT EXISTS `{project}.{dataset}.{spec_table}` (\n  {cols}\n)\n"
        f"PARTITION BY DATE(event_time)\nCLUSTER BY entity_id{options}"
    )


class BigQueryOfflineStore(OfflineStore):
    def __init__(self, client: Any, project: str, dataset: str, registry: Registry) -> None:
        """``client`` is a ``google.cloud.bigquery.Client``."""
        self.client, self.project, self.dataset, self.registry = client, project, dataset, registry

    def table_id(self, entity: str, version: str) -> str:
        return f"{self.project}.{self.dataset}.{Names.offline_table(entity, version)}"

    def write_rows(self, rows: Sequence[FeatureRow], ingest_time: datetime | None = None) -> int:
        ingest_time = ingest_time or datetime.now(UTC)
        by_table: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_table.setdefault(self.table_id(row.entity, row.version), []).append(bigquery_row(row, ingest_time))
        for table, records in by_table.items():
            errors = self.client.insert_rows_json(table, records)
            if errors:
                raise RuntimeError(f"BigQuery refused rows for {table}: {errors[:3]}")
        return len(rows)

    def read_table(self, entity: str, version: str) -> pa.Table:
        self.registry.get(entity, version)
        sql = f"SELECT * FROM `{self.table_id(entity, version)}` ORDER BY event_time, entity_id"
        return self.client.query(sql).to_arrow()

    def point_in_time_join(self, impressions: pa.Table, views: Sequence[FeatureView]) -> pa.Table:
        """A small table's join (drift checks): the table is loaded from Arrow, never through pandas.
        Training data never comes through here: see ``load_parquet`` and ``run_script``."""
        from google.cloud import bigquery

        plan = plan_join(views, self.registry, impressions.column_names)
        keyed = impressions.append_column("__row", pa.array(range(impressions.num_rows), pa.int64()))
        staging = self.scratch_table("impressions")
        buf = pa.BufferOutputStream()
        pq.write_table(keyed, buf)
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET)
        self.client.load_table_from_file(io.BytesIO(buf.getvalue().to_pybytes()), staging, job_config=config).result()
        try:
            sql = portable_pit_sql(
                f"`{staging}`",
                lambda e, v: f"`{self.table_id(e, v)}`",
                plan,
                keyed.column_names,
                bq_quote,
                ("__row",),
            )
            # The caller's order back: a small table's, sorted here rather than in BigQuery.
            out = self.client.query(sql).to_arrow().sort_by("__row")
            return out.drop_columns(["__row"])
        finally:
            self.client.delete_table(staging, not_found_ok=True)

    def scratch_table(self, what: str) -> str:
        return f"{self.project}.{self.dataset}._{what}_{uuid.uuid4().hex[:12]}"

    def load_parquet(self, uri: str, table: str, schema: list[dict[str, str]]) -> int:
        """A load job from Cloud Storage (``gs://.../*.parquet``) into ``table``: the files go from
        storage to BigQuery directly, never through this process."""
        from google.cloud import bigquery

        if not uri.startswith("gs://"):
            raise ValueError(f"{uri}: BigQuery loads impressions from Cloud Storage (gs://...)")
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            schema=[bigquery.SchemaField(f["name"], f["type"], mode="NULLABLE") for f in schema],
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        )
        job = self.client.load_table_from_uri(uri.rstrip("/") + "/*.parquet", table, job_config=config)
        job.result()
        return int(job.input_files or 0)

    def exported_sizes(self, prefixes: dict[str, str]) -> dict[str, tuple[int, int]]:
        """(bytes, files) of the ``part-*.parquet`` objects under each ``gs://`` prefix."""
        from google.cloud import storage

        gcs = storage.Client(project=self.project)
        sizes = {}
        for name, uri in prefixes.items():
            bucket, _, prefix = uri.removeprefix("gs://").partition("/")
            blobs = [b for b in gcs.list_blobs(bucket, prefix=prefix.rstrip("/") + "/part-")]
            sizes[name] = (sum(int(b.size or 0) for b in blobs), len(blobs))
        return sizes

    def run_script(self, sql: str) -> list[tuple[Any, ...]]:
        """A query or multi-statement script; the rows of its last statement (small results only)."""
        return [tuple(row.values()) for row in self.client.query(sql).result()]


def bigquery_tables(registry: Registry) -> dict[str, list[dict[str, Any]]]:
    """Table name -> BigQuery schema for every entity version: what the Pulumi program creates."""
    return {Names.offline_table(s.entity, s.version): bigquery_schema(s) for s in registry.specs()}
