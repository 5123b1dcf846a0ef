"""Synchronous Pull + Acknowledge, shaped like the streaming client's messages.

Why it exists: Google's Pub/Sub emulator never notices that a streaming-pull stream went away
(client closed or process killed), and keeps sending part of every subscription's messages to
the dead stream until their ack deadline runs out, again and again. A worker that restarts on the
local stack would lose time and order to that; unary pulls have no stream to outlive. The cloud
has no such problem, so workers there use streaming pull (``pull_mode: streaming``).

Flow control: no more than ``max_in_flight`` messages are held at once. Leases: held messages get
their ack deadline extended every few seconds until they are acked or nacked, as the streaming
client does. Acks and nacks are batched into one request each per flush.

Backoff: a nack with a delay keeps the message leased here, its deadline extended, until the
delay has passed, and then hands it back at once (ack deadline 0). It never sets the ack deadline
to the delay: the emulator drops messages handed back that way on a subscription with a filter
(every variant subscription has one), neither redelivering nor dead-lettering them, while an
immediate nack is redelivered and counted towards the dead-letter policy as it should be
(tests/integration/test_serving_faults.py counts both). All deadline changes go out one at a time,
so a lease extension never lands after the nack of the same message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc


class UnaryMessage:
    """The parts of ``google.cloud.pubsub_v1.subscriber.message.Message`` the worker uses."""

    def __init__(self, puller: UnaryPuller, received: Any) -> None:
        self._puller, self.ack_id = puller, received.ack_id
        self.data: bytes = received.message.data
        self.attributes: dict[str, str] = dict(received.message.attributes)
        self.message_id: str = received.message.message_id
        self.delivery_attempt: int | None = received.delivery_attempt or None

    def ack(self) -> None:
        self._puller.settle(self.ack_id, ack=True)

    def nack(self, delay_s: int = 0) -> None:
        """Hand back for redelivery after ``delay_s`` seconds (the retry policy the emulator does not follow)."""
        self._puller.settle(self.ack_id, ack=False, delay_s=delay_s)


class UnaryPuller:
    def __init__(
        self,
        subscriber: Any,
        subscription: str,
        callback: Callable[[UnaryMessage], None],
        max_in_flight: int,
        ack_deadline_s: int,
    ) -> None:
        self.subscriber, self.subscription, self.callback = subscriber, subscription, callback
        self.max_in_flight, self.ack_deadline_s = max_in_flight, ack_deadline_s
        self._held: set[str] = set()
        self._waiting: dict[str, float] = {}  # nacked with a delay: ack id -> when to hand it back
        self._acks: list[str] = []
        self._nacks: list[str] = []
        self._lock = threading.Lock()
        self._send = threading.Lock()  # one deadline change or ack request at a time, in order
        self._room = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._pull_loop, name="pull", daemon=True),
            threading.Thread(target=self._lease_loop, name="lease", daemon=True),
        ]

    def start(self) -> UnaryPuller:
        for t in self._threads:
            t.start()
        return self

    def settle(self, ack_id: str, ack: bool, delay_s: int = 0) -> None:
        with self._lock:
            if ack_id in self._held:
                self._held.discard(ack_id)
                if ack or delay_s <= 0:
                    (self._acks if ack else self._nacks).append(ack_id)
                    self._room.notify_all()
                else:  # still leased (and counted in flight) until the delay has passed
                    self._waiting[ack_id] = time.monotonic() + min(float(delay_s), 600.0)

    def _release_due(self, everything: bool = False) -> None:
        """Hand back the messages whose delay has passed (all of them when stopping)."""
        now = time.monotonic()
        with self._lock:
            due = [a for a, at in self._waiting.items() if everything or at <= now]
            for a in due:
                del self._waiting[a]
            self._nacks += due
            if due:
                self._room.notify_all()

    def flush(self) -> None:
        """Send the batched acks and nacks (a nack hands the message back at once: ack deadline 0)."""
        self._release_due()
        with self._send:
            with self._lock:
                acks, nacks, self._acks, self._nacks = self._acks, self._nacks, [], []
            for i in range(0, len(acks), 1000):
                self.subscriber.acknowledge(subscription=self.subscription, ack_ids=acks[i : i + 1000])
            for i in range(0, len(nacks), 1000):
                self.subscriber.modify_ack_deadline(
                    subscription=self.subscription, ack_ids=nacks[i : i + 1000], ack_deadline_seconds=0
                )

    def _pull_loop(self) -> None:
        while not self._stop.is_set():
            with self._room:
                while len(self._held) + len(self._waiting) >= self.max_in_flight and not self._stop.is_set():
                    self._room.wait(0.2)
                room = self.max_in_flight - len(self._held) - len(self._waiting)
            if self._stop.is_set():
                return
            try:
                resp = self.subscriber.pull(subscription=self.subscription, max_messages=min(room, 1000), timeout=5)
            except (gexc.DeadlineExceeded, gexc.ServiceUnavailable, gexc.Cancelled):
                continue
            except Exception:
                if self._stop.is_set():
                    return
                time.sleep(0.5)
                continue
            for received in resp.received_messages:
                with self._lock:
                    self._held.add(received.ack_id)
                self.callback(UnaryMessage(self, received))

    def _extend_leases(self) -> None:
        with self._send:
            with self._lock:
                held = [*self._held, *self._waiting]
            for i in range(0, len(held), 1000):
                try:
                    self.subscriber.modify_ack_deadline(
                        subscription=self.subscription,
                        ack_ids=held[i : i + 1000],
                        ack_deadline_seconds=self.ack_deadline_s,
                    )
                except Exception:  # the next round tries again; an expired lease is redelivered
                    pass

    def _lease_loop(self) -> None:
        period, next_lease = max(1.0, self.ack_deadline_s / 3), 0.0
        while not self._stop.wait(0.2):
            if time.monotonic() >= next_lease:
                self._extend_leases()
                next_lease = time.monotonic() + period
            with self._lock:
                due = any(at <= time.monotonic() for at in self._waiting.values())
            if due:
                try:
                    self.flush()
                except Exception:  # no longer leased: the emulator redelivers them when the deadline runs out
                    pass

    def stop(self, timeout: float) -> None:
        """Stop pulling; messages waiting out a delay are handed back by the next ``flush``."""
        self._stop.set()
        with self._room:
            self._room.notify_all()
        for t in self._threads:
            if t.ident is not None:  # started
                t.join(timeout)
        self._release_due(everything=True)
