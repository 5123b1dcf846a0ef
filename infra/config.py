"""The stack's settings, read once from Pulumi's configuration through the app's settings model.

``pulumi up --stack dev`` hands the program the keys of ``stacks/Pulumi.dev.yaml`` (structured
values as JSON text); they go through ``app.settings`` exactly as the local runtime reads them, so
a bad key fails here with the same one-line-per-problem message before any resource is planned. A
stack named ``pr-<n>`` is a review stack: CI creates it with dev's configuration and the program
shrinks it (``ephemeral_settings``).
"""

from __future__ import annotations

import json
from typing import Any

from app.settings import EPHEMERAL_STACK, StackSettings, ephemeral_settings, settings_from_mapping


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def settings_from_config(raw: dict[str, Any], stack: str) -> StackSettings:
    """Settings from Pulumi's raw configuration (``{"rerank-platform:env": "dev", ...}``)."""
    source = f"stack {stack} (pulumi config)"
    config = {key: _decode(value) for key, value in raw.items()}
    if EPHEMERAL_STACK.match(stack):
        # Review stacks carry dev's configuration (``pulumi stack init --copy-config-from dev``).
        return ephemeral_settings(settings_from_mapping(config, stack="dev", source=source), stack)
    return settings_from_mapping(config, stack=stack, source=source)


def pulumi_config_mapping() -> dict[str, Any]:
    """Every configuration key the engine passed to this program, structured values as JSON text."""
    from pulumi.runtime import config

    return {**config.get_config_env(), **config.CONFIG.get()}


def stack_config_mapping(settings_yaml: dict[str, Any]) -> dict[str, str]:
    """A stack file's ``config:`` as the engine hands it over: objects and lists as JSON text."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in settings_yaml.items()}
