"""The typed settings of one stack, read from ``stacks/Pulumi.<stack>.yaml``.

The Pulumi program and the local runtime read the same file through this model, so a stack
describes one topology in both places. Keys live under the project namespace
(``rerank-platform:<key>``); other namespaces (``gcp:``, ``aws:``) belong to providers and are
left alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.echo import shown
from app.naming import CLOUD_BASE_MAX

PROJECT = "rerank-platform"
REPO_ROOT = Path(__file__).resolve().parent.parent
STACKS_DIR = REPO_ROOT / "stacks"
DEFAULT_STACK = "local"

_NAME = r"^[a-z][a-z0-9_]*$"
_VERSION = r"^v[1-9][0-9]*$"
# Five fields of digits, names (MON, JAN), *, ranges, steps and lists.
_CRON = r"^\s*[0-9A-Za-z*/,-]+(\s+[0-9A-Za-z*/,-]+){4}\s*$"
_CIDR = r"^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$"
_LABEL_KEY = r"^[a-z][a-z0-9_-]{0,62}$"
_LABEL_VALUE = r"^[a-z0-9_-]{0,63}$"
EPHEMERAL_STACK = re.compile(r"^pr-[0-9]{1,6}$")
# What a stack file's name may hold (Pulumi's own rule, shorter): never a path.
STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
EPHEMERAL_BASE = "dev"


# What a variant is for; readouts use these as role labels (never as variant names).
VariantKind = Literal["primary", "arm", "shadow"]
PRIMARY_KIND, ARM_KIND, SHADOW_KIND = get_args(VariantKind)


# A stack file is a few hundred nodes; aliases may share a node, but what validation walks (and an
# error may echo) is the expanded tree, which an alias bomb makes exponential. Refused past this.
MAX_EXPANDED_NODES = 20_000
MAX_PROBLEMS_SHOWN = 20


class StackConfigError(ValueError):
    """A stack file that cannot be used; one line per problem, each naming the key (at most
    ``MAX_PROBLEMS_SHOWN`` of them, then how many more)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {p}" for p in problems[:MAX_PROBLEMS_SHOWN]]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"{source}: ... and {len(problems) - MAX_PROBLEMS_SHOWN} more problems")
        super().__init__("\n".join(lines))


def _expanded_size(node: yaml.Node, budget: int) -> int:
    """How many nodes ``node`` stands for with every alias expanded, counted on the composed graph
    (each shared node once, times its uses), stopping as soon as ``budget`` is passed."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        if id(n) in open_nodes:
            raise ValueError("an alias refers to a node that holds it")
        open_nodes.add(id(n))
        total = 1
        children = [x for pair in n.value for x in pair] if isinstance(n, yaml.MappingNode) else n.value
        if isinstance(n, yaml.CollectionNode):
            for child in children:
                total += size(child)
                if total > budget:
                    break
        open_nodes.discard(id(n))
        sizes[id(n)] = total
        return total

    return size(node)


def read_yaml(text: str | bytes, budget: int = MAX_EXPANDED_NODES) -> Any:
    """A YAML document as ``yaml.safe_load`` reads it, refused (``ValueError``) when it expands to
    more than ``budget`` nodes: checked on the composed nodes, before anything is built from them."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if (n := _expanded_size(node, budget)) > budget:
            raise ValueError(f"expands to more than {budget} values (aliases repeat what they name); found {n}+")
        return loader.construct_document(node)
    finally:
        loader.dispose()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_M = TypeVar("_M", bound=_Strict)


_PROJECT_ID = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"


class GcpConfig(_Strict):
    project: str = Field(pattern=_PROJECT_ID)
    region: str = Field(pattern=r"^[a-z]+-[a-z]+[0-9]$")


class ReviewConfig(_Strict):
    """Where review stacks (``pr-<n>``) live: a GCP project of their own, so destroying one can never
    touch dev's project-level state (grants, service agents, quotas). Read from dev's file."""

    gcp_project: str = Field(pattern=_PROJECT_ID)
    # How many review stacks may be up at once: the review project's quotas are sized for this
    # many (``rerank infra plan --stack pr-<n>`` prints the increases to request).
    concurrent_stacks: int = Field(default=4, ge=1, le=50)


class AwsConfig(_Strict):
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")


class NetworkConfig(_Strict):
    """The VPC the cloud stack creates: nodes, pods and services ranges, the GKE control plane's
    range (private nodes) and who may reach the control plane."""

    subnet_cidr: str = Field(default="10.10.0.0/20", pattern=_CIDR)
    pods_cidr: str = Field(default="10.20.0.0/16", pattern=_CIDR)
    services_cidr: str = Field(default="10.30.0.0/20", pattern=_CIDR)
    master_cidr: str = Field(default="172.16.0.0/28", pattern=r"^[0-9.]+/28$")
    master_authorized_networks: list[str] = Field(default_factory=list)

    @field_validator("master_authorized_networks")
    @classmethod
    def _cidrs(cls, cidrs: list[str]) -> list[str]:
        bad = [c for c in cidrs if not re.match(_CIDR, c)]
        if bad:
            raise ValueError(f"not CIDR ranges: {bad}")
        if "0.0.0.0/0" in cidrs:
            raise ValueError("0.0.0.0/0 would open the control plane to the internet")
        return cidrs


class DataflowConfig(_Strict):
    machine_type: str = "n2-standard-2"
    max_workers: int = Field(default=3, ge=1, le=1000)
    # The streaming ingest job runs all day; review stacks go without it (the local ingest covers
    # the same code) unless dev's file says otherwise.
    enabled: bool = True
    in_review_stacks: bool = False
    # How Streaming Engine is billed, which is the job's streaming mode: per compute unit runs it
    # at-least-once (the ingest template's mode; Dataflow bills every at-least-once job so), per GiB
    # processed runs it exactly-once (infra/dataflow_options.py). `rerank infra cost` prices either.
    streaming_billing: Literal["data_processed", "resource_based"] = "resource_based"


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
    dataflow: DataflowConfig = DataflowConfig()

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


class ScheduleConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,29}$")
    every: Literal["daily", "weekly", "cron"]
    cron: str | None = None  # with every: cron, five fields; daily and weekly run at 03:00 (Monday)
    time_zone: str = "Etc/UTC"

    @model_validator(mode="after")
    def _cron_given_when_needed(self) -> ScheduleConfig:
        if self.every == "cron" and not re.match(_CRON, self.cron or ""):
            raise ValueError(f"schedule {self.name!r}: every: cron needs a five-field cron, got {self.cron!r}")
        if self.every != "cron" and self.cron:
            raise ValueError(f"schedule {self.name!r}: cron is only for every: cron")
        return self

    @property
    def cron_expression(self) -> str:
        return {"daily": "0 3 * * *", "weekly": "0 3 * * 1"}.get(self.every) or str(self.cron)


def _unique_schedule_names(schedules: list[ScheduleConfig]) -> list[ScheduleConfig]:
    names = [s.name for s in schedules]
    if len(set(names)) != len(names):
        raise ValueError(f"schedule names repeat: {names}")
    return schedules


FOLLOWS_PRIMARY = "follows primary"


class SamplingConfig(_Strict):
    """Negative sampling of the pointwise model's training rows: every match is kept and this share
    of the non-matches (by a hash of the row key, so reruns keep the same rows). Validation and test
    keep their true distribution; the rate goes into the model's metadata and its scores are
    corrected by it wherever they are served or compared (``app/ranking/sampling.py``)."""

    negative_rate: float = Field(default=1.0, gt=0, le=1)


class VariantTrainingConfig(_Strict):
    """How a variant's model is trained. The defaults train it like the pipeline's defaults, on
    every impression, whenever the stack's ``training.schedules`` fire ("follows primary")."""

    # A variant that serves the model another variant trains (a shadow trying an arm's model on all
    # traffic) trains nothing itself: the other variant's deploy step deploys to it too.
    follows: str | None = None
    # LightGBM parameters of the pointwise model (app/ranking/model.py DEFAULT_PARAMS names them).
    parameters: dict[str, int | float | str | bool] = Field(default_factory=dict)
    features: Literal["all"] | list[str] = "all"
    # Train on the impressions of this many days up to the newest one; 0: on all of them.
    window_days: int = Field(default=0, ge=0, le=3650)
    # Its own schedules, or None ("follows primary" in a stack file): when the primary retrains.
    schedules: list[ScheduleConfig] | None = None
    # Its own negative sampling, or None: the stack's ``training.sampling``.
    sampling: SamplingConfig | None = None

    @field_validator("schedules", mode="before")
    @classmethod
    def _follows_primary(cls, schedules: Any) -> Any:
        if schedules == FOLLOWS_PRIMARY:
            return None
        if isinstance(schedules, str):
            raise ValueError(f"a list of schedules, or {FOLLOWS_PRIMARY!r}")
        return schedules

    @field_validator("schedules")
    @classmethod
    def _unique(cls, schedules: list[ScheduleConfig] | None) -> list[ScheduleConfig] | None:
        return schedules if schedules is None else _unique_schedule_names(schedules)

    @property
    def feature_list(self) -> list[str]:
        """The features as the pipeline takes them: empty for all."""
        return [] if self.features == "all" else list(self.features)


class VariantConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,19}$")
    kind: VariantKind
    traffic_share: float = Field(default=0.0, ge=0.0, le=1.0)
    training: VariantTrainingConfig = VariantTrainingConfig()


def _low_not_above_high(model: _M, low: str, high: str) -> _M:
    if getattr(model, low) > getattr(model, high):
        raise ValueError(f"{low} {getattr(model, low)} is above {high} {getattr(model, high)}")
    return model


class NodePoolConfig(_Strict):
    """The workers' GKE node pool: spot (or preemptible) VMs, autoscaled between the bounds."""

    machine_type: str = "e2-standard-4"
    min_nodes: int = Field(default=0, ge=0, le=1000)
    max_nodes: int = Field(default=5, ge=1, le=1000)
    provisioning: Literal["spot", "preemptible"] = "spot"
    # Stated, never GKE's default (100 GB pd-balanced, which counts against the regional SSD quota).
    disk_type: Literal["pd-standard", "pd-balanced", "pd-ssd"] = "pd-balanced"
    disk_size_gb: int = Field(default=50, ge=10, le=65536)

    @model_validator(mode="after")
    def _bounds(self) -> NodePoolConfig:
        return _low_not_above_high(self, "min_nodes", "max_nodes")


class SystemPoolConfig(_Strict):
    """On-demand nodes for the cluster's add-ons (kube-dns, metrics) and KEDA, apart from the Spot
    workers: one Spot preemption (Spot VMs carry no SLA) cannot take DNS and scaling down with every
    variant. When enabled, the Spot pool is tainted so only workers and drift checks land there."""

    enabled: bool = False
    machine_type: str = "e2-standard-2"
    # Totals across the region's zones; two, so KEDA's two replicas and kube-dns survive a node.
    min_nodes: int = Field(default=2, ge=1, le=100)
    max_nodes: int = Field(default=4, ge=1, le=100)
    # Stated like the worker pool's (the policy rule `nodes-stated` requires it of every pool).
    disk_type: Literal["pd-standard", "pd-balanced", "pd-ssd"] = "pd-balanced"
    disk_size_gb: int = Field(default=50, ge=10, le=65536)

    @model_validator(mode="after")
    def _bounds(self) -> SystemPoolConfig:
        return _low_not_above_high(self, "min_nodes", "max_nodes")


# GKE release channels, slowest last; a cluster on a channel runs what the channel offers.
ReleaseChannel = Literal["RAPID", "REGULAR", "STABLE"]
RELEASE_CHANNELS: tuple[str, ...] = get_args(ReleaseChannel)


class MaintenanceConfig(_Strict):
    """When Google may upgrade or repair the serving cluster and Memorystore (UTC): weekly on
    ``days`` from ``start_hour`` for ``hours``. GKE needs windows of at least 4 hours that add up to
    48 hours in any 32 days; Memorystore takes one weekly hour, the first day's ``start_hour``."""

    days: list[Literal["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]] = Field(
        default_factory=lambda: ["SATURDAY", "SUNDAY"], min_length=1
    )
    start_hour: int = Field(default=2, ge=0, le=23)
    hours: int = Field(default=6, ge=4, le=24)

    @model_validator(mode="after")
    def _enough_for_gke(self) -> MaintenanceConfig:
        if len(set(self.days)) != len(self.days):
            raise ValueError(f"days repeat: {self.days}")
        weekly = len(self.days) * self.hours
        if weekly * 32 / 7 < 48:
            raise ValueError(
                f"{len(self.days)} day(s) of {self.hours} h is {weekly} h a week; GKE needs 48 h in any 32 days "
                "(11 h a week)"
            )
        return self


class WorkerConfig(_Strict):
    """Worker pods per variant, scaled on the variant subscription's backlog."""

    min_replicas: int = Field(default=1, ge=0, le=500)
    max_replicas: int = Field(default=10, ge=1, le=500)
    backlog_per_replica: int = Field(default=200, ge=1)
    cpu: str = Field(default="500m", pattern=r"^[0-9]+(m|\.[0-9]+)?$")
    memory: str = Field(default="1Gi", pattern=r"^[0-9]+(Mi|Gi)$")

    @model_validator(mode="after")
    def _bounds(self) -> WorkerConfig:
        return _low_not_above_high(self, "min_replicas", "max_replicas")


class ServingConfig(_Strict):
    variants: list[VariantConfig] = Field(min_length=1)
    node_pool: NodePoolConfig = NodePoolConfig()
    system_pool: SystemPoolConfig = SystemPoolConfig()
    # None: STABLE in prod, REGULAR elsewhere, so prod soaks each GKE version behind dev.
    release_channel: ReleaseChannel | None = None
    worker: WorkerConfig = WorkerConfig()
    result_ttl_hours: int = Field(default=24, gt=0)
    predictions_partition_expiration_days: int | None = Field(default=None, gt=0)
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

    @property
    def primary(self) -> VariantConfig:
        """The default variant: the one of kind primary (every command's and pipeline's default)."""
        return next(v for v in self.variants if v.kind == "primary")

    def variant(self, name: str) -> VariantConfig:
        for v in self.variants:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.variants)
        raise ValueError(f"variant {name!r} is not in this stack (variants: {known})")

    def trainer_of(self, name: str) -> VariantConfig:
        """The variant whose training deploys ``name``'s model: itself, or the end of its ``follows``."""
        v, seen = self.variant(name), {name}
        while v.training.follows is not None and v.training.follows not in seen:
            seen.add(v.training.follows)
            v = self.variant(v.training.follows)
        return v

    @property
    def trained(self) -> list[VariantConfig]:
        """The variants that train a model of their own (each has its own scheduled payloads)."""
        return [v for v in self.variants if v.training.follows is None]

    def followers_of(self, name: str) -> list[VariantConfig]:
        """The variants that serve ``name``'s model without training one."""
        return [v for v in self.variants if v.training.follows and self.trainer_of(v.name).name == name != v.name]


class DriftConfig(_Strict):
    # When the cloud stack's drift CronJob runs (five-field cron, UTC); locally it runs on demand.
    schedule: str = Field(default="0 6 * * *", pattern=_CRON)
    recent_days: int = Field(default=3, ge=1, le=90)
    psi_threshold: float = Field(default=0.2, gt=0)
    calibration_gap_threshold: float = Field(default=0.05, gt=0)
    auc_drop_threshold: float = Field(default=0.05, gt=0)
    # A retrain the drift check triggers trains on this many days before now (the recent window).
    retrain_days: int = Field(default=28, ge=3, le=365)


class GateConfig(_Strict):
    """The deploy gate: a new model must beat the model its variant serves by ``margin`` NDCG@10 on
    the same held-out days (and beat the baseline)."""

    margin: float = Field(default=0.005, ge=0, le=1)


class MachineConfig(_Strict):
    cpu: int = Field(ge=1, le=96)
    memory_gb: int = Field(ge=1, le=1024)


class TrainingResourcesConfig(_Strict):
    """The machines the train and evaluate steps may run on, smallest first: each step gets the
    smallest that holds its data (app/ranking/sizing.py); past ``max_memory_gb`` the pipeline stops
    after the dataset step with one line saying what to change."""

    ladder: list[MachineConfig] = Field(
        default_factory=lambda: [
            MachineConfig(cpu=4, memory_gb=16),
            MachineConfig(cpu=8, memory_gb=32),
            MachineConfig(cpu=16, memory_gb=64),
            MachineConfig(cpu=32, memory_gb=128),
        ],
        min_length=1,
    )
    max_memory_gb: int = Field(default=128, ge=1, le=1024)

    @model_validator(mode="after")
    def _ascending_and_reachable(self) -> TrainingResourcesConfig:
        memory = [m.memory_gb for m in self.ladder]
        if memory != sorted(set(memory)):
            raise ValueError(f"ladder: machines smallest first, each with more memory than the last, got {memory}")
        if memory[0] > self.max_memory_gb:
            raise ValueError(
                f"max_memory_gb {self.max_memory_gb} allows no machine of the ladder (smallest {memory[0]})"
            )
        return self


class TrainingConfig(_Strict):
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    drift: DriftConfig = DriftConfig()
    gate: GateConfig = GateConfig()
    # issue 17a: machines sized from the data
    resources: TrainingResourcesConfig = TrainingResourcesConfig()
    # issue 17b: negative sampling of training rows, corrected wherever scores are used
    sampling: SamplingConfig = SamplingConfig()

    @field_validator("schedules")
    @classmethod
    def _unique_schedules(cls, schedules: list[ScheduleConfig]) -> list[ScheduleConfig]:
        return _unique_schedule_names(schedules)


class CrossCloudConfig(_Strict):
    """The AWS side: the core service's account and role (it publishes requests through a GCP
    workload identity pool and reads results from the DynamoDB table)."""

    aws_account_id: str = Field(pattern=r"^[0-9]{12}$")
    core_service_role: str = Field(pattern=r"^[A-Za-z0-9+=,.@_-]{1,64}$")


class MonitoringConfig(_Strict):
    notification_emails: list[str] = Field(default_factory=list)
    oldest_unacked_age_seconds: int = Field(default=300, ge=10)
    backlog_messages: int = Field(default=10_000, ge=1)
    dataflow_lag_seconds: int = Field(default=300, ge=10)

    @field_validator("notification_emails")
    @classmethod
    def _emails(cls, emails: list[str]) -> list[str]:
        bad = [e for e in emails if not re.match(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", e)]
        if bad:
            raise ValueError(f"not e-mail addresses: {bad}")
        return emails


class CostConfig(_Strict):
    """Usage assumptions behind ``rerank infra cost`` (prices come from ``infra/prices.toml``).

    Nothing here changes a resource: these are the volumes a monthly estimate multiplies prices by.
    Review stacks (``pr-<n>``) inherit dev's values with dev's file.
    """

    # Re-rank traffic: each request is one message on the requests topic, one prediction record per
    # serving variant plus one per shadow, and one result item written to DynamoDB.
    requests_per_day: int = Field(default=100_000, ge=0)
    candidates_per_request: int = Field(default=100, ge=1)
    # Bytes one candidate adds to a request, prediction record or result item (id, score); each
    # message or item also carries about 200 bytes of request fields.
    bytes_per_candidate: int = Field(default=32, ge=1)
    result_reads_per_request: float = Field(default=1.0, ge=0)
    # Feature ingest: events published by the core service and streamed by Dataflow.
    feature_events_per_day: int = Field(default=500_000, ge=0)
    feature_event_bytes: int = Field(default=600, ge=1)
    # Share of messages that end up on a dead-letter topic.
    dead_letter_fraction: float = Field(default=0.001, ge=0, le=1)
    # Average nodes of the workers' Spot pool over a month; unset: its minimum, but at least one
    # (KEDA and the system pods need a node). Other autoscaled pools are priced at their minimum.
    avg_nodes: float | None = Field(default=None, ge=0)
    # Average Dataflow workers, and the Streaming Engine compute units a resource-based job uses
    # (a data-processed job is billed per GiB of its feature events instead).
    dataflow_avg_workers: float = Field(default=1.0, ge=0)
    streaming_engine_units: float = Field(default=1.0, ge=0)
    # Hours a day the always-on parts (cluster, nodes, Memorystore, Dataflow, NAT) run.
    hours_per_day: float = Field(default=24.0, gt=0, le=24)
    # Stored data: each bucket and the images in Artifact Registry. The BigQuery tables are priced
    # from their traffic and partition expiration (a table that never expires partitions grows, and
    # is priced as it stands after this many months), the DynamoDB results from requests x TTL.
    storage_horizon_months: int = Field(default=12, ge=1, le=120)
    bucket_gb: float = Field(default=20.0, ge=0)
    image_storage_gb: float = Field(default=10.0, ge=0)
    # Bytes through Cloud NAT besides the results written to AWS (image pulls, other calls),
    # BigQuery bytes scanned by training and drift queries, and how long one training-trigger
    # function run takes.
    nat_gb_per_month: float = Field(default=30.0, ge=0)
    bigquery_scanned_tib_per_month: float = Field(default=0.5, ge=0)
    function_seconds_per_run: float = Field(default=30.0, ge=0)
    # Time series each alert condition returns per execution period (the stack's conditions each
    # filter one subscription or job).
    alert_time_series_per_condition: int = Field(default=1, ge=0)
    # Points each user-defined log-based metric writes to Cloud Monitoring a month: one time series
    # (the stack's count failure log lines and have no labels) with a point each minute. Not derived:
    # how many minutes see a failure, and on how many pods, is the workload's.
    log_metric_points_per_month: int = Field(default=43_800, ge=0)
    secret_accesses_per_month: int = Field(default=10_000, ge=0)


# Input bounds and redelivery (issue 14) ------------------------------------------------------


class LimitsConfig(_Strict):
    """What outside data may look like at every boundary (docs/specs/limits.md); anything beyond is
    dead-lettered (or refused) with a reason, never passed on."""

    max_id_length: int = Field(default=128, ge=8, le=1024)
    max_candidates: int = Field(default=1000, ge=1, le=10_000)
    # Well under the gRPC client's 4 MiB receive limit, so an oversized message is still pulled and dead-lettered.
    max_message_bytes: int = Field(default=1_000_000, ge=1024, le=4_000_000)
    max_json_depth: int = Field(default=32, ge=4, le=256)
    # A producer whose clock runs ahead would pin an online value (newer wins) or a user's results until then.
    max_clock_skew_seconds: int = Field(default=3600, ge=0, le=86400)
    max_event_age_days: int = Field(default=3650, ge=1, le=36500)
    max_request_age_seconds: int = Field(default=86400, ge=60)


class RetryConfig(_Strict):
    """Redelivery backoff of every subscription with a dead-letter policy: attempt n waits
    min(maximum, minimum * 2**(n-1)) seconds, so the attempts span a window a dependency can
    recover in (Pub/Sub's retry policy in the cloud; on the emulator the worker
    holds the message leased for the delay, then hands it back: app/serving/unary_pull.py)."""

    minimum_backoff_seconds: int = Field(default=5, ge=0, le=600)
    maximum_backoff_seconds: int = Field(default=300, ge=0, le=600)

    @model_validator(mode="after")
    def _bounds(self) -> RetryConfig:
        return _low_not_above_high(self, "minimum_backoff_seconds", "maximum_backoff_seconds")

    def delay(self, attempt: int) -> int:
        """Seconds before delivery attempt ``attempt + 1`` after attempt ``attempt`` (1-based) failed."""
        return min(self.maximum_backoff_seconds, self.minimum_backoff_seconds * 2 ** max(0, min(attempt, 20) - 1))


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
    # Cloud stacks only (dev, prod, ephemeral): what the Pulumi program needs beyond the topology.
    image_tag: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    network: NetworkConfig = NetworkConfig()
    cross_cloud: CrossCloudConfig | None = None
    # dev's file only: the project review stacks plan into (ephemeral_settings).
    review: ReviewConfig | None = None
    monitoring: MonitoringConfig = MonitoringConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()
    cost: CostConfig = CostConfig()

    limits: LimitsConfig = LimitsConfig()
    retry: RetryConfig = RetryConfig()

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        # The rules GCP labels and AWS tags both accept.
        bad = [f"{k}={v}" for k, v in labels.items() if not (re.match(_LABEL_KEY, k) and re.match(_LABEL_VALUE, v))]
        if bad:
            raise ValueError(f"labels need lowercase keys and values of [a-z0-9_-] (keys start with a letter): {bad}")
        return labels

    @property
    def protected(self) -> bool:
        """Deletion protection, retain-on-delete and longer retention: prod only."""
        return self.env == "prod"

    @property
    def release_channel(self) -> str:
        """The serving cluster's GKE release channel (``serving.release_channel``, or by env)."""
        return self.serving.release_channel or ("STABLE" if self.env == "prod" else "REGULAR")

    def schedules_of(self, variant: str) -> list[ScheduleConfig]:
        """When ``variant`` retrains: its own schedules, or ("follows primary") the primary's, whose
        default is the stack's ``training.schedules``; none for a variant that follows another's model."""
        v = self.serving.variant(variant)
        if v.training.follows is not None:
            return []
        if isinstance(v.training.schedules, list):
            return v.training.schedules
        primary = self.serving.primary
        if v.name != primary.name and isinstance(primary.training.schedules, list):
            return primary.training.schedules
        return self.training.schedules

    def label_set(self) -> dict[str, str]:
        """Labels every cloud resource carries (the policy pack requires them)."""
        return {**self.labels, "app": "rerank-platform", "stack": self.stack, "env": self.env}


def cloud_problems(s: StackSettings) -> list[str]:
    """What a cloud stack (dev, prod, ephemeral) needs beyond a valid local one; one line each."""
    if s.env == "local":
        return []
    problems = []
    base = f"{s.name_prefix}-{s.stack}"
    if len(base) > CLOUD_BASE_MAX:
        problems.append(
            f"name_prefix: '{base}' (name_prefix-stack) is {len(base)} characters; cloud names allow "
            f"{CLOUD_BASE_MAX} (GCP service account ids are at most 30)"
        )
    if s.image_tag is None:
        problems.append("image_tag: missing; a cloud stack runs the images of this tag (ingest, worker, training)")
    if s.cross_cloud is None:
        problems.append("cross_cloud: missing; a cloud stack needs aws_account_id and core_service_role")
    if s.review is not None and s.review.gcp_project == s.gcp.project:
        problems.append(
            f"review.gcp_project: review stacks need a project of their own, not the stack's {s.gcp.project!r}"
        )
    if s.review is not None and s.env != EPHEMERAL_BASE:
        problems.append(f"review: only {EPHEMERAL_BASE}'s file says where review stacks live")
    if s.serving.pull_mode != "streaming":
        problems.append("serving.pull_mode: unary pulls are a local workaround; cloud stacks use streaming")
    if s.env == "prod":
        redis = s.feature_store.redis
        if redis.tier != "STANDARD_HA":
            problems.append("feature_store.redis.tier: prod needs STANDARD_HA (a replica and automatic failover)")
        if not (redis.auth_enabled and redis.transit_encryption):
            problems.append("feature_store.redis: prod needs auth_enabled and transit_encryption")
        if not s.monitoring.notification_emails:
            problems.append("monitoring.notification_emails: prod alerts need someone to notify")
        if not s.serving.system_pool.enabled:
            problems.append(
                "serving.system_pool.enabled: prod needs an on-demand pool for add-ons and KEDA "
                "(one Spot preemption must not take DNS and scaling down with the workers)"
            )
    return [f"{PROJECT}:{p}" for p in problems]


def variant_problems(s: StackSettings) -> list[str]:
    """How the variants train: ``follows`` names a variant of the stack and ends at one that trains
    (no cycle), and a follower sets nothing it would not use; one line per problem, naming the key."""
    names = [v.name for v in s.serving.variants]
    problems = []
    for i, v in enumerate(s.serving.variants):
        key, t = f"{PROJECT}:serving.variants[{i}].training", v.training
        if t.follows is None:
            continue
        if t.follows not in names:
            problems.append(f"{key}.follows: unknown variant {t.follows!r} (variants: {', '.join(names)})")
            continue
        chain, at = [v.name], s.serving.variant(t.follows)
        while at.training.follows is not None and at.name not in chain and at.training.follows in names:
            chain.append(at.name)
            at = s.serving.variant(at.training.follows)
        if at.name in chain:
            problems.append(f"{key}.follows: a cycle ({' -> '.join([*chain, at.name])}); one of them must train")
        own = [k for k in ("parameters", "features", "window_days", "schedules") if k in t.model_fields_set]
        if own:
            problems.append(
                f"{key}: {', '.join(own)} do not apply to a variant that follows {t.follows!r} (it trains nothing)"
            )
    return problems


def training_input_problems(s: StackSettings) -> list[str]:
    """Each variant's LightGBM parameters and features are ones the training step knows."""
    from app.featurestore.registry import default_registry
    from app.ranking.features import UnknownFeatureError, check_features, model_entities
    from app.ranking.model import split_params

    problems = []
    for i, v in enumerate(s.serving.variants):
        key = f"{PROJECT}:serving.variants[{i}].training"
        try:
            split_params(v.training.parameters)
        except ValueError as exc:
            problems.append(f"{key}.parameters: {exc}")
        try:
            check_features(v.training.feature_list, default_registry(), model_entities(s))
        except UnknownFeatureError as exc:
            problems.append(f"{key}.features: {exc}")
    return problems


def schema_problems(s: StackSettings) -> list[str]:
    """Every entity version a stack names needs a schema (``app/schemas``): workers and training read
    each entity at its ``served`` version, so an unknown one must stop the stack at load."""
    from app.featurestore.registry import default_registry

    known: dict[str, list[str]] = {}
    for spec in default_registry().specs():
        known.setdefault(spec.entity, []).append(spec.version)
    problems = []
    for i, e in enumerate(s.feature_store.entities):
        key = f"{PROJECT}:feature_store.entities[{i}]"
        if e.name not in known:
            problems.append(f"{key}.name: no schema for entity {e.name!r} (known: {', '.join(sorted(known))})")
            continue
        missing = [v for v in e.versions if v not in known[e.name]]
        if missing:
            problems.append(
                f"{key}.versions: {e.name} has no schema for {', '.join(missing)} (known: {', '.join(known[e.name])})"
            )
    return problems


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
    return f"{key}: {shown(msg)[1:-1] if len(msg) > 300 else msg} (got {shown(err['input'])})"


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
    problems += variant_problems(settings) + cloud_problems(settings) + schema_problems(settings)
    if not problems:  # the features are checked against the schemas the stack names
        problems += training_input_problems(settings)
    if problems:
        raise StackConfigError(source, problems)
    return settings


def ephemeral_settings(base: StackSettings, stack: str) -> StackSettings:
    """A short-lived review stack (``pr-<n>``) made from ``dev``'s values: its own names (the stack
    is part of every name), the smallest sizes, nothing protected and no schedules (a review stack
    trains when someone asks it to)."""
    if not EPHEMERAL_STACK.match(stack):
        raise StackConfigError(stack, [f"ephemeral stacks are named pr-<number>, got {stack!r}"])
    if base.review is None:
        raise StackConfigError(
            f"stacks/Pulumi.{EPHEMERAL_BASE}.yaml",
            [f"{PROJECT}:review.gcp_project: missing; review stacks ({stack}) live in a GCP project of their own"],
        )
    fs, sv = base.feature_store, base.serving
    return base.model_copy(
        update={
            "stack": stack,
            "env": "ephemeral",
            # Review stacks share one review project, never dev's (README "Review stacks").
            "gcp": base.gcp.model_copy(update={"project": base.review.gcp_project}),
            "review": None,
            "feature_store": fs.model_copy(
                update={
                    "message_retention_days": 1,
                    "offline_partition_expiration_days": 7,
                    "redis": fs.redis.model_copy(update={"tier": "BASIC", "memory_size_gb": 1}),
                    "dataflow": fs.dataflow.model_copy(
                        update={"max_workers": 1, "enabled": fs.dataflow.in_review_stacks}
                    ),
                }
            ),
            "serving": sv.model_copy(
                update={
                    "node_pool": sv.node_pool.model_copy(update={"min_nodes": 0, "max_nodes": 2}),
                    "worker": sv.worker.model_copy(update={"min_replicas": 0, "max_replicas": 2}),
                    "predictions_partition_expiration_days": 7,
                    "variants": [
                        v.model_copy(update={"training": v.training.model_copy(update={"schedules": []})})
                        if isinstance(v.training.schedules, list)
                        else v
                        for v in sv.variants
                    ],
                }
            ),
            "training": base.training.model_copy(update={"schedules": []}),
            "monitoring": base.monitoring.model_copy(update={"notification_emails": []}),
        }
    )


def stack_file(stack: str, stacks_dir: Path | None = None) -> Path:
    return (stacks_dir or STACKS_DIR) / f"Pulumi.{stack}.yaml"


def load_stack(stack: str = DEFAULT_STACK, stacks_dir: Path | None = None) -> StackSettings:
    """Read and validate ``stacks/Pulumi.<stack>.yaml``; every problem is reported at once."""
    if not STACK_NAME.match(stack):
        raise StackConfigError("--stack", [f"{shown(stack)} is not a stack name (letters, digits, '.', '_', '-')"])
    path = stack_file(stack, stacks_dir)
    if EPHEMERAL_STACK.match(stack) and not path.exists():
        return ephemeral_settings(load_stack(EPHEMERAL_BASE, stacks_dir), stack)
    source = str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
    if not path.exists():
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in path.parent.glob("Pulumi.*.yaml"))
        raise StackConfigError(source, [f"no such stack file (stacks here: {', '.join(known) or 'none'})"])
    try:
        doc = read_yaml(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise StackConfigError(source, [f"not UTF-8: {exc}"]) from None
    except (yaml.YAMLError, RecursionError) as exc:
        first = (str(exc).splitlines() or ["nested too deeply"])[0]
        raise StackConfigError(source, [f"not valid YAML: {first}"]) from None
    except ValueError as exc:
        raise StackConfigError(source, [f"refused: {exc}"]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}), dict):
        raise StackConfigError(source, ["expected a mapping with a 'config:' mapping inside"])
    keys = [k for k in (doc.get("config") or {}) if not isinstance(k, str)]
    if keys:
        raise StackConfigError(source, [f"config keys must be strings, got {keys[:3]!r}"])
    return settings_from_mapping(doc.get("config") or {}, stack=stack, source=source)
