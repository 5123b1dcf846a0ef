"""The re-rank worker of one variant: pull, score in micro-batches, write results, publish predictions.

- Streaming pull with flow control (or unary pulls on the emulator, see unary_pull.py); the
  receiving side only queues messages, one thread batches them.
- A batch is one online-store round trip and one model call. A result is written to DynamoDB
  with a conditional put (newer request wins); the message is acked only after that write and
  after its prediction record is published.
- While Redis or DynamoDB is down, nothing is acked or nacked: the batch is retried with
  backoff, the client keeps extending the leases, and flow control stops new pulls. DynamoDB's
  errors are told apart (``results_error_class``): throttling, 5xx, no connection, a missing table
  or refused credentials hold the batch; an item DynamoDB refuses for good (``ValidationException``)
  is dead-lettered as ``result_rejected``; any other client error retries only its request.
- A message that cannot be served gets a reason (docs/specs/serving-messages.md). A permanent
  one (undecodable, out of bounds, missing or unknown arm) is published to the dead-letter topic
  at once and acked; a transient one (unknown user, unknown candidates, internal_error) is nacked
  with backoff until its last delivery attempt, then dead-lettered. It never holds up the rest.
- Any exception the handler did not foresee settles only the message that caused it: the batch
  is retried one message at a time, and the message that still fails is settled with reason
  ``internal_error`` and the exception. Nothing ends ``Worker.run`` but a stop.
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

from app.bounds import DEFAULT_LIMITS
from app.serving.aws_federation import FederationError
from app.serving.messages import PoisonMessage, Prediction, RerankRequest, parse_request
from app.serving.model_handle import DeployedModel
from app.serving.observability import RESULTS_WRITE_FAILED, THROTTLING_CODES, WorkerMetrics
from app.serving.results import RankedResult, ResultStore
from app.serving.scoring import Scored, Scorer
from app.serving.unary_pull import UnaryMessage, UnaryPuller
from app.settings import LimitsConfig, RetryConfig

log = logging.getLogger("rerank.worker")
# FederationError: the results role's credentials could not be renewed (STS or the metadata server).
DEPENDENCY_ERRORS = (redis.RedisError, BotoCoreError, ClientError, OSError, FederationError)


NO_BACKOFF = RetryConfig(minimum_backoff_seconds=0, maximum_backoff_seconds=0)


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
    served_arms: tuple[str, ...] = ()  # primary and arm variants: the arms a client may assign
    limits: LimitsConfig = DEFAULT_LIMITS
    retry: RetryConfig = NO_BACKOFF


class Settling:
    """A received message that remembers whether it was settled, so a batch retried message by
    message never acks or nacks one twice. Nacks carry the retry policy's delay where the client
    can delay (unary pulls on the emulator: the puller keeps the message leased for the delay); the
    cloud applies the subscription's retry policy."""

    def __init__(self, message: Any) -> None:
        self.message, self.settled = message, False
        self.data: bytes = message.data
        self.attributes = message.attributes
        self.delivery_attempt: int | None = message.delivery_attempt
        self.message_id: str = getattr(message, "message_id", "")

    def ack(self) -> None:
        if not self.settled:
            self.settled = True
            self.message.ack()

    def nack(self, delay_s: int = 0) -> None:
        if not self.settled:
            self.settled = True
            if isinstance(self.message, UnaryMessage):
                self.message.nack(delay_s)
            else:
                self.message.nack()


def _results_failure(exc: BaseException) -> str:
    """The kind of a failed results write, as metrics and the results alert name it."""
    if isinstance(exc, FederationError):
        return "results_credentials"
    if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in THROTTLING_CODES:
        return "results_throttled"
    return "results_write"


# What a failed results write means for its request (``results_error_class``):
HOLD = "hold"  # the table, the account or the network is at fault: hold the batch, retry it in place
REFUSED = "refused"  # DynamoDB refuses this item for good: dead-letter the request now
UNFORESEEN = "unforeseen"  # another client error: retry the request with backoff, then dead-letter it

# Client errors about the table, the account or the credentials, not the item: every request fails
# alike until they are fixed (a table being created, e.g. after an apply; a role or policy being
# repaired), so dead-lettering would only move the whole stream into the dead-letter queue.
# The batch is held and retried with backoff, and the results alert fires, as for throttling.
DEPENDENCY_CODES = THROTTLING_CODES | {
    "ResourceNotFoundException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "MissingAuthenticationToken",
    "IncompleteSignature",
    "RequestExpired",
}
# DynamoDB's answer to an item it will never store as it is, whatever is retried: an item over
# 400 KB, a key over its size (hash 2048 bytes, range 1024: the request bounds count characters,
# DynamoDB counts UTF-8 bytes), a key attribute of another type or missing (a table of another key
# schema). The request is dead-lettered as ``result_rejected`` with DynamoDB's message; after a fix
# (the bounds, the table) ``rerank dlq replay --reason result_rejected`` re-publishes it.
ITEM_REFUSED_CODES = frozenset({"ValidationException"})


def results_error_class(exc: BaseException) -> str:
    """HOLD, REFUSED or UNFORESEEN for an exception from a results write (see above)."""
    if not isinstance(exc, ClientError):
        return HOLD  # no answer from DynamoDB: connection, timeout, credentials not renewed
    error, meta = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
    code, status = str(error.get("Code", "")), meta.get("HTTPStatusCode")
    if code in DEPENDENCY_CODES or (isinstance(status, int) and status >= 500) or code.startswith("InternalServer"):
        return HOLD
    if code in ITEM_REFUSED_CODES:
        return REFUSED
    return UNFORESEEN


def _refusal(exc: BaseException) -> str:
    error = exc.response.get("Error", {}) if isinstance(exc, ClientError) else {}
    return f"results table: {error.get('Code', type(exc).__name__)}: {error.get('Message', exc)}"


class BatchHandler:
    """Handles one micro-batch of Pub/Sub messages; every message ends acked or nacked, or the
    batch raises ``DependencyDown`` with nothing settled (to be retried) but the messages whose
    own fault is known (poison, a result item DynamoDB refused)."""

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

    def _try_write(self, model_id: str, s: Scored) -> bool | BaseException:
        try:
            return self._write(model_id, s)
        except DEPENDENCY_ERRORS as exc:
            return exc

    def _write_all(self, model_id: str, done: list[tuple[Any, Scored]]) -> list[tuple[Any, Scored]]:
        """Write each result; returns the requests written (or superseded). A request DynamoDB
        refused for good is dead-lettered, one refused otherwise is retried with backoff (both
        settled here, never costing the others); if the table itself is unreachable, refusing or
        throttling, raises ``DependencyDown`` once those are settled, so the rest is retried in place."""
        # Conditional puts run side by side: each is one independent round trip.
        outcomes = list(self._writer.map(lambda d: self._try_write(model_id, d[1]), done))
        kept: list[tuple[Any, Scored]] = []
        written: list[bool] = []
        held: BaseException | None = None
        for (m, s), outcome in zip(done, outcomes, strict=True):
            if not isinstance(outcome, BaseException):
                written.append(outcome)
                kept.append((m, s))
                continue
            kind = results_error_class(outcome)
            if kind == HOLD:
                held = held or outcome
            else:
                log.warning("results write refused for request %s: %s", s.request.request_id, _refusal(outcome))
                reason = "result_rejected" if kind == REFUSED else "result_write_error"
                self._poison(m, PoisonMessage(reason, _refusal(outcome)))
        if held is not None:
            failure = _results_failure(held)
            self.metrics.error(failure)
            log.error("%s variant=%s kind=%s %s", RESULTS_WRITE_FAILED, self.cfg.variant, failure, held)
            raise DependencyDown(f"results table: {held}") from held
        for ok in written:  # counted once: a held batch is written again (then "superseded")
            self.metrics.outcome("written" if ok else "superseded")
        return kept

    def _poison(self, message: Any, err: PoisonMessage) -> None:
        attempt = message.delivery_attempt or self.cfg.max_delivery_attempts
        self.metrics.error(err.reason)
        if err.transient and attempt < self.cfg.max_delivery_attempts:
            message.nack(self.cfg.retry.delay(attempt))  # maybe a profile not ingested yet: retry later
            return
        attrs = {
            **dict(message.attributes),
            "reason": err.reason,
            "detail": err.detail.encode("utf-8", "replace")[:1024].decode("utf-8", "ignore"),
            "variant": self.cfg.variant,
            "delivery_attempts": str(attempt),
        }
        self.publish(self.cfg.dead_letter_topic, message.data, attrs).result(timeout=30)
        message.ack()
        self.metrics.outcome("dead_lettered")

    def internal_error(self, message: Any, exc: BaseException) -> None:
        """Settle ``message`` after an error nobody foresaw: retried with backoff, then dead-lettered."""
        log.exception("internal error on message %s", getattr(message, "message_id", "?"), exc_info=exc)
        try:
            self._poison(message, PoisonMessage("internal_error", f"{type(exc).__name__}: {exc}"))
        except Exception:  # not even the dead letter could be published: let Pub/Sub redeliver
            message.nack(self.cfg.retry.delay(message.delivery_attempt or 1))

    def _route(self, m: Any) -> PoisonMessage | bool:
        """True to serve ``m`` here, False for another arm's request, or the reason its arm is wrong."""
        arm = m.attributes.get("arm")
        if self.cfg.kind == "shadow" or arm == self.cfg.variant:
            return True
        if self.cfg.kind != "primary" or arm in self.cfg.served_arms:
            return False
        # The primary takes what no arm would: the client must have set a known arm.
        if not arm:
            return PoisonMessage("missing_arm", "the request has no arm attribute")
        known = ", ".join(self.cfg.served_arms)
        return PoisonMessage("unknown_arm", f"arm {arm[:64]!r} is not a served variant ({known})")

    def handle(self, messages: Sequence[Any]) -> None:
        requests: list[tuple[Any, RerankRequest]] = []
        for m in messages:
            if m.settled:
                continue
            route = self._route(m)
            if route is False:
                m.ack()  # another arm's request: the cloud's filter would not have delivered it
                self.metrics.outcome("other_arm")
                continue
            try:
                if isinstance(route, PoisonMessage):
                    raise route
                requests.append((m, parse_request(m.data, self.cfg.limits)))
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
        if self.results is not None:
            done = self._write_all(model_id, done)
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
        """Handle ``batch`` (of ``Settling`` messages) until each is settled or the worker stops."""
        delay = 0.1
        while True:
            pending = [m for m in batch if not m.settled]
            if not pending:
                self.down_since = None
                return
            try:
                self.handler.handle(pending)
                self.down_since = None
                return
            except DependencyDown as exc:
                self.metrics.error("dependency_down")
                self.down_since = self.down_since or time.monotonic()
                if self.stop.is_set():
                    for m in pending:
                        m.nack()  # shutting down: hand the batch back for another worker
                    return
                log.warning("%s; retrying the batch of %d in %.1fs", exc, len(pending), delay)
                self.stop.wait(delay)
                delay = min(delay * 2, self.cfg.backoff_max_s)
            except Exception as exc:  # one message's fault must not end the worker
                if len(pending) == 1:
                    self.handler.internal_error(pending[0], exc)
                    return
                # Which message caused it is unknown: handle each on its own, so only that one is settled.
                for m in pending:
                    self._handle_with_retry([m])
                return

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
                batch = [Settling(m) for m in self._take_batch()]
                if not batch:
                    continue
                try:
                    self._handle_with_retry(batch)
                except Exception:  # e.g. internal_error's own logging failed: never stop here
                    log.exception("batch of %d failed outside the handler; handing it back", len(batch))
                    for m in batch:
                        m.nack()
                try:
                    flush()
                except Exception:  # unsettled leases expire and are redelivered
                    log.exception("acknowledging a batch failed; its messages will be redelivered")
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
