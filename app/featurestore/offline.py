"""The offline store: append-only event tables per entity version, partitioned by event date.

``OfflineStore`` is the interface training and ingest use. ``ParquetOfflineStore`` keeps the
tables as hive-partitioned Parquet (``<root>/<entity>/<version>/event_date=YYYY-MM-DD/*.parquet``)
and reads them with DuckDB; ``BigQueryOfflineStore`` (app/featurestore/bigquery_store.py) is the
cloud one. Each write adds new files; nothing is rewritten.
"""

from __future__ import annotations

import abc
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from app.featurestore.engine import EngineLimits
from app.featurestore.events import FeatureRow
from app.featurestore.offline_schema import arrow_schema
from app.featurestore.pit import IMPRESSION_TIME, SIDES, FeatureView, event_time_column, plan_join, sql_timestamp
from app.featurestore.registry import Registry


class OfflineStore(abc.ABC):
    @abc.abstractmethod
    def write_rows(self, rows: Sequence[FeatureRow], ingest_time: datetime | None = None) -> int:
        """Append rows; returns how many were written."""

    @abc.abstractmethod
    def read_table(self, entity: str, version: str) -> pa.Table:
        """Every stored row of one entity version."""

    @abc.abstractmethod
    def point_in_time_join(self, impressions: pa.Table, views: Sequence[FeatureView]) -> pa.Table:
        """Impressions (``viewer_id``, ``candidate_id``, ``impression_time``, anything else) with
        both sides' features as of ``impression_time``: the latest event at or before it."""


def rows_to_tables(
    rows: Sequence[FeatureRow], registry: Registry, ingest_time: datetime
) -> dict[tuple[str, str, str], pa.Table]:
    """Arrow tables keyed by (entity, version, event_date)."""
    grouped: dict[tuple[str, str, str], list[FeatureRow]] = defaultdict(list)
    for row in rows:
        grouped[(row.entity, row.version, row.event_time.astimezone(UTC).date().isoformat())].append(row)
    tables = {}
    for (entity, version, day), group in grouped.items():
        spec = registry.get(entity, version)
        records = [
            {
                "entity_id": r.entity_id,
                "event_time": r.event_time,
                "ingest_time": ingest_time,
                **r.values,
                "payload": r.payload,
            }
            for r in group
        ]
        tables[(entity, version, day)] = pa.Table.from_pylist(records, schema=arrow_schema(spec))
    return tables


class ParquetOfflineStore(OfflineStore):
    def __init__(self, root: Path, registry: Registry) -> None:
        self.root = Path(root)
        self.registry = registry

    def table_dir(self, entity: str, version: str) -> Path:
        return self.root / entity / version

    def write_rows(self, rows: Sequence[FeatureRow], ingest_time: datetime | None = None) -> int:
        ingest_time = ingest_time or datetime.now(UTC)
        written = 0
        for (entity, version, day), table in rows_to_tables(rows, self.registry, ingest_time).items():
            part = self.table_dir(entity, version) / f"event_date={day}"
            part.mkdir(parents=True, exist_ok=True)
            # Write under a temporary name and rename, so a reader never sees half a file.
            name = f"part-{ingest_time:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
            tmp = part / f".{name}.tmp"
            try:
                pq.write_table(table, tmp)
                tmp.rename(part / name)
            except BaseException:
                tmp.unlink(missing_ok=True)  # e.g. a full disk: no partial file left behind
                raise
            written += table.num_rows
        return written

    def _source(
        self, con: duckdb.DuckDBPyConnection, entity: str, version: str, bounds: tuple[str, str] | None = None
    ) -> str:
        """A view over the entity version's files (an empty typed one when nothing was written yet);
        with ``bounds`` (ISO [lo, hi)) only the event-date partitions and rows inside them."""
        view = f"{entity}_{version}"
        files = list(self.table_dir(entity, version).glob("event_date=*/*.parquet"))
        if files:
            glob = str(self.table_dir(entity, version) / "event_date=*" / "*.parquet")
            where = ""
            if bounds is not None:
                lo, hi = bounds
                # event_date prunes whole files (hive partitions); event_time keeps the exact bound.
                where = (
                    f" WHERE event_date >= '{lo[:10]}' AND event_date <= '{hi[:10]}'"
                    f" AND event_time >= {sql_timestamp(lo)} AND event_time < {sql_timestamp(hi)}"
                )
            con.execute(
                f'CREATE OR REPLACE TEMP VIEW "{view}" AS SELECT * EXCLUDE (event_date) '
                f"FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true){where}"
            )
        else:
            empty = arrow_schema(self.registry.get(entity, version)).empty_table()
            con.register(f"__empty_{view}", empty)
            con.execute(f'CREATE OR REPLACE TEMP VIEW "{view}" AS SELECT * FROM "__empty_{view}"')
        return f'"{view}"'

    def connect(
        self,
        views: Sequence[tuple[str, str]],
        bounds: Mapping[str, tuple[str, str]] | None = None,
        engine: EngineLimits | None = None,
    ) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with one view per (entity, version), named ``<entity>_<version>``;
        ``engine`` bounds its memory and gives it a folder to spill to (and a database file)."""
        con = engine.connect() if engine else duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        self.attach(con, views, bounds)
        return con

    def attach(
        self,
        con: duckdb.DuckDBPyConnection,
        views: Sequence[tuple[str, str]],
        bounds: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        """(Re)define the views of ``connect`` on ``con``, e.g. once a window's bounds are known."""
        for entity, version in views:
            self._source(con, entity, version, (bounds or {}).get(entity))

    def read_table(self, entity: str, version: str) -> pa.Table:
        self.registry.get(entity, version)
        with self.connect([(entity, version)]) as con:
            return con.sql(f'SELECT * FROM "{entity}_{version}" ORDER BY event_time, entity_id').to_arrow_table()

    def pit_select(self, impressions: str, impression_columns: Sequence[str], views: Sequence[FeatureView]) -> str:
        """The join as one SELECT over the relation ``impressions`` (on a connection from ``connect``):
        DuckDB's ASOF join picks, per impression, the last event at or before impression_time."""
        plan = plan_join(views, self.registry, impression_columns)
        selects = [f'imp."{c}"' for c in impression_columns]
        joins = []
        for n, view in enumerate(views):
            for side, id_col in SIDES.items():
                alias = f"{side[0]}{n}"
                cols = [jc for jc in plan if jc.side == side and jc.view == view]
                selects.append(f'{alias}.event_time AS "{event_time_column(side, view)}"')
                selects += [f'{alias}."{jc.column}" AS "{jc.output}"' for jc in cols]
                joins.append(
                    f'ASOF LEFT JOIN "{view.entity}_{view.version}" {alias} '
                    f'ON imp."{id_col}" = {alias}.entity_id AND imp.{IMPRESSION_TIME} >= {alias}.event_time'
                )
        return f"SELECT {', '.join(selects)} FROM {impressions} AS imp {' '.join(joins)}"

    def point_in_time_join(self, impressions: pa.Table, views: Sequence[FeatureView]) -> pa.Table:
        plan_join(views, self.registry, impressions.column_names)
        with self.connect([(v.entity, v.version) for v in views]) as con:
            con.register("impressions_in", impressions)
            con.execute(
                "CREATE TEMP VIEW imp_rows AS SELECT * REPLACE (CAST(impression_time AS TIMESTAMPTZ) AS "
                "impression_time), ROW_NUMBER() OVER () AS __row FROM impressions_in"
            )
            # A small table in, in its order out: the row number is this in-memory path's only.
            select = self.pit_select("imp_rows", [*impressions.column_names, "__row"], views)
            return con.sql(f"SELECT * EXCLUDE (__row) FROM ({select}) ORDER BY __row").to_arrow_table()
