"""The serving invariant under faults, counted: every published request ends exactly once as a
written result or a dead letter with a reason; none is lost, none counted twice.

Real emulator, Redis and moto. Each fault is kept to seconds: the worker's retry policy is
shortened (attempts 1 s apart, 3 of them), which is what the local stack's backoff does, only faster.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.local import clients
from app.local.services import LocalState
from app.naming import Names
from app.serving.messages import RerankRequest
from app.serving.runtime import result_store
from app.settings import RetryConfig
from tests.integration.conftest import Channel, wait_until
from tests.integration.serving_world import ServedMarket, running_worker

FAST_RETRY = RetryConfig(minimum_backoff_seconds=1, maximum_backoff_seconds=1)


def _sub(world: ServedMarket, name: str) -> str:
    return f"projects/{world.settings.gcp.project}/subscriptions/{name}"


@pytest.fixture()
def world(served: ServedMarket) -> Iterator[ServedMarket]:
    yield served
    served.load_online()  # whatever a fault emptied, for the next test


@dataclass
class Count:
    published: int
    written: int
    dead_lettered: dict[str, int]  # reason -> requests
    duplicates: int  # dead letters of a request seen more than once, or both written and dead-lettered

    @property
    def lost(self) -> int:
        return self.published - self.written - sum(self.dead_lettered.values())


class Ledger:
    """Pulls the requests' dead letters as they come and counts each published request's end."""

    def __init__(self, world: ServedMarket) -> None:
        self.world = world
        self.dead: collections.Counter[str] = collections.Counter()
        self.reasons: dict[str, str] = {}
        self._sub = clients.subscriber(world.state.pubsub_host)
        self._path = _sub(world, Names.of(world.settings).requests_dead_letter_subscription)

    def pull(self) -> None:
        resp = self._sub.pull(subscription=self._path, max_messages=500, timeout=2)
        if resp.received_messages:
            self._sub.acknowledge(subscription=self._path, ack_ids=[m.ack_id for m in resp.received_messages])
        for m in resp.received_messages:
            request_id = _request_id(m.message.data)
            self.dead[request_id] += 1
            # The emulator's own dead-letter policy adds no reason: such a letter is not "with a reason".
            self.reasons[request_id] = m.message.attributes.get("reason", "")

    def count(self, reqs: list[RerankRequest]) -> Count:
        store = result_store(self.world.settings, self.world.state)
        results = {r.request_id: store.get(r.user_id, r.surface) for r in reqs}
        written = {i for i, got in results.items() if got is not None and got.request_id == i}
        by_reason = collections.Counter(self.reasons[r.request_id] for r in reqs if r.request_id in self.dead)
        duplicates = sum(self.dead[r.request_id] - 1 for r in reqs if r.request_id in self.dead)
        duplicates += sum(1 for r in reqs if r.request_id in written and r.request_id in self.dead)
        return Count(len(reqs), len(written), dict(by_reason), duplicates)

    def settle(self, reqs: list[RerankRequest], timeout: float) -> Count:
        """Pull dead letters until every request has ended (or ``timeout``); the final count."""
        deadline = time.monotonic() + timeout
        while True:
            self.pull()
            c = self.count(reqs)
            if c.lost <= 0 or time.monotonic() > deadline:
                return c

    def close(self) -> None:
        self._sub.close()


def _request_id(data: bytes) -> str:
    import json

    try:
        return str(json.loads(data)["request_id"])
    except (ValueError, KeyError, TypeError):
        return data[:64].decode("utf-8", "replace")


def _requests(world: ServedMarket, users: list[str], surface: str) -> list[RerankRequest]:
    client = world.client()
    return [client.request(u, surface, [c for c in world.users if c != u][:20]) for u in users]


def test_redis_restarted_empty_every_request_is_dead_lettered_with_its_reason(world: ServedMarket) -> None:
    """Redis back empty and never refilled: each request is retried with backoff (held by the
    worker, not handed to the emulator with a delay) and dead-lettered as ``unknown_user``; then
    the same subscription still serves a single request."""
    ledger = Ledger(world)
    users = world.users_in("primary", 20)
    try:
        with running_worker(world, "primary", retry=FAST_RETRY, max_delivery_attempts=3):
            r = clients.redis_client(world.state.redis_url)
            r.flushdb()
            r.close()
            reqs = _requests(world, users, "empty-redis")
            count = ledger.settle(reqs, timeout=40)
            print("redis restarted empty:", count)
            assert count.lost == 0 and count.duplicates == 0, count
            assert count.dead_lettered == {"unknown_user": len(reqs)} and count.written == 0, count
            world.load_online()
            after = _requests(world, users[:1], "after-empty")
            count = ledger.settle(after, timeout=20)
            print("same subscription afterwards:", count)
            assert count.written == 1 and count.lost == 0, count
    finally:
        ledger.close()


def test_internal_errors_are_retried_then_dead_lettered_and_the_rest_is_written(world: ServedMarket) -> None:
    """A fault nobody foresaw, on some requests only (injected into the scorer): those are retried
    with backoff and dead-lettered as ``internal_error``; the requests batched with them are written."""
    ledger = Ledger(world)
    users = world.users_in("primary", 12)
    try:
        with running_worker(world, "primary", retry=FAST_RETRY, max_delivery_attempts=3) as worker:
            score = worker.handler.scorer.score

            def failing(booster: object, requests: list[RerankRequest]) -> list[object]:
                if any(r.surface == "boom" for r in requests):
                    raise RuntimeError("injected: the scorer failed")
                return score(booster, requests)

            worker.handler.scorer.score = failing  # type: ignore[method-assign]
            reqs = [*_requests(world, users[:4], "boom"), *_requests(world, users[4:], "fine")]
            count = ledger.settle(reqs, timeout=40)
            print("internal_error on 4 of 12:", count)
    finally:
        ledger.close()
    assert count.lost == 0 and count.duplicates == 0, count
    assert count.dead_lettered == {"internal_error": 4} and count.written == 8, count


def test_a_damaged_stored_value_costs_no_request(world: ServedMarket) -> None:
    """One candidate's stored value is not in the layout: every request naming it is written (that
    candidate read as missing, ranked after the others) and the damage is counted."""
    from app.featurestore.online import online_store

    ledger = Ledger(world)
    users = world.users_in("primary", 6)
    victim = next(c for c in world.users if c not in users)
    r = clients.redis_client(world.state.redis_url)
    store = online_store(r, world.settings, world.registry)
    for entity in world.settings.feature_store.entities:
        for version in entity.versions:
            r.set(store.key(entity.name, version, victim), b"\x00not a value")
    r.close()
    client = world.client()
    try:
        with running_worker(world, "primary", retry=FAST_RETRY, max_delivery_attempts=3) as worker:
            reqs = [client.request(u, "damaged", [victim, *[c for c in world.users if c != u][:10]]) for u in users]
            count = ledger.settle(reqs, timeout=30)
            print("a damaged candidate value:", count)
    finally:
        ledger.close()
    assert count.lost == 0 and count.duplicates == 0 and count.written == len(reqs), count
    assert all(client.ordering(q).ids[-1] == victim for q in reqs), "read as missing: ranked last"
    damaged = sum(s.value for m in worker.metrics.damaged.collect() for s in m.samples if s.name.endswith("_total"))
    assert damaged >= 1, "the damage is counted (a batch reads each candidate once)"


def test_an_item_dynamodb_refuses_is_dead_lettered_and_the_requests_around_it_are_written(
    world: ServedMarket,
) -> None:
    """moto, like DynamoDB, refuses a range key over 1024 bytes (ValidationException). The request
    bounds count characters, so a stack allowing 1024-character ids lets a 600-character non-ASCII
    surface (1,200 bytes) through: that request is dead-lettered at its first delivery as
    ``result_rejected`` with DynamoDB's message, never retried in place; the requests published
    around it on the same worker are written."""
    from app.settings import LimitsConfig

    ledger = Ledger(world)
    users = world.users_in("primary", 7)
    client = world.client()
    others = [c for c in world.users if c not in users][:20]
    try:
        with running_worker(world, "primary", retry=FAST_RETRY, limits=LimitsConfig(max_id_length=1024)):
            before = _requests(world, users[:3], "refused-item")
            refused = client.request(users[3], "é" * 600, others)
            after = _requests(world, users[4:], "refused-item")
            count = ledger.settle(before + after, timeout=30)
            deadline = time.monotonic() + 20
            while refused.request_id not in ledger.dead and time.monotonic() < deadline:
                ledger.pull()
    finally:
        ledger.close()
    print("one item refused among 7:", count, ledger.reasons.get(refused.request_id))
    assert count.written == 6 and count.lost == 0 and count.duplicates == 0, count
    assert ledger.dead[refused.request_id] == 1 and ledger.reasons[refused.request_id] == "result_rejected"


def test_a_request_superseded_by_a_newer_one_is_a_fallback_not_served(world: ServedMarket) -> None:
    """Request A, then a newer B for the same user and surface with other candidates: once B's
    result is stored, A's ordering is the caller's order with the reason, never "re-ranked"."""
    from app.serving.client import NEWER_RESULT, RERANKED

    client = world.client()
    user = world.users_in("primary", 1)[0]
    others = [c for c in world.users if c != user]
    with running_worker(world, "primary"):
        a = client.request(user, "superseded", others[:10])
        b = client.request(user, "superseded", others[10:20])
        ledger = Ledger(world)
        assert ledger.settle([b], timeout=20).written == 1  # (a may have been written before it)
        ledger.close()
    o = client.ordering(a)
    assert o.fell_back and o.reason == NEWER_RESULT and o.ids == a.candidate_ids, o
    assert o.result is not None and o.result.request_id == b.request_id
    ob = client.ordering(b)
    assert not ob.fell_back and ob.reason == RERANKED and sorted(ob.ids) == sorted(b.candidate_ids)


def test_the_prediction_sink_holds_records_while_the_folder_refuses_writes(
    local_stack: LocalState, channel: Channel, tmp_path: Path
) -> None:
    """The offline folder refuses writes (its predictions table is a file, not a folder: an OSError
    a root user meets too): nothing is acked or rejected meanwhile; once it is writable again every
    record lands, none rejected."""
    import threading
    from datetime import UTC, datetime

    import pyarrow.parquet as pq

    from app.serving.messages import Prediction
    from app.serving.sink import PREDICTIONS_TABLE, run_sink

    now = datetime.now(UTC).isoformat()
    records = [Prediction(f"p{i}", "u", "s", "primary", "m", ("a",), (0.5,), now, now) for i in range(5)]
    pub = clients.publisher(local_stack.pubsub_host)
    for f in [pub.publish(channel.topic, r.to_json()) for r in records]:
        f.result(timeout=30)
    blocker = tmp_path / PREDICTIONS_TABLE
    blocker.write_text("not a folder")
    stop, landed = threading.Event(), []
    sub = clients.subscriber(local_stack.pubsub_host)
    t = threading.Thread(target=lambda: landed.append(run_sink(sub, channel.subscription, tmp_path, stop)))
    t.start()
    try:
        time.sleep(3.0)  # a few refused attempts
        assert not list(tmp_path.glob("*.rejected.jsonl")), "a refused write is no record's fault"
        blocker.unlink()
        wait_until(lambda: blocker.is_dir() and len(pq.read_table(blocker)) >= len(records), timeout=20)
    finally:
        stop.set()
        t.join(timeout=10)
        sub.close()
    written = sorted(set(pq.read_table(blocker).column("request_id").to_pylist()))
    print("sink, folder refusing writes:", {"published": len(records), "written": len(written), "rejected": 0})
    assert written == sorted(r.request_id for r in records) and landed == [len(records)]
    assert not list(tmp_path.glob("*.rejected.jsonl"))
