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
from app.settings import StackSettings

SIDES = ("viewer", "candidate")
# (entity, version) pairs whose online features the model reads, the first being the identity (the
# profile: without it the feature store does not know a user). They come from the stack
# (``model_entities``): each entity at its serving version.
Entities = tuple[tuple[str, str], ...]
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
# What the pair features read from each side, and the other name a profile version may give it
# (profile v2 groups the preferences: preferences_age_min, ...).
PAIR_INPUTS = {
    "latitude": (),
    "longitude": (),
    "age": (),
    "pref_age_min": ("preferences_age_min",),
    "pref_age_max": ("preferences_age_max",),
    "pref_max_distance_km": ("preferences_max_distance_km",),
    "gender": (),
    "seeking_mask": (),
}


class UnknownFeatureError(ValueError):
    pass


def model_entities(settings: StackSettings) -> Entities:
    """Every entity of the stack at the version it serves (``serving_version``, else the newest)."""
    return tuple((e.name, e.served) for e in settings.feature_store.entities)


def format_entities(entities: Entities) -> str:
    """``user_profile:v1,user_activity:v1``: how a pipeline parameter carries them."""
    return ",".join(f"{e}:{v}" for e, v in entities)


def parse_entities(text: str) -> Entities:
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in pairs if p.count(":") != 1]
    if not pairs or bad:
        raise UnknownFeatureError(
            f"entities {text!r}: name each entity at the version the model reads, e.g. "
            "user_profile:v1,user_activity:v1 (the stack's feature_store.entities at their serving_version)"
        )
    return tuple((e, v) for e, v in (p.split(":") for p in pairs))


def entity_features(registry: Registry, entities: Entities) -> dict[tuple[str, str], tuple[str, ...]]:
    return {key: registry.get(*key).online_features for key in entities}


def feature_views(registry: Registry, entities: Entities) -> list[FeatureView]:
    return [FeatureView(e, v, cols) for (e, v), cols in entity_features(registry, entities).items()]


def identity_view(registry: Registry, entities: Entities) -> FeatureView:
    """The view whose presence means the feature store knows a user (the profile, listed first): a
    pair without it on either side cannot be scored."""
    return feature_views(registry, entities)[0]


def all_feature_names(registry: Registry, entities: Entities) -> list[str]:
    side = [f"{s}_{c}" for s in SIDES for cols in entity_features(registry, entities).values() for c in cols]
    return side + list(PAIR_FEATURES)


def check_features(names: Sequence[str], registry: Registry, entities: Entities) -> None:
    known = all_feature_names(registry, entities)
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

    def side(prefix: str) -> dict[str, np.ndarray]:
        out = {}
        for name, others in PAIR_INPUTS.items():
            found = next((f"{prefix}_{n}" for n in (name, *others) if f"{prefix}_{n}" in cols), None)
            if found is None:
                raise UnknownFeatureError(f"pair features need {prefix}_{name} (or {others}); the rows lack it")
            out[name] = np.asarray(cols[found], dtype=np.float64)
        return out

    v, c = side("viewer"), side("candidate")
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
