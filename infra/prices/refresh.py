"""``rerank infra prices refresh [--region R]``: every price with a ``catalog`` query re-read from
Google's Cloud Billing Catalog or AWS's Price List, the rest of the table kept as it is.

The clients are made here, lazily: without ``google-cloud-billing`` installed, or without
credentials, that catalog is "not refreshed" with one line saying why, and its prices stay what
the committed table says (with their own provenance). A catalog answer that cannot price an entry
(no such SKU, another region, another unit) stops the refresh in one line: nothing is written.
Asked to ``keep_unread``, the refresh instead keeps that price as committed, provenance and all, and
names it with the catalog's reason, so one query the catalog no longer answers does not cost the
table every other price it could read.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from infra.prices.aws import ProductsOf, aws_price, products_reader
from infra.prices.gcp import CatalogError, CatalogPrice, SkusOf, gcp_price, skus_reader

# The AWS Price List API answers from these endpoints only; the prices it returns are per region.
AWS_PRICING_ENDPOINT = "us-east-1"


class NotRefreshed(Exception):
    """This catalog cannot be read here (the message says why, in one line)."""


def gcp_catalog() -> SkusOf:
    try:
        from google.cloud import billing_v1  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise NotRefreshed("google-cloud-billing is not installed (pip install google-cloud-billing)") from None
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        raise NotRefreshed("no Google credentials (gcloud auth application-default login)") from None
    return skus_reader(billing_v1.CloudCatalogClient())


def aws_price_list() -> ProductsOf:
    try:
        import boto3
    except ImportError:
        raise NotRefreshed("boto3 is not installed") from None
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.Session()
        credentials = session.get_credentials()
    except BotoCoreError as exc:  # a profile that does not exist, a malformed config file
        raise NotRefreshed(f"AWS credentials cannot be read ({exc})") from None
    if credentials is None:
        raise NotRefreshed("no AWS credentials (the Price List API needs a signed request)")
    return products_reader(session.client("pricing", region_name=AWS_PRICING_ENDPOINT))


@dataclass
class Refreshed:
    doc: dict[str, Any]
    read: dict[str, int] = field(default_factory=dict)  # catalog -> prices read
    skipped: dict[str, str] = field(default_factory=dict)  # catalog -> why not read
    kept: dict[str, str] = field(default_factory=dict)  # price -> why its catalog could not price it


def refresh(
    doc: dict[str, Any],
    skus_of: SkusOf | None,
    products_of: ProductsOf | None,
    gcp_region: str | None = None,
    now: dt.datetime | None = None,
    skipped: dict[str, str] | None = None,
    keep_unread: bool = False,
) -> Refreshed:
    """The table ``doc`` with each queried price re-read from the catalogs given (``None``: not
    read, said in ``skipped``). A different ``gcp_region`` moves the table's GCP prices there,
    which only works when every regional GCP price can be read from the catalog. With
    ``keep_unread``, a price its catalog cannot price stays as committed and is named in ``kept``
    (a price for another region than the one asked for cannot stay: that still stops the refresh)."""
    out = copy.deepcopy(doc)
    table = out["table"]
    region = gcp_region or table["gcp_region"]
    result = Refreshed(out, {"gcp": 0, "aws": 0}, dict(skipped or {}))
    readable = {"gcp": skus_of is not None, "aws": products_of is not None}

    def kind_of(entry: dict[str, Any]) -> str | None:
        kind = _catalog_of(entry)
        return kind if kind and readable[kind] else None

    here = ("global", region, table["aws_region"])
    # A price that stays as it is must be one for the region the table is for, before any is read.
    for key, entry in out["prices"].items():
        if kind_of(entry) is None and entry["region"] not in here:
            raise CatalogError(
                f"prices.{key}: is for {entry['region']} and cannot be read from a catalog here; "
                f"the table stays in {table['gcp_region']}"
            )
    for key, entry in out["prices"].items():
        kind = kind_of(entry)
        try:
            if kind == "gcp" and skus_of is not None:
                price = gcp_price(key, entry["catalog"], skus_of, region)
            elif kind == "aws" and products_of is not None:
                price = aws_price(key, entry["catalog"], products_of, table["aws_region"])
            else:
                continue
        except CatalogError as exc:
            if not keep_unread:
                raise
            if entry["region"] not in here:
                raise CatalogError(f"{exc}; it is for {entry['region']}, so it cannot be kept in {region}") from None
            result.kept[key] = str(exc)
            continue
        _set(entry, price)
        result.read[kind] += 1
    if not any(result.read.values()):
        return result
    moment = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    table["dated"] = moment.date().isoformat()
    table["refreshed"] = moment.isoformat().replace("+00:00", "Z")
    table["gcp_region"] = region
    # The refresh time is the table's, so what it did not read is named there too, not only in the
    # log: the prices their catalog could not price, and those of a catalog that was not read.
    unread = set(result.kept) | {k for k, e in out["prices"].items() if _catalog_of(e) and kind_of(e) is None}
    table.pop("kept", None)
    if unread:
        table["kept"] = sorted(unread)
    return result


def _catalog_of(entry: dict[str, Any]) -> str | None:
    """Which catalog a price's query reads, if it has one."""
    query = entry.get("catalog") or {}
    return "gcp" if "gcp" in query else "aws" if "aws" in query else None


def _set(entry: dict[str, Any], price: CatalogPrice) -> None:
    for stale in ("source", "checked"):
        entry.pop(stale, None)
    entry.update(usd=round(price.usd, 10), region=price.region, provenance="catalog")
    entry.update(sku=price.sku, effective=price.effective)
    # Keep the field order the writer uses: the query last.
    entry["catalog"] = entry.pop("catalog")
