"""`rerank dlq list|show|replay` on the emulator's dead-letter subscriptions and on a dead-letter file."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from app.local import clients
from app.local.services import LocalState
from app.naming import Names
from app.settings import StackSettings
from tests.integration.conftest import pull_all, rerank


def _publish_dead_letters(state: LocalState, settings: StackSettings) -> dict[str, bytes]:
    n, project = Names.of(settings), settings.gcp.project
    for sub in (n.requests_dead_letter_subscription, n.variant_subscription("primary")):
        clients.drain(state.pubsub_host, f"projects/{project}/subscriptions/{sub}")
    pub = clients.publisher(state.pubsub_host)
    topic = pub.topic_path(project, n.requests_dead_letter_topic)
    letters = {
        "unknown_user": b'{"request_id": "r1"}',
        "undecodable": b"\xff\xfe not utf-8",
    }
    for reason, data in letters.items():
        attrs = {"arm": "primary", "reason": reason, "detail": "d", "variant": "primary", "delivery_attempts": "5"}
        pub.publish(topic, data, **attrs).result(timeout=30)
    pub.publish(topic, b"again", arm="primary", reason="unknown_user", detail="d").result(timeout=30)
    return letters


def test_list_show_and_replay_by_reason(local_stack: LocalState, settings: StackSettings, state_dir: Path) -> None:
    letters = _publish_dead_letters(local_stack, settings)
    n = Names.of(settings)
    listed = rerank("dlq", "list", "--json", state_dir=state_dir)
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)["subscriptions"][n.requests_dead_letter_subscription]
    assert report == {"total": 3, "by_reason": {"undecodable": 1, "unknown_user": 2}}

    shown = rerank("dlq", "show", "--reason", "undecodable", "--json", state_dir=state_dir)
    [letter] = json.loads(shown.stdout)["letters"]
    assert base64.b64decode(letter["data_base64"]) == letters["undecodable"], "original bytes, not replacements"

    replayed = rerank("dlq", "replay", "--reason", "unknown_user", "--json", state_dir=state_dir)
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["replayed"] == 2
    project = settings.gcp.project
    back = pull_all(
        local_stack.pubsub_host, f"projects/{project}/subscriptions/{n.variant_subscription('primary')}", want=2
    )
    assert sorted(m.data for m in back) == sorted([letters["unknown_user"], b"again"])
    for m in back:
        assert dict(m.attributes) == {"arm": "primary"}, "replayed with the original attributes only"
    after = json.loads(rerank("dlq", "list", "--json", state_dir=state_dir).stdout)
    assert after["subscriptions"][n.requests_dead_letter_subscription]["by_reason"] == {"undecodable": 1}


def test_bad_arguments_are_one_line_errors(local_stack: LocalState, state_dir: Path, tmp_path: Path) -> None:
    for args in (["--subscription", "nope"], ["--since", "soon"], ["--file", str(tmp_path / "missing.jsonl")]):
        r = rerank("dlq", "list", *args, state_dir=state_dir)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_dead_letter_file_is_counted_and_its_original_lines_written_back(tmp_path: Path, state_dir: Path) -> None:
    dead = tmp_path / "events.jsonl.dead-letter.jsonl"
    raw = [b'{"entity": "x"}', b"\xff not utf-8"]
    dead.write_text(
        "".join(
            json.dumps({"reason": r, "detail": "d", "source": "f", "raw_base64": base64.b64encode(b).decode()}) + "\n"
            for r, b in zip(("unknown_entity", "undecodable"), raw, strict=True)
        )
    )
    listed = json.loads(rerank("dlq", "list", "--file", str(dead), "--json", state_dir=state_dir).stdout)
    assert listed["files"][str(dead)]["by_reason"] == {"undecodable": 1, "unknown_entity": 1}
    out = tmp_path / "again.jsonl"
    r = rerank("dlq", "replay", "--file", str(dead), "--reason", "undecodable", "--out", str(out), state_dir=state_dir)
    assert r.returncode == 0 and out.read_bytes() == raw[1] + b"\n"
