"""A monthly estimate of a stack from its planned inventory, the price table ``infra/prices.toml``
and the stack's usage assumptions (``cost`` in its settings).

It prices the inventory as ``rerank infra plan --json`` prints it (type, name, inputs), so another
commit's plan, planned in its own tree, is priced the same way. A type the table does not price is
"unpriced", never zero; a type the table lists as free says why.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from app.naming import Names
from app.settings import REPO_ROOT, StackSettings

PRICE_TABLE = REPO_ROOT / "infra/prices.toml"
TIB = 1024**4
GIB = 1024**3
# Each message or item carries the request's own fields besides its candidates.
MESSAGE_OVERHEAD_BYTES = 200
GKE_DEFAULT_DISK_GB = 100
DATAFLOW_DISK_GB = 30  # a Streaming Engine worker's default disk
TRIGGER_MESSAGE_BYTES = 1000


class PriceTableError(ValueError):
    """A price table that cannot be used: one line naming the entry."""


@dataclass(frozen=True)
class Price:
    key: str
    usd: float
    unit: str
    source: str
    dated: str


@dataclass(frozen=True)
class PriceTable:
    path: Path
    dated: str
    hours_per_month: float
    note: str
    sources: dict[str, dict[str, str]]
    prices: dict[str, Price]
    machine_types: dict[str, dict[str, float]]
    memorystore_bands: dict[str, tuple[int, int]]
    function_cpu: dict[str, float]
    priced: dict[str, str]
    free: dict[str, str]

    def usd(self, key: str) -> float:
        return self.prices[key].usd

    def free_reason(self, type_token: str) -> str | None:
        return next((why for pattern, why in self.free.items() if fnmatchcase(type_token, pattern)), None)


def load_prices(path: Path = PRICE_TABLE) -> PriceTable:
    """Read and check the table: every price has a number, a unit, a known source and a month."""
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    try:
        doc = tomllib.loads(path.read_text())
        table, sources = doc["table"], doc["sources"]
        for name, src in sources.items():
            if not (src.get("title") and str(src.get("url", "")).startswith("https://")):
                raise PriceTableError(f"{shown}: sources.{name} needs a title and an https url")
        prices = {}
        for key, p in doc["prices"].items():
            if not isinstance(p.get("usd"), int | float) or p["usd"] < 0:
                raise PriceTableError(f"{shown}: prices.{key}: usd must be a number >= 0")
            if not p.get("unit"):
                raise PriceTableError(f"{shown}: prices.{key}: no unit")
            if p.get("source") not in sources:
                raise PriceTableError(f"{shown}: prices.{key}: source {p.get('source')!r} is not under [sources]")
            if not re.fullmatch(r"20[0-9]{2}-(0[1-9]|1[0-2])", str(p.get("dated", ""))):
                raise PriceTableError(f"{shown}: prices.{key}: dated must be a month, YYYY-MM")
            prices[key] = Price(key, float(p["usd"]), p["unit"], p["source"], p["dated"])
        both = [t for t in doc["priced"] if any(fnmatchcase(t, f) for f in doc["free"])]
        if both:
            raise PriceTableError(f"{shown}: {both[0]} is both priced and free")
        return PriceTable(
            path=path,
            dated=table["dated"],
            hours_per_month=float(table["hours_per_month"]),
            note=table["note"],
            sources=sources,
            prices=prices,
            machine_types=doc["machine_types"],
            memorystore_bands={k: (int(v[0]), int(v[1])) for k, v in doc["memorystore_bands"].items()},
            function_cpu=doc["function_cpu"],
            priced=doc["priced"],
            free=doc["free"],
        )
    except KeyError as exc:
        raise PriceTableError(f"{shown}: missing {exc.args[0]!r}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PriceTableError(f"{shown}: not valid TOML: {exc}") from None


Pricing = Literal["priced", "free", "unpriced"]


@dataclass(frozen=True)
class Line:
    type: str
    name: str
    pricing: Pricing
    usd_per_month: float | None  # None: unpriced
    basis: str

    def to_json(self) -> dict[str, Any]:
        usd = "unpriced" if self.usd_per_month is None else self.usd_per_month
        return {
            "type": self.type,
            "name": self.name,
            "pricing": self.pricing,
            "usd_per_month": usd,
            "basis": self.basis,
        }


def per_day(usd_per_month: float, prices: PriceTable) -> float:
    return round(usd_per_month * 24 / prices.hours_per_month, 2)


@dataclass
class Estimate:
    stack: str
    lines: list[Line]
    prices: PriceTable
    assumptions: dict[str, Any] = field(default_factory=dict)

    @property
    def total_usd_per_month(self) -> float:
        return round(sum(line.usd_per_month or 0.0 for line in self.lines), 2)

    @property
    def unpriced(self) -> list[str]:
        return [f"{line.type}::{line.name}" for line in self.lines if line.usd_per_month is None]

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "total_usd_per_month": self.total_usd_per_month,
            "total_usd_per_day": per_day(self.total_usd_per_month, self.prices),
            "unpriced": self.unpriced,
            "prices": {"table": str(self.prices.path.relative_to(REPO_ROOT)), "dated": self.prices.dated},
            "assumptions": self.assumptions,
            "resources": [line.to_json() for line in self.lines],
        }


class Unpriced(Exception):
    """This resource cannot be priced from the table (the message says what is missing)."""


@dataclass
class _Usage:
    """What the pricers share: the stack's volumes, derived once from settings and the inventory."""

    settings: StackSettings
    prices: PriceTable
    inventory: list[dict[str, Any]]

    def __post_init__(self) -> None:
        self.cost = self.settings.cost
        self.names = Names.of(self.settings)
        self.hours = self.cost.hours_per_day * self.prices.hours_per_month / 24
        self.days = self.prices.hours_per_month / 24
        c = self.cost
        self.message_bytes = MESSAGE_OVERHEAD_BYTES + c.candidates_per_request * c.bytes_per_candidate
        shadows = sum(1 for v in self.settings.serving.variants if v.kind == "shadow")
        n, requests = self.names, c.requests_per_day * self.days
        self.training_runs = sum(
            runs_per_month(r["inputs"].get("schedule", ""), self.days) or 0.0
            for r in self.of_type("gcp:cloudscheduler/job:Job")
        )
        # Messages a month and bytes each, per topic; every subscription receives all of its topic's.
        self.traffic: dict[str, tuple[float, int]] = {
            n.requests_topic: (requests, self.message_bytes),
            n.predictions_topic: (requests * (1 + shadows), self.message_bytes),
            n.feature_events_topic: (c.feature_events_per_day * self.days, c.feature_event_bytes),
            n.training_triggers_topic: (self.training_runs, TRIGGER_MESSAGE_BYTES),
        }
        for source, dead in (
            (n.requests_topic, n.requests_dead_letter_topic),
            (n.predictions_topic, n.predictions_dead_letter_topic),
            (n.feature_events_topic, n.feature_dead_letter_topic),
        ):
            count, size = self.traffic[source]
            self.traffic[dead] = (count * c.dead_letter_fraction, size)

    def of_type(self, type_token: str) -> list[dict[str, Any]]:
        return [r for r in self.inventory if r["type"] == type_token]

    def usd(self, key: str) -> float:
        return self.prices.usd(key)

    def machine(self, machine_type: str) -> tuple[float, float]:
        shape = self.prices.machine_types.get(machine_type)
        if shape is None:
            raise Unpriced(f"machine type {machine_type} is not in the price table")
        return float(shape["vcpu"]), float(shape["memory_gb"])

    def nodes(self, pool: dict[str, Any]) -> float:
        scaling = pool["inputs"].get("autoscaling") or {}
        low = scaling.get("totalMinNodeCount", pool["inputs"].get("nodeCount", 0)) or 0
        high = scaling.get("totalMaxNodeCount", low) or low
        wanted = self.cost.avg_nodes if self.cost.avg_nodes is not None else max(low, 1)
        return float(min(max(wanted, low), max(high, 1)))

    def dataflow_workers(self, job: dict[str, Any]) -> float:
        return float(min(self.cost.dataflow_avg_workers, job["inputs"].get("maxWorkers") or math.inf))


def runs_per_month(cron: str, days: float) -> float | None:
    """How often a five-field cron fires in a month of ``days`` days (None: a field not understood)."""
    fields = cron.split()
    if len(fields) != 5:
        return None
    spans = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
    counts = [_cron_count(f, lo, hi) for f, (lo, hi) in zip(fields, spans, strict=True)]
    if None in counts:
        return None
    minute, hour, dom, month, dow = (float(c or 0) for c in counts)
    per_day = minute * hour
    if fields[2] == "*" and fields[4] == "*":
        days_fired = days
    elif fields[4] == "*":
        days_fired = dom * days / 31
    elif fields[2] == "*":
        days_fired = dow * days / 7
    else:  # cron fires when either day field matches
        days_fired = min(days, dom * days / 31 + dow * days / 7)
    return per_day * days_fired * month / 12


def _cron_count(field_text: str, lo: int, hi: int) -> int | None:
    total = 0
    for part in field_text.split(","):
        m = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
        if not m:
            return None
        start, end = (lo, hi) if m.group(1) == "*" else (int(m.group(2)), int(m.group(3) or m.group(2)))
        step = int(m.group(4) or 1)
        if not lo <= start <= end <= hi or step < 1:
            return None
        total += len(range(start, end + 1, step))
    return total


def _rate(x: float) -> str:
    return "$" + f"{x:.7f}".rstrip("0").rstrip(".")


# --- one pricer per priced type: (usd per month, the arithmetic in words) -------------------------


def _cluster(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    fee = u.usd("gke.cluster_hour")
    return fee * u.hours, f"{_rate(fee)}/cluster-hour x {u.hours:g} h"


def _node_pool(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    config = r["inputs"].get("nodeConfig") or {}
    machine_type = config.get("machineType", "e2-medium")
    if not (config.get("spot") or config.get("preemptible")):
        raise Unpriced(f"{machine_type} on-demand rates are not in the price table (only Spot)")
    family = machine_type.split("-")[0]
    if f"spot.{family}.vcpu_hour" not in u.prices.prices:
        raise Unpriced(f"Spot rates for the {family} family are not in the price table")
    vcpu, memory = u.machine(machine_type)
    cpu_rate, mem_rate = u.usd(f"spot.{family}.vcpu_hour"), u.usd(f"spot.{family}.memory_gb_hour")
    nodes, disk_gb = u.nodes(r), float(config.get("diskSizeGb") or GKE_DEFAULT_DISK_GB)
    hourly = vcpu * cpu_rate + memory * mem_rate
    disk = nodes * disk_gb * u.usd("disk.pd_balanced_gb_month") * u.hours / u.prices.hours_per_month
    basis = (
        f"{nodes:g} node(s) x {machine_type} Spot ({vcpu:g} vCPU x {_rate(cpu_rate)} + {memory:g} GB x "
        f"{_rate(mem_rate)})/h x {u.hours:g} h + {disk_gb:g} GB boot disk each x "
        f"{_rate(u.usd('disk.pd_balanced_gb_month'))}/GB-month"
    )
    return nodes * hourly * u.hours + disk, basis


def _redis(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    tier, gb = r["inputs"].get("tier", "BASIC"), int(r["inputs"].get("memorySizeGb", 1))
    band = next((b for b, (lo, hi) in u.prices.memorystore_bands.items() if lo <= gb <= hi), None)
    key = f"memorystore.{tier}.{band}"
    if band is None or key not in u.prices.prices:
        raise Unpriced(f"Memorystore {tier} {gb} GB is not in the price table")
    rate = u.usd(key)
    return gb * rate * u.hours, f"{tier} {gb} GB ({band}) x {_rate(rate)}/GB-hour x {u.hours:g} h"


def _dataflow(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    machine_type = r["inputs"].get("machineType", "n1-standard-2")
    vcpu, memory = u.machine(machine_type)
    workers, units = u.dataflow_workers(r), u.cost.streaming_engine_units
    cpu_rate, mem_rate = u.usd("dataflow.streaming_vcpu_hour"), u.usd("dataflow.memory_gb_hour")
    unit_rate, disk_rate = u.usd("dataflow.streaming_engine_unit_hour"), u.usd("disk.pd_standard_gb_month")
    compute = workers * (vcpu * cpu_rate + memory * mem_rate) * u.hours
    engine = units * unit_rate * u.hours
    disk = workers * DATAFLOW_DISK_GB * disk_rate * u.hours / u.prices.hours_per_month
    basis = (
        f"{workers:g} worker(s) x {machine_type} ({vcpu:g} vCPU x {_rate(cpu_rate)} + {memory:g} GB x "
        f"{_rate(mem_rate)})/h x {u.hours:g} h + {units:g} Streaming Engine unit(s) x {_rate(unit_rate)}/h + "
        f"{DATAFLOW_DISK_GB} GB disk per worker x {_rate(disk_rate)}/GB-month"
    )
    return compute + engine + disk, basis


def _nat(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    vms = sum(u.nodes(p) for p in u.of_type("gcp:container/nodePool:NodePool")) + sum(
        u.dataflow_workers(j) for j in u.of_type("gcp:dataflow/flexTemplateJob:FlexTemplateJob")
    )
    vm_rate, ceiling, data_rate = u.usd("nat.vm_hour"), u.usd("nat.gateway_max_hour"), u.usd("nat.data_gb")
    gateway = min(vms * vm_rate, ceiling)
    gb = u.cost.nat_gb_per_month
    basis = (
        f"{vms:g} VM(s) (nodes and Dataflow workers) x {_rate(vm_rate)}/h (at most {_rate(ceiling)}/h) x "
        f"{u.hours:g} h + {gb:g} GB x {_rate(data_rate)}"
    )
    return gateway * u.hours + gb * data_rate, basis


def _traffic(u: _Usage, topic_name: str) -> tuple[float, int]:
    if topic_name not in u.traffic:
        raise Unpriced(f"no traffic assumption for topic {topic_name}")
    return u.traffic[topic_name]


def _topic(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    name = r["inputs"].get("name", r["name"])
    count, size = _traffic(u, name)
    rate, kept_rate = u.usd("pubsub.throughput_tib"), u.usd("pubsub.retained_gib_month")
    retention_days = _seconds(r["inputs"].get("messageRetentionDuration")) / 86_400
    kept_gib = count / u.days * size * retention_days / GIB
    basis = (
        f"{count:,.0f} messages/month x {size:,} bytes published x {_rate(rate)}/TiB"
        f" + {kept_gib:.3g} GiB retained ({retention_days:g} day(s)) x {_rate(kept_rate)}/GiB-month"
    )
    return count * size / TIB * rate + kept_gib * kept_rate, basis


def _subscription(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    topic_name = str(r["inputs"].get("topic", "")).rsplit("/", 1)[-1]
    count, size = _traffic(u, topic_name)
    export = bool(r["inputs"].get("bigqueryConfig") or r["inputs"].get("cloudStorageConfig"))
    key = "pubsub.export_throughput_tib" if export else "pubsub.throughput_tib"
    rate = u.usd(key)
    filtered = " (filtered: every message of the topic is billed)" if r["inputs"].get("filter") else ""
    kind = "exported" if export else "delivered"
    return (
        count * size / TIB * rate,
        f"{count:,.0f} messages/month x {size:,} bytes {kind} x {_rate(rate)}/TiB{filtered}",
    )


def _seconds(duration: Any) -> float:
    m = re.fullmatch(r"([0-9.]+)s", str(duration or ""))
    return float(m.group(1)) if m else 0.0


def _dataset(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    tib, rate = u.cost.bigquery_scanned_tib_per_month, u.usd("bigquery.on_demand_tib")
    return tib * rate, f"{tib:g} TiB scanned/month (training, drift) x {_rate(rate)}/TiB"


def _table(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    tables = len(u.of_type("gcp:bigquery/table:Table"))
    gib, rate = u.cost.offline_store_gb / tables, u.usd("bigquery.active_storage_gib_month")
    return gib * rate, f"{u.cost.offline_store_gb:g} GiB offline store / {tables} tables x {_rate(rate)}/GiB-month"


def _bucket(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    gb, rate = u.cost.bucket_gb, u.usd("storage.standard_gb_month")
    return gb * rate, f"{gb:g} GB x {_rate(rate)}/GB-month"


def _registry(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    gb, rate = u.cost.image_storage_gb, u.usd("artifact_registry.gb_month")
    return gb * rate, f"{gb:g} GB of images x {_rate(rate)}/GB-month"


def _secret(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    n, rate = u.cost.secret_accesses_per_month, u.usd("secret_manager.ten_thousand_accesses")
    return n / 10_000 * rate, f"{n:,} accesses/month x {_rate(rate)}/10,000"


def _secret_version(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    rate = u.usd("secret_manager.version_month")
    return rate, f"1 active version x {_rate(rate)}/month"


def _function(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    memory = (r["inputs"].get("serviceConfig") or {}).get("availableMemory", "256M")
    if memory not in u.prices.function_cpu:
        raise Unpriced(f"function memory {memory} has no vCPU allotment in the price table")
    cpu = u.prices.function_cpu[memory]
    gib = _gib(memory)
    seconds, runs = u.cost.function_seconds_per_run, u.training_runs
    cpu_rate, mem_rate = u.usd("functions.vcpu_second"), u.usd("functions.gib_second")
    calls = u.usd("functions.million_invocations")
    usd = runs * seconds * (cpu * cpu_rate + gib * mem_rate) + runs / 1e6 * calls
    basis = (
        f"{runs:g} run(s)/month (the schedules) x {seconds:g} s x ({cpu:g} vCPU x {_rate(cpu_rate)} + "
        f"{gib:g} GiB x {_rate(mem_rate)})/s + invocations x {_rate(calls)}/million"
    )
    return usd, basis


def _gib(memory: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(M|Mi|G|Gi)", memory)
    if not m:
        raise Unpriced(f"function memory {memory!r} not understood")
    return float(m.group(1)) / (1024 if m.group(2).startswith("M") else 1)


def _scheduler(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    rate = u.usd("scheduler.job_month")
    return rate, f"1 job x {_rate(rate)}/month"


def _alert_policy(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    conditions, rate = len(r["inputs"].get("conditions") or []), u.usd("monitoring.alert_condition_month")
    return conditions * rate, f"{conditions} condition(s) x {_rate(rate)}/month"


def _dynamodb(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    if r["inputs"].get("billingMode") != "PAY_PER_REQUEST":
        raise Unpriced("provisioned capacity is not in the price table (only on-demand)")
    c, size = u.cost, u.message_bytes
    requests = c.requests_per_day * u.days
    write_units = requests * math.ceil(size / 1024)
    read_units = requests * c.result_reads_per_request * math.ceil(size / 4096)
    w, rd, st = (
        u.usd("dynamodb.million_write_units"),
        u.usd("dynamodb.million_read_units"),
        u.usd("dynamodb.storage_gb_month"),
    )
    pitr = bool((r["inputs"].get("pointInTimeRecovery") or {}).get("enabled"))
    pitr_rate = u.usd("dynamodb.pitr_gb_month") if pitr else 0.0
    gb = c.results_store_gb
    usd = write_units / 1e6 * w + read_units / 1e6 * rd + gb * (st + pitr_rate)
    basis = (
        f"{write_units:,.0f} write units ({size:,}-byte results) x {_rate(w)}/million + {read_units:,.0f} read units"
        f" x {_rate(rd)}/million + {gb:g} GB x {_rate(st)}/GB-month"
        + (f" + point-in-time recovery {gb:g} GB x {_rate(pitr_rate)}/GB-month" if pitr else "")
    )
    return usd, basis


PRICERS: dict[str, Callable[[dict[str, Any], _Usage], tuple[float, str]]] = {
    "gcp:container/cluster:Cluster": _cluster,
    "gcp:container/nodePool:NodePool": _node_pool,
    "gcp:redis/instance:Instance": _redis,
    "gcp:dataflow/flexTemplateJob:FlexTemplateJob": _dataflow,
    "gcp:compute/routerNat:RouterNat": _nat,
    "gcp:pubsub/topic:Topic": _topic,
    "gcp:pubsub/subscription:Subscription": _subscription,
    "gcp:bigquery/dataset:Dataset": _dataset,
    "gcp:bigquery/table:Table": _table,
    "gcp:storage/bucket:Bucket": _bucket,
    "gcp:artifactregistry/repository:Repository": _registry,
    "gcp:secretmanager/secret:Secret": _secret,
    "gcp:secretmanager/secretVersion:SecretVersion": _secret_version,
    "gcp:cloudfunctionsv2/function:Function": _function,
    "gcp:cloudscheduler/job:Job": _scheduler,
    "gcp:monitoring/alertPolicy:AlertPolicy": _alert_policy,
    "aws:dynamodb/table:Table": _dynamodb,
}


def estimate(inventory: list[dict[str, Any]], settings: StackSettings, prices: PriceTable) -> Estimate:
    """Price each resource of ``inventory`` (``rerank infra plan --json``'s) for ``settings``."""
    usage = _Usage(settings, prices, inventory)
    lines = []
    for r in inventory:
        t, name = r["type"], r["name"]
        why_free = prices.free_reason(t)
        if t in PRICERS and t in prices.priced:
            try:
                usd, basis = PRICERS[t](r, usage)
                lines.append(Line(t, name, "priced", round(usd, 2), basis))
            except Unpriced as exc:
                lines.append(Line(t, name, "unpriced", None, f"unpriced: {exc}"))
        elif why_free is not None:
            lines.append(Line(t, name, "free", 0.0, f"free: {why_free}"))
        else:
            lines.append(Line(t, name, "unpriced", None, f"unpriced: {t} is not in {PRICE_TABLE.name}"))
    assumptions = {
        **settings.cost.model_dump(),
        "hours_per_month": usage.hours,
        "message_bytes": usage.message_bytes,
        "training_runs_per_month": round(usage.training_runs, 2),
    }
    return Estimate(stack=settings.stack, lines=lines, prices=prices, assumptions=assumptions)
