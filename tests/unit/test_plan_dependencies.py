"""Each planned resource's dependencies, as the engine records them: in `rerank infra plan --json`
(by `type::name`), in its diff, and through `Plan.depends_on` for rules and tests."""

from __future__ import annotations

import pytest

from app.commands.infra import diff_inventories
from infra.plan import Plan, PlannedResource
from tests.unit.infra_plans import planned

pytestmark = pytest.mark.timeout(300)

NODE_POOL = "gcp:container/nodePool:NodePool::serving-workers"
CLUSTER = "gcp:container/cluster:Cluster::serving-cluster"
VPC = "gcp:compute/network:Network::network-vpc"


def test_plan_json_lists_each_resources_dependencies_by_name() -> None:
    plan = planned("dev")
    inventory = plan.to_json()["inventory"]
    keys = {r.key for r in plan.resources}
    for entry in inventory:
        assert set(entry["dependencies"]) <= keys, entry["name"]
        assert entry["dependencies"] == sorted(entry["dependencies"])
    pool = next(r for r in inventory if f"{r['type']}::{r['name']}" == NODE_POOL)
    # The pool names its cluster (an input) and waits for the APIs (explicit depends_on).
    assert CLUSTER in pool["dependencies"]
    assert "gcp:projects/service:Service::api-container" in pool["dependencies"]
    assert VPC not in pool["dependencies"]  # only through the cluster
    assert pool["parent"] == "rerank:serving:Serving::serving"


def test_depends_on_follows_recorded_dependencies_transitively() -> None:
    plan = planned("dev")
    assert plan.depends_on(NODE_POOL, CLUSTER)
    assert plan.depends_on(NODE_POOL, VPC)  # pool -> cluster -> network
    assert VPC not in plan.dependencies(NODE_POOL)
    assert VPC in plan.dependencies(NODE_POOL, transitive=True)
    assert not plan.depends_on(CLUSTER, NODE_POOL)
    assert not plan.depends_on(VPC, CLUSTER)
    # A logical name used once is enough; the same answer for the resource object itself.
    assert plan.depends_on("serving-workers", "serving-cluster")
    assert plan.depends_on(plan.resource(NODE_POOL), plan.resource(CLUSTER))


def test_a_parents_dependencies_are_not_implied_for_its_children() -> None:
    plan = planned("dev")
    child = plan.resource("network-vpc")
    assert child.parent is not None and child.parent.endswith("rerank:network:Network::network")
    parent = plan.resource("rerank:network:Network::network")
    assert not parent.custom
    assert parent.key not in plan.dependencies(child, transitive=True)


def resource(type_: str, name: str, *needs: PlannedResource) -> PlannedResource:
    urn = f"urn:pulumi:t::rerank-platform::pulumi:pulumi:Stack${type_}::{name}"
    return PlannedResource(type_, name, urn, {}, True, False, tuple(r.urn for r in needs))


def test_an_unknown_or_ambiguous_name_is_refused() -> None:
    secret = resource("gcp:secretmanager/secret:Secret", "online")
    version = resource("gcp:secretmanager/secretVersion:SecretVersion", "online", secret)
    plan = Plan(stack="t", resources=[secret, version])
    with pytest.raises(KeyError, match="names 0 resources"):
        plan.depends_on("no-such-resource", secret)
    with pytest.raises(KeyError, match="names 2 resources"):
        plan.resource("online")
    assert plan.depends_on("gcp:secretmanager/secretVersion:SecretVersion::online", secret.key)
    assert not plan.depends_on(secret, version)


def test_a_dependency_cycle_ends_the_walk() -> None:
    # The engine refuses cycles; the walk must still end on a hand-made one.
    a = resource("t:a:A", "a")
    b = resource("t:b:B", "b", a)
    a = PlannedResource(a.type, a.name, a.urn, {}, True, False, (b.urn,))
    plan = Plan(stack="t", resources=[a, b])
    assert plan.dependencies(a, transitive=True) == {a.key, b.key}


def test_a_dropped_dependency_shows_in_the_diff() -> None:
    base = planned("dev").to_json()
    current = planned("dev").to_json()
    pool = next(r for r in current["inventory"] if f"{r['type']}::{r['name']}" == NODE_POOL)
    current["inventory"] = [
        {**r, "dependencies": [d for d in r["dependencies"] if d != CLUSTER]} if r is pool else r
        for r in current["inventory"]
    ]
    d = diff_inventories(base, current)
    assert [(c["name"], c["changes"]) for c in d["changed"]] == [
        ("serving-workers", {"(dependencies)": {"before": [CLUSTER], "after": []}})
    ]
    # A base planned before dependencies were listed is no change.
    old = {**base, "inventory": [{k: v for k, v in r.items() if k != "dependencies"} for r in base["inventory"]]}
    assert diff_inventories(old, planned("dev").to_json())["changed"] == []
