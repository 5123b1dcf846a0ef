"""The stack's settings, read once from Pulumi's configuration through the app's settings model.

``pulumi up --stack dev`` hands the program the keys of ``stacks/Pulumi.dev.yaml`` (structured
values as JSON text); they go through ``app.settings`` exactly as the local runtime reads them, so
a bad key fails here with the same one-line-per-problem message before any resource is planned. A
stack named ``pr-<n>`` is a review stack: the program reads dev's file and shrinks it
(``ephemeral_settings``); the stack needs no file of its own.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from app.settings import (
    EPHEMERAL_BASE,
    EPHEMERAL_STACK,
    PROJECT,
    StackConfigError,
    StackSettings,
    ephemeral_settings,
    read_yaml,
    settings_from_mapping,
    stack_file,
)


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
        return review_settings(config, stack, source)
    return settings_from_mapping(config, stack=stack, source=source)


def review_settings(config: dict[str, Any], stack: str, source: str) -> StackSettings:
    """A review stack (``pr-<n>``) has no stack file of its own: it is dev's file, shrunk. A stack
    file written on one CI runner is gone on the next, so nothing may depend on it; config that
    does reach the program must agree with dev's file, or the run stops naming the keys."""
    path = stack_file(EPHEMERAL_BASE)
    try:
        dev = read_yaml(path.read_bytes())["config"]
    except (ValueError, yaml.YAMLError) as exc:
        raise StackConfigError(str(path), [f"not a readable stack file: {exc}"]) from None
    expected = {k: _decode(v) for k, v in stack_config_mapping(dev).items()}
    ours = {k: v for k, v in config.items() if k.split(":", 1)[0] == PROJECT}
    differ = sorted(k for k, v in ours.items() if expected.get(k) != v)
    if differ:
        raise StackConfigError(
            source,
            [
                f"{k}: review stacks take their settings from stacks/Pulumi.{EPHEMERAL_BASE}.yaml; remove it"
                for k in differ
            ],
        )
    return ephemeral_settings(settings_from_mapping(dev, stack=EPHEMERAL_BASE, source=str(path)), stack)


def pulumi_config_mapping() -> dict[str, Any]:
    """Every configuration key the engine passed to this program, structured values as JSON text."""
    from pulumi.runtime import config

    return {**config.get_config_env(), **config.CONFIG.get()}


def stack_config_mapping(settings_yaml: dict[str, Any]) -> dict[str, str]:
    """A stack file's ``config:`` as the engine hands it over: objects and lists as JSON text."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in settings_yaml.items()}
