from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from app.featurestore.events import (
    DeadLetter,
    FeatureRow,
    RawEvent,
    event_attributes,
    from_json_line,
    from_pubsub,
    json_line,
    process_event,
    read_delimited,
    write_delimited,
)
from app.featurestore.registry import Registry
from app.featurestore.samples import activity_v1, profile_v1, profile_v2

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
NOW = datetime(2026, 3, 2, tzinfo=UTC)
SIGNUP = datetime(2025, 3, 1, tzinfo=UTC)


def pubsub(entity: str, version: str, msg: object, at: datetime = AT) -> RawEvent:
    return from_pubsub(msg.SerializeToString(), event_attributes(entity, version, at), "m1")  # type: ignore[attr-defined]


def test_valid_profile_becomes_a_row_with_derived_features(registry: Registry) -> None:
    msg = profile_v1("u1", random.Random(1), SIGNUP)
    row = process_event(pubsub("user_profile", "v1", msg), registry, NOW)
    assert isinstance(row, FeatureRow)
    assert (row.entity, row.version, row.entity_id, row.event_time) == ("user_profile", "v1", "u1", AT)
    assert row.values["account_age_days"] == pytest.approx(365.5)
    assert row.values["pref_age_span"] == msg.pref_age_max - msg.pref_age_min
    spec = registry.get("user_profile", "v1")
    assert len(row.vector) == len(spec.online_features)
    assert row.vector[spec.online_features.index("age")] == msg.age
    assert "city" not in spec.online_features and row.values["city"] == "Berlin"


def test_v2_maps_photo_score_onto_the_v1_scale(registry: Registry) -> None:
    msg = profile_v2("u1", random.Random(2), SIGNUP)
    row = process_event(pubsub("user_profile", "v2", msg), registry, NOW)
    assert isinstance(row, FeatureRow)
    assert row.values["photo_quality"] == pytest.approx(msg.photo_quality_score / 100)
    assert row.values["preferences_age_min"] == msg.preferences.age_min


def test_json_event_decodes_like_protobuf(registry: Registry) -> None:
    msg = activity_v1("u9", random.Random(3), AT - timedelta(hours=5))
    via_json = process_event(from_json_line(json_line("user_activity", "v1", AT, msg), "f:1"), registry, NOW)
    via_pb = process_event(pubsub("user_activity", "v1", msg), registry, NOW)
    assert isinstance(via_json, FeatureRow) and isinstance(via_pb, FeatureRow)
    assert via_json.values == via_pb.values
    assert via_json.values["hours_since_active"] == pytest.approx(5.0)


def dead(raw: RawEvent, registry: Registry) -> DeadLetter:
    result = process_event(raw, registry, NOW)
    assert isinstance(result, DeadLetter), result
    assert result.raw == raw.raw, "the dead letter keeps what arrived"
    return result


def test_undecodable_protobuf(registry: Registry) -> None:
    d = dead(from_pubsub(b"\xff\xff\xff", event_attributes("user_profile", "v1", AT), "m"), registry)
    assert d.reason == "undecodable" and "rerank.user.v1.UserProfile" in d.detail


def test_undecodable_json_line(registry: Registry) -> None:
    d = dead(from_json_line("{not json", "events.jsonl:7"), registry)
    assert d.reason == "undecodable" and d.source == "events.jsonl:7"


def test_unknown_entity_and_version(registry: Registry) -> None:
    msg = profile_v1("u1", random.Random(1), SIGNUP).SerializeToString()
    d = dead(from_pubsub(msg, event_attributes("user_photos", "v1", AT), "m"), registry)
    assert d.reason == "unknown_entity" and "user_photos" in d.detail
    d = dead(from_pubsub(msg, event_attributes("user_profile", "v7", AT), "m"), registry)
    assert d.reason == "unknown_version" and "known: v1, v2" in d.detail
    d = dead(from_pubsub(msg, {"event_time": "2026-03-01T00:00:00Z"}, "m"), registry)
    assert d.reason == "unknown_entity"


@pytest.mark.parametrize(
    ("attrs", "reason", "needle"),
    [
        ({}, "missing_event_time", "no event_time"),
        ({"event_time": "yesterday"}, "bad_event_time", "not RFC 3339"),
        ({"event_time": "2026-03-01T00:00:00"}, "bad_event_time", "no time zone"),
        ({"event_time": "2030-01-01T00:00:00Z"}, "bad_event_time", "in the future"),
    ],
)
def test_event_time_problems(registry: Registry, attrs: dict, reason: str, needle: str) -> None:
    msg = profile_v1("u1", random.Random(1), SIGNUP).SerializeToString()
    d = dead(from_pubsub(msg, {"entity": "user_profile", "version": "v1", **attrs}, "m"), registry)
    assert d.reason == reason and needle in d.detail


def test_schema_violations_are_each_named(registry: Registry) -> None:
    msg = profile_v1("u1", random.Random(1), SIGNUP)
    msg.age = 12
    msg.photo_quality = 1.5
    d = dead(pubsub("user_profile", "v1", msg), registry)
    assert d.reason == "schema_violation"
    assert "age=12 is below the minimum 18 years" in d.detail
    assert "photo_quality=1.5 is above the maximum 1" in d.detail


def test_required_fields_and_key(registry: Registry) -> None:
    msg = profile_v1("", random.Random(1), SIGNUP)
    msg.ClearField("signup_time")
    d = dead(pubsub("user_profile", "v1", msg), registry)
    assert "user_id is missing" in d.detail and "signup_time is required" in d.detail


def test_unset_optional_fields_are_not_range_checked(registry: Registry) -> None:
    msg = profile_v1("u1", random.Random(1), SIGNUP)
    msg.ClearField("pref_age_min")  # 0 would be below the minimum 18 if it were checked
    assert isinstance(process_event(pubsub("user_profile", "v1", msg), registry, NOW), FeatureRow)


def test_cross_field_checks(registry: Registry) -> None:
    msg = activity_v1("u1", random.Random(1), AT + timedelta(hours=2))
    msg.messages_received_7d, msg.replies_sent_7d = 1, 3
    d = dead(pubsub("user_activity", "v1", msg), registry)
    assert d.reason == "schema_violation"
    assert "replies_sent_7d 3 exceeds messages_received_7d 1" in d.detail


def test_json_with_unknown_field_is_a_schema_violation(registry: Registry) -> None:
    line = json.dumps({**event_attributes("user_profile", "v1", AT), "data": {"user_id": "u1", "height_cm": 180}})
    d = dead(from_json_line(line, "f:1"), registry)
    assert d.reason == "schema_violation" and "height_cm" in d.detail


def test_v2_cross_field_check_reads_nested_preferences(registry: Registry) -> None:
    msg = profile_v2("u1", random.Random(2), SIGNUP)
    msg.preferences.age_min, msg.preferences.age_max = 40, 30
    d = dead(pubsub("user_profile", "v2", msg), registry)
    assert "preferences.age_min 40 is above preferences.age_max 30" in d.detail


def test_dead_letter_attributes_carry_the_reason() -> None:
    d = DeadLetter("schema_violation", "age=12 ...", "pubsub:1", "user_profile", "v1", "2026-03-01T00:00:00Z", b"x")
    assert d.attributes() == {
        "reason": "schema_violation",
        "detail": "age=12 ...",
        "source": "pubsub:1",
        "entity": "user_profile",
        "version": "v1",
        "event_time": "2026-03-01T00:00:00Z",
    }
    assert json.loads(d.to_json())["raw_base64"] == "eA=="


def test_length_delimited_roundtrip_and_damage(registry: Registry) -> None:
    rng = random.Random(4)
    events = [("user_profile", "v1", AT, profile_v1(f"u{i}", rng, SIGNUP)) for i in range(3)]
    buf = io.BytesIO()
    assert write_delimited(buf, events) == 3
    data = buf.getvalue()
    raws = list(read_delimited(io.BytesIO(data), "f.pb"))
    assert [r.entity for r in raws] == ["user_profile"] * 3
    assert all(isinstance(process_event(r, registry, NOW), FeatureRow) for r in raws)
    truncated = list(read_delimited(io.BytesIO(data[:-5]), "f.pb"))
    assert len(truncated) == 3
    assert truncated[-1].undecodable and "runs past the end" in truncated[-1].undecodable
    assert all(isinstance(process_event(r, registry, NOW), FeatureRow) for r in truncated[:2])
