from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow.compute as pc
import pytest

from app.featurestore.events import FeatureRow, event_attributes, from_pubsub, process_event
from app.featurestore.registry import Registry
from app.market.simulate import MarketConfig, simulate

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def market():  # type: ignore[no-untyped-def]
    return simulate(MarketConfig(users=300, days=6, seed=3))


def test_same_seed_same_market(market) -> None:  # type: ignore[no-untyped-def]
    again = simulate(MarketConfig(users=300, days=6, seed=3))
    assert again.impressions.equals(market.impressions)
    other = simulate(MarketConfig(users=300, days=6, seed=4))
    assert not other.impressions.equals(market.impressions)


def test_impressions_are_the_contract_and_the_truth_is_apart(market, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.market.writer import IMPRESSIONS_DIR, ORACLE_FILE, write_market
    from app.ranking.impressions import COLUMNS, ORACLE_COLUMNS, oracle_for, read_impressions, read_oracle

    imp = market.impressions
    assert imp.column_names == [c.name for c in COLUMNS], "exactly the contract's columns"
    assert not set(ORACLE_COLUMNS) & set(imp.column_names)
    write_market(market, tmp_path)
    read = read_impressions(tmp_path / IMPRESSIONS_DIR)
    assert read.files == market.config.days and read.rejected.num_rows == 0
    assert read.table.num_rows == imp.num_rows
    oracle = read_oracle(tmp_path / ORACLE_FILE)
    p = oracle_for(read.table, oracle)
    assert np.allclose(
        p, oracle_for(read.table, oracle, "p_viewer_likes") * oracle_for(read.table, oracle, "p_candidate_likes")
    )
    match = read.table.column("match").to_numpy()
    like_v, like_c = read.table.column("viewer_like").to_numpy(), read.table.column("candidate_like").to_numpy()
    assert np.array_equal(match, like_v & like_c)
    # outcomes follow the probabilities: the realised match rate is close to the mean probability
    assert abs(match.mean() - p.mean()) < 0.01
    assert 0.02 < match.mean() < 0.2
    assert (read.table.column("viewer_id").to_numpy() != read.table.column("candidate_id").to_numpy()).all()
    shown = read.table.column("impression_time").to_numpy()
    outcome = read.table.column("outcome_time").to_numpy()
    assert (outcome >= shown).all() and (outcome[match] - shown[match]).max() > np.timedelta64(3600, "s")


def test_every_feature_event_passes_ingest_validation(market, registry: Registry) -> None:  # type: ignore[no-untyped-def]
    kinds = set()
    for entity, version, at, msg in market.events:
        row = process_event(
            from_pubsub(msg.SerializeToString(), event_attributes(entity, version, at), "m"), registry, NOW
        )
        assert isinstance(row, FeatureRow), row
        kinds.add(entity)
    assert kinds == {"user_profile", "user_activity"}


def test_activity_snapshots_come_after_the_day_they_summarise(market) -> None:  # type: ignore[no-untyped-def]
    imp = market.impressions
    first_session = pc.min(imp.column("impression_time")).as_py()
    activity = [at for entity, _, at, _ in market.events if entity == "user_activity"]
    burn_in = [at for at in activity if at < first_session]
    # The week of burn-in before day 0 ends with one snapshot per active user, just before the start.
    assert burn_in and set(burn_in) == {market.config.start - timedelta(minutes=1)}
    assert min(at for at in activity if at not in burn_in) > first_session


def test_rolling_counters_are_steady_from_the_first_day(market) -> None:  # type: ignore[no-untyped-def]
    first, last = {}, {}
    for entity, _, at, msg in market.events:
        if entity == "user_activity":
            day = (at - market.config.start).days
            (first if day <= 0 else last if day >= market.config.days - 2 else {}).setdefault(msg.user_id, msg)
    mean = lambda d: np.mean([m.sessions_7d for m in d.values()])  # noqa: E731
    assert abs(mean(first) - mean(last)) / mean(last) < 0.25, "no warm-up: day 0 already has a week of history"


def test_drift_cohort_joins_on_its_day(registry: Registry) -> None:
    m = simulate(MarketConfig(users=400, days=8, seed=5, drift_day=4, drift_share=0.25))
    for entity, version, at, msg in m.events:
        row = process_event(
            from_pubsub(msg.SerializeToString(), event_attributes(entity, version, at), "m"), registry, NOW
        )
        assert isinstance(row, FeatureRow), row
    cohort = set(m.population.user_id[m.population.cohort == 1])
    assert len(cohort) == 100
    imp = m.impressions
    days_seen = {int(d) for v, d in zip(imp.column("viewer_id").to_pylist(), m.day_of(imp), strict=True) if v in cohort}
    assert days_seen and min(days_seen) >= 4


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (MarketConfig(users=5), "at least 20 users"),
        (MarketConfig(days=1), "days must be between"),
        (MarketConfig(days=10, drift_day=10), "drift_day must fall inside"),
        (MarketConfig(drift_day=3, drift_share=1.5), "drift_share"),
    ],
)
def test_bad_market_configs(config: MarketConfig, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        config.check()
