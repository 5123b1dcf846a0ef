"""A market of any size, quickly: contract impressions day by day and the offline store's feature
rows, vectorised (``rerank bench training`` makes 10 M impressions in minutes).

The simulator (app/market/simulate.py) models every user's day and emits protobuf feature events
for the ingest to process; that is the right test of the product but far too slow for tens of
millions of impressions. This generator draws the same population and the same like/match
probabilities (app/market/population.py, preferences.py) but writes the offline store's Parquet
rows directly (what the ingest would have written) and samples sessions for a whole day at once.
Profiles are on record the day before the window; each user seen in a day gets an activity
snapshot at its end, with rolling 7-day counts, as the ingest would store them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from app.featurestore.offline_schema import arrow_schema
from app.featurestore.registry import Registry
from app.market.population import draw_population
from app.market.preferences import match_probability
from app.ranking.impressions import TIMESTAMP, contract_table

START = datetime(2026, 3, 1, tzinfo=UTC)
PER_SESSION = 20
WINDOW = 7
SESSIONS_PER_USER_DAY = 0.5  # how many users a day's sessions need: sessions / this


def _us(day: float | np.ndarray) -> np.ndarray:
    """Microseconds since the epoch of market day(s) (fractional days from START)."""
    return (int(START.timestamp() * 1e6) + np.asarray(day, dtype=np.float64) * 86_400e6).astype(np.int64)


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(us, pa.int64()).cast(TIMESTAMP)


def _write_offline(root: Path, registry: Registry, entity: str, day: datetime, columns: dict[str, Any]) -> None:
    schema = arrow_schema(registry.get(entity, "v1"))
    n = len(next(iter(columns.values())))
    arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in schema]
    folder = root / entity / "v1" / f"event_date={day.date().isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), folder / "part-bench.parquet")


def generate(out: Path, impressions: int, registry: Registry, days: int = 14, seed: int = 7) -> dict[str, Any]:
    """``out/impressions/<day>.parquet`` (the contract) and ``out/offline`` (the Parquet offline store)."""
    rng = np.random.default_rng(seed)
    sessions_per_day = max(10, impressions // PER_SESSION // days)
    users = max(200, int(sessions_per_day / SESSIONS_PER_USER_DAY))
    pop = draw_population(rng, users)
    ids = pop.user_id
    offline, imp_dir = out / "offline", out / "impressions"
    imp_dir.mkdir(parents=True, exist_ok=True)
    ingest = _ts(_us(np.full(users, days + 1.0)))
    on_record = START - timedelta(days=1)
    signup_us = _us(pop.signup_day.astype(np.float64))
    _write_offline(
        offline,
        registry,
        "user_profile",
        on_record,
        {
            "entity_id": pa.array(ids),
            "event_time": _ts(_us(np.full(users, -1.0))),
            "ingest_time": ingest,
            **{
                k: pa.array(getattr(pop, k).astype(np.int64))
                for k in ("age", "gender", "pref_age_min", "pref_age_max", "photo_count", "bio_length")
            },
            **{
                k: pa.array(getattr(pop, k).astype(np.float64))
                for k in ("latitude", "longitude", "pref_max_distance_km", "photo_quality", "profile_completeness")
            },
            "signup_time": _ts(signup_us),
            "city": pa.array(np.char.add("city-", pop.city.astype(str))),
            "account_age_days": pa.array(-1.0 - pop.signup_day.astype(np.float64)),
            "seeking_mask": pa.array(pop.seeking_mask.astype(np.float64)),
            "pref_age_span": pa.array((pop.pref_age_max - pop.pref_age_min).astype(np.float64)),
        },
    )
    daily = {k: np.zeros((WINDOW + days, users), dtype=np.int32) for k in ("sent", "received", "matches", "sessions")}
    last_active = np.full(users, -3.0)
    weights = pop.activity / pop.activity.sum()
    total, matches, session_no = 0, 0, 0
    for day in range(-WINDOW, days):
        d = day + WINDOW
        n = sessions_per_day
        viewers = rng.choice(users, size=n, p=weights)
        # 20 distinct candidates per session, never the viewer: sorted distinct offsets, then shuffled.
        offsets = np.sort(rng.integers(1, users - PER_SESSION, (n, PER_SESSION)), axis=1) + np.arange(PER_SESSION)
        cands = (viewers[:, None] + rng.permuted(offsets, axis=1)) % users
        v, c = np.repeat(viewers, PER_SESSION), cands.ravel()
        p_vc, p_cv = match_probability(pop, v, c)
        like_v, like_c = rng.random(len(v)) < p_vc, rng.random(len(v)) < p_cv
        match = like_v & like_c
        np.add.at(daily["sent"][d], v, like_v)
        np.add.at(daily["received"][d], c, like_v)
        np.add.at(daily["matches"][d], v, match)
        np.add.at(daily["matches"][d], c, match)
        np.add.at(daily["sessions"][d], viewers, 1)
        when = day + (8 + 14 * rng.random(n)) / 24
        last_active[viewers] = np.maximum(last_active[viewers], when)
        if day >= 0:
            shown = _us(np.repeat(when, PER_SESSION))
            delay = np.where(match, rng.uniform(60, 86400, len(v)), rng.uniform(2, 120, len(v))) * 1e6
            sid = np.char.add("s", np.char.zfill((session_no + np.arange(n)).astype(str), 9))
            table = contract_table(
                {
                    "session_id": np.repeat(sid, PER_SESSION),
                    "viewer_id": ids[v],
                    "candidate_id": ids[c],
                    "position": np.tile(np.arange(PER_SESSION, dtype=np.int32), n),
                    "surface": pa.array(["discover"] * len(v)),
                    "impression_time": _ts(shown),
                    "viewer_like": like_v,
                    "candidate_like": like_c,
                    "match": match,
                    "outcome_time": _ts(shown + delay.astype(np.int64)),
                }
            )
            pq.write_table(table, imp_dir / f"{(START + timedelta(days=day)).date().isoformat()}.parquet")
            session_no, total, matches = session_no + n, total + len(v), matches + int(match.sum())
        if day < -1:
            continue
        # End of day: a rolling 7-day snapshot of each user seen (the whole burn-in's on its last day).
        lo = max(0, d - WINDOW + 1)
        seen = np.flatnonzero(daily["sessions"][lo : d + 1].sum(0) + daily["received"][d] > 0)
        roll = {k: a[lo : d + 1, seen].sum(0).astype(np.int64) for k, a in daily.items()}
        msgs = rng.binomial(roll["matches"], 0.6)
        replies = rng.binomial(msgs, pop.responsiveness[seen])
        at = day + 1 - 1 / 1440
        _write_offline(
            offline,
            registry,
            "user_activity",
            START + timedelta(days=day),
            {
                "entity_id": pa.array(ids[seen]),
                "event_time": _ts(_us(np.full(len(seen), at))),
                "ingest_time": _ts(_us(np.full(len(seen), days + 1.0))),
                "likes_sent_7d": pa.array(roll["sent"]),
                "likes_received_7d": pa.array(roll["received"]),
                "matches_7d": pa.array(roll["matches"]),
                "messages_received_7d": pa.array(msgs.astype(np.int64)),
                "replies_sent_7d": pa.array(replies.astype(np.int64)),
                "sessions_7d": pa.array(roll["sessions"]),
                "last_active_time": _ts(_us(last_active[seen])),
                "hours_since_active": pa.array((at - last_active[seen]) * 24.0),
                "reply_rate": pa.array(np.where(msgs > 0, replies / np.maximum(msgs, 1), 0.0)),
                "like_ratio": pa.array(roll["received"] / (roll["sent"] + 1.0)),
                "match_rate": pa.array(roll["matches"] / (roll["sent"] + 1.0)),
            },
        )
    summary = {"impressions": total, "users": users, "days": days, "match_rate": round(matches / total, 4)}
    (out / "market.json").write_text(json.dumps(summary) + "\n")
    return summary
