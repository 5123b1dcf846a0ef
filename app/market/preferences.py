"""Who likes whom: the market's ground truth.

``like_probability(pop, v, c)`` is the probability that viewer ``v`` likes candidate ``c`` when
shown them. A match needs both: ``c`` must be active enough to see ``v`` and like them back, so
``match_probability = p(v likes c) * activity(c) * p(c likes v)``. The original cohort weighs looks,
age fit, distance and gender; the drift cohort (from ``drift_day``) cares mostly about distance
and completeness, which is what a drift check should notice.
"""

from __future__ import annotations

import numpy as np

from app.geo import haversine_km
from app.market.population import GENDER_BITS, Population, sigmoid


def like_probability(pop: Population, v: np.ndarray, c: np.ndarray) -> np.ndarray:
    age_fit = (pop.age[c] >= pop.pref_age_min[v]) & (pop.age[c] <= pop.pref_age_max[v])
    dist = haversine_km(pop.latitude[v], pop.longitude[v], pop.latitude[c], pop.longitude[c])
    near = dist <= pop.pref_max_distance_km[v]
    sought = (pop.seeking_mask[v] & GENDER_BITS[pop.gender[c]]) > 0
    original = (
        -0.4
        + 1.2 * pop.attractiveness[c]
        - 0.9 * pop.pickiness[v]
        + np.where(age_fit, 0.8, -1.2)
        + np.where(near, 0.6, -0.6)
        + 0.5 * (pop.profile_completeness[c] - 0.5)
    )
    drifted = (
        -0.2
        + 0.2 * pop.attractiveness[c]
        - 0.9 * pop.pickiness[v]
        + np.where(age_fit, 0.4, -0.4)
        + np.where(near, 1.5, -2.0)
        + 2.0 * (pop.profile_completeness[c] - 0.5)
    )
    logit = np.where(pop.cohort[v] == 1, drifted, original)
    return np.where(sought, sigmoid(logit), 0.02 * sigmoid(logit))


def match_probability(pop: Population, v: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p viewer likes candidate, p candidate sees and likes viewer back)."""
    p_vc = like_probability(pop, v, c)
    p_cv = pop.activity[c] * like_probability(pop, c, v)
    return p_vc, p_cv
