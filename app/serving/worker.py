"""The re-rank worker of one variant: pull, score in micro-batches, write results, publish predictions.

- Streaming pull with flow control (or unary pulls on the emulator, see unary_pull.py); the
  receiving side only queues messages, one thread batches them.
- A batch is one online-store round trip and one model call. A result is written to DynamoDB
  with a conditional put (newer request wins); the message is acked only after that write and
  after its prediction record is published.
- While Redis or DynamoDB is down, nothing is acked or nacked: the batch is retried with
  backoff, the client keeps extending the leases, and flow control stops new pulls.
- A poison message (undecodable, unknown user, no candidates) is nacked until its last delivery
  attempt, then published to the dead-letter topic with its reason and acked: it never holds up
  the rest.
- The emulator stores subscription filters without applying them, so the worker drops messages
  of another arm itself (the cloud never delivers them). A shadow writes no served results.
- SIGTERM: stop pulling, finish the batch in hand, nack whatever is queued, exit (well under 10 s).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from botocore.exceptions import BotoCoreError, ClientError

from app.serving.messages import PoisonMessage, Prediction, RerankRequest, parse_request
from app.serving.model_handle import DeployedModel
from app.serving.observability import WorkerMetrics
from app.serving.results import RankedResult, ResultStore
from app.serving.scoring import Scored, Scorer
from app.serving.unary_pull import UnaryPuller

log = logging.getLogger("rerank.worker")
DEPENDENCY_ERRORS = (redis.RedisError, BotoCoreError, ClientError, OSError)


class DependencyDown(RuntimeError):
    pass


@dataclass(frozen=True)
class WorkerConfig:
    variant: str
    kind: str  # primary | arm | shadow
    subscription: str  # full path
    predictions_topic: str
    dead_letter_topic: str
    max_delivery_attempts: int
    pull_mode: str = "streaming"  # or "unary" (app/serving/unary_pull.py says when)
    ack_deadline_s: int = 30
    max_batch: int = 32
    max_wait_s: float = 0.005
    max_in_flight: int = 256
    backoff_max_s: float = 5.0
    drain_s: float = 8.0


class BatchHandler:
    """Handles one micro-batch of Pub/Sub messages; every message ends acked or nacked, or the
    batch raises ``DependencyDown`` with nothing settled (to be retried)."""

    def __init__(
        self,
        cfg: WorkerConfig,
        scorer: Scorer,
        model: DeployedModel,
        results: ResultStore | None,
        publish: Callable[[str, bytes, dict[str, str]], Any],
        metrics: WorkerMetrics,
    ) -> None:
        self.cfg, self.scorer, self.model, self.results = cfg, scorer, model, results
        self.publish, self.metrics = publish, metrics
        self._writer = ThreadPoolExecutor(max_workers=8, thread_name_prefix="results")

    def _write(self, model_id: str, s: Scored) -> bool:
        assert self.results is not None
        ids, scores = s.ordered()
        r = s.request
        ok = self.results.put_if_newer(
            RankedResult(r.user_id, r.surface, r.request_id, r.requested_at, ids, scores, model_id, self.cfg.variant)
        )
        self.metrics.latency.observe(max(0.0, (datetime.now(UTC) - r.requested_at).total_seconds()))
        return ok

    def _poison(self, message: Any, err: PoisonMessage) -> None:
        attempt = message.delivery_attempt or self.cfg.max_delivery_attempts
        self.metrics.error(err.reason)
        if attempt < self.cfg.max_delivery_attempts:
            message.nack()  # maybe transient (a profile not ingested yet): let Pub/Sub redeliver
            return
        attrs = {
            **dict(message.attributes),
            "reason": err.reason,
            "detail": err.detail[:1024],
            "variant": self.cfg.variant,
            "delivery_attempts": str(attempt),
        }
        self.publish(self.cfg.dead_letter_topic, message.data, attrs).result(timeout=30)
        message.ack()
        self.metrics.outcome("dead_lettered")

    def handle(self, messages: Sequence[Any]) -> None:
        requests: list[tuple[Any, RerankRequest]] = []
        for m in messages:
            arm = m.attributes.get("arm")
            if self.cfg.kind != "shadow" and arm != self.cfg.variant:
                m.ack()  # another arm's request: the cloud's filter would not have delivered it
                self.metrics.outcome("other_arm")
                continue
            try:
                requests.append((m, parse_request(m.data)))
            except PoisonMessage as err:
                self._poison(m, err)
        if not requests:
            return
        current = self.model.current()
        if current is None:
            raise DependencyDown(f"variant {self.cfg.variant} has no deployed model yet")
        model_id, booster = current
        self.metrics.serving(model_id)
        try:
            outcomes = self.scorer.score(booster, [r for _, r in requests])
        except DEPENDENCY_ERRORS as exc:
            raise DependencyDown(f"online store: {exc}") from exc
        self.metrics.batch_size.observe(len(requests))
        done: list[tuple[Any, Scored]] = []
        for (m, _), outcome in zip(requests, outcomes, strict=True):
            if isinstance(outcome, PoisonMessage):
                self._poison(m, outcome)
            else:
                done.append((m, outcome))
        now = datetime.now(UTC)
        try:
            # Conditional puts run side by side: each is one independent round trip.
            written = list(self._writer.map(lambda d: self._write(model_id, d[1]), done)) if self.results else []
        except DEPENDENCY_ERRORS as exc:
            raise DependencyDown(f"results table: {exc}") from exc
        for ok in written:
            self.metrics.outcome("written" if ok else "superseded")
        if self.results is None:
            self.metrics.outcome("shadow", len(done))
        futures = [
            self.publish(
                self.cfg.predictions_topic,
                Prediction(
                    s.request.request_id,
                    s.request.user_id,
                    s.request.surface,
                    self.cfg.variant,
                    model_id,
                    s.request.candidate_ids,
                    tuple(float(x) for x in s.scores),
                    s.request.requested_at.isoformat(),
                    now.isoformat(),
                ).to_json(),
                {"variant": self.cfg.variant},
            )
            for _, s in done
        ]
        for f in futures:
            f.result(timeout=30)
        for m, _ in done:
            m.ack()


class Worker:
    def __init__(self, cfg: WorkerConfig, subscriber: Any, handler: BatchHandler, metrics: WorkerMetrics) -> None:
        self.cfg, self.subscriber, self.handler, self.metrics = cfg, subscriber, handler, metrics
        self.queue: queue.Queue[Any] = queue.Queue()
        self.stop = threading.Event()
        self.down_since: float | None = None

    def healthy(self) -> bool:
        return not self.stop.is_set() and (self.down_since is None or time.monotonic() - self.down_since < 30)

    def _take_batch(self) -> list[Any]:
        try:
            first = self.queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch, deadline = [first], time.monotonic() + self.cfg.max_wait_s
        while len(batch) < self.cfg.max_batch:
            try:
                batch.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _handle_with_retry(self, batch: list[Any]) -> None:
        delay = 0.1
        while True:
            try:
                self.handler.handle(batch)
                self.down_since = None
                return
            except DependencyDown as exc:
                self.metrics.error("dependency_down")
                self.down_since = self.down_since or time.monotonic()
                if self.stop.is_set():
                    for m in batch:
                        m.nack()  # shutting down: hand the batch back for another worker
                    return
                log.warning("%s; retrying the batch of %d in %.1fs", exc, len(batch), delay)
                self.stop.wait(delay)
                delay = min(delay * 2, self.cfg.backoff_max_s)

    def _start_pulling(self) -> tuple[Callable[[], None], Callable[[], None]]:
        """Start receiving into the queue; returns (stop pulling, flush acks)."""
        if self.cfg.pull_mode == "unary":
            puller = UnaryPuller(
                self.subscriber, self.cfg.subscription, self.queue.put, self.cfg.max_in_flight, self.cfg.ack_deadline_s
            ).start()
            return (lambda: puller.stop(self.cfg.drain_s / 2)), puller.flush
        from google.cloud import pubsub_v1

        flow = pubsub_v1.types.FlowControl(max_messages=self.cfg.max_in_flight)
        future = self.subscriber.subscribe(
            self.cfg.subscription, callback=self.queue.put, flow_control=flow, await_callbacks_on_shutdown=True
        )

        def stop() -> None:
            future.cancel()
            try:
                future.result(timeout=self.cfg.drain_s / 2)
            except Exception:
                pass

        return stop, lambda: None

    def run(self) -> None:
        stop_pulling, flush = self._start_pulling()
        log.info("worker %s pulling %s (%s pull)", self.cfg.variant, self.cfg.subscription, self.cfg.pull_mode)
        try:
            while not self.stop.is_set():
                self.metrics.backlog.set(self.queue.qsize())
                batch = self._take_batch()
                if batch:
                    self._handle_with_retry(batch)
                    flush()
        finally:
            stop_pulling()  # first, so nothing new arrives while draining
            while True:  # hand back what was received but not handled: another worker takes it at once
                try:
                    self.queue.get_nowait().nack()
                except queue.Empty:
                    break
            flush()
            self.subscriber.close()  # ends the stream, so the emulator stops sending to this client
            log.info("worker %s stopped", self.cfg.variant)
