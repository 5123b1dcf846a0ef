"""Reaching the online store from a URL or a Secret Manager secret version (the ingest job's way)."""

from __future__ import annotations

import pytest

from app.featurestore.redis_connect import RedisTarget, redis_target, secret_payload


def test_a_redis_target_comes_from_a_url_or_a_secret_version() -> None:
    assert redis_target("redis://10.0.0.3:6379/0") == RedisTarget("redis://10.0.0.3:6379/0")
    stored = secret_payload("rediss://:pw@10.0.0.3:6378/0", "PEM")
    seen: list[str] = []
    target = redis_target("projects/p/secrets/s/versions/2", access_secret=lambda v: seen.append(v) or stored)
    assert target == RedisTarget("rediss://:pw@10.0.0.3:6378/0", "PEM") and seen == ["projects/p/secrets/s/versions/2"]
    with pytest.raises(ValueError, match="must hold JSON with 'url'"):
        redis_target("projects/p/secrets/s/versions/2", access_secret=lambda v: '{"host": "x"}')
