"""`rerank ingest --input FILE` against the real local services."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from app.featurestore.events import json_line, write_delimited
from app.featurestore.offline import ParquetOfflineStore
from app.featurestore.online import online_store
from app.featurestore.registry import Registry
from app.local.services import LocalState
from app.settings import StackSettings
from tests.integration.conftest import rerank
from tests.integration.ingest_inputs import bad_json_lines, good_events


def stored_ids(state: LocalState, registry: Registry, entity: str, version: str, prefix: str) -> set[str]:
    table = ParquetOfflineStore(state.offline_dir, registry).read_table(entity, version)
    return {i for i in table.column("entity_id").to_pylist() if i.startswith(prefix)}


def test_bad_lines_are_dead_lettered_with_reasons_and_the_rest_lands(
    tmp_path: Path,
    local_stack: LocalState,
    state_dir: Path,
    redis_db: redis.Redis,
    settings: StackSettings,
    registry: Registry,
) -> None:
    good = good_events(10, "bnd-")
    bad = bad_json_lines("bnd-")
    lines = [json_line(*e) for e in good]
    for i, line in enumerate(bad.values()):
        lines.insert(3 + 7 * i, line)  # bad lines in between good ones
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")

    out = rerank("ingest", "--input", str(events), "--json", state_dir=state_dir)
    assert out.returncode == 1, out.stderr
    summary = json.loads(out.stdout)
    assert summary["accepted"] == len(good) == 40
    assert summary["rejected_by_reason"] == {reason: 1 for reason in bad}
    assert f"{len(bad)} of {len(good) + len(bad)} events were rejected; see {events}.dead-letter.jsonl" in out.stderr

    dead = [json.loads(line) for line in Path(summary["dead_letter_path"]).read_text().splitlines()]
    assert sorted(d["reason"] for d in dead) == sorted(bad)
    assert all(d["source"].startswith("events.jsonl:") and d["detail"] for d in dead)
    schema = next(d for d in dead if d["reason"] == "schema_violation")
    assert "age=12 is below the minimum 18 years" in schema["detail"]

    users = {f"bnd-u{i:06d}" for i in range(10)}
    store = online_store(redis_db, settings, registry)
    for entity, version in (("user_profile", "v1"), ("user_profile", "v2"), ("user_activity", "v1")):
        m = store.read_matrix(
            entity, version, sorted(users), ("age",) if entity == "user_profile" else ("sessions_7d",)
        )
        assert m.found.all(), (entity, version)
        assert stored_ids(local_stack, registry, entity, version, "bnd-") == users
    assert not stored_ids(local_stack, registry, "user_profile", "v1", "bnd-bad")


def test_length_delimited_file_ingests_clean(
    tmp_path: Path,
    local_stack: LocalState,
    state_dir: Path,
    redis_db: redis.Redis,
    settings: StackSettings,
    registry: Registry,
) -> None:
    events = tmp_path / "events.pb"
    with events.open("wb") as f:
        write_delimited(f, good_events(5, "pb-"))
    out = rerank("ingest", "--input", str(events), "--json", state_dir=state_dir)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["accepted"], summary["rejected"], summary["dead_letter_path"]) == (20, 0, None)
    # Two activity snapshots per user, in whatever order the runner delivers them: the later one must be online.
    assert summary["online_written"] + summary["online_stale"] == 20 and summary["online_written"] >= 15
    latest = {}
    for entity, _, at, msg in good_events(5, "pb-"):
        if entity == "user_activity":
            latest[msg.user_id] = max(latest.get(msg.user_id, at), at)
    store = online_store(redis_db, settings, registry)
    m = store.read_matrix("user_activity", "v1", sorted(latest), ("sessions_7d",))
    assert m.event_time_us.tolist() == [int(latest[u].timestamp() * 1_000_000) for u in sorted(latest)]
    assert len(stored_ids(local_stack, registry, "user_activity", "v1", "pb-")) == 5
    assert not Path(f"{events}.dead-letter.jsonl").exists()


def test_ingest_needs_running_services(tmp_path: Path) -> None:
    f = tmp_path / "e.jsonl"
    f.write_text("")
    out = rerank("ingest", "--input", str(f), state_dir=tmp_path / "empty")
    assert out.returncode == 1 and "start them with `rerank local up`" in out.stderr


def test_wrong_file_kind_is_a_usage_error(tmp_path: Path, local_stack: LocalState, state_dir: Path) -> None:
    f = tmp_path / "events.csv"
    f.write_text("a,b\n")
    out = rerank("ingest", "--input", str(f), state_dir=state_dir)
    assert out.returncode == 2 and "expected a .jsonl or .pb" in out.stderr
