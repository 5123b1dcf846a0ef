"""``infra/prices.toml``: the prices ``rerank infra cost`` multiplies, each with how it was obtained.

A price's provenance is one of
- ``catalog``: read from a billing catalog by ``rerank infra prices refresh`` (its SKU or offer
  term, and the catalog's effective time);
- ``page``: read from a public page or a dated public dump of the catalog (the source's URL under
  ``[sources]`` and the day someone read it);
- ``unverified``: not read from either (its note says where the figure came from). The estimate
  and the PR comment show such prices as unverified.

The file is written by ``dump_table`` (refresh writes it), so reading and writing it again gives the
same bytes; a price with a ``catalog`` query is one refresh can read from a catalog.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from app.settings import REPO_ROOT

PRICE_TABLE = REPO_ROOT / "infra/prices.toml"
Provenance = Literal["catalog", "page", "unverified"]
PROVENANCES = ("catalog", "page", "unverified")
_DAY = r"20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
# The order a price's fields are written in (any other field is refused on reading).
PRICE_FIELDS = ("usd", "unit", "region", "provenance", "source", "checked", "sku", "effective", "note", "catalog")
# The prefix AWS's usage types carry per region (eu-west-1's is "EU-", not "EUW1-"), as the public
# offer-file records and bills read for issue 20 show them; a query without its region's prefix asks
# for another region's product. Regions not listed are left to the refresh, which refuses a mismatch.
AWS_USAGE_PREFIX = {"eu-west-1": "EU-", "eu-west-2": "EUW2-", "eu-central-1": "EUC1-", "us-west-2": "USW2-"}
HEADER = """\
# Prices behind `rerank infra cost` (infra/cost.py); the volumes they multiply are the stack's
# `cost` settings (app/settings.py: CostConfig) and what its plan declares. Written by
# `rerank infra prices refresh` (infra/prices/refresh.py): change a figure by hand only together
# with its provenance. Each price is `catalog` (read from Google's Cloud Billing Catalog or AWS's
# Price List: its SKU and effective time), `page` (read from the source under [sources] on the day
# `checked`) or `unverified` (its note says where the figure came from; shown as unverified).
# A price with a `catalog` query is one the refresh reads; add a type to [priced] only together
# with its pricer in infra/cost.py, and to [free] only when its page says it costs nothing.
"""


class PriceTableError(ValueError):
    """A price table that cannot be used: one line naming the entry."""


@dataclass(frozen=True)
class Price:
    key: str
    usd: float
    unit: str
    region: str
    provenance: Provenance
    source: str = ""
    checked: str = ""
    sku: str = ""
    effective: str = ""
    note: str = ""
    catalog: dict[str, Any] = field(default_factory=dict)

    def origin(self, sources: dict[str, dict[str, str]]) -> str:
        """How this price was obtained, in one phrase."""
        if self.provenance == "catalog":
            return f"catalog: {self.sku}, effective {self.effective}"
        if self.provenance == "page":
            return f"page: {sources[self.source]['url']}, checked {self.checked}"
        return f"unverified: {self.note}"

    def to_json(self, sources: dict[str, dict[str, str]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "usd": self.usd,
            "unit": self.unit,
            "region": self.region,
            "provenance": self.provenance,
        }
        if self.provenance == "catalog":
            out |= {"sku": self.sku, "effective": self.effective}
        elif self.provenance == "page":
            out |= {"url": sources[self.source]["url"], "checked": self.checked}
        else:
            out["note"] = self.note
        if self.catalog:  # the SKU a refresh reads for it: the catalog service and what it matches
            out["catalog"] = dict(self.catalog)
        return out


@dataclass(frozen=True)
class PriceTable:
    path: Path
    raw: dict[str, Any]
    dated: str
    refreshed: str
    kept: tuple[str, ...]  # queried prices the last refresh could not read, so kept as committed
    gcp_region: str
    aws_region: str
    hours_per_month: float
    note: str
    sources: dict[str, dict[str, str]]
    prices: dict[str, Price]
    memorystore_bands: dict[str, tuple[int, int]]
    function_cpu: dict[str, float]
    priced: dict[str, str]
    free: dict[str, str]

    def usd(self, key: str) -> float:
        return self.prices[key].usd

    def free_reason(self, type_token: str) -> str | None:
        return next((why for pattern, why in self.free.items() if fnmatchcase(type_token, pattern)), None)

    def counts(self) -> dict[str, int]:
        return {p: sum(1 for x in self.prices.values() if x.provenance == p) for p in PROVENANCES}

    def summary(self) -> dict[str, Any]:
        """What the estimate says of its table: which, of what date, refreshed or not."""
        return {
            "table": str(self.path.relative_to(REPO_ROOT)) if self.path.is_relative_to(REPO_ROOT) else str(self.path),
            "dated": self.dated,
            "refreshed": self.refreshed or None,
            "kept": list(self.kept),
            "regions": {"gcp": self.gcp_region, "aws": self.aws_region},
            "provenance": self.counts(),
        }


def _kept(table: dict[str, Any], prices: dict[str, Any], shown: Path) -> tuple[str, ...]:
    """What the last refresh did not read, checked against what it says it did: once refreshed,
    every queried price is either read from its catalog or named here."""
    kept, refreshed = table.get("kept", []), str(table.get("refreshed", ""))
    if not isinstance(kept, list) or not all(isinstance(k, str) for k in kept) or len(set(kept)) < len(kept):
        raise PriceTableError(f"{shown}: table.kept must be a list of distinct price keys")
    if refreshed and not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", refreshed):
        raise PriceTableError(f"{shown}: table.refreshed must be a UTC time, YYYY-MM-DDTHH:MM:SSZ")
    if not refreshed and kept:
        raise PriceTableError(f"{shown}: table.kept names prices a refresh kept, but the table was never refreshed")
    unknown = [k for k in kept if k not in prices or not prices[k].get("catalog")]
    if unknown:
        raise PriceTableError(f"{shown}: table.kept: {unknown[0]} is not a price with a catalog query")
    unread = [k for k, p in prices.items() if p.get("catalog") and p.get("provenance") != "catalog" and k not in kept]
    if refreshed and unread:
        raise PriceTableError(
            f"{shown}: prices.{unread[0]} has a catalog query but was neither read by the refresh of {refreshed}"
            " nor named in table.kept (refresh again, or name it there)"
        )
    return tuple(kept)


def _shown(path: Path) -> Path:
    return path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path


def load_prices(path: Path = PRICE_TABLE) -> PriceTable:
    """Read and check the table: every price has a number, a unit, a region and a provenance that
    names what it was read from (or says that it was not)."""
    shown = _shown(path)
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise PriceTableError(f"{shown}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise PriceTableError(f"{shown}: cannot be read: {exc.strerror}") from None
    return table_from(doc, path)


def table_from(doc: dict[str, Any], path: Path = PRICE_TABLE) -> PriceTable:
    shown = _shown(path)
    try:
        table, sources = doc["table"], doc["sources"]
        if not re.fullmatch(_DAY, str(table["dated"])):
            raise PriceTableError(f"{shown}: table.dated must be a day, YYYY-MM-DD")
        for name, src in sources.items():
            if not (src.get("title") and str(src.get("url", "")).startswith("https://")):
                raise PriceTableError(f"{shown}: sources.{name} needs a title and an https url")
        prices = {key: _price(key, p, sources, shown) for key, p in doc["prices"].items()}
        prefix = AWS_USAGE_PREFIX.get(str(table["aws_region"]))
        for key, price in prices.items():
            usage = str(price.catalog.get("usagetype", ""))
            if "aws" in price.catalog and prefix and not usage.startswith(prefix):
                raise PriceTableError(
                    f"{shown}: prices.{key}: usage type {usage!r} lacks {table['aws_region']}'s prefix {prefix!r}"
                )
        both = [t for t in doc["priced"] if any(fnmatchcase(t, f) for f in doc["free"])]
        if both:
            raise PriceTableError(f"{shown}: {both[0]} is both priced and free")
        return PriceTable(
            path=path,
            raw=doc,
            dated=str(table["dated"]),
            refreshed=str(table.get("refreshed", "")),
            kept=_kept(table, doc["prices"], shown),
            gcp_region=str(table["gcp_region"]),
            aws_region=str(table["aws_region"]),
            hours_per_month=float(table["hours_per_month"]),
            note=table["note"],
            sources=sources,
            prices=prices,
            memorystore_bands={k: (int(v[0]), int(v[1])) for k, v in doc["memorystore_bands"].items()},
            function_cpu=doc["function_cpu"],
            priced=doc["priced"],
            free=doc["free"],
        )
    except KeyError as exc:
        raise PriceTableError(f"{shown}: missing {exc.args[0]!r}") from None


def _price(key: str, p: dict[str, Any], sources: dict[str, Any], shown: Path) -> Price:
    where = f"{shown}: prices.{key}"
    unknown = sorted(set(p) - set(PRICE_FIELDS))
    if unknown:
        raise PriceTableError(f"{where}: unknown field {unknown[0]!r}")
    if not isinstance(p.get("usd"), int | float) or isinstance(p.get("usd"), bool) or p["usd"] < 0:
        raise PriceTableError(f"{where}: usd must be a number >= 0")
    for name in ("unit", "region"):
        if not p.get(name):
            raise PriceTableError(f"{where}: no {name}")
    kind = p.get("provenance")
    if kind not in PROVENANCES:
        raise PriceTableError(f"{where}: provenance must be one of {', '.join(PROVENANCES)}, not {kind!r}")
    if kind == "catalog" and not (p.get("sku") and re.match(_DAY, str(p.get("effective", "")))):
        raise PriceTableError(f"{where}: a catalog price needs its sku and the catalog's effective time")
    if kind == "catalog" and not p.get("catalog"):
        raise PriceTableError(f"{where}: a catalog price needs the catalog query it was read with")
    if kind == "page" and p.get("source") not in sources:
        raise PriceTableError(f"{where}: source {p.get('source')!r} is not under [sources]")
    if kind == "page" and not re.fullmatch(_DAY, str(p.get("checked", ""))):
        raise PriceTableError(f"{where}: a page price needs the day it was checked, YYYY-MM-DD")
    if kind == "unverified" and not str(p.get("note", "")).strip():
        raise PriceTableError(f"{where}: an unverified price needs a note saying where the figure came from")
    return Price(
        key=key,
        usd=float(p["usd"]),
        unit=str(p["unit"]),
        region=str(p["region"]),
        provenance=kind,
        source=str(p.get("source", "")),
        checked=str(p.get("checked", "")),
        sku=str(p.get("sku", "")),
        effective=str(p.get("effective", "")),
        note=str(p.get("note", "")),
        catalog=dict(p.get("catalog") or {}),
    )


# --- writing: a small TOML emitter for exactly the shapes this file holds ------------------------


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} into the price table")


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def dump_table(doc: dict[str, Any]) -> str:
    """The table as TOML: ``[table]``, ``[sources.*]``, one ``[prices."key"]`` block per price
    (fields in ``PRICE_FIELDS`` order), then the other sections as flat tables."""
    out = [HEADER, "[table]"]
    out += [f"{_key(k)} = {_value(v)}" for k, v in doc["table"].items()]
    for name, src in doc["sources"].items():
        out += ["", f"[sources.{_key(name)}]"] + [f"{_key(k)} = {_value(v)}" for k, v in src.items()]
    for key, p in doc["prices"].items():
        out += ["", f"[prices.{_key(key)}]"]
        out += [f"{name} = {_value(p[name])}" for name in PRICE_FIELDS if name in p]
    for section in ("memorystore_bands", "function_cpu", "priced", "free"):
        out += ["", f"[{section}]"] + [f"{_key(k)} = {_value(v)}" for k, v in doc[section].items()]
    return "\n".join(out) + "\n"
