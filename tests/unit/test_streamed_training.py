"""Training and evaluation read a dataset artifact batch by batch, in both forms (one Parquet file,
a folder of shards), and give what the in-memory path gives on the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from app.ranking.batches import batches, session_chunks
from app.ranking.binned import FeatureRows, scan
from app.ranking.dataset import columns
from app.ranking.evaluation import EvaluationError, Evaluator, evaluate
from app.ranking.features import feature_matrix
from app.ranking.metrics import ScoreHistogram
from app.ranking.model import group_sizes, train_from_shards, train_lambdarank, train_pointwise
from app.ranking.sampling import correct
from tests.unit.shards import FEATURES, sessions_table, write_shards, write_single

PARAMS = {"num_boost_round": 30, "min_data_in_leaf": 20}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("streamed")
    train, valid = sessions_table(600, seed=1), sessions_table(200, seed=2)
    return {
        "train": train,
        "valid": valid,
        "train_file": write_single(train, root / "train.parquet"),
        "train_shards": write_shards(train, root / "train"),
        "valid_file": write_single(valid, root / "valid.parquet"),
        "valid_shards": write_shards(valid, root / "valid", shards=2),
    }


def test_session_chunks_hand_over_every_session_whole_in_both_forms(data: dict) -> None:
    for path in (data["train_file"], data["train_shards"]):
        chunks = list(session_chunks(path, ["session_id"], rows=333))  # batches cut sessions of 10
        assert len(chunks) > 10
        ids = [c.column("session_id").to_pylist() for c in chunks]
        assert [s for c in ids for s in c] == data["train"].column("session_id").to_pylist(), "every row, in order"
        assert not {c[-1] for c in ids[:-1]} & {c[0] for c in ids[1:]}, "no session spans two chunks"


def test_feature_rows_read_forward_and_restart_when_asked_for_an_earlier_row(data: dict) -> None:
    x = feature_matrix(columns(data["train"]), FEATURES)
    rows = FeatureRows(data["train_shards"], FEATURES, len(x), "match", rows=500)
    assert np.array_equal(rows[0:1200], x[:1200]) and np.array_equal(rows[1200:6000], x[1200:])
    assert np.array_equal(rows[17], x[17]) and rows[17].dtype == np.float64
    assert len(rows._x) <= 500, "one batch at a time"
    with pytest.raises(IndexError):
        rows[len(x)]


@pytest.mark.parametrize("form", ["file", "shards"])
def test_the_pointwise_model_from_batches_is_the_in_memory_model(data: dict, form: str) -> None:
    booster, learnt = train_from_shards("pointwise", data[f"train_{form}"], data[f"valid_{form}"], FEATURES, PARAMS)
    tr, va = columns(data["train"]), columns(data["valid"])
    x, xv = feature_matrix(tr, FEATURES), feature_matrix(va, FEATURES)
    memory = train_pointwise(x, tr["match"], xv, va["match"], FEATURES, PARAMS)
    assert learnt["rows"] == len(x) and learnt["positives"] == int(tr["match"].sum())
    assert np.allclose(booster.predict(xv), memory.predict(xv), atol=1e-9)


def test_lambdarank_groups_come_from_a_streaming_pass(data: dict) -> None:
    s = scan(data["train_shards"], "viewer_like", groups=True, rows=333)
    assert s.group_sizes.tolist() == group_sizes(columns(data["train"])["session_id"]).tolist()
    booster, learnt = train_from_shards("lambdarank", data["train_shards"], data["valid_file"], FEATURES, PARAMS)
    tr, va = columns(data["train"]), columns(data["valid"])
    xv = feature_matrix(va, FEATURES)
    memory = train_lambdarank(
        feature_matrix(tr, FEATURES), tr["viewer_like"], tr["session_id"], xv, va["viewer_like"], va["session_id"],
        FEATURES, PARAMS,
    )  # fmt: skip
    assert learnt["sessions"] == 600 and np.allclose(booster.predict(xv), memory.predict(xv), atol=1e-9)
    with pytest.raises(ValueError, match="LambdaRank learns from whole sessions"):
        train_from_shards("lambdarank", data["train_shards"], data["valid_file"], FEATURES, PARAMS, 0.5)


def test_a_model_on_sampled_negatives_is_calibrated_once_corrected(data: dict) -> None:
    rate = 0.25
    sampled, learnt = train_from_shards("pointwise", data["train_shards"], data["valid_shards"], FEATURES, PARAMS, rate)
    full, _ = train_from_shards("pointwise", data["train_shards"], data["valid_shards"], FEATURES, PARAMS)
    tr, va = columns(data["train"]), columns(data["valid"])
    positives = int(tr["match"].sum())
    assert learnt["positives"] == positives
    assert learnt["rows"] - positives == pytest.approx((len(tr["match"]) - positives) * rate, rel=0.1)
    xv, truth = feature_matrix(va, FEATURES), va["match"].mean()
    raw = sampled.predict(xv)
    assert raw.mean() > 2 * truth, "uncorrected, the scores carry the sampled base rate"
    assert abs(correct(raw, rate).mean() - truth) < 0.02
    assert abs(full.predict(xv).mean() - truth) < 0.02


def _scores(table: pa.Table) -> dict[str, np.ndarray]:
    c = columns(table)
    good = 1 / (1 + np.exp(-(c["viewer_signal"] * 1.5 + c["candidate_signal"] - 3)))
    return {"model": good, "baseline": c["viewer_noise"], "serving": 1 / (1 + np.exp(-(c["viewer_signal"] - 3)))}


def test_evaluation_in_chunks_of_sessions_gives_the_figures_of_one_pass(data: dict) -> None:
    table = data["train"]
    whole, curve = evaluate(columns(table), _scores(table))
    e = Evaluator()
    for chunk in session_chunks(data["train_shards"], rows=333):
        cols = columns(chunk)
        e.add(cols["session_id"], cols["match"], _scores(chunk))
    streamed, streamed_curve = e.result()
    assert set(streamed) == set(whole)
    for name, value in whole.items():
        assert streamed[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert streamed_curve == curve and len(curve["fpr"]) <= 300
    exact = roc_auc_score(columns(table)["match"], _scores(table)["model"])
    assert abs(whole["model_auc"] - exact) <= whole["model_auc_error_bound"] < 1e-4


def test_test_days_without_a_match_are_one_clear_line(tmp_path: Path) -> None:
    t = sessions_table(50, seed=3)
    none = t.set_column(t.schema.get_field_index("match"), "match", pa.array([False] * t.num_rows))
    with pytest.raises(EvaluationError, match=r"^the test days' 500 rows hold no match: AUC and NDCG@10 are undefined"):
        evaluate(columns(none), _scores(none))
    assert sum(b.num_rows for b in batches(write_single(none, tmp_path / "t.parquet"))) == 500


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=400),
    seed=st.integers(min_value=0, max_value=2**16),
    ties=st.booleans(),
)
def test_histogram_auc_is_within_its_stated_bound_of_the_exact_auc(n: int, seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    y = np.r_[0, 1, (rng.random(n) < 0.3).astype(int)]
    s = rng.normal(size=len(y)) + y
    s = np.round(s, 1) if ties else s
    h = ScoreHistogram()
    h.add(y, s)
    auc, bound = h.auc()
    assert abs(auc - roc_auc_score(y, s)) <= bound + 1e-12
