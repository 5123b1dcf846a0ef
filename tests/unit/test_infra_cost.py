"""`rerank infra cost`: the price table, the estimate per resource and in total, the diff against
another commit, and the PR workflow line that shows it."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import main
from app.commands.infra import cost_diff, cost_text
from app.settings import REPO_ROOT, StackConfigError, StackSettings, load_stack, settings_from_mapping
from infra.cost import PRICE_TABLE, PRICERS, PriceTableError, estimate, load_prices, runs_per_month
from infra.plan import Plan, plan_stack
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


def test_every_price_names_its_source_page_and_month() -> None:
    raw = tomllib.loads(PRICE_TABLE.read_text())
    table = load_prices()
    assert "list prices" in table.note.lower() and "re-checked" in table.note
    assert table.dated == "2026-11"
    for key, price in table.prices.items():
        source = table.sources[price.source]
        assert source["url"].startswith("https://") and source["title"], key
        assert price.dated == "2026-11" and price.unit, key
        assert raw["prices"][key]["usd"] == price.usd >= 0
    families = {key.split(".")[0] for key in table.prices}
    wanted = {"gke", "spot", "memorystore", "dataflow", "nat", "pubsub", "bigquery", "storage", "functions"}
    assert wanted | {"scheduler", "dynamodb", "artifact_registry", "secret_manager"} <= families
    # The table says which types are priced; each has its pricer, and the free ones say why.
    assert set(table.priced) == set(PRICERS)
    assert all(reason.strip() for reason in table.free.values())


@pytest.mark.parametrize(
    "old, new, problem",
    [
        ('source = "gke", dated', 'source = "gke-page", dated', "source 'gke-page' is not under [sources]"),
        ('"gke.cluster_hour" = { usd = 0.10', '"gke.cluster_hour" = { usd = -0.10', "usd must be a number >= 0"),
        ('"gke.cluster_hour" = { usd = 0.10, unit = "cluster-hour", source = "gke", dated = "2026-11"',
         '"gke.cluster_hour" = { usd = 0.10, unit = "cluster-hour", source = "gke", dated = "Nov 2026"',
         "dated must be a month"),
        ('"gcp:compute/firewall:Firewall" =', '"gcp:container/cluster:Cluster" =', "is both priced and free"),
    ],
)  # fmt: skip
def test_a_malformed_price_table_is_refused_in_one_line(old: str, new: str, problem: str, tmp_path: Path) -> None:
    text = PRICE_TABLE.read_text()
    assert old in text
    (tmp_path / "prices.toml").write_text(text.replace(old, new, 1))
    with pytest.raises(PriceTableError) as err:
        load_prices(tmp_path / "prices.toml")
    assert problem in str(err.value) and "\n" not in str(err.value)


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
    inputs = {**pool["inputs"], "nodeConfig": {"machineType": "e2-standard-4"}}
    on_demand = {**pool, "name": "on-demand", "inputs": inputs}
    alloydb = {"type": "gcp:alloydb/cluster:Cluster", "name": "analytics", "inputs": {}}
    settings, table = load_stack("dev"), load_prices()
    base = estimate(inventory, settings, table).to_json()
    e = estimate([*inventory, on_demand, alloydb], settings, table).to_json()
    extra = by_name(e)
    assert extra["gcp:alloydb/cluster:Cluster::analytics"]["usd_per_month"] == "unpriced"
    assert "not in prices.toml" in extra["gcp:alloydb/cluster:Cluster::analytics"]["basis"]
    assert extra["gcp:container/nodePool:NodePool::on-demand"]["usd_per_month"] == "unpriced"
    assert "on-demand rates" in extra["gcp:container/nodePool:NodePool::on-demand"]["basis"]
    added = [u for u in e["unpriced"] if u not in base["unpriced"]]
    assert added == ["gcp:container/nodePool:NodePool::on-demand", "gcp:alloydb/cluster:Cluster::analytics"]
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
    assert redis["after"] == pytest.approx(5 * 0.027 * 730, abs=0.01)  # 5 GB is in the cheaper M2 band
    assert redis["before"] == pytest.approx(1 * 0.049 * 730, abs=0.01)
    assert changed["serving-workers"]["delta_usd_per_month"] > 0
    assert d["delta_usd_per_month"] == pytest.approx(sum(c["delta_usd_per_month"] for c in d["changes"]), abs=0.01)
    assert d["delta_usd_per_month"] == pytest.approx(d["total_usd_per_month"] - d["base_total_usd_per_month"])


def test_a_changed_usage_assumption_shows_in_the_cost_diff() -> None:
    dev = load_stack("dev")
    busier = dev.model_copy(update={"cost": dev.cost.model_copy(update={"requests_per_day": 1_000_000})})
    d = cost_diff(priced("dev"), priced("dev", busier))
    changed = {c["name"]: c for c in d["changes"]}
    assert {"rerank-dev-rerank-requests", "rerank-dev-predictions", "cross-cloud-results"} <= set(changed)
    assert {c["type"] for c in d["changes"]} <= {
        "gcp:pubsub/topic:Topic",
        "gcp:pubsub/subscription:Subscription",
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
    assert out["total_usd_per_day"] > 0 and out["prices"] == {"table": "infra/prices.toml", "dated": "2026-11"}
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
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
