"""`rerank infra cost`: the price table, the estimate per resource and in total, the diff against
another commit, and the PR workflow line that shows it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from app.cli import main
from app.commands.infra import cost_diff, cost_text
from app.settings import REPO_ROOT, StackConfigError, StackSettings, load_stack, settings_from_mapping
from infra.cost import PRICERS, estimate, load_prices, runs_per_month
from infra.dataflow_options import AT_LEAST_ONCE, EXACTLY_ONCE, RESOURCE_BASED_BILLING, WORKER_DISK_GB
from infra.plan import Plan, plan_stack
from infra.prices.table import table_from
from tests.unit.infra_plans import planned, spec

pytestmark = pytest.mark.timeout(300)

STACKS = ["dev", "prod", "pr-7"]


def priced(stack: str, settings: StackSettings | None = None, plan: Plan | None = None) -> dict[str, Any]:
    inventory = (plan or planned(stack)).to_json()["inventory"]
    return estimate(inventory, settings or load_stack(stack), load_prices()).to_json()


def by_name(e: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{r['type']}::{r['name']}": r for r in e["resources"]}


@pytest.fixture
def cached_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command plans this tree through infra.plan.plan_stack: hand it the session's plans."""
    monkeypatch.setattr("infra.plan.plan_stack", lambda settings, pipeline_spec=None: planned(settings.stack))


def test_the_table_prices_exactly_the_types_with_a_pricer() -> None:
    table = load_prices()
    families = {key.split(".")[0] for key in table.prices}
    wanted = {"gke", "compute", "disk", "memorystore", "dataflow", "nat", "pubsub", "bigquery", "storage", "functions"}
    assert wanted | {"scheduler", "dynamodb", "artifact_registry", "secret_manager", "monitoring", "egress"} <= families
    # The table says which types are priced; each has its pricer, and the free ones say why.
    assert set(table.priced) == set(PRICERS)
    assert all(reason.strip() for reason in table.free.values())


# The price families each resource type is billed from: a line that draws on another service's
# prices (a Dataflow worker's disk at Compute Engine's rate, say) prices a SKU its bill never shows.
BILLED_FROM = {
    "aws:dynamodb/table:Table": {"dynamodb"},
    "gcp:artifactregistry/repository:Repository": {"artifact_registry"},
    "gcp:bigquery/dataset:Dataset": {"bigquery"},
    "gcp:bigquery/table:Table": {"bigquery"},
    "gcp:cloudfunctionsv2/function:Function": {"functions"},
    "gcp:cloudscheduler/job:Job": {"scheduler"},
    "gcp:compute/routerNat:RouterNat": {"nat", "egress"},
    "gcp:container/cluster:Cluster": {"gke"},
    "gcp:container/nodePool:NodePool": {"compute", "disk"},
    # The job writes the offline store with BigQuery streaming inserts, which BigQuery bills.
    "gcp:dataflow/flexTemplateJob:FlexTemplateJob": {"dataflow", "bigquery"},
    "gcp:logging/metric:Metric": {"monitoring"},
    "gcp:monitoring/alertPolicy:AlertPolicy": {"monitoring"},
    "gcp:pubsub/subscription:Subscription": {"pubsub"},
    "gcp:pubsub/topic:Topic": {"pubsub"},
    "gcp:redis/instance:Instance": {"memorystore"},
    "gcp:secretmanager/secret:Secret": {"secret_manager"},
    "gcp:secretmanager/secretVersion:SecretVersion": {"secret_manager"},
    "gcp:storage/bucket:Bucket": {"storage"},
}


@pytest.mark.parametrize("stack", STACKS)
def test_every_line_is_priced_from_the_service_that_bills_its_resource_type(stack: str) -> None:
    lines = [r for r in priced(stack)["resources"] if r["pricing"] == "priced"]
    assert {r["type"] for r in lines} <= set(BILLED_FROM) and set(BILLED_FROM) <= set(PRICERS)
    drawn = {(r["type"], p["key"]) for r in lines for p in r["prices"]}
    assert not {(t, k) for t, k in drawn if k.split(".")[0] not in BILLED_FROM[t]}


@pytest.mark.parametrize("stack", STACKS)
def test_every_priced_line_names_its_prices_for_the_stacks_regions_and_how_each_was_obtained(stack: str) -> None:
    settings, table = load_stack(stack), load_prices()
    e = priced(stack)
    regions = {"global", settings.gcp.region, settings.aws.region}
    unverified_lines = []
    for line in e["resources"]:
        if line["pricing"] != "priced":
            continue
        assert line["prices"], line
        for p in line["prices"]:
            assert p["region"] in regions and p["key"] in table.prices, (line["name"], p)
            if p["provenance"] == "catalog":
                assert p["sku"] and p["effective"], p
            elif p["provenance"] == "page":
                assert p["url"].startswith("https://") and p["checked"], p
            else:
                # An unverified price is shown with the catalog SKU query a refresh settles it with.
                assert p["provenance"] == "unverified" and p["note"], p
                assert p["catalog"] == table.prices[p["key"]].catalog and p["catalog"].get("gcp", "").startswith(
                    "services/"
                ), p
        assert line["unverified"] == [p["key"] for p in line["prices"] if p["provenance"] == "unverified"]
        if line["unverified"]:
            unverified_lines.append(line)
    # The estimate says which lines rest on unverified prices, and how much of the total that is.
    assert e["unverified"] == [f"{r['type']}::{r['name']}" for r in unverified_lines]
    assert e["unverified_usd_per_month"] == pytest.approx(sum(r["usd_per_month"] for r in unverified_lines), abs=0.01)
    # Node pools, disks, NAT, egress and buckets are read from the dump, not typed from memory.
    by_type = {r["type"]: r for r in e["resources"] if r["pricing"] == "priced"}
    pool = by_type["gcp:container/nodePool:NodePool"]
    assert {p["provenance"] for p in pool["prices"]} == {"page"} and not pool["unverified"]


def test_a_price_for_another_region_is_never_used_for_a_stack() -> None:
    """The guard over the class: a stack moved to another region (a real inventory, its settings
    broken) gets no europe-west1 rate; every such line is unpriced and says why."""
    dev = load_stack("dev")
    moved = dev.model_copy(update={"gcp": dev.gcp.model_copy(update={"region": "us-central1"})})
    e = priced("dev", moved)
    lines = by_name(e)
    pool = lines["gcp:container/nodePool:NodePool::serving-workers"]
    assert pool["usd_per_month"] == "unpriced"
    assert "compute.spot.e2.vcpu_hour is priced for europe-west1, not this stack's regions" in pool["basis"]
    for line in e["resources"]:
        if line["pricing"] == "priced":
            assert all(p["region"] != "europe-west1" for p in line["prices"]), line
    # Only lines whose every price is global (or AWS's) stay priced.
    assert lines["gcp:container/cluster:Cluster::serving-cluster"]["pricing"] == "priced"
    assert lines["gcp:redis/instance:Instance::feature-store-online"]["usd_per_month"] == "unpriced"


@pytest.mark.parametrize("stack", STACKS)
def test_every_planned_resource_is_priced_free_or_unpriced(stack: str) -> None:
    plan, table = planned(stack), load_prices()
    inventory = plan.to_json()["inventory"]
    e = priced(stack)
    assert [(r["type"], r["name"]) for r in e["resources"]] == [(r["type"], r["name"]) for r in inventory]
    for line in e["resources"]:
        t = line["type"]
        if line["pricing"] == "priced":
            assert t in PRICERS and isinstance(line["usd_per_month"], float) and "$" in line["basis"], line
        elif line["pricing"] == "free":
            assert table.free_reason(t) and line["usd_per_month"] == 0 and line["basis"].startswith("free: "), line
        else:
            assert line["usd_per_month"] == "unpriced" and line["basis"].startswith("unpriced: "), line
    unknown = {r["type"] for r in inventory if r["type"] not in PRICERS and not table.free_reason(r["type"])}
    assert {k.split("::")[0] for k in e["unpriced"]} >= unknown
    # What a stack costs most is priced: the cluster, its nodes, Memorystore, the results table.
    lines = {r["type"]: r for r in e["resources"]}
    for t in ("gcp:container/cluster:Cluster", "gcp:container/nodePool:NodePool", "gcp:redis/instance:Instance"):
        assert lines[t]["pricing"] == "priced" and lines[t]["usd_per_month"] > 0
    assert lines["aws:dynamodb/table:Table"]["usd_per_month"] > 0


@pytest.mark.parametrize("stack", STACKS)
def test_totals_add_up(stack: str) -> None:
    e = priced(stack)
    lines = [r["usd_per_month"] for r in e["resources"] if r["pricing"] == "priced"]
    assert e["total_usd_per_month"] == pytest.approx(sum(lines), abs=0.005)
    assert e["total_usd_per_day"] == pytest.approx(e["total_usd_per_month"] * 24 / 730, abs=0.005)
    assert e["total_usd_per_month"] > 0


def test_a_type_without_a_price_is_unpriced_never_zero() -> None:
    inventory = planned("dev").to_json()["inventory"]
    pool = next(r for r in inventory if r["type"] == "gcp:container/nodePool:NodePool")
    inputs = {**pool["inputs"], "autoscaling": {}, "nodeCount": 1, "nodeConfig": {"machineType": "c3-standard-4"}}
    c3 = {**pool, "name": "c3-pool", "inputs": inputs}
    alloydb = {"type": "gcp:alloydb/cluster:Cluster", "name": "analytics", "inputs": {}}
    settings, table = load_stack("dev"), load_prices()
    base = estimate(inventory, settings, table).to_json()
    e = estimate([*inventory, c3, alloydb], settings, table).to_json()
    extra = by_name(e)
    assert extra["gcp:alloydb/cluster:Cluster::analytics"]["usd_per_month"] == "unpriced"
    assert "not in prices.toml" in extra["gcp:alloydb/cluster:Cluster::analytics"]["basis"]
    assert extra["gcp:container/nodePool:NodePool::c3-pool"]["usd_per_month"] == "unpriced"
    assert (
        "machine type c3-standard-4 has no known vCPU and memory shape"
        in extra["gcp:container/nodePool:NodePool::c3-pool"]["basis"]
    )
    added = [u for u in e["unpriced"] if u not in base["unpriced"]]
    assert added == ["gcp:container/nodePool:NodePool::c3-pool", "gcp:alloydb/cluster:Cluster::analytics"]
    # The unpriced lines add nothing; the only priced line that moves is the NAT (one more node behind it).
    moved = {k for k, r in by_name(base).items() if r["usd_per_month"] != extra[k]["usd_per_month"]}
    assert moved == {"gcp:compute/routerNat:RouterNat::network-nat"}
    nat_delta = (
        extra["gcp:compute/routerNat:RouterNat::network-nat"]["usd_per_month"]
        - by_name(base)["gcp:compute/routerNat:RouterNat::network-nat"]["usd_per_month"]
    )
    assert e["total_usd_per_month"] == pytest.approx(base["total_usd_per_month"] + nat_delta, abs=0.005)
    text = cost_text(e)
    assert f"plus {len(base['unpriced']) + 2} unpriced" in text.splitlines()[0]
    assert "   unpriced  gcp:alloydb/cluster:Cluster  analytics" in text


def test_a_new_node_pool_is_priced_from_the_plan_with_no_cost_code_change() -> None:
    """A pool another change adds (an on-demand system pool, a bigger disk) is priced from its
    machine type, count, provisioning and disk as the plan declares them."""
    inventory = planned("dev").to_json()["inventory"]
    pool = next(r for r in inventory if r["type"] == "gcp:container/nodePool:NodePool")
    config = {"machineType": "e2-standard-2", "diskSizeGb": 50, "diskType": "pd-standard"}
    system = {
        **pool,
        "name": "system",
        "inputs": {**pool["inputs"], "autoscaling": {}, "nodeCount": 2, "nodeConfig": config},
    }
    table = load_prices()
    line = by_name(estimate([*inventory, system], load_stack("dev"), table).to_json())[
        "gcp:container/nodePool:NodePool::system"
    ]
    cpu, mem = table.usd("compute.ondemand.e2.vcpu_hour"), table.usd("compute.ondemand.e2.memory_gib_hour")
    disk = table.usd("disk.pd_standard_gib_month")
    assert line["usd_per_month"] == pytest.approx(2 * (2 * cpu + 8 * mem) * 730 + 2 * 50 * disk, abs=0.01)
    assert line["basis"].startswith("2 node(s) x e2-standard-2 on-demand") and "50 GiB pd-standard" in line["basis"]
    assert {p["key"] for p in line["prices"]} == {
        "compute.ondemand.e2.vcpu_hour",
        "compute.ondemand.e2.memory_gib_hour",
        "disk.pd_standard_gib_month",
    }
    # Autoscaled, it is priced at its minimum: the stack's avg_nodes is the workers' Spot pool's.
    prod = load_stack("prod")
    assert prod.cost.avg_nodes == 2
    scaled = {**system, "inputs": {**system["inputs"], "autoscaling": {"totalMinNodeCount": 1, "totalMaxNodeCount": 3}}}
    lines = by_name(estimate([*inventory, scaled], prod, table).to_json())
    assert lines["gcp:container/nodePool:NodePool::system"]["basis"].startswith("1 node(s)")
    assert lines["gcp:container/nodePool:NodePool::serving-workers"]["basis"].startswith("2 node(s)")


def test_a_changed_size_shows_in_the_cost_diff() -> None:
    dev = load_stack("dev")
    fs, sv = dev.feature_store, dev.serving
    bigger = dev.model_copy(
        update={
            "feature_store": fs.model_copy(update={"redis": fs.redis.model_copy(update={"memory_size_gb": 5})}),
            "serving": sv.model_copy(
                update={"node_pool": sv.node_pool.model_copy(update={"machine_type": "e2-standard-8"})}
            ),
        }
    )
    d = cost_diff(priced("dev"), priced("dev", bigger, plan_stack(bigger, pipeline_spec=spec())))
    changed = {c["name"]: c for c in d["changes"]}
    assert set(changed) == {"feature-store-online", "serving-workers"}
    redis = changed["feature-store-online"]
    rate = {k: p.usd for k, p in load_prices().prices.items()}
    assert rate["memorystore.BASIC.M2"] < rate["memorystore.BASIC.M1"]
    assert redis["after"] == pytest.approx(5 * rate["memorystore.BASIC.M2"] * 730, abs=0.01)  # the cheaper M2 band
    assert redis["before"] == pytest.approx(1 * rate["memorystore.BASIC.M1"] * 730, abs=0.01)
    assert changed["serving-workers"]["delta_usd_per_month"] > 0
    assert d["delta_usd_per_month"] == pytest.approx(sum(c["delta_usd_per_month"] for c in d["changes"]), abs=0.01)
    assert d["delta_usd_per_month"] == pytest.approx(d["total_usd_per_month"] - d["base_total_usd_per_month"])


def test_a_changed_usage_assumption_shows_in_the_cost_diff() -> None:
    dev = load_stack("dev")
    busier = dev.model_copy(update={"cost": dev.cost.model_copy(update={"requests_per_day": 1_000_000})})
    d = cost_diff(priced("dev"), priced("dev", busier))
    changed = {c["name"]: c for c in d["changes"]}
    assert {"rerank-dev-rerank-requests", "rerank-dev-predictions", "cross-cloud-results"} <= set(changed)
    # More requests: more messages, more results written to AWS through the NAT, more predictions stored.
    assert {"network-nat", "serving-predictions"} <= set(changed)
    assert {c["type"] for c in d["changes"]} <= {
        "gcp:pubsub/topic:Topic",
        "gcp:pubsub/subscription:Subscription",
        "gcp:compute/routerNat:RouterNat",
        "gcp:bigquery/table:Table",
        "aws:dynamodb/table:Table",
    }
    assert all(c["delta_usd_per_month"] > 0 for c in d["changes"])
    assert "rerank-dev-feature-events" not in changed  # feature traffic is its own assumption


def test_a_review_stack_inherits_devs_assumptions_and_costs_less_per_day() -> None:
    assert load_stack("pr-7").cost == load_stack("dev").cost
    review, dev = priced("pr-7"), priced("dev")
    assert 0 < review["total_usd_per_day"] < dev["total_usd_per_day"]
    assert review["assumptions"]["requests_per_day"] == dev["assumptions"]["requests_per_day"]


def test_cost_settings_are_checked_and_named() -> None:
    config = yaml.safe_load((REPO_ROOT / "stacks/Pulumi.dev.yaml").read_text())["config"]
    custom = settings_from_mapping({**config, "rerank-platform:cost": {"avg_nodes": 2.5}}, "dev", "dev")
    assert custom.cost.avg_nodes == 2.5
    e = estimate(planned("dev").to_json()["inventory"], custom, load_prices()).to_json()
    assert by_name(e)["gcp:container/nodePool:NodePool::serving-workers"]["basis"].startswith("2.5 node(s)")
    with pytest.raises(StackConfigError) as err:
        settings_from_mapping({**config, "rerank-platform:cost": {"hours_per_day": 25}}, "dev", "dev")
    assert err.value.problems[0].startswith("rerank-platform:cost.hours_per_day:")


def line_of(e: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in e["resources"] if r["name"] == name)


FLEX_JOB = "gcp:dataflow/flexTemplateJob:FlexTemplateJob"


def with_experiments(
    inventory: list[dict[str, Any]], job: dict[str, Any], experiments: list[str]
) -> list[dict[str, Any]]:
    changed = {**job, "inputs": {**job["inputs"], "additionalExperiments": experiments}}
    return [changed if r is job else r for r in inventory]


def test_streaming_engine_is_priced_as_the_job_is_billed() -> None:
    """At-least-once is always billed per compute unit, with or without the billing option;
    exactly-once without it per GiB processed (infra/dataflow_options.py cites the pages)."""
    inventory = planned("dev").to_json()["inventory"]
    settings, table = load_stack("dev"), load_prices()
    job = next(r for r in inventory if r["type"] == FLEX_JOB)
    stated = job["inputs"]["additionalExperiments"]
    assert AT_LEAST_ONCE in stated and EXACTLY_ONCE not in stated
    per_unit = line_of(estimate(inventory, settings, table).to_json(), job["name"])
    keys = {p["key"] for p in per_unit["prices"]}
    assert "dataflow.streaming_engine_unit_hour" in keys and "dataflow.streaming_engine_data_gib" not in keys
    assert "Streaming Engine resource-based: 1 compute unit(s)" in per_unit["basis"]
    others = [e for e in stated if e not in (AT_LEAST_ONCE, EXACTLY_ONCE, RESOURCE_BASED_BILLING)]
    mode_only = with_experiments(inventory, job, [*others, AT_LEAST_ONCE])
    assert line_of(estimate(mode_only, settings, table).to_json(), job["name"]) == per_unit
    exactly_once = with_experiments(inventory, job, [*others, EXACTLY_ONCE])
    per_gib = line_of(estimate(exactly_once, settings, table).to_json(), job["name"])
    assert "Streaming Engine data processed" in per_gib["basis"]
    gib = 500_000 * 730 / 24 * 600 / 1024**3
    engine = table.usd("dataflow.streaming_engine_unit_hour") * 730 - gib * table.usd(
        "dataflow.streaming_engine_data_gib"
    )
    assert per_unit["usd_per_month"] - per_gib["usd_per_month"] == pytest.approx(engine, abs=0.02)
    billed_option = with_experiments(inventory, job, [*others, EXACTLY_ONCE, RESOURCE_BASED_BILLING])
    assert line_of(estimate(billed_option, settings, table).to_json(), job["name"]) == per_unit


def test_dataflow_workers_disks_are_billed_at_dataflows_disk_rate_not_compute_engines() -> None:
    inventory = planned("dev").to_json()["inventory"]
    settings, committed = load_stack("dev"), load_prices()
    job = next(r for r in inventory if r["type"] == FLEX_JOB)

    def line_with(key: str, usd: float) -> dict[str, Any]:
        doc = copy.deepcopy(committed.raw)
        doc["prices"][key]["usd"] = usd
        return line_of(estimate(inventory, settings, table_from(doc)).to_json(), job["name"])

    before = line_of(estimate(inventory, settings, committed).to_json(), job["name"])
    assert "dataflow.pd_standard_gib_hour" in {p["key"] for p in before["prices"]}
    assert f"{WORKER_DISK_GB[True]} GiB pd-standard x $0.000054)/h" in before["basis"]
    # Compute Engine's disk rate does not move the job's line; Dataflow's moves it by workers x disk x hours.
    assert line_with("disk.pd_standard_gib_month", 1.0)["usd_per_month"] == before["usd_per_month"]
    rate = committed.usd("dataflow.pd_standard_gib_hour")
    workers = min(settings.cost.dataflow_avg_workers, job["inputs"]["maxWorkers"])
    moved = line_with("dataflow.pd_standard_gib_hour", rate + 0.001)["usd_per_month"] - before["usd_per_month"]
    assert moved == pytest.approx(workers * WORKER_DISK_GB[True] * 0.001 * 730, abs=0.01)
    # Without Streaming Engine a worker's default disk is the larger one.
    no_engine = {**job, "inputs": {**job["inputs"], "enableStreamingEngine": False}}
    alone = [no_engine if r is job else r for r in inventory]
    without = line_of(estimate(alone, settings, committed).to_json(), job["name"])
    assert f"{WORKER_DISK_GB[False]} GiB pd-standard" in without["basis"]


def test_dynamodb_results_are_stored_for_their_ttl_and_the_wait_for_deletion() -> None:
    inventory = planned("prod").to_json()["inventory"]
    prod, table = load_stack("prod"), load_prices()
    results = next(r for r in inventory if r["type"] == "aws:dynamodb/table:Table")

    def stored_usd(ttl_hours: int) -> float:
        serving = prod.serving.model_copy(update={"result_ttl_hours": ttl_hours})
        settings = prod.model_copy(update={"serving": serving})
        return line_of(estimate(inventory, settings, table).to_json(), results["name"])["usd_per_month"]

    line = line_of(estimate(inventory, prod, table).to_json(), results["name"])
    assert prod.serving.result_ttl_hours == 48 and "x 4 days of TTL and deletion x 3,500 bytes" in line["basis"]
    # One more day of TTL stores one more day of results (plus their 100-byte overhead), at the
    # storage and point-in-time recovery rates.
    day_gb = prod.cost.requests_per_day * 3500 / 1024**3
    rate = table.usd("dynamodb.storage_gb_month") + table.usd("dynamodb.pitr_gb_month")
    assert stored_usd(72) - stored_usd(48) == pytest.approx(day_gb * rate, abs=0.01)
    # A table without TTL keeps every result: priced at the stack's horizon, far above the TTL's.
    no_ttl = {**results, "inputs": {**results["inputs"], "ttl": {"enabled": False}}}
    grown = line_of(
        estimate([no_ttl if r is results else r for r in inventory], prod, table).to_json(), results["name"]
    )
    months = prod.cost.storage_horizon_months
    assert f"no TTL: {months} months' results" in grown["basis"]
    horizon_gb = day_gb * 730 / 24 * months
    assert grown["usd_per_month"] - line["usd_per_month"] == pytest.approx((horizon_gb - 4 * day_gb) * rate, abs=0.05)


def test_the_offline_stores_streaming_inserts_are_billed_at_least_1_kb_a_row() -> None:
    inventory = planned("dev").to_json()["inventory"]
    settings, table = load_stack("dev"), load_prices()
    job = next(r for r in inventory if r["type"] == FLEX_JOB)
    line = line_of(estimate(inventory, settings, table).to_json(), job["name"])
    assert "bigquery.streaming_insert_gib" in {p["key"] for p in line["prices"]}
    assert "the 1,024-byte minimum a row" in line["basis"]
    rows = settings.cost.feature_events_per_day * 730 / 24
    large = settings.model_copy(update={"cost": settings.cost.model_copy(update={"feature_event_bytes": 3000})})
    bigger = line_of(estimate(inventory, large, table).to_json(), job["name"])
    # 600-byte events are billed as 1,024 bytes; 3,000-byte ones at their size (the rest of the line is
    # the same: the job's bill does not depend on event size when billed per compute unit).
    extra = rows * (3000 - 1024) / 1024**3 * table.usd("bigquery.streaming_insert_gib")
    assert bigger["usd_per_month"] - line["usd_per_month"] == pytest.approx(extra, abs=0.01)
    assert "minimum a row" not in bigger["basis"]
    # A job without Streaming Engine writes the same rows: its line keeps the inserts.
    plain = {**job, "inputs": {**job["inputs"], "enableStreamingEngine": False}}
    no_engine = [plain if r is job else r for r in inventory]
    classic = line_of(estimate(no_engine, settings, table).to_json(), job["name"])
    assert "(no Streaming Engine) + BigQuery streaming inserts into the offline store" in classic["basis"]


def test_the_sink_writes_the_offline_store_the_way_the_estimate_prices() -> None:
    import apache_beam as beam

    from app.featurestore.beam_transforms import WriteOfflineBigQuery
    from app.featurestore.bigquery_write import WRITE_METHOD
    from infra.cost import OFFLINE_WRITE_PRICES

    pipeline = beam.Pipeline()
    _ = pipeline | beam.Create([]) | WriteOfflineBigQuery("rerank-dev", "offline")
    writes: list[Any] = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node: Any) -> None:
            if isinstance(node.transform, beam.io.WriteToBigQuery):
                writes.append(node.transform)

    pipeline.visit(Visitor())
    assert writes and {w.method for w in writes} == {WRITE_METHOD} and WRITE_METHOD in OFFLINE_WRITE_PRICES


def test_the_job_runs_the_streaming_mode_the_stacks_billing_names() -> None:
    dev = load_stack("dev")
    assert dev.feature_store.dataflow.streaming_billing == "resource_based"
    fs = dev.feature_store
    dataflow = fs.dataflow.model_copy(update={"streaming_billing": "data_processed"})
    per_gib = dev.model_copy(update={"feature_store": fs.model_copy(update={"dataflow": dataflow})})
    inventory = plan_stack(per_gib, pipeline_spec=spec()).to_json()["inventory"]
    job = next(r for r in inventory if r["type"] == FLEX_JOB)
    stated = job["inputs"]["additionalExperiments"]
    assert EXACTLY_ONCE in stated and AT_LEAST_ONCE not in stated and RESOURCE_BASED_BILLING not in stated
    assert "data processed" in line_of(estimate(inventory, per_gib, load_prices()).to_json(), job["name"])["basis"]


def test_the_ingest_template_supports_both_modes_a_stack_may_state() -> None:
    """A job stating a mode its template does not support fails at launch; resource_based states
    the template's own default, so a stack's billing never depends on which it is."""
    from app.featurestore.template_spec import TEMPLATE_DIR

    metadata = json.loads((TEMPLATE_DIR / "metadata.json").read_text())
    assert metadata["streaming"] and metadata["supportsAtLeastOnce"] and metadata["supportsExactlyOnce"]
    assert metadata["defaultStreamingMode"] == "AT_LEAST_ONCE"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_streaming_mode_rule_passes_each_stacks_job_and_fails_it_without_its_mode(stack: str) -> None:
    from infra.policy.rules import STREAMING_MODES, streaming_mode_stated

    assert STREAMING_MODES == (AT_LEAST_ONCE, EXACTLY_ONCE)
    jobs = [r for r in planned(stack).to_json()["inventory"] if r["type"] == FLEX_JOB]
    assert jobs
    for job in jobs:
        assert streaming_mode_stated(FLEX_JOB, job["inputs"]) == []
        unstated = [e for e in job["inputs"]["additionalExperiments"] if e not in STREAMING_MODES]
        found = streaming_mode_stated(FLEX_JOB, {**job["inputs"], "additionalExperiments": unstated})
        assert len(found) == 1 and "state 0 streaming modes" in found[0]


def test_nat_bills_its_gateway_addresses_data_and_the_results_egress_to_aws() -> None:
    dev, table = load_stack("dev"), load_prices()
    busy = dev.model_copy(update={"cost": dev.cost.model_copy(update={"requests_per_day": 200_000_000})})
    e = priced("dev", busy)
    nat = line_of(e, "network-nat")
    results = e["assumptions"]["results_to_aws_gib_per_month"]
    assert results > 10_240  # past the second egress tier
    egress = (
        1024 * table.usd("egress.internet_gib.first_tib")
        + 9216 * table.usd("egress.internet_gib.next_9_tib")
        + (results - 10_240) * table.usd("egress.internet_gib.over_10_tib")
    )
    # 1 node and 1 Dataflow worker behind the gateway; one auto-allocated address serves them.
    fixed = (2 * table.usd("nat.gateway_vm_hour") + table.usd("nat.ip_hour")) * 730
    data = (30 + results) * table.usd("nat.data_gib")
    assert nat["usd_per_month"] == pytest.approx(fixed + data + egress, rel=1e-4)
    assert "1 external IP(s)" in nat["basis"] and "results to AWS" in nat["basis"]


def test_small_messages_are_billed_at_pubsubs_1000_byte_minimum() -> None:
    table = load_prices()
    topic = line_of(priced("dev"), "rerank-dev-feature-events")
    count = 500_000 * 730 / 24
    kept = 500_000 * 600 * 3 / 1024**3
    expected = count * 1000 / 1024**4 * table.usd("pubsub.throughput_tib") + kept * table.usd(
        "pubsub.retained_gib_month"
    )
    assert topic["usd_per_month"] == pytest.approx(expected, abs=0.01)
    assert "1,000 bytes published (the 1,000-byte minimum per request)" in topic["basis"]


def test_tables_are_priced_from_traffic_and_partition_expiration_with_long_term_storage() -> None:
    table = load_prices()
    active, long_term = (
        table.usd("bigquery.active_storage_gib_month"),
        table.usd("bigquery.long_term_storage_gib_month"),
    )
    # dev: the predictions table keeps the stack's predictions retention (under 90 days): all active.
    days = load_stack("dev").serving.predictions_partition_expiration_days
    assert days is not None and days <= 90
    dev = line_of(priced("dev"), "serving-predictions")
    gib = 100_000 * 2 * 3400 * days / 1024**3  # requests x (variant record + shadow record) a day
    assert dev["usd_per_month"] == pytest.approx(gib * active, abs=0.01)
    assert f"partitions expire after {days} days" in dev["basis"]
    # prod: the offline tables keep the stack's retention, beyond 90 days: the rest is long-term.
    prod_settings = load_stack("prod")
    kept = prod_settings.feature_store.offline_partition_expiration_days
    assert kept is not None and kept > 90
    prod = line_of(priced("prod"), "feature-store-user_profile_v1")
    daily = 5_000_000 * 600 / 3 / 1024**3
    # A retention longer than the estimate's 12-month horizon is priced at the horizon.
    assert prod_settings.cost.storage_horizon_months == 12
    stored = min(kept, 365)
    assert prod["usd_per_month"] == pytest.approx(daily * 90 * active + daily * (stored - 90) * long_term, abs=0.01)
    # Without an expiration the table grows: priced at the stack's horizon, more for a longer one.
    inventory = copy.deepcopy(planned("prod").to_json()["inventory"])
    growing = next(r for r in inventory if r["name"] == "feature-store-user_profile_v1")
    growing["inputs"]["timePartitioning"].pop("expirationMs", None)
    for r in inventory:  # and no dataset default to fall back to
        if r["type"] == "gcp:bigquery/dataset:Dataset":
            r["inputs"].pop("defaultPartitionExpirationMs", None)
    grows = line_of(estimate(inventory, prod_settings, table).to_json(), "feature-store-user_profile_v1")
    assert "grows; priced at 12 months" in grows["basis"]
    longer = prod_settings.model_copy(
        update={"cost": prod_settings.cost.model_copy(update={"storage_horizon_months": 24})}
    )
    longer_line = line_of(estimate(inventory, longer, table).to_json(), "feature-store-user_profile_v1")
    assert longer_line["usd_per_month"] > grows["usd_per_month"]
    # A real inventory given a 30-day partition expiration is priced at 30 days.
    inventory = copy.deepcopy(planned("prod").to_json()["inventory"])
    offline = next(r for r in inventory if r["name"] == "feature-store-user_profile_v1")
    offline["inputs"]["timePartitioning"]["expirationMs"] = 30 * 86_400_000
    short = line_of(estimate(inventory, prod_settings, table).to_json(), "feature-store-user_profile_v1")
    assert short["usd_per_month"] == pytest.approx(daily * 30 * active, abs=0.01)


def test_alerting_is_billed_per_condition_and_per_time_series() -> None:
    table = load_prices()
    backlog = line_of(priced("dev"), "monitoring-backlog")
    series = 5 * 730 * 3600 / 30
    expected = 5 * table.usd("monitoring.alert_condition_month") + series / 1e6 * table.usd(
        "monitoring.alert_million_time_series"
    )
    assert backlog["usd_per_month"] == pytest.approx(expected, abs=0.01)


def test_log_based_metrics_are_billed_by_the_bytes_of_their_points() -> None:
    table, dev = load_prices(), load_stack("dev")
    inventory = copy.deepcopy(planned("dev").to_json()["inventory"])
    assert not [k for k in priced("dev")["unpriced"] if k.startswith("gcp:logging/metric:Metric")]
    busy = dev.model_copy(update={"cost": dev.cost.model_copy(update={"log_metric_points_per_month": 10_000_000})})
    rate = table.usd("monitoring.metric_data_mib")
    counter = line_of(estimate(inventory, busy, table).to_json(), "monitoring-results-writes")
    assert counter["usd_per_month"] == pytest.approx(10_000_000 * 8 / 2**20 * rate, abs=0.01)
    assert [p["key"] for p in counter["prices"]] == ["monitoring.metric_data_mib"] and not counter["unverified"]
    assert "(assumed)" in counter["basis"] and "DELTA INT64" in counter["basis"]
    # A value extractor makes it a distribution, whose points are billed larger.
    metric = next(r for r in inventory if r["name"] == "monitoring-results-writes")
    metric["inputs"]["valueExtractor"] = "EXTRACT(jsonPayload.latency_ms)"
    distribution = line_of(estimate(inventory, busy, table).to_json(), "monitoring-results-writes")
    assert distribution["usd_per_month"] == pytest.approx(10_000_000 * 80 / 2**20 * rate, abs=0.01)
    # Labels multiply its series by values the plan cannot say: unpriced, in one line, never zero.
    metric["inputs"]["labelExtractors"] = {"kind": 'REGEXP_EXTRACT(textPayload, "kind=(\\\\w+)")'}
    labelled = line_of(estimate(inventory, busy, table).to_json(), "monitoring-results-writes")
    assert labelled["usd_per_month"] == "unpriced" and "label(s) kind multiply its series" in labelled["basis"]


@pytest.mark.parametrize("gb, usd", [(0.4, 0.0), (0.5, 0.0), (10.0, 0.95)])
def test_the_registrys_free_half_gigabyte_is_not_billed(gb: float, usd: float) -> None:
    dev = load_stack("dev")
    images = dev.model_copy(update={"cost": dev.cost.model_copy(update={"image_storage_gb": gb})})
    assert line_of(priced("dev", images), "images-repository")["usd_per_month"] == pytest.approx(usd, abs=0.005)


@pytest.mark.parametrize(
    "cron, runs",
    [("0 3 * * *", 30.0), ("0 3 * * 1", 30 / 7), ("*/15 * * * *", 96 * 30.0), ("0 6 1 * *", 30 / 31)],
)
def test_schedules_are_counted_per_month(cron: str, runs: float) -> None:
    assert runs_per_month(cron, 30.0) == pytest.approx(runs)


@pytest.mark.parametrize("cron", ["@daily", "0 3 * *", "0 25 * * *", "0 3 * * MON"])
def test_a_cron_not_understood_counts_as_unknown(cron: str) -> None:
    assert runs_per_month(cron, 30.0) is None


def test_cost_prints_one_json_object(cached_plans: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["infra", "cost", "--stack", "pr-7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stack"] == "pr-7" and out["total_usd_per_month"] == priced("pr-7")["total_usd_per_month"]
    assert out["total_usd_per_day"] > 0
    table = load_prices()
    assert out["prices"] == {
        "table": "infra/prices.toml",
        "dated": table.dated,
        "refreshed": None,
        "kept": [],
        "regions": {"gcp": "europe-west1", "aws": "eu-west-1"},
        "provenance": table.counts(),
    }
    assert out["unverified"] and 0 < out["unverified_usd_per_month"] < out["total_usd_per_month"]
    for line in out["resources"]:
        assert {"type", "name", "usd_per_month", "basis"} <= set(line)


def test_cost_diff_prices_the_other_commits_plan(cached_plans: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["infra", "cost", "--stack", "dev", "--diff", "HEAD", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["base"] == "HEAD" and out["base_total_usd_per_month"] > 0
    assert out["delta_usd_per_month"] == pytest.approx(out["total_usd_per_month"] - out["base_total_usd_per_month"])
    assert "HEAD" in out["base_assumptions"]
    assert main(["infra", "cost", "--stack", "dev", "--diff", "HEAD"]) == 0
    assert capsys.readouterr().out.startswith("stack dev against HEAD: $")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["infra", "cost"], "the local stack has no cloud resources"),
        (["infra", "cost", "--stack", "qa"], "no such stack file"),
        (["infra", "cost", "--stack", "dev", "--diff", "no-such-ref"], "'no-such-ref' is not a commit"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_the_pr_workflow_puts_the_cost_beside_the_plan_diff() -> None:
    doc = yaml.safe_load((REPO_ROOT / ".github/workflows/preview.yml").read_text())
    job = doc["jobs"]["cost"]
    run = "\n".join(step.get("run", "") for step in job["steps"])
    assert "rerank infra cost --stack dev --diff origin/main --json" in run
    assert 'rerank infra cost --stack "pr-$PR" --json' in run
    assert "rerank infra plan --stack dev --diff origin/main" in run
    assert "dev: %s$%.2f/month, review stack: $%.2f/day" in run
    assert "GITHUB_STEP_SUMMARY" in run and "gh pr comment" in run
    # Prices refreshed before the cost is worked out, when the job has credentials; the comment
    # says which table was used and how much of the estimate rests on unverified prices.
    names = [step.get("name", "") for step in job["steps"]]
    refresh = next(i for i, step in enumerate(job["steps"]) if "rerank infra prices refresh" in step.get("run", ""))
    assert refresh < next(i for i, n in enumerate(names) if n.startswith("Cost of the change"))
    assert "the committed infra/prices.toml is used" in job["steps"][refresh]["run"]
    # One query the catalog no longer answers keeps that price as committed, not the whole table.
    assert "rerank infra prices refresh --keep-unread" in job["steps"][refresh]["run"]
    assert 'echo "Prices: $prices; $unverified"' in run and "not refreshed (the committed table)" in run
    assert "unverified_usd_per_month" in run and "[unverified]" in run
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
