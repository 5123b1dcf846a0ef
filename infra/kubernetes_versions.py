"""Which Kubernetes versions the serving cluster runs on each GKE release channel, and which ones
each KEDA release is tested on: the pinned KEDA chart (``infra.serving.KEDA_CHART_VERSION``) must
cover every version its stacks' channels can put the cluster on (``tests/unit/test_infra.py``).

Both tables are copies, made without network access to keda.sh or cloud.google.com; where each
was read is stated with it. Refresh both when bumping the chart or when GKE moves a channel on.
"""

from __future__ import annotations

from dataclasses import dataclass

# KEDA minor -> (oldest, newest) Kubernetes minor it is tested on. Read from KEDA's "Kubernetes
# Compatibility" matrix at keda.sh/docs/2.22/operate/cluster/ (a stored copy found with the search
# tool; it lists v2.22 as TBD); kedacore/keda-docs content/docs/2.21/operate/cluster.md at a55c5d34
# (2026-08-20) has the same rows for v2.16-v2.20 and v2.21 still TBD.
KEDA_KUBERNETES: dict[str, tuple[str, str]] = {
    "2.21": ("1.34", "1.36"),
    "2.20": ("1.33", "1.35"),
    "2.19": ("1.32", "1.34"),
    "2.18": ("1.31", "1.33"),
    "2.17": ("1.30", "1.32"),
    "2.16": ("1.29", "1.31"),
}


@dataclass(frozen=True)
class Channel:
    default: str  # the minor new clusters get and auto-upgrades move to
    newest: str  # the newest minor available on the channel (the next auto-upgrade target)


# GKE release channel -> the minors a cluster on it runs: from the default (where a new cluster
# starts and auto-upgrades go) up to the newest available (channels only upgrade). Read from the
# "Current versions" table of GKE's release notes as mirrored at
# documentation.s3ns.fr/kubernetes-engine/docs/release-notes (a stored copy found with the search
# tool, undated; its defaults: Rapid 1.36.0-gke.3302004, Regular 1.35.5-gke.1163012, Stable
# 1.34.8-gke.1000000; available: Rapid and Regular 1.33-1.36, Stable 1.33-1.35). Google's own page
# was not reachable from here.
GKE_CHANNELS: dict[str, Channel] = {
    "RAPID": Channel(default="1.36", newest="1.36"),
    "REGULAR": Channel(default="1.35", newest="1.36"),
    "STABLE": Channel(default="1.34", newest="1.35"),
}


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def uncovered(keda_chart_version: str, channel: str) -> list[str]:
    """Why ``keda_chart_version`` does not cover ``channel``'s versions; empty when it does."""
    keda = ".".join(keda_chart_version.split(".")[:2])
    if keda not in KEDA_KUBERNETES:
        return [f"KEDA {keda} is not in the compatibility table (infra/kubernetes_versions.py); add its row"]
    if channel not in GKE_CHANNELS:
        return [f"GKE channel {channel} is not in the channel table (infra/kubernetes_versions.py)"]
    low, high = (_minor(v) for v in KEDA_KUBERNETES[keda])
    c = GKE_CHANNELS[channel]
    return [
        f"KEDA {keda} is tested on Kubernetes {KEDA_KUBERNETES[keda][0]}-{KEDA_KUBERNETES[keda][1]}; "
        f"the {channel} channel runs {v}"
        for v in (c.default, c.newest)
        if not low <= _minor(v) <= high
    ]
