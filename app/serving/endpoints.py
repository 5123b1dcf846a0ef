"""Where a worker finds its services: the local stack's loopback services, or the cloud's.

Locally they come from ``rerank local up``'s state file. In a pod (``rerank serve --endpoints
env``) they come from the environment the Pulumi program sets on the worker Deployment
(``infra/serving.py``): Memorystore's URL and CA, the model registry through the pipeline bucket's
Cloud Storage FUSE mount, Pub/Sub with the pod's Google identity, and DynamoDB through the AWS role
that identity assumes (``aws_federation``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis
from google.cloud import pubsub_v1

from app.featurestore.redis_connect import RedisTarget
from app.local import clients
from app.local.services import LocalState


class Endpoints(Protocol):
    registry_dir: Path

    def publisher(self, batch_settings: pubsub_v1.types.BatchSettings | None = None) -> pubsub_v1.PublisherClient: ...
    def subscriber(self) -> pubsub_v1.SubscriberClient: ...
    def redis(self) -> redis.Redis: ...
    def dynamodb(self, region: str) -> Any: ...


@dataclass(frozen=True)
class LocalEndpoints:
    state: LocalState

    @property
    def registry_dir(self) -> Path:
        return Path(self.state.dir) / "registry"

    def publisher(self, batch_settings: pubsub_v1.types.BatchSettings | None = None) -> pubsub_v1.PublisherClient:
        return clients.publisher(self.state.pubsub_host, batch_settings)

    def subscriber(self) -> pubsub_v1.SubscriberClient:
        return clients.subscriber(self.state.pubsub_host)

    def redis(self) -> redis.Redis:
        return clients.redis_client(self.state.redis_url)

    def dynamodb(self, region: str) -> Any:
        return clients.dynamodb(self.state.dynamodb_url, region)


class EndpointsConfigError(ValueError):
    """The pod's environment lacks what the worker needs; names every missing variable."""


@dataclass(frozen=True)
class CloudEndpoints:
    redis_url: str
    registry_dir: Path
    redis_ca_file: str | None = None
    aws_role_arn: str | None = None  # None for shadow workers: they never write served results
    session_name: str = "rerank-worker"
    sts_endpoint: str | None = None
    metadata_url: str | None = None

    REQUIRED = ("REDIS_URL_FILE", "MODEL_REGISTRY")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CloudEndpoints:
        """The pod's services. The Redis URL carries the AUTH string, so pods get it as a mounted
        secret file (``REDIS_URL_FILE``); ``REDIS_URL`` itself is accepted for local runs."""
        env = os.environ if env is None else env
        missing = [k for k in cls.REQUIRED if not env.get(k) and not (k == "REDIS_URL_FILE" and env.get("REDIS_URL"))]
        if missing:
            raise EndpointsConfigError(f"--endpoints env needs environment variable(s) {', '.join(missing)}")
        redis_url = env.get("REDIS_URL") or ""
        if not redis_url:
            path = Path(env["REDIS_URL_FILE"])
            try:
                redis_url = path.read_text().strip()
            except OSError as exc:
                raise EndpointsConfigError(f"REDIS_URL_FILE {path}: {exc.strerror or exc}") from None
        return cls(
            redis_url=redis_url,
            registry_dir=Path(env["MODEL_REGISTRY"]),
            redis_ca_file=env.get("REDIS_CA_FILE") or None,
            aws_role_arn=env.get("AWS_ROLE_ARN") or None,
            session_name=(env.get("HOSTNAME") or "rerank-worker")[:64],
            sts_endpoint=env.get("AWS_STS_ENDPOINT") or None,
            metadata_url=env.get("GOOGLE_METADATA_IDENTITY_URL") or None,
        )

    def publisher(self, batch_settings: pubsub_v1.types.BatchSettings | None = None) -> pubsub_v1.PublisherClient:
        if batch_settings is None:
            return pubsub_v1.PublisherClient()
        return pubsub_v1.PublisherClient(batch_settings=batch_settings)

    def subscriber(self) -> pubsub_v1.SubscriberClient:
        return pubsub_v1.SubscriberClient()

    def redis(self) -> redis.Redis:
        ca = Path(self.redis_ca_file).read_text() if self.redis_ca_file and Path(self.redis_ca_file).exists() else None
        return RedisTarget(self.redis_url, ca or None).connect()

    def dynamodb(self, region: str) -> Any:
        from app.serving.aws_federation import METADATA_URL, federated_session

        if self.aws_role_arn is None:
            raise EndpointsConfigError("no AWS_ROLE_ARN: only shadow workers run without the results table")
        session = federated_session(
            self.aws_role_arn, self.session_name, region, self.sts_endpoint, self.metadata_url or METADATA_URL
        )
        return session.client("dynamodb", region_name=region)


def endpoints_of(target: LocalState | Endpoints) -> Endpoints:
    return LocalEndpoints(target) if isinstance(target, LocalState) else target
