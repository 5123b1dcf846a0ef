"""Clients for the local services: the one place that knows how to reach an emulator.

Pub/Sub clients get an insecure gRPC channel to the emulator explicitly (rather than through the
``PUBSUB_EMULATOR_HOST`` variable) so a process can talk to more than one stack; Beam's
``ReadFromPubSub`` only reads that variable, so the ingest runner sets it for its own process.
"""

from __future__ import annotations

from typing import Any

import boto3
import grpc
import redis
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

# moto accepts any credentials; boto3 still wants some to sign with.
_FAKE_AWS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


# Request/response traffic (a request, its prediction record) waits at most 2 ms to be batched,
# not the client's default 10 ms: that default alone would be a tenth of the latency budget.
LOW_LATENCY = pubsub_v1.types.BatchSettings(max_latency=0.002)


# As the library's own transports set them: Pub/Sub messages reach 10 MB, over gRPC's default 4 MiB, and a
# message the client cannot receive blocks every pull of its subscription (never served, never dead-lettered).
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def _channel(host: str) -> grpc.Channel:
    return grpc.insecure_channel(host, options=_CHANNEL_OPTIONS)


def lift_emulator_message_limit() -> None:
    """Give every insecure (emulator) channel this process opens the limits above.

    With ``PUBSUB_EMULATOR_HOST`` set, the Pub/Sub library opens a plain ``grpc.insecure_channel``
    with gRPC's 4 MiB receive limit, and that is the client Beam's DirectRunner reads with: a 5 MB
    event would fail every pull of the streaming ingest. Cloud channels are TLS channels the library
    opens with these limits already, so only local runs need this.
    """
    if getattr(grpc.insecure_channel, "_lifted", False):
        return
    original = grpc.insecure_channel

    def insecure_channel(target: str, options: Any = None, compression: Any = None) -> grpc.Channel:
        given = list(options or [])
        keys = {k for k, _ in given}
        return original(target, given + [o for o in _CHANNEL_OPTIONS if o[0] not in keys], compression)

    insecure_channel._lifted = True  # type: ignore[attr-defined]
    grpc.insecure_channel = insecure_channel


def publisher(host: str, batch_settings: pubsub_v1.types.BatchSettings | None = None) -> pubsub_v1.PublisherClient:
    transport = PublisherGrpcTransport(channel=_channel(host), credentials=AnonymousCredentials())
    kwargs: dict[str, Any] = {"transport": transport, "client_options": ClientOptions(api_endpoint=host)}
    if batch_settings is not None:
        kwargs["batch_settings"] = batch_settings
    return pubsub_v1.PublisherClient(**kwargs)


def subscriber(host: str) -> pubsub_v1.SubscriberClient:
    transport = SubscriberGrpcTransport(channel=_channel(host), credentials=AnonymousCredentials())
    return pubsub_v1.SubscriberClient(transport=transport, client_options=ClientOptions(api_endpoint=host))


def drain(host: str, subscription: str) -> int:
    """Pull and ack everything waiting on ``subscription``; returns how many messages there were."""
    sub, n = subscriber(host), 0
    try:
        while True:
            resp = sub.pull(subscription=subscription, max_messages=500, timeout=2)
            if not resp.received_messages:
                return n
            n += len(resp.received_messages)
            sub.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in resp.received_messages])
    finally:
        sub.close()


def dynamodb(endpoint_url: str, region: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=region, **_FAKE_AWS)


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)
