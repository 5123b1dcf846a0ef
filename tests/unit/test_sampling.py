"""Negative sampling: which rows are kept (by key, deterministic) and the score correction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ranking.sampling import RATE_KEY, CalibratedModel, correct, keep, logit_offset, rate_of
from tests.unit.shards import sessions_table

rates = st.floats(min_value=1e-3, max_value=1.0, allow_nan=False)
probs = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(rate=rates, a=probs, b=probs)
def test_the_correction_is_monotone_and_stays_a_probability(rate: float, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    pa_, pb = correct(np.array([lo, hi]), rate)
    assert 0.0 <= pa_ <= pb <= 1.0
    assert pa_ <= lo + 1e-12, "keeping fewer negatives inflates scores: the correction only lowers them"


@settings(max_examples=20, deadline=None)
@given(q=st.lists(probs, min_size=1, max_size=20))
def test_rate_one_is_the_identity(q: list[float]) -> None:
    assert np.array_equal(correct(np.array(q), 1.0), np.array(q))


@settings(max_examples=20, deadline=None)
@given(rate=st.floats(min_value=0.01, max_value=1.0), q=st.floats(min_value=0.01, max_value=0.99))
def test_the_correction_adds_log_rate_to_the_log_odds(rate: float, q: float) -> None:
    p = correct(np.array([q]), rate)[0]
    assert np.log(p / (1 - p)) == pytest.approx(np.log(q / (1 - q)) + logit_offset(rate), abs=1e-9)


def test_sampled_rates_corrected_recover_the_true_base_rate() -> None:
    """Bucket by a feature: the match rate among kept rows, corrected, is the rate among all rows."""
    t = sessions_table(sessions=4000, seed=5, base=-3.0)
    rate = 0.2
    kept = keep(t, "match", rate)
    y = t.column("match").to_numpy(zero_copy_only=False).astype(float)
    a = t.column("viewer_signal").to_numpy()
    assert kept[y > 0].all(), "every positive is kept"
    assert (~kept[y == 0]).mean() == pytest.approx(1 - rate, abs=0.02)
    for lo, hi in ((-9, -0.5), (-0.5, 0.5), (0.5, 9)):
        bucket = (a >= lo) & (a < hi)
        truth = y[bucket].mean()
        sampled = y[bucket & kept].mean()
        assert sampled > truth * 2, "the sampled rate is inflated"
        assert correct(np.array([sampled]), rate)[0] == pytest.approx(truth, rel=0.08)


def test_rows_kept_depend_on_their_key_only() -> None:
    t = sessions_table(sessions=200, seed=1)
    whole = keep(t, "match", 0.3)
    pieces = np.concatenate([keep(t.slice(i, 333), "match", 0.3) for i in range(0, t.num_rows, 333)])
    shuffled = np.random.default_rng(0).permutation(t.num_rows)
    assert np.array_equal(whole, pieces), "batching does not change what is kept"
    assert np.array_equal(whole[shuffled], keep(t.take(pa.array(shuffled)), "match", 0.3))
    assert keep(t, "match", 1.0).all()


def test_the_rate_comes_from_the_models_metadata() -> None:
    assert rate_of(None) == 1.0 and rate_of({}) == 1.0, "a model from before sampling was trained on every row"
    assert rate_of({RATE_KEY: 0.25}) == 0.25
    with pytest.raises(ValueError, match=r"negative sampling rate must be in \(0, 1\], got 0"):
        rate_of({RATE_KEY: 0})

    class Fixed:
        def predict(self, data: np.ndarray) -> np.ndarray:
            return np.full(len(data), 0.5)

        def feature_name(self) -> list[str]:
            return ["x"]

    served = CalibratedModel(Fixed(), 0.25)
    assert served.predict(np.zeros((3, 1))) == pytest.approx([0.2] * 3)  # 0.5 / (0.5 + 0.5 / 0.25)
    assert served.feature_name() == ["x"]


def test_the_rate_comes_from_the_stack_per_variant(tmp_path: Path) -> None:
    import yaml

    from app.ranking.variant_training import training_parameters
    from app.settings import STACKS_DIR, StackConfigError, load_stack

    doc = yaml.safe_load((STACKS_DIR / "Pulumi.dev.yaml").read_text())
    assert training_parameters(load_stack("dev"))["negative_rate"] == 1.0, "no sampling unless the stack asks"
    doc["config"].setdefault("rerank-platform:training", {})["sampling"] = {"negative_rate": 0.2}
    b = next(v for v in doc["config"]["rerank-platform:serving"]["variants"] if v["name"] == "b")
    b.setdefault("training", {})["sampling"] = {"negative_rate": 0.5}
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    dev = load_stack("dev", tmp_path)
    assert training_parameters(dev)["negative_rate"] == 0.2 and training_parameters(dev, "b")["negative_rate"] == 0.5
    b["training"]["sampling"] = {"negative_rate": 0}
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(StackConfigError) as err:
        load_stack("dev", tmp_path)
    assert any("negative_rate" in p for p in err.value.problems), err.value.problems
