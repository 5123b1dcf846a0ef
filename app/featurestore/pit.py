"""Point-in-time joins: each impression gets both sides' features as of its time, never later.

``FeatureView`` says which columns of which entity version to join; ``plan_join`` checks the
request and names the output columns (``<side>_<column>`` plus ``<side>_<entity>_event_time``, the
time of the event used, so leakage is visible). ``portable_pit_sql`` is the BigQuery query; it is
written in the subset BigQuery and DuckDB share, so tests run the same text on DuckDB.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from app.featurestore.registry import Registry

SIDES: dict[str, str] = {"viewer": "viewer_id", "candidate": "candidate_id"}
IMPRESSION_TIME = "impression_time"


class JoinRequestError(ValueError):
    pass


@dataclass(frozen=True)
class FeatureView:
    entity: str
    version: str
    columns: tuple[str, ...] | None = None  # None: every offline feature column


@dataclass(frozen=True)
class JoinColumn:
    side: str
    view: FeatureView
    column: str
    output: str


def plan_join(views: Sequence[FeatureView], registry: Registry, impression_columns: Sequence[str]) -> list[JoinColumn]:
    missing = [c for c in (*SIDES.values(), IMPRESSION_TIME) if c not in impression_columns]
    if missing:
        raise JoinRequestError(f"impressions lack column(s) {missing}; need {[*SIDES.values(), IMPRESSION_TIME]}")
    planned: list[JoinColumn] = []
    seen: dict[str, FeatureView] = {}
    for view in views:
        spec = registry.get(view.entity, view.version)
        known = spec.offline_columns
        cols = view.columns if view.columns is not None else known
        unknown = [c for c in cols if c not in known]
        if unknown:
            raise JoinRequestError(
                f"unknown feature(s) {unknown} of {view.entity} {view.version} (known: {', '.join(known)})"
            )
        for col in cols:
            if col in seen:
                raise JoinRequestError(f"feature {col!r} is in both {seen[col].entity} and {view.entity}; pick one")
            seen[col] = view
        for side in SIDES:
            planned += [JoinColumn(side, view, c, f"{side}_{c}") for c in cols]
    clash = [c.output for c in planned if c.output in impression_columns]
    if clash:
        raise JoinRequestError(f"impressions already have column(s) {clash}")
    return planned


def event_time_column(side: str, view: FeatureView) -> str:
    return f"{side}_{view.entity}_event_time"


def pruned(table: str, bounds: tuple[str, str] | None, timestamp: Callable[[str], str]) -> str:
    """The feature table limited to [lo, hi) on its partitioning column (``event_time``), so the
    engine reads only the partitions a window can see: [window start - the entity's TTL, window end)."""
    if bounds is None:
        return table
    lo, hi = bounds
    return f"(SELECT * FROM {table} WHERE event_time >= {timestamp(lo)} AND event_time < {timestamp(hi)})"


def sql_timestamp(iso: str) -> str:
    """A UTC timestamp literal both BigQuery and DuckDB (session time zone UTC) read the same way."""
    return f"TIMESTAMP '{iso.replace('T', ' ').removesuffix('+00:00')}'"


def portable_pit_sql(
    impressions: str,
    table: Callable[[str, str], str],
    plan: Sequence[JoinColumn],
    impression_columns: Sequence[str],
    quote: Callable[[str], str],
    key: Sequence[str],
    bounds: Mapping[str, tuple[str, str]] | None = None,
) -> str:
    """One CTE per (side, view): the latest row at or before the impression, by QUALIFY ROW_NUMBER.

    Nothing forces the work onto one worker: the windows are partitioned by ``key`` (columns of the
    impression that identify it: the contract's (session_id, candidate_id)), there is no global
    row number and no global ORDER BY (the result comes in no particular order). ``bounds`` maps an
    entity to the [lo, hi) ISO times of its feature rows to read (see ``pruned``)."""
    missing = [k for k in key if k not in impression_columns]
    if missing:
        raise JoinRequestError(f"the row key column(s) {missing} are not impression columns")
    groups: dict[tuple[str, FeatureView], list[JoinColumn]] = {}
    for jc in plan:
        groups.setdefault((jc.side, jc.view), []).append(jc)
    keys = [quote(k) for k in key]
    ctes = []
    selects = [f"imp.{quote(c)}" for c in impression_columns]
    joins = []
    for n, ((side, view), cols) in enumerate(groups.items()):
        alias = f"j{n}"
        fields = ", ".join(f"f.{quote(c.column)} AS {quote(c.output)}" for c in cols)
        source = pruned(table(view.entity, view.version), (bounds or {}).get(view.entity), sql_timestamp)
        ctes.append(
            f"{alias} AS (\n"
            f"  SELECT {', '.join(f'imp.{k}' for k in keys)}, f.event_time AS {quote(event_time_column(side, view))}, "
            f"{fields}\n"
            f"  FROM {impressions} AS imp LEFT JOIN {source} AS f\n"
            f"    ON f.entity_id = imp.{quote(SIDES[side])} AND f.event_time <= imp.{IMPRESSION_TIME}\n"
            f"  QUALIFY ROW_NUMBER() OVER (PARTITION BY {', '.join(f'imp.{k}' for k in keys)} "
            f"ORDER BY f.event_time DESC, f.ingest_time DESC) = 1\n"
            f")"
        )
        selects.append(f"{alias}.{quote(event_time_column(side, view))}")
        selects += [f"{alias}.{quote(c.output)}" for c in cols]
        on = " AND ".join(f"{alias}.{k} = imp.{k}" for k in keys)
        joins.append(f"LEFT JOIN {alias} ON {on}")
    return (
        "WITH " + ",\n".join(ctes) + "\n"
        "SELECT " + ", ".join(selects) + f"\nFROM {impressions} AS imp\n" + "\n".join(joins)
    )
