"""The training benchmark's parts on small data: sizes, the growth fit, and the fast generator's
output read by the product's own dataset step (the contract, the offline store's layout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.featurestore.engine import EngineLimits
from app.featurestore.offline import ParquetOfflineStore
from app.featurestore.registry import Registry
from app.ranking.dataset import DatasetRequest, build_dataset
from bench.training import parse_sizes, slope
from bench.training_market import generate


def test_sizes_and_the_growth_fit() -> None:
    assert parse_sizes("1M, 300k,50000") == [1_000_000, 300_000, 50_000]
    with pytest.raises(ValueError, match="'lots' is not a count"):
        parse_sizes("1M,lots")
    with pytest.raises(ValueError, match="below 10k"):
        parse_sizes("500")
    assert slope([1, 10, 100], [2.0, 20.0, 200.0]) == 1.0 and slope([1, 10], [5.0, 5.0]) == 0.0
    assert slope([1_000_000], [3.0]) is None


def test_the_generated_market_is_read_by_the_dataset_step(tmp_path: Path, registry: Registry) -> None:
    summary = generate(tmp_path / "m", 30_000, registry, days=6)
    assert 28_000 <= summary["impressions"] <= 30_000 and 0.005 < summary["match_rate"] < 0.2
    store = ParquetOfflineStore(tmp_path / "m" / "offline", registry)
    req = DatasetRequest(str(tmp_path / "m" / "impressions"), (("user_profile", "v1"), ("user_activity", "v1")), 1, 1)
    out = {n: tmp_path / n for n in ("train", "valid", "test")}
    built = build_dataset(store, req, out, tmp_path / "rejected", EngineLimits(tmp_path / "w", "256MB", 1), registry)
    assert built.rejected == {}, "every generated row keeps the contract and every user has a profile"
    assert sum(s.rows for s in built.splits.values()) == summary["impressions"]
    assert built.splits["test"].positives > 0


@pytest.mark.parametrize(
    ("argv", "target", "limit"),
    [
        (["bench", "pit-sql", "--impressions", "10k"], "run_pit_sql", "2GB"),
        (["bench", "pit-sql", "--impressions", "10k", "--engine-memory=3GB"], "run_pit_sql", "3GB"),
        (["bench", "training", "--impressions", "10k"], "run", "1GB"),
        (["bench", "training", "--impressions", "10k", "--engine-memory=512MB"], "run", "512MB"),
    ],
)
def test_the_engine_memory_flag_leaves_each_benchmark_its_own_default(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], target: str, limit: str
) -> None:
    # The windowed join OOMed at 1M under the training steps' 1GB; a shared CLI default hid the runner's 2GB.
    import inspect

    from app import cli
    from bench import training

    real = inspect.signature(getattr(training, target))
    seen: dict[str, object] = {}

    def record(*args: object, **kwargs: object) -> dict[str, int]:
        bound = real.bind(*args, **kwargs)
        bound.apply_defaults()
        seen.update(bound.arguments)
        return {"recorded": 1}

    monkeypatch.setattr(training, target, record)
    assert cli.main([*argv, "--json"]) == 0
    assert seen["memory_limit"] == limit
