"""Property tests at the ingest boundary: a JSON line, a Pub/Sub feature event, a file of them.

Whatever arrives (arbitrary bytes, arbitrary JSON, a valid event with one field mutated), the
answer is a row or a dead letter with a known reason and the original bytes; nothing raises, and
an accepted row is inside the stack's limits (time window, id rules), so the online store's
fixed-width header always holds it.
"""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.bounds import DEFAULT_LIMITS, id_problem
from app.featurestore.events import (
    REASONS,
    DeadLetter,
    FeatureRow,
    event_attributes,
    format_event_time,
    from_json_line,
    from_pubsub,
    json_line,
    process_event,
)
from app.featurestore.online import encode_value, epoch_us
from app.featurestore.pipeline import read_file_events
from app.featurestore.registry import default_registry
from app.featurestore.samples import activity_v1, profile_v1

NOW = datetime(2026, 3, 2, tzinfo=UTC)
AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
REGISTRY = default_registry()
BOUNDED = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def valid_line(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    if seed % 2:
        return json.loads(json_line("user_profile", "v1", AT, profile_v1(f"u{seed}", rng, AT - timedelta(days=30))))
    return json.loads(json_line("user_activity", "v1", AT, activity_v1(f"u{seed}", rng, AT - timedelta(hours=3))))


def check(result: FeatureRow | DeadLetter, raw: bytes) -> None:
    """The invariant of every outcome."""
    if isinstance(result, DeadLetter):
        assert result.reason in REASONS, result.reason
        assert result.raw == raw, "a dead letter keeps the bytes that arrived"
        for key, value in result.attributes().items():
            assert isinstance(value, str) and len(value.encode()) <= 1024, key
        json.loads(result.to_json())
        return
    assert NOW - timedelta(days=DEFAULT_LIMITS.max_event_age_days) <= result.event_time
    assert result.event_time <= NOW + timedelta(seconds=DEFAULT_LIMITS.max_clock_skew_seconds)
    assert id_problem(result.entity_id, "id") is None
    header = encode_value(epoch_us(result), "0" * 12, result.vector)[:17]
    assert header.isdigit(), "the online store's time header stays 17 digits"


@BOUNDED
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_a_json_line(line: bytes) -> None:
    check(process_event(from_json_line(line, "f:1"), REGISTRY, NOW), line)


@BOUNDED
@given(json_values)
def test_arbitrary_json_as_a_json_line(doc: Any) -> None:
    line = json.dumps(doc).encode()
    check(process_event(from_json_line(line, "f:1"), REGISTRY, NOW), line)


@BOUNDED
@given(
    st.integers(min_value=0, max_value=50),
    st.sampled_from(["entity", "version", "event_time", "data", "data.user_id", "data.age", "data.last_active_time"]),
    json_values,
)
def test_a_valid_event_with_one_field_mutated(seed: int, field: str, value: Any) -> None:
    doc = valid_line(seed)
    if field.startswith("data."):
        doc["data"][field.removeprefix("data.")] = value
    else:
        doc[field] = value
    line = json.dumps(doc).encode()
    check(process_event(from_json_line(line, "f:1"), REGISTRY, NOW), line)


@BOUNDED
@given(st.datetimes(timezones=st.sampled_from([UTC, None])) | st.just(datetime.min), st.text(max_size=8))
def test_event_times_are_accepted_only_inside_the_window(at: datetime, suffix: str) -> None:
    text = at.isoformat() + suffix
    msg = activity_v1("u1", random.Random(0), NOW - timedelta(days=30 * 365))
    raw = from_pubsub(msg.SerializeToString(), {**event_attributes("user_activity", "v1", AT), "event_time": text}, "m")
    result = process_event(raw, REGISTRY, NOW)
    check(result, raw.raw)
    if isinstance(result, DeadLetter):
        assert result.reason == "bad_event_time"


def test_far_past_and_future_times_are_refused_with_a_reason() -> None:
    msg = activity_v1("u1", random.Random(0), datetime(1600, 1, 1, tzinfo=UTC))
    for at in (datetime(1600, 1, 2, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC), NOW - timedelta(days=4000)):
        attrs = event_attributes("user_activity", "v1", at)
        result = process_event(from_pubsub(msg.SerializeToString(), attrs, "m"), REGISTRY, NOW)
        assert isinstance(result, DeadLetter) and result.reason == "bad_event_time", at
    ok = event_attributes("user_activity", "v1", NOW - timedelta(days=1))
    assert isinstance(process_event(from_pubsub(msg.SerializeToString(), ok, "m"), REGISTRY, NOW), FeatureRow)


def test_ids_beyond_the_limits_are_refused() -> None:
    for uid in ("x" * 100_000, "a\nb", "tab\there"):
        msg = profile_v1(uid, random.Random(1), AT - timedelta(days=3))
        result = process_event(
            from_pubsub(msg.SerializeToString(), event_attributes("user_profile", "v1", AT), "m"), REGISTRY, NOW
        )
        assert isinstance(result, DeadLetter) and result.reason == "bad_id", uid[:10]


def test_oversized_and_deeply_nested_lines_are_dead_lettered() -> None:
    big = b'{"data": {"x": "' + b"a" * (DEFAULT_LIMITS.max_message_bytes + 1) + b'"}}'
    assert process_event(from_json_line(big, "f:1"), REGISTRY, NOW).reason == "too_large"  # type: ignore[union-attr]
    deep = b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    dead = process_event(from_json_line(deep, "f:2"), REGISTRY, NOW)
    assert isinstance(dead, DeadLetter) and dead.reason == "undecodable" and "nested" in dead.detail


@BOUNDED
@given(st.binary(max_size=300), st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=4))
def test_arbitrary_pubsub_events(data: bytes, attrs: dict[str, str]) -> None:
    check(process_event(from_pubsub(data, attrs, "m"), REGISTRY, NOW), data)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.binary(min_size=1, max_size=120).filter(lambda b: b"\n" not in b and b.strip()), max_size=6))
def test_a_file_keeps_every_good_line_around_bad_ones(tmp_path: Path, bad_lines: list[bytes]) -> None:
    good = [json.dumps(valid_line(i)).encode() for i in range(4)]
    lines = [*good[:2], *bad_lines, *good[2:]]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    now = datetime.now(UTC)
    results = [process_event(raw, REGISTRY, now) for raw in read_file_events(str(path))]
    rows = [r for r in results if isinstance(r, FeatureRow)]
    assert {r.entity_id for r in rows} >= {f"u{i}" for i in range(4)}
    assert len(results) == len(lines)
    for r in results:
        if isinstance(r, DeadLetter):
            kept = base64.b64decode(json.loads(r.to_json())["raw_base64"])
            assert kept in [x.rstrip(b"\r\n") for x in lines], "the line as it was (less its line ending)"


def test_invalid_utf8_keeps_its_bytes_in_the_dead_letter(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    bad = b'{"entity": "user_profile\xff\xfe", "data": {}}'
    path.write_bytes(json.dumps(valid_line(1)).encode() + b"\n" + bad + b"\n")
    results = [process_event(raw, REGISTRY, datetime.now(UTC)) for raw in read_file_events(str(path))]
    assert isinstance(results[0], FeatureRow)
    assert isinstance(results[1], DeadLetter) and results[1].reason == "undecodable"
    assert base64.b64decode(json.loads(results[1].to_json())["raw_base64"]) == bad


def test_format_event_time_roundtrips_inside_the_window() -> None:
    at = NOW - timedelta(days=1, microseconds=7)
    raw = from_pubsub(
        activity_v1("u1", random.Random(0), at - timedelta(hours=1)).SerializeToString(),
        {**event_attributes("user_activity", "v1", at), "event_time": format_event_time(at)},
        "m",
    )
    row = process_event(raw, REGISTRY, NOW)
    assert isinstance(row, FeatureRow) and row.event_time == at
