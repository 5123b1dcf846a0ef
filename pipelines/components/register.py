"""Components: register a model with its metadata; look up the latest approved one."""

from typing import NamedTuple

from kfp.dsl import Input, Model


def register_model(
    model: Input[Model],
    metrics_json: str,
    approved: bool,
    reason: str,
    registry_uri: str,
    code_version: str,
) -> NamedTuple("Registered", [("model_id", str), ("model_uri", str)]):
    import json
    from collections import namedtuple
    from pathlib import Path

    from app.ranking.registry import ModelRegistry

    registry = ModelRegistry(registry_uri)
    metadata = {
        **model.metadata,
        "metrics": json.loads(metrics_json),
        "approved": approved,
        "approval_reason": reason,
        "code_version": code_version,
    }
    model_id = registry.register(Path(model.path), metadata)
    out = namedtuple("Registered", ["model_id", "model_uri"])
    return out(model_id, str(registry.model_path(model_id)))


def lookup_latest_model(registry_uri: str, task: str, env: str) -> str:
    """The URI of the newest approved model: feed it to ``dsl.importer`` in another pipeline."""
    from app.ranking.registry import ModelRegistry

    registry = ModelRegistry(registry_uri)
    return str(registry.model_path(registry.latest_approved(task, env)["model_id"]))
