"""The Kubernetes change that rolls a variant's workers onto a model (for the cloud)."""

from __future__ import annotations

import yaml


def worker_deployment_patch(deployment: str, model_id: str, model_uri: str) -> str:
    """A strategic-merge patch of the worker Deployment: the model env and a pod annotation.

    Workers also pick the model up from the deployment record without a restart; the annotation
    makes the change visible in ``kubectl rollout history`` and rolls pods that missed it.
    """
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment},
        "spec": {
            "template": {
                "metadata": {"annotations": {"rerank.dev/model-id": model_id}},
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "env": [
                                {"name": "MODEL_ID", "value": model_id},
                                {"name": "MODEL_URI", "value": model_uri},
                            ],
                        }
                    ]
                },
            }
        },
    }
    return yaml.safe_dump(patch, sort_keys=False)
