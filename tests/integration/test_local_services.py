from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from app.local.services import INSTALL_EMULATOR, LocalServiceError, alive, emulator_command
from tests.integration.conftest import rerank


def test_up_twice_status_down_through_the_cli(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = rerank("local", "up", "--json", state_dir=state_dir)
    assert first.returncode == 0, first.stderr
    up = json.loads(first.stdout)
    assert up["started"] == ["redis", "pubsub", "dynamodb"]
    assert "topic rerank-local-feature-events" in up["created"]
    assert "subscription rerank-local-rerank-requests-shadow" in up["created"]
    assert "table rerank-local-rerank-results" in up["created"]
    try:
        again = json.loads(rerank("local", "up", "--json", state_dir=state_dir).stdout)
        assert again["started"] == [] and again["created"] == [], "a second up reuses what runs"
        assert again["endpoints"] == up["endpoints"]

        status = rerank("local", "status", "--json", state_dir=state_dir)
        report = json.loads(status.stdout)
        assert status.returncode == 0 and report["healthy"] is True
        assert report["missing_topics"] == report["missing_subscriptions"] == report["missing_tables"] == []
        pids = [s["pid"] for s in report["services"].values()]
        assert all(alive(p) for p in pids)
    finally:
        down = rerank("local", "down", "--json", state_dir=state_dir)
    assert json.loads(down.stdout)["stopped"] == ["redis", "pubsub", "dynamodb"]
    assert not any(alive(p) for p in pids)
    after = rerank("local", "status", state_dir=state_dir)
    assert after.returncode == 1 and "not running" in after.stdout


def test_a_dead_service_is_reported_and_restarted_by_up(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    up = json.loads(rerank("local", "up", "--json", state_dir=state_dir).stdout)
    try:
        status = json.loads(rerank("local", "status", "--json", state_dir=state_dir).stdout)
        redis_pid = status["services"]["redis"]["pid"]
        os.killpg(redis_pid, signal.SIGKILL)
        broken = rerank("local", "status", state_dir=state_dir)
        assert broken.returncode == 1 and "redis" in broken.stdout and "DOWN" in broken.stdout
        again = json.loads(rerank("local", "up", "--json", state_dir=state_dir).stdout)
        assert again["started"] == ["redis"]
        assert again["endpoints"]["pubsub"] == up["endpoints"]["pubsub"]
        assert again["endpoints"]["redis"] == up["endpoints"]["redis"], "a restart keeps the endpoint"
    finally:
        rerank("local", "down", state_dir=state_dir)


def test_missing_emulator_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_BIN", str(tmp_path / "no-such-emulator"))
    with pytest.raises(LocalServiceError) as err:
        emulator_command(1234)
    assert str(err.value) == INSTALL_EMULATOR
    assert "gcloud components install pubsub-emulator" in INSTALL_EMULATOR


def test_missing_emulator_through_the_cli_starts_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PUBSUB_EMULATOR_BIN": str(tmp_path / "missing")}
    out = rerank("local", "up", state_dir=tmp_path / "s", timeout=120, env=env)
    assert out.returncode == 1
    assert out.stderr.startswith("rerank local: Google's Pub/Sub emulator was not found.")
    state = json.loads((tmp_path / "s/local/state.json").read_text())
    assert state["services"] == {}, "redis was started before the emulator failed and must be stopped again"


def test_unknown_stack_is_a_usage_error(tmp_path: Path) -> None:
    out = rerank("local", "up", "--stack", "nosuch", state_dir=tmp_path)
    assert out.returncode == 2 and "no such stack file" in out.stderr


def test_down_drops_the_stacks_files_unless_asked_to_keep_them(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    up = json.loads(rerank("local", "up", "--json", state_dir=state_dir).stdout)
    marker = Path(up["endpoints"]["offline"]) / "user_profile" / "v1" / "kept.parquet"
    marker.write_bytes(b"x")
    rerank("local", "down", "--keep-data", state_dir=state_dir)
    assert marker.exists()
    rerank("local", "up", state_dir=state_dir)
    rerank("local", "down", state_dir=state_dir)
    assert not marker.exists() and not Path(up["endpoints"]["offline"]).exists()
