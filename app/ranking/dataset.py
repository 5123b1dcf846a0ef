"""Training data: contract impressions joined point-in-time with both sides' features, split by time."""

from __future__ import annotations

import shutil
import time
from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.featurestore.engine import EngineLimits
from app.featurestore.offline import OfflineStore, ParquetOfflineStore
from app.featurestore.pit import event_time_column, sql_timestamp
from app.featurestore.progress import Progress, finished
from app.featurestore.registry import Registry
from app.ranking.features import Entities, feature_views, identity_view
from app.ranking.impressions import COLUMNS, DUCKDB, FILE_ORDER, checked_files, checked_sql

LABEL = "match"
GROUP = "session_id"
BASELINE_LABEL = "viewer_like"
REQUIRED = tuple(c.name for c in COLUMNS if c.required)


class DatasetError(ValueError):
    pass


@dataclass(frozen=True)
class Windows:
    """Half-open time windows [start, train_end), [train_end, valid_end), [valid_end, end)."""

    start: datetime
    train_end: datetime
    valid_end: datetime
    end: datetime

    def parts(self) -> tuple[tuple[str, datetime, datetime], ...]:
        """(split, its start, its end) for train, valid and test."""
        return (
            ("train", self.start, self.train_end),
            ("valid", self.train_end, self.valid_end),
            ("test", self.valid_end, self.end),
        )

    def require(self, present: Container[str]) -> None:
        """Every split has impressions, or one line naming the empty window."""
        for name, lo, hi in self.parts():
            if name not in present:
                raise DatasetError(f"the {name} window [{lo}, {hi}) has no impressions")

    def as_dict(self) -> dict[str, str]:
        return {k: getattr(self, k).isoformat() for k in ("start", "train_end", "valid_end", "end")}


def _day(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def windows_between(first_time: datetime, last_time: datetime, valid_days: int, test_days: int) -> Windows:
    """The windows over impressions from ``first_time`` to ``last_time`` (both inclusive): the last
    ``test_days`` whole days for test, the ``valid_days`` before them for validation."""
    first, last = _day(first_time), _day(last_time) + timedelta(days=1)
    valid_end = last - timedelta(days=test_days)
    train_end = valid_end - timedelta(days=valid_days)
    if train_end <= first:
        span = (last - first).days
        raise DatasetError(
            f"{span} day(s) of impressions leave no training days after {valid_days} valid and {test_days} test day(s)"
        )
    return Windows(first, train_end, valid_end, last)


def time_windows(impressions: pa.Table, valid_days: int, test_days: int) -> Windows:
    """``windows_between`` the table's first and last impression."""
    if impressions.num_rows == 0:
        raise DatasetError("there are no impressions in the requested window")
    t = impressions.column("impression_time")
    return windows_between(pc.min(t).as_py(), pc.max(t).as_py(), valid_days, test_days)


def days_up_to(newest: datetime | None, days: int, end: datetime | None = None) -> datetime:
    """The start of the ``days`` whole days that end with ``newest``, the newest impression before ``end``."""
    if newest is None:
        raise DatasetError(f"no impressions before {end}")
    return _day(newest) + timedelta(days=1) - timedelta(days=days)


def last_days(impressions: pa.Table, days: int, end: datetime | None = None) -> datetime:
    """The start of the ``days`` whole days that end with the newest impression before ``end``."""
    t = impressions.column("impression_time")
    if end is not None:
        t = pc.filter(t, pc.less(t, pa.scalar(end, t.type)))
    return days_up_to(pc.max(t).as_py(), days, end)


def select_window(impressions: pa.Table, start: datetime | None, end: datetime | None) -> pa.Table:
    missing = [c for c in REQUIRED if c not in impressions.column_names]
    if missing:
        raise DatasetError(f"impressions lack column(s) {missing}")
    t = impressions.column("impression_time")
    mask = pc.and_(
        pc.greater_equal(t, pa.scalar(start or datetime.min.replace(tzinfo=UTC), t.type)),
        pc.less(t, pa.scalar(end or datetime.max.replace(tzinfo=UTC), t.type)),
    )
    chosen = impressions.filter(mask)
    if chosen.num_rows == 0:
        raise DatasetError(f"no impressions between {start} and {end}")
    return chosen


def join_features(store: OfflineStore, impressions: pa.Table, registry: Registry, entities: Entities) -> pa.Table:
    return store.point_in_time_join(impressions, feature_views(registry, entities))


def known_rows(joined: pa.Table, registry: Registry, entities: Entities) -> tuple[pa.Table, pa.Table]:
    """(rows whose viewer and candidate the feature store knew at the impression, the rest with
    reason ``unknown_id``): a pair with no profile on either side has nothing to learn from."""
    view = identity_view(registry, entities)
    known = pc.and_(
        pc.is_valid(joined.column(event_time_column("viewer", view))),
        pc.is_valid(joined.column(event_time_column("candidate", view))),
    )
    unknown = joined.filter(pc.invert(known))
    return joined.filter(known), unknown.append_column(
        "reason", pa.array(["unknown_id"] * unknown.num_rows, pa.string())
    )


def split(joined: pa.Table, w: Windows) -> dict[str, pa.Table]:
    t = joined.column("impression_time")
    parts = {}
    for name, lo, hi in w.parts():
        part = joined.filter(pc.and_(pc.greater_equal(t, pa.scalar(lo, t.type)), pc.less(t, pa.scalar(hi, t.type))))
        if part.num_rows == 0:
            raise DatasetError(f"the {name} window [{lo}, {hi}) has no impressions")
        parts[name] = part
    return parts


def columns(table: pa.Table) -> dict[str, np.ndarray]:
    """Numeric columns as float arrays (nulls as NaN), others as they are; the session id becomes an
    integer code in order of first appearance (rows of a session stay together and codes ascend,
    as LambdaRank's groups and the per-session metrics need)."""
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name)
        if name == GROUP and not pa.types.is_integer(col.type):
            out[name] = pc.dictionary_encode(col).combine_chunks().indices.to_numpy().astype(np.float64)
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
            out[name] = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


# ---- The dataset in the engine: any number of impressions, bounded memory, sharded Parquet out ----

SPLITS = ("train", "valid", "test")
SHARD_ROWS = 500_000  # rows per shard, about: a shard is what a reader holds at once
SHARD_ORDER = ("session_id", "position", "candidate_id")  # inside a shard: sessions together, in shown order


@dataclass(frozen=True)
class DatasetRequest:
    impressions_uri: str
    entities: Entities
    valid_days: int
    test_days: int
    window_start: datetime | None = None
    window_end: datetime | None = None
    window_days: int = 0  # without a start: the whole days up to the newest impression before the end
    ttl_days: dict[str, int] | None = None  # per entity: feature rows older than window start - TTL are not read
    shard_rows: int = SHARD_ROWS


@dataclass(frozen=True)
class SplitFiles:
    """One split as written: a folder of ``part-*.parquet`` shards, rows of a session in one shard."""

    path: str
    rows: int
    columns: int
    bytes: int
    shards: int
    positives: int  # rows with label ``match``
    sessions: int

    def metadata(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("rows", "columns", "bytes", "shards", "positives", "sessions")}


@dataclass(frozen=True)
class DatasetBuilt:
    windows: Windows
    files: int
    rejected: dict[str, int]  # reason -> rows set aside (contract problems, duplicates, unknown_id)
    splits: dict[str, SplitFiles]
    seconds: dict[str, float]  # per stage

    def summary(self) -> dict[str, object]:
        return {
            **self.windows.as_dict(),
            "impression_files": self.files,
            "rejected": self.rejected,
            **{f"{name}_rows": part.rows for name, part in self.splits.items()},
        }


def _when(con: Any, sql: str) -> datetime | None:
    value = con.execute(sql).fetchone()[0]
    return value.astimezone(UTC) if value is not None else None


def bounds_for(windows: Windows, entities: Entities, ttl_days: dict[str, int] | None) -> dict[str, tuple[str, str]]:
    """Per entity with a TTL, the feature rows a window can see: [window start - TTL, window end)."""
    return {
        e: ((windows.start - timedelta(days=ttl_days[e])).isoformat(), windows.end.isoformat())
        for e, _ in entities
        if ttl_days and e in ttl_days
    }


def split_case(w: Windows, column: str = "impression_time") -> str:
    """SQL naming each row's split by time (both engines)."""
    t = {k: sql_timestamp(v) for k, v in w.as_dict().items()}
    return (
        f"CASE WHEN {column} < {t['train_end']} THEN 'train' "
        f"WHEN {column} < {t['valid_end']} THEN 'valid' ELSE 'test' END"
    )


def _write_shards(con: Any, staged: Path, out: Path, order: str, progress: Progress) -> tuple[int, int]:
    """Each staged bucket (``__bucket=N/``) sorted by ``order`` into ``out/part-NNNNN.parquet``."""
    out.mkdir(parents=True, exist_ok=True)
    shards, size = 0, 0
    buckets = sorted(staged.glob("__bucket=*"), key=lambda p: int(p.name.split("=")[1])) if staged.exists() else []
    for bucket in buckets:
        target = out / f"part-{shards:05d}.parquet"
        glob = str(bucket / "*.parquet")
        con.execute(
            f"COPY (SELECT * FROM read_parquet('{glob}', hive_partitioning = false) ORDER BY {order}) "
            f"TO '{target}' (FORMAT PARQUET, COMPRESSION zstd, ROW_GROUP_SIZE 100000)"
        )
        progress.advance(con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()[0])
        shards, size = shards + 1, size + target.stat().st_size
    return shards, size


def build_dataset(
    store: OfflineStore,
    req: DatasetRequest,
    out: dict[str, Path],
    rejected_path: Path,
    engine: EngineLimits,
    registry: Registry,
) -> DatasetBuilt:
    """The training data in DuckDB, out of core: impressions checked (bad rows and duplicates set
    aside by reason), the window chosen, joined point-in-time with both sides' features, rows whose
    ids the store did not know set aside (``unknown_id``), split by time, each split written to
    ``out[split]`` as shards, the rows set aside to ``rejected_path`` (a folder too). Peak memory is
    the engine's limit, whatever the number of rows. A BigQuery store does the same in BigQuery
    (``build_dataset_bigquery``)."""
    if not isinstance(store, ParquetOfflineStore):
        return build_dataset_bigquery(
            store, req, {k: gcs_uri(v) for k, v in out.items()}, gcs_uri(rejected_path), registry
        )
    seconds: dict[str, float] = {}
    files, source, present = checked_files(req.impressions_uri)
    views = feature_views(registry, req.entities)
    names = ", ".join(f'"{c.name}"' for c in COLUMNS)
    with store.connect([], engine=engine) as con:
        t = time.perf_counter()
        con.execute(f"CREATE OR REPLACE TABLE checked AS {checked_sql(source, present, DUCKDB, FILE_ORDER)}")
        total = con.execute("SELECT count(*) FROM checked").fetchone()[0]
        seconds["check"] = time.perf_counter() - t
        finished("impressions checked", total, seconds["check"])

        end = req.window_end
        start = req.window_start
        if start is None and req.window_days:
            before = f" AND impression_time < {sql_timestamp(end.isoformat())}" if end else ""
            newest = _when(con, f"SELECT max(impression_time) FROM checked WHERE reason IS NULL{before}")
            start = days_up_to(newest, req.window_days, end)
        inside = " AND ".join(
            ["reason IS NULL"]
            + ([f"impression_time >= {sql_timestamp(start.isoformat())}"] if start else [])
            + ([f"impression_time < {sql_timestamp(end.isoformat())}"] if end else [])
        )
        first, last = con.execute(
            f"SELECT min(impression_time), max(impression_time) FROM checked WHERE {inside}"
        ).fetchone()
        if first is None:
            raise DatasetError(f"no impressions between {start} and {end}")
        windows = windows_between(first.astimezone(UTC), last.astimezone(UTC), req.valid_days, req.test_days)

        t = time.perf_counter()
        store.attach(con, [(v.entity, v.version) for v in views], bounds_for(windows, req.entities, req.ttl_days))
        con.execute(f"CREATE OR REPLACE VIEW chosen AS SELECT {names} FROM checked WHERE {inside}")
        identity = identity_view(registry, req.entities)
        known = " AND ".join(f'"{event_time_column(side, identity)}" IS NOT NULL' for side in ("viewer", "candidate"))
        select = store.pit_select("chosen", [c.name for c in COLUMNS], views)
        con.execute(
            f"CREATE OR REPLACE TABLE joined AS SELECT *, {split_case(windows)} AS __split, {known} AS __known "
            f"FROM ({select}) AS j"
        )
        seconds["join"] = time.perf_counter() - t
        joined_rows = con.execute("SELECT count(*) FROM joined").fetchone()[0]
        finished("impressions joined point-in-time", joined_rows, seconds["join"])

        rejected_path.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"COPY (SELECT {names}, reason FROM checked WHERE reason IS NOT NULL "
            f"UNION ALL SELECT {names}, 'unknown_id' AS reason FROM joined WHERE NOT __known) "
            f"TO '{rejected_path / 'part-00000.parquet'}' (FORMAT PARQUET)"
        )
        rejected = dict(
            sorted(
                con.execute(
                    f"SELECT reason, count(*) FROM read_parquet('{rejected_path}/*.parquet') GROUP BY reason"
                ).fetchall()
            )
        )

        stats = {
            row[0]: row[1:]
            for row in con.execute(
                "SELECT __split, count(*), count(*) FILTER (WHERE match), count(DISTINCT session_id) "
                "FROM joined WHERE __known GROUP BY __split"
            ).fetchall()
        }
        windows.require(stats)

        t = time.perf_counter()
        buckets = {name: max(1, -(-stats[name][0] // req.shard_rows)) for name in SPLITS}
        per_split = " ".join(f"WHEN '{n}' THEN {b}" for n, b in buckets.items())
        staged = engine.work_dir / "staged"
        shutil.rmtree(staged, ignore_errors=True)
        # One pass puts each session in a bucket of its split (a hash of its id); each bucket is then
        # sorted on its own, so no sort is bigger than a shard.
        con.execute(
            f"COPY (SELECT * EXCLUDE (__known), hash(session_id) % (CASE __split {per_split} END) AS __bucket "
            f"FROM joined WHERE __known) TO '{staged}' (FORMAT PARQUET, PARTITION_BY (__split, __bucket))"
        )
        splits = {}
        width = len(con.sql("SELECT * EXCLUDE (__split, __known) FROM joined LIMIT 0").columns)
        with Progress("dataset shards", sum(s[0] for s in stats.values())) as progress:
            for name in SPLITS:
                shards, size = _write_shards(
                    con, staged / f"__split={name}", out[name], ", ".join(SHARD_ORDER), progress
                )
                rows, positives, sessions = stats[name]
                splits[name] = SplitFiles(str(out[name]), rows, width, size, shards, positives, sessions)
        shutil.rmtree(staged, ignore_errors=True)
        seconds["shards"] = time.perf_counter() - t
    return DatasetBuilt(windows, len(files), rejected, splits, {k: round(v, 2) for k, v in seconds.items()})


def gcs_uri(path: Path | str) -> str:
    """The ``gs://`` URI of a Vertex artifact path (Cloud Storage is mounted at ``/gcs/``)."""
    text = str(path)
    if text.startswith("gs://"):
        return text
    if text.startswith("/gcs/"):
        return "gs://" + text.removeprefix("/gcs/")
    raise DatasetError(f"{text}: a BigQuery offline store exports to Cloud Storage; this output is not on it")


MAX_BUCKETS = 3999  # BigQuery's partitions per table (4,000) bound the shards per split


def _bq_scalar(store: Any, sql: str) -> Any:
    rows = store.run_script(sql)
    return rows[0] if rows else None


def build_dataset_bigquery(
    store: Any, req: DatasetRequest, out: dict[str, str], rejected_uri: str, registry: Registry
) -> DatasetBuilt:
    """``build_dataset`` in BigQuery (``store`` a ``BigQueryOfflineStore``): the impressions loaded
    from their Cloud Storage files by a load job, checked, joined with ``portable_pit_sql`` (feature
    partitions pruned to the window's bounds) and exported to Cloud Storage with ``EXPORT DATA``.
    Nothing passes through this process but counts. Sessions stay in one file: the joined rows are
    put in buckets by a fingerprint of ``session_id`` (an integer-range partition each), and every
    bucket is exported on its own, ordered inside it, as one ``part-<bucket>-*.parquet`` shard; no
    statement orders or numbers the whole result."""
    from app.featurestore.bigquery_store import bq_quote
    from app.featurestore.pit import plan_join, portable_pit_sql
    from app.ranking.impressions import BIGQUERY, KEY, bigquery_schema

    t0 = time.perf_counter()
    staging, checked, joined, shards = (store.scratch_table(w) for w in ("impressions", "checked", "joined", "shards"))
    expiry = "OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY))"
    names = [c.name for c in COLUMNS]
    cols = ", ".join(bq_quote(n) for n in names)
    files = store.load_parquet(gcs_uri(req.impressions_uri), staging, bigquery_schema())
    # Without file order after a load, the first of a duplicate pair is the earliest shown.
    store.run_script(
        f"CREATE TABLE `{checked}` {expiry} AS\n"
        + checked_sql(f"`{staging}`", names, BIGQUERY, ("impression_time", "outcome_time"))
    )
    total = _bq_scalar(store, f"SELECT COUNT(*) FROM `{checked}`")[0]
    finished("impressions checked", total, time.perf_counter() - t0)
    start, end = req.window_start, req.window_end
    if start is None and req.window_days:
        before = f" AND impression_time < {sql_timestamp(end.isoformat())}" if end else ""
        newest = _bq_scalar(store, f"SELECT MAX(impression_time) FROM `{checked}` WHERE reason IS NULL{before}")[0]
        start = days_up_to(newest, req.window_days, end)
    inside = " AND ".join(
        ["reason IS NULL"]
        + ([f"impression_time >= {sql_timestamp(start.isoformat())}"] if start else [])
        + ([f"impression_time < {sql_timestamp(end.isoformat())}"] if end else [])
    )
    first, last = _bq_scalar(
        store, f"SELECT MIN(impression_time), MAX(impression_time) FROM `{checked}` WHERE {inside}"
    )
    if first is None:
        raise DatasetError(f"no impressions between {start} and {end}")
    windows = windows_between(first.astimezone(UTC), last.astimezone(UTC), req.valid_days, req.test_days)

    t1 = time.perf_counter()
    views = feature_views(registry, req.entities)
    plan = plan_join(views, registry, names)
    chosen = f"(SELECT {cols} FROM `{checked}` WHERE {inside})"
    pit = portable_pit_sql(
        chosen,
        lambda e, v: f"`{store.table_id(e, v)}`",
        plan,
        names,
        bq_quote,
        KEY,
        bounds_for(windows, req.entities, req.ttl_days),
    )
    identity = identity_view(registry, req.entities)
    known = " AND ".join(f"{bq_quote(event_time_column(s, identity))} IS NOT NULL" for s in ("viewer", "candidate"))
    store.run_script(
        f"CREATE TABLE `{joined}` {expiry} AS\nSELECT *, {split_case(windows)} AS __split, {known} AS __known "
        f"FROM (\n{pit}\n)"
    )
    stats = {
        r[0]: tuple(r[1:])
        for r in store.run_script(
            f"SELECT __split, COUNT(*), COUNTIF(`match`), COUNT(DISTINCT session_id) FROM `{joined}` "
            "WHERE __known GROUP BY __split"
        )
    }
    windows.require(stats)
    finished("impressions joined point-in-time", sum(s[0] for s in stats.values()), time.perf_counter() - t1)

    t2 = time.perf_counter()
    buckets = {n: min(MAX_BUCKETS, max(1, -(-stats[n][0] // req.shard_rows))) for n in SPLITS}
    per_split = " ".join(f"WHEN '{n}' THEN {b}" for n, b in buckets.items())
    where_to = " ".join(f"WHEN '{n}' THEN '{out[n].rstrip('/')}'" for n in SPLITS)
    export = (
        "EXPORT DATA OPTIONS (uri = '%s/part-%05d-*.parquet', format = 'PARQUET', overwrite = true) AS "
        f"SELECT * EXCEPT (__split, __bucket) FROM `{shards}` WHERE __split = '%s' AND __bucket = %d "
        f"ORDER BY {', '.join(SHARD_ORDER)}"
    )
    set_aside = (
        f"SELECT {cols}, reason FROM `{checked}` WHERE reason IS NOT NULL "
        f"UNION ALL SELECT {cols}, 'unknown_id' FROM `{joined}` WHERE NOT __known"
    )
    store.run_script(
        f"CREATE TABLE `{shards}` PARTITION BY RANGE_BUCKET(__bucket, GENERATE_ARRAY(0, {MAX_BUCKETS + 1}, 1))\n"
        f"CLUSTER BY __split, session_id {expiry} AS\n"
        f"SELECT * EXCEPT (__known), MOD(ABS(FARM_FINGERPRINT(session_id)), CASE __split {per_split} END) AS __bucket\n"
        f"FROM `{joined}` WHERE __known;\n"
        f"FOR b IN (SELECT DISTINCT __split, __bucket FROM `{shards}`) DO\n"
        f'  EXECUTE IMMEDIATE FORMAT("""{export}""",\n'
        f"    CASE b.__split {where_to} END, b.__bucket, b.__split, b.__bucket);\n"
        "END FOR;\n"
        f"EXPORT DATA OPTIONS (uri = '{rejected_uri.rstrip('/')}/part-*.parquet', format = 'PARQUET', overwrite = true)"
        f" AS {set_aside}"
    )
    rejected = dict(
        sorted(
            store.run_script(
                f"SELECT reason, COUNT(*) FROM (SELECT reason FROM `{checked}` WHERE reason IS NOT NULL "
                f"UNION ALL SELECT 'unknown_id' FROM `{joined}` WHERE NOT __known) GROUP BY reason"
            )
        )
    )
    width = len(names) + len(plan) + 2 * len(views)
    sizes = store.exported_sizes(out)
    splits = {
        n: SplitFiles(out[n], stats[n][0], width, sizes[n][0], sizes[n][1], stats[n][1], stats[n][2]) for n in SPLITS
    }
    for table in (staging, checked, joined, shards):
        store.client.delete_table(table, not_found_ok=True)
    seconds = {"check": t1 - t0, "join": t2 - t1, "shards": time.perf_counter() - t2}
    return DatasetBuilt(windows, files, rejected, splits, {k: round(v, 2) for k, v in seconds.items()})
