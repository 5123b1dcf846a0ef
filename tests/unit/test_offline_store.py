"""The Parquet offline store and point-in-time joins (DuckDB on local files: no services needed)."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from app.featurestore.bigquery_store import bq_quote, create_table_ddl
from app.featurestore.events import FeatureRow, event_attributes, from_pubsub, process_event
from app.featurestore.offline import ParquetOfflineStore
from app.featurestore.offline_schema import arrow_schema, bigquery_schema
from app.featurestore.pit import FeatureView, JoinRequestError, plan_join, portable_pit_sql
from app.featurestore.registry import Registry
from app.featurestore.samples import activity_v1, profile_v1

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = datetime(2026, 4, 1, tzinfo=UTC)


def profile_row(registry: Registry, user: str, at: datetime, age: int) -> FeatureRow:
    msg = profile_v1(user, random.Random(hash((user, at)) % 1000), T0 - timedelta(days=100))
    msg.age = age
    row = process_event(
        from_pubsub(msg.SerializeToString(), event_attributes("user_profile", "v1", at), "m"), registry, NOW
    )
    assert isinstance(row, FeatureRow)
    return row


def activity_row(registry: Registry, user: str, at: datetime, likes: int) -> FeatureRow:
    msg = activity_v1(user, random.Random(1), at - timedelta(hours=1))
    msg.likes_sent_7d = likes
    row = process_event(
        from_pubsub(msg.SerializeToString(), event_attributes("user_activity", "v1", at), "m"), registry, NOW
    )
    assert isinstance(row, FeatureRow)
    return row


@pytest.fixture()
def store(tmp_path: Path, registry: Registry) -> ParquetOfflineStore:
    s = ParquetOfflineStore(tmp_path / "offline", registry)
    # Age changes over time: 30 on day 0, 31 on day 2 (written first: arrival order must not matter), 32 on day 5.
    s.write_rows([profile_row(registry, "a", T0 + timedelta(days=2), 31)])
    s.write_rows([profile_row(registry, "a", T0, 30), profile_row(registry, "b", T0 + timedelta(hours=1), 40)])
    s.write_rows([profile_row(registry, "a", T0 + timedelta(days=5), 32)])
    s.write_rows([activity_row(registry, "b", T0 + timedelta(days=1), 7), activity_row(registry, "a", T0, 3)])
    return s


IMPRESSIONS = pa.table(
    {
        "viewer_id": ["a", "a", "a", "b", "a", "c"],
        "candidate_id": ["b", "b", "b", "a", "b", "a"],
        "impression_time": [
            T0 - timedelta(hours=1),
            T0 + timedelta(days=1),
            T0 + timedelta(days=2),
            T0 + timedelta(days=3),
            T0 + timedelta(days=9),
            T0 + timedelta(days=1),
        ],
        "label": [0, 1, 0, 1, 0, 0],
    }
)
VIEWS = [
    FeatureView("user_profile", "v1", ("age", "photo_count")),
    FeatureView("user_activity", "v1", ("likes_sent_7d",)),
]


def test_files_are_partitioned_by_event_date(store: ParquetOfflineStore) -> None:
    parts = sorted(p.name for p in store.table_dir("user_profile", "v1").iterdir())
    assert parts == ["event_date=2026-03-01", "event_date=2026-03-03", "event_date=2026-03-06"]
    table = store.read_table("user_profile", "v1")
    assert table.num_rows == 4
    assert table.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert set(arrow_schema(store.registry.get("user_profile", "v1")).names) <= set(table.column_names)


def test_point_in_time_join_never_sees_a_later_value(store: ParquetOfflineStore) -> None:
    out = store.point_in_time_join(IMPRESSIONS, VIEWS).to_pylist()
    assert [r["viewer_age"] for r in out] == [None, 30, 31, 40, 32, None]
    assert [r["candidate_age"] for r in out] == [None, 40, 40, 31, 40, 30]
    assert [r["viewer_likes_sent_7d"] for r in out] == [None, 3, 3, 7, 3, None]
    assert [r["label"] for r in out] == IMPRESSIONS.column("label").to_pylist(), "rows keep their order and columns"
    for r in out:
        for side in ("viewer", "candidate"):
            used = r[f"{side}_user_profile_event_time"]
            assert used is None or used <= r["impression_time"]


def test_an_event_at_exactly_the_impression_time_is_visible(store: ParquetOfflineStore) -> None:
    imp = pa.table({"viewer_id": ["a"], "candidate_id": ["b"], "impression_time": [T0 + timedelta(days=2)]})
    assert store.point_in_time_join(imp, VIEWS).column("viewer_age").to_pylist() == [31]


KEY = ("viewer_id", "candidate_id", "impression_time")  # what identifies a row of IMPRESSIONS


def test_bigquery_sql_gives_the_same_answer_on_duckdb(store: ParquetOfflineStore, registry: Registry) -> None:
    """The BigQuery query is run as-is (but for quoting) on DuckDB and compared with the ASOF join;
    it returns rows in no particular order, so both sides are compared in key order."""
    expected = store.point_in_time_join(IMPRESSIONS, VIEWS).sort_by([(k, "ascending") for k in KEY])
    plan = plan_join(VIEWS, registry, IMPRESSIONS.column_names)
    with store.connect([(v.entity, v.version) for v in VIEWS]) as con:
        con.register("impressions", IMPRESSIONS)
        sql = portable_pit_sql(
            "impressions", lambda e, v: f'"{e}_{v}"', plan, IMPRESSIONS.column_names, lambda c: f'"{c}"', KEY
        )
        got = con.sql(sql).to_arrow_table().sort_by([(k, "ascending") for k in KEY])
    assert got.column_names == expected.column_names
    for name in expected.column_names:
        assert got.column(name).to_pylist() == expected.column(name).to_pylist(), name


def test_bigquery_sql_has_no_single_worker_construct_and_prunes_partitions(registry: Registry) -> None:
    plan = plan_join(VIEWS, registry, IMPRESSIONS.column_names)
    bounds = {"user_profile": ("2026-01-30T00:00:00+00:00", "2026-03-15T00:00:00+00:00")}
    bq = portable_pit_sql(
        "`p.d.imp`", lambda e, v: f"`p.d.{e}_{v}`", plan, IMPRESSIONS.column_names, bq_quote, KEY, bounds
    )
    assert "ASOF" not in bq and "OVER ()" not in bq.replace(" ", "").replace("OVER()", "OVER ()")
    windows = re.findall(r"OVER \(([^)]*)\)", bq)
    assert windows and all(
        w.startswith("PARTITION BY imp.`viewer_id`, imp.`candidate_id`, imp.`impression_time` ") for w in windows
    )
    assert bq.count("ORDER BY") == len(windows), "every ORDER BY orders inside a partition, none the result"
    sources = re.findall(r"LEFT JOIN (.*?) AS f\n", bq)
    assert len(sources) == 4, "one per side and view"
    lo, hi = "TIMESTAMP '2026-01-30 00:00:00'", "TIMESTAMP '2026-03-15 00:00:00'"
    pruned = f"(SELECT * FROM `p.d.user_profile_v1` WHERE event_time >= {lo} AND event_time < {hi})"
    assert sources.count(pruned) == 2, "the profile table is read only in [window start - TTL, window end)"
    assert sources.count("`p.d.user_activity_v1`") == 2, "a table without bounds is read whole"


def test_a_sql_row_key_must_be_impression_columns(registry: Registry) -> None:
    plan = plan_join(VIEWS, registry, IMPRESSIONS.column_names)
    with pytest.raises(JoinRequestError, match=r"row key column\(s\) \['session_id'\]"):
        portable_pit_sql("imp", lambda e, v: e, plan, IMPRESSIONS.column_names, bq_quote, ("session_id",))


def test_bounds_prune_the_local_store_the_same_way(store: ParquetOfflineStore) -> None:
    """Local reads honour the same [lo, hi) bounds: an event before lo is not seen."""
    imp = pa.table({"viewer_id": ["a"], "candidate_id": ["b"], "impression_time": [T0 + timedelta(days=3)]})
    bounds = {"user_profile": ((T0 + timedelta(days=1)).isoformat(), (T0 + timedelta(days=4)).isoformat())}
    with store.connect([(v.entity, v.version) for v in VIEWS], bounds) as con:
        con.register("imp", imp)
        got = con.sql(store.pit_select("imp", imp.column_names, VIEWS)).to_arrow_table()
    assert got.column("viewer_age").to_pylist() == [31] and got.column("candidate_age").to_pylist() == [None]


def test_join_with_no_data_yet_returns_nulls(tmp_path: Path, registry: Registry) -> None:
    empty = ParquetOfflineStore(tmp_path / "none", registry)
    out = empty.point_in_time_join(IMPRESSIONS, VIEWS)
    assert out.num_rows == IMPRESSIONS.num_rows and set(out.column("viewer_age").to_pylist()) == {None}


def test_unknown_feature_is_named_with_the_known_ones(store: ParquetOfflineStore) -> None:
    with pytest.raises(JoinRequestError, match=r"unknown feature\(s\) \['height'\] of user_profile v1 \(known: age, "):
        store.point_in_time_join(IMPRESSIONS, [FeatureView("user_profile", "v1", ("height",))])


def test_impressions_need_ids_and_time(store: ParquetOfflineStore) -> None:
    with pytest.raises(JoinRequestError, match="impressions lack column"):
        store.point_in_time_join(IMPRESSIONS.drop_columns(["impression_time"]), VIEWS)


def test_same_feature_from_two_entities_is_refused(registry: Registry) -> None:
    views = [FeatureView("user_profile", "v1", ("age",)), FeatureView("user_profile", "v2", ("age",))]
    with pytest.raises(JoinRequestError, match="'age' is in both"):
        plan_join(views, registry, ["viewer_id", "candidate_id", "impression_time"])


def test_bigquery_schema_and_ddl(registry: Registry) -> None:
    schema = bigquery_schema(registry.get("user_activity", "v1"))
    by_name = {c["name"]: c for c in schema}
    assert by_name["entity_id"] == {"name": "entity_id", "type": "STRING", "mode": "REQUIRED"}
    assert by_name["event_time"]["type"] == "TIMESTAMP" and by_name["likes_sent_7d"]["type"] == "INT64"
    assert by_name["reply_rate"]["type"] == "FLOAT64" and by_name["payload"]["type"] == "BYTES"
    ddl = create_table_ddl("p", "d", "user_activity_v1", schema, 400)
    assert "PARTITION BY DATE(event_time)" in ddl and "partition_expiration_days = 400" in ddl
