from __future__ import annotations

import pytest

from app.featurestore.registry import Registry, default_registry
from app.settings import StackSettings, load_stack


@pytest.fixture(scope="session")
def registry() -> Registry:
    return default_registry()


@pytest.fixture(scope="session")
def settings() -> StackSettings:
    return load_stack("local")
