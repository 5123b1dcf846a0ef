"""Prices from Google's Cloud Billing Catalog, as ``CloudCatalogClient.list_skus`` yields them.

A price's ``catalog`` query names the service (``services/6F81-5844-456A``), the SKU's description
prefix, and optionally its resource group, usage type, usage unit and the usage amount whose tier
applies (``tier_at``: an amount above a free tier, say). Exactly one SKU of the service may match
in the region asked for (or be global); anything else is a one-line ``CatalogError``, never a zero.

Each SKU is read as protobuf JSON (camelCase, int64 ``units`` as a string): a ``dict`` as the REST
API or a recorded response has it, or a ``google.cloud.billing_v1.types.Sku`` turned into that
JSON with its class's ``to_json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

SkusOf = Callable[[str], list[dict[str, Any]]]
A = TypeVar("A")


class CatalogError(ValueError):
    """A catalog answer that cannot price an entry: one line naming the entry."""


class CatalogRefused(CatalogError):
    """The catalog's client raised instead of answering (no such service, no permission, a network
    fault): one line naming what was asked, to which the price that asked adds its key."""

    @classmethod
    def of(cls, asked: str, exc: Exception) -> CatalogRefused:
        said = (str(exc).strip().splitlines() or [""])[0][:200]
        return cls(f"{asked} was refused: {type(exc).__name__}: {said}")


@dataclass(frozen=True)
class CatalogPrice:
    usd: float
    unit: str  # the usage unit as the catalog states it
    sku: str
    effective: str
    region: str


def sku_dict(sku: Any) -> dict[str, Any]:
    """A SKU as protobuf JSON, whether it came as a dict or as the client library's message."""
    if isinstance(sku, Mapping):
        return dict(sku)
    return dict(json.loads(type(sku).to_json(sku)))


def skus_reader(client: Any) -> SkusOf:
    """``list_skus`` per service, read once each (the client pages through the answer)."""
    seen: dict[str, list[dict[str, Any]] | CatalogRefused] = {}

    def skus_of(service: str) -> list[dict[str, Any]]:
        if service not in seen:
            try:  # the client pages lazily: a refusal can come with any page
                seen[service] = [sku_dict(s) for s in client.list_skus(parent=service)]
            except Exception as exc:  # whatever the client library raises, as one line, asked once
                seen[service] = CatalogRefused.of(f"list_skus({service})", exc)
        answer = seen[service]
        if isinstance(answer, CatalogRefused):
            raise answer
        return answer

    return skus_of


def money(unit_price: Mapping[str, Any]) -> float:
    return int(unit_price.get("units") or 0) + int(unit_price.get("nanos") or 0) / 1e9


def _regions(sku: Mapping[str, Any]) -> list[str]:
    return list(sku.get("serviceRegions") or [])


def _matches(sku: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    category = sku.get("category") or {}
    return (
        str(sku.get("description", "")).startswith(query["description"])
        and query.get("group", category.get("resourceGroup")) == category.get("resourceGroup")
        and query.get("usage", category.get("usageType")) == category.get("usageType")
    )


def priced_from(key: str, answer: str, ask: Callable[[], A], read: Callable[[A], CatalogPrice]) -> CatalogPrice:
    """A price read from a catalog's ``ask``-ed answer: whatever goes wrong, the catalog refusing
    or an answer of another shape than ``read`` expects, is one line naming the price."""
    try:
        got = ask()
    except CatalogRefused as exc:
        raise CatalogError(f"prices.{key}: {exc}") from None
    try:
        return read(got)
    except CatalogError:  # a ValueError too, already one line
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"prices.{key}: {answer} cannot be read ({exc!r})") from None


def gcp_price(key: str, query: Mapping[str, Any], skus_of: SkusOf, region: str) -> CatalogPrice:
    service = query["gcp"]
    return priced_from(
        key, f"the catalog's {service} answer", lambda: skus_of(service), lambda skus: _read(key, query, skus, region)
    )


def _read(key: str, query: Mapping[str, Any], skus: list[dict[str, Any]], region: str) -> CatalogPrice:
    service, wanted = query["gcp"], query["description"]
    named = [s for s in skus if _matches(s, query)]
    if not named:
        raise CatalogError(f"prices.{key}: no SKU {wanted!r} in the catalog's {service}")
    here = [s for s in named if region in _regions(s) or "global" in _regions(s)]
    if not here:
        offered = sorted({r for s in named for r in _regions(s)})
        raise CatalogError(f"prices.{key}: SKU {wanted!r} is offered in {', '.join(offered)}, not {region}")
    if len(here) > 1:
        ids = ", ".join(str(s.get("skuId")) for s in here)
        raise CatalogError(f"prices.{key}: {len(here)} SKUs match {wanted!r} in {region} ({ids}); narrow the query")
    sku = here[0]
    info = max(sku.get("pricingInfo") or [{}], key=lambda i: str(i.get("effectiveTime", "")))
    expression = info.get("pricingExpression") or {}
    unit = str(expression.get("usageUnit", ""))
    if query.get("unit") and unit != query["unit"]:
        raise CatalogError(f"prices.{key}: SKU {sku.get('skuId')} is priced per {unit!r}, not {query['unit']!r}")
    rate = _tier(expression.get("tieredRates") or [], float(query.get("tier_at", 0)))
    if rate is None:
        raise CatalogError(f"prices.{key}: SKU {sku.get('skuId')} has no rate at {query.get('tier_at', 0)} {unit}")
    currency = (rate.get("unitPrice") or {}).get("currencyCode", "USD")
    if currency != "USD":
        raise CatalogError(f"prices.{key}: SKU {sku.get('skuId')} is priced in {currency}, not USD")
    return CatalogPrice(
        usd=money(rate.get("unitPrice") or {}) * float(query.get("per", 1)),
        unit=unit,
        sku=f"{service}/skus/{sku.get('skuId')}",
        effective=str(info.get("effectiveTime", "")),
        region=region if region in _regions(sku) else "global",
    )


def _tier(rates: Iterable[Mapping[str, Any]], amount: float) -> Mapping[str, Any] | None:
    """The tier an ``amount`` of usage is billed at: the one starting last at or below it."""
    started = [r for r in rates if float(r.get("startUsageAmount") or 0) <= amount]
    return max(started, key=lambda r: float(r.get("startUsageAmount") or 0), default=None)
