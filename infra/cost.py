"""A monthly estimate of a stack from its planned inventory, the price table ``infra/prices.toml``
and the stack's usage assumptions (``cost`` in its settings).

It prices the inventory as ``rerank infra plan --json`` prints it (type, name, inputs), so another
commit's plan, planned in its own tree, is priced the same way, and a resource a change adds is
priced from what the plan says of it (a node pool by its machine type, count, provisioning and
disk). A type the table does not price is "unpriced", never zero; a type the table lists as free
says why. Every line names the prices it used and how each was obtained (``infra/prices/table.py``);
a price for another region than the stack's is not used (the line is unpriced).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from app.featurestore.bigquery_write import MIN_BILLED_ROW_BYTES, WRITE_METHOD
from app.naming import Names
from app.settings import StackSettings
from infra.dataflow_options import WORKER_DISK_GB, billed_per_compute_unit
from infra.prices.table import PRICE_TABLE, Price, PriceTable, PriceTableError, load_prices

__all__ = ["PRICERS", "PRICE_TABLE", "PriceTableError", "estimate", "load_prices", "runs_per_month"]

TIB = 1024**4
GIB = 1024**3
# The price of each way the ingest may write the offline store (app/featurestore/bigquery_write.py).
OFFLINE_WRITE_PRICES = {"STREAMING_INSERTS": "bigquery.streaming_insert_gib"}
# Each message or item carries the request's own fields besides its candidates.
MESSAGE_OVERHEAD_BYTES = 200
# A result item is stored until TTL deletes it: "typically within two days of expiration", and until
# then it "still count[s] towards storage" (DynamoDB API reference, UpdateTimeToLive; developer
# guide, Working with expired items). Each item is billed its bytes plus "a per-item storage
# overhead of 100 bytes" (DynamoDB pricing).
TTL_DELETION_DAYS = 2
DYNAMODB_ITEM_OVERHEAD_BYTES = 100
GKE_DEFAULT_DISK_GB = 100
GKE_DEFAULT_DISK_TYPE = "pd-balanced"
TRIGGER_MESSAGE_BYTES = 1000
# Pub/Sub pricing: "a minimum of 1000 bytes per publish, push or pull request is assessed
# regardless of message size" (each message here is published in a request of its own).
PUBSUB_MIN_REQUEST_BYTES = 1000
# Artifact Registry pricing: storage up to 0.5 GB is free (per billing account).
REGISTRY_FREE_GB = 0.5
# BigQuery bills a table partition not modified for 90 consecutive days at the long-term rate.
LONG_TERM_AFTER_DAYS = 90
# Cloud NAT: one auto-allocated address serves 64,512 source ports; 64 ports per VM by default.
NAT_PORTS_PER_IP, NAT_DEFAULT_PORTS_PER_VM = 64_512, 64
# The alerting page's examples: a condition returns its time series once per 30-second period.
ALERT_PERIOD_SECONDS = 30
# Bytes Cloud Monitoring is assumed to bill a log-based metric's point as (a scalar counter's value,
# a distribution's buckets); assumptions: the stored pricing page shows the rate, not the sizes.
METRIC_POINT_BYTES = {"INT64": 8, "DOUBLE": 8, "BOOL": 8, "DISTRIBUTION": 80}
MIB = 1024**2
# vCPUs and GiB per vCPU of the predefined shapes <family>-<shape>-<vCPUs>.
SHAPE_MEMORY_PER_VCPU = {
    "e2": {"standard": 4.0, "highmem": 8.0, "highcpu": 1.0},
    "n2": {"standard": 4.0, "highmem": 8.0, "highcpu": 1.0},
    "n2d": {"standard": 4.0, "highmem": 8.0, "highcpu": 1.0},
    "n1": {"standard": 3.75, "highmem": 6.5, "highcpu": 0.9},
}
DISK_PRICES = {
    "pd-balanced": "disk.pd_balanced_gib_month",
    "pd-standard": "disk.pd_standard_gib_month",
    "pd-ssd": "disk.pd_ssd_gib_month",
}
EGRESS_TIERS = (  # GiB a month from which each internet egress rate applies
    (0.0, "egress.internet_gib.first_tib"),
    (1024.0, "egress.internet_gib.next_9_tib"),
    (10_240.0, "egress.internet_gib.over_10_tib"),
)

Pricing = Literal["priced", "free", "unpriced"]


@dataclass(frozen=True)
class Line:
    type: str
    name: str
    pricing: Pricing
    usd_per_month: float | None  # None: unpriced
    basis: str
    prices: tuple[dict[str, Any], ...] = ()

    @property
    def unverified(self) -> list[str]:
        return [p["key"] for p in self.prices if p["provenance"] == "unverified"]

    def to_json(self) -> dict[str, Any]:
        usd = "unpriced" if self.usd_per_month is None else self.usd_per_month
        out = {
            "type": self.type,
            "name": self.name,
            "pricing": self.pricing,
            "usd_per_month": usd,
            "basis": self.basis,
        }
        if self.pricing == "priced":
            out["prices"] = list(self.prices)
            out["unverified"] = self.unverified
        return out


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
        unverified = [line for line in self.lines if line.pricing == "priced" and line.unverified]
        return {
            "stack": self.stack,
            "total_usd_per_month": self.total_usd_per_month,
            "total_usd_per_day": per_day(self.total_usd_per_month, self.prices),
            "unpriced": self.unpriced,
            # Lines that use at least one price not read from a catalog or a page, and their share.
            "unverified": [f"{line.type}::{line.name}" for line in unverified],
            "unverified_usd_per_month": round(sum(line.usd_per_month or 0.0 for line in unverified), 2),
            "prices": self.prices.summary(),
            "assumptions": self.assumptions,
            "resources": [line.to_json() for line in self.lines],
        }


class Unpriced(Exception):
    """This resource cannot be priced from the table (the message says what is missing)."""


@dataclass
class _Usage:
    """What the pricers share: the stack's volumes, derived once from settings and the inventory,
    and the prices the current line has used."""

    settings: StackSettings
    prices: PriceTable
    inventory: list[dict[str, Any]]
    used: list[Price] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cost = self.settings.cost
        self.names = Names.of(self.settings)
        self.regions = {"global", self.settings.gcp.region, self.settings.aws.region}
        self.hours = self.cost.hours_per_day * self.prices.hours_per_month / 24
        self.days = self.prices.hours_per_month / 24
        c = self.cost
        self.message_bytes = MESSAGE_OVERHEAD_BYTES + c.candidates_per_request * c.bytes_per_candidate
        shadows = sum(1 for v in self.settings.serving.variants if v.kind == "shadow")
        n, requests = self.names, c.requests_per_day * self.days
        self.requests = requests
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
        # Results leave GCP for DynamoDB in AWS through Cloud NAT: one item per request.
        self.results_gib = requests * self.message_bytes / GIB

    def of_type(self, type_token: str) -> list[dict[str, Any]]:
        return [r for r in self.inventory if r["type"] == type_token]

    def usd(self, key: str) -> float:
        price = self.prices.prices.get(key)
        if price is None:
            raise Unpriced(f"{key} is not in the price table")
        if price.region not in self.regions:
            raise Unpriced(f"{key} is priced for {price.region}, not this stack's regions")
        if price not in self.used:
            self.used.append(price)
        return price.usd

    def has(self, key: str) -> bool:
        return key in self.prices.prices

    def nodes(self, pool: dict[str, Any]) -> float:
        """A pool's average nodes: its fixed count, or within its autoscaling bounds the stack's
        ``cost.avg_nodes`` for the workers' Spot (or preemptible) pool and the minimum for an
        on-demand one (a system pool); at least one."""
        scaling = pool["inputs"].get("autoscaling") or {}
        fixed = pool["inputs"].get("nodeCount")
        if not scaling:
            return float(fixed if fixed is not None else pool["inputs"].get("initialNodeCount", 1) or 1)
        low = scaling.get("totalMinNodeCount", scaling.get("minNodeCount", 0)) or 0
        high = scaling.get("totalMaxNodeCount", scaling.get("maxNodeCount", low)) or low
        config = pool["inputs"].get("nodeConfig") or {}
        workers = bool(config.get("spot") or config.get("preemptible"))
        wanted = self.cost.avg_nodes if workers and self.cost.avg_nodes is not None else max(low, 1)
        return float(min(max(wanted, low), max(high, 1)))

    def dataflow_workers(self, job: dict[str, Any]) -> float:
        return float(min(self.cost.dataflow_avg_workers, job["inputs"].get("maxWorkers") or math.inf))

    def storage_days(self, retention_days: float | None) -> tuple[float, str]:
        """Days of data a table holds in its steady state, and how that was decided."""
        horizon = self.cost.storage_horizon_months * self.days
        if retention_days is None:
            return horizon, f"no partition expiration: grows; priced at {self.cost.storage_horizon_months} months"
        if retention_days > horizon:
            return horizon, f"partitions expire after {retention_days:g} days; priced at the horizon"
        return retention_days, f"partitions expire after {retention_days:g} days"


def machine_shape(machine_type: str) -> tuple[str, float, float]:
    """(family, vCPUs, GiB) of a predefined machine type; custom and shared-core types are unpriced."""
    m = re.fullmatch(r"([a-z0-9]+)-(standard|highmem|highcpu)-([0-9]+)", machine_type)
    per_vcpu = SHAPE_MEMORY_PER_VCPU.get(m.group(1), {}).get(m.group(2)) if m else None
    if m is None or per_vcpu is None:
        raise Unpriced(f"machine type {machine_type} has no known vCPU and memory shape")
    vcpus = float(m.group(3))
    return m.group(1), vcpus, vcpus * per_vcpu


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
    return "$" + f"{x:.9f}".rstrip("0").rstrip(".")


def _gib(n: float) -> str:
    return f"{n:,.3g}" if n < 100 else f"{n:,.0f}"


# --- one pricer per priced type: (usd per month, the arithmetic in words) -------------------------


def _cluster(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    fee = u.usd("gke.cluster_hour")
    return fee * u.hours, f"{_rate(fee)}/cluster-hour x {u.hours:g} h"


def _disk(u: _Usage, disk_type: str, gb: float, count: float) -> tuple[float, str]:
    key = DISK_PRICES.get(disk_type)
    if key is None:
        raise Unpriced(f"disk type {disk_type} has no price in the table")
    rate = u.usd(key)
    usd = count * gb * rate * u.hours / u.prices.hours_per_month
    return usd, f"{gb:g} GiB {disk_type} each x {_rate(rate)}/GiB-month"


def _node_pool(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    config = r["inputs"].get("nodeConfig") or {}
    machine_type = config.get("machineType", "e2-medium")
    family, vcpu, memory = machine_shape(machine_type)
    model = "spot" if (config.get("spot") or config.get("preemptible")) else "ondemand"
    cpu_key, mem_key = f"compute.{model}.{family}.vcpu_hour", f"compute.{model}.{family}.memory_gib_hour"
    if not (u.has(cpu_key) and u.has(mem_key)):
        raise Unpriced(f"{'Spot' if model == 'spot' else 'on-demand'} {family} rates are not in the price table")
    cpu_rate, mem_rate = u.usd(cpu_key), u.usd(mem_key)
    nodes = u.nodes(r)
    disk_gb = float(config.get("diskSizeGb") or GKE_DEFAULT_DISK_GB)
    disk_usd, disk_basis = _disk(u, config.get("diskType") or GKE_DEFAULT_DISK_TYPE, disk_gb, nodes)
    hourly = vcpu * cpu_rate + memory * mem_rate
    basis = (
        f"{nodes:g} node(s) x {machine_type} {'Spot' if model == 'spot' else 'on-demand'} "
        f"({vcpu:g} vCPU x {_rate(cpu_rate)} + {memory:g} GiB x {_rate(mem_rate)})/h x {u.hours:g} h "
        f"+ boot disk {disk_basis}"
    )
    return nodes * hourly * u.hours + disk_usd, basis


def _redis(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    tier, gb = r["inputs"].get("tier", "BASIC"), int(r["inputs"].get("memorySizeGb", 1))
    band = next((b for b, (lo, hi) in u.prices.memorystore_bands.items() if lo <= gb <= hi), None)
    key = f"memorystore.{tier}.{band}"
    if band is None or not u.has(key):
        raise Unpriced(f"Memorystore {tier} {gb} GB is not in the price table")
    rate = u.usd(key)
    return gb * rate * u.hours, f"{tier} {gb} GB ({band}) x {_rate(rate)}/GB-hour x {u.hours:g} h"


def _dataflow(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    """Workers (vCPU, memory, disk), Streaming Engine as the job is billed (per compute unit when it
    runs at-least-once or asks for resource-based billing, else per GiB processed:
    infra/dataflow_options.py), and the streaming inserts that write its rows to the offline store
    (app/featurestore/bigquery_write.py; the row's size is taken as its event's)."""
    inputs = r["inputs"]
    machine_type = inputs.get("machineType", "n1-standard-2")
    _, vcpu, memory = machine_shape(machine_type)
    workers = u.dataflow_workers(r)
    cpu_rate, mem_rate = u.usd("dataflow.streaming_vcpu_hour"), u.usd("dataflow.memory_gib_hour")
    disk_rate = u.usd("dataflow.pd_standard_gib_hour")  # Dataflow's own SKU, not Compute Engine's
    compute = workers * (vcpu * cpu_rate + memory * mem_rate) * u.hours
    disk_gb = WORKER_DISK_GB[bool(inputs.get("enableStreamingEngine"))]
    disk = workers * disk_gb * disk_rate * u.hours
    basis = (
        f"{workers:g} worker(s) x {machine_type} ({vcpu:g} vCPU x {_rate(cpu_rate)} + {memory:g} GiB x "
        f"{_rate(mem_rate)} + {disk_gb} GiB pd-standard x {_rate(disk_rate)})/h x {u.hours:g} h"
    )
    events, size = u.traffic[u.names.feature_events_topic]
    inserts, inserts_basis = _offline_inserts(u, events, size)
    if not inputs.get("enableStreamingEngine"):
        return compute + disk + inserts, basis + " (no Streaming Engine)" + inserts_basis
    if billed_per_compute_unit(inputs.get("additionalExperiments") or []):
        units, unit_rate = u.cost.streaming_engine_units, u.usd("dataflow.streaming_engine_unit_hour")
        engine = units * unit_rate * u.hours
        basis += f" + Streaming Engine resource-based: {units:g} compute unit(s) x {_rate(unit_rate)}/h"
    else:
        gib, gib_rate = events * size / GIB, u.usd("dataflow.streaming_engine_data_gib")
        engine = gib * gib_rate
        basis += (
            f" + Streaming Engine data processed: {_gib(gib)} GiB (the feature events once) x {_rate(gib_rate)}/GiB"
        )
    return compute + disk + engine + inserts, basis + inserts_basis


def _offline_inserts(u: _Usage, rows: float, size: int) -> tuple[float, str]:
    """The job's writes of each feature event as one offline-store row, as its write method bills them."""
    if WRITE_METHOD not in OFFLINE_WRITE_PRICES:
        raise Unpriced(f"the offline store's BigQuery write method {WRITE_METHOD} has no price")
    billed = max(size, MIN_BILLED_ROW_BYTES)
    rate = u.usd(OFFLINE_WRITE_PRICES[WRITE_METHOD])
    minimum = f" (the {MIN_BILLED_ROW_BYTES:,}-byte minimum a row)" if billed > size else ""
    return rows * billed / GIB * rate, (
        f" + BigQuery {WRITE_METHOD.lower().replace('_', ' ')} into the offline store: {rows:,.0f} rows/month x"
        f" {billed:,} bytes{minimum} x {_rate(rate)}/GiB"
    )


def _egress(u: _Usage, gib: float) -> tuple[float, str]:
    """Internet egress at the table's monthly volume tiers."""
    usd, parts = 0.0, []
    bounds = [start for start, _ in EGRESS_TIERS[1:]] + [math.inf]
    for (start, key), end in zip(EGRESS_TIERS, bounds, strict=True):
        within = max(0.0, min(gib, end) - start)
        if within > 0:
            rate = u.usd(key)
            usd += within * rate
            parts.append(f"{_gib(within)} GiB x {_rate(rate)}")
    return usd, " + ".join(parts) or "0 GiB"


def _nat(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    """The gateway per VM behind it, its external addresses, the data it processes, and the
    internet egress of what leaves for AWS (the results written to DynamoDB)."""
    vms = sum(u.nodes(p) for p in u.of_type("gcp:container/nodePool:NodePool")) + sum(
        u.dataflow_workers(j) for j in u.of_type("gcp:dataflow/flexTemplateJob:FlexTemplateJob")
    )
    vm_rate, ceiling = u.usd("nat.gateway_vm_hour"), u.usd("nat.gateway_max_hour")
    ip_rate, data_rate = u.usd("nat.ip_hour"), u.usd("nat.data_gib")
    gateway = min(vms * vm_rate, ceiling)
    inputs = r["inputs"]
    if inputs.get("natIpAllocateOption", "AUTO_ONLY") == "AUTO_ONLY":
        ports = inputs.get("minPortsPerVm") or NAT_DEFAULT_PORTS_PER_VM
        ips = max(1, math.ceil(vms * ports / NAT_PORTS_PER_IP))
    else:
        ips = len(inputs.get("natIps") or [])
    data_gib = u.cost.nat_gb_per_month + u.results_gib
    egress_usd, egress_basis = _egress(u, u.results_gib)
    basis = (
        f"{vms:g} VM(s) (nodes and Dataflow workers) x {_rate(vm_rate)}/h (at most {_rate(ceiling)}/h) x "
        f"{u.hours:g} h + {ips} external IP(s) x {_rate(ip_rate)}/h + {_gib(data_gib)} GiB processed "
        f"({u.cost.nat_gb_per_month:g} GiB image pulls and calls + {_gib(u.results_gib)} GiB results to AWS) x "
        f"{_rate(data_rate)} + internet egress of the results: {egress_basis}"
    )
    return (gateway + ips * ip_rate) * u.hours + data_gib * data_rate + egress_usd, basis


def _traffic(u: _Usage, topic_name: str) -> tuple[float, int]:
    if topic_name not in u.traffic:
        raise Unpriced(f"no traffic assumption for topic {topic_name}")
    return u.traffic[topic_name]


def _topic(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    name = r["inputs"].get("name", r["name"])
    count, size = _traffic(u, name)
    rate, kept_rate = u.usd("pubsub.throughput_tib"), u.usd("pubsub.retained_gib_month")
    billed = max(size, PUBSUB_MIN_REQUEST_BYTES)
    retention_days = _seconds(r["inputs"].get("messageRetentionDuration")) / 86_400
    kept_gib = count / u.days * size * retention_days / GIB
    minimum = f" (the {PUBSUB_MIN_REQUEST_BYTES:,}-byte minimum per request)" if billed > size else ""
    basis = (
        f"{count:,.0f} messages/month x {billed:,} bytes published{minimum} x {_rate(rate)}/TiB"
        f" + {kept_gib:.3g} GiB retained ({retention_days:g} day(s)) x {_rate(kept_rate)}/GiB-month"
    )
    return count * billed / TIB * rate + kept_gib * kept_rate, basis


def _subscription(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    topic_name = str(r["inputs"].get("topic", "")).rsplit("/", 1)[-1]
    count, size = _traffic(u, topic_name)
    export = bool(r["inputs"].get("bigqueryConfig") or r["inputs"].get("cloudStorageConfig"))
    key = "pubsub.export_throughput_tib" if export else "pubsub.throughput_tib"
    rate = u.usd(key)
    filtered = " (filtered: every message of the topic is billed)" if r["inputs"].get("filter") else ""
    kind = "exported" if export else "delivered by streaming pull"
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


def _table_feed(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    """Bytes a day written into a table: its BigQuery subscription's topic, or else (the offline
    store, which Dataflow writes) the feature events split evenly over the tables not so fed."""
    inputs = r["inputs"]
    ident = f"{inputs.get('datasetId')}.{inputs.get('tableId')}"
    feeds: dict[str, str] = {}
    for s in u.of_type("gcp:pubsub/subscription:Subscription"):
        target = str((s["inputs"].get("bigqueryConfig") or {}).get("table", "")).replace(":", ".")
        if target:
            feeds[target.split(".", 1)[-1]] = str(s["inputs"].get("topic", "")).rsplit("/", 1)[-1]
    if ident in feeds:
        count, size = _traffic(u, feeds[ident])
        return count / u.days * size, f"{count / u.days:,.0f} rows/day x {size:,} bytes from {feeds[ident]}"
    offline = [
        t
        for t in u.of_type("gcp:bigquery/table:Table")
        if f"{t['inputs'].get('datasetId')}.{t['inputs'].get('tableId')}" not in feeds
    ]
    count, size = _traffic(u, u.names.feature_events_topic)
    return (
        count / u.days * size / len(offline),
        f"{count / u.days:,.0f} feature events/day x {size:,} bytes / {len(offline)} offline table(s)",
    )


def _retention_days(r: dict[str, Any], u: _Usage) -> float | None:
    """Days a partition is kept: the table's partition expiration, else its dataset's default."""
    ms = (r["inputs"].get("timePartitioning") or {}).get("expirationMs")
    if ms is None:
        dataset = next(
            (
                d
                for d in u.of_type("gcp:bigquery/dataset:Dataset")
                if d["inputs"].get("datasetId") == r["inputs"].get("datasetId")
            ),
            None,
        )
        ms = (dataset or {"inputs": {}})["inputs"].get("defaultPartitionExpirationMs")
    return None if ms is None else float(ms) / 86_400_000


def _table(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    """Logical storage in the steady state of traffic x retention: the newest 90 days at the
    active rate, older partitions at the long-term rate."""
    daily, feed = _table_feed(r, u)
    days, why = u.storage_days(_retention_days(r, u))
    active_gib = daily * min(days, LONG_TERM_AFTER_DAYS) / GIB
    long_gib = daily * max(days - LONG_TERM_AFTER_DAYS, 0.0) / GIB
    active, long_term = u.usd("bigquery.active_storage_gib_month"), u.usd("bigquery.long_term_storage_gib_month")
    basis = (
        f"{feed} ({why}): {_gib(active_gib)} GiB active x {_rate(active)}/GiB-month"
        f" + {_gib(long_gib)} GiB long-term (untouched {LONG_TERM_AFTER_DAYS} days) x {_rate(long_term)}/GiB-month"
    )
    return active_gib * active + long_gib * long_term, basis


def _bucket(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    gb, rate = u.cost.bucket_gb, u.usd("storage.standard_gib_month")
    return gb * rate, f"{gb:g} GiB x {_rate(rate)}/GiB-month"


def _registry(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    repositories = len(u.of_type("gcp:artifactregistry/repository:Repository"))
    free = REGISTRY_FREE_GB / repositories  # the billing account's free storage, shared
    gb, rate = u.cost.image_storage_gb, u.usd("artifact_registry.gib_month")
    billed = max(gb - free, 0.0)
    return billed * rate, (
        f"{gb:g} GB of images - {free:g} GB free (the billing account's, counted once per stack: stacks"
        f" sharing an account share it) x {_rate(rate)}/GB-month"
    )


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
    gib = _memory_gib(memory)
    seconds, runs = u.cost.function_seconds_per_run, u.training_runs
    cpu_rate, mem_rate = u.usd("functions.vcpu_second"), u.usd("functions.gib_second")
    calls = u.usd("functions.million_invocations")
    usd = runs * seconds * (cpu * cpu_rate + gib * mem_rate) + runs / 1e6 * calls
    basis = (
        f"{runs:g} run(s)/month (the schedules) x {seconds:g} s x ({cpu:g} vCPU x {_rate(cpu_rate)} + "
        f"{gib:g} GiB x {_rate(mem_rate)})/s + invocations x {_rate(calls)}/million"
    )
    return usd, basis


def _memory_gib(memory: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(M|Mi|G|Gi)", memory)
    if not m:
        raise Unpriced(f"function memory {memory!r} not understood")
    return float(m.group(1)) / (1024 if m.group(2).startswith("M") else 1)


def _scheduler(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    rate = u.usd("scheduler.job_31_days")  # billed per day the job exists
    return rate * u.days / 31, f"1 job x {_rate(rate)}/31 days x {u.days:g} days"


def _alert_policy(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    """Per condition, and per time series the conditions return each execution period."""
    conditions = len(r["inputs"].get("conditions") or [])
    rate, series_rate = u.usd("monitoring.alert_condition_month"), u.usd("monitoring.alert_million_time_series")
    periods = u.prices.hours_per_month * 3600 / ALERT_PERIOD_SECONDS
    series = conditions * u.cost.alert_time_series_per_condition * periods
    basis = (
        f"{conditions} condition(s) x {_rate(rate)}/month + {series:,.0f} time series returned "
        f"({u.cost.alert_time_series_per_condition} per condition every {ALERT_PERIOD_SECONDS} s) x "
        f"{_rate(series_rate)}/million"
    )
    return conditions * rate + series / 1e6 * series_rate, basis


def _log_metric(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    """The bytes of the points a user-defined log-based metric writes: a counter (no value
    extractor) is INT64, one with a value extractor a distribution; each label multiplies its
    series by values the plan cannot say, so a labelled metric is unpriced rather than guessed."""
    inputs = r["inputs"]
    labels = sorted((inputs.get("labelExtractors") or {}).keys())
    if labels:
        raise Unpriced(f"its label(s) {', '.join(labels)} multiply its series by values the plan does not declare")
    descriptor = inputs.get("metricDescriptor") or {}
    value_type = "DISTRIBUTION" if inputs.get("valueExtractor") else descriptor.get("valueType", "INT64")
    size = METRIC_POINT_BYTES.get(value_type)
    if size is None:
        raise Unpriced(f"a {value_type} point's billed size is not known here")
    points, rate = u.cost.log_metric_points_per_month, u.usd("monitoring.metric_data_mib")
    mib = points * size / MIB
    kind = descriptor.get("metricKind", "DELTA")
    basis = (
        f"{points:,} points a month (cost.log_metric_points_per_month, assumed) x {size} bytes a {kind} {value_type} "
        f"point (assumed) = {mib:,.3f} MiB x {_rate(rate)}/MiB"
    )
    return mib * rate, basis


def _dynamodb(r: dict[str, Any], u: _Usage) -> tuple[float, str]:
    if r["inputs"].get("billingMode") != "PAY_PER_REQUEST":
        raise Unpriced("provisioned capacity is not in the price table (only on-demand)")
    c, size = u.cost, u.message_bytes
    write_units = u.requests * math.ceil(size / 1024)
    read_units = u.requests * c.result_reads_per_request * math.ceil(size / 4096)
    w, rd, st = (
        u.usd("dynamodb.million_write_units"),
        u.usd("dynamodb.million_read_units"),
        u.usd("dynamodb.storage_gb_month"),
    )
    pitr = bool((r["inputs"].get("pointInTimeRecovery") or {}).get("enabled"))
    pitr_rate = u.usd("dynamodb.pitr_gb_month") if pitr else 0.0
    # One item per request lives out its TTL and the wait for deletion (results for the same user
    # and surface overwrite each other, so fewer may be stored). Without TTL nothing expires: the
    # table is priced as it stands after the stack's horizon, as a never-expiring BigQuery table is.
    if (r["inputs"].get("ttl") or {}).get("enabled"):
        ttl_days = u.settings.serving.result_ttl_hours / 24 + TTL_DELETION_DAYS
        kept_for = f"{ttl_days:g} days of TTL and deletion"
    else:
        ttl_days = u.days * c.storage_horizon_months
        kept_for = f"no TTL: {c.storage_horizon_months} months' results"
    item = size + DYNAMODB_ITEM_OVERHEAD_BYTES
    gb = c.requests_per_day * ttl_days * item / GIB
    usd = write_units / 1e6 * w + read_units / 1e6 * rd + gb * (st + pitr_rate)
    basis = (
        f"{write_units:,.0f} write units ({size:,}-byte results) x {_rate(w)}/million + {read_units:,.0f} read units"
        f" x {_rate(rd)}/million + about {gb:.2f} GB stored ({c.requests_per_day:,.0f} results/day x"
        f" {kept_for} x {item:,} bytes) x {_rate(st)}/GB-month"
        + (f" + point-in-time recovery {gb:.2f} GB x {_rate(pitr_rate)}/GB-month" if pitr else "")
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
    "gcp:logging/metric:Metric": _log_metric,
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
            usage.used = []
            try:
                usd, basis = PRICERS[t](r, usage)
                used = tuple(p.to_json(prices.sources) for p in usage.used)
                lines.append(Line(t, name, "priced", round(usd, 2), basis, used))
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
        "results_to_aws_gib_per_month": round(usage.results_gib, 3),
    }
    return Estimate(stack=settings.stack, lines=lines, prices=prices, assumptions=assumptions)
