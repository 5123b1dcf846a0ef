"""The ingest invariant under store faults, counted per store: every accepted event is, in the
end, written to that store or dead-lettered with a reason (``store_unavailable``); a refused
write is never counted as written, and the run says so in its summary and exit code.

Faults: Redis at ``maxmemory`` with ``noeviction`` (CONFIG SET), Redis killed mid-stream, and a
full disk under the offline store (OSError ENOSPC injected at the Parquet writer: a tmpfs cannot
be mounted on every test machine). The writers' retry window is shortened to keep each to seconds.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.featurestore.events import event_attributes, json_line
from app.featurestore.offline import ParquetOfflineStore
from app.featurestore.online import online_store
from app.featurestore.pipeline import run_bounded, run_streaming, stack_args, stop_streaming, summary_of
from app.featurestore.registry import Registry
from app.local import clients
from app.local.services import LocalState, start_services
from app.settings import StackSettings
from tests.integration.conftest import Channel, pull_all, wait_until
from tests.integration.ingest_inputs import good_events


@pytest.fixture()
def full_redis(redis_db: redis.Redis) -> Iterator[redis.Redis]:
    """Redis refusing every write: at maxmemory with noeviction, as a full Memorystore would."""
    redis_db.config_set("maxmemory-policy", "noeviction")
    redis_db.config_set("maxmemory", "1")
    yield redis_db
    redis_db.config_set("maxmemory", "0")


def _events_file(tmp_path: Path, users: int, prefix: str) -> tuple[Path, list[tuple]]:
    good = good_events(users, prefix)
    path = tmp_path / f"{prefix}events.jsonl"
    path.write_text("\n".join(json_line(*e) for e in good) + "\n")
    return path, good


def _argv(path: Path, state: LocalState, offline: Path, settings: StackSettings, retry_s: float) -> list[str]:
    return [
        "--input",
        str(path),
        "--redis_url",
        state.redis_url,
        "--offline_path",
        str(offline),
        "--store_retry_seconds",
        str(retry_s),
        *stack_args(settings),
    ]


def _online_found(r: redis.Redis, settings: StackSettings, registry: Registry, good: list[tuple]) -> int:
    store = online_store(r, settings, registry)
    return sum(
        int(store.read_matrix(e, v, [m.user_id], ("age",) if e == "user_profile" else ("sessions_7d",)).found[0])
        for e, v, _, m in good
    )


def _offline_rows(root: Path, registry: Registry, prefix: str) -> int:
    store = ParquetOfflineStore(root, registry)
    return sum(
        sum(1 for i in store.read_table(e, v).column("entity_id").to_pylist() if i.startswith(prefix))
        for e, v in (("user_profile", "v1"), ("user_profile", "v2"), ("user_activity", "v1"))
    )


def test_file_ingest_into_a_full_redis_dead_letters_what_it_could_not_store_and_exits_1(
    tmp_path: Path,
    local_stack: LocalState,
    state_dir: Path,
    full_redis: redis.Redis,
    settings: StackSettings,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real command line, in process (so the retry window can be shortened): no traceback."""
    import app.featurestore.pipeline
    from app.cli import main

    monkeypatch.setattr(app.featurestore.pipeline, "STORE_RETRY_SECONDS", 1.0)
    path, good = _events_file(tmp_path, 5, "oom-")
    code = main(["ingest", "--input", str(path), "--json", "--state-dir", str(state_dir)])
    out, err = capsys.readouterr()
    summary = json.loads(out)
    dead = [json.loads(line) for line in Path(summary["dead_letter_path"]).read_text().splitlines()]
    count = {"published": len(good), "online_written": summary["online_written"], "dead_lettered": len(dead)}
    print("file ingest, Redis full:", count, "offline", summary["offline_written"])
    # One line says what happened; besides it stderr holds only the ingest's own progress lines.
    said = [line for line in err.strip().splitlines() if not line.startswith("ingest: ")]
    assert code == 1 and "Traceback" not in err and len(said) == 1, err
    assert f"{len(good)} accepted events were not stored" in err
    assert summary["accepted"] == len(good) and summary["not_stored"] == len(good)
    assert summary["rejected_by_reason"] == {"store_unavailable": len(good)}
    assert count["online_written"] + count["dead_lettered"] == len(good) and summary["online_written"] == 0
    assert summary["offline_written"] == len(good), "the offline store took them: only the online write failed"
    assert {d["reason"] for d in dead} == {"store_unavailable"} and all("maxmemory" in d["detail"] for d in dead)
    full_redis.config_set("maxmemory", "0")
    assert _online_found(full_redis, settings, registry, good) == 0, "nothing counted as written was refused"


def test_redis_refusing_writes_for_less_than_the_retry_window_loses_nothing(
    tmp_path: Path, local_stack: LocalState, full_redis: redis.Redis, settings: StackSettings, registry: Registry
) -> None:
    path, good = _events_file(tmp_path, 5, "oom2-")
    threading.Timer(2.0, lambda: full_redis.config_set("maxmemory", "0")).start()
    summary = run_bounded(_argv(path, local_stack, tmp_path / "offline", settings, retry_s=20))
    print("file ingest, Redis full for 2 s:", summary.to_dict())
    assert summary.online_written == len(good) and summary.not_stored == 0 and summary.rejected_total == 0
    assert _online_found(full_redis, settings, registry, good) == len(good)


def test_a_full_disk_under_the_offline_store_dead_letters_its_rows_and_leaves_no_partial_file(
    tmp_path: Path,
    local_stack: LocalState,
    redis_db: redis.Redis,
    settings: StackSettings,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import app.featurestore.offline

    real_write = app.featurestore.offline.pq.write_table

    def no_space(table: object, where: object, **kwargs: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 half")  # as a write cut short by the full disk
        raise OSError(errno.ENOSPC, "No space left on device", str(where))

    monkeypatch.setattr(app.featurestore.offline.pq, "write_table", no_space)
    path, good = _events_file(tmp_path, 5, "disk-")
    offline = tmp_path / "offline"
    summary = run_bounded(_argv(path, local_stack, offline, settings, retry_s=0.5))
    monkeypatch.setattr(app.featurestore.offline.pq, "write_table", real_write)
    dead = [json.loads(line) for line in Path(summary.dead_letter_path or "").read_text().splitlines()]
    print("file ingest, disk full:", {"published": len(good), "offline_written": summary.offline_written}, len(dead))
    assert summary.offline_written == 0 and len(dead) == len(good) == summary.not_stored
    assert {d["reason"] for d in dead} == {"store_unavailable"}
    assert all("offline store" in d["detail"] and "No space left" in d["detail"] for d in dead)
    assert summary.online_written == len(good), "the online store took them"
    assert not [p for p in offline.rglob("*") if p.is_file()], "no partial or temporary file left behind"
    # The dead letters replay as they are (rerank dlq replay --file writes their lines back out).
    from app.deadletters import read_file

    replay = tmp_path / "replay.jsonl"
    replay.write_bytes(b"".join(x.data + b"\n" for x in read_file(Path(summary.dead_letter_path or ""))))
    again = run_bounded(_argv(replay, local_stack, offline, settings, retry_s=0.5))
    assert again.rejected_total == 0 and again.offline_written == len(good) and again.online_stale == len(good)


def test_redis_killed_mid_stream_every_event_is_written_or_dead_lettered(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    local_stack: LocalState,
    channel: Channel,
    redis_db: redis.Redis,
    settings: StackSettings,
    registry: Registry,
) -> None:
    """Streaming: events before the kill are written; events while Redis stays down longer than the
    retry window are dead-lettered on the topic as store_unavailable; none is lost or counted twice."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", local_stack.pubsub_host)
    pub = clients.publisher(local_stack.pubsub_host)
    before, during = good_events(3, "kill-a-"), good_events(3, "kill-b-")

    def publish(events: list[tuple]) -> None:
        for f in [
            pub.publish(channel.topic, m.SerializeToString(), **event_attributes(e, v, at)) for e, v, at, m in events
        ]:
            f.result(timeout=30)

    offline = tmp_path / "offline"
    result, run_id = run_streaming(
        [
            "--subscription",
            channel.subscription,
            "--dead_letter_topic",
            channel.dead_letter_topic,
            "--redis_url",
            local_stack.redis_url,
            "--offline_path",
            str(offline),
            "--store_retry_seconds",
            "1",
            *stack_args(settings),
        ]
    )
    try:
        publish(before)
        wait_until(lambda: summary_of(run_id).online_written == len(before), timeout=60, what="first events online")
        os.killpg(local_stack.services["redis"].pid, signal.SIGKILL)
        publish(during)
        dead = pull_all(local_stack.pubsub_host, channel.dead_letter_subscription, want=len(during), timeout=60)
        summary = summary_of(run_id)
    finally:
        stop_streaming(result)
        state, _ = start_services(settings.stack, settings.gcp.project, Path(local_stack.dir).parent)
        local_stack.services["redis"] = state.services["redis"]  # the session's state names the new process
    count = {
        "published": len(before) + len(during),
        "online_written": summary.online_written,
        "dead_lettered": len(dead),
        "offline_written": summary.offline_written,
    }
    print("streaming, Redis killed:", count)
    assert summary.online_written == len(before) and len(dead) == len(during) == summary.not_stored, count
    assert {m.attributes["reason"] for m in dead} == {"store_unavailable"}
    assert sorted(m.attributes["entity"] for m in dead) == sorted(e for e, _, _, _ in during)
    assert _offline_rows(offline, registry, "kill-") == len(before) + len(during)
    assert state.redis_url == local_stack.redis_url
