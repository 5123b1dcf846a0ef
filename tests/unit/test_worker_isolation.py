"""The worker under poison: no exception ends it, and only the offending message is settled with a reason.

Fakes stand in for the online store, the model and Pub/Sub so a property test can throw thousands of
arbitrary messages (and arbitrary failures) at ``Worker`` in a second; the real services are covered
by tests/integration/test_serving.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.serving.messages import TRANSIENT_REASONS, PoisonMessage, RerankRequest, parse_request
from app.serving.observability import WorkerMetrics
from app.serving.scoring import Scored
from app.serving.worker import BatchHandler, Settling, Worker, WorkerConfig
from app.settings import RetryConfig

BOOM = "boom"  # a user id the fake scorer crashes on, as a bug in scoring code would
GHOST = "ghost"  # a user the fake online store does not know (yet)


class FakeMessage:
    def __init__(self, data: bytes, attributes: dict[str, str], attempt: int = 1) -> None:
        self.data, self.attributes, self.delivery_attempt = data, attributes, attempt
        self.message_id = f"m{id(self)}"
        self.settlements: list[str] = []

    def ack(self) -> None:
        self.settlements.append("ack")

    def nack(self) -> None:
        self.settlements.append("nack")


class Future:
    def result(self, timeout: float | None = None) -> str:
        return "id"


class FakeScorer:
    def score(self, model: Any, requests: Sequence[RerankRequest]) -> list[Scored | PoisonMessage]:
        if any(r.user_id == BOOM for r in requests):
            raise RuntimeError("a bug in scoring")
        return [
            PoisonMessage("unknown_user", "not online yet")
            if r.user_id == GHOST
            else Scored(r, np.linspace(0, 1, len(r.candidate_ids)))
            for r in requests
        ]


class FakeModel:
    def current(self) -> tuple[str, Any]:
        return "model-1", None


def make_worker(
    kind: str = "primary", variant: str = "primary", attempts: int = 5
) -> tuple[Worker, list[tuple[str, bytes, dict[str, str]]]]:
    published: list[tuple[str, bytes, dict[str, str]]] = []

    def publish(topic: str, data: bytes, attrs: dict[str, str]) -> Future:
        published.append((topic, data, attrs))
        return Future()

    cfg = WorkerConfig(
        variant=variant,
        kind=kind,
        subscription="projects/p/subscriptions/s",
        predictions_topic="predictions",
        dead_letter_topic="dead",
        max_delivery_attempts=attempts,
        served_arms=("primary", "b"),
        retry=RetryConfig(minimum_backoff_seconds=1, maximum_backoff_seconds=4),
    )
    metrics = WorkerMetrics(variant)
    handler = BatchHandler(cfg, FakeScorer(), FakeModel(), None, publish, metrics)  # type: ignore[arg-type]
    return Worker(cfg, subscriber=None, handler=handler, metrics=metrics), published


def request(user: str, rid: str = "r") -> bytes:
    return RerankRequest(rid, user, "discover", ("a", "b", "c"), datetime.now(UTC)).to_json()


def dead_letters(published: list[tuple[str, bytes, dict[str, str]]]) -> dict[bytes, dict[str, str]]:
    return {data: attrs for topic, data, attrs in published if topic == "dead"}


def predictions(published: list[tuple[str, bytes, dict[str, str]]]) -> int:
    return sum(topic == "predictions" for topic, _, _ in published)


def test_an_unexpected_error_settles_only_its_message_and_the_good_neighbour_is_served() -> None:
    worker, published = make_worker()
    good, bad = FakeMessage(request("u1", "good"), {"arm": "primary"}), FakeMessage(request(BOOM), {"arm": "primary"})
    worker._handle_with_retry([Settling(good), Settling(bad)])
    assert good.settlements == ["ack"] and predictions(published) == 1
    assert bad.settlements == ["nack"], "internal errors are transient: retried before dead-lettering"
    last = FakeMessage(request(BOOM), {"arm": "primary"}, attempt=5)
    worker._handle_with_retry([Settling(last)])
    attrs = dead_letters(published)[last.data]
    assert attrs["reason"] == "internal_error" and "RuntimeError: a bug in scoring" in attrs["detail"]
    assert last.settlements == ["ack"]


def test_missing_and_unknown_arms_are_dead_lettered_by_the_primary_and_ignored_by_other_arms() -> None:
    worker, published = make_worker()
    missing, unknown, other = (
        FakeMessage(request("u1", "m"), {}),
        FakeMessage(request("u1", "u"), {"arm": "zz"}),
        FakeMessage(request("u1", "o"), {"arm": "b"}),
    )
    worker._handle_with_retry([Settling(missing), Settling(unknown), Settling(other)])
    dead = dead_letters(published)
    assert dead[missing.data]["reason"] == "missing_arm" and dead[unknown.data]["reason"] == "unknown_arm"
    assert dead[missing.data]["delivery_attempts"] == "1", "a permanent reason is dead-lettered at once"
    assert other.data not in dead and other.settlements == ["ack"]
    arm_worker, arm_published = make_worker(kind="arm", variant="b")
    stray = FakeMessage(request("u1"), {})
    arm_worker._handle_with_retry([Settling(stray)])
    assert stray.settlements == ["ack"] and not dead_letters(arm_published)


arbitrary_messages = st.lists(
    st.one_of(
        st.binary(max_size=200).map(lambda b: (b, {"arm": "primary"})),
        st.tuples(st.sampled_from(["u1", "u2", BOOM]), st.sampled_from(["primary", "b", "", "x"])).map(
            lambda t: (request(t[0]), {"arm": t[1]} if t[1] else {})
        ),
        st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3).map(lambda a: (request("u3"), a)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arbitrary_messages, st.integers(min_value=1, max_value=5))
def test_every_message_is_settled_once_with_a_reason_and_the_worker_keeps_running(
    items: list[tuple[bytes, dict[str, str]]], attempt: int
) -> None:
    worker, published = make_worker()
    messages = [FakeMessage(data, attrs, attempt) for data, attrs in items]
    worker._start_pulling = lambda: (lambda: None, lambda: None)  # type: ignore[method-assign]
    worker.subscriber = type("S", (), {"close": lambda self: None})()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    for m in messages:
        worker.queue.put(m)
    deadline = time.monotonic() + 10
    while any(not m.settlements for m in messages) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert thread.is_alive(), "no message ends the worker"
    worker.stop.set()
    thread.join(5)
    dead = [(attrs, data) for topic, data, attrs in published if topic == "dead"]
    for m in messages:
        assert len(m.settlements) == 1, m.settlements
    for attrs, _ in dead:
        assert attrs["reason"] and attrs["variant"] == "primary"
        assert attrs["reason"] not in TRANSIENT_REASONS or attrs["delivery_attempts"] == "5"
    nacked = [m for m in messages if m.settlements == ["nack"]]
    assert all(attempt < 5 for _ in nacked), "the last attempt is never nacked: it is dead-lettered"
    good = [m for m in messages if m.attributes.get("arm") == "primary" and _servable(m.data)]
    assert predictions(published) == len(good), "every good neighbour is served, whatever else is in its batch"
    assert all(m.settlements == ["ack"] for m in good)


def _servable(data: bytes) -> bool:
    try:
        return parse_request(data).user_id != BOOM
    except PoisonMessage:
        return False


class RecordingSubscriber:
    def __init__(self) -> None:
        self.deadlines: list[tuple[list[str], int]] = []
        self.acks: list[str] = []

    def modify_ack_deadline(self, subscription: str, ack_ids: list[str], ack_deadline_seconds: int) -> None:
        self.deadlines.append((list(ack_ids), ack_deadline_seconds))

    def acknowledge(self, subscription: str, ack_ids: list[str]) -> None:
        self.acks += ack_ids


def test_a_transient_reason_is_held_for_the_retry_policys_delay_then_handed_back_at_once_on_unary_pulls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Never a delayed ack deadline (the emulator drops such messages on filtered subscriptions):
    the message stays leased for the delay, then its deadline is set to 0."""
    from types import SimpleNamespace

    import app.serving.unary_pull
    from app.serving.unary_pull import UnaryMessage, UnaryPuller

    subscriber = RecordingSubscriber()
    puller = UnaryPuller(subscriber, "s", lambda m: None, 10, 30)
    worker, published = make_worker()

    def received(ack_id: str, user: str, attempt: int) -> UnaryMessage:
        puller._held.add(ack_id)
        msg = SimpleNamespace(data=request(user, ack_id), attributes={"arm": "primary"}, message_id=ack_id)
        return UnaryMessage(puller, SimpleNamespace(ack_id=ack_id, message=msg, delivery_attempt=attempt))

    batch = [received("a2", GHOST, 2), received("a3", GHOST, 3), received("ok", "u1", 1), received("a5", GHOST, 5)]
    start = time.monotonic()
    worker._handle_with_retry([Settling(m) for m in batch])
    puller.flush()
    assert subscriber.deadlines == [], "nothing handed back before its delay"
    assert sorted(subscriber.acks) == ["a5", "ok"], "the last attempt is dead-lettered and acked"
    puller._extend_leases()
    assert [(sorted(ids), s) for ids, s in subscriber.deadlines] == [(["a2", "a3"], 30)], "still leased meanwhile"
    # retry: minimum 1 s, maximum 4 s -> after attempt 2 wait 2 s, after attempt 3 wait 4 s
    for later, handed_back in ((1.5, []), (2.5, [(["a2"], 0)]), (4.5, [(["a2"], 0), (["a3"], 0)])):
        clock = SimpleNamespace(monotonic=lambda later=later: start + later)
        monkeypatch.setattr(app.serving.unary_pull, "time", clock)
        puller.flush()
        assert subscriber.deadlines[1:] == handed_back, later
    assert puller._waiting == {}
    assert dead_letters(published)[batch[3].data]["reason"] == "unknown_user"


def test_a_stop_hands_back_at_once_what_waits_out_a_delay() -> None:
    from types import SimpleNamespace

    from app.serving.unary_pull import UnaryMessage, UnaryPuller

    subscriber = RecordingSubscriber()
    puller = UnaryPuller(subscriber, "s", lambda m: None, 10, 30)
    puller._held.add("w")
    msg = SimpleNamespace(data=b"{}", attributes={}, message_id="w")
    UnaryMessage(puller, SimpleNamespace(ack_id="w", message=msg, delivery_attempt=1)).nack(300)
    puller.flush()
    assert subscriber.deadlines == [] and puller._waiting
    puller.stop(0)  # the worker's shutdown: stop pulling, then flush
    puller.flush()
    assert subscriber.deadlines == [(["w"], 0)], "handed back for another worker, not held for 300 s"
