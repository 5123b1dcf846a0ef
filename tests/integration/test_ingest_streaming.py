"""Streaming ingest: Beam's ReadFromPubSub on the DirectRunner against Google's Pub/Sub emulator."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from app.featurestore.events import event_attributes
from app.featurestore.offline import ParquetOfflineStore
from app.featurestore.online import online_store
from app.featurestore.pipeline import run_streaming, stack_args, stop_streaming
from app.featurestore.registry import Registry
from app.featurestore.samples import bad_events
from app.local import clients
from app.local.services import LocalState
from app.naming import Names
from app.settings import StackSettings
from tests.integration.conftest import Channel, pull_all, rerank, wait_until
from tests.integration.ingest_inputs import AT, good_events


def offline_ids(root: Path, registry: Registry, entity: str, version: str) -> list[str]:
    return ParquetOfflineStore(root, registry).read_table(entity, version).column("entity_id").to_pylist()


def test_stream_lands_in_both_stores_and_dead_letters_each_bad_kind(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    local_stack: LocalState,
    channel: Channel,
    redis_db: redis.Redis,
    settings: StackSettings,
    registry: Registry,
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", local_stack.pubsub_host)
    pub = clients.publisher(local_stack.pubsub_host)
    good = good_events(8, "str-")
    bad = bad_events("str-")
    # One user's profile updated twice, the newer event published first (out of order).
    newer, older = good[0][3].__deepcopy__(), good[0][3].__deepcopy__()
    newer.age, older.age = 33, 32
    futures = [
        pub.publish(
            channel.topic, newer.SerializeToString(), **event_attributes("user_profile", "v1", AT + timedelta(days=2))
        )
    ]
    futures += [pub.publish(channel.topic, m.SerializeToString(), **event_attributes(e, v, at)) for e, v, at, m in good]
    futures += [pub.publish(channel.topic, data, **attrs) for data, attrs in bad.values()]
    futures.append(
        pub.publish(
            channel.topic, older.SerializeToString(), **event_attributes("user_profile", "v1", AT + timedelta(days=1))
        )
    )
    for f in futures:
        f.result(timeout=30)

    offline = tmp_path / "offline"
    result, _ = run_streaming(
        [
            "--subscription",
            channel.subscription,
            "--dead_letter_topic",
            channel.dead_letter_topic,
            "--redis_url",
            local_stack.redis_url,
            "--offline_path",
            str(offline),
            *stack_args(settings),
        ]
    )
    try:
        store = online_store(redis_db, settings, registry)
        users = sorted({m.user_id for _, _, _, m in good})
        wait_until(
            lambda: all(
                store.read_matrix(e, v, users, ("age",) if e == "user_profile" else ("sessions_7d",)).found.all()
                for e, v in (("user_profile", "v1"), ("user_profile", "v2"), ("user_activity", "v1"))
            )
        )
        wait_until(lambda: offline_ids(offline, registry, "user_profile", "v1").count(users[0]) == 3)
        dead = pull_all(local_stack.pubsub_host, channel.dead_letter_subscription, want=len(bad))
    finally:
        stop_streaming(result)

    assert sorted(m.attributes["reason"] for m in dead) == sorted(bad)
    by_reason = {m.attributes["reason"]: m for m in dead}
    assert by_reason["undecodable"].data == b"\xff\xfe\xfd", "the dead letter carries the original bytes"
    assert "age=12" in by_reason["schema_violation"].attributes["detail"]
    assert by_reason["unknown_version"].attributes["version"] == "v9"
    # Online: the newest of the three events for users[0] wins although it arrived first.
    m = store.read_matrix("user_profile", "v1", [users[0]], ("age",))
    assert m.values[0, 0] == 33
    # Offline: append-only, every accepted event is kept, the bad profile is not.
    assert sorted(offline_ids(offline, registry, "user_profile", "v2")) == users
    assert "str-bad" not in offline_ids(offline, registry, "user_profile", "v1")


def test_cli_streams_from_the_stacks_subscription_until_idle(
    local_stack: LocalState,
    state_dir: Path,
    redis_db: redis.Redis,
    settings: StackSettings,
    registry: Registry,
) -> None:
    names = Names.of(settings)
    pub = clients.publisher(local_stack.pubsub_host)
    topic = pub.topic_path(settings.gcp.project, names.feature_events_topic)
    good = good_events(5, "cli-")
    futures = [pub.publish(topic, m.SerializeToString(), **event_attributes(e, v, at)) for e, v, at, m in good]
    data, attrs = bad_events("cli-")["unknown_entity"]
    futures.append(pub.publish(topic, data, **attrs))
    for f in futures:
        f.result(timeout=30)
    out = rerank("ingest", "--subscription", "--idle-exit", "4", "--json", state_dir=state_dir)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["accepted"] == len(good) and summary["rejected_by_reason"] == {"unknown_entity": 1}
    dead = pull_all(
        local_stack.pubsub_host,
        clients.subscriber(local_stack.pubsub_host).subscription_path(
            settings.gcp.project, names.feature_dead_letter_subscription
        ),
        want=1,
    )
    assert [m.attributes["reason"] for m in dead] == ["unknown_entity"]
    store = online_store(redis_db, settings, registry)
    assert store.read_matrix("user_profile", "v2", [f"cli-u{i:06d}" for i in range(5)], ("age",)).found.all()
