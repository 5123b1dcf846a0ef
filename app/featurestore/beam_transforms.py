"""Beam transforms of the ingest job: decode and validate once, then write both stores.

``DecodeFeatureEvents`` is shared by the bounded (file) and streaming (Pub/Sub) sources. Writers
buffer a bundle and write it in one batch, so a bundle is one Redis pipeline and one Parquet file.
Counters (app/featurestore/progress.py) feed the run summary and the Dataflow job's metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from app.bounds import DEFAULT_LIMITS
from app.featurestore.events import REASONS, DeadLetter, FeatureRow, RawEvent, process_event
from app.featurestore.progress import RunCounter
from app.featurestore.registry import Registry, default_registry
from app.settings import LimitsConfig

DEAD = "dead_letter"


class ProcessEventFn(beam.DoFn):
    def __init__(self, run_id: str, limits: LimitsConfig = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.accepted = RunCounter(run_id, "accepted")
        self.rejected = {r: RunCounter(run_id, f"rejected_{r}") for r in REASONS}
        self._registry: Registry | None = None

    def setup(self) -> None:
        self._registry = default_registry()

    def process(self, raw: RawEvent) -> Iterator[Any]:
        assert self._registry is not None
        result = process_event(raw, self._registry, limits=self.limits)
        if isinstance(result, DeadLetter):
            self.rejected[result.reason].inc()
            yield TaggedOutput(DEAD, result)
        else:
            self.accepted.inc()
            yield result


class DecodeFeatureEvents(beam.PTransform):
    """RawEvent -> (FeatureRow, DeadLetter) outputs; nothing is dropped."""

    def __init__(self, run_id: str = "", limits: LimitsConfig = DEFAULT_LIMITS) -> None:
        super().__init__()
        self.run_id, self.limits = run_id, limits

    def expand(self, events: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        fn = ProcessEventFn(self.run_id, self.limits)
        return events | "Process" >> beam.ParDo(fn).with_outputs(DEAD, main="rows")


class _BufferedWriteFn(beam.DoFn):
    """Collects a bundle's rows and hands them to ``flush`` in one call."""

    def start_bundle(self) -> None:
        self._rows: list[FeatureRow] = []

    def process(self, row: FeatureRow) -> None:
        self._rows.append(row)

    def finish_bundle(self) -> None:
        if self._rows:
            self.flush(self._rows)
        self._rows = []

    def flush(self, rows: list[FeatureRow]) -> None:
        raise NotImplementedError


class WriteOnlineFn(_BufferedWriteFn):
    def __init__(self, redis_url: str, prefix: str, ttl_seconds: dict[str, int], run_id: str) -> None:
        self.redis_url, self.prefix, self.ttl_seconds = redis_url, prefix, ttl_seconds
        self.written = RunCounter(run_id, "online_written")
        self.stale = RunCounter(run_id, "online_stale")

    def setup(self) -> None:
        from app.featurestore.online import registry_online_store
        from app.featurestore.redis_connect import redis_target

        client = redis_target(self.redis_url).connect()
        self._store = registry_online_store(client, self.prefix, self.ttl_seconds, default_registry())

    def flush(self, rows: list[FeatureRow]) -> None:
        result = self._store.write_rows(rows)
        self.written.inc(result.written)
        self.stale.inc(result.stale)


class WriteParquetFn(_BufferedWriteFn):
    def __init__(self, root: str, run_id: str) -> None:
        self.root = root
        self.written = RunCounter(run_id, "offline_written")

    def setup(self) -> None:
        from app.featurestore.offline import ParquetOfflineStore

        self._store = ParquetOfflineStore(Path(self.root), default_registry())

    def flush(self, rows: list[FeatureRow]) -> None:
        self.written.inc(self._store.write_rows(rows, datetime.now(UTC)))


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


class WriteOfflineBigQuery(beam.PTransform):
    """Streaming inserts into ``<dataset>.<entity>_<version>``, one sink per entity version.

    Tables are created (partitioned by event date) by the Pulumi program, hence CREATE_NEVER.
    """

    def __init__(self, project: str, dataset: str) -> None:
        super().__init__()
        self.project, self.dataset = project, dataset

    def expand(self, rows: beam.PCollection) -> Any:
        from app.naming import Names

        for spec in default_registry().specs():
            entity, version = spec.entity, spec.version
            table = f"{self.project}:{self.dataset}.{Names.offline_table(entity, version)}"
            (
                rows
                | f"Only_{entity}_{version}"
                >> beam.Filter(lambda r, e=entity, v=version: (r.entity, r.version) == (e, v))
                | f"ToRow_{entity}_{version}" >> beam.Map(lambda r: bigquery_row(r, datetime.now(UTC)))
                | f"Write_{entity}_{version}"
                >> beam.io.WriteToBigQuery(
                    table=table,
                    create_disposition=beam.io.BigQueryDisposition.CREATE_NEVER,
                    write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND,
                    method=beam.io.WriteToBigQuery.Method.STREAMING_INSERTS,
                )
            )
        return rows.pipeline


def dead_letter_message(dead: DeadLetter) -> Any:
    from apache_beam.io.gcp.pubsub import PubsubMessage

    return PubsubMessage(data=dead.raw, attributes=dead.attributes())
