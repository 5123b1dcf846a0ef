"""Apply a stack's topology to the local services (idempotent), and report what exists.

The Pub/Sub emulator stores subscription filters but does not apply them; the serving worker
enforces its variant's filter itself so local and cloud behave alike (see shared notes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.api_core import exceptions as gexc
from google.protobuf import duration_pb2

from app.local import clients
from app.local.services import LocalState
from app.settings import StackSettings
from app.topology import Topology, build_topology


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def apply_topology(state: LocalState, settings: StackSettings, topology: Topology | None = None) -> ApplyReport:
    topology = topology or build_topology(settings)
    report = ApplyReport()
    project = settings.gcp.project
    pub = clients.publisher(state.pubsub_host)
    sub = clients.subscriber(state.pubsub_host)
    try:
        for topic in topology.topics:
            path = pub.topic_path(project, topic.name)
            try:
                pub.create_topic(name=path)
                report.created.append(f"topic {topic.name}")
            except gexc.AlreadyExists:
                report.existing.append(f"topic {topic.name}")
        retention = duration_pb2.Duration(seconds=settings.feature_store.message_retention_days * 86400)
        for s in topology.subscriptions:
            request: dict[str, object] = {
                "name": sub.subscription_path(project, s.name),
                "topic": pub.topic_path(project, s.topic),
                "ack_deadline_seconds": s.ack_deadline_seconds,
                "message_retention_duration": retention,
            }
            if s.filter:
                request["filter"] = s.filter
            if s.minimum_backoff_seconds is not None and s.maximum_backoff_seconds is not None:
                request["retry_policy"] = {
                    "minimum_backoff": duration_pb2.Duration(seconds=s.minimum_backoff_seconds),
                    "maximum_backoff": duration_pb2.Duration(seconds=s.maximum_backoff_seconds),
                }
            if s.dead_letter_topic:
                request["dead_letter_policy"] = {
                    "dead_letter_topic": pub.topic_path(project, s.dead_letter_topic),
                    "max_delivery_attempts": s.max_delivery_attempts,
                }
            try:
                sub.create_subscription(request=request)
                report.created.append(f"subscription {s.name}")
            except gexc.AlreadyExists:
                report.existing.append(f"subscription {s.name}")
    finally:
        sub.close()
        pub.transport.close()

    ddb = clients.dynamodb(state.dynamodb_url, settings.aws.region)
    for t in topology.tables:
        try:
            ddb.create_table(
                TableName=t.name,
                KeySchema=[
                    {"AttributeName": t.hash_key, "KeyType": "HASH"},
                    {"AttributeName": t.range_key, "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": t.hash_key, "AttributeType": "S"},
                    {"AttributeName": t.range_key, "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            ddb.update_time_to_live(
                TableName=t.name, TimeToLiveSpecification={"Enabled": True, "AttributeName": t.ttl_attribute}
            )
            report.created.append(f"table {t.name}")
        except ddb.exceptions.ResourceInUseException:
            report.existing.append(f"table {t.name}")

    for o in topology.offline_tables:
        (state.offline_dir / o.entity / o.version).mkdir(parents=True, exist_ok=True)
    state.dead_letter_dir.mkdir(parents=True, exist_ok=True)
    return report


def topology_status(state: LocalState, settings: StackSettings) -> dict[str, list[str]]:
    """Which of the topology's topics, subscriptions and tables are missing from the local services."""
    topology = build_topology(settings)
    project = settings.gcp.project
    pub = clients.publisher(state.pubsub_host)
    sub = clients.subscriber(state.pubsub_host)
    try:
        topics = {t.name.rsplit("/", 1)[-1] for t in pub.list_topics(project=f"projects/{project}")}
        subs = {s.name.rsplit("/", 1)[-1] for s in sub.list_subscriptions(project=f"projects/{project}")}
    finally:
        sub.close()
        pub.transport.close()
    tables = set(clients.dynamodb(state.dynamodb_url, settings.aws.region).list_tables()["TableNames"])
    return {
        "missing_topics": [t.name for t in topology.topics if t.name not in topics],
        "missing_subscriptions": [s.name for s in topology.subscriptions if s.name not in subs],
        "missing_tables": [t.name for t in topology.tables if t.name not in tables],
    }
