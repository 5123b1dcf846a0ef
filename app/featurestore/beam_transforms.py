"""Beam transforms of the ingest job: decode and validate once, then write both stores.

``DecodeFeatureEvents`` is shared by the bounded (file) and streaming (Pub/Sub) sources. Writers
buffer a bundle and write it in one batch, so a bundle is one Redis pipeline and one Parquet file.
Counters (app/featurestore/progress.py) feed the run summary and the Dataflow job's metrics.

The DirectRunner runs every step once per bundle, empty or not, at a fixed cost (it pickles the
DoFn and inspects its methods' signatures, ~10 ms on a busy 2-core machine), and a local streaming
pull is a bundle of 10 events. So the graph keeps the steps a bundle passes few: the decoder reads
the Pub/Sub message itself, one step (``WriteStoresFn``) writes both stores, and every producer of
dead letters emits them already in the sink's form (``dead_form``: a Pub/Sub message or a JSON
line), so the sink takes their Flatten as it is. A writer step per store and a conversion step per
dead-letter producer made 13 steps per bundle and halved the demo's streaming-ingest rate.

A refused write is never counted as written and never dropped: the writer retries the refused
rows with backoff (up to ``store_retry_seconds`` of one outage), then emits each as a dead letter
(``store_unavailable``, or ``store_conflict`` for a key of another type) on its ``DEAD`` output,
which joins the decoder's dead letters. The DirectRunner acks Pub/Sub messages as it pulls them,
so locally this dead letter is what keeps the event; on Dataflow the bundle is also only
committed after the writer returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.windowed_value import WindowedValue

from app.bounds import DEFAULT_LIMITS
from app.featurestore.bigquery_write import WRITE_METHOD
from app.featurestore.events import (
    REASONS,
    DeadLetter,
    FeatureRow,
    RawEvent,
    format_event_time,
    from_pubsub,
    json_line,
    process_event,
)
from app.featurestore.progress import RunCounter
from app.featurestore.registry import Registry, default_registry
from app.settings import LimitsConfig

DEAD = "dead_letter"
STORE_RETRY_SECONDS = 30.0
log = logging.getLogger("rerank.ingest")


UNAVAILABLE = "store_unavailable"
STORE_REASONS = (UNAVAILABLE, "store_conflict")  # dead-letter reasons of a writer, not of the event
SETTLED = "stores_settled"  # the counter of rows every store has written or refused


class StoreRefused(Exception):
    """A store refused some rows of a batch (the rest were written): (row, reason, detail) each;
    ``store_unavailable`` ones are retried, any other reason is final."""

    def __init__(self, refused: list[tuple[FeatureRow, str, str]], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.refused, self.cause = refused, cause


def store_dead_letter(row: FeatureRow, reason: str, detail: str, registry: Registry | None = None) -> DeadLetter:
    """A row a store refused, as the event it was, replayable: given the ``registry`` (file sources)
    a JSON line for ``rerank ingest --input``, else the Pub/Sub wire form (protobuf bytes, attributes)."""
    raw = row.payload
    if registry is not None:
        msg = registry.get(row.entity, row.version).message_cls.FromString(row.payload)
        raw = json_line(row.entity, row.version, row.event_time, msg).encode()
    return DeadLetter(reason, detail, row.source, row.entity, row.version, format_event_time(row.event_time), raw)


def as_dead_letter(dead: DeadLetter) -> Any:
    """The default ``dead_form``: the DeadLetter itself."""
    return dead


def dead_letter_message(dead: DeadLetter) -> Any:
    """The ``dead_form`` of a dead-letter topic: the event's bytes and attributes, with the reason."""
    from apache_beam.io.gcp.pubsub import PubsubMessage

    return PubsubMessage(data=dead.raw, attributes=dead.attributes())


def dead_letter_line(dead: DeadLetter) -> str:
    """The ``dead_form`` of a dead-letter file: one JSON line."""
    return dead.to_json()


def pubsub_event(message: Any) -> RawEvent:
    """A Pub/Sub message as ReadFromPubSub(with_attributes=True) gives it, as a RawEvent."""
    return from_pubsub(message.data, dict(message.attributes or {}), message.message_id or "?")


def as_raw_event(event: RawEvent) -> RawEvent:
    return event


class ProcessEventFn(beam.DoFn):
    def __init__(
        self,
        run_id: str,
        limits: LimitsConfig = DEFAULT_LIMITS,
        source: Callable[[Any], RawEvent] = as_raw_event,
        dead_form: Callable[[DeadLetter], Any] = as_dead_letter,
    ) -> None:
        self.limits, self.source, self.dead_form = limits, source, dead_form
        self.accepted = RunCounter(run_id, "accepted")
        self.rejected = {r: RunCounter(run_id, f"rejected_{r}") for r in REASONS}
        self._registry: Registry | None = None

    def setup(self) -> None:
        self._registry = default_registry()

    def process(self, element: Any) -> Iterator[Any]:
        assert self._registry is not None
        result = process_event(self.source(element), self._registry, limits=self.limits)
        if isinstance(result, DeadLetter):
            self.rejected[result.reason].inc()
            yield TaggedOutput(DEAD, self.dead_form(result))
        else:
            self.accepted.inc()
            yield result


class DecodeFeatureEvents(beam.PTransform):
    """Events -> (FeatureRow, dead letter) outputs; nothing is dropped. ``source`` turns an input
    element into a RawEvent (default: it is one; ``pubsub_event`` for ReadFromPubSub's messages),
    ``dead_form`` gives the dead letters their sink's form (default: DeadLetter)."""

    def __init__(
        self,
        run_id: str = "",
        limits: LimitsConfig = DEFAULT_LIMITS,
        source: Callable[[Any], RawEvent] = as_raw_event,
        dead_form: Callable[[DeadLetter], Any] = as_dead_letter,
    ) -> None:
        super().__init__()
        self.run_id, self.limits, self.source, self.dead_form = run_id, limits, source, dead_form

    def expand(self, events: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        fn = ProcessEventFn(self.run_id, self.limits, self.source, self.dead_form)
        return events | "Process" >> beam.ParDo(fn).with_outputs(DEAD, main="rows")


class WriteStoresFn(beam.DoFn):
    """One step writes each bundle to every store it holds (the online store, and the Parquet
    offline store when there is one), each in one batch with its own retries; what a store still
    refuses leaves on the ``DEAD`` output (see the module docstring). One step, not one per store:
    each store's dead letters would be another input to the dead-letter sink, which the DirectRunner
    then runs once more per bundle."""

    def __init__(
        self, run_id: str, writers: list[StoreWriter], dead_form: Callable[[DeadLetter], Any] = as_dead_letter
    ) -> None:
        self.writers, self.dead_form = writers, dead_form
        # Rows every store has written or refused: a local launcher stops only once this has caught
        # up with the decoder's accepted count (app/featurestore/local_stream.py).
        self.settled = RunCounter(run_id, SETTLED)

    def setup(self) -> None:
        for writer in self.writers:
            writer.setup()

    def start_bundle(self) -> None:
        self._rows: list[tuple[FeatureRow, Any, Any]] = []

    def process(
        self, row: FeatureRow, timestamp: Any = beam.DoFn.TimestampParam, window: Any = beam.DoFn.WindowParam
    ) -> None:
        self._rows.append((row, timestamp, window))

    def finish_bundle(self) -> Iterator[Any]:
        rows, self._rows = self._rows, []
        if not rows:
            return
        where = {id(r): (ts, w) for r, ts, w in rows}
        batch = [r for r, _, _ in rows]
        for writer in self.writers:
            refused = writer.write_with_retry(batch)
            # File rows are dead-lettered as JSON lines, which need the registry.
            registry = default_registry() if refused and writer.file_source else None
            for row, reason, detail in refused:
                writer.refused[reason].inc()
                ts, w = where[id(row)]
                dead = self.dead_form(store_dead_letter(row, reason, detail, registry))
                yield TaggedOutput(DEAD, WindowedValue(dead, ts, [w]))
        self.settled.inc(len(batch))


class StoreWriter:
    """Writes a batch of rows to one store; retries what it refuses, then hands it back to be
    dead-lettered. ``write`` returns nothing or raises ``StoreRefused`` (some rows) or any other
    exception (all rows, e.g. a connection error)."""

    store = "store"

    def __init__(self, run_id: str, retry_s: float, file_source: bool) -> None:
        self.retry_s, self.file_source = retry_s, file_source
        self.refused = {r: RunCounter(run_id, f"rejected_{r}") for r in STORE_REASONS}
        self._down_since: float | None = None

    def setup(self) -> None:
        raise NotImplementedError

    def write_with_retry(self, rows: list[FeatureRow]) -> list[tuple[FeatureRow, str, str]]:
        """Write ``rows``; returns those still refused after the retries, with reason and detail.

        The retry window counts from when the store started refusing, so in a long outage only
        the first bundle waits it out and later ones are dead-lettered after one attempt.
        """
        pending, delay, final = rows, 0.2, []
        while pending:
            try:
                self.write(pending)
                self._down_since = None
                return final
            except StoreRefused as exc:
                final += [x for x in exc.refused if x[1] != UNAVAILABLE]
                pending = [r for r, reason, _ in exc.refused if reason == UNAVAILABLE]
                cause: BaseException = exc.cause
            except Exception as exc:  # e.g. a connection error: the whole batch's fate is unknown, all again
                cause = exc
            if not pending:
                break
            self._down_since = self._down_since or time.monotonic()
            left = self.retry_s - (time.monotonic() - self._down_since)
            if left <= 0:
                log.warning("%s refused %d rows for %.0fs: dead-lettered", self.store, len(pending), self.retry_s)
                return final + [(r, UNAVAILABLE, self._detail(cause)) for r in pending]
            log.warning("%s refused %d rows (%s); retrying in %.1fs", self.store, len(pending), cause, min(delay, left))
            time.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)
        return final

    def _detail(self, cause: BaseException) -> str:
        return f"{self.store}: {type(cause).__name__}: {cause}"[:1000]

    def write(self, rows: list[FeatureRow]) -> None:
        raise NotImplementedError


class OnlineWriter(StoreWriter):
    store = "online store (Redis)"

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        ttl_seconds: dict[str, int],
        run_id: str,
        retry_s: float = STORE_RETRY_SECONDS,
        file_source: bool = False,
    ) -> None:
        super().__init__(run_id, retry_s, file_source)
        self.redis_url, self.prefix, self.ttl_seconds = redis_url, prefix, ttl_seconds
        self.written = RunCounter(run_id, "online_written")
        self.stale = RunCounter(run_id, "online_stale")
        self._store: Any = None

    def setup(self) -> None:
        from app.featurestore.online import registry_online_store
        from app.featurestore.redis_connect import redis_target

        # redis-py connects on the first command: a Redis down now is a refused write, not a failed setup.
        client = redis_target(self.redis_url).connect()
        self._store = registry_online_store(client, self.prefix, self.ttl_seconds, default_registry())

    def write(self, rows: list[FeatureRow]) -> None:
        from app.featurestore.online import StoreWriteError

        failed: list[FeatureRow] = []
        cause: BaseException | None = None
        try:
            result = self._store.write_rows(rows)
        except StoreWriteError as exc:
            result, failed, cause = exc.done, exc.failed, exc.cause
        self.written.inc(result.written)
        self.stale.inc(result.stale)
        conflict = f"{self.store}: the key holds a value of another type than the documented string"
        refused = [(r, UNAVAILABLE, self._detail(cause)) for r in failed if cause is not None]
        refused += [(r, "store_conflict", conflict) for r in result.conflicts]
        if refused:
            raise StoreRefused(refused, cause or ValueError(conflict))


class ParquetWriter(StoreWriter):
    store = "offline store (Parquet)"

    def __init__(
        self,
        root: str,
        run_id: str,
        retry_s: float = STORE_RETRY_SECONDS,
        file_source: bool = False,
    ) -> None:
        super().__init__(run_id, retry_s, file_source)
        self.root = root
        self.written = RunCounter(run_id, "offline_written")

    def setup(self) -> None:
        from app.featurestore.offline import ParquetOfflineStore

        self._store = ParquetOfflineStore(Path(self.root), default_registry())

    def write(self, rows: list[FeatureRow]) -> None:
        # One call per (entity, version, day): each is one file renamed into place, so a refused
        # group leaves nothing behind and the groups written are not written again on a retry.
        groups: dict[tuple[str, str, Any], list[FeatureRow]] = {}
        for r in rows:
            groups.setdefault((r.entity, r.version, r.event_time.astimezone(UTC).date()), []).append(r)
        refused: list[tuple[FeatureRow, str, str]] = []
        cause: BaseException | None = None
        for group in groups.values():
            try:
                self.written.inc(self._store.write_rows(group, datetime.now(UTC)))
            except OSError as exc:  # disk full, permission denied, ...
                cause = exc
                refused += [(r, UNAVAILABLE, self._detail(exc)) for r in group]
        if cause is not None:
            raise StoreRefused(refused, cause)


def bigquery_row(row: FeatureRow, ingest_time: datetime) -> dict[str, Any]:
    """A FeatureRow as a BigQuery JSON row (timestamps as RFC 3339, bytes as base64)."""
    import base64

    out: dict[str, Any] = {
        "entity_id": row.entity_id,
        "event_time": row.event_time.isoformat(),
        "ingest_time": ingest_time.isoformat(),
        "payload": base64.b64encode(row.payload).decode(),
    }
    for key, value in row.values.items():
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def bigquery_refused(entity: str, version: str, failed: Any) -> DeadLetter:
    """A row BigQuery refused for good, ``(table, row, errors)``, as the event it was: replayable."""
    import base64

    table, row, errors = failed
    messages = "; ".join(str(e.get("message", e)) for e in errors or [])[:800] or "no error given"
    return DeadLetter(
        "store_conflict",
        f"offline store (BigQuery {table}): {messages}",
        f"bigquery:{table}",
        entity,
        version,
        str(row.get("event_time", "")),
        base64.b64decode(row.get("payload", "")),
    )


class _CountRefusedFn(beam.DoFn):
    def __init__(self, run_id: str, entity: str, version: str, dead_form: Callable[[DeadLetter], Any]) -> None:
        self.entity, self.version, self.dead_form = entity, version, dead_form
        self.refused = RunCounter(run_id, "rejected_store_conflict")

    def process(self, failed: Any) -> Iterator[Any]:
        self.refused.inc()
        yield self.dead_form(bigquery_refused(self.entity, self.version, failed))


class WriteOfflineBigQuery(beam.PTransform):
    """Streaming inserts (``bigquery_write.WRITE_METHOD``, which the cost estimate prices) into
    ``<dataset>.<entity>_<version>``, one sink per entity version; the output is the dead letters
    of the rows BigQuery refused.

    Tables are created (partitioned by event date) by the Pulumi program, hence CREATE_NEVER.
    Transient insert errors are retried (the bundle is held meanwhile); a row refused for good is
    dead-lettered as ``store_conflict`` with BigQuery's error, never dropped.
    """

    def __init__(
        self, project: str, dataset: str, run_id: str = "", dead_form: Callable[[DeadLetter], Any] = as_dead_letter
    ) -> None:
        super().__init__()
        self.project, self.dataset, self.run_id, self.dead_form = project, dataset, run_id, dead_form

    def expand(self, rows: beam.PCollection) -> Any:
        from apache_beam.io.gcp.bigquery_tools import RetryStrategy

        from app.naming import Names

        refused = []
        for spec in default_registry().specs():
            entity, version = spec.entity, spec.version
            table = f"{self.project}:{self.dataset}.{Names.offline_table(entity, version)}"
            result = (
                rows
                | f"Only_{entity}_{version}"
                >> beam.Filter(lambda r, e=entity, v=version: (r.entity, r.version) == (e, v))
                | f"ToRow_{entity}_{version}" >> beam.Map(lambda r: bigquery_row(r, datetime.now(UTC)))
                | f"Write_{entity}_{version}"
                >> beam.io.WriteToBigQuery(
                    table=table,
                    create_disposition=beam.io.BigQueryDisposition.CREATE_NEVER,
                    write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND,
                    method=getattr(beam.io.WriteToBigQuery.Method, WRITE_METHOD),
                    insert_retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
                )
            )
            refused.append(
                result.failed_rows_with_errors
                | f"Refused_{entity}_{version}"
                >> beam.ParDo(_CountRefusedFn(self.run_id, entity, version, self.dead_form))
            )
        return refused | "AllRefused" >> beam.Flatten()
