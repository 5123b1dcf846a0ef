"""The program's inventory per stack under mocks, computed once per test session."""

from __future__ import annotations

from functools import cache

from app.settings import load_stack
from infra.plan import Plan, plan_stack
from infra.training import compiled_pipeline


@cache
def spec() -> str:
    return compiled_pipeline("europe-west1-docker.pkg.dev/p/r/training:0.1.0")


@cache
def planned(stack: str) -> Plan:
    # The compiled pipeline does not depend on the stack: compile it once for the session.
    return plan_stack(load_stack(stack), pipeline_spec=spec())
