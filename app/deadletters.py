"""Dead letters for people: count them by reason, show them, re-publish them to their source topic.

Works on any Pub/Sub endpoint (the emulator or the cloud) over the dead-letter subscriptions the
topology declares (a subscription on a topic that some subscription dead-letters to), and on the
JSON-lines dead-letter files a bounded ingest writes. Looking is non-destructive: messages are
pulled, then handed back at once (ack deadline 0); only ``replay`` acknowledges, after the
message was re-published.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from app.topology import Topology

# Attributes the dead-lettering added (the worker's, the ingest's, Pub/Sub's own): a replay drops them.
ADDED_ATTRIBUTES = ("reason", "detail", "variant", "delivery_attempts", "source")
_PUBSUB_ADDED_PREFIX = "CloudPubSubDeadLetter"
PULL_BATCH = 1000


@dataclass(frozen=True)
class DeadLetterQueue:
    subscription: str  # name, as in the topology
    topic: str  # the dead-letter topic
    source_topic: str  # where its messages came from, and where a replay sends them


@dataclass
class Letter:
    """One dead letter, from a subscription or a file."""

    where: str  # subscription name or file path
    data: bytes
    attributes: dict[str, str]
    published: datetime | None = None
    message_id: str = ""
    ack_id: str = field(default="", repr=False)

    @property
    def reason(self) -> str:
        return self.attributes.get("reason", "(none)")

    def replay_attributes(self) -> dict[str, str]:
        return {
            k: v
            for k, v in self.attributes.items()
            if k not in ADDED_ATTRIBUTES and not k.startswith(_PUBSUB_ADDED_PREFIX)
        }

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "where": self.where,
            "message_id": self.message_id,
            "published": self.published.isoformat() if self.published else None,
            "reason": self.reason,
            "detail": self.attributes.get("detail", ""),
            "attributes": {k: v for k, v in self.attributes.items() if k not in ("reason", "detail")},
        }
        try:
            out["data"] = self.data.decode("utf-8")
        except UnicodeDecodeError:  # shown as it arrived: not replaced characters
            out["data_base64"] = base64.b64encode(self.data).decode()
        return out


def queues(topology: Topology) -> list[DeadLetterQueue]:
    """The topology's dead-letter subscriptions, each with the topic its letters came from."""
    source = {s.dead_letter_topic: s.topic for s in topology.subscriptions if s.dead_letter_topic}
    return [DeadLetterQueue(s.name, s.topic, source[s.topic]) for s in topology.subscriptions if s.topic in source]


def peek(subscriber: Any, path: str, where: str, hold_s: int = 60) -> list[Letter]:
    """Every message waiting on ``path``, still held (call ``hand_back`` or ack them)."""
    letters: list[Letter] = []
    while True:
        resp = subscriber.pull(subscription=path, max_messages=PULL_BATCH, timeout=2)
        if not resp.received_messages:
            return letters
        ids = [r.ack_id for r in resp.received_messages]
        subscriber.modify_ack_deadline(subscription=path, ack_ids=ids, ack_deadline_seconds=hold_s)
        for r in resp.received_messages:
            m = r.message
            published = m.publish_time if isinstance(m.publish_time, datetime) else None
            letters.append(Letter(where, m.data, dict(m.attributes), published, m.message_id, r.ack_id))


def hand_back(subscriber: Any, path: str, letters: Iterable[Letter]) -> None:
    ids = [x.ack_id for x in letters if x.ack_id]
    for i in range(0, len(ids), PULL_BATCH):
        subscriber.modify_ack_deadline(subscription=path, ack_ids=ids[i : i + PULL_BATCH], ack_deadline_seconds=0)


def read_file(path: Path) -> Iterator[Letter]:
    """Letters of a JSON-lines dead-letter file (``rerank ingest --input``): attributes and raw_base64."""
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                data = base64.b64decode(doc.pop("raw_base64", ""))
                attrs = {str(k): str(v) for k, v in doc.items()}
            except (ValueError, TypeError, AttributeError) as exc:
                data, attrs = line, {"reason": "(unreadable)", "detail": f"line {lineno}: {exc}"}
            yield Letter(f"{path}:{lineno}", data, attrs)


def select(letters: Iterable[Letter], reason: str | None, since: datetime | None) -> list[Letter]:
    return [
        x
        for x in letters
        if (reason is None or x.reason == reason) and (since is None or x.published is None or x.published >= since)
    ]


def by_reason(letters: Iterable[Letter]) -> dict[str, int]:
    return dict(sorted(Counter(x.reason for x in letters).items()))


def drain_by_reason(subscriber: Any, path: str) -> dict[str, int]:
    """Acknowledge every letter waiting on ``path``; returns how many there were per reason."""
    letters = peek(subscriber, path, path)
    for i in range(0, len(letters), PULL_BATCH):
        subscriber.acknowledge(subscription=path, ack_ids=[x.ack_id for x in letters[i : i + PULL_BATCH]])
    return by_reason(letters)
