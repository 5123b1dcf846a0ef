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

from app.contracts import EnvContractError, WorkerEnv
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CloudEndpoints:
        """The pod's services, from the environment ``infra/serving.py`` declares (``WorkerEnv``)."""
        try:
            w = WorkerEnv.from_env(os.environ if env is None else env)
        except EnvContractError as exc:
            raise EndpointsConfigError(str(exc)) from None
        redis_url = w.redis_url or ""
        if not redis_url:
            path = Path(w.redis_url_file)
            try:
                redis_url = path.read_text().strip()
            except OSError as exc:
                raise EndpointsConfigError(f"REDIS_URL_FILE {path}: {exc.strerror or exc}") from None
        return cls(
            redis_url=redis_url,
            registry_dir=Path(w.model_registry),
            redis_ca_file=w.redis_ca_file,
            aws_role_arn=w.aws_role_arn,
            # Kubernetes sets HOSTNAME to the pod's name: the AWS session names the pod.
            session_name=((os.environ if env is None else env).get("HOSTNAME") or "rerank-worker")[:64],
            sts_endpoint=w.aws_sts_endpoint,
            metadata_url=w.metadata_identity_url,
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
