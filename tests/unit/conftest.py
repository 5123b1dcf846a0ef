"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from tests.unit.infra_plans import planned


@pytest.fixture
def cached_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """`rerank infra plan|cost` in this process plans this tree through ``infra.plan.plan_stack``:
    hand it the session's plan of the stack (tests/unit/infra_plans.py) instead of planning again.
    For tests of what a command does with a plan; a test of planning itself calls plan_stack."""
    monkeypatch.setattr("infra.plan.plan_stack", lambda settings, pipeline_spec=None: planned(settings.stack))
