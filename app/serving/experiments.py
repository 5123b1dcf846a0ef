"""Which variant serves a user: a consistent hash of the user over the served variants' shares."""

from __future__ import annotations

import hashlib

from app.settings import VariantConfig


def bucket(user_id: str, salt: str = "rerank") -> float:
    """A stable number in [0, 1) for a user; the salt lets a new experiment reshuffle users."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_arm(user_id: str, variants: list[VariantConfig], salt: str = "rerank") -> str:
    """The primary or arm variant whose share covers the user's bucket (shadows take no traffic)."""
    served = [v for v in variants if v.kind != "shadow"]
    point, edge = bucket(user_id, salt), 0.0
    for v in served:
        edge += v.traffic_share
        if point < edge:
            return v.name
    return served[-1].name  # float rounding at the top edge
