"""A market made ready to serve: its features in the online store, a quick model deployed to every
variant. The serving tests and the serving benchmark start from it; it is a test bed, not part of
the product (``app/``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from app.featurestore.events import FeatureRow, event_attributes, from_pubsub, process_event
from app.featurestore.offline import ParquetOfflineStore
from app.featurestore.online import online_store
from app.featurestore.registry import Registry
from app.local import clients
from app.local.services import LocalState
from app.market.simulate import Market, MarketConfig, simulate
from app.naming import Names
from app.ranking.dataset import columns, join_features, split, time_windows
from app.ranking.features import all_feature_names, feature_matrix, model_entities
from app.ranking.model import train_pointwise
from app.ranking.registry import ModelRegistry
from app.serving.client import CoreServiceClient
from app.serving.runtime import registry_dir, result_store
from app.settings import StackSettings

NOW = datetime(2026, 11, 1, tzinfo=UTC)
SMALL_MARKET = MarketConfig(users=300, days=6, seed=21)


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
        pub = clients.publisher(self.state.pubsub_host, clients.LOW_LATENCY)
        topic = pub.topic_path(self.settings.gcp.project, Names.of(self.settings).requests_topic)
        return CoreServiceClient(
            pub, topic, result_store(self.settings, self.state), list(self.settings.serving.variants)
        )

    def users_in(self, arm: str, n: int) -> list[str]:
        c = self.client()
        return [u for u in self.users if c.arm(u) == arm][:n]


def prepare_served_market(
    state: LocalState,
    settings: StackSettings,
    registry: Registry,
    workdir: Path,
    config: MarketConfig = SMALL_MARKET,
) -> ServedMarket:
    """Simulate a market, put its features online, train a quick model and deploy it to every variant."""
    market = simulate(config)
    rows = []
    for entity, version, at, msg in market.events:
        row = process_event(
            from_pubsub(msg.SerializeToString(), event_attributes(entity, version, at), "m"), registry, NOW
        )
        assert isinstance(row, FeatureRow)
        rows.append(row)
    offline = ParquetOfflineStore(workdir / "offline", registry)
    offline.write_rows(rows)
    entities = model_entities(settings)
    joined = join_features(offline, market.impressions, registry, entities)
    parts = {k: columns(v) for k, v in split(joined, time_windows(joined, 1, 1)).items()}
    names = all_feature_names(registry, entities)
    booster = train_pointwise(
        feature_matrix(parts["train"], names),
        parts["train"]["match"],
        feature_matrix(parts["valid"], names),
        parts["valid"]["match"],
        names,
        {"num_boost_round": 30},
    )
    booster.save_model(str(workdir / "model.txt"))
    reg = ModelRegistry(registry_dir(state))
    model_id = reg.register(workdir / "model.txt", {"task": "serving-test", "env": "local", "approved": True})
    for v in settings.serving.variants:
        reg.deploy(v.name, model_id, "a quick model for serving tests")
    world = ServedMarket(market, rows, model_id, state, settings, registry)
    world.load_online()
    return world
