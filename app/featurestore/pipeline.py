"""The ingest job: read feature events (file or Pub/Sub), decode and validate, write both stores.

Runs on the DirectRunner locally (``rerank ingest``) and on Dataflow from the flex template in
``app/featurestore/flex_template/`` (``python -m app.featurestore.pipeline --runner=DataflowRunner
--streaming --subscription=... --dead_letter_topic=... --redis_url=... --bigquery_dataset=...``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from app.bounds import DEFAULT_LIMITS
from app.featurestore.beam_transforms import (
    DEAD,
    SETTLED,
    STORE_REASONS,
    STORE_RETRY_SECONDS,
    DecodeFeatureEvents,
    OnlineWriter,
    ParquetWriter,
    StoreWriter,
    WriteOfflineBigQuery,
    WriteStoresFn,
    as_raw_event,
    dead_letter_line,
    dead_letter_message,
    pubsub_event,
)
from app.featurestore.events import RawEvent, from_json_line, read_delimited
from app.featurestore.progress import Progress, tally
from app.featurestore.template_spec import stack_parameters
from app.output_paths import OutputPathError, has_glob_characters, output_file
from app.settings import LimitsConfig, StackSettings


class IngestConfigError(ValueError):
    pass


class DeadLettersNotPlaced(RuntimeError):
    """The run ended but its dead-letter file could not be moved to its path; it is kept elsewhere."""


class IngestOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument(
            "--input", default=None, help="bounded source: a .jsonl file or a .pb length-delimited file"
        )
        parser.add_argument("--subscription", default=None, help="streaming source: projects/P/subscriptions/S")
        parser.add_argument("--dead_letter_path", default=None, help="bounded runs: JSON lines file of rejects")
        parser.add_argument("--dead_letter_topic", default=None, help="streaming runs: projects/P/topics/T")
        parser.add_argument("--redis_url", default=None, help="online store, e.g. redis://10.0.0.3:6379/0")
        parser.add_argument("--redis_prefix", default=None, help="online key prefix of the stack, e.g. rerank:dev")
        parser.add_argument(
            "--online_ttl_seconds",
            default=None,
            help="online TTL per entity type: user_profile=2592000,user_activity=604800",
        )
        parser.add_argument("--offline_path", default=None, help="offline store as Parquet under this folder")
        parser.add_argument("--bigquery_dataset", default=None, help="offline store in BigQuery: PROJECT.DATASET")
        parser.add_argument("--run_id", default="", help="names this run's progress tally (set by the launcher)")
        parser.add_argument(
            "--input_limits", default=None, help="the stack's input bounds as JSON (settings limits; see stack_args)"
        )
        parser.add_argument(
            "--store_retry_seconds",
            type=float,
            default=STORE_RETRY_SECONDS,
            help="how long a writer retries a store that refuses writes before dead-lettering (store_unavailable)",
        )


@dataclass
class IngestSummary:
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    online_written: int = 0
    online_stale: int = 0
    offline_written: int = 0
    dead_letter_path: str | None = None
    stores_settled: int = 0  # accepted rows the store step has finished with (written or dead-lettered)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def not_stored(self) -> int:
        """Events a store refused (dead-lettered as store_unavailable or store_conflict): never a clean run."""
        return sum(n for reason, n in self.rejected.items() if reason in STORE_REASONS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected_total,
            "rejected_by_reason": self.rejected,
            "online_written": self.online_written,
            "online_stale": self.online_stale,
            "offline_written": self.offline_written,
            "not_stored": self.not_stored,
            "dead_letter_path": self.dead_letter_path,
        }


def check_options(opts: IngestOptions) -> None:
    if bool(opts.input) == bool(opts.subscription):
        raise IngestConfigError("give exactly one source: --input FILE (bounded) or --subscription NAME (streaming)")
    if opts.input and not Path(opts.input).is_file():
        raise IngestConfigError(f"--input {opts.input}: no such file")
    if opts.input and Path(opts.input).suffix not in (".jsonl", ".pb"):
        raise IngestConfigError(f"--input {opts.input}: expected a .jsonl or .pb (length-delimited) file")
    if opts.subscription and not opts.dead_letter_topic:
        raise IngestConfigError("streaming ingest needs --dead_letter_topic for rejected events")
    if not opts.redis_url:
        raise IngestConfigError("--redis_url is required (the online store)")
    if not opts.redis_prefix or not opts.online_ttl_seconds:
        raise IngestConfigError("--redis_prefix and --online_ttl_seconds are required (see stack_args)")
    parse_ttls(opts.online_ttl_seconds)
    parse_limits(opts.input_limits)
    if bool(opts.offline_path) == bool(opts.bigquery_dataset):
        raise IngestConfigError("give exactly one offline store: --offline_path DIR or --bigquery_dataset P.D")
    if opts.bigquery_dataset and "." not in opts.bigquery_dataset:
        raise IngestConfigError(f"--bigquery_dataset {opts.bigquery_dataset}: expected PROJECT.DATASET")


def parse_limits(text: str | None) -> LimitsConfig:
    if not text:
        return DEFAULT_LIMITS
    try:
        return LimitsConfig.model_validate_json(text)
    except ValueError as exc:
        raise IngestConfigError(f"--input_limits: {str(exc).splitlines()[0]}") from None


def parse_ttls(text: str) -> dict[str, int]:
    ttls: dict[str, int] = {}
    for item in filter(None, text.split(",")):
        entity, _, seconds = item.partition("=")
        if not entity or not seconds.isdigit() or int(seconds) <= 0:
            raise IngestConfigError(f"--online_ttl_seconds: {item!r} is not ENTITY=SECONDS")
        ttls[entity.strip()] = int(seconds)
    return ttls


def stack_args(settings: StackSettings) -> list[str]:
    return [arg for key, value in stack_parameters(settings).items() for arg in (f"--{key}", value)]


def read_file_events(path: str, limits: LimitsConfig = DEFAULT_LIMITS) -> Iterator[RawEvent]:
    name = Path(path).name
    if path.endswith(".pb"):
        with open(path, "rb") as f:
            yield from read_delimited(f, name)
        return
    # Bytes, not text: a line that is not UTF-8 is dead-lettered with the bytes it had.
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield from_json_line(line.rstrip(b"\r\n"), f"{name}:{lineno}", limits)


def build(p: beam.Pipeline, opts: IngestOptions) -> None:
    limits = parse_limits(opts.input_limits)
    # Every producer of dead letters emits them in the sink's form, so the sink takes their Flatten
    # as it is: no conversion step per producer (each step costs the DirectRunner per bundle).
    dead_form = dead_letter_line if opts.input else dead_letter_message
    if opts.input:
        events = (
            p
            | "Files" >> beam.Create([opts.input])
            | "ReadEvents" >> beam.FlatMap(read_file_events, limits)
            | "Spread" >> beam.Reshuffle()
        )
        source = as_raw_event
    else:
        events = p | "ReadPubSub" >> beam.io.ReadFromPubSub(subscription=opts.subscription, with_attributes=True)
        source = pubsub_event  # decoded in the decoder's step, not a step of its own
    outputs = events | "Decode" >> DecodeFeatureEvents(opts.run_id, limits, source, dead_form)
    rows, dead_parts = outputs.rows, [outputs[DEAD]]
    retry_s, from_file = opts.store_retry_seconds, bool(opts.input)
    ttls = parse_ttls(opts.online_ttl_seconds)
    writers: list[StoreWriter] = [
        OnlineWriter(opts.redis_url, opts.redis_prefix, ttls, opts.run_id, retry_s, from_file)
    ]
    if opts.offline_path:
        writers.append(ParquetWriter(opts.offline_path, opts.run_id, retry_s, from_file))
    # What a store refused is dead-lettered with the decoder's rejects.
    stores = rows | "WriteStores" >> beam.ParDo(WriteStoresFn(opts.run_id, writers, dead_form)).with_outputs(
        DEAD, main="unused"
    )
    dead_parts.append(stores[DEAD])
    if opts.bigquery_dataset:
        project, dataset = opts.bigquery_dataset.split(".", 1)
        dead_parts.append(rows | "WriteOffline" >> WriteOfflineBigQuery(project, dataset, opts.run_id, dead_form))
    dead = dead_parts | "AllDead" >> beam.Flatten()
    if opts.input:
        # Beam's file sink reads its path as a glob and clears what matches: it only ever gets a
        # file in a folder of our own (run_bounded), never the user's path.
        if has_glob_characters(opts.dead_letter_path):
            raise IngestConfigError(f"dead letters are staged at a glob-free path, got {opts.dead_letter_path!r}")
        dead | "WriteDead" >> beam.io.WriteToText(opts.dead_letter_path, shard_name_template="", num_shards=1)
    else:
        dead | "PublishDead" >> beam.io.WriteToPubSub(opts.dead_letter_topic, with_attributes=True)


def summary_of(run_id: str, dead_letter_path: str | None = None) -> IngestSummary:
    """The counts of a run launched from this process, so far."""
    totals = tally(run_id)
    rejected = {k.removeprefix("rejected_"): v for k, v in totals.items() if k.startswith("rejected_") and v}
    return IngestSummary(
        totals.get("accepted", 0),
        rejected,
        totals.get("online_written", 0),
        totals.get("online_stale", 0),
        totals.get("offline_written", 0),
        dead_letter_path,
        totals.get(SETTLED, 0),
    )


def parse_options(argv: Sequence[str]) -> IngestOptions:
    opts = PipelineOptions(list(argv)).view_as(IngestOptions)
    check_options(opts)
    if not opts.run_id:
        opts.run_id = uuid.uuid4().hex
    if opts.input and not opts.dead_letter_path:
        opts.dead_letter_path = f"{opts.input}.dead-letter.jsonl"
    if opts.subscription:
        opts.view_as(StandardOptions).streaming = True
    return opts


@contextlib.contextmanager
def _progress_of(run_id: str, every_s: float = 10.0) -> Iterator[None]:
    """Events processed so far, their rate (stderr: a bar on a terminal, a line per ``every_s`` in logs)."""
    stop = threading.Event()
    progress = Progress("ingest", unit="events", every_s=every_s)

    def poll() -> None:
        while not stop.wait(min(every_s, 1.0)):
            s = summary_of(run_id)
            progress.advance(s.accepted + s.rejected_total - progress.done)

    watcher = threading.Thread(target=poll, name="ingest-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        s = summary_of(run_id)
        progress.done = s.accepted + s.rejected_total
        progress.finish()


def run_bounded(argv: Sequence[str], force: bool = False) -> IngestSummary:
    """Run a bounded ingest to completion and summarise it. The dead-letter file is checked before
    the run (``app.output_paths``: never an existing file unless ``force``, never the input, never a
    folder) and written only when something was rejected."""
    opts = parse_options(argv)
    if not opts.input:
        raise IngestConfigError("run_bounded needs --input")
    try:
        target = output_file("--dead-letter", opts.dead_letter_path, force=force, inputs=[opts.input])
    except OutputPathError as exc:
        raise IngestConfigError(str(exc)) from None
    sink_dir = Path(tempfile.mkdtemp(prefix="rerank-dead-letters-"))
    keep = False
    try:
        opts.dead_letter_path = str(sink_dir / "dead-letter.jsonl")
        with _progress_of(opts.run_id), beam.Pipeline(options=opts) as p:
            build(p, opts)
        summary = summary_of(opts.run_id, None)
        if summary.rejected_total:
            try:
                with target.staged() as staged:
                    shutil.move(opts.dead_letter_path, staged)
            except OutputPathError as exc:
                raise DeadLettersNotPlaced(f"{summary.rejected_total} dead letters: {exc}") from None
            except OSError as exc:
                keep = True
                raise DeadLettersNotPlaced(
                    f"{summary.rejected_total} dead letters are kept in {opts.dead_letter_path}: {exc}"
                ) from None
            summary.dead_letter_path = str(target.path)
    finally:
        if not keep:
            shutil.rmtree(sink_dir, ignore_errors=True)
    return summary


def run_streaming(argv: Sequence[str]) -> tuple[Any, str]:
    """Start a streaming ingest; returns the PipelineResult (DirectRunner: runs until cancelled) and run id."""
    opts = parse_options(argv)
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        from app.local.clients import lift_emulator_message_limit

        lift_emulator_message_limit()
    p = beam.Pipeline(options=opts)
    build(p, opts)
    return p.run(), opts.run_id


def stop_streaming(result: Any, wait_s: float = 2.0) -> None:
    """Cancel a local streaming run without waiting out its blocked pull.

    The DirectRunner's single worker sits in a Pub/Sub pull with a 30 s deadline while the
    subscription is idle, and ``cancel()`` waits for it. Its threads are daemons, so cancelling in
    the background lets the caller go on (or exit) at once. The DirectRunner acks messages when it
    pulls them (Beam's ``_PubSubReadEvaluator``, before the bundle runs), so an event pulled but not
    yet stored or dead-lettered when the run stops is lost locally. So the launcher stops only once
    the subscription has gone quiet (``--idle-exit``) and the store step has finished with every
    event the decoder accepted (``stores_settled``): a store outage can hold rows in the writer's
    retries for ``--store_retry_seconds``, longer than the idle window. An event published at the
    very moment of the stop can still be lost locally; Dataflow acks only committed bundles.
    """
    import threading

    canceller = threading.Thread(target=result.cancel, name="cancel-ingest", daemon=True)
    canceller.start()
    canceller.join(wait_s)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the Dataflow flex template launcher."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a.startswith("--subscription") for a in args):
        run_streaming(args)  # a flex-template launcher must return once the job is submitted
    else:
        print(json.dumps(run_bounded(args).to_dict()))


if __name__ == "__main__":
    main()
