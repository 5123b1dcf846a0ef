"""Prices from AWS's Price List, as the boto3 ``pricing`` client's ``get_products`` returns them.

A price's ``catalog`` query names the service code (``AmazonDynamoDB``), the usage type
(``EU-WriteRequestUnits``), optionally the unit and the usage amount whose tier applies. The
products are asked for by usage type alone, so one offered in another region than the one wanted
is seen and refused in one line (``CatalogError``), as is a usage type with no product.

``get_products`` answers ``{"PriceList": [JSON string, ...], "NextToken": ...}``; each string is a
product with its ``terms.OnDemand`` offer terms and their price dimensions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from infra.prices.gcp import CatalogError, CatalogPrice, CatalogRefused, priced_from

ProductsOf = Callable[[str, str], list[dict[str, Any]]]


def products_reader(client: Any) -> ProductsOf:
    """``get_products`` for one service code and usage type, every page of it."""

    def products_of(service: str, usage_type: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = None
        while True:
            ask: dict[str, Any] = {
                "ServiceCode": service,
                "Filters": [{"Type": "TERM_MATCH", "Field": "usagetype", "Value": usage_type}],
                "FormatVersion": "aws_v1",
            }
            if token:
                ask["NextToken"] = token
            try:
                answer = client.get_products(**ask)
            except Exception as exc:  # whatever botocore raises (ClientError, a network fault), as one line
                raise CatalogRefused.of(f"get_products({service}, {usage_type})", exc) from None
            try:
                items += [json.loads(text) for text in answer.get("PriceList", [])]
            except (TypeError, ValueError) as exc:
                raise CatalogRefused.of(f"get_products({service}, {usage_type})'s answer", exc) from None
            token = answer.get("NextToken")
            if not token:
                return items

    return products_of


def aws_price(key: str, query: Mapping[str, Any], products_of: ProductsOf, region: str) -> CatalogPrice:
    service, usage = query["aws"], query["usagetype"]
    return priced_from(
        key,
        f"the price list's {usage} answer",
        lambda: products_of(service, usage),
        lambda found: _read(key, query, found, region),
    )


def _read(key: str, query: Mapping[str, Any], found: list[dict[str, Any]], region: str) -> CatalogPrice:
    service, usage = query["aws"], query["usagetype"]
    if not found:
        raise CatalogError(f"prices.{key}: no {service} product with usage type {usage!r} in the price list")
    here = [p for p in found if (p.get("product") or {}).get("attributes", {}).get("regionCode") == region]
    if not here:
        offered = sorted({str(p["product"]["attributes"].get("regionCode")) for p in found})
        raise CatalogError(f"prices.{key}: usage type {usage!r} is offered in {', '.join(offered)}, not {region}")
    if len(here) > 1:
        raise CatalogError(f"prices.{key}: {len(here)} {service} products have usage type {usage!r} in {region}")
    product = here[0]
    terms = list(((product.get("terms") or {}).get("OnDemand") or {}).values())
    if len(terms) != 1:
        raise CatalogError(f"prices.{key}: {service} {usage} has {len(terms)} on-demand terms, not one")
    term = terms[0]
    amount = float(query.get("tier_at", 0))
    dimension = next(
        (
            d
            for d in term.get("priceDimensions", {}).values()
            if float(d.get("beginRange", 0)) <= amount < _end(d.get("endRange", "Inf"))
        ),
        None,
    )
    if dimension is None:
        raise CatalogError(f"prices.{key}: {service} {usage} has no price dimension at {amount:g}")
    if query.get("unit") and dimension.get("unit") != query["unit"]:
        raise CatalogError(f"prices.{key}: {usage} is priced per {dimension.get('unit')!r}, not {query['unit']!r}")
    usd = (dimension.get("pricePerUnit") or {}).get("USD")
    if usd is None:
        raise CatalogError(f"prices.{key}: {usage} has no USD price")
    return CatalogPrice(
        usd=float(usd) * float(query.get("per", 1)),
        unit=str(dimension.get("unit", "")),
        sku=str(dimension.get("rateCode") or f"{product['product'].get('sku')}.{term.get('offerTermCode')}"),
        effective=str(term.get("effectiveDate", "")),
        region=region,
    )


def _end(value: Any) -> float:
    return math.inf if str(value) == "Inf" else float(value)
