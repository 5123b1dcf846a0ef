"""Replaying market sessions through the core-service client, and what users then do.

Each replayed session is a viewer and the candidates the core service would show, in its own
(default) order. The client publishes a re-rank request; on the next access it gets the served
order or falls back to the default. The viewer then looks at the top ``TOP_K``: each side likes
the other with its true probability, and a pair matches when both do. What was shown and what
happened is delivered as contract impressions (``impressions``), as a core service would: that is
what the experiment readout reads. Matches are also drawn, paired, for the default order, and the
expected matches of both orders are kept: the simulation's own view of each arm against no re-ranking.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from app.experiments.readout import TOP_K
from app.market.population import Population
from app.market.preferences import match_probability
from app.ranking.impressions import TIMESTAMP, contract_table
from app.serving.client import CoreServiceClient, Ordering
from app.serving.messages import RerankRequest


@dataclass(frozen=True)
class Session:
    viewer: str
    candidates: tuple[str, ...]


@dataclass(frozen=True)
class SessionOutcome:
    viewer: str
    arm: str  # the variant the client assigned (its request's ``arm`` attribute)
    fell_back: bool
    request_id: str  # the session id of its impressions
    surface: str
    shown_at: datetime
    shown: tuple[str, ...]  # the top ``TOP_K`` of the order seen
    viewer_likes: tuple[bool, ...]
    candidate_likes: tuple[bool, ...]
    served_model_id: str | None
    latency_ms: float | None  # publish to result written, when a fresh result was served
    matches: int  # drawn, in the order the user saw
    default_matches: int  # drawn, had the user seen the default order
    expected: float  # sum of true match probabilities over the top K seen
    default_expected: float


def _likes(
    pop: Population, index: dict[str, int], viewer: str, order: Sequence[str], rng: np.random.Generator
) -> tuple[float, np.ndarray, np.ndarray]:
    """Expected matches in the top ``TOP_K`` of ``order``, and who liked whom there (drawn)."""
    top = [index[c] for c in order[:TOP_K]]
    v = np.full(len(top), index[viewer])
    p_vc, p_cv = match_probability(pop, v, np.array(top))
    return float((p_vc * p_cv).sum()), rng.random(len(top)) < p_vc, rng.random(len(top)) < p_cv


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
            expected, v_likes, c_likes = _likes(pop, index, s.viewer, o.ids, rng)
            d_expected, d_v, d_c = _likes(pop, index, s.viewer, s.candidates, rng)
            outcomes.append(
                SessionOutcome(
                    viewer=s.viewer,
                    arm=client.arm(s.viewer),
                    fell_back=o.fell_back,
                    request_id=r.request_id,
                    surface=r.surface,
                    shown_at=datetime.now(UTC),
                    shown=tuple(o.ids[:TOP_K]),
                    viewer_likes=tuple(bool(x) for x in v_likes),
                    candidate_likes=tuple(bool(x) for x in c_likes),
                    served_model_id=None if o.fell_back or o.result is None else o.result.model_id,
                    latency_ms=latency,
                    matches=int((v_likes & c_likes).sum()),
                    default_matches=int((d_v & d_c).sum()),
                    expected=expected,
                    default_expected=d_expected,
                )
            )
    return outcomes, time.perf_counter() - started


def impressions(outcomes: Sequence[SessionOutcome]) -> pa.Table:
    """What was shown and what happened, as contract impressions (docs/specs/impressions.md); the
    served variant is the arm whose order was shown, null with the fallback."""
    rows = [(o, pos) for o in outcomes for pos in range(len(o.shown))]
    return contract_table(
        {
            "session_id": [o.request_id for o, _ in rows],
            "viewer_id": [o.viewer for o, _ in rows],
            "candidate_id": [o.shown[p] for o, p in rows],
            "position": pa.array([p for _, p in rows], pa.int32()),
            "surface": [o.surface for o, _ in rows],
            "served_variant": pa.array([None if o.fell_back else o.arm for o, _ in rows], pa.string()),
            "served_model_id": pa.array([o.served_model_id for o, _ in rows], pa.string()),
            "impression_time": pa.array([o.shown_at for o, _ in rows], TIMESTAMP),
            "viewer_like": [o.viewer_likes[p] for o, p in rows],
            "candidate_like": [o.candidate_likes[p] for o, p in rows],
            "match": [o.viewer_likes[p] and o.candidate_likes[p] for o, p in rows],
        }
    )


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
