"""Each stack's needs at its maxima, summed per project and region over the whole planned inventory,
against a fresh project's default quotas: what `rerank infra plan` tells a deployer to request, and
the README names."""

from __future__ import annotations

import copy
import json

import pytest

from app.cli import main
from app.settings import REPO_ROOT, load_stack
from infra.quotas import DEFAULTS, ZONES_PER_REGION, increases, needs, vcpus
from tests.unit.infra_plans import planned

pytestmark = pytest.mark.timeout(300)


def inventory(stack: str) -> list[dict]:
    return planned(stack).to_json()["inventory"]


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-7"])
def test_cpus_and_disks_are_the_sum_of_every_vm_group_at_its_maxima(stack: str) -> None:
    s = load_stack(stack)
    pool, system, df = s.serving.node_pool, s.serving.system_pool, s.feature_store.dataflow
    from infra.serving import TEMPORARY_POOL

    temporary = ZONES_PER_REGION * vcpus(TEMPORARY_POOL["machine_type"])
    dataflow = df.max_workers * vcpus(df.machine_type) if df.enabled else 0
    system_cpus = system.max_nodes * vcpus(system.machine_type) if system.enabled else 0
    system_ssd = system.max_nodes * system.disk_size_gb if system.enabled else 0
    got = needs(inventory(stack), s)
    assert got["CPUS"] == temporary + pool.max_nodes * vcpus(pool.machine_type) + system_cpus + dataflow
    # pd-balanced pools; the temporary default pool is pd-standard
    assert got["SSD_TOTAL_GB"] == pool.max_nodes * pool.disk_size_gb + system_ssd
    assert got["SERVICE_ACCOUNTS"] == len(planned(stack).outputs["service_accounts"]) and got["NETWORKS"] == 1


def test_dev_fits_a_fresh_project_and_prod_and_the_review_project_name_their_increases() -> None:
    dev = load_stack("dev")
    assert increases(inventory("dev"), dev) == []
    prod = {q["metric"]: q for q in increases(inventory("prod"), load_stack("prod"))}
    assert {"CPUS", "N2_CPUS", "SSD_TOTAL_GB"} <= set(prod)
    assert all(q["needed"] > q["default"] == DEFAULTS[m].default for m, q in prod.items())
    review = {q["metric"]: q for q in increases(inventory("pr-7"), load_stack("pr-7"), dev)}
    assert dev.review is not None and all(q["stacks"] == dev.review.concurrent_stacks for q in review.values())
    assert review["CPUS"]["project"] == dev.review.gcp_project
    one = needs(inventory("pr-7"), load_stack("pr-7"))["CPUS"]
    assert review["CPUS"]["needed"] == one * dev.review.concurrent_stacks


def test_a_pool_added_anywhere_in_the_inventory_is_counted() -> None:
    """Broken copy of a real inventory: dev with a second, larger pool (as another part of the
    program might add) must now ask for more CPUs than a fresh project has."""
    dev = load_stack("dev")
    inv = inventory("dev")
    pool = next(r for r in inv if r["type"] == "gcp:container/nodePool:NodePool")
    extra = copy.deepcopy(pool)
    extra["name"] = "serving-system"
    extra["inputs"]["autoscaling"]["totalMaxNodeCount"] = 6
    found = {q["metric"] for q in increases([*inv, extra], dev)}
    assert "CPUS" in found and "SSD_TOTAL_GB" in found


def test_every_default_says_where_it_comes_from_and_the_readme_names_each_increase() -> None:
    assert all(q.source for q in DEFAULTS.values())
    readme = (REPO_ROOT / "README.md").read_text()
    dev = load_stack("dev")
    wanted = {q["metric"] for st in ("prod", "pr-7") for q in increases(inventory(st), load_stack(st), dev)}
    missing = [m for m in sorted(wanted) if f"`{m}`" not in readme]
    assert missing == [], f"README's quota table lacks {missing}"


def test_the_plan_prints_the_increases(cached_plans: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["infra", "plan", "--stack", "prod", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {q["metric"] for q in out["quota_increases"]} >= {"CPUS", "SSD_TOTAL_GB"}
