"""Offline table schemas (Arrow for Parquet, JSON schema for BigQuery) derived from an entity spec.

Every offline table has ``entity_id``, ``event_time`` and ``ingest_time``, the flattened fields,
the derived features and ``payload`` (the validated message bytes, for backfills). Tables are
append-only and partitioned by the event's UTC date.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from app.featurestore.registry import ColumnSpec, EntitySpec

KEY_COLUMNS = ("entity_id", "event_time", "ingest_time")
_TS = pa.timestamp("us", tz="UTC")
_INTEGER_TYPES = {
    "int32",
    "int64",
    "uint32",
    "uint64",
    "sint32",
    "sint64",
    "fixed32",
    "fixed64",
    "sfixed32",
    "sfixed64",
}


def _arrow_type(col: ColumnSpec) -> pa.DataType:
    if col.kind == "timestamp":
        return _TS
    if col.kind == "string":
        return pa.string()
    if col.proto_type in _INTEGER_TYPES or col.proto_type == "bool" or col.proto_type[:1].isupper():
        return pa.int64()  # enums (named types) and bools are stored as their integer values
    return pa.float64()


def arrow_schema(spec: EntitySpec) -> pa.Schema:
    fields = [
        pa.field("entity_id", pa.string(), nullable=False),
        pa.field("event_time", _TS, nullable=False),
        pa.field("ingest_time", _TS, nullable=False),
    ]
    fields += [pa.field(c.name, _arrow_type(c)) for c in spec.columns]
    fields += [pa.field(d.name, pa.float64()) for d in spec.transforms.derived]
    fields.append(pa.field("payload", pa.binary()))
    return pa.schema(fields)


_BQ_TYPES = {
    pa.string(): "STRING",
    _TS: "TIMESTAMP",
    pa.int64(): "INT64",
    pa.float64(): "FLOAT64",
    pa.binary(): "BYTES",
}


def bigquery_schema_of(schema: pa.Schema) -> list[dict[str, Any]]:
    """The BigQuery table schema of an Arrow schema (the JSON form ``bq`` and Pulumi's ``schema``
    argument take); lists become REPEATED columns of their element type."""
    out = []
    for f in schema:
        if pa.types.is_list(f.type):
            out.append({"name": f.name, "type": _BQ_TYPES[f.type.value_type], "mode": "REPEATED"})
        else:
            out.append({"name": f.name, "type": _BQ_TYPES[f.type], "mode": "NULLABLE" if f.nullable else "REQUIRED"})
    return out


def bigquery_schema(spec: EntitySpec) -> list[dict[str, Any]]:
    return bigquery_schema_of(arrow_schema(spec))
