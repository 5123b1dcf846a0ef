"""Training data: contract impressions joined point-in-time with both sides' features, split by time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.featurestore.offline import OfflineStore
from app.featurestore.pit import event_time_column
from app.featurestore.registry import Registry
from app.ranking.features import Entities, feature_views, identity_view
from app.ranking.impressions import COLUMNS

LABEL = "match"
GROUP = "session_id"
BASELINE_LABEL = "viewer_like"
REQUIRED = tuple(c.name for c in COLUMNS if c.required)


class DatasetError(ValueError):
    pass


@dataclass(frozen=True)
class Windows:
    """Half-open time windows [start, train_end), [train_end, valid_end), [valid_end, end)."""

    start: datetime
    train_end: datetime
    valid_end: datetime
    end: datetime

    def as_dict(self) -> dict[str, str]:
        return {k: getattr(self, k).isoformat() for k in ("start", "train_end", "valid_end", "end")}


def _day(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def time_windows(impressions: pa.Table, valid_days: int, test_days: int) -> Windows:
    """The last ``test_days`` whole days for test, the ``valid_days`` before them for validation."""
    if impressions.num_rows == 0:
        raise DatasetError("there are no impressions in the requested window")
    first = _day(pc.min(impressions.column("impression_time")).as_py())
    last = _day(pc.max(impressions.column("impression_time")).as_py()) + timedelta(days=1)
    valid_end = last - timedelta(days=test_days)
    train_end = valid_end - timedelta(days=valid_days)
    if train_end <= first:
        span = (last - first).days
        raise DatasetError(
            f"{span} day(s) of impressions leave no training days after {valid_days} valid and {test_days} test day(s)"
        )
    return Windows(first, train_end, valid_end, last)


def last_days(impressions: pa.Table, days: int, end: datetime | None = None) -> datetime:
    """The start of the ``days`` whole days that end with the newest impression before ``end``."""
    t = impressions.column("impression_time")
    if end is not None:
        t = pc.filter(t, pc.less(t, pa.scalar(end, t.type)))
    newest = pc.max(t).as_py()
    if newest is None:
        raise DatasetError(f"no impressions before {end}")
    return _day(newest) + timedelta(days=1) - timedelta(days=days)


def select_window(impressions: pa.Table, start: datetime | None, end: datetime | None) -> pa.Table:
    missing = [c for c in REQUIRED if c not in impressions.column_names]
    if missing:
        raise DatasetError(f"impressions lack column(s) {missing}")
    t = impressions.column("impression_time")
    mask = pc.and_(
        pc.greater_equal(t, pa.scalar(start or datetime.min.replace(tzinfo=UTC), t.type)),
        pc.less(t, pa.scalar(end or datetime.max.replace(tzinfo=UTC), t.type)),
    )
    chosen = impressions.filter(mask)
    if chosen.num_rows == 0:
        raise DatasetError(f"no impressions between {start} and {end}")
    return chosen


def join_features(store: OfflineStore, impressions: pa.Table, registry: Registry, entities: Entities) -> pa.Table:
    return store.point_in_time_join(impressions, feature_views(registry, entities))


def known_rows(joined: pa.Table, registry: Registry, entities: Entities) -> tuple[pa.Table, pa.Table]:
    """(rows whose viewer and candidate the feature store knew at the impression, the rest with
    reason ``unknown_id``): a pair with no profile on either side has nothing to learn from."""
    view = identity_view(registry, entities)
    known = pc.and_(
        pc.is_valid(joined.column(event_time_column("viewer", view))),
        pc.is_valid(joined.column(event_time_column("candidate", view))),
    )
    unknown = joined.filter(pc.invert(known))
    return joined.filter(known), unknown.append_column(
        "reason", pa.array(["unknown_id"] * unknown.num_rows, pa.string())
    )


def split(joined: pa.Table, w: Windows) -> dict[str, pa.Table]:
    t = joined.column("impression_time")
    parts = {}
    for name, lo, hi in (
        ("train", w.start, w.train_end),
        ("valid", w.train_end, w.valid_end),
        ("test", w.valid_end, w.end),
    ):
        part = joined.filter(pc.and_(pc.greater_equal(t, pa.scalar(lo, t.type)), pc.less(t, pa.scalar(hi, t.type))))
        if part.num_rows == 0:
            raise DatasetError(f"the {name} window [{lo}, {hi}) has no impressions")
        parts[name] = part
    return parts


def columns(table: pa.Table) -> dict[str, np.ndarray]:
    """Numeric columns as float arrays (nulls as NaN), others as they are; the session id becomes an
    integer code in order of first appearance (rows of a session stay together and codes ascend,
    as LambdaRank's groups and the per-session metrics need)."""
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name)
        if name == GROUP and not pa.types.is_integer(col.type):
            out[name] = pc.dictionary_encode(col).combine_chunks().indices.to_numpy().astype(np.float64)
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
            out[name] = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out
