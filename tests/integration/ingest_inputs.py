"""Feature-event inputs for the ingest tests: good events plus one bad event of each kind."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from app.featurestore.events import event_attributes, json_line
from app.featurestore.samples import profile_v1, sample_events

AT = datetime(2026, 3, 1, tzinfo=UTC)


def good_events(users: int, prefix: str) -> list[tuple[str, str, datetime, object]]:
    out = []
    for entity, version, at, msg in sample_events(users, seed=11):
        msg.user_id = prefix + msg.user_id
        out.append((entity, version, at, msg))
    return out


def bad_profile(prefix: str) -> object:
    msg = profile_v1(prefix + "bad", random.Random(0), AT - timedelta(days=3))
    msg.age = 12
    return msg


def bad_json_lines(prefix: str) -> dict[str, str]:
    """reason -> one JSON line that must be dead-lettered for it."""
    ok = json.loads(json_line("user_profile", "v1", AT, profile_v1(prefix + "x", random.Random(0), AT)))
    return {
        "undecodable": '{"entity": "user_profile", "data": ',
        "unknown_entity": json.dumps({**ok, "entity": "user_photos"}),
        "unknown_version": json.dumps({**ok, "version": "v9"}),
        "missing_event_time": json.dumps({k: v for k, v in ok.items() if k != "event_time"}),
        "bad_event_time": json.dumps({**ok, "event_time": "01/03/2026"}),
        "schema_violation": json_line("user_profile", "v1", AT, bad_profile(prefix)),
    }


def bad_pubsub_messages(prefix: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    """reason -> (data, attributes) of one Pub/Sub message that must be dead-lettered for it."""
    payload = profile_v1(prefix + "x", random.Random(0), AT).SerializeToString()
    attrs = event_attributes("user_profile", "v1", AT)
    return {
        "undecodable": (b"\xff\xfe\xfd", attrs),
        "unknown_entity": (payload, {**attrs, "entity": "user_photos"}),
        "unknown_version": (payload, {**attrs, "version": "v9"}),
        "missing_event_time": (payload, {k: v for k, v in attrs.items() if k != "event_time"}),
        "bad_event_time": (payload, {**attrs, "event_time": "soon"}),
        "schema_violation": (bad_profile(prefix).SerializeToString(), attrs),
    }
