"""Property tests at the request boundary (``parse_request``) and the prediction sink's record parser.

Arbitrary bytes, arbitrary JSON and a valid request with one field mutated: the only exception is
``PoisonMessage`` with a known reason, and a parsed request is inside the limits (ids, candidates,
time window) with each candidate once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.bounds import DEFAULT_LIMITS, id_problem
from app.serving.messages import PoisonMessage, Prediction, RerankRequest, parse_request

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
REASONS = {
    "undecodable",
    "too_large",
    "bad_id",
    "bad_requested_at",
    "empty_candidates",
    "too_many_candidates",
}
BOUNDED = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def valid() -> dict[str, Any]:
    return json.loads(RerankRequest("r1", "u1", "discover", ("a", "b", "c"), NOW).to_json())


def check(data: bytes) -> None:
    try:
        r = parse_request(data, now=NOW)
    except PoisonMessage as err:
        assert err.reason in REASONS, err.reason
        return
    for value in (r.request_id, r.user_id, r.surface, *r.candidate_ids):
        assert id_problem(value, "id") is None
    assert 0 < len(r.candidate_ids) <= DEFAULT_LIMITS.max_candidates
    assert len(set(r.candidate_ids)) == len(r.candidate_ids)
    assert r.requested_at <= NOW + timedelta(seconds=DEFAULT_LIMITS.max_clock_skew_seconds)
    assert r.requested_at >= NOW - timedelta(seconds=DEFAULT_LIMITS.max_request_age_seconds)


@BOUNDED
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@BOUNDED
@given(json_values)
def test_arbitrary_json(doc: Any) -> None:
    check(json.dumps(doc).encode())


@BOUNDED
@given(st.sampled_from(["request_id", "user_id", "surface", "candidate_ids", "requested_at", "extra"]), json_values)
def test_a_valid_request_with_one_field_mutated(field: str, value: Any) -> None:
    doc = valid()
    doc[field] = value
    check(json.dumps(doc).encode())


@BOUNDED
@given(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=20))
def test_candidates_are_kept_once_in_first_order(cands: list[str]) -> None:
    doc = {**valid(), "candidate_ids": cands}
    try:
        r = parse_request(json.dumps(doc).encode(), now=NOW)
    except PoisonMessage as err:
        assert err.reason == "bad_id"
        return
    assert list(r.candidate_ids) == list(dict.fromkeys(cands))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"requested_at": "2100-01-01T00:00:00Z"}, "bad_requested_at"),
        ({"requested_at": "1600-01-01T00:00:00Z"}, "bad_requested_at"),
        ({"requested_at": "0001-01-01T00:00:00+05:00"}, "bad_requested_at"),
        ({"user_id": "u" * 100_000}, "bad_id"),
        ({"user_id": "a\nb"}, "bad_id"),
        ({"candidate_ids": ["a", "b\nc"]}, "bad_id"),
        ({"surface": ["discover"]}, "bad_id"),
        ({"candidate_ids": ["c"] * (DEFAULT_LIMITS.max_candidates + 1)}, "too_many_candidates"),
    ],
)
def test_each_out_of_bounds_field_has_its_reason(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(PoisonMessage) as err:
        parse_request(json.dumps({**valid(), **change}).encode(), now=NOW)
    assert err.value.reason == reason


def test_oversized_and_deeply_nested_requests() -> None:
    big = json.dumps({**valid(), "pad": "x" * DEFAULT_LIMITS.max_message_bytes}).encode()
    with pytest.raises(PoisonMessage) as err:
        parse_request(big, now=NOW)
    assert err.value.reason == "too_large"
    with pytest.raises(PoisonMessage) as err:
        parse_request(b"[" * 100_000 + b"]" * 100_000, now=NOW)
    assert err.value.reason == "undecodable" and "nested" in err.value.detail


@BOUNDED
@given(st.binary(max_size=200) | json_values.map(lambda d: json.dumps(d).encode()))
def test_prediction_records_parse_or_raise_value_error(data: bytes) -> None:
    try:
        Prediction.from_json(data)
    except ValueError:
        pass


@BOUNDED
@given(st.sampled_from(["request_id", "candidate_ids", "scores", "requested_at", "scored_at", "variant"]), json_values)
def test_a_prediction_with_one_field_mutated_parses_or_raises_value_error(field: str, value: Any) -> None:
    p = Prediction("r", "u", "s", "primary", "m", ("a", "b"), (0.5, 0.25), NOW.isoformat(), NOW.isoformat())
    doc = {**json.loads(p.to_json()), field: value}
    try:
        parsed = Prediction.from_json(json.dumps(doc).encode())
    except ValueError:
        return
    assert len(parsed.candidate_ids) == len(parsed.scores)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.binary(max_size=100) | json_values.map(lambda d: json.dumps(d).encode()), max_size=5))
def test_the_sink_lands_every_good_record_around_bad_ones(
    tmp_path_factory: pytest.TempPathFactory, bad: list[bytes]
) -> None:
    from app.serving.sink import land

    root = tmp_path_factory.mktemp("offline")
    good = [
        Prediction(f"r{i}", "u", "s", "primary", "m", ("a",), (0.5,), NOW.isoformat(), NOW.isoformat()).to_json()
        for i in range(3)
    ]
    landed, rejected = land(root, [good[0], *bad, *good[1:]])
    assert landed == 3 and len(rejected) == len(bad)
    assert all(json.loads(line)["reason"] for line in rejected)
