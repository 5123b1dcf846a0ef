"""Small, deterministic feature events for the demo, the benchmark and tests.

The synthetic market (app/market) is the full data source; this is the few-lines version used
where a handful of valid events of each entity version, plus one bad event of each kind, is
what is needed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message

from app.featurestore.events import event_attributes
from app.schemas.user.v1 import activity_pb2, profile_pb2
from app.schemas.user.v2 import profile_pb2 as profile_v2_pb2

EPOCH = datetime(2026, 3, 1, tzinfo=UTC)

SampleEvent = tuple[str, str, datetime, Message]


def profile_v1(user_id: str, rng: random.Random, signup: datetime) -> profile_pb2.UserProfile:
    msg = profile_pb2.UserProfile(
        user_id=user_id,
        age=rng.randint(18, 60),
        gender=rng.choice([1, 2, 3]),
        seeking_genders=rng.sample([1, 2, 3], rng.randint(1, 2)),
        latitude=52.0 + rng.random(),
        longitude=13.0 + rng.random(),
        pref_age_min=rng.randint(18, 30),
        pref_age_max=rng.randint(31, 70),
        pref_max_distance_km=rng.choice([5.0, 10.0, 25.0, 50.0]),
        photo_count=rng.randint(1, 9),
        photo_quality=round(rng.random(), 3),
        bio_length=rng.randint(0, 500),
        profile_completeness=round(rng.random(), 2),
        city="Berlin",
    )
    msg.signup_time.FromDatetime(signup)
    return msg


def profile_v2(user_id: str, rng: random.Random, signup: datetime) -> profile_v2_pb2.UserProfile:
    msg = profile_v2_pb2.UserProfile(
        user_id=user_id,
        age=rng.randint(18, 60),
        gender=rng.choice([1, 2, 3]),
        latitude=52.0 + rng.random(),
        longitude=13.0 + rng.random(),
        photo_count=rng.randint(1, 9),
        bio_length=rng.randint(0, 500),
        profile_completeness=round(rng.random(), 2),
        city="Berlin",
        photo_quality_score=rng.randint(0, 100),
        preferences=profile_v2_pb2.Preferences(
            age_min=rng.randint(18, 30),
            age_max=rng.randint(31, 70),
            max_distance_km=25.0,
            genders=rng.sample([1, 2, 3], rng.randint(1, 2)),
        ),
    )
    msg.signup_time.FromDatetime(signup)
    return msg


def activity_v1(user_id: str, rng: random.Random, last_active: datetime) -> activity_pb2.UserActivity:
    received = rng.randint(0, 40)
    msg = activity_pb2.UserActivity(
        user_id=user_id,
        likes_sent_7d=rng.randint(0, 80),
        likes_received_7d=rng.randint(0, 80),
        matches_7d=rng.randint(0, 10),
        messages_received_7d=received,
        replies_sent_7d=rng.randint(0, received),
        sessions_7d=rng.randint(0, 30),
    )
    msg.last_active_time.FromDatetime(last_active)
    return msg


def sample_events(users: int, seed: int = 7, start: datetime = EPOCH) -> Iterator[SampleEvent]:
    """Per user: a v1 and a v2 profile and two activity snapshots a day apart."""
    rng = random.Random(seed)
    for i in range(users):
        uid = f"u{i:06d}"
        signup = start - timedelta(days=rng.randint(1, 400))
        at = start + timedelta(minutes=rng.randint(0, 600))
        yield "user_profile", "v1", at, profile_v1(uid, rng, signup)
        yield "user_profile", "v2", at, profile_v2(uid, rng, signup)
        for day in (0, 1):
            when = at + timedelta(days=day)
            yield "user_activity", "v1", when, activity_v1(uid, rng, when - timedelta(hours=rng.randint(0, 48)))


def underage_profile(user_id: str) -> profile_pb2.UserProfile:
    """A v1 profile that breaks the schema (age 12, below the minimum 18)."""
    msg = profile_v1(user_id, random.Random(0), EPOCH - timedelta(days=3))
    msg.age = 12
    return msg


def bad_events(prefix: str = "demo-") -> dict[str, tuple[bytes, dict[str, str]]]:
    """Reason -> (data, attributes) of one Pub/Sub feature event the ingest must dead-letter for it."""
    payload = profile_v1(f"{prefix}x", random.Random(0), EPOCH).SerializeToString()
    attrs = event_attributes("user_profile", "v1", EPOCH)
    return {
        "undecodable": (b"\xff\xfe\xfd", attrs),
        # 5 MB: over the gRPC client's default 4 MiB receive limit, under Pub/Sub's 10 MB.
        "too_large": (payload + b"\x00" * 5_000_000, attrs),
        "unknown_entity": (payload, {**attrs, "entity": "user_photos"}),
        "unknown_version": (payload, {**attrs, "version": "v9"}),
        "missing_event_time": (payload, {k: v for k, v in attrs.items() if k != "event_time"}),
        # Before ~1653 the online store's 17-digit time header would not hold it.
        "bad_event_time": (payload, {**attrs, "event_time": "1500-01-01T00:00:00Z"}),
        "bad_id": (profile_v1(f"{prefix}new\nline", random.Random(0), EPOCH).SerializeToString(), attrs),
        "schema_violation": (underage_profile(f"{prefix}bad").SerializeToString(), attrs),
    }
