"""Component: the deploy gate, the variant's deployment record and the worker manifest."""

from typing import NamedTuple

from kfp.dsl import Artifact, Output


def deploy_model(
    model_id: str,
    metrics_json: str,
    approved: bool,
    registry_uri: str,
    variant: str,
    metric: str,
    worker_deployment: str,
    manifest: Output[Artifact],
) -> NamedTuple("Deployment", [("deployed", bool), ("reason", str)]):
    """Deploy only an approved model that beats the variant's current one on ``metric``.

    The deployment record is what the variant's workers reload; the rendered manifest is the
    worker Deployment patch for the cloud (``kubectl apply`` or the Pulumi program)."""
    import json
    from collections import namedtuple

    from app.ranking.manifest import worker_deployment_patch
    from app.ranking.registry import ModelRegistry, gate

    out = namedtuple("Deployment", ["deployed", "reason"])
    registry = ModelRegistry(registry_uri)
    value = float(json.loads(metrics_json)[metric])
    if not approved:
        return out(False, "the model was not approved at evaluation")
    ok, reason = gate(registry.deployment(variant), metric, value)
    if ok:
        registry.deploy(variant, model_id, metric, value)
        with open(manifest.path, "w") as f:
            f.write(worker_deployment_patch(worker_deployment, model_id, str(registry.model_path(model_id))))
    manifest.metadata.update({"variant": variant, "model_id": model_id, "deployed": ok, "reason": reason})
    return out(ok, reason)
