"""Helpers of the serving tests: run workers in threads, wait, drain subscriptions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.local import clients
from app.local.services import LocalState
from app.market.serving_setup import ServedMarket, prepare_served_market
from app.serving.runtime import build_worker
from app.serving.worker import Worker

__all__ = ["ServedMarket", "drain", "prepare_served_market", "running_worker"]


@contextmanager
def running_worker(world: ServedMarket, variant: str, **overrides: Any) -> Iterator[Worker]:
    worker = build_worker(world.settings, world.state, variant, **overrides)
    thread = threading.Thread(target=worker.run, name=f"worker-{variant}", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the worker did not stop within 15 s"


def drain(state: LocalState, subscription: str) -> None:
    """Ack whatever waits on a subscription (other tests' leftovers)."""
    sub = clients.subscriber(state.pubsub_host)
    try:
        while True:
            resp = sub.pull(subscription=subscription, max_messages=500, timeout=2)
            if not resp.received_messages:
                return
            sub.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in resp.received_messages])
    finally:
        sub.close()
