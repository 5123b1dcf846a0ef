"""Fixtures of every test, and what lets `make test` run the suite on two workers (pytest -n).

Each worker is a process of its own with its own session fixtures (its own local services on free
ports, its own session plans in tests/unit/infra_plans.py), so a test may share nothing with the
other worker but the repository it reads: it writes under ``tmp_path`` / ``tmp_path_factory``
(never ``.rerank/``, ``pipelines/build/``, ``docs/`` or a fixed temp name), binds free loopback
ports only, and changes the environment through ``monkeypatch``. Tests that need one expensive
session object built once are put on one worker by an ``xdist_group`` (see the served market in
tests/integration/conftest.py).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings as hypothesis_settings

from app.featurestore.registry import Registry, default_registry
from app.settings import StackSettings, load_stack

# CI runs the property tests on a fixed sequence of examples (a run there never depends on luck);
# developers get fresh random examples each run, which is how new counterexamples turn up.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def registry() -> Registry:
    return default_registry()


@pytest.fixture(scope="session")
def settings() -> StackSettings:
    return load_stack("local")
