"""Entry point of ``pulumi up|preview`` (``Pulumi.yaml``: ``main: infra/``)."""

import sys
from pathlib import Path

# Pulumi runs this folder as the program; the app it shares settings and names with is one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi

from app.settings import StackConfigError
from infra.config import pulumi_config_mapping, settings_from_config
from infra.program import build

try:
    settings = settings_from_config(pulumi_config_mapping(), pulumi.get_stack())
except StackConfigError as exc:
    # RunError ends the run with the message alone: one line per problem, no traceback.
    raise pulumi.RunError(str(exc)) from None
for key, value in build(settings).items():
    pulumi.export(key, value)
