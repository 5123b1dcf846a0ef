"""`rerank drift check`: compare recent data with the deployed model's training window; when a
threshold is crossed, publish a retraining trigger with the reason and the figures."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pyarrow.parquet as pq

from app.commands.base import UsageError, emit
from app.settings import load_stack


def run(args: argparse.Namespace, state_dir: Path) -> int:
    from app.featurestore.offline import ParquetOfflineStore
    from app.featurestore.registry import default_registry
    from app.local import clients
    from app.local.session import running_state
    from app.naming import Names
    from app.ranking.registry import ModelRegistry
    from app.serving.runtime import registry_dir
    from app.trigger.drift import check_drift
    from app.trigger.local import encode, local_parameters, template_uri
    from app.trigger.payload import TriggerPayload

    settings = load_stack(args.stack)
    impressions = Path(args.market) / "impressions.parquet"
    if not impressions.is_file():
        raise UsageError(f"{impressions}: no such file")
    state = running_state(args.stack, state_dir)
    registry = ModelRegistry(registry_dir(state))
    deployed = registry.deployment(args.variant)
    if deployed is None:
        raise UsageError(f"variant {args.variant} serves no model yet; nothing to check (run `rerank train`)")
    report = check_drift(
        ParquetOfflineStore(state.offline_dir, default_registry()),
        default_registry(),
        pq.read_table(impressions),
        deployed.model_uri,
        registry.metadata(deployed.model_id),
        settings.training.drift,
    )
    out = {**report.to_dict(), "model_id": deployed.model_id, "trigger": None}
    if report.reasons:
        digest = hashlib.sha1(f"{deployed.model_id}|{report.windows['recent']}".encode()).hexdigest()[:12]
        payload = TriggerPayload(
            trigger_id=f"drift-{digest}",
            reason="; ".join(report.reasons),
            stack=settings.stack,
            template_uri=template_uri(),
            figures=report.to_dict(),
            parameters=local_parameters(settings, state, str(impressions), args.variant),
        )
        pub = clients.publisher(state.pubsub_host)
        topic = pub.topic_path(settings.gcp.project, Names.of(settings).training_triggers_topic)
        pub.publish(topic, encode(payload), reason=report.reasons[0].split(":", 1)[0]).result(timeout=30)
        out["trigger"] = payload.trigger_id
    lines = [f"retrain: {r}" for r in report.reasons] or ["all is well: no threshold crossed"]
    lines.append(
        f"max psi {max(report.psi.values()):.3f}, calibration gap {report.calibration_gap:.3f}, "
        f"AUC {report.auc_at_training:.3f} -> {report.auc_recent:.3f}"
    )
    if out["trigger"]:
        lines.append(f"published trigger {out['trigger']}")
    emit(args, out, lambda: "\n".join(lines))
    return 0
