"""`rerank experiment report`: the readout of a constructed experiment whose answer is known, the
BigQuery SQL run on DuckDB against the local join, and bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.cli import main
from app.experiments import sessions as served
from app.experiments.readout import ServedData, local_data, readout
from app.ranking.impressions import contract_table
from app.serving.messages import Prediction
from app.serving.sink import write_predictions
from app.settings import load_stack
from app.trigger.served import OUTCOMES, read_predictions, served_outcomes_sql
from tests.unit.test_served_outcomes import to_duckdb

T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)
START, END = T0 - timedelta(days=1), T0 + timedelta(days=1)
# The local stack's variants; "c" is an arm that got no traffic.
VARIANTS = [v for v in load_stack("local").serving.variants]
# (copies of the stack's own variants, so whatever else a variant declares stays valid)
WITH_EMPTY_ARM = [v.model_copy(update={"traffic_share": v.traffic_share * 0.9}) for v in VARIANTS] + [
    next(v for v in VARIANTS if v.kind == "arm").model_copy(update={"name": "c", "traffic_share": 0.1})
]
ARMS = [v.name for v in VARIANTS if v.kind != "shadow"]
PRIMARY = next(v.name for v in VARIANTS if v.kind == "primary")
SHADOW = next(v.name for v in VARIANTS if v.kind == "shadow")
OTHER = next(v.name for v in VARIANTS if v.kind == "arm")
MATCH_P = {PRIMARY: 0.05, OTHER: 0.10}  # the other arm doubles the match rate
N_CANDIDATES, SHOWN = 12, 10


def world(sessions: int = 1000, seed: int = 0) -> tuple[list[Prediction], pa.Table]:
    """Sessions split 80/20 as the stack says; every 10th falls back to the default order; the shadow
    scores every request like the primary, with noise; one session was never scored (no arm)."""
    rng = np.random.default_rng(seed)
    preds: list[Prediction] = []
    rows: dict[str, list[object]] = {k: [] for k in ("session_id", "candidate_id", "position", "served_variant",
                                                     "served_model_id", "viewer_like", "match")}  # fmt: skip
    shares = np.cumsum([v.traffic_share for v in VARIANTS if v.kind != "shadow"])
    for i in range(sessions + 1):
        sid, cands = f"r{i:05d}", [f"u{j}" for j in rng.permutation(40)[:N_CANDIDATES]]
        arm = ARMS[int(np.searchsorted(shares, rng.random(), side="right"))]
        scores = rng.random(N_CANDIDATES)
        at = T0 + timedelta(seconds=i)
        if i < sessions:  # the last one was neither served nor scored
            for variant, s in ((arm, scores), (SHADOW, scores + rng.normal(0, 0.2, N_CANDIDATES))):
                preds.append(
                    Prediction(sid, "v", "discover", variant, f"m-{variant}", tuple(cands), tuple(map(float, s)),
                               at.isoformat(), (at + timedelta(seconds=1)).isoformat())
                )  # fmt: skip
        if i == 3:  # a redelivery scored again later: counted once
            preds.append(
                Prediction(sid, "v", "discover", arm, f"m-{arm}", tuple(cands), tuple(map(float, scores)),
                           at.isoformat(), (at + timedelta(seconds=9)).isoformat())
            )  # fmt: skip
        fell_back = i % 10 == 0
        order = cands if fell_back else [cands[j] for j in np.argsort(-scores)]
        match = rng.random(SHOWN) < MATCH_P[arm]
        for pos, c in enumerate(order[:SHOWN]):
            rows["session_id"].append(sid)
            rows["candidate_id"].append(c)
            rows["position"].append(pos)
            rows["served_variant"].append(None if fell_back else arm)
            rows["served_model_id"].append(None if fell_back else f"m-{arm}")
            rows["viewer_like"].append(bool(match[pos] or rng.random() < 0.3))
            rows["match"].append(bool(match[pos]))
    n = len(rows["session_id"])
    imps = contract_table(
        {
            **rows,
            "viewer_id": ["v"] * n,
            "surface": ["discover"] * n,
            "impression_time": [T0 + timedelta(minutes=1)] * n,
            "candidate_like": rows["match"],
        }
    )
    return preds, imps


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    root = tmp_path_factory.mktemp("offline")
    preds, imps = world()
    write_predictions(root, preds)
    folder = root / "impressions"
    folder.mkdir()
    pq.write_table(imps, folder / "day.parquet")
    return root, imps


def duckdb_data(predictions: pa.Table, impressions: pa.Table) -> ServedData:
    """The cloud's queries (BigQuery SQL), run on DuckDB."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE MACRO GENERATE_ARRAY(a, b) AS generate_series(a, b)")
    con.register("predictions", predictions)
    con.register("impressions", impressions)

    def run(sql: str, schema: pa.Schema) -> pa.Table:
        return con.sql(to_duckdb(sql)).to_arrow_table().cast(schema)

    return ServedData(
        sessions=lambda arms, s, e, k: run(served.sessions_sql("predictions", "impressions", arms, s, e, k),
                                           served.SESSIONS),
        agreement=lambda p, sh, s, e: run(served.agreement_sql("predictions", p, sh, s, e), served.AGREEMENT),
        outcomes=lambda v, s, e: run(served_outcomes_sql("predictions", "impressions", v, None, s, e), OUTCOMES),
    )  # fmt: skip


def test_the_sql_on_duckdb_gives_the_local_join_and_readout(landed: tuple[Path, pa.Table]) -> None:
    root, imps = landed
    preds = read_predictions(root)
    local, cloud = local_data(preds, imps), duckdb_data(preds, imps)
    mine = local.sessions(ARMS, START, END, 10)
    assert cloud.sessions(ARMS, START, END, 10).to_pylist() == mine.to_pylist()
    by_id = {r["session_id"]: r for r in mine.to_pylist()}
    assert by_id["r01000"]["arm"] is None, "never scored: no arm"
    assert by_id["r00010"]["fell_back"] and by_id["r00010"]["arm"] in ARMS, "a fallback stays in its arm"
    assert len(by_id) == 1001 and all(r["shown_top_k"] == SHOWN for r in by_id.values())
    pairs = local.agreement(PRIMARY, SHADOW, START, END)
    assert cloud.agreement(PRIMARY, SHADOW, START, END).to_pylist() == pairs.to_pylist()
    assert pairs.num_rows == sum(r["arm"] == PRIMARY for r in by_id.values())
    a, b = readout(VARIANTS, local, START, END), readout(VARIANTS, cloud, START, END)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_the_readout_finds_the_lift_the_split_and_the_shadows_agreement(landed: tuple[Path, pa.Table]) -> None:
    root, imps = landed
    doc = readout(WITH_EMPTY_ARM, local_data(read_predictions(root), imps), START, END)
    v = doc["variants"]
    assert doc["primary"] == PRIMARY and set(v) == {*(x.name for x in VARIANTS), "c"}
    assert v[PRIMARY]["sessions"] + v[OTHER]["sessions"] == 1000 and doc["sessions"]["unattributed"] == 1
    assert v[PRIMARY]["fallback_rate"] == pytest.approx(0.1, abs=0.03)
    lift = v[OTHER]["vs_primary"]["match_rate_at_k"]
    assert lift["relative_ci_low"] > 0 and lift["relative_ci_low"] < 1.0 < lift["relative_ci_high"]  # truly +100%
    assert v[PRIMARY]["match_rate_at_k"] == pytest.approx(0.05, abs=0.01)
    assert v["c"] == {"kind": "arm", "traffic_share": 0.1, "sessions": 0, "status": "no sessions", "models": []}
    assert "matches_per_session" not in v["c"], "no sessions is not zero matches"
    assert doc["sample_ratio_mismatch"]["detected"] is True, "an arm configured for 10% got nothing"
    shadow = v[SHADOW]["agreement_with_primary"]
    assert shadow["requests"] == v[PRIMARY]["sessions"]
    assert 0.3 < shadow["kendall_tau"] < 0.95 and 0.5 < shadow["overlap_at_10"] < 1.0, "noisy copy of the primary"
    same = v[SHADOW]["offline_on_requests_the_primary_scored"]
    assert same["shadow"]["requests"] == same["primary"]["requests"] > 0
    # outcomes do not depend on the scores here, so neither scoring separates matches
    assert 0.4 < same["primary"]["auc"] < 0.6


def test_the_split_as_configured_is_no_mismatch(landed: tuple[Path, pa.Table]) -> None:
    root, imps = landed
    srm = readout(VARIANTS, local_data(read_predictions(root), imps), START, END)["sample_ratio_mismatch"]
    assert srm["detected"] is False and srm["p_value"] > 0.01


def test_the_command_prints_json_text_and_html(landed: tuple[Path, pa.Table], tmp_path: Path, capsys) -> None:
    root, _ = landed
    args = ["experiment", "report", "--offline", str(root), "--impressions", str(root / "impressions")]
    assert main([*args, "--json", "--html", str(tmp_path / "r.html"), "--state-dir", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["variants"]) == {v.name for v in VARIANTS} and doc["stack"] == "local"
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "95% interval" in page and "np.float64" not in page
    assert main([*args, "--since", "2026-03-11", "--state-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "0 sessions shown since 2026-03-11 00:00:00 UTC" in text and f"{PRIMARY:10} primary" in text
    assert "no sessions" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--since", "last tuesday"], "--since 'last tuesday' is not a date"),
        (["--since", "2026-03-10T12:00:00"], "has no time zone"),
        (["--top-k", "0"], "--top-k must be at least 1"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    landed: tuple[Path, pa.Table], tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    root, _ = landed
    args = ["experiment", "report", "--offline", str(root), "--impressions", str(root / "impressions")]
    assert main([*args, *extra, "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_no_predictions_or_impressions_breaking_the_contract_exit_2(
    landed: tuple[Path, pa.Table], tmp_path: Path, capsys
) -> None:
    root, imps = landed
    empty = tmp_path / "empty-offline"
    empty.mkdir()
    argv = ["experiment", "report", "--impressions", str(root / "impressions"), "--state-dir", str(tmp_path)]
    assert main([*argv, "--offline", str(empty)]) == 2
    assert "no prediction records landed" in capsys.readouterr().err
    broken = tmp_path / "broken.parquet"
    pq.write_table(imps.drop_columns(["match"]), broken)
    assert main(["experiment", "report", "--offline", str(root), "--impressions", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "required column 'match' is missing" in err
    assert main(["experiment", "report", "--offline", str(root), "--state-dir", str(tmp_path)]) == 2
    assert "--impressions PATH or --market DIR is required" in capsys.readouterr().err
