"""Components: register a model with its evaluation; look up the latest approved one."""

from typing import NamedTuple

from kfp.dsl import Artifact, Input, Model, Output


def register_model(
    model: Input[Model],
    metrics_json: str,
    approved: bool,
    reason: str,
    serving_model_id: str,
    variant: str,
    registry_uri: str,
    code_version: str,
    record: Output[Artifact],
) -> NamedTuple("Registered", [("model_id", str), ("model_uri", str)]):
    """The model with its metadata and its evaluation: the figures of the new model, the baseline and
    the serving model on the same test window, and the decision."""
    import json
    from collections import namedtuple
    from pathlib import Path

    from app.ranking.registry import ModelRegistry

    registry = ModelRegistry(registry_uri)
    metrics = json.loads(metrics_json)
    metadata = {
        **model.metadata,
        "metrics": metrics,
        "evaluation": {
            "window": {k: model.metadata.get("data_window", {}).get(k) for k in ("valid_end", "end")},
            "variant": variant,
            "serving_model_id": serving_model_id or None,
        },
        "approved": approved,
        "approval_reason": reason,
        "code_version": code_version,
    }
    model_id = registry.register(Path(model.path), metadata)
    # The same record on the pipeline's artifact (Vertex AI keeps artifact metadata in ML Metadata).
    record.metadata.update({**metadata, "model_id": model_id})
    with open(record.path, "w") as f:
        json.dump({**metadata, "model_id": model_id}, f, indent=2, sort_keys=True, default=str)
    out = namedtuple("Registered", ["model_id", "model_uri"])
    return out(model_id, str(registry.model_path(model_id)))


def lookup_latest_model(registry_uri: str, task: str, env: str) -> str:
    """The URI of the newest approved model: feed it to ``dsl.importer`` in another pipeline."""
    from app.ranking.registry import ModelRegistry

    registry = ModelRegistry(registry_uri)
    return str(registry.model_path(registry.latest_approved(task, env)["model_id"]))
