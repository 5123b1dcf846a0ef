"""Assemble a worker of a variant from the stack settings and its endpoints (the local services,
or the cloud's: ``app.serving.endpoints``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from app.featurestore.online import online_store
from app.featurestore.registry import default_registry
from app.local import clients
from app.local.services import LocalState
from app.naming import Names
from app.ranking.features import model_entities
from app.ranking.registry import ModelRegistry
from app.serving.endpoints import Endpoints, endpoints_of
from app.serving.model_handle import DeployedModel
from app.serving.observability import WorkerMetrics
from app.serving.results import ResultStore
from app.serving.scoring import Scorer
from app.serving.worker import BatchHandler, Worker, WorkerConfig
from app.settings import StackSettings


def registry_dir(state: LocalState | Endpoints) -> Path:
    return endpoints_of(state).registry_dir


def result_store(settings: StackSettings, state: LocalState | Endpoints) -> ResultStore:
    return ResultStore(
        endpoints_of(state).dynamodb(settings.aws.region),
        Names.of(settings).results_table,
        timedelta(hours=settings.serving.result_ttl_hours),
    )


def build_worker(settings: StackSettings, state: LocalState | Endpoints, variant: str, **overrides: Any) -> Worker:
    variants = {v.name: v for v in settings.serving.variants}
    if variant not in variants:
        raise ValueError(f"variant {variant!r} is not in stack {settings.stack} (variants: {', '.join(variants)})")
    v, names, project = variants[variant], Names.of(settings), settings.gcp.project
    endpoints = endpoints_of(state)
    publisher = endpoints.publisher(clients.LOW_LATENCY)
    stack_config: dict[str, Any] = {
        "variant": variant,
        "kind": v.kind,
        "subscription": f"projects/{project}/subscriptions/{names.variant_subscription(variant)}",
        "predictions_topic": f"projects/{project}/topics/{names.predictions_topic}",
        "dead_letter_topic": f"projects/{project}/topics/{names.requests_dead_letter_topic}",
        "max_delivery_attempts": settings.serving.max_delivery_attempts,
        "pull_mode": settings.serving.pull_mode,
        "ack_deadline_s": settings.serving.ack_deadline_seconds,
        "served_arms": tuple(x.name for x in settings.serving.variants if x.kind != "shadow"),
        "limits": settings.limits,
        "retry": settings.retry,
    }
    cfg = WorkerConfig(**{**stack_config, **overrides})
    registry = default_registry()
    metrics = WorkerMetrics(variant)
    store = online_store(endpoints.redis(), settings, registry)
    store.on_damaged = metrics.damaged_values  # a damaged value reads as missing; this counts it
    handler = BatchHandler(
        cfg,
        Scorer(store, registry, model_entities(settings)),
        DeployedModel(ModelRegistry(registry_dir(state)), variant),
        None if v.kind == "shadow" else result_store(settings, state),
        lambda topic, data, attrs: publisher.publish(topic, data, **attrs),
        metrics,
    )
    return Worker(cfg, endpoints.subscriber(), handler, metrics)
