"""A small served market for the serving tests: online features, a trained model deployed to
every variant, and helpers to run workers and read what they did."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from app.featurestore.events import FeatureRow, event_attributes, from_pubsub, process_event
from app.featurestore.offline import ParquetOfflineStore
from app.featurestore.online import online_store
from app.featurestore.registry import Registry
from app.local import clients
from app.local.services import LocalState
from app.market.simulate import Market, MarketConfig, simulate
from app.naming import Names
from app.ranking.dataset import columns, join_features, split, time_windows
from app.ranking.features import all_feature_names, feature_matrix
from app.ranking.model import train_pointwise
from app.ranking.registry import ModelRegistry
from app.serving.client import CoreServiceClient
from app.serving.runtime import build_worker, registry_dir, result_store
from app.serving.worker import Worker
from app.settings import StackSettings

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class ServedMarket:
    market: Market
    rows: list[FeatureRow]
    model_id: str
    state: LocalState
    settings: StackSettings
    registry: Registry

    @property
    def users(self) -> list[str]:
        return list(self.market.population.user_id)

    def load_online(self) -> None:
        r = clients.redis_client(self.state.redis_url)
        online_store(r, self.settings, self.registry).write_rows(self.rows)
        r.close()

    def client(self) -> CoreServiceClient:
        pub = clients.publisher(self.state.pubsub_host)
        topic = pub.topic_path(self.settings.gcp.project, Names.of(self.settings).requests_topic)
        return CoreServiceClient(
            pub, topic, result_store(self.settings, self.state), list(self.settings.serving.variants)
        )

    def users_in(self, arm: str, n: int) -> list[str]:
        c = self.client()
        return [u for u in self.users if c.arm(u) == arm][:n]


def build_served_market(state: LocalState, settings: StackSettings, registry: Registry, tmp: Path) -> ServedMarket:
    market = simulate(MarketConfig(users=300, days=6, seed=21))
    rows = []
    for entity, version, at, msg in market.events:
        row = process_event(
            from_pubsub(msg.SerializeToString(), event_attributes(entity, version, at), "m"), registry, NOW
        )
        assert isinstance(row, FeatureRow)
        rows.append(row)
    offline = ParquetOfflineStore(tmp / "offline", registry)
    offline.write_rows(rows)
    joined = join_features(offline, market.impressions, registry)
    parts = {k: columns(v) for k, v in split(joined, time_windows(joined, 1, 1)).items()}
    names = all_feature_names(registry)
    booster = train_pointwise(
        feature_matrix(parts["train"], names),
        parts["train"]["match"],
        feature_matrix(parts["valid"], names),
        parts["valid"]["match"],
        names,
        {"num_boost_round": 30},
    )
    booster.save_model(str(tmp / "model.txt"))
    reg = ModelRegistry(registry_dir(state))
    model_id = reg.register(tmp / "model.txt", {"task": "serving-test", "env": "local", "approved": True})
    for v in settings.serving.variants:
        reg.deploy(v.name, model_id, "model_ndcg_at_10", 0.5)
    world = ServedMarket(market, rows, model_id, state, settings, registry)
    world.load_online()
    return world


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


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout}s")


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


def redis_up(state: LocalState) -> bool:
    try:
        return bool(redis.Redis.from_url(state.redis_url, socket_connect_timeout=0.3).ping())
    except redis.RedisError:
        return False
