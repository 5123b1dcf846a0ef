"""The typed settings of one stack, read from ``stacks/Pulumi.<stack>.yaml``.

The Pulumi program and the local runtime read the same file through this model, so a stack
describes one topology in both places. Keys live under the project namespace
(``rerank-platform:<key>``); other namespaces (``gcp:``, ``aws:``) belong to providers and are
left alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PROJECT = "rerank-platform"
REPO_ROOT = Path(__file__).resolve().parent.parent
STACKS_DIR = REPO_ROOT / "stacks"
DEFAULT_STACK = "local"

_NAME = r"^[a-z][a-z0-9_]*$"
_VERSION = r"^v[1-9][0-9]*$"


class StackConfigError(ValueError):
    """A stack file that cannot be used; one line per problem, each naming the key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GcpConfig(_Strict):
    project: str = Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
    region: str = Field(pattern=r"^[a-z]+-[a-z]+[0-9]$")


class AwsConfig(_Strict):
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")


class RedisConfig(_Strict):
    tier: Literal["BASIC", "STANDARD_HA"] = "BASIC"
    memory_size_gb: int = Field(default=1, ge=1, le=300)
    auth_enabled: bool = False
    transit_encryption: bool = False


class EntityConfig(_Strict):
    name: str = Field(pattern=_NAME)
    versions: list[str] = Field(min_length=1)
    serving_version: str | None = None
    ttl_days: int = Field(gt=0, le=3650)

    @field_validator("versions")
    @classmethod
    def _versions_well_formed(cls, versions: list[str]) -> list[str]:
        bad = [v for v in versions if not re.match(_VERSION, v)]
        if bad:
            raise ValueError(f"versions must look like v1, v2, ...; got {bad}")
        if len(set(versions)) != len(versions):
            raise ValueError(f"versions repeat: {versions}")
        return versions

    @model_validator(mode="after")
    def _serving_version_listed(self) -> EntityConfig:
        if self.serving_version is not None and self.serving_version not in self.versions:
            raise ValueError(f"serving_version {self.serving_version!r} is not one of versions {self.versions}")
        return self

    @property
    def served(self) -> str:
        """The version the serving path reads: the configured one, else the newest."""
        return self.serving_version or max(self.versions, key=lambda v: int(v[1:]))


class FeatureStoreConfig(_Strict):
    entities: list[EntityConfig] = Field(min_length=1)
    max_delivery_attempts: int = Field(default=5, ge=5, le=100)
    ack_deadline_seconds: int = Field(default=60, ge=10, le=600)
    message_retention_days: int = Field(default=1, ge=1, le=7)
    offline_partition_expiration_days: int | None = Field(default=None, gt=0)
    redis: RedisConfig = RedisConfig()

    @field_validator("entities")
    @classmethod
    def _unique_entities(cls, entities: list[EntityConfig]) -> list[EntityConfig]:
        names = [e.name for e in entities]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"entity names repeat: {dupes}")
        return entities

    def entity(self, name: str) -> EntityConfig:
        for e in self.entities:
            if e.name == name:
                return e
        raise KeyError(name)


class VariantConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,19}$")
    kind: Literal["primary", "arm", "shadow"]
    traffic_share: float = Field(default=0.0, ge=0.0, le=1.0)


class ServingConfig(_Strict):
    variants: list[VariantConfig] = Field(min_length=1)
    result_ttl_hours: int = Field(default=24, gt=0)
    max_delivery_attempts: int = Field(default=5, ge=5, le=100)
    ack_deadline_seconds: int = Field(default=30, ge=10, le=600)
    pull_mode: Literal["streaming", "unary"] = "streaming"

    @model_validator(mode="after")
    def _variants_consistent(self) -> ServingConfig:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names repeat: {names}")
        primaries = [v.name for v in self.variants if v.kind == "primary"]
        if len(primaries) != 1:
            raise ValueError(f"exactly one variant must be kind 'primary', found {primaries or 'none'}")
        shadows_with_share = [v.name for v in self.variants if v.kind == "shadow" and v.traffic_share]
        if shadows_with_share:
            raise ValueError(f"shadow variants see all traffic and take no traffic_share: {shadows_with_share}")
        served = sum(v.traffic_share for v in self.variants if v.kind != "shadow")
        if abs(served - 1.0) > 1e-9:
            raise ValueError(f"traffic_share of primary and arm variants must add up to 1, got {served:g}")
        return self


class ScheduleConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,29}$")
    every: Literal["daily", "weekly", "cron"]
    cron: str | None = None  # with every: cron, five fields; daily and weekly run at 03:00 (Monday)
    time_zone: str = "Etc/UTC"

    @model_validator(mode="after")
    def _cron_given_when_needed(self) -> ScheduleConfig:
        if self.every == "cron" and (not self.cron or len(self.cron.split()) != 5):
            raise ValueError(f"schedule {self.name!r}: every: cron needs a five-field cron, got {self.cron!r}")
        if self.every != "cron" and self.cron:
            raise ValueError(f"schedule {self.name!r}: cron is only for every: cron")
        return self

    @property
    def cron_expression(self) -> str:
        return {"daily": "0 3 * * *", "weekly": "0 3 * * 1"}.get(self.every) or str(self.cron)


class DriftConfig(_Strict):
    recent_days: int = Field(default=3, ge=1, le=90)
    psi_threshold: float = Field(default=0.2, gt=0)
    calibration_gap_threshold: float = Field(default=0.05, gt=0)
    auc_drop_threshold: float = Field(default=0.05, gt=0)


class TrainingConfig(_Strict):
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    drift: DriftConfig = DriftConfig()

    @field_validator("schedules")
    @classmethod
    def _unique_schedules(cls, schedules: list[ScheduleConfig]) -> list[ScheduleConfig]:
        names = [s.name for s in schedules]
        if len(set(names)) != len(names):
            raise ValueError(f"schedule names repeat: {names}")
        return schedules


class StackSettings(_Strict):
    stack: str = Field(pattern=r"^[a-z][a-z0-9-]{0,19}$")
    env: Literal["local", "dev", "prod", "ephemeral"]
    name_prefix: str = Field(default="rerank", pattern=r"^[a-z][a-z0-9]{1,9}$")
    gcp: GcpConfig
    aws: AwsConfig
    feature_store: FeatureStoreConfig
    serving: ServingConfig
    training: TrainingConfig = TrainingConfig()
    labels: dict[str, str] = Field(default_factory=dict)


def _describe_error(err: dict[str, Any]) -> str:
    loc = err["loc"]
    key = f"{PROJECT}:{loc[0]}" if loc else PROJECT
    for part in loc[1:]:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    kind = err["type"]
    if kind == "missing":
        return f"{key}: missing required value"
    if kind == "extra_forbidden":
        return f"{key}: unknown key"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{key}: {msg} (got {err['input']!r})"


def settings_from_mapping(config: dict[str, Any], stack: str, source: str) -> StackSettings:
    """Build settings from a Pulumi-style config mapping (``{"rerank-platform:env": "dev", ...}``)."""
    ours: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in config.items():
        namespace, _, name = key.rpartition(":")
        if namespace in ("", PROJECT):
            if name == "stack":
                problems.append(f"{PROJECT}:stack: unknown key (the stack name comes from the file name)")
            else:
                ours[name] = value
    ours["stack"] = stack
    try:
        settings = StackSettings.model_validate(ours)
    except ValidationError as exc:
        problems += [_describe_error(e) for e in exc.errors()]
        raise StackConfigError(source, problems) from None
    if problems:
        raise StackConfigError(source, problems)
    return settings


def stack_file(stack: str, stacks_dir: Path | None = None) -> Path:
    return (stacks_dir or STACKS_DIR) / f"Pulumi.{stack}.yaml"


def load_stack(stack: str = DEFAULT_STACK, stacks_dir: Path | None = None) -> StackSettings:
    """Read and validate ``stacks/Pulumi.<stack>.yaml``; every problem is reported at once."""
    path = stack_file(stack, stacks_dir)
    source = str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
    if not path.exists():
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in path.parent.glob("Pulumi.*.yaml"))
        raise StackConfigError(source, [f"no such stack file (stacks here: {', '.join(known) or 'none'})"])
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StackConfigError(source, [f"not valid YAML: {str(exc).splitlines()[0]}"]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}), dict):
        raise StackConfigError(source, ["expected a mapping with a 'config:' mapping inside"])
    return settings_from_mapping(doc.get("config") or {}, stack=stack, source=source)
