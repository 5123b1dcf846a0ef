"""The program's inventory per stack under mocks, computed once per test session."""

from __future__ import annotations

from functools import cache

from app.settings import TrainingResourcesConfig, load_stack
from infra.plan import Plan, plan_stack
from infra.training import compiled_pipeline


def spec(resources: TrainingResourcesConfig | None = None) -> str:
    """The compiled pipeline for a ladder (default: the settings' default ladder)."""
    return _spec((resources or TrainingResourcesConfig()).model_dump_json())


@cache
def _spec(resources_json: str) -> str:
    resources = TrainingResourcesConfig.model_validate_json(resources_json)
    return compiled_pipeline("europe-west1-docker.pkg.dev/p/r/training:0.1.0", resources)


@cache
def planned(stack: str) -> Plan:
    # The compiled pipeline depends on the stack's ladder only: stacks that share one share a compile.
    settings = load_stack(stack)
    return plan_stack(settings, pipeline_spec=spec(settings.training.resources))
