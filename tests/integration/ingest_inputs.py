"""Feature-event inputs for the ingest tests: good events plus one bad event of each kind."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

from app.featurestore.events import json_line
from app.featurestore.samples import profile_v1, sample_events, underage_profile

AT = datetime(2026, 3, 1, tzinfo=UTC)


def good_events(users: int, prefix: str) -> list[tuple[str, str, datetime, object]]:
    out = []
    for entity, version, at, msg in sample_events(users, seed=11):
        msg.user_id = prefix + msg.user_id
        out.append((entity, version, at, msg))
    return out


def bad_json_lines(prefix: str) -> dict[str, str]:
    """reason -> one JSON line that must be dead-lettered for it."""
    ok = json.loads(json_line("user_profile", "v1", AT, profile_v1(prefix + "x", random.Random(0), AT)))
    return {
        "undecodable": '{"entity": "user_profile", "data": ',
        "unknown_entity": json.dumps({**ok, "entity": "user_photos"}),
        "unknown_version": json.dumps({**ok, "version": "v9"}),
        "missing_event_time": json.dumps({k: v for k, v in ok.items() if k != "event_time"}),
        "bad_event_time": json.dumps({**ok, "event_time": "01/03/2026"}),
        "bad_id": json.dumps({**ok, "data": {**ok["data"], "user_id": prefix + "x" * 100_000}}),
        "too_large": json.dumps({**ok, "data": {**ok["data"], "city": "x" * 1_100_000}}),
        "schema_violation": json_line("user_profile", "v1", AT, underage_profile(f"{prefix}bad")),
    }
