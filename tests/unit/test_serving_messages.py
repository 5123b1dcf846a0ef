from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from app.serving.experiments import assign_arm
from app.serving.messages import PoisonMessage, Prediction, RerankRequest, parse_request
from app.settings import StackSettings, VariantConfig

AT = datetime(2026, 3, 1, tzinfo=UTC)


def test_arm_split_follows_the_configured_shares_and_is_stable(settings: StackSettings) -> None:
    variants = list(settings.serving.variants)
    arms = [assign_arm(f"user-{i}", variants) for i in range(20_000)]
    share_b = arms.count("b") / len(arms)
    assert abs(share_b - 0.2) < 0.01, share_b
    assert set(arms) == {"primary", "b"}, "shadows take no traffic"
    assert [assign_arm(f"user-{i}", variants) for i in range(100)] == arms[:100]


def test_a_new_salt_reshuffles_users(settings: StackSettings) -> None:
    variants = list(settings.serving.variants)
    a = [assign_arm(f"u{i}", variants) for i in range(2000)]
    b = [assign_arm(f"u{i}", variants, salt="experiment-2") for i in range(2000)]
    assert a != b


def test_three_arms() -> None:
    variants = [
        VariantConfig(name="primary", kind="primary", traffic_share=0.5),
        VariantConfig(name="b", kind="arm", traffic_share=0.3),
        VariantConfig(name="c", kind="arm", traffic_share=0.2),
    ]
    arms = [assign_arm(str(i), variants) for i in range(20_000)]
    for name, share in (("primary", 0.5), ("b", 0.3), ("c", 0.2)):
        assert abs(arms.count(name) / len(arms) - share) < 0.015


def test_request_roundtrip() -> None:
    r = RerankRequest("r1", "u1", "discover", ("a", "b"), AT)
    assert parse_request(r.to_json(), now=AT) == r


@pytest.mark.parametrize(
    ("data", "reason", "needle"),
    [
        (b"\xff\xfe", "undecodable", "not UTF-8"),
        (b"[1, 2]", "undecodable", "a JSON object"),
        (b'{"request_id": "r"}', "undecodable", "missing field(s)"),
        (
            json.dumps(
                {
                    "request_id": "r",
                    "user_id": "u",
                    "surface": "s",
                    "candidate_ids": [],
                    "requested_at": "2026-03-01T00:00:00Z",
                }
            ).encode(),
            "empty_candidates",
            "no candidates",
        ),
        (
            json.dumps(
                {
                    "request_id": "r",
                    "user_id": "u",
                    "surface": "s",
                    "candidate_ids": [1],
                    "requested_at": "2026-03-01T00:00:00Z",
                }
            ).encode(),
            "bad_id",
            "must be a string",
        ),
        (
            json.dumps(
                {
                    "request_id": "r",
                    "user_id": "u",
                    "surface": "s",
                    "candidate_ids": ["a"],
                    "requested_at": "2026-03-01",
                }
            ).encode(),
            "bad_requested_at",
            "no time zone",
        ),
    ],
)
def test_poison_requests_are_named(data: bytes, reason: str, needle: str) -> None:
    with pytest.raises(PoisonMessage) as err:
        parse_request(data, now=AT)
    assert err.value.reason == reason and needle in err.value.detail


def test_prediction_roundtrip() -> None:
    p = Prediction("r", "u", "s", "shadow", "m", ("a", "b"), (0.5, 0.25), AT.isoformat(), AT.isoformat())
    assert Prediction.from_json(p.to_json()) == p
