"""Helpers of the serving tests: run workers in threads, wait, drain subscriptions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.serving.endpoints import Endpoints
from app.serving.runtime import build_worker
from app.serving.worker import Worker
from bench.served_market import ServedMarket, prepare_served_market

__all__ = ["ServedMarket", "prepare_served_market", "running_worker"]


@contextmanager
def running_worker(
    world: ServedMarket, variant: str, endpoints: Endpoints | None = None, **overrides: Any
) -> Iterator[Worker]:
    worker = build_worker(world.settings, endpoints or world.state, variant, **overrides)
    thread = threading.Thread(target=worker.run, name=f"worker-{variant}", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the worker did not stop within 15 s"
