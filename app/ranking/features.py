"""Model features of a (viewer, candidate) pair: both sides' online features plus pair features.

The same function serves training (on point-in-time joined rows) and serving (on online-store
matrices), so the model sees identical features in both places. Only online (numeric) features
are used: whatever the model needs must be readable from Redis at serving time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from app.featurestore.pit import FeatureView
from app.featurestore.registry import Registry
from app.featurestore.transforms import GENDER_BITS
from app.geo import haversine_km

SIDES = ("viewer", "candidate")
PROFILE = ("user_profile", "v1")
ACTIVITY = ("user_activity", "v1")
_GENDER_BITS = np.array(GENDER_BITS, dtype=np.float64)
PAIR_FEATURES = (
    "pair_distance_km",
    "pair_age_gap",
    "pair_viewer_age_fit",
    "pair_candidate_age_fit",
    "pair_viewer_near",
    "pair_candidate_near",
    "pair_viewer_seeks",
    "pair_candidate_seeks",
)


class UnknownFeatureError(ValueError):
    pass


def entity_features(registry: Registry) -> dict[tuple[str, str], tuple[str, ...]]:
    return {key: registry.get(*key).online_features for key in (PROFILE, ACTIVITY)}


def feature_views(registry: Registry) -> list[FeatureView]:
    return [FeatureView(e, v, cols) for (e, v), cols in entity_features(registry).items()]


def identity_view(registry: Registry) -> FeatureView:
    """The view whose presence means the feature store knows a user (the profile): a pair without it
    on either side cannot be scored."""
    return feature_views(registry)[0]


def all_feature_names(registry: Registry) -> list[str]:
    side = [f"{s}_{c}" for s in SIDES for cols in entity_features(registry).values() for c in cols]
    return side + list(PAIR_FEATURES)


def check_features(names: Sequence[str], registry: Registry) -> None:
    known = all_feature_names(registry)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UnknownFeatureError(f"unknown feature(s) {unknown}; known: {', '.join(known)}")


def _fits(age: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    out = ((age >= lo) & (age <= hi)).astype(np.float64)
    return np.where(np.isnan(age) | np.isnan(lo) | np.isnan(hi), np.nan, out)


def _seeks(mask: np.ndarray, gender: np.ndarray) -> np.ndarray:
    ok = ~(np.isnan(mask) | np.isnan(gender))
    bits = _GENDER_BITS[np.where(ok, gender, 0).astype(int).clip(0, 3)]
    out = (np.bitwise_and(np.where(ok, mask, 0).astype(int), bits.astype(int)) > 0).astype(np.float64)
    return np.where(ok, out, np.nan)


def pair_features(cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pair features from side columns named ``viewer_<feature>`` / ``candidate_<feature>`` (NaN = unknown)."""
    needed = (
        "latitude",
        "longitude",
        "age",
        "pref_age_min",
        "pref_age_max",
        "pref_max_distance_km",
        "gender",
        "seeking_mask",
    )
    v = {n: np.asarray(cols[f"viewer_{n}"], dtype=np.float64) for n in needed}
    c = {n: np.asarray(cols[f"candidate_{n}"], dtype=np.float64) for n in needed}
    dist = haversine_km(v["latitude"], v["longitude"], c["latitude"], c["longitude"])
    return {
        "pair_distance_km": dist,
        "pair_age_gap": np.abs(v["age"] - c["age"]),
        "pair_viewer_age_fit": _fits(c["age"], v["pref_age_min"], v["pref_age_max"]),
        "pair_candidate_age_fit": _fits(v["age"], c["pref_age_min"], c["pref_age_max"]),
        "pair_viewer_near": np.where(np.isnan(dist), np.nan, (dist <= v["pref_max_distance_km"]).astype(float)),
        "pair_candidate_near": np.where(np.isnan(dist), np.nan, (dist <= c["pref_max_distance_km"]).astype(float)),
        "pair_viewer_seeks": _seeks(v["seeking_mask"], c["gender"]),
        "pair_candidate_seeks": _seeks(c["seeking_mask"], v["gender"]),
    }


def feature_matrix(cols: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """The model's input, columns in ``names`` order; pair features are computed when asked for."""
    pairs = pair_features(cols) if any(n in PAIR_FEATURES for n in names) else {}
    out = np.empty((len(next(iter(cols.values()))), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        out[:, j] = pairs[name] if name in pairs else np.asarray(cols[name], dtype=np.float64)
    return out
