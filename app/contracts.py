"""The environment each cloud workload receives, declared once.

``infra/`` builds a workload's environment with ``to_env()`` (values may be Pulumi Outputs; they
pass through untouched) and the workload reads it back with ``from_env()``: a worker pod
(``WorkerEnv``, read by ``app.serving.endpoints.CloudEndpoints``), the drift CronJob (``DriftEnv``,
``app.commands.drift``) and the trigger function (``TriggerEnv``, ``app.trigger.main``). A
variable no field declares is neither set nor read. Only the standard library here: the trigger
function's source ships this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

_E = TypeVar("_E", bound="_Env")


class EnvContractError(ValueError):
    """The environment lacks what the workload needs; names every missing or bad variable."""


@dataclass(frozen=True)
class _Env:
    # field name -> environment variable; fields left None are not set.
    VARIABLES: ClassVar[dict[str, str]]
    REQUIRED: ClassVar[tuple[str, ...]]
    WORKLOAD: ClassVar[str]

    def to_env(self) -> dict[str, Any]:
        """Variable -> value, in declaration order, without the unset ones."""
        return {var: getattr(self, f) for f, var in self.VARIABLES.items() if getattr(self, f) is not None}

    @classmethod
    def from_env(cls: type[_E], env: Mapping[str, str]) -> _E:
        missing = [cls.VARIABLES[f] for f in cls.REQUIRED if not env.get(cls.VARIABLES[f])]
        if missing:
            raise EnvContractError(f"{cls.WORKLOAD} needs environment variable(s) {', '.join(missing)}")
        return cls(**{f: env.get(var) or None for f, var in cls.VARIABLES.items()})

    @classmethod
    def names(cls) -> set[str]:
        return set(cls.VARIABLES.values())


def k8s_env(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A container's ``env`` list from ``to_env()``."""
    return [{"name": k, "value": v} for k, v in values.items()]


@dataclass(frozen=True)
class WorkerEnv(_Env):
    """A worker pod (``rerank serve --endpoints env``). The Redis URL holds the AUTH string, so pods
    get it as a file from a secret (``REDIS_URL_FILE``); ``REDIS_URL`` itself is for runs outside a
    pod. Shadow workers never write served results: no ``AWS_ROLE_ARN``."""

    VARIABLES: ClassVar[dict[str, str]] = {
        "redis_url_file": "REDIS_URL_FILE",
        "redis_url": "REDIS_URL",
        "redis_ca_file": "REDIS_CA_FILE",
        "model_registry": "MODEL_REGISTRY",
        "aws_role_arn": "AWS_ROLE_ARN",
        # Overrides for tests against local stand-ins (moto's STS, a fake metadata server).
        "aws_sts_endpoint": "AWS_STS_ENDPOINT",
        "metadata_identity_url": "GOOGLE_METADATA_IDENTITY_URL",
    }
    REQUIRED: ClassVar[tuple[str, ...]] = ("model_registry",)
    WORKLOAD: ClassVar[str] = "--endpoints env"

    model_registry: Any = None
    redis_url_file: Any = None
    redis_url: Any = None
    redis_ca_file: Any = None
    aws_role_arn: Any = None
    aws_sts_endpoint: Any = None
    metadata_identity_url: Any = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerEnv:
        if not (env.get("REDIS_URL_FILE") or env.get("REDIS_URL")):
            missing = ["REDIS_URL_FILE", *(["MODEL_REGISTRY"] if not env.get("MODEL_REGISTRY") else [])]
            raise EnvContractError(f"{cls.WORKLOAD} needs environment variable(s) {', '.join(missing)}")
        return super().from_env(env)


@dataclass(frozen=True)
class DriftEnv(_Env):
    """The drift CronJob (``rerank drift check --endpoints env --variant V``): the pipeline
    parameters of the variant's scheduled training (JSON) and the compiled pipeline's URI."""

    VARIABLES: ClassVar[dict[str, str]] = {
        "pipeline_parameters": "PIPELINE_PARAMETERS",
        "pipeline_template": "PIPELINE_TEMPLATE",
    }
    REQUIRED: ClassVar[tuple[str, ...]] = ("pipeline_parameters", "pipeline_template")
    WORKLOAD: ClassVar[str] = "--endpoints env"

    pipeline_parameters: Any = None
    pipeline_template: Any = None

    def parameters(self) -> dict[str, Any]:
        """``PIPELINE_PARAMETERS`` as a JSON object (``EnvContractError`` when it is not one)."""
        try:
            doc = json.loads(self.pipeline_parameters)
        except ValueError as exc:
            raise EnvContractError(f"PIPELINE_PARAMETERS: {exc}") from None
        if not isinstance(doc, dict):
            raise EnvContractError("PIPELINE_PARAMETERS: not a JSON object")
        return doc


@dataclass(frozen=True)
class TriggerEnv(_Env):
    """The trigger function: where it submits pipelines, as whom, and its ledger's bucket; and what
    it agrees to submit (``app.trigger.admission``): its stack, the spec the program uploaded (URI
    and SHA-256) and each trained variant's pipeline parameters (JSON, variant -> parameters)."""

    VARIABLES: ClassVar[dict[str, str]] = {
        "project": "PROJECT",
        "region": "REGION",
        "pipeline_service_account": "PIPELINE_SERVICE_ACCOUNT",
        "pipeline_root": "PIPELINE_ROOT",
        "ledger_bucket": "LEDGER_BUCKET",
        "stack": "STACK",
        "pipeline_template": "PIPELINE_TEMPLATE",
        "pipeline_spec_sha256": "PIPELINE_SPEC_SHA256",
        "variant_parameters": "VARIANT_PARAMETERS",
    }
    REQUIRED: ClassVar[tuple[str, ...]] = tuple(VARIABLES)
    WORKLOAD: ClassVar[str] = "the trigger function"

    project: Any = None
    region: Any = None
    pipeline_service_account: Any = None
    pipeline_root: Any = None
    ledger_bucket: Any = None
    stack: Any = None
    pipeline_template: Any = None
    pipeline_spec_sha256: Any = None
    variant_parameters: Any = None
