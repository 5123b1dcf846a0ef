from __future__ import annotations

import numpy as np
import pytest

from app.featurestore.registry import Registry
from app.ranking.features import (
    PAIR_FEATURES,
    UnknownFeatureError,
    all_feature_names,
    check_features,
    feature_matrix,
    feature_views,
    model_entities,
    pair_features,
    parse_entities,
)
from app.settings import StackSettings

V1 = (("user_profile", "v1"), ("user_activity", "v1"))


def sides(**over: float) -> dict[str, np.ndarray]:
    base = {
        "latitude": 52.52,
        "longitude": 13.40,
        "age": 30,
        "pref_age_min": 25,
        "pref_age_max": 35,
        "pref_max_distance_km": 10,
        "gender": 1,
        "seeking_mask": 2,
    }
    cand = {
        "latitude": 52.52,
        "longitude": 13.55,
        "age": 40,
        "pref_age_min": 28,
        "pref_age_max": 45,
        "pref_max_distance_km": 25,
        "gender": 2,
        "seeking_mask": 1,
    }
    cols = {f"viewer_{k}": np.array([float(v)]) for k, v in base.items()}
    cols |= {f"candidate_{k}": np.array([float(v)]) for k, v in cand.items()}
    cols |= {k: np.array([float(v)]) for k, v in over.items()}
    return cols


def test_pair_features_look_both_ways() -> None:
    p = {k: v[0] for k, v in pair_features(sides()).items()}
    assert p["pair_distance_km"] == pytest.approx(10.2, abs=0.2)
    assert p["pair_age_gap"] == 10
    assert p["pair_viewer_age_fit"] == 0.0  # 40 is outside the viewer's 25..35
    assert p["pair_candidate_age_fit"] == 1.0  # 30 is inside the candidate's 28..45
    assert p["pair_viewer_near"] == 0.0 and p["pair_candidate_near"] == 1.0
    assert p["pair_viewer_seeks"] == 1.0 and p["pair_candidate_seeks"] == 1.0


def test_unknown_side_values_make_unknown_pair_features() -> None:
    p = pair_features(sides(candidate_age=np.nan, candidate_gender=np.nan))
    assert np.isnan(p["pair_viewer_age_fit"][0]) and np.isnan(p["pair_viewer_seeks"][0])
    assert not np.isnan(p["pair_distance_km"][0])


def test_feature_matrix_follows_the_requested_order() -> None:
    m = feature_matrix(sides(), ["pair_age_gap", "viewer_age", "candidate_age"])
    assert m.dtype == np.float32 and m.tolist() == [[10.0, 30.0, 40.0]]


def test_feature_names_cover_both_sides_and_pairs(registry: Registry) -> None:
    names = all_feature_names(registry, V1)
    assert "viewer_photo_quality" in names and "candidate_reply_rate" in names
    assert set(PAIR_FEATURES) <= set(names)
    assert not any(n.endswith(("_id", "_like", "_time")) for n in names), "no ids, labels or times"
    with pytest.raises(UnknownFeatureError, match=r"unknown feature\(s\) \['viewer_height'\]"):
        check_features(["viewer_age", "viewer_height"], registry, V1)


def test_the_model_reads_each_entity_at_the_version_the_stack_serves(
    settings: StackSettings, registry: Registry
) -> None:
    assert model_entities(settings) == V1, "the local stack serves profile v1 (its serving_version)"
    fs = settings.feature_store
    v2 = settings.model_copy(
        update={
            "feature_store": fs.model_copy(
                update={"entities": [fs.entities[0].model_copy(update={"serving_version": "v2"}), fs.entities[1]]}
            )
        }
    )
    entities = model_entities(v2)
    assert entities == (("user_profile", "v2"), ("user_activity", "v1"))
    assert [(v.entity, v.version) for v in feature_views(registry, entities)] == list(entities)
    names = all_feature_names(registry, entities)
    assert "viewer_preferences_age_min" in names and "viewer_pref_age_min" not in names
    # the pair features read profile v2's grouped preferences under their v2 names
    renamed = {k.replace("_pref_", "_preferences_"): v for k, v in sides().items()}
    assert {k: v[0] for k, v in pair_features(renamed).items()} == {k: v[0] for k, v in pair_features(sides()).items()}
    assert parse_entities("user_profile:v2, user_activity:v1") == entities
    with pytest.raises(UnknownFeatureError, match="name each entity at the version"):
        parse_entities("")
