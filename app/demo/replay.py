"""Replaying market sessions through the core-service client, and what users then do.

Each replayed session is a viewer and the candidates the core service would show, in its own
(default) order. The client publishes a re-rank request; on the next access it gets the served
order or falls back to the default. The viewer then looks at the top ``TOP_K`` and each pair
matches with its true probability, drawn for the served order and, paired, for the default
order: the difference is the A/B result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.market.population import Population
from app.market.preferences import match_probability
from app.serving.client import CoreServiceClient, Ordering
from app.serving.messages import RerankRequest

TOP_K = 10


@dataclass(frozen=True)
class Session:
    viewer: str
    candidates: tuple[str, ...]


@dataclass(frozen=True)
class SessionOutcome:
    viewer: str
    arm: str
    fell_back: bool
    latency_ms: float | None  # publish to result written, when a fresh result was served
    matches: int  # drawn, in the order the user saw
    default_matches: int  # drawn, had the user seen the default order
    expected: float  # sum of true match probabilities over the top K seen
    default_expected: float


def _expected_and_drawn(
    pop: Population, index: dict[str, int], viewer: str, order: Sequence[str], rng: np.random.Generator
) -> tuple[float, int]:
    top = [index[c] for c in order[:TOP_K]]
    v = np.full(len(top), index[viewer])
    p_vc, p_cv = match_probability(pop, v, np.array(top))
    p = p_vc * p_cv
    return float(p.sum()), int((rng.random(len(p)) < p).sum())


def replay(
    client: CoreServiceClient,
    sessions: Sequence[Session],
    pop: Population,
    seed: int,
    wait_s: float = 3.0,
    concurrency: int = 50,
) -> tuple[list[SessionOutcome], float]:
    """Replay ``sessions`` in waves of ``concurrency``; returns the outcomes and the seconds taken."""
    index = {u: i for i, u in enumerate(pop.user_id)}
    rng = np.random.default_rng(seed)
    outcomes: list[SessionOutcome] = []
    started = time.perf_counter()
    for wave_start in range(0, len(sessions), concurrency):
        wave = sessions[wave_start : wave_start + concurrency]
        reqs: list[RerankRequest] = [
            client.request(s.viewer, f"replay-{wave_start + i}", s.candidates) for i, s in enumerate(wave)
        ]
        # The core service reads on the user's next access, not in a tight loop: look after a
        # pause, then again for what was missing, until ``wait_s``.
        deadline = time.monotonic() + wait_s
        orderings: dict[int, Ordering] = {}
        while len(orderings) < len(reqs) and time.monotonic() < deadline:
            time.sleep(0.25)
            for i, r in enumerate(reqs):
                if i not in orderings:
                    o = client.ordering(r)
                    if not o.fell_back:
                        orderings[i] = o
        for i, (s, r) in enumerate(zip(wave, reqs, strict=True)):
            o = orderings.get(i) or client.ordering(r)
            latency = None
            if not o.fell_back and o.result is not None and o.result.written_at is not None:
                latency = (o.result.written_at - r.requested_at).total_seconds() * 1000
            expected, drawn = _expected_and_drawn(pop, index, s.viewer, o.ids, rng)
            d_expected, d_drawn = _expected_and_drawn(pop, index, s.viewer, s.candidates, rng)
            outcomes.append(
                SessionOutcome(
                    s.viewer, client.arm(s.viewer), o.fell_back, latency, drawn, d_drawn, expected, d_expected
                )
            )
    return outcomes, time.perf_counter() - started


def lift(outcomes: Sequence[SessionOutcome], arm: str, seed: int = 0) -> dict[str, float]:
    """Matches per session for ``arm`` against the default order, with a 95% bootstrap interval."""
    rows = [o for o in outcomes if o.arm == arm]
    if not rows:
        return {"sessions": 0}
    served = np.array([o.matches for o in rows], dtype=float)
    default = np.array([o.default_matches for o in rows], dtype=float)
    exp_served = np.array([o.expected for o in rows])
    exp_default = np.array([o.default_expected for o in rows])
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(1000):
        pick = rng.integers(0, len(rows), len(rows))
        base = exp_default[pick].sum()
        boots.append(exp_served[pick].sum() / base - 1 if base > 0 else 0.0)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {
        "sessions": len(rows),
        "matches_per_session": float(served.mean()),
        "default_matches_per_session": float(default.mean()),
        "expected_matches_per_session": float(exp_served.mean()),
        "default_expected_matches_per_session": float(exp_default.mean()),
        "lift": float(exp_served.sum() / exp_default.sum() - 1) if exp_default.sum() > 0 else 0.0,
        "lift_ci_low": float(lo),
        "lift_ci_high": float(hi),
        "fallback_rate": float(np.mean([o.fell_back for o in rows])),
    }
