"""The people of the synthetic two-sided market: observable profile attributes and hidden traits.

Hidden traits (attractiveness, pickiness, activity, responsiveness, cohort) drive who likes whom;
the observable attributes carry noisy signals of them, as real profiles do. Everything is drawn
from one seeded generator, so a seed fixes the market.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from app.featurestore.transforms import GENDER_BITS as SEEKING_BITS

GENDER_BITS = np.array(SEEKING_BITS)  # index by gender code 1 woman, 2 man, 3 nonbinary
CITIES = np.array([[52.52, 13.40], [48.14, 11.58], [53.55, 9.99], [50.94, 6.96], [50.11, 8.68]])


@dataclass
class Population:
    user_id: np.ndarray
    gender: np.ndarray  # 1 woman, 2 man, 3 nonbinary
    seeking_mask: np.ndarray  # bits of GENDER_BITS
    age: np.ndarray
    pref_age_min: np.ndarray
    pref_age_max: np.ndarray
    city: np.ndarray
    latitude: np.ndarray
    longitude: np.ndarray
    pref_max_distance_km: np.ndarray
    photo_count: np.ndarray
    photo_quality: np.ndarray
    bio_length: np.ndarray
    profile_completeness: np.ndarray
    signup_day: np.ndarray  # days relative to the market's start (negative: before it)
    # hidden
    attractiveness: np.ndarray
    pickiness: np.ndarray
    activity: np.ndarray  # probability of opening the app on a given day
    responsiveness: np.ndarray  # probability of replying to a message
    cohort: np.ndarray  # 0 the original users, 1 the drift cohort
    join_day: np.ndarray  # first day the user is in the market

    def __len__(self) -> int:
        return len(self.user_id)

    def columns(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def draw_population(
    rng: np.random.Generator, n: int, drift_day: int | None = None, drift_share: float = 0.0
) -> Population:
    n_new = round(n * drift_share) if drift_day is not None else 0
    cohort = np.zeros(n, dtype=np.int8)
    if n_new:
        cohort[n - n_new :] = 1
    gender = rng.choice([1, 2, 3], size=n, p=[0.48, 0.48, 0.04])
    opposite = np.where(gender == 1, 2, np.where(gender == 2, 1, 0))
    seeking = GENDER_BITS[opposite]
    bi = rng.random(n) < 0.1
    seeking = np.where(bi | (gender == 3), 7, seeking)
    # The drift cohort is younger and wants closer matches.
    age = np.where(cohort == 1, 18 + rng.gamma(2.0, 2.5, n), 18 + rng.gamma(2.5, 5.0, n)).clip(18, 70).astype(int)
    pref_min = np.maximum(18, age - rng.integers(2, 9, n))
    pref_max = np.minimum(99, age + rng.integers(2, 11, n))
    city = rng.integers(0, len(CITIES), n)
    lat = CITIES[city, 0] + rng.normal(0, 0.08, n)
    lon = CITIES[city, 1] + rng.normal(0, 0.12, n)
    pref_dist = np.where(cohort == 1, 5.0, rng.choice([5.0, 10.0, 25.0, 50.0, 100.0], size=n))
    attract = rng.normal(0, 1, n)
    conscientious = rng.normal(0, 1, n)
    photo_quality = sigmoid(0.9 * attract + rng.normal(0, 0.6, n)).round(3)
    photo_count = (1 + rng.poisson(np.exp(1.0 + 0.25 * attract + 0.2 * conscientious))).clip(1, 20)
    bio = (rng.gamma(1.5, 80, n) * np.exp(0.4 * conscientious)).clip(0, 4999).astype(int)
    completeness = sigmoid(conscientious + rng.normal(0, 0.5, n)).round(2)
    activity = sigmoid(rng.normal(-0.4, 1.0, n))
    responsiveness = rng.beta(2.0, 2.0, n)
    join_day = np.where(cohort == 1, drift_day or 0, 0)
    signup = np.where(cohort == 1, join_day, -rng.integers(1, 700, n))
    return Population(
        user_id=np.array([f"u{i:06d}" for i in range(n)]),
        gender=gender,
        seeking_mask=seeking,
        age=age,
        pref_age_min=pref_min,
        pref_age_max=pref_max,
        city=city,
        latitude=lat.round(5),
        longitude=lon.round(5),
        pref_max_distance_km=pref_dist,
        photo_count=photo_count,
        photo_quality=photo_quality,
        bio_length=bio,
        profile_completeness=completeness,
        signup_day=signup,
        attractiveness=attract,
        pickiness=rng.normal(0, 1, n),
        activity=activity,
        responsiveness=responsiveness,
        cohort=cohort,
        join_day=join_day,
    )
