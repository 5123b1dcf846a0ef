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
