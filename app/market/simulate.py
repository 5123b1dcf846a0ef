"""Day-by-day simulation of the market: sessions, impressions with outcomes, and feature events.

Each day, users open the app with their activity probability and are shown candidates (mostly
people of a gender they seek in their city, some at random: the default order is random). Both
sides' likes are drawn from the true probabilities. The impressions are written as the contract a
core service delivers (outcomes only); the probabilities go to a separate oracle table, keyed by
impression, that only evaluation reads: the oracle's ranking signal. At the end of the day each active user's activity
aggregator emits a rolling 7-day snapshot; profile updates (new photos) are emitted the morning
they happen. Feature events are what reaches the feature store; the truth stays in the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from app.market.population import GENDER_BITS, Population, draw_population
from app.market.preferences import match_probability
from app.ranking.impressions import ORACLE_SCHEMA, TIMESTAMP, contract_table
from app.schemas.user.v1 import activity_pb2, profile_pb2

START = datetime(2026, 3, 1, tzinfo=UTC)
SURFACE = "discover"
WINDOW = 7


@dataclass(frozen=True)
class MarketConfig:
    users: int = 5000
    days: int = 30
    seed: int = 7
    candidates_per_session: int = 20
    drift_day: int | None = None
    drift_share: float = 0.3
    photo_update_share: float = 0.1
    start: datetime = START

    def check(self) -> None:
        if self.users < 20:
            raise ValueError(f"a market needs at least 20 users, got {self.users}")
        if not 2 <= self.days <= 366:
            raise ValueError(f"days must be between 2 and 366, got {self.days}")
        if self.drift_day is not None and not 1 <= self.drift_day < self.days:
            raise ValueError(f"drift_day must fall inside the {self.days} days, got {self.drift_day}")
        if not 0 < self.drift_share < 1:
            raise ValueError(f"drift_share must be between 0 and 1, got {self.drift_share}")


FeatureEvent = tuple[str, str, datetime, object]


@dataclass
class Market:
    config: MarketConfig
    population: Population
    impressions: pa.Table  # the impressions contract (app/ranking/impressions.py): what a core service has
    oracle: pa.Table  # the true probabilities per (session_id, candidate_id): what only a simulator knows
    events: list[FeatureEvent] = field(repr=False)

    def day_of(self, table: pa.Table) -> np.ndarray:
        """Market day of each row's ``impression_time`` (0 is the first day)."""
        t = table.column("impression_time").cast(pa.int64()).to_numpy()
        start_us = int(self.config.start.timestamp() * 1_000_000)
        return (t - start_us) // 86_400_000_000


def _at(start: datetime, day: float) -> datetime:
    return start + timedelta(days=float(day))


def _profile(pop: Population, i: int, start: datetime) -> profile_pb2.UserProfile:
    msg = profile_pb2.UserProfile(
        user_id=str(pop.user_id[i]),
        age=int(pop.age[i]),
        gender=int(pop.gender[i]),
        seeking_genders=[g for g in (1, 2, 3) if pop.seeking_mask[i] & GENDER_BITS[g]],
        latitude=float(pop.latitude[i]),
        longitude=float(pop.longitude[i]),
        pref_age_min=int(pop.pref_age_min[i]),
        pref_age_max=int(pop.pref_age_max[i]),
        pref_max_distance_km=float(pop.pref_max_distance_km[i]),
        photo_count=int(pop.photo_count[i]),
        photo_quality=float(pop.photo_quality[i]),
        bio_length=int(pop.bio_length[i]),
        profile_completeness=float(pop.profile_completeness[i]),
        city=f"city-{pop.city[i]}",
    )
    msg.signup_time.FromDatetime(_at(start, pop.signup_day[i]))
    return msg


def _pools(pop: Population, joined: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """Joined users by (city, gender bit): whom a viewer's sought-gender candidates come from."""
    return {
        (city, bit): np.flatnonzero(joined & (pop.city == city) & (GENDER_BITS[pop.gender] == bit))
        for city in np.unique(pop.city)
        for bit in (1, 2, 4)
    }


def _candidates(
    rng: np.random.Generator, pop: Population, v: int, k: int, pools: dict, everyone: np.ndarray
) -> np.ndarray:
    sought = [pools[(int(pop.city[v]), bit)] for bit in (1, 2, 4) if pop.seeking_mask[v] & bit]
    pool = np.concatenate(sought) if sought else everyone
    pool = pool[pool != v]
    n_local = min(len(pool), round(k * 0.8))
    local = rng.choice(pool, size=n_local, replace=False) if n_local else np.empty(0, dtype=int)
    others = everyone[~np.isin(everyone, np.append(local, v))]
    rest = rng.choice(others, size=min(k - n_local, len(others)), replace=False)
    return np.concatenate([local, rest]).astype(int)


def simulate(config: MarketConfig) -> Market:
    config.check()
    rng = np.random.default_rng(config.seed)
    pop = draw_population(rng, config.users, config.drift_day, config.drift_share)
    n, start = len(pop), config.start
    events: list[FeatureEvent] = []
    for i in range(n):
        # Existing members' profiles are on record the day before the window; newcomers' when they join.
        at = _at(start, max(pop.join_day[i], 0) - (1 if pop.join_day[i] == 0 else -0.01))
        events.append(("user_profile", "v1", at, _profile(pop, i, start)))
    update_day = np.where(rng.random(n) < config.photo_update_share, rng.integers(1, config.days, n), -1)
    update_day = np.where(update_day <= pop.join_day, -1, update_day)  # nobody updates a profile before joining

    # Rows are days from -WINDOW: a week of burn-in before day 0, so rolling 7-day counters are
    # already in their steady state when impressions start (no warm-up drift in the data).
    daily = {
        name: np.zeros((WINDOW + config.days, n), dtype=np.int32)
        for name in ("likes_sent", "likes_received", "matches", "messages_received", "replies_sent", "sessions")
    }
    last_active = np.full(n, np.nan)
    columns: dict[str, list[np.ndarray]] = {
        k: []
        for k in (
            "session_id",
            "viewer_id",
            "candidate_id",
            "impression_time",
            "position",
            "viewer_like",
            "candidate_like",
            "match",
            "p_viewer_likes",
            "p_candidate_likes",
            "p_match",
        )
    }
    session_no = 0
    for day in range(-WINDOW, config.days):
        d, burn_in = day + WINDOW, day < 0
        for i in np.flatnonzero(update_day == day) if not burn_in else ():  # new photos, emitted the morning they go up
            pop.attractiveness[i] += 0.6
            pop.photo_quality[i] = round(float(min(1.0, pop.photo_quality[i] + 0.25)), 3)
            pop.photo_count[i] += 2
            events.append(("user_profile", "v1", _at(start, day + 7 / 24), _profile(pop, i, start)))
        joined = pop.join_day <= max(day, 0)
        everyone = np.flatnonzero(joined)
        pools = _pools(pop, joined)
        viewers = everyone[rng.random(len(everyone)) < pop.activity[everyone]]
        v_idx, c_idx, pos, sess, when = [], [], [], [], []
        for v in viewers:
            cands = _candidates(rng, pop, int(v), config.candidates_per_session, pools, everyone)
            t = day + (8 + 14 * rng.random()) / 24
            v_idx.append(np.full(len(cands), v))
            c_idx.append(cands)
            pos.append(np.arange(len(cands)))
            sess.append(np.full(len(cands), session_no))
            when.append(np.full(len(cands), t))
            session_no += 0 if burn_in else 1
            last_active[v] = t
        if not v_idx:
            continue
        v_all, c_all = np.concatenate(v_idx), np.concatenate(c_idx)
        p_vc, p_cv = match_probability(pop, v_all, c_all)
        like_v = rng.random(len(v_all)) < p_vc
        like_c = rng.random(len(v_all)) < p_cv
        match = like_v & like_c
        np.add.at(daily["likes_sent"][d], v_all, like_v)
        np.add.at(daily["likes_received"][d], c_all, like_v)
        np.add.at(daily["matches"][d], v_all, match)
        np.add.at(daily["matches"][d], c_all, match)
        daily["sessions"][d][viewers] += 1
        msgs = rng.binomial(daily["matches"][d], 0.6)
        daily["messages_received"][d] += msgs
        daily["replies_sent"][d] += rng.binomial(msgs, pop.responsiveness)
        for name, values in (
            ()
            if burn_in
            else (
                ("viewer_id", pop.user_id[v_all]),
                ("candidate_id", pop.user_id[c_all]),
                ("position", np.concatenate(pos)),
                ("session_id", np.concatenate(sess)),
                ("impression_time", np.concatenate(when)),
                ("viewer_like", like_v),
                ("candidate_like", like_c),
                ("match", match),
                ("p_viewer_likes", p_vc),
                ("p_candidate_likes", p_cv),
                ("p_match", p_vc * p_cv),
            )
        ):
            columns[name].append(values)
        # End of day: each user seen today (as viewer or candidate) gets a rolling snapshot; the
        # burn-in emits one for everybody active in it, on its last day.
        if burn_in and day < -1:
            continue
        lo = max(0, d - WINDOW + 1)
        if day == -1:
            touched = np.flatnonzero((daily["sessions"][:WINDOW].sum(0) + daily["likes_received"][:WINDOW].sum(0)) > 0)
        else:
            touched = np.union1d(viewers, np.flatnonzero(daily["likes_received"][d]))
        at = _at(start, day + 1 - 1 / 1440)
        for i in touched:
            roll = {k: int(v[lo : d + 1, i].sum()) for k, v in daily.items()}
            msg = activity_pb2.UserActivity(
                user_id=str(pop.user_id[i]),
                likes_sent_7d=roll["likes_sent"],
                likes_received_7d=roll["likes_received"],
                matches_7d=roll["matches"],
                messages_received_7d=roll["messages_received"],
                replies_sent_7d=roll["replies_sent"],
                sessions_7d=roll["sessions"],
            )
            seen = last_active[i] if not np.isnan(last_active[i]) else max(pop.join_day[i], 0) - 3
            msg.last_active_time.FromDatetime(_at(start, seen))
            events.append(("user_activity", "v1", at, msg))

    table = {k: np.concatenate(v) for k, v in columns.items()}
    impressions, oracle = _contract_and_oracle(table, start, np.random.default_rng([config.seed, 1]))
    return Market(config, pop, impressions, oracle, events)


def _contract_and_oracle(
    table: dict[str, np.ndarray], start: datetime, rng: np.random.Generator
) -> tuple[pa.Table, pa.Table]:
    """What a core service would deliver (docs/specs/impressions.md) and, apart, the truth behind it.

    A viewer likes or passes within seconds of seeing a candidate; a match happens when the
    candidate likes back, within the next day. Outcome delays come from a generator of their own,
    so they do not shift the market's other draws."""
    shown = np.datetime64(start.replace(tzinfo=None), "s") + np.round(table["impression_time"] * 86400).astype(
        "timedelta64[s]"
    )
    delay = np.where(table["match"], rng.uniform(60, 86400, len(shown)), rng.uniform(2, 120, len(shown)))
    session_ids = np.char.add("s", np.char.zfill(table["session_id"].astype(str), 8))
    impressions = contract_table(
        {
            "session_id": session_ids,
            "viewer_id": table["viewer_id"],
            "candidate_id": table["candidate_id"],
            "position": table["position"].astype(np.int32),
            "surface": np.full(len(shown), SURFACE),
            "impression_time": pa.array(shown, pa.timestamp("s")).cast(pa.timestamp("us")).cast(TIMESTAMP),
            "viewer_like": table["viewer_like"],
            "candidate_like": table["candidate_like"],
            "match": table["match"],
            "outcome_time": pa.array(shown + delay.astype("timedelta64[s]"), pa.timestamp("s"))
            .cast(pa.timestamp("us"))
            .cast(TIMESTAMP),
        }
    )
    oracle = pa.table(
        {
            "session_id": session_ids,
            "candidate_id": table["candidate_id"],
            "p_viewer_likes": table["p_viewer_likes"],
            "p_candidate_likes": table["p_candidate_likes"],
            "p_match": table["p_match"],
        }
    ).cast(ORACLE_SCHEMA)
    return impressions, oracle
