"""`rerank drift check`: compare recent data with the deployed model's training window; when a
threshold is crossed, publish a retraining trigger with the reason and the figures.

Locally (`--market DIR`) it reads the local stack's offline store, registry and emulator. In the
cloud (`--endpoints env`, the CronJob `infra/drift.py` declares) everything comes from the
environment (``app.contracts.DriftEnv``): ``PIPELINE_PARAMETERS`` (the JSON the variant's scheduled
triggers carry: offline store URI, impressions, registry) and ``PIPELINE_TEMPLATE``; Pub/Sub is
reached with the pod's identity.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from app.commands.base import RunFailed, UsageError, emit, google_calls
from app.settings import StackSettings, load_stack


@dataclass
class DriftInputs:
    offline_uri: str
    impressions: pa.Table
    registry_dir: Path
    template_uri: str
    parameters: dict[str, Any]
    publish: Callable[[str, bytes, str], None]  # topic name, data, reason attribute
    # (variant, model id, start, end) -> what that model served then, joined with outcomes
    served: Callable[[str, str, datetime, datetime], pa.Table]


def _impressions(uri: str | Path) -> pa.Table:
    from app.ranking.impressions import ImpressionsError, read_impressions

    try:
        return read_impressions(uri).table
    except ImpressionsError as exc:
        raise UsageError(str(exc)) from None


def served_from(offline_uri: str, impressions: pa.Table) -> Callable[[str, str, datetime, datetime], pa.Table]:
    """Served predictions from the offline store the URI names (Parquet folder or ``bq://``)."""
    from app.trigger.served import read_predictions, served_outcomes, served_outcomes_bigquery

    if offline_uri.startswith("bq://"):
        from google.cloud import bigquery

        project, _, dataset = offline_uri.removeprefix("bq://").partition(".")
        client = bigquery.Client(project=project)
        return lambda v, m, start, end: served_outcomes_bigquery(
            client, project, dataset, impressions, v, m, start, end
        )
    return lambda v, m, start, end: served_outcomes(read_predictions(Path(offline_uri)), impressions, v, m, start, end)


def run(args: argparse.Namespace, state_dir: Path) -> int:
    settings = load_stack(args.stack)
    if args.variant is None:
        args.variant = settings.serving.primary.name
    elif args.variant not in {v.name for v in settings.serving.variants}:
        raise UsageError(
            f"variant {args.variant!r} is not in stack {settings.stack} "
            f"(variants: {', '.join(v.name for v in settings.serving.variants)})"
        )
    with google_calls(f"drift check of stack {settings.stack}"):
        inputs = (
            env_inputs(settings, args.variant) if args.endpoints == "env" else local_inputs(args, settings, state_dir)
        )
        return check_and_publish(args, settings, inputs)


def local_inputs(args: argparse.Namespace, settings: StackSettings, state_dir: Path) -> DriftInputs:
    from app.commands.train import impressions_path
    from app.local import clients
    from app.local.session import running_state
    from app.serving.runtime import registry_dir
    from app.trigger.local import local_parameters, template_uri

    if not (args.market or args.impressions):
        raise UsageError("--impressions PATH or --market DIR is required (the outcomes), or --endpoints env")
    path = impressions_path(args)
    state = running_state(args.stack, state_dir)
    pub = clients.publisher(state.pubsub_host)
    impressions = _impressions(path)
    return DriftInputs(
        offline_uri=str(state.offline_dir),
        impressions=impressions,
        registry_dir=registry_dir(state),
        template_uri=template_uri(),
        parameters=local_parameters(settings, state, str(path), settings.serving.trainer_of(args.variant).name),
        publish=lambda topic, data, reason: _publish(pub, settings, topic, data, reason),
        served=served_from(str(state.offline_dir), impressions),
    )


def env_inputs(settings: StackSettings, variant: str, env: Mapping[str, str] | None = None) -> DriftInputs:
    from google.cloud import pubsub_v1

    from app.contracts import DriftEnv, EnvContractError

    try:
        drift_env = DriftEnv.from_env(os.environ if env is None else env)
        parameters = {**drift_env.parameters(), "variant": settings.serving.trainer_of(variant).name}
    except EnvContractError as exc:
        raise UsageError(str(exc)) from None
    try:
        impressions = _impressions(parameters["impressions_uri"])
        offline_uri, registry = parameters["offline_uri"], Path(parameters["registry_uri"])
    except KeyError as exc:
        raise UsageError(f"PIPELINE_PARAMETERS lacks {exc.args[0]}") from None
    except (ValueError, OSError) as exc:
        raise UsageError(f"PIPELINE_PARAMETERS: {exc}") from None
    pub = pubsub_v1.PublisherClient()
    return DriftInputs(
        offline_uri=offline_uri,
        impressions=impressions,
        registry_dir=registry,
        template_uri=drift_env.pipeline_template,
        parameters=parameters,
        publish=lambda topic, data, reason: _publish(pub, settings, topic, data, reason),
        served=served_from(offline_uri, impressions),
    )


def _publish(pub: Any, settings: StackSettings, topic: str, data: bytes, reason: str) -> None:
    pub.publish(pub.topic_path(settings.gcp.project, topic), data, reason=reason).result(timeout=30)


def _from_stack(settings: StackSettings, variant: str) -> dict[str, Any]:
    """Pipeline parameters the stack decides for the variant whose model is retrained (the one that
    trains the checked variant's model), for triggers whose parameters do not carry them yet."""
    from app.ranking.variant_training import training_parameters

    return training_parameters(settings, settings.serving.trainer_of(variant).name)


def retrain_window(report: Any, cfg: Any) -> dict[str, Any]:
    """What the triggered pipeline trains on: the ``retrain_days`` before the recent window's end,
    tested on the recent days themselves (where the drift was seen), one day for validation."""
    end = datetime.fromisoformat(report.windows["recent"].split("/")[1])
    return {
        "window_start": (end - timedelta(days=cfg.retrain_days)).isoformat(),
        "valid_days": 1,
        "test_days": cfg.recent_days,
    }


def check_and_publish(args: argparse.Namespace, settings: StackSettings, inputs: DriftInputs) -> int:
    from app.featurestore.registry import default_registry
    from app.featurestore.stores import offline_store_from_uri
    from app.naming import Names
    from app.ranking.features import model_entities
    from app.ranking.registry import ModelRegistry, RegistryError
    from app.trigger.drift import check_drift
    from app.trigger.local import encode
    from app.trigger.payload import TriggerPayload

    registry = ModelRegistry(inputs.registry_dir)
    try:
        deployed = registry.deployment(args.variant)
        if deployed is None:
            raise UsageError(f"variant {args.variant} serves no model yet; nothing to check (run `rerank train`)")
        trained = registry.metadata(deployed.model_id)
    except RegistryError as exc:
        raise RunFailed(f"the registry cannot say what {args.variant} serves: {exc}") from None
    report = check_drift(
        offline_store_from_uri(inputs.offline_uri, default_registry()),
        default_registry(),
        inputs.impressions,
        deployed.model_uri,
        trained,
        settings.training.drift,
        model_entities(settings),
        served=lambda start, end: inputs.served(args.variant, deployed.model_id, start, end),
    )
    out = {**report.to_dict(), "model_id": deployed.model_id, "trigger": None}
    if report.reasons:
        digest = hashlib.sha1(f"{deployed.model_id}|{report.windows['recent']}".encode()).hexdigest()[:12]
        payload = TriggerPayload(
            trigger_id=f"drift-{digest}",
            reason="; ".join(report.reasons),
            stack=settings.stack,
            template_uri=inputs.template_uri,
            figures=report.to_dict(),
            parameters={
                **_from_stack(settings, args.variant),
                **inputs.parameters,
                **retrain_window(report, settings.training.drift),
            },
        )
        reason = report.reasons[0].split(":", 1)[0]
        inputs.publish(Names.of(settings).training_triggers_topic, encode(payload), reason)
        out["trigger"] = payload.trigger_id
    lines = [f"retrain: {r}" for r in report.reasons] or ["all is well: no threshold crossed"]
    truth = report.ground_truth
    lines.append(
        f"max psi {max(report.psi.values()):.3f}, calibration gap {report.calibration_gap:.3f}, "
        f"AUC {report.auc_at_training:.3f} -> {report.auc_recent:.3f} "
        f"(ground truth: {truth['source'].replace('_', ' ')}, {truth['rows']} rows)"
    )
    if out["trigger"]:
        lines.append(f"published trigger {out['trigger']}")
    emit(args, out, lambda: "\n".join(lines))
    return 0
