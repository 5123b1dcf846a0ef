"""What a stack needs of its project's quotas at its maxima, summed per project and region from the
planned inventory (so a pool 19b or anyone adds is counted), against the defaults a fresh project
gets; ``rerank infra plan`` prints the increases to request before the first deploy.

Default quotas vary per project and billing history (Google's quota pages say so and list no
fixed numbers); each figure below says where it comes from, "from memory, unverified" where no
source was read. Check the Quotas page of the console before relying on one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.settings import StackSettings
from infra.dataflow_options import WORKER_DISK_GB

ZONES_PER_REGION = 3  # a regional cluster's pools span three zones unless node_locations say otherwise
SSD_TYPES = ("pd-balanced", "pd-ssd")  # both count against SSD_TOTAL_GB
SHARED_CORE = {"e2-micro": 2, "e2-small": 2, "e2-medium": 2}  # count as 2 vCPUs (from memory, unverified)


@dataclass(frozen=True)
class Quota:
    metric: str
    scope: str  # "region" or "project"
    default: int
    source: str


DEFAULTS = {
    q.metric: q
    for q in (
        Quota(
            "CPUS",
            "region",
            24,
            "hashicorp/terraform-provider-kubernetes#354 (review: 'the default GCP 24 CPU core per region quota')",
        ),
        Quota("N2_CPUS", "region", 24, "from memory, unverified"),
        Quota(
            "SSD_TOTAL_GB",
            "region",
            250,
            "terraform-google-kubernetes-engine#1795 (a project's error: \"project has a quota of '250.0'\")",
        ),
        Quota("DISKS_TOTAL_GB", "region", 4096, "from memory, unverified"),
        Quota("NETWORKS", "project", 15, "Google Cloud training, Core Services ('fifteen VPC networks per project')"),
        Quota("SERVICE_ACCOUNTS", "project", 100, "from memory, unverified"),
    )
}


def vcpus(machine_type: str) -> int:
    if machine_type in SHARED_CORE:
        return SHARED_CORE[machine_type]
    found = re.search(r"-([0-9]+)$", machine_type)
    return int(found.group(1)) if found else 1


def _family(machine_type: str) -> str | None:
    """The family CPU quota a machine also counts against (E2 and N1 count against CPUS only)."""
    family = machine_type.split("-", 1)[0].upper()
    return f"{family}_CPUS" if family not in ("E2", "N1", "F1", "G1") else None


def _machines(inventory: list[dict[str, Any]]) -> list[tuple[int, str, str, int]]:
    """(count at the maxima, machine type, disk type, disk GB) of every VM group the stack runs."""
    out = []
    for r in inventory:
        i = r["inputs"]
        node = i.get("nodeConfig") or {}
        if r["type"] == "gcp:container/cluster:Cluster" and i.get("initialNodeCount"):
            # The default pool, while it exists: created with the cluster, then deleted.
            count = int(i["initialNodeCount"]) * ZONES_PER_REGION
            out.append((count, node.get("machineType", "e2-medium"), node.get("diskType", "pd-balanced"),
                        int(node.get("diskSizeGb", 100))))  # fmt: skip
        elif r["type"] == "gcp:container/nodePool:NodePool":
            scaling = i.get("autoscaling") or {}
            count = int(
                scaling.get("totalMaxNodeCount")
                or int(scaling.get("maxNodeCount") or i.get("nodeCount") or i.get("initialNodeCount") or 1)
                * ZONES_PER_REGION
            )
            out.append((count, node.get("machineType", "e2-medium"), node.get("diskType", "pd-balanced"),
                        int(node.get("diskSizeGb", 100))))  # fmt: skip
        elif r["type"] == "gcp:dataflow/flexTemplateJob:FlexTemplateJob":
            out.append((int(i.get("maxWorkers") or 1), i.get("machineType", "n1-standard-1"), "pd-standard",
                        WORKER_DISK_GB[bool(i.get("enableStreamingEngine"))]))  # fmt: skip
    return out


def needs(inventory: list[dict[str, Any]], settings: StackSettings) -> dict[str, int]:
    """One stack's needs at its maxima, per quota metric (its region's and its project's)."""
    total: dict[str, int] = dict.fromkeys(DEFAULTS, 0)
    for count, machine, disk_type, disk_gb in _machines(inventory):
        total["CPUS"] += count * vcpus(machine)
        family = _family(machine)
        if family:
            total[family] = total.get(family, 0) + count * vcpus(machine)
        total["SSD_TOTAL_GB" if disk_type in SSD_TYPES else "DISKS_TOTAL_GB"] += count * disk_gb
    total["NETWORKS"] = sum(r["type"] == "gcp:compute/network:Network" for r in inventory)
    total["SERVICE_ACCOUNTS"] = sum(r["type"] == "gcp:serviceaccount/account:Account" for r in inventory)
    return total


def stacks_in_project(settings: StackSettings, dev: StackSettings | None) -> int:
    """How many stacks like this one share its project at once: the review project holds up to
    ``review.concurrent_stacks`` review stacks; dev and prod have a project each."""
    if settings.env == "ephemeral" and dev is not None and dev.review is not None:
        return dev.review.concurrent_stacks
    return 1


def increases(
    inventory: list[dict[str, Any]], settings: StackSettings, dev: StackSettings | None = None
) -> list[dict[str, Any]]:
    """The quota increases to request before the first deploy: each metric the project's stacks
    need beyond its default (the project's own networks: a fresh project's `default` one too)."""
    times = stacks_in_project(settings, dev)
    need = {k: v * times for k, v in needs(inventory, settings).items()}
    need["NETWORKS"] += 1  # the `default` network a new project comes with (unless an org policy skips it)
    return [
        {
            "metric": q.metric,
            "project": settings.gcp.project,
            "region": settings.gcp.region if q.scope == "region" else "global",
            "needed": need.get(q.metric, 0),
            "default": q.default,
            "stacks": times,
            "source": q.source,
        }
        for q in DEFAULTS.values()
        if need.get(q.metric, 0) > q.default
    ]
