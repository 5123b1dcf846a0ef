"""The trigger function's local runner: payload parameters -> the training pipeline on kfp.local."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.local.services import LocalState
from app.ranking.variant_training import training_parameters
from app.serving.runtime import registry_dir
from app.settings import StackSettings, load_stack
from app.trigger.payload import TriggerPayload
from app.trigger.submit import LocalSubmitter


def local_parameters(
    settings: StackSettings, state: LocalState, impressions_uri: str, variant: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The pipeline parameters a local stack's trigger carries for ``variant`` (default: the
    primary); the cloud's scheduled payloads carry the same from ``infra/training.py``."""
    return {
        "offline_uri": str(state.offline_dir),
        "impressions_uri": impressions_uri,
        "registry_uri": str(registry_dir(state)),
        **training_parameters(settings, variant),
        **extra,
    }


def local_submitter(state: LocalState) -> LocalSubmitter:
    from pipelines.local_run import TrainingRequest, run_training

    def run(p: TriggerPayload) -> dict[str, Any]:
        params = dict(p.parameters)
        fixed = {
            k: params.pop(k)
            for k in ("offline_uri", "impressions_uri", "registry_uri", "env", "worker_deployment", "variant")
        }
        root = Path(state.dir) / "pipeline-root"
        # The payload's stack decides the machines, as its compiled spec does in the cloud.
        resources = load_stack(p.stack).training.resources
        return run_training(TrainingRequest(**fixed, pipeline_root=str(root), arguments=params, resources=resources))

    return LocalSubmitter(run)


def template_uri() -> str:
    from pipelines.training import BUILD_DIR, PIPELINE_NAME

    return str(BUILD_DIR / f"{PIPELINE_NAME}.yaml")


def encode(payload: TriggerPayload) -> bytes:
    return json.dumps(payload.model_dump(exclude_none=True), default=str).encode()
