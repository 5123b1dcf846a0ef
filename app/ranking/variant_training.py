"""What a variant's training run is given: the pipeline parameters its stack decides.

Every path that starts a training run (the cloud's scheduled payloads, the drift check's trigger,
``rerank train``, the demo) takes them from here, so a variant declared in the stack file trains
the same way wherever it runs.
"""

from __future__ import annotations

import json
from typing import Any

from app.naming import Names
from app.ranking.features import format_entities, model_entities
from app.settings import StackSettings


class FollowerError(ValueError):
    """A variant that serves another's model trains nothing itself."""


def training_parameters(settings: StackSettings, variant: str | None = None) -> dict[str, Any]:
    """The pipeline parameters of ``variant``'s training (default: the stack's primary): its
    LightGBM parameters, features, window and negative sampling rate, where its deploy step deploys
    (its worker Deployment, and those of the variants that follow it), the entities and the gate margin."""
    sv, n = settings.serving, Names.of(settings)
    v = sv.variant(variant or sv.primary.name)
    if v.training.follows is not None:
        raise FollowerError(
            f"variant {v.name} serves the model of {sv.trainer_of(v.name).name} (training.follows); train that one"
        )
    return {
        "env": settings.env,
        "variant": v.name,
        "worker_deployment": n.worker_deployment(v.name),
        "followers": json.dumps({f.name: n.worker_deployment(f.name) for f in sv.followers_of(v.name)}, sort_keys=True),
        "hyperparameters": json.dumps(v.training.parameters, sort_keys=True),
        "features": ",".join(v.training.feature_list),
        "window_days": v.training.window_days,
        "entities": format_entities(model_entities(settings)),
        "gate_margin": settings.training.gate.margin,
        "entity_ttl_days": json.dumps({e.name: e.ttl_days for e in settings.feature_store.entities}, sort_keys=True),
        "negative_rate": (v.training.sampling or settings.training.sampling).negative_rate,
    }
