"""Ground truth of what was served: landed prediction records joined with the impressions' outcomes.

A prediction record (docs/specs/serving-messages.md) holds a request's candidates and the scores a
variant's model gave them; the impressions (docs/specs/impressions.md) carry the request id as
``session_id`` and what happened to each candidate. Joined, they give the score the model served
for each shown pair and whether it matched: the calibration and AUC of what was actually served.
A request scored twice (a redelivery) counts once, with its latest scoring.

Locally the records are Parquet under ``<offline>/predictions`` (``rerank sink``) and the join runs
in Arrow; in the cloud they are the BigQuery table ``<dataset>.predictions`` and the join is
``served_outcomes_sql``, which the tests run on DuckDB against the local result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from app.serving.sink import PREDICTIONS_TABLE
from app.serving.sink import SCHEMA as PREDICTION_SCHEMA

OUTCOMES = pa.schema(
    [("request_id", pa.string()), ("candidate_id", pa.string()), ("score", pa.float64()), ("match", pa.bool_())]
)


def sql_literal(text: str) -> str:
    # BigQuery and DuckDB escape quotes differently; ids and times never need one, so refuse them.
    if "'" in text or "\\" in text:
        raise ValueError(f"{text!r}: quotes and backslashes are not allowed in a query value")
    return f"'{text}'"


def latest_sql(
    predictions: str, variants: Sequence[str], start: datetime, end: datetime, model_id: str | None = None
) -> str:
    """BigQuery: the latest record per (request, variant) of ``variants`` (of ``model_id``, when given)
    with ``requested_at`` in [start, end): a redelivery scored again counts once."""
    model = f" AND model_id = {sql_literal(model_id)}" if model_id is not None else ""
    return f"""SELECT request_id, variant, model_id, candidate_ids, scores, scored_at
  FROM {predictions}
  WHERE variant IN ({", ".join(sql_literal(v) for v in variants)}){model}
    AND requested_at >= TIMESTAMP {sql_literal(start.isoformat())}
    AND requested_at < TIMESTAMP {sql_literal(end.isoformat())}
  QUALIFY ROW_NUMBER() OVER (PARTITION BY request_id, variant ORDER BY scored_at DESC) = 1"""


def served_outcomes_sql(
    predictions: str, impressions: str, variant: str, model_id: str | None, start: datetime, end: datetime
) -> str:
    """BigQuery: one row per (request, candidate) ``model_id`` (any model when None) scored for
    ``variant`` with ``requested_at`` in [start, end) and the impression's ``match``."""
    return f"""WITH latest AS (
  {latest_sql(predictions, [variant], start, end, model_id)}
),
scored AS (
  SELECT p.request_id, p.candidate_ids[OFFSET(i)] AS candidate_id, p.scores[OFFSET(i)] AS score
  FROM latest AS p
  CROSS JOIN UNNEST(GENERATE_ARRAY(0, ARRAY_LENGTH(p.candidate_ids) - 1)) AS i
)
SELECT s.request_id, s.candidate_id, s.score, imp.match
FROM scored AS s
JOIN {impressions} AS imp ON imp.session_id = s.request_id AND imp.candidate_id = s.candidate_id
ORDER BY s.request_id, s.candidate_id"""


def read_predictions(offline_dir: Path) -> pa.Table:
    """Every landed prediction record of the local offline store (none yet: an empty table)."""
    folder = Path(offline_dir) / PREDICTIONS_TABLE
    if not any(folder.glob("event_date=*/*.parquet")):
        return PREDICTION_SCHEMA.empty_table()
    dataset = ds.dataset(folder, format="parquet", partitioning="hive", exclude_invalid_files=True)
    if not dataset.files:  # only damaged or half-written files: nothing landed that can be read
        return PREDICTION_SCHEMA.empty_table()
    try:
        return dataset.to_table(columns=PREDICTION_SCHEMA.names).cast(PREDICTION_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"{folder}: not prediction records: {' '.join(str(exc).split())[:200]}") from None


def latest_predictions(
    predictions: pa.Table, variants: Sequence[str], start: datetime, end: datetime, model_id: str | None = None
) -> pa.Table:
    """The same selection as ``latest_sql``, in Arrow (the local offline store)."""
    t = predictions.column("requested_at")
    keep = pc.and_(
        pc.is_in(predictions.column("variant"), pa.array(list(variants), pa.string())),
        pc.and_(pc.greater_equal(t, pa.scalar(start, t.type)), pc.less(t, pa.scalar(end, t.type))),
    )
    if model_id is not None:
        keep = pc.and_(keep, pc.equal(predictions.column("model_id"), model_id))
    chosen = predictions.filter(keep)
    order = pc.sort_indices(
        chosen, sort_keys=[("request_id", "ascending"), ("variant", "ascending"), ("scored_at", "descending")]
    )
    chosen = chosen.take(order)
    keys = pd.DataFrame({k: chosen.column(k).to_pylist() for k in ("request_id", "variant")})
    return chosen.filter(pa.array(~keys.duplicated(keep="first").to_numpy(dtype=bool)))


def served_outcomes(
    predictions: pa.Table,
    impressions: pa.Table,
    variant: str,
    model_id: str | None,
    start: datetime,
    end: datetime,
) -> pa.Table:
    """The same join as ``served_outcomes_sql``, in Arrow and pandas (the local offline store)."""
    latest = latest_predictions(predictions, [variant], start, end, model_id)
    if latest.num_rows == 0:
        return OUTCOMES.empty_table()
    ids = latest.column("candidate_ids").combine_chunks()
    scored = pd.DataFrame(
        {
            "request_id": pc.take(latest.column("request_id"), pc.list_parent_indices(ids)).to_pylist(),
            "candidate_id": pc.list_flatten(ids).to_pylist(),
            "score": pc.list_flatten(latest.column("scores").combine_chunks()).to_numpy(),
        }
    )
    outcomes = pd.DataFrame(
        {
            "request_id": impressions.column("session_id").to_pylist(),
            "candidate_id": impressions.column("candidate_id").to_pylist(),
            "match": impressions.column("match").to_pylist(),
        }
    )
    joined = scored.merge(outcomes, on=["request_id", "candidate_id"], how="inner")
    joined = joined.sort_values(["request_id", "candidate_id"], kind="stable")
    return pa.Table.from_pandas(joined, schema=OUTCOMES, preserve_index=False)


@contextmanager
def staged_impressions(
    client: Any, project: str, dataset: str, impressions: pa.Table, columns: Sequence[str]
) -> Iterator[str]:
    """The impressions' ``columns`` loaded into a scratch table beside ``<dataset>.predictions``
    for the length of a query; yields its quoted name."""
    import uuid

    staging = f"{project}.{dataset}._impressions_{uuid.uuid4().hex[:12]}"
    client.load_table_from_dataframe(impressions.select(list(columns)).to_pandas(), staging).result()
    try:
        yield f"`{staging}`"
    finally:
        client.delete_table(staging, not_found_ok=True)


def served_outcomes_bigquery(
    client: Any,
    project: str,
    dataset: str,
    impressions: pa.Table,
    variant: str,
    model_id: str | None,
    start: datetime,
    end: datetime,
) -> pa.Table:
    """The cloud: the recent impressions staged next to ``<dataset>.predictions``, joined there.
    (Not exercised here: no BigQuery on this machine; the SQL is tested on DuckDB.)"""
    with staged_impressions(client, project, dataset, impressions, ["session_id", "candidate_id", "match"]) as imp:
        sql = served_outcomes_sql(f"`{project}.{dataset}.{PREDICTIONS_TABLE}`", imp, variant, model_id, start, end)
        return client.query(sql).to_arrow().cast(OUTCOMES)
