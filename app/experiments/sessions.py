"""What an experiment readout is computed from: sessions per arm, and pairs of scorings of one request.

Both come from joining the landed prediction records with the impressions (docs/specs/impressions.md),
the way ``app/trigger/served.py`` joins them for the drift check, with its selection of the latest
record per request and variant (``latest_sql`` / ``latest_predictions``):

- a **session** is a list shown (``session_id``). Its arm is the variant whose order was shown
  (``served_variant``); when the core service fell back to its own order the arm is the one that
  scored the request (its non-shadow prediction record, the request id being the session id), so a
  fallback stays in the arm it was assigned to. A session neither served nor scored has no arm.
- a **pair of scorings** is the primary's and a shadow's record for the same request.

Locally the join runs in pandas over the Parquet files; in the cloud it is ``sessions_sql`` and
``agreement_sql`` on BigQuery, which the tests run on DuckDB against the local result.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from app.trigger.served import latest_predictions, latest_sql, sql_literal

# A request is scored before it is shown: look this far before the window for the records that
# attribute a fallback session to its arm.
ATTRIBUTION_SLACK = timedelta(days=1)

SESSIONS = pa.schema(
    [
        ("session_id", pa.string()),
        ("arm", pa.string()),  # null: neither served nor scored by a primary or arm variant
        ("model_id", pa.string()),
        ("fell_back", pa.bool_()),
        ("shown_top_k", pa.int64()),
        ("matches_top_k", pa.int64()),
        ("matches", pa.int64()),
    ]
)
AGREEMENT = pa.schema(
    [
        ("request_id", pa.string()),
        ("primary_ids", pa.list_(pa.string())),
        ("primary_scores", pa.list_(pa.float64())),
        ("shadow_ids", pa.list_(pa.string())),
        ("shadow_scores", pa.list_(pa.float64())),
    ]
)
IMPRESSION_COLUMNS = (
    "session_id",
    "candidate_id",
    "position",
    "served_variant",
    "served_model_id",
    "impression_time",
    "match",
)


def sessions_sql(
    predictions: str, impressions: str, arms: Sequence[str], start: datetime, end: datetime, top_k: int
) -> str:
    """BigQuery: one row per session shown in [start, end), in ``SESSIONS``' columns."""
    k = int(top_k)
    return f"""WITH latest AS (
  {latest_sql(predictions, arms, start - ATTRIBUTION_SLACK, end)}
),
attributed AS (
  SELECT request_id, variant, model_id
  FROM latest
  WHERE TRUE
  QUALIFY ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY scored_at DESC, variant) = 1
),
shown AS (
  SELECT session_id,
    MAX(served_variant) AS served_variant,
    MAX(served_model_id) AS served_model_id,
    SUM(CASE WHEN position < {k} THEN 1 ELSE 0 END) AS shown_top_k,
    SUM(CASE WHEN position < {k} AND match THEN 1 ELSE 0 END) AS matches_top_k,
    SUM(CASE WHEN match THEN 1 ELSE 0 END) AS matches
  FROM {impressions}
  WHERE impression_time >= TIMESTAMP {sql_literal(start.isoformat())}
    AND impression_time < TIMESTAMP {sql_literal(end.isoformat())}
  GROUP BY session_id
)
SELECT s.session_id,
  COALESCE(s.served_variant, a.variant) AS arm,
  COALESCE(s.served_model_id, a.model_id) AS model_id,
  s.served_variant IS NULL AS fell_back,
  s.shown_top_k, s.matches_top_k, s.matches
FROM shown AS s
LEFT JOIN attributed AS a ON a.request_id = s.session_id
ORDER BY s.session_id"""


def sessions_local(
    predictions: pa.Table, impressions: pa.Table, arms: Sequence[str], start: datetime, end: datetime, top_k: int
) -> pa.Table:
    """The same as ``sessions_sql``, in Arrow and pandas."""
    t = impressions.column("impression_time")
    imp = impressions.filter(pc.and_(pc.greater_equal(t, pa.scalar(start, t.type)), pc.less(t, pa.scalar(end, t.type))))
    df = pd.DataFrame({c: imp.column(c).to_pylist() for c in IMPRESSION_COLUMNS if c != "impression_time"})
    if df.empty:
        return SESSIONS.empty_table()
    top = df["position"] < top_k
    df["top"], df["match_top"] = top.astype("int64"), (top & df["match"]).astype("int64")
    df["match"] = df["match"].astype("int64")
    g = df.groupby("session_id", sort=True)
    shown = pd.DataFrame(
        {
            "served_variant": g["served_variant"].max(),  # max skips nulls, as in SQL
            "served_model_id": g["served_model_id"].max(),
            "shown_top_k": g["top"].sum(),
            "matches_top_k": g["match_top"].sum(),
            "matches": g["match"].sum(),
        }
    ).reset_index()
    latest = latest_predictions(predictions, arms, start - ATTRIBUTION_SLACK, end)
    scored = pd.DataFrame({c: latest.column(c).to_pylist() for c in ("request_id", "variant", "model_id", "scored_at")})
    scored = scored.sort_values(["request_id", "scored_at", "variant"], ascending=[True, False, True], kind="stable")
    attributed = scored.drop_duplicates("request_id", keep="first").rename(columns={"request_id": "session_id"})
    joined = shown.merge(attributed[["session_id", "variant", "model_id"]], on="session_id", how="left")
    fell_back = joined["served_variant"].isna()
    out = pd.DataFrame(
        {
            "session_id": joined["session_id"],
            "arm": joined["served_variant"].where(~fell_back, joined["variant"]),
            "model_id": joined["served_model_id"].where(joined["served_model_id"].notna(), joined["model_id"]),
            "fell_back": fell_back,
            "shown_top_k": joined["shown_top_k"],
            "matches_top_k": joined["matches_top_k"],
            "matches": joined["matches"],
        }
    )
    out = out.astype(object).where(out.notna(), None)
    return pa.Table.from_pandas(out, schema=SESSIONS, preserve_index=False)


def agreement_sql(predictions: str, primary: str, shadow: str, start: datetime, end: datetime) -> str:
    """BigQuery: the primary's and the shadow's latest scoring of each request both scored in [start, end)."""
    return f"""WITH latest AS (
  {latest_sql(predictions, [primary, shadow], start, end)}
)
SELECT p.request_id, p.candidate_ids AS primary_ids, p.scores AS primary_scores,
  s.candidate_ids AS shadow_ids, s.scores AS shadow_scores
FROM latest AS p
JOIN latest AS s ON s.request_id = p.request_id
WHERE p.variant = {sql_literal(primary)} AND s.variant = {sql_literal(shadow)}
ORDER BY p.request_id"""


def agreement_local(predictions: pa.Table, primary: str, shadow: str, start: datetime, end: datetime) -> pa.Table:
    """The same as ``agreement_sql``, in Arrow and pandas."""
    latest = latest_predictions(predictions, [primary, shadow], start, end)
    cols = ("request_id", "variant", "candidate_ids", "scores")
    df = pd.DataFrame({c: latest.column(c).to_pylist() for c in cols})
    p = df[df["variant"] == primary].rename(columns={"candidate_ids": "primary_ids", "scores": "primary_scores"})
    s = df[df["variant"] == shadow].rename(columns={"candidate_ids": "shadow_ids", "scores": "shadow_scores"})
    both = p.drop(columns="variant").merge(s.drop(columns="variant"), on="request_id").sort_values("request_id")
    return pa.table({c: both[c].tolist() for c in AGREEMENT.names}, schema=AGREEMENT)
