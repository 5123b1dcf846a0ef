"""The price table and the catalog readers behind `rerank infra prices refresh`: every price says
how it was obtained, the readers pick the right SKU, tier and region from answers in the client
libraries' shapes (tests/fixtures/prices, whose `_about` says what each entry is), and anything a
catalog answer cannot price is a one-line error, never a zero."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st

from app.cli import main
from app.commands.infra import prices_line
from app.settings import REPO_ROOT
from infra.prices import refresh as catalogs
from infra.prices import table as price_table
from infra.prices.aws import aws_price, products_reader
from infra.prices.gcp import CatalogError, gcp_price, money, sku_dict, skus_reader
from infra.prices.table import PRICE_TABLE, PriceTableError, dump_table, load_prices, table_from

FIXTURES = REPO_ROOT / "tests/fixtures/prices"
RECORDED_SKU = "02EE-77CE-ACCD"  # a catalog entry recorded verbatim: tiered, US regions only
NOW = dt.datetime(2026, 12, 4, 9, 30, tzinfo=dt.UTC)


def gcp_answers() -> dict[str, list[dict[str, Any]]]:
    doc = json.loads((FIXTURES / "gcp_list_skus.json").read_text())
    return {service: skus for service, skus in doc.items() if service != "_about"}


def aws_answers() -> dict[str, list[str]]:
    doc = json.loads((FIXTURES / "aws_get_products.json").read_text())
    return {usage: items for usage, items in doc.items() if usage != "_about"}


class FakeCatalogClient:
    """``CloudCatalogClient`` as far as the reader uses it: ``list_skus(parent=...)`` iterates SKUs."""

    def __init__(self, answers: dict[str, list[dict[str, Any]]]) -> None:
        self.answers, self.asked = answers, []

    def list_skus(self, parent: str) -> list[dict[str, Any]]:
        self.asked.append(parent)
        return copy.deepcopy(self.answers.get(parent, []))


def stubbed_pricing(answers: dict[str, list[str]], usage_types: list[str]) -> tuple[Any, Stubber]:
    """A real boto3 pricing client whose answers are the recorded ones, asked in this order."""
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    for usage in usage_types:
        stub.add_response(
            "get_products",
            {"PriceList": answers.get(usage, []), "FormatVersion": "aws_v1"},
            {
                "ServiceCode": "AmazonDynamoDB",
                "Filters": [{"Type": "TERM_MATCH", "Field": "usagetype", "Value": usage}],
                "FormatVersion": "aws_v1",
            },
        )
    stub.activate()
    return client, stub


def queried(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(k, p.catalog) for k, p in load_prices().prices.items() if kind in p.catalog]


def refreshed(doc: dict[str, Any] | None = None) -> catalogs.Refreshed:
    aws_queries = [q["usagetype"] for _, q in queried("aws")]
    client, stub = stubbed_pricing(aws_answers(), aws_queries)
    result = catalogs.refresh(
        doc or load_prices().raw, skus_reader(FakeCatalogClient(gcp_answers())), products_reader(client), now=NOW
    )
    stub.assert_no_pending_responses()
    return result


# --- the committed table --------------------------------------------------------------------------


def test_the_committed_table_is_exactly_what_the_writer_writes() -> None:
    table = load_prices()
    assert dump_table(table.raw) == PRICE_TABLE.read_text()


def test_every_price_says_how_it_was_obtained_and_none_claims_a_catalog_it_was_not_read_from() -> None:
    table = load_prices()
    counts = table.counts()
    # Nothing here could reach a catalog: the committed table has no catalog prices and says so.
    assert table.refreshed == "" and counts["catalog"] == 0 and not table.kept and "(empty: never;" in table.note
    assert counts["page"] > 0 and sum(counts.values()) == len(table.prices)
    for key, p in table.prices.items():
        if p.provenance == "page":
            assert table.sources[p.source]["url"].startswith("https://") and p.checked <= table.dated, key
        else:
            assert p.provenance == "unverified" and p.note.strip(), key
        assert p.region in ("global", table.gcp_region, table.aws_region), key
    # Each source says what it is and when it was read.
    assert all("read 2026-12-04" in s["about"] for s in table.sources.values())


# The catalog service behind each price family: a query under another service reads another bill.
CATALOG_OF = {
    "compute": "services/6F81-5844-456A",
    "disk": "services/6F81-5844-456A",
    "nat": "services/E505-1604-58F8",
    "memorystore": "services/5AF5-2C11-D467",
    "functions": "services/152E-C115-5142",
    "bigquery": "services/24E6-581D-38E5",
    "dataflow": "services/57D6-8E6B-2DE0",
    "dynamodb": "AmazonDynamoDB",
}


def test_every_catalog_query_names_the_service_that_bills_its_price_family() -> None:
    queries = {k: p.catalog.get("gcp") or p.catalog.get("aws") for k, p in load_prices().prices.items() if p.catalog}
    assert {k: s for k, s in queries.items() if CATALOG_OF.get(k.split(".")[0]) != s} == {}


@pytest.mark.parametrize(
    "old, new, problem",
    [
        ('provenance = "page"\nsource = "cyclenerd"', 'provenance = "page"\nsource = "memory"',
         "source 'memory' is not under [sources]"),
        ('provenance = "page"', 'provenance = "catalog"', "a catalog price needs its sku"),
        ('provenance = "page"', 'provenance = "remembered"', "provenance must be one of catalog, page, unverified"),
        ('checked = "2026-12-04"', 'checked = "last week"', "needs the day it was checked"),
        ('usd = 0.1\nunit = "cluster-hour"', 'usd = -0.1\nunit = "cluster-hour"', "usd must be a number >= 0"),
        ('"gcp:compute/firewall:Firewall" =', '"gcp:container/cluster:Cluster" =', "is both priced and free"),
        ('usagetype = "EU-WriteRequestUnits"', 'usagetype = "WriteRequestUnits"',
         "usage type 'WriteRequestUnits' lacks eu-west-1's prefix 'EU-'"),
        ('usagetype = "EU-ReadRequestUnits"', 'usagetype = "EUW1-ReadRequestUnits"',
         "usage type 'EUW1-ReadRequestUnits' lacks eu-west-1's prefix 'EU-'"),
        ('refreshed = ""', 'refreshed = ""\nkept = ["dataflow.memory_gib_hour"]', "but the table was never refreshed"),
        ('refreshed = ""', 'refreshed = "2026-12-06T09:30:00Z"\nkept = ["gke.cluster_hour"]',
         "table.kept: gke.cluster_hour is not a price with a catalog query"),
        ('refreshed = ""', 'refreshed = "2026-12-06T09:30:00Z"\nkept = "dataflow.memory_gib_hour"',
         "table.kept must be a list of distinct price keys"),
        ('refreshed = ""', 'refreshed = "2026-12-06T09:30:00Z"\nkept = ["gke.cluster_hour", "gke.cluster_hour"]',
         "table.kept must be a list of distinct price keys"),
        ('refreshed = ""', 'refreshed = "yesterday"', "table.refreshed must be a UTC time"),
        ('refreshed = ""', 'refreshed = "2026-12-06T09:30:00Z"',
         "has a catalog query but was neither read by the refresh of 2026-12-06T09:30:00Z nor named in table.kept"),
    ],
)  # fmt: skip
def test_a_malformed_price_table_is_refused_in_one_line(old: str, new: str, problem: str, tmp_path: Path) -> None:
    text = PRICE_TABLE.read_text()
    assert old in text
    (tmp_path / "prices.toml").write_text(text.replace(old, new, 1))
    with pytest.raises(PriceTableError) as err:
        load_prices(tmp_path / "prices.toml")
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_an_unverified_price_without_a_note_is_refused() -> None:
    doc = copy.deepcopy(load_prices().raw)
    doc["prices"]["dataflow.streaming_vcpu_hour"]["note"] = " "
    with pytest.raises(PriceTableError, match="needs a note saying where the figure came from"):
        table_from(doc)


# --- the readers, on the client libraries' answer shapes ------------------------------------------


def test_the_right_sku_is_picked_not_another_regions_or_a_custom_shapes() -> None:
    skus_of = skus_reader(FakeCatalogClient(gcp_answers()))
    query = load_prices().prices["compute.spot.e2.vcpu_hour"].catalog
    price = gcp_price("compute.spot.e2.vcpu_hour", query, skus_of, "europe-west1")
    # The fixture also offers Iowa's Spot E2 core ($0.00669), a custom core and a commitment.
    assert price.usd == pytest.approx(0.01162) and price.region == "europe-west1" and price.unit == "h"
    assert price.sku.startswith("services/6F81-5844-456A/skus/") and price.effective.startswith("2026-07-30")
    iowa = gcp_price("compute.spot.e2.vcpu_hour", query, skus_of, "us-central1")
    assert iowa.usd == pytest.approx(0.00669)


def test_memorystore_is_read_on_demand_in_the_stacks_region_not_iowas_or_a_commitments() -> None:
    skus_of = skus_reader(FakeCatalogClient(gcp_answers()))
    prices = load_prices().prices
    basic = gcp_price("memorystore.BASIC.M1", prices["memorystore.BASIC.M1"].catalog, skus_of, "europe-west1")
    assert basic.usd == pytest.approx(0.051) and basic.unit == "GiBy.h" and basic.region == "europe-west1"
    iowa = gcp_price("memorystore.BASIC.M1", prices["memorystore.BASIC.M1"].catalog, skus_of, "us-central1")
    assert iowa.usd == pytest.approx(0.049)
    # FIXTURE-32 is a one-year commitment under the same description: the query names OnDemand.
    query = dict(prices["memorystore.STANDARD_HA.M2"].catalog)
    assert gcp_price("memorystore.STANDARD_HA.M2", query, skus_of, "europe-west1").usd == pytest.approx(0.061)
    del query["usage"]
    with pytest.raises(CatalogError, match="2 SKUs match 'Redis Capacity Standard M2' in europe-west1"):
        gcp_price("memorystore.STANDARD_HA.M2", query, skus_of, "europe-west1")


def test_cloud_run_functions_are_read_beyond_the_free_tier_in_tier_1_not_from_tier_2s_skus() -> None:
    skus_of = skus_reader(FakeCatalogClient(gcp_answers()))
    prices = load_prices().prices
    read = {k: gcp_price(k, prices[k].catalog, skus_of, "europe-west1") for k in (
        "functions.vcpu_second", "functions.gib_second", "functions.million_invocations")}  # fmt: skip
    assert read["functions.vcpu_second"].usd == pytest.approx(0.000024)
    memory = read["functions.gib_second"]
    assert memory.usd == pytest.approx(0.0000025) and memory.unit == "GiBy.s"
    assert read["functions.million_invocations"].usd == pytest.approx(0.4)
    assert read["functions.million_invocations"].region == "global"
    # europe-west2 is billed by the Tier 2 SKUs, which these queries do not name: one line, not Tier 1's rate.
    with pytest.raises(CatalogError, match=r"is offered in .*europe-west1.*, not europe-west2$"):
        gcp_price("functions.gib_second", prices["functions.gib_second"].catalog, skus_of, "europe-west2")


def test_dataflow_is_read_streaming_on_demand_in_the_stacks_region_not_iowas_batchs_or_a_commitments() -> None:
    skus_of = skus_reader(FakeCatalogClient(gcp_answers()))
    prices = load_prices().prices
    keys = (
        "dataflow.streaming_vcpu_hour",
        "dataflow.memory_gib_hour",
        "dataflow.streaming_engine_data_gib",
        "dataflow.pd_standard_gib_hour",
    )
    # Iowa's SKUs carry the same figures as the built Belgium ones: which SKU is read is the check.
    here = {k: gcp_price(k, prices[k].catalog, skus_of, "europe-west1") for k in keys}
    assert {k: (p.sku.rsplit("/", 1)[1], p.region, p.unit) for k, p in here.items()} == {
        "dataflow.streaming_vcpu_hour": ("FIXTURE-36", "europe-west1", "h"),
        "dataflow.memory_gib_hour": ("FIXTURE-37", "europe-west1", "GiBy.h"),
        "dataflow.streaming_engine_data_gib": ("FIXTURE-38", "europe-west1", "GiBy"),
        "dataflow.pd_standard_gib_hour": ("FIXTURE-44", "europe-west1", "GiBy.h"),
    }
    iowa = {k: gcp_price(k, prices[k].catalog, skus_of, "us-central1").sku.rsplit("/", 1)[1] for k in keys}
    assert iowa == dict(zip(keys, ("FIXTURE-39", "FIXTURE-40", "FIXTURE-41", "FIXTURE-45"), strict=True))
    # A one-year commitment shares the streaming vCPU wording: only the usage type keeps it out.
    query = dict(prices["dataflow.streaming_vcpu_hour"].catalog)
    del query["usage"]
    with pytest.raises(
        CatalogError, match=r"2 SKUs match 'vCPU Time Streaming' in europe-west1 \(FIXTURE-36, FIXTURE-43\)"
    ):
        gcp_price("dataflow.streaming_vcpu_hour", query, skus_of, "europe-west1")


def test_the_guessed_queries_read_the_regions_sku_in_the_unit_the_formula_uses() -> None:
    """Streaming Engine compute units and streaming inserts are queried on wording no public source
    gives (the notes say so): the fixture checks the queries' region, unit and scaling, not that."""
    skus_of = skus_reader(FakeCatalogClient(gcp_answers()))
    prices = load_prices().prices
    secu = gcp_price("dataflow.streaming_engine_unit_hour", prices["dataflow.streaming_engine_unit_hour"].catalog,
                     skus_of, "europe-west1")  # fmt: skip
    assert secu.sku.endswith("/FIXTURE-46") and secu.unit == "h" and secu.usd == pytest.approx(0.089)
    inserts = prices["bigquery.streaming_insert_gib"]
    read = gcp_price("bigquery.streaming_insert_gib", inserts.catalog, skus_of, "europe-west1")
    # Read per MiB, written per GiB, as the estimate multiplies it by GiB inserted.
    assert read.sku.endswith("/FIXTURE-48") and read.unit == "MiBy" and inserts.unit == "GiB inserted"
    assert read.usd == pytest.approx(0.00005 * 1024) == pytest.approx(inserts.usd)
    assert "GUESS" in prices["dataflow.streaming_engine_unit_hour"].note


def test_bigquery_is_read_beyond_its_free_tier_and_an_answer_in_another_currency_is_refused() -> None:
    answers = gcp_answers()
    prices = load_prices().prices
    skus_of = skus_reader(FakeCatalogClient(answers))
    analysis = gcp_price("bigquery.on_demand_tib", prices["bigquery.on_demand_tib"].catalog, skus_of, "europe-west1")
    assert analysis.usd == pytest.approx(7.5) and analysis.unit == "TiBy"
    # The answer a public note recorded for a CZK billing account (effective 2026-04-13): the first
    # TiB free, then 159.37875 CZK. A refresh must refuse it, not write 159.38 as dollars.
    sku = next(s for s in answers["services/24E6-581D-38E5"] if s["description"] == "Analysis (europe-west1)")
    sku["pricingInfo"][0]["pricingExpression"]["tieredRates"] = [
        {"startUsageAmount": 0, "unitPrice": {"currencyCode": "CZK", "units": "0", "nanos": 0}},
        {"startUsageAmount": 1, "unitPrice": {"currencyCode": "CZK", "units": "159", "nanos": 378750000}},
    ]
    with pytest.raises(
        CatalogError, match=r"^prices.bigquery.on_demand_tib: SKU FIXTURE-33 is priced in CZK, not USD$"
    ):
        gcp_price(
            "bigquery.on_demand_tib",
            prices["bigquery.on_demand_tib"].catalog,
            skus_reader(FakeCatalogClient(answers)),
            "europe-west1",
        )


@pytest.mark.parametrize("amount, usd", [(0, 0.12), (1023, 0.12), (1024, 0.11), (5000, 0.11), (10_240, 0.08)])
def test_a_tiered_sku_is_read_at_the_tier_of_the_usage_asked_for(amount: float, usd: float) -> None:
    skus_of = skus_reader(FakeCatalogClient(gcp_answers()))
    query = {"gcp": "services/6F81-5844-456A", "description": "Network Vpn Internet Egress from Americas to Africa"}
    price = gcp_price("vpn.egress", {**query, "tier_at": amount, "unit": "GiBy"}, skus_of, "us-east1")
    assert price.usd == pytest.approx(usd) and price.sku.endswith(RECORDED_SKU)
    assert price.effective == "2021-11-26T10:50:40.206Z"


@pytest.mark.parametrize(
    "query, region, problem",
    [
        ({"description": "Network Vpn Internet Egress from Americas to Africa"}, "europe-west1",
         "is offered in us-central1, us-east1, us-west1, not europe-west1"),
        ({"description": "Spot Preemptible C4 Instance", "group": "CPU"}, "europe-west1",
         "no SKU 'Spot Preemptible C4 Instance'"),
        ({"description": "Spot Preemptible E2 Instance", "group": "CPU", "unit": "GiBy.h"}, "europe-west1",
         "is priced per 'h', not 'GiBy.h'"),
        ({"description": "Spot Preemptible E2"}, "europe-west1", "SKUs match 'Spot Preemptible E2' in europe-west1"),
    ],
)  # fmt: skip
def test_what_the_catalog_cannot_price_is_one_line_never_a_zero(
    query: dict[str, Any], region: str, problem: str
) -> None:
    skus_of = skus_reader(FakeCatalogClient(gcp_answers()))
    with pytest.raises(CatalogError) as err:
        gcp_price("x.y", {"gcp": "services/6F81-5844-456A", **query}, skus_of, region)
    assert problem in str(err.value) and "\n" not in str(err.value) and str(err.value).startswith("prices.x.y: ")


def test_a_client_library_message_is_read_as_its_protobuf_json() -> None:
    recorded = next(s for s in gcp_answers()["services/6F81-5844-456A"] if s["skuId"] == RECORDED_SKU)

    class Sku:  # the proto-plus surface the reader uses: the class's to_json(message)
        @staticmethod
        def to_json(message: Any) -> str:
            return json.dumps(recorded)

    assert sku_dict(Sku()) == recorded == sku_dict(recorded)


def test_the_price_list_is_asked_per_usage_type_and_read_at_its_tier() -> None:
    answers = aws_answers()
    client, stub = stubbed_pricing(answers, ["EU-TimedStorage-ByteHrs", "EU-TimedStorage-ByteHrs"])
    products_of = products_reader(client)
    query = {"aws": "AmazonDynamoDB", "usagetype": "EU-TimedStorage-ByteHrs", "unit": "GB-Mo"}
    free = aws_price("ddb.storage", query, products_of, "eu-west-1")
    paid = aws_price("ddb.storage", {**query, "tier_at": 26}, products_of, "eu-west-1")
    stub.assert_no_pending_responses()
    assert free.usd == 0.0 and paid.usd == pytest.approx(0.283)
    assert paid.sku.startswith("E6MS5SS3AMMHBJC6.JRTCKXETXF.") and paid.effective == "2026-09-11T12:44:22Z"


def test_the_on_demand_term_is_read_never_a_reserved_one() -> None:
    client, stub = stubbed_pricing(aws_answers(), ["EU-WriteCapacityUnit-Hrs"])
    query = {"aws": "AmazonDynamoDB", "usagetype": "EU-WriteCapacityUnit-Hrs", "unit": "WriteCapacityUnit-Hrs"}
    price = aws_price("ddb.wcu", query, products_reader(client), "eu-west-1")
    stub.assert_no_pending_responses()
    # The product also carries a 1-year reserved term ($0.000098 an hour after an upfront fee).
    assert price.usd == pytest.approx(0.000735) and ".JRTCKXETXF." in price.sku


def test_the_price_list_pages_are_all_read() -> None:
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    item = aws_answers()["EU-WriteRequestUnits"][0]
    stub.add_response("get_products", {"PriceList": [], "NextToken": "page-2"})
    stub.add_response("get_products", {"PriceList": [item]})
    with stub:
        found = products_reader(client)("AmazonDynamoDB", "EU-WriteRequestUnits")
    assert [p["product"]["sku"] for p in found] == ["F4EZE5SAMS3D49NJ"]


@pytest.mark.parametrize(
    "usage, region, problem",
    [
        ("EU-WriteRequestUnits", "us-east-1", "is offered in eu-west-1, not us-east-1"),
        # Without eu-west-1's EU- prefix the usage type is us-east-1's.
        ("WriteRequestUnits", "eu-west-1", "is offered in us-east-1, not eu-west-1"),
        # PayPerRequestThroughput is the entries' operation, not a usage type.
        (
            "EU-PayPerRequestThroughput",
            "eu-west-1",
            "no AmazonDynamoDB product with usage type 'EU-PayPerRequestThroughput'",
        ),
    ],
)
def test_a_price_list_answer_that_cannot_price_is_one_line(usage: str, region: str, problem: str) -> None:
    client, _ = stubbed_pricing(aws_answers(), [usage])
    with pytest.raises(CatalogError) as err:
        aws_price("ddb.writes", {"aws": "AmazonDynamoDB", "usagetype": usage}, products_reader(client), region)
    assert problem in str(err.value) and "\n" not in str(err.value)


@given(units=st.integers(min_value=0, max_value=10**6), nanos=st.integers(min_value=0, max_value=999_999_999))
def test_units_and_nanos_read_as_one_price(units: int, nanos: int) -> None:
    assert money({"units": str(units), "nanos": nanos}) == pytest.approx(units + nanos / 1e9)
    assert money({"nanos": nanos}) == pytest.approx(nanos / 1e9)


@given(
    starts=st.lists(st.integers(min_value=1, max_value=100_000), max_size=5, unique=True),
    amount=st.floats(min_value=0, max_value=200_000, allow_nan=False),
)
def test_the_tier_read_is_the_last_one_started_at_or_below_the_amount(starts: list[int], amount: float) -> None:
    tiers = [0, *sorted(starts)]
    rates = [{"startUsageAmount": s, "unitPrice": {"units": "0", "nanos": 1000 + i}} for i, s in enumerate(tiers)]
    sku = {
        "skuId": "T",
        "description": "Tiered thing",
        "serviceRegions": ["europe-west1"],
        "pricingInfo": [{"pricingExpression": {"usageUnit": "GiBy", "tieredRates": rates}}],
    }
    price = gcp_price("t", {"gcp": "s", "description": "Tiered", "tier_at": amount}, lambda _: [sku], "europe-west1")
    expected = max(i for i, s in enumerate(tiers) if s <= amount)
    assert price.usd == pytest.approx((1000 + expected) / 1e9)


@given(
    ends=st.lists(st.integers(min_value=1, max_value=100_000), max_size=4, unique=True),
    amount=st.floats(min_value=0, max_value=200_000, allow_nan=False),
)
def test_a_price_list_tier_is_the_dimension_whose_range_holds_the_amount(ends: list[int], amount: float) -> None:
    bounds = [0, *sorted(ends)]
    ranges = [(lo, str(hi)) for lo, hi in itertools.pairwise(bounds)] + [(bounds[-1], "Inf")]
    dims = {
        f"T.JRTCKXETXF.{i}": {
            "unit": "GB-Mo",
            "rateCode": f"T.JRTCKXETXF.{i}",
            "beginRange": str(lo),
            "endRange": hi,
            "pricePerUnit": {"USD": str(i + 1)},
        }
        for i, (lo, hi) in enumerate(reversed(ranges))  # the price list does not order them
    }
    item = {
        "product": {"sku": "T", "attributes": {"regionCode": "eu-west-1"}},
        "terms": {"OnDemand": {"T.JRTCKXETXF": {"priceDimensions": dims, "offerTermCode": "JRTCKXETXF"}}},
    }
    query = {"aws": "AmazonDynamoDB", "usagetype": "EU-X", "tier_at": amount}
    price = aws_price("t", query, lambda service, usage: [item], "eu-west-1")
    lo, hi = next((lo, hi) for lo, hi in ranges if lo <= amount < (float("inf") if hi == "Inf" else float(hi)))
    assert price.usd == float(dims[price.sku]["pricePerUnit"]["USD"])
    assert (float(dims[price.sku]["beginRange"]), dims[price.sku]["endRange"]) == (lo, hi)


# --- refresh --------------------------------------------------------------------------------------


def as_committed(fresh: dict[str, Any], committed: dict[str, Any]) -> str:
    """The refreshed table written back with the committed provenance and dates: what refresh
    changes by design. The rest, every figure included, must be the committed file's bytes."""
    doc = copy.deepcopy(fresh)
    doc["table"] = committed["table"]
    for key, p in doc["prices"].items():
        doc["prices"][key] = {**committed["prices"][key], "usd": p["usd"]} if key in committed["prices"] else p
    return dump_table(doc)


def test_refresh_with_the_recorded_answers_reproduces_the_committed_table_exactly() -> None:
    committed = load_prices()
    done = refreshed()
    assert done.read == {"gcp": len(queried("gcp")), "aws": len(queried("aws"))} and all(done.read.values())
    fresh = table_from(done.doc)
    for key, before in committed.prices.items():
        after = fresh.prices[key]
        if before.catalog:
            assert after.provenance == "catalog" and after.sku and after.effective, key
            assert after.catalog == before.catalog and after.region in ("europe-west1", "global", "eu-west-1")
        else:  # not queried: carried as committed, provenance and all
            assert after == before, key
    assert fresh.refreshed == "2026-12-04T09:30:00Z" and fresh.dated == "2026-12-04"
    # The AWS prices are read from the very offer entries their page source names (SKU in the note).
    for key, _ in queried("aws"):
        assert fresh.prices[key].sku.split(".")[0] in committed.prices[key].note, key
    # Byte for byte, figures included: only provenance, SKU, effective time and dates differ.
    assert as_committed(done.doc, committed.raw) == PRICE_TABLE.read_text()
    # What refresh writes loads back to the same table, and refreshing it again changes nothing.
    text = dump_table(done.doc)
    again = refreshed(table_from(tomllib.loads(text)).raw)
    assert dump_table(again.doc) == text


@pytest.mark.parametrize(
    "service, description, keys",
    [
        ("services/6F81-5844-456A", "Spot Preemptible E2 Instance Core running in Belgium",
         ["compute.spot.e2.vcpu_hour"]),
        ("services/E505-1604-58F8", "Networking Cloud Nat Gateway Uptime",
         ["nat.gateway_vm_hour", "nat.gateway_max_hour"]),
    ],
)  # fmt: skip
def test_an_answer_at_another_price_than_the_table_is_not_a_reproduction(
    service: str, description: str, keys: list[str]
) -> None:
    answers = gcp_answers()
    sku = next(s for s in answers[service] if s["description"] == description)
    sku["pricingInfo"][0]["pricingExpression"]["tieredRates"][0]["unitPrice"]["nanos"] += 1000
    client, _ = stubbed_pricing(aws_answers(), [q["usagetype"] for _, q in queried("aws")])
    committed = load_prices()
    done = catalogs.refresh(committed.raw, skus_reader(FakeCatalogClient(answers)), products_reader(client), now=NOW)
    then, now = PRICE_TABLE.read_text().splitlines(), as_committed(done.doc, committed.raw).splitlines()
    differ = [(a, b) for a, b in zip(then, now, strict=True) if a != b]
    assert len(differ) == len(keys) and all(a.startswith("usd = ") for a, _ in differ), differ
    assert all(done.doc["prices"][k]["usd"] != committed.usd(k) for k in keys)


def test_refresh_into_another_region_needs_every_regional_price_from_a_catalog() -> None:
    with pytest.raises(CatalogError) as err:
        catalogs.refresh(load_prices().raw, skus_reader(FakeCatalogClient(gcp_answers())), None, "us-central1")
    assert "cannot be read from a catalog here; the table stays in europe-west1" in str(err.value)


def test_a_missing_sku_stops_the_refresh_in_one_line() -> None:
    answers = gcp_answers()
    answers["services/E505-1604-58F8"] = []
    with pytest.raises(CatalogError) as err:
        catalogs.refresh(load_prices().raw, skus_reader(FakeCatalogClient(answers)), None)
    assert str(err.value) == (
        "prices.nat.gateway_vm_hour: no SKU 'Networking Cloud Nat Gateway Uptime'"
        " in the catalog's services/E505-1604-58F8"
    )


# --- the command ----------------------------------------------------------------------------------


def test_refresh_without_the_library_or_credentials_says_so_and_keeps_the_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    before = PRICE_TABLE.read_text()
    assert main(["infra", "prices", "refresh"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "prices not refreshed (gcp: google-cloud-billing is not installed" in err
    assert "aws: no AWS credentials" in err and "infra/prices.toml dated 2026-12-04 is used as committed" in err
    assert PRICE_TABLE.read_text() == before


@pytest.fixture
def table_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "prices.toml"
    shutil.copy(PRICE_TABLE, path)
    monkeypatch.setattr(price_table, "PRICE_TABLE", path)
    return path


def test_refresh_writes_the_table_from_the_catalogs_it_can_read(
    table_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = stubbed_pricing(aws_answers(), [q["usagetype"] for _, q in queried("aws")])
    monkeypatch.setattr(catalogs, "gcp_catalog", lambda: skus_reader(FakeCatalogClient(gcp_answers())))
    monkeypatch.setattr(catalogs, "aws_price_list", lambda: products_reader(client))
    assert main(["infra", "prices", "refresh", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["read"] == {"gcp": len(queried("gcp")), "aws": len(queried("aws"))} and out["not_refreshed"] == {}
    written = load_prices(table_copy)
    assert written.refreshed and written.counts()["catalog"] == sum(out["read"].values())
    assert out["provenance"] == written.counts()


def test_refresh_with_one_catalog_reads_it_and_says_the_other_was_not(
    table_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_aws() -> Any:
        raise catalogs.NotRefreshed("no AWS credentials (the Price List API needs a signed request)")

    monkeypatch.setattr(catalogs, "gcp_catalog", lambda: skus_reader(FakeCatalogClient(gcp_answers())))
    monkeypatch.setattr(catalogs, "aws_price_list", no_aws)
    assert main(["infra", "prices", "refresh"]) == 0
    out = capsys.readouterr().out
    assert "from gcp, 0 from aws; aws not refreshed: no AWS credentials" in out
    written = load_prices(table_copy)
    assert {p.provenance for p in written.prices.values() if p.region == "eu-west-1"} == {"page"}
    # The table names what the refresh did not read, so no estimate calls the AWS prices refreshed.
    assert written.kept == tuple(sorted(k for k, _ in queried("aws")))


def test_a_refresh_that_fails_writes_nothing(
    table_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = gcp_answers()
    answers["services/6F81-5844-456A"] = [
        s for s in answers["services/6F81-5844-456A"] if s["description"] != "Balanced PD Capacity in Belgium"
    ]
    monkeypatch.setattr(catalogs, "gcp_catalog", lambda: skus_reader(FakeCatalogClient(answers)))
    before = table_copy.read_text()
    assert main(["infra", "prices", "refresh"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SKU 'Balanced PD Capacity' is offered in us-central1, not europe-west1" in err
    assert table_copy.read_text() == before


def without_balanced_pd() -> dict[str, list[dict[str, Any]]]:
    answers = gcp_answers()
    answers["services/6F81-5844-456A"] = [
        s for s in answers["services/6F81-5844-456A"] if s["description"] != "Balanced PD Capacity in Belgium"
    ]
    return answers


def test_keep_unread_keeps_what_the_catalog_cannot_price_as_committed_and_reads_the_rest(
    table_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalogs, "gcp_catalog", lambda: skus_reader(FakeCatalogClient(without_balanced_pd())))
    monkeypatch.setattr(catalogs, "aws_price_list", lambda: products_reader(stubbed_pricing(
        aws_answers(), [q["usagetype"] for _, q in queried("aws")])[0]))  # fmt: skip
    committed = load_prices(table_copy)
    assert main(["infra", "prices", "refresh", "--keep-unread"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("; 1 kept as committed (their catalog could not price them)")
    assert lines[1:] == [
        "prices.disk.pd_balanced_gib_month: SKU 'Balanced PD Capacity' is offered in us-central1, not europe-west1"
    ]
    written = load_prices(table_copy)
    assert written.prices["disk.pd_balanced_gib_month"] == committed.prices["disk.pd_balanced_gib_month"]
    assert written.refreshed and written.counts()["catalog"] == len(queried("gcp")) - 1 + len(queried("aws"))
    # The table says what its refresh kept, and so does every estimate made with it.
    assert written.kept == ("disk.pd_balanced_gib_month",)
    shown = written.summary()
    assert shown["kept"] == ["disk.pd_balanced_gib_month"] and shown["refreshed"] == written.refreshed
    assert f"refreshed {written.refreshed} but for 1 kept as committed" in prices_line(shown)
    # The same answer without the flag writes nothing, as before.
    monkeypatch.setattr(price_table, "PRICE_TABLE", table_copy.with_name("again.toml"))
    shutil.copy(PRICE_TABLE, table_copy.with_name("again.toml"))
    assert main(["infra", "prices", "refresh"]) == 1
    assert load_prices(table_copy.with_name("again.toml")).prices == committed.prices


class RefusingCatalogClient(FakeCatalogClient):
    """Answers as recorded, but the client library raises for one service (as it does for an id the
    catalog does not know: NotFound, or PermissionDenied), after the first page, as a pager can."""

    class NotFound(Exception):
        pass

    def __init__(self, answers: dict[str, list[dict[str, Any]]], refused: str) -> None:
        super().__init__(answers)
        self.refused = refused

    def list_skus(self, parent: str) -> Any:
        if parent != self.refused:
            return super().list_skus(parent)

        def pages() -> Any:
            yield from super(RefusingCatalogClient, self).list_skus(parent)[:1]
            raise self.NotFound(f"404 Service {parent} not found.\n(details)")

        return pages()


def test_a_catalog_that_refuses_a_service_is_one_line_and_keep_unread_keeps_that_services_prices() -> None:
    committed = load_prices()
    dataflow = "services/57D6-8E6B-2DE0"
    client = RefusingCatalogClient(gcp_answers(), dataflow)
    with pytest.raises(CatalogError) as err:
        catalogs.refresh(committed.raw, skus_reader(client), None)
    assert str(err.value) == (
        f"prices.dataflow.streaming_vcpu_hour: list_skus({dataflow}) was refused: NotFound: 404 Service"
        f" {dataflow} not found."
    )
    client = RefusingCatalogClient(gcp_answers(), dataflow)
    done = catalogs.refresh(committed.raw, skus_reader(client), None, keep_unread=True)
    assert client.asked.count(dataflow) == 1  # a refusal is asked once, not once per price
    under = {k for k, q in queried("gcp") if q["gcp"] == dataflow}
    assert set(done.kept) == under and len(under) == 5
    assert all(done.doc["prices"][k] == committed.raw["prices"][k] for k in under)
    assert done.read["gcp"] == len(queried("gcp")) - len(under)


def test_a_price_list_that_refuses_is_one_line() -> None:
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_client_error(
        "get_products", "AccessDeniedException", "User is not authorized to perform pricing:GetProducts"
    )
    stub.activate()
    key, query = queried("aws")[0]
    with pytest.raises(CatalogError) as err:
        aws_price(key, query, products_reader(client), "eu-west-1")
    assert str(err.value).startswith(f"prices.{key}: get_products(AmazonDynamoDB, {query['usagetype']}) was refused: ")
    assert "AccessDeniedException: An error occurred (AccessDeniedException)" in str(err.value) and "\n" not in str(
        err.value
    )


def test_an_answer_of_another_shape_is_one_line_not_a_traceback() -> None:
    answers = gcp_answers()
    sku = next(s for s in answers["services/6F81-5844-456A"] if s["skuId"] == "FIXTURE-01")
    sku["pricingInfo"][0]["pricingExpression"]["tieredRates"][0]["unitPrice"]["units"] = "0.01"
    query = load_prices().prices["compute.spot.e2.vcpu_hour"].catalog
    with pytest.raises(CatalogError) as err:
        gcp_price("compute.spot.e2.vcpu_hour", query, skus_reader(FakeCatalogClient(answers)), "europe-west1")
    assert str(err.value).startswith(
        "prices.compute.spot.e2.vcpu_hour: the catalog's services/6F81-5844-456A answer cannot be read (ValueError("
    )
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_response("get_products", {"PriceList": ["{not json"], "FormatVersion": "aws_v1"})
    stub.activate()
    key, aws_query = queried("aws")[0]
    with pytest.raises(CatalogError, match=r"'s answer was refused: JSONDecodeError: "):
        aws_price(key, aws_query, products_reader(client), "eu-west-1")


def test_an_aws_profile_that_does_not_exist_is_not_refreshed_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(catalogs.NotRefreshed, match=r"^AWS credentials cannot be read \(The config profile \(nope\)"):
        catalogs.aws_price_list()


def test_keep_unread_cannot_keep_a_price_for_another_region_or_make_a_refresh_of_nothing() -> None:
    committed = load_prices()
    # Moved to Iowa, SSD PD (offered in Belgium only here) could only stay at Belgium's price.
    doc = copy.deepcopy(committed.raw)
    doc["prices"] = {k: doc["prices"][k] for k in ("compute.spot.e2.vcpu_hour", "disk.pd_ssd_gib_month")}
    skus_of = skus_reader(FakeCatalogClient(gcp_answers()))
    with pytest.raises(
        CatalogError, match=r"not us-central1; it is for europe-west1, so it cannot be kept in us-central1$"
    ):
        catalogs.refresh(doc, skus_of, None, "us-central1", keep_unread=True)
    # Nothing the catalog can price: every query kept, nothing read, nothing dated as refreshed.
    done = catalogs.refresh(committed.raw, skus_reader(FakeCatalogClient({})), None, keep_unread=True)
    assert done.read == {"gcp": 0, "aws": 0} and len(done.kept) == len(queried("gcp"))
    assert done.doc == committed.raw


def test_a_refresh_that_can_price_nothing_says_so_and_writes_nothing(
    table_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_aws() -> Any:
        raise catalogs.NotRefreshed("no AWS credentials (the Price List API needs a signed request)")

    monkeypatch.setattr(catalogs, "gcp_catalog", lambda: skus_reader(FakeCatalogClient({})))
    monkeypatch.setattr(catalogs, "aws_price_list", no_aws)
    before = table_copy.read_text()
    assert main(["infra", "prices", "refresh", "--keep-unread"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the catalogs priced none of {len(queried('gcp'))} queries" in err
    assert table_copy.read_text() == before


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["infra", "prices"], "say what to do: refresh"),
        (["infra", "prices", "refresh", "--region", "Belgium"], "is not a GCP region"),
        (["infra", "plan", "refresh", "--stack", "dev"], "infra plan takes no 'refresh'"),
        (
            ["infra", "cost", "--stack", "dev", "--keep-unread"],
            "--region and --keep-unread are for infra prices refresh",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
