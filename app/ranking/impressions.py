"""The impressions contract (docs/specs/impressions.md): what the core service delivers, read with validation.

A file that breaks the contract (a required column missing, a column of the wrong type, a contract
version this code does not know) stops the read with one line naming the file and the column. Rows
that break it (a required value missing, an outcome before the candidate was shown, a match without
both likes, a pair shown twice in one session) are set aside with their reason and counted; the
rest is used. Columns outside the contract are dropped, so nothing downstream can come to depend on
them (the simulator's true probabilities travel in a separate oracle file: ``read_oracle``).

File checks read only each file's footer. Row checks are one SQL text (``checked_sql``) the engine
runs over the files as it scans them, in record batches: DuckDB here, BigQuery in the cloud; the
duplicate check is a window partitioned by the key, so no step holds every row. ``read_impressions``
returns the result as tables, for callers that hold a small window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

CONTRACT_VERSION = 1
VERSION_KEY = b"rerank.impressions.contract"  # Parquet key-value metadata; absent means version 1
KEY = ("session_id", "candidate_id")
TIMESTAMP = pa.timestamp("us", tz="UTC")
ORACLE_COLUMNS = ("p_viewer_likes", "p_candidate_likes", "p_match")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    required: bool


COLUMNS = (
    Column("session_id", pa.string(), True),
    Column("viewer_id", pa.string(), True),
    Column("candidate_id", pa.string(), True),
    Column("position", pa.int32(), True),
    Column("surface", pa.string(), True),
    Column("served_variant", pa.string(), False),
    Column("served_model_id", pa.string(), False),
    Column("impression_time", TIMESTAMP, True),
    Column("viewer_like", pa.bool_(), True),
    Column("candidate_like", pa.bool_(), False),
    Column("match", pa.bool_(), True),
    Column("outcome_time", TIMESTAMP, False),
)
SCHEMA = pa.schema([pa.field(c.name, c.type) for c in COLUMNS])  # nullable: rows are checked, not the schema
REJECTED_SCHEMA = SCHEMA.append(pa.field("reason", pa.string()))
ORACLE_SCHEMA = pa.schema(
    [pa.field("session_id", pa.string()), pa.field("candidate_id", pa.string())]
    + [pa.field(c, pa.float64()) for c in ORACLE_COLUMNS]
)


class ImpressionsError(ValueError):
    """Impressions that cannot be read at all; the message is one line naming the file and the column."""


@dataclass(frozen=True)
class ImpressionsRead:
    table: pa.Table  # valid rows in the contract's schema, ordered by session then position
    rejected: pa.Table  # the rest, with a ``reason`` column
    files: int

    @property
    def rejected_counts(self) -> dict[str, int]:
        reasons = self.rejected.column("reason").to_pylist()
        return {r: reasons.count(r) for r in sorted(set(reasons))}

    def summary(self) -> dict[str, object]:
        return {"files": self.files, "rows": self.table.num_rows, "rejected": self.rejected_counts}


def _type_ok(actual: pa.DataType, wanted: pa.DataType) -> bool:
    if pa.types.is_string(wanted):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if pa.types.is_integer(wanted):
        return pa.types.is_integer(actual)
    if pa.types.is_timestamp(wanted):
        return pa.types.is_timestamp(actual) and actual.tz in ("UTC", "Etc/UTC", "+00:00")
    return actual.equals(wanted)


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "timestamp with time zone UTC"
    return {"int32": "integer", "bool": "boolean"}.get(str(t), str(t))


def check_schema(schema: pa.Schema, source: str) -> None:
    """Raise ``ImpressionsError`` for the first contract problem of a file's schema."""
    version = (schema.metadata or {}).get(VERSION_KEY)
    if version is not None and version.decode() != str(CONTRACT_VERSION):
        raise ImpressionsError(
            f"{source}: impressions contract version {version.decode()!r}; this code reads version {CONTRACT_VERSION}"
        )
    for c in COLUMNS:
        if c.name not in schema.names:
            if c.required:
                raise ImpressionsError(f"{source}: required column {c.name!r} is missing")
            continue
        actual = schema.field(c.name).type
        if not _type_ok(actual, c.type):
            raise ImpressionsError(f"{source}: column {c.name!r} is {actual}, the contract says {_type_name(c.type)}")


def conform(table: pa.Table, source: str) -> pa.Table:
    """The table in the contract's schema: checked, cast, optional columns added as nulls, extras dropped."""
    check_schema(table.schema, source)
    cols = []
    for c in COLUMNS:
        if c.name in table.column_names:
            cols.append(table.column(c.name).cast(c.type))
        else:
            cols.append(pa.nulls(table.num_rows, c.type))
    return pa.Table.from_arrays(cols, schema=SCHEMA)


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines that run the checks (DuckDB here, BigQuery in the cloud)."""

    quote: Callable[[str], str]
    blank: Callable[[str], str]  # SQL that is true when a string is empty or only whitespace
    cast: Callable[[str, Column], str]  # an expression in the contract's type


_DUCKDB_TYPES = {"string": "VARCHAR", "int32": "INTEGER", "bool": "BOOLEAN"}
DUCKDB = Dialect(
    quote=lambda c: f'"{c}"',
    blank=lambda e: f"regexp_full_match({e}, '\\s*')",
    cast=lambda e, c: f"CAST({e} AS {_DUCKDB_TYPES.get(str(c.type), 'TIMESTAMPTZ')})",
)
# BigQuery loads the files with the contract's schema (bigquery_store.py), so no cast is needed.
BIGQUERY = Dialect(quote=lambda c: f"`{c}`", blank=lambda e: f"REGEXP_CONTAINS({e}, r'^\\s*$')", cast=lambda e, c: e)


def bigquery_schema() -> list[dict[str, str]]:
    """The contract as a BigQuery load schema (every column nullable: rows are checked, not the schema)."""
    kinds = {"string": "STRING", "int32": "INT64", "bool": "BOOL"}
    return [{"name": c.name, "type": kinds.get(str(c.type), "TIMESTAMP")} for c in COLUMNS]


def problem_sql(d: Dialect) -> str:
    """Each row's first problem as a SQL CASE (NULL: none); duplicates are found apart (``checked_sql``)."""
    q = d.quote
    missing = []
    for c in COLUMNS:
        if c.required:
            missing.append(f"{q(c.name)} IS NULL" + (f" OR {d.blank(q(c.name))}" if pa.types.is_string(c.type) else ""))
    # A NULL comparison is not a problem: an optional value left out (candidate_like, outcome_time).
    return (
        "CASE"
        f" WHEN {' OR '.join(missing)} THEN 'missing_value'"
        f" WHEN {q('viewer_id')} = {q('candidate_id')} THEN 'viewer_is_candidate'"
        f" WHEN {q('position')} < 0 THEN 'negative_position'"
        f" WHEN {q('outcome_time')} < {q('impression_time')} THEN 'outcome_before_shown'"
        f" WHEN {q('match')} AND (NOT {q('viewer_like')} OR {q('candidate_like')} = FALSE)"
        " THEN 'match_without_both_likes'"
        " END"
    )


def checked_sql(source: str, present: Sequence[str], d: Dialect, order: Sequence[str]) -> str:
    """Every row of ``source`` in the contract's columns (those not ``present`` as NULLs) plus
    ``reason``: its first problem, else ``duplicate`` when an earlier row (by ``order``, an
    expressions over ``source``) without problems has the same (session_id, candidate_id), else NULL.
    The duplicate check is a window partitioned by that key: it spreads over workers and spills."""
    q = d.quote
    cols = ", ".join(f"{d.cast(q(c.name) if c.name in present else 'NULL', c)} AS {q(c.name)}" for c in COLUMNS)
    names = ", ".join(q(c.name) for c in COLUMNS)
    key = ", ".join(q(k) for k in KEY)
    orders = ", ".join(f"{e} AS __order{n}" for n, e in enumerate(order))
    by = ", ".join(f"__order{n}" for n in range(len(order)))
    return (
        f"SELECT {names}, COALESCE(__problem, CASE WHEN __n > 1 THEN 'duplicate' END) AS reason FROM (\n"
        f"  SELECT *, ROW_NUMBER() OVER (PARTITION BY {key}, __problem IS NULL ORDER BY {by}) AS __n FROM (\n"
        f"    SELECT *, {problem_sql(d)} AS __problem FROM (SELECT {cols}, {orders} FROM {source}) AS c\n"
        "  ) AS p\n"
        ") AS r"
    )


def _duckdb_source(files: Sequence[Path]) -> tuple[str, list[str]]:
    """A DuckDB relation over the files (columns by name; each file's rows keep their order in
    ``__file``, ``file_row_number``) and the contract columns any of them has."""
    present: list[str] = []
    parts = []
    for n, f in enumerate(files):
        names = pq.read_schema(f).names
        present += [c.name for c in COLUMNS if c.name in names and c.name not in present]
        path = str(f).replace("'", "''")
        parts.append(f"SELECT *, {n} AS __file FROM read_parquet('{path}', file_row_number = true)")
    return "(" + " UNION ALL BY NAME ".join(parts) + ")", present


def checked_files(uri: str | Path) -> tuple[list[Path], str, list[str]]:
    """The impression files under ``uri`` with their schemas checked (footers only), and a DuckDB
    relation over them with the contract columns they have: the input of ``checked_sql``."""
    files = impression_files(uri)
    for f in files:
        try:
            schema = pq.read_schema(f)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ImpressionsError(f"{f}: not a readable Parquet file: {str(exc).splitlines()[0]}") from None
        check_schema(schema, str(f))
    source, present = _duckdb_source(files)
    return files, source, present


FILE_ORDER = ("__file", "file_row_number")  # ``checked_sql``'s order over ``checked_files``' relation


def _split_checked(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[pa.Table, pa.Table]:
    con.execute(f"CREATE TEMP TABLE checked AS {sql}")
    names = ", ".join(f'"{c.name}"' for c in COLUMNS)
    valid = con.sql(f"SELECT {names} FROM checked WHERE reason IS NULL ORDER BY session_id, position")
    rejected = con.sql(f"SELECT {names}, reason FROM checked WHERE reason IS NOT NULL")
    return valid.to_arrow_table().cast(SCHEMA), rejected.to_arrow_table().cast(REJECTED_SCHEMA)


def validate(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(valid rows, rejected rows with ``reason``) of a conformed table; each row gets its first problem."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("given", table.append_column("__row", pa.array(np.arange(table.num_rows), pa.int64())))
        return _split_checked(con, checked_sql("given", table.column_names, DUCKDB, ("__row",)))


def impression_files(uri: str | Path) -> list[Path]:
    """A Parquet file, or every ``*.parquet`` under a folder (hidden and ``_`` files skipped: half-written)."""
    path = Path(uri)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*.parquet")
            if not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        )
        if files:
            return files
        raise ImpressionsError(f"{uri}: no *.parquet files in the folder")
    raise ImpressionsError(f"{uri}: no such file or folder")


def read_impressions(uri: str | Path) -> ImpressionsRead:
    """Every impression file under ``uri``, checked against the contract, bad rows set aside, as
    tables: for callers that hold a small window (drift checks, experiments, the demo). The dataset
    step runs the same checks in the engine over any size (app/ranking/dataset.py)."""
    files, source, present = checked_files(uri)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        valid, rejected = _split_checked(con, checked_sql(source, present, DUCKDB, FILE_ORDER))
    return ImpressionsRead(valid, rejected, len(files))


def contract_table(columns: dict[str, Sequence[object] | np.ndarray | pa.Array]) -> pa.Table:
    """A table of contract columns (optional ones may be left out), tagged with the contract version."""
    table = conform(pa.table(columns), "impressions")
    return table.replace_schema_metadata({VERSION_KEY: str(CONTRACT_VERSION).encode()})


def read_oracle(uri: str | Path) -> pa.Table:
    """The simulator's true probabilities keyed by (session_id, candidate_id): evaluation only, when given."""
    try:
        table = pq.read_table(uri)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ImpressionsError(f"{uri}: not a readable oracle file: {str(exc).splitlines()[0]}") from None
    missing = [f.name for f in ORACLE_SCHEMA if f.name not in table.column_names]
    if missing:
        raise ImpressionsError(f"{uri}: oracle file lacks column(s) {missing}")
    return table.select(ORACLE_SCHEMA.names).cast(ORACLE_SCHEMA)


def oracle_for(table: pa.Table, oracle: pa.Table, column: str = "p_match") -> np.ndarray:
    """The oracle's ``column`` for each row of ``table`` (in its order); every row must have one."""
    left = pd.DataFrame({k: table.column(k).to_numpy(zero_copy_only=False) for k in KEY})
    right = oracle.select([*KEY, column]).to_pandas().drop_duplicates(list(KEY))
    joined = left.merge(right, on=list(KEY), how="left")
    values = joined[column].to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        raise ImpressionsError(f"the oracle file has no {column} for {int(np.isnan(values).sum())} impression(s)")
    return values
