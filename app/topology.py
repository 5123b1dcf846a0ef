"""The messaging and storage topology a stack describes, independent of where it runs.

``infra/`` turns it into cloud resources; ``app.local.apply`` turns it into emulator topics,
moto tables and folders. Keeping the description here means both read one list.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.naming import Names
from app.settings import StackSettings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    purpose: str


@dataclass(frozen=True)
class SubscriptionSpec:
    name: str
    topic: str
    purpose: str
    ack_deadline_seconds: int
    filter: str | None = None
    dead_letter_topic: str | None = None
    max_delivery_attempts: int | None = None
    # Redelivery backoff after a nack (the stack's ``retry``) for consumed subscriptions; the
    # Pub/Sub retry policy in the cloud (the emulator follows it only in part, so workers also delay
    # their nacks). None: redeliver at once, as a dead-letter queue's inspection subscription must
    # (`rerank dlq` peeks and hands letters back; a backoff would hide them for minutes).
    minimum_backoff_seconds: int | None = None
    maximum_backoff_seconds: int | None = None


@dataclass(frozen=True)
class KeyValueTableSpec:
    """A DynamoDB table: hash key, range key, TTL attribute (all strings except the TTL)."""

    name: str
    hash_key: str
    range_key: str
    ttl_attribute: str


@dataclass(frozen=True)
class OfflineTableSpec:
    entity: str
    version: str
    table: str


@dataclass(frozen=True)
class Topology:
    topics: tuple[TopicSpec, ...]
    subscriptions: tuple[SubscriptionSpec, ...]
    tables: tuple[KeyValueTableSpec, ...]
    offline_tables: tuple[OfflineTableSpec, ...]


def arm_filter(variant: str) -> str:
    return f'attributes.arm = "{variant}"'


def primary_filter(other_arms: list[str]) -> str | None:
    """The primary takes every request no other arm would: its own, and those with a missing or
    unknown arm, which its worker dead-letters with the reason (a filter on its own arm alone would
    hand them to the shadow only, and no one would tell the client)."""
    return " AND ".join(f"NOT {arm_filter(a)}" for a in other_arms) or None


def build_topology(settings: StackSettings) -> Topology:
    n = Names.of(settings)
    fs, sv = settings.feature_store, settings.serving
    retry = {
        "minimum_backoff_seconds": settings.retry.minimum_backoff_seconds,
        "maximum_backoff_seconds": settings.retry.maximum_backoff_seconds,
    }
    topics = [
        TopicSpec(n.feature_events_topic, "feature events (entity bytes; attributes entity, version, event_time)"),
        TopicSpec(n.feature_dead_letter_topic, "feature events that failed ingest, with a reason"),
        TopicSpec(n.requests_topic, "re-rank requests from the core service (ids only; attribute arm)"),
        TopicSpec(n.requests_dead_letter_topic, "re-rank requests that exhausted their delivery attempts"),
        TopicSpec(n.predictions_topic, "prediction records from every variant"),
        TopicSpec(n.predictions_dead_letter_topic, "prediction records the offline store refused"),
        TopicSpec(n.training_triggers_topic, "retraining triggers (schedules and drift checks)"),
    ]
    subs = [
        SubscriptionSpec(
            n.feature_ingest_subscription,
            n.feature_events_topic,
            "the streaming ingest job",
            fs.ack_deadline_seconds,
            dead_letter_topic=n.feature_dead_letter_topic,
            max_delivery_attempts=fs.max_delivery_attempts,
            **retry,
        ),
        SubscriptionSpec(
            n.feature_dead_letter_subscription,
            n.feature_dead_letter_topic,
            "keeps feature dead letters for inspection and replay",
            fs.ack_deadline_seconds,
        ),
        SubscriptionSpec(
            n.requests_dead_letter_subscription,
            n.requests_dead_letter_topic,
            "keeps request dead letters for inspection and replay",
            sv.ack_deadline_seconds,
        ),
        SubscriptionSpec(
            n.training_triggers_subscription,
            n.training_triggers_topic,
            "the trigger function (locally: whoever runs it)",
            sv.ack_deadline_seconds,
        ),
        SubscriptionSpec(
            n.predictions_subscription,
            n.predictions_topic,
            "lands prediction records in the offline store",
            sv.ack_deadline_seconds,
            dead_letter_topic=n.predictions_dead_letter_topic,
            max_delivery_attempts=sv.max_delivery_attempts,
            **retry,
        ),
        SubscriptionSpec(
            n.predictions_dead_letter_subscription,
            n.predictions_dead_letter_topic,
            "keeps refused prediction records for inspection and replay",
            sv.ack_deadline_seconds,
        ),
    ]
    arms = [v.name for v in sv.variants if v.kind == "arm"]
    for v in sv.variants:
        subs.append(
            SubscriptionSpec(
                n.variant_subscription(v.name),
                n.requests_topic,
                f"re-rank worker for variant {v.name} ({v.kind})",
                sv.ack_deadline_seconds,
                filter=None
                if v.kind == "shadow"
                else primary_filter(arms)
                if v.kind == "primary"
                else arm_filter(v.name),
                dead_letter_topic=n.requests_dead_letter_topic,
                max_delivery_attempts=sv.max_delivery_attempts,
                **retry,
            )
        )
    tables = [KeyValueTableSpec(n.results_table, hash_key="user_id", range_key="surface", ttl_attribute="expires_at")]
    offline = [OfflineTableSpec(e.name, v, n.offline_table(e.name, v)) for e in fs.entities for v in e.versions]
    return Topology(tuple(topics), tuple(subs), tuple(tables), tuple(offline))
