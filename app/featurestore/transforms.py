"""Ingest-time transforms: derived features and cross-field checks per entity version.

They run once, in the ingest job, so training and serving read the same stored values and
never recompute them (no training/serving skew). Each takes the decoded message and the event
time; derived values are numbers. Docs are generated from the ``DerivedFeature`` entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Message = Any  # a generated protobuf message; transforms only read attributes


@dataclass(frozen=True)
class DerivedFeature:
    name: str
    unit: str
    doc: str
    fn: Callable[[Message, datetime], float]


@dataclass(frozen=True)
class Check:
    """A rule across fields; ``problem`` returns a sentence when the message breaks it."""

    doc: str
    problem: Callable[[Message, datetime], str | None]


@dataclass(frozen=True)
class EntityTransforms:
    derived: tuple[DerivedFeature, ...] = ()
    checks: tuple[Check, ...] = ()


# seeking_mask bit of each Gender code (0 unspecified, 1 woman, 2 man, 3 nonbinary); the market and the
# pair features use the same table.
GENDER_BITS = (0, 1, 2, 4)


def _mask(genders: Iterable[int]) -> float:
    return float(sum(GENDER_BITS[g] for g in set(genders) if 0 <= g < len(GENDER_BITS)))


def _days_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds() / 86400.0


def _ts(msg: Message, field: str) -> datetime:
    return getattr(msg, field).ToDatetime(tzinfo=UTC)


def _age_range_problem(lo: int, hi: int, prefix: str) -> str | None:
    if lo and hi and lo > hi:
        return f"{prefix}age_min {lo} is above {prefix}age_max {hi}"
    return None


def _signup_not_after_event(msg: Message, at: datetime) -> str | None:
    if _ts(msg, "signup_time") > at:
        return f"signup_time {_ts(msg, 'signup_time').isoformat()} is after the event time {at.isoformat()}"
    return None


_ACCOUNT_AGE = DerivedFeature(
    "account_age_days",
    "days",
    "Days from signup to the event.",
    lambda m, at: _days_between(_ts(m, "signup_time"), at),
)

PROFILE_V1 = EntityTransforms(
    derived=(
        _ACCOUNT_AGE,
        DerivedFeature(
            "seeking_mask",
            "bitmask",
            "Genders sought: 1 woman, 2 man, 4 nonbinary.",
            lambda m, at: _mask(m.seeking_genders),
        ),
        DerivedFeature(
            "pref_age_span",
            "years",
            "pref_age_max - pref_age_min.",
            lambda m, at: float(m.pref_age_max - m.pref_age_min),
        ),
    ),
    checks=(
        Check(
            "pref_age_min <= pref_age_max", lambda m, at: _age_range_problem(m.pref_age_min, m.pref_age_max, "pref_")
        ),
        Check("signup_time <= event time", _signup_not_after_event),
    ),
)

PROFILE_V2 = EntityTransforms(
    derived=(
        _ACCOUNT_AGE,
        DerivedFeature(
            "seeking_mask",
            "bitmask",
            "Genders sought: 1 woman, 2 man, 4 nonbinary.",
            lambda m, at: _mask(m.preferences.genders),
        ),
        DerivedFeature(
            "pref_age_span",
            "years",
            "preferences.age_max - preferences.age_min.",
            lambda m, at: float(m.preferences.age_max - m.preferences.age_min),
        ),
        DerivedFeature(
            "photo_quality",
            "ratio 0..1",
            "photo_quality_score / 100: the v1 scale, so models trained on v1 read v2 rows.",
            lambda m, at: m.photo_quality_score / 100.0,
        ),
    ),
    checks=(
        Check(
            "preferences.age_min <= preferences.age_max",
            lambda m, at: _age_range_problem(m.preferences.age_min, m.preferences.age_max, "preferences."),
        ),
        Check("signup_time <= event time", _signup_not_after_event),
    ),
)


def _replies_within_messages(m: Message, at: datetime) -> str | None:
    if m.replies_sent_7d > m.messages_received_7d:
        return f"replies_sent_7d {m.replies_sent_7d} exceeds messages_received_7d {m.messages_received_7d}"
    return None


def _active_not_after_event(m: Message, at: datetime) -> str | None:
    if _ts(m, "last_active_time") > at:
        return f"last_active_time {_ts(m, 'last_active_time').isoformat()} is after the event time {at.isoformat()}"
    return None


ACTIVITY_V1 = EntityTransforms(
    derived=(
        DerivedFeature(
            "hours_since_active",
            "hours",
            "Hours from last_active_time to the event.",
            lambda m, at: _days_between(_ts(m, "last_active_time"), at) * 24.0,
        ),
        DerivedFeature(
            "reply_rate",
            "ratio 0..1",
            "replies_sent_7d / messages_received_7d (0 when nothing was received).",
            lambda m, at: m.replies_sent_7d / m.messages_received_7d if m.messages_received_7d else 0.0,
        ),
        DerivedFeature(
            "like_ratio",
            "ratio",
            "likes_received_7d / (likes_sent_7d + 1): how sought-after.",
            lambda m, at: m.likes_received_7d / (m.likes_sent_7d + 1),
        ),
        DerivedFeature(
            "match_rate",
            "ratio",
            "matches_7d / (likes_sent_7d + 1).",
            lambda m, at: m.matches_7d / (m.likes_sent_7d + 1),
        ),
    ),
    checks=(
        Check("replies_sent_7d <= messages_received_7d", _replies_within_messages),
        Check("last_active_time <= event time", _active_not_after_event),
    ),
)

TRANSFORMS: dict[tuple[str, str], EntityTransforms] = {
    ("user_profile", "v1"): PROFILE_V1,
    ("user_profile", "v2"): PROFILE_V2,
    ("user_activity", "v1"): ACTIVITY_V1,
}
