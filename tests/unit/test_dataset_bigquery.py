"""The dataset step's BigQuery statements (no BigQuery here: a recording store answers the counts).
What is checked is the text BigQuery would run: loaded from Cloud Storage, no single-worker
construct, partitions pruned, one ordered export per session bucket."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.featurestore.registry import Registry
from app.ranking.dataset import DatasetError, DatasetRequest, build_dataset_bigquery, gcs_uri

T0 = datetime(2026, 3, 1, tzinfo=UTC)
ENTITIES = (("user_profile", "v1"), ("user_activity", "v1"))
OUT = {n: f"gs://b/run/{n}" for n in ("train", "valid", "test")}


class RecordingStore:
    """The BigQueryOfflineStore methods the build calls, answering from canned figures."""

    project, dataset = "p", "d"

    def __init__(self) -> None:
        self.scripts: list[str] = []
        self.loaded: list[str] = []
        self.client = self
        self.deleted: list[str] = []

    def table_id(self, entity: str, version: str) -> str:
        return f"p.d.{entity}_{version}"

    def scratch_table(self, what: str) -> str:
        return f"p.d._{what}_x"

    def load_parquet(self, uri: str, table: str, schema: list[dict[str, str]]) -> int:
        self.loaded.append(uri)
        return 14

    def delete_table(self, table: str, not_found_ok: bool = False) -> None:
        self.deleted.append(table)

    def exported_sizes(self, prefixes: dict[str, str]) -> dict[str, tuple[int, int]]:
        return {n: (1000, 2) for n in prefixes}

    def run_script(self, sql: str) -> list[tuple[Any, ...]]:
        self.scripts.append(sql)
        if sql.startswith("SELECT COUNT(*)"):
            return [(1000,)]
        if sql.startswith("SELECT MAX(impression_time)"):
            return [(T0 + timedelta(days=13, hours=5),)]
        if sql.startswith("SELECT MIN(impression_time)"):
            return [(T0 + timedelta(hours=9), T0 + timedelta(days=13, hours=5))]
        if sql.startswith("SELECT __split"):
            return [("train", 800, 40, 80), ("valid", 100, 5, 10), ("test", 100, 6, 10)]
        if sql.startswith("SELECT reason"):
            return [("unknown_id", 3), ("duplicate", 2)]
        return []


def test_the_bigquery_build_loads_from_storage_and_exports_ordered_buckets(registry: Registry) -> None:
    store = RecordingStore()
    req = DatasetRequest(
        "/gcs/b/impressions", ENTITIES, 2, 2, window_days=14, ttl_days={"user_profile": 30}, shard_rows=300
    )
    built = build_dataset_bigquery(store, req, OUT, "gs://b/run/rejected", registry)
    assert store.loaded == ["gs://b/impressions"] and built.files == 14, "the mounted path read as its gs:// URI"
    assert built.rejected == {"duplicate": 2, "unknown_id": 3}
    assert built.splits["train"].metadata() == {
        "rows": 800,
        "columns": built.splits["train"].columns,
        "bytes": 1000,
        "shards": 2,
        "positives": 40,
        "sessions": 80,
    }
    text = "\n".join(store.scripts)
    assert "OVER ()" not in text and "ROW_NUMBER() OVER (PARTITION BY" in text
    # Every ORDER BY is inside a partitioned window or inside one bucket's export.
    for m in re.finditer(r"ORDER BY", text):
        before = text[: m.start()]
        in_window = before.rfind("OVER (PARTITION BY") > before.rfind(")")
        in_bucket_export = (
            before.rfind("EXPORT DATA") > before.rfind(";") and "__bucket = %d" in before[before.rfind("EXPORT DATA") :]
        )
        assert in_window or in_bucket_export, text[m.start() - 200 : m.start() + 40]
    assert (
        "RANGE_BUCKET(__bucket" in text
        and "MOD(ABS(FARM_FINGERPRINT(session_id)), CASE __split WHEN 'train' THEN 3" in text
    )
    assert "uri = '%s/part-%05d-*.parquet'" in text and "WHEN 'train' THEN 'gs://b/run/train'" in text
    lo, hi = "TIMESTAMP '2026-01-30 00:00:00'", "TIMESTAMP '2026-03-15 00:00:00'"  # window from 03-01, TTL 30 d
    assert f"(SELECT * FROM `p.d.user_profile_v1` WHERE event_time >= {lo} AND event_time < {hi})" in text
    assert "`p.d.user_activity_v1` AS f" in text, "no TTL given for activity: read whole"
    assert set(store.deleted) == {"p.d._impressions_x", "p.d._checked_x", "p.d._joined_x", "p.d._shards_x"}


def test_bigquery_outputs_must_be_on_cloud_storage() -> None:
    assert gcs_uri("/gcs/bucket/root/train") == "gs://bucket/root/train"
    with pytest.raises(DatasetError, match="exports to Cloud Storage"):
        gcs_uri("/tmp/train")
