"""Served predictions joined with outcomes: the Arrow join locally, and the BigQuery SQL run on DuckDB
against it (the same text, with BigQuery's two array spellings rewritten for DuckDB)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from app.ranking.impressions import contract_table
from app.serving.messages import Prediction
from app.serving.sink import write_predictions
from app.trigger.served import read_predictions, served_outcomes, served_outcomes_sql

T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)


def prediction(
    request_id: str, variant: str, model: str, cands: list[str], at: datetime, scored: int = 0
) -> Prediction:
    scores = tuple(0.1 * (i + 1) + scored / 100 for i in range(len(cands)))
    return Prediction(
        request_id, "u1", "discover", variant, model, tuple(cands), scores, at.isoformat(),
        (at + timedelta(seconds=1 + scored)).isoformat(),
    )  # fmt: skip


def impressions() -> pa.Table:
    rows = [
        ("r1", "a", True), ("r1", "b", False), ("r1", "c", False),
        ("r2", "a", False), ("r2", "d", True),
        ("r3", "e", True),  # scored by another model: not ours
        ("r4", "f", False),  # scored before the window
        ("own-order", "g", True),  # the core service's own order: no prediction
    ]  # fmt: skip
    n = len(rows)
    return contract_table(
        {
            "session_id": [r[0] for r in rows],
            "viewer_id": ["u1"] * n,
            "candidate_id": [r[1] for r in rows],
            "position": list(range(n)),
            "surface": ["discover"] * n,
            "impression_time": [T0] * n,
            "viewer_like": [r[2] for r in rows],
            "candidate_like": [r[2] for r in rows],
            "match": [r[2] for r in rows],
        }
    )


@pytest.fixture()
def landed(tmp_path: Path) -> Path:
    write_predictions(
        tmp_path,
        [
            prediction("r1", "primary", "m1", ["a", "b", "c", "x"], T0),  # x was not shown: no impression
            prediction("r1", "primary", "m1", ["a", "b", "c", "x"], T0, scored=5),  # a redelivery, scored later
            prediction("r1", "shadow", "m2", ["a", "b", "c"], T0),  # the shadow's scores of the same request
            prediction("r2", "primary", "m1", ["d", "a"], T0 + timedelta(hours=1)),
            prediction("r3", "primary", "m0", ["e"], T0),
            prediction("r4", "primary", "m1", ["f"], T0 - timedelta(days=2)),
        ],
    )
    return tmp_path


def to_duckdb(sql: str) -> str:
    """BigQuery's ``arr[OFFSET(i)]`` is DuckDB's ``arr[i + 1]``; ``GENERATE_ARRAY`` is a macro below."""
    return re.sub(r"\[OFFSET\(([^)]*)\)\]", r"[(\1) + 1]", sql)


def test_served_scores_meet_their_outcomes_once_per_request(landed: Path) -> None:
    start, end = T0 - timedelta(days=1), T0 + timedelta(days=1)
    local = served_outcomes(read_predictions(landed), impressions(), "primary", "m1", start, end)
    rows = list(zip(*(local.column(c).to_pylist() for c in local.column_names), strict=True))
    assert rows == [
        ("r1", "a", pytest.approx(0.15), True),
        ("r1", "b", pytest.approx(0.25), False),
        ("r1", "c", pytest.approx(0.35), False),
        ("r2", "a", pytest.approx(0.2), False),
        ("r2", "d", pytest.approx(0.1), True),
    ]

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE MACRO GENERATE_ARRAY(a, b) AS generate_series(a, b)")
    con.register("predictions", read_predictions(landed))
    con.register("impressions", impressions())
    sql = served_outcomes_sql("predictions", "impressions", "primary", "m1", start, end)
    assert "[OFFSET(i)]" in sql and "GENERATE_ARRAY" in sql, "the BigQuery spelling is what is tested"
    on_duckdb = con.sql(to_duckdb(sql)).to_arrow_table()
    assert on_duckdb.column_names == local.column_names
    for name in local.column_names:
        assert on_duckdb.column(name).to_pylist() == pytest.approx(local.column(name).to_pylist()), name


def test_nothing_landed_is_an_empty_result_and_quotes_are_refused(tmp_path: Path) -> None:
    empty = read_predictions(tmp_path)
    assert empty.num_rows == 0
    assert served_outcomes(empty, impressions(), "primary", "m1", T0, T0 + timedelta(days=1)).num_rows == 0
    with pytest.raises(ValueError, match="quotes and backslashes are not allowed"):
        served_outcomes_sql("p", "i", "primary", "m1' OR 1=1 --", T0, T0)
