"""Component: the variant's deployment record and the worker manifest, for an approved model."""

from typing import NamedTuple

from kfp.dsl import Artifact, Output


def deploy_model(
    model_id: str,
    approved: bool,
    reason: str,
    serving_model_id: str,
    registry_uri: str,
    variant: str,
    worker_deployment: str,
    manifest: Output[Artifact],
    followers: str = "{}",
) -> NamedTuple("Deployment", [("deployed", bool), ("reason", str)]):
    """Deploy a model the evaluation approved against ``serving_model_id``, if the variant still serves
    that one (another run may have deployed in between: then the comparison is stale).

    The deployment record is what the variant's workers reload; the rendered manifest is the
    worker Deployment patch for the cloud (``kubectl apply`` or the Pulumi program). ``followers``
    (JSON: variant -> worker Deployment) are the variants that serve this variant's model without
    training one (``training.follows`` in the stack): they get the same model."""
    import json
    from collections import namedtuple

    from app.ranking.manifest import worker_deployment_patch
    from app.ranking.registry import ModelRegistry

    out = namedtuple("Deployment", ["deployed", "reason"])
    registry = ModelRegistry(registry_uri)
    current = registry.deployment(variant)
    ok = approved and (current.model_id if current else "") == serving_model_id
    if not approved:
        why = f"not deployed: {reason}"
    elif not ok:
        now = current.model_id if current else "nothing"
        why = f"not deployed: evaluated against {serving_model_id or 'nothing'}, but {variant} now serves {now}"
    else:
        targets = {variant: worker_deployment, **json.loads(followers or "{}")}
        for target in targets:
            registry.deploy(target, model_id, reason if target == variant else f"follows {variant}: {reason}")
        with open(manifest.path, "w") as f:
            f.write(
                "---\n".join(
                    worker_deployment_patch(deployment, model_id, str(registry.model_path(model_id)))
                    for deployment in targets.values()
                )
            )
        why = f"deployed to {', '.join(targets)}: {reason}"
    manifest.metadata.update(
        {
            "variant": variant,
            "followers": sorted(json.loads(followers or "{}")),
            "model_id": model_id,
            "deployed": ok,
            "reason": why,
        }
    )
    return out(ok, why)
