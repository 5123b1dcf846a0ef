"""The impressions contract (docs/specs/impressions.md): what the core service delivers, read with validation.

A file that breaks the contract (a required column missing, a column of the wrong type, a contract
version this code does not know) stops the read with one line naming the file and the column. Rows
that break it (a required value missing, an outcome before the candidate was shown, a match without
both likes, a pair shown twice in one session) are set aside with their reason and counted; the
rest is used. Columns outside the contract are dropped, so nothing downstream can come to depend on
them (the simulator's true probabilities travel in a separate oracle file: ``read_oracle``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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


def _mask(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def validate(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(valid rows, rejected rows with ``reason``) of a conformed table; each row gets its first problem."""
    n = table.num_rows
    reason = np.full(n, "", dtype=object)

    def mark(bad: np.ndarray, why: str) -> None:
        reason[(reason == "") & bad] = why

    for c in COLUMNS:
        if c.required:
            col = table.column(c.name)
            missing = _mask(pc.is_null(col))
            if pa.types.is_string(c.type):
                missing |= _mask(pc.equal(pc.utf8_trim_whitespace(col), ""))
            mark(missing, "missing_value")
    mark(_mask(pc.equal(table.column("viewer_id"), table.column("candidate_id"))), "viewer_is_candidate")
    mark(_mask(pc.less(table.column("position"), 0)), "negative_position")
    mark(_mask(pc.less(table.column("outcome_time"), table.column("impression_time"))), "outcome_before_shown")
    match = _mask(table.column("match"))
    no_like = ~_mask(table.column("viewer_like")) | _mask(pc.invert(table.column("candidate_like")))
    mark(match & no_like, "match_without_both_likes")
    keys = pd.DataFrame({k: table.column(k).to_numpy(zero_copy_only=False) for k in KEY})
    ok = reason == ""
    dupes = np.zeros(n, dtype=bool)
    dupes[np.flatnonzero(ok)] = keys[ok].duplicated(keep="first").to_numpy()
    mark(dupes, "duplicate")
    good = pa.array(reason == "")
    valid = table.filter(good)
    order = pc.sort_indices(valid, sort_keys=[("session_id", "ascending"), ("position", "ascending")])
    rejected = table.filter(pc.invert(good)).append_column("reason", pa.array(reason[reason != ""], pa.string()))
    return valid.take(order), rejected


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
    """Every impression file under ``uri``, checked against the contract, bad rows set aside."""
    files = impression_files(uri)
    tables = []
    for f in files:
        try:
            schema = pq.read_schema(f)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ImpressionsError(f"{f}: not a readable Parquet file: {str(exc).splitlines()[0]}") from None
        check_schema(schema, str(f))
        present = [c.name for c in COLUMNS if c.name in schema.names]
        tables.append(conform(pq.read_table(f, columns=present), str(f)))
    valid, rejected = validate(pa.concat_tables(tables))
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
