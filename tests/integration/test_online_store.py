"""The Redis online store against a real redis-server."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from app.featurestore.events import FeatureRow, event_attributes, from_pubsub, process_event
from app.featurestore.online import RedisOnlineStore, header_in_layout, layout_id, online_store
from app.featurestore.registry import Registry
from app.featurestore.samples import profile_v1
from app.settings import StackSettings

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = datetime(2026, 4, 1, tzinfo=UTC)


def row(registry: Registry, user: str, at: datetime, age: int) -> FeatureRow:
    msg = profile_v1(user, random.Random(user), T0 - timedelta(days=30))
    msg.age = age
    r = process_event(
        from_pubsub(msg.SerializeToString(), event_attributes("user_profile", "v1", at), "m"), registry, NOW
    )
    assert isinstance(r, FeatureRow)
    return r


def age_of(store: RedisOnlineStore, registry: Registry, user: str) -> float:
    m = store.read_matrix("user_profile", "v1", [user], ("age",))
    return float(m.values[0, 0])


def test_newer_event_wins_whatever_the_arrival_order(
    redis_db: redis.Redis, settings: StackSettings, registry: Registry
) -> None:
    store = online_store(redis_db, settings, registry)
    assert store.write_rows([row(registry, "a", T0 + timedelta(hours=2), 32)]).written == 1
    late = store.write_rows([row(registry, "a", T0 + timedelta(hours=1), 31), row(registry, "a", T0, 30)])
    assert (late.written, late.stale) == (0, 2)
    assert age_of(store, registry, "a") == 32
    assert store.write_rows([row(registry, "a", T0 + timedelta(hours=2), 99)]).stale == 1, "equal time: first wins"
    assert store.write_rows([row(registry, "a", T0 + timedelta(hours=3), 33)]).written == 1
    assert age_of(store, registry, "a") == 33


def test_out_of_order_within_one_batch(redis_db: redis.Redis, settings: StackSettings, registry: Registry) -> None:
    store = online_store(redis_db, settings, registry)
    rows = [row(registry, "b", T0 + timedelta(minutes=m), 20 + m) for m in (5, 1, 9, 3)]
    result = store.write_rows(rows)
    assert (result.written, result.stale) == (2, 2)
    assert age_of(store, registry, "b") == 29


def test_ttl_is_the_entity_types(redis_db: redis.Redis, settings: StackSettings, registry: Registry) -> None:
    store = online_store(redis_db, settings, registry)
    store.write_rows([row(registry, "c", T0, 40)])
    ttl_s = redis_db.pttl(store.key("user_profile", "v1", "c")) / 1000
    assert 30 * 86400 - 60 < ttl_s <= 30 * 86400


def test_batch_read_is_a_matrix_matching_the_naive_path(
    redis_db: redis.Redis, settings: StackSettings, registry: Registry
) -> None:
    store = online_store(redis_db, settings, registry)
    rows = [row(registry, f"u{i}", T0, 18 + i) for i in range(50)]
    store.write_rows(rows)
    features = registry.get("user_profile", "v1").online_features
    ids = [f"u{i}" for i in range(50)] + ["missing"]
    fast = store.read_matrix("user_profile", "v1", ids, features)
    slow = store.read_matrix_naive("user_profile", "v1", ids, features)
    assert fast.values.shape == (51, len(features)) and fast.values.dtype == np.float32
    assert np.array_equal(fast.values, slow.values, equal_nan=True)
    assert fast.found.tolist() == [True] * 50 + [False]
    assert np.isnan(fast.values[50]).all()
    np.testing.assert_allclose(fast.values[:50], np.array([r.vector for r in rows], dtype=np.float32))
    assert fast.event_time_us[0] == int(T0.timestamp() * 1e6)


def test_feature_subset_and_order_are_the_callers(
    redis_db: redis.Redis, settings: StackSettings, registry: Registry
) -> None:
    store = online_store(redis_db, settings, registry)
    r = row(registry, "d", T0, 44)
    store.write_rows([r])
    m = store.read_matrix("user_profile", "v1", ["d"], ("photo_count", "age", "not_a_feature"))
    assert m.values[0, 0] == r.values["photo_count"] and m.values[0, 1] == 44 and np.isnan(m.values[0, 2])


def test_vectors_of_an_older_layout_stay_readable(
    redis_db: redis.Redis, settings: StackSettings, registry: Registry
) -> None:
    """After an additive schema change the stored vectors keep their own layout until rewritten."""
    old_features = ("age", "photo_count")
    old_layout = {("user_profile", "v1"): old_features}
    old_store = RedisOnlineStore(redis_db, "rerank:local", {"user_profile": 60}, old_layout)
    old_row = row(registry, "e", T0, 50)
    old_store.write_rows(
        [
            FeatureRow(
                old_row.entity, old_row.version, "e", old_row.event_time, old_row.values, (50.0, 3.0), old_row.payload
            )
        ]
    )
    store = online_store(redis_db, settings, registry)
    store.write_rows([row(registry, "f", T0, 51)])
    m = store.read_matrix("user_profile", "v1", ["e", "f"], ("photo_count", "age", "pref_age_span"))
    assert m.values[0, :2].tolist() == [3.0, 50.0] and np.isnan(m.values[0, 2])
    assert m.values[1, 1] == 51 and not np.isnan(m.values[1, 2])
    assert redis_db.exists(f"rerank:local:layout:{layout_id(old_features)}")


def test_versions_live_side_by_side(redis_db: redis.Redis, settings: StackSettings, registry: Registry) -> None:
    store = online_store(redis_db, settings, registry)
    store.write_rows([row(registry, "g", T0, 25)])
    assert store.read_matrix("user_profile", "v2", ["g"], ("age",)).found.tolist() == [False]
    assert store.key("user_profile", "v2", "g") != store.key("user_profile", "v1", "g")


def _damaged_values() -> st.SearchStrategy[bytes]:
    """Any bytes, and bytes that look almost like the layout (a good header, then anything)."""
    good = b"%017d%s" % (int(T0.timestamp() * 1e6), b"0123456789ab")
    return st.one_of(st.binary(max_size=80), st.binary(max_size=40).map(lambda tail: good + tail))


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(stored=_damaged_values())
def test_a_damaged_value_is_missing_to_readers_and_replaced_by_a_newer_event(
    redis_db: redis.Redis, settings: StackSettings, registry: Registry, stored: bytes
) -> None:
    redis_db.flushdb()  # the fixture runs once for all examples
    store = online_store(redis_db, settings, registry)
    damaged: list[tuple[str, int]] = []
    store.on_damaged = lambda where, n: damaged.append((where, n))
    store.write_rows([row(registry, "neighbour", T0, 50)])
    redis_db.set(store.key("user_profile", "v1", "hurt"), stored)
    features = registry.get("user_profile", "v1").online_features
    for read in (store.read_matrix, store.read_matrix_naive):
        m = read("user_profile", "v1", ["neighbour", "hurt"], features)
        assert m.found[0] and m.values[0, features.index("age")] == 50, "the neighbour is read as stored"
        assert not m.found[1] and np.isnan(m.values[1]).all(), "a value not in the layout reads as missing"
    assert damaged == [("user_profile:v1", 1)] * 2
    result = store.write_rows([row(registry, "hurt", T0 + timedelta(days=1), 44), row(registry, "neighbour2", T0, 21)])
    # A value whose header looks right (but names no layout) is replaced as an older event would be.
    assert (result.written, result.repaired, result.stale) == (2, 0 if header_in_layout(stored) else 1, 0)
    assert age_of(store, registry, "hurt") == 44


def test_a_key_holding_another_type_is_a_conflict_and_costs_no_neighbour(
    redis_db: redis.Redis, settings: StackSettings, registry: Registry
) -> None:
    store = online_store(redis_db, settings, registry)
    redis_db.hset(store.key("user_profile", "v1", "hashed"), "age", "3")
    hashed, other = row(registry, "hashed", T0, 30), row(registry, "other", T0, 31)
    result = store.write_rows([hashed, other])
    assert (result.written, result.conflicts) == (1, (hashed,))
    m = store.read_matrix("user_profile", "v1", ["hashed", "other"], ("age",))
    assert m.found.tolist() == [False, True] and m.values[1, 0] == 31
    assert redis_db.type(store.key("user_profile", "v1", "hashed")) == b"hash", "left as it was"
