"""One way to reach the online store, from a URL or from a Secret Manager secret.

Memorystore with AUTH and in-transit encryption needs a password and the instance's CA. The
Dataflow job gets neither in its (visible) parameters: its ``redis_url`` names a secret version
holding ``{"url": "rediss://:AUTH@HOST:6378/0", "ca": "<PEM>"}`` that only its service account may
read. Workers get the same two values from a Kubernetes secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import redis

SECRET_VERSION = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")


@dataclass(frozen=True)
class RedisTarget:
    url: str
    ca_pem: str | None = None

    def connect(self) -> redis.Redis:
        if self.url.startswith("rediss://") and self.ca_pem:
            # Memorystore's certificate comes from the instance's own CA and names no host we use,
            # so the CA is pinned and the host name is not checked.
            return redis.Redis.from_url(self.url, ssl_ca_data=self.ca_pem, ssl_check_hostname=False)
        return redis.Redis.from_url(self.url)


def _access_secret(version: str) -> str:
    from google.cloud import secretmanager

    return secretmanager.SecretManagerServiceClient().access_secret_version(name=version).payload.data.decode()


def redis_target(spec: str, access_secret: Callable[[str], str] = _access_secret) -> RedisTarget:
    """``spec`` is a ``redis://``/``rediss://`` URL or ``projects/P/secrets/S/versions/V``."""
    if not SECRET_VERSION.match(spec):
        return RedisTarget(spec)
    try:
        doc = json.loads(access_secret(spec))
        return RedisTarget(doc["url"], doc.get("ca") or None)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"secret {spec} must hold JSON with 'url' (and 'ca' for TLS): {exc}") from None


def secret_payload(url: str, ca_pem: str | None) -> str:
    """What the Pulumi program stores in the secret: the inverse of ``redis_target``."""
    return json.dumps({"url": url, "ca": ca_pem or ""})
