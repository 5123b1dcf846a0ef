"""The dataset step in the engine on a small market: bad rows and duplicates set aside across
files, the old in-memory answer reproduced, every split a folder of bounded shards that keep each
session's rows together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from app.featurestore.engine import EngineLimits
from app.featurestore.events import FeatureRow, event_attributes, from_pubsub, process_event
from app.featurestore.offline import ParquetOfflineStore
from app.featurestore.registry import Registry
from app.market.simulate import MarketConfig, simulate
from app.market.writer import IMPRESSIONS_DIR, write_impressions
from app.ranking.dataset import (
    DatasetError,
    DatasetRequest,
    build_dataset,
    join_features,
    known_rows,
    split,
    time_windows,
)
from app.ranking.impressions import read_impressions

NOW = datetime(2026, 11, 1, tzinfo=UTC)
ENTITIES = (("user_profile", "v1"), ("user_activity", "v1"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict:
    root = tmp_path_factory.mktemp("world")
    market = simulate(MarketConfig(users=120, days=6, seed=5))
    rows = []
    for entity, version, at, msg in market.events:
        row = process_event(
            from_pubsub(msg.SerializeToString(), event_attributes(entity, version, at), "m"), registry, NOW
        )
        assert isinstance(row, FeatureRow)
        rows.append(row)
    offline = ParquetOfflineStore(root / "offline", registry)
    offline.write_rows(rows)
    folder = root / IMPRESSIONS_DIR
    write_impressions(market, folder)
    # A duplicate across files: the last day's first row again in a later file; and a row with a problem.
    last = sorted(folder.glob("*.parquet"))[-1]
    again = pq.read_table(last).slice(0, 1)
    pq.write_table(again, folder / "zz-late.parquet")
    bad = pq.read_table(last).slice(1, 1).set_column(3, "position", pa.array([-1], pa.int32()))
    pq.write_table(bad, folder / "zz-bad.parquet")
    return {"root": root, "offline": offline, "impressions": folder, "market": market}


def build(world: dict, tmp: Path, registry: Registry, **over: object) -> tuple:
    out = {name: tmp / name for name in ("train", "valid", "test")}
    req = DatasetRequest(str(world["impressions"]), ENTITIES, valid_days=1, test_days=1, **over)  # type: ignore[arg-type]
    built = build_dataset(
        world["offline"], req, out, tmp / "rejected", EngineLimits(tmp / "work", "256MB", 1), registry
    )
    return built, out


def test_the_engine_gives_the_in_memory_answer_in_shards(world: dict, tmp_path: Path, registry: Registry) -> None:
    built, out = build(world, tmp_path, registry, shard_rows=700)
    read = read_impressions(world["impressions"])
    joined, unknown = known_rows(join_features(world["offline"], read.table, registry, ENTITIES), registry, ENTITIES)
    expected = split(joined, time_windows(read.table, 1, 1))
    assert built.rejected == {
        "duplicate": 1,
        "negative_position": 1,
        **({"unknown_id": unknown.num_rows} if unknown.num_rows else {}),
    }
    assert pq.read_table(tmp_path / "rejected").num_rows == sum(built.rejected.values())
    order = [("session_id", "ascending"), ("position", "ascending")]
    for name, want in expected.items():
        part = built.splits[name]
        shards = sorted(out[name].glob("part-*.parquet"))
        assert part.shards == len(shards) > 1 and part.rows == want.num_rows
        assert part.columns == want.num_columns and part.bytes == sum(s.stat().st_size for s in shards)
        assert part.positives == pc.sum(want.column("match")).as_py()
        got = ds.dataset(out[name]).to_table()
        assert got.column_names == want.column_names
        assert got.sort_by(order).equals(want.sort_by(order).cast(got.schema)), name
        # Sessions: each in one shard only, its rows together and in shown order.
        seen: set[str] = set()
        for shard in shards:
            t = pq.read_table(shard)
            assert t.num_rows <= 2 * 700
            sessions = t.column("session_id").to_pylist()
            assert not seen & set(sessions), "a session's rows are all in one shard"
            seen |= set(sessions)
            runs = [s for i, s in enumerate(sessions) if i == 0 or s != sessions[i - 1]]
            assert len(runs) == len(set(runs)), "a session's rows are contiguous"
            assert t.equals(t.sort_by([*order, ("candidate_id", "ascending")]))


def test_windows_and_ttl_bounds_are_applied_in_the_engine(world: dict, tmp_path: Path, registry: Registry) -> None:
    start = world["market"].config.start
    built, _ = build(world, tmp_path, registry, window_days=4)
    assert built.windows.start == start + timedelta(days=2) and built.windows.end == start + timedelta(days=6)
    # A profile TTL of a day: only profiles written from a day before the window are read, so
    # members on record since before the market are unknown; newcomers' profiles are still seen.
    short, out = build(world, tmp_path / "ttl", registry, window_days=4, ttl_days={"user_profile": 1})
    assert short.rejected["unknown_id"] > built.rejected.get("unknown_id", 0)
    used = ds.dataset(out["train"]).to_table().column("viewer_user_profile_event_time")
    assert pc.min(used).as_py() >= built.windows.start - timedelta(days=1)
    with pytest.raises(DatasetError, match="no impressions between"):
        build(world, tmp_path / "none", registry, window_start=start + timedelta(days=30))
