"""Ingest and online-store benchmark: each figure beside a naive path measured in the same run.

- ``events_per_s``: events through the Beam ingest (DirectRunner) into Redis and Parquet, against a
  plain loop that writes each event on its own (one Redis round trip, one Parquet file per event).
- ``stream_events_per_s``: the first ``STREAM_EVENTS`` of them through the streaming ingest (what the
  demo runs: DirectRunner on the emulator, on a topic of its own), from the first event counted to
  the last; beside it the bounded figure of the same run. The DirectRunner pays a fixed cost per
  step and bundle (app/featurestore/beam_transforms.py), so this is the figure a change to the
  graph's shape moves.
- ``online_write_rows_per_s``: pipelined, chunked Lua writes against one round trip per row.
- ``online_read_100_p50_ms`` / ``_p99_ms``: 100 entities with one MGET against one GET each.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.featurestore.events import FeatureRow, event_attributes, from_json_line, json_line, process_event
from app.featurestore.local_stream import streaming_args
from app.featurestore.offline import ParquetOfflineStore
from app.featurestore.online import online_store
from app.featurestore.pipeline import run_bounded, run_streaming, stack_args, stop_streaming, summary_of
from app.featurestore.registry import default_registry
from app.featurestore.samples import sample_events
from app.local import clients
from app.local.clients import redis_client
from app.local.services import LocalState
from app.settings import StackSettings

BENCH_DB = 15  # a Redis database of its own, emptied before and after
STREAM_EVENTS = 1000  # ~20 s on a busy 2-core machine
STREAM_TIMEOUT_S = 300.0


def _percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.array(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _stream(settings: StackSettings, state: LocalState, url: str, offline: Path, events: list[Any]) -> float:
    """Events/s of the streaming ingest of ``events`` on a fresh topic, subscription and dead-letter topic."""
    os.environ["PUBSUB_EMULATOR_HOST"] = state.pubsub_host  # Beam's ReadFromPubSub finds the emulator so
    pub, sub = clients.publisher(state.pubsub_host), clients.subscriber(state.pubsub_host)
    tag, project = os.urandom(4).hex(), settings.gcp.project
    topic, dead = pub.topic_path(project, f"bench-{tag}"), pub.topic_path(project, f"bench-dlq-{tag}")
    subscription = sub.subscription_path(project, f"bench-{tag}")
    pub.create_topic(name=topic)
    pub.create_topic(name=dead)
    sub.create_subscription(name=subscription, topic=topic)
    result = None
    try:
        for f in [pub.publish(topic, m.SerializeToString(), **event_attributes(e, v, at)) for e, v, at, m in events]:
            f.result(timeout=60)
        argv = streaming_args(settings, state, subscription)
        argv[argv.index("--dead_letter_topic") + 1] = dead
        argv[argv.index("--redis_url") + 1] = url
        argv[argv.index("--offline_path") + 1] = str(offline)
        result, run_id = run_streaming(argv)
        first, deadline = None, time.monotonic() + STREAM_TIMEOUT_S
        while time.monotonic() < deadline:
            time.sleep(0.05)
            s = summary_of(run_id)
            done = s.accepted + s.rejected_total
            first = first or (time.perf_counter() if done else None)
            if done >= len(events) and s.online_written + s.online_stale + s.not_stored >= s.accepted:
                assert first is not None
                return len(events) / max(time.perf_counter() - first, 1e-9)
        raise RuntimeError(f"the streaming ingest counted {done} of {len(events)} events in {STREAM_TIMEOUT_S:.0f} s")
    finally:
        if result is not None:
            stop_streaming(result)
        sub.delete_subscription(subscription=subscription)
        pub.delete_topic(topic=topic)
        pub.delete_topic(topic=dead)


def run(settings: StackSettings, state: LocalState, users: int, reads: int) -> dict[str, Any]:
    registry = default_registry()
    url = state.redis_url.rsplit("/", 1)[0] + f"/{BENCH_DB}"
    r = redis_client(url)
    r.flushdb()
    events = list(sample_events(users, seed=3))
    out: dict[str, Any] = {
        "benchmark": "ingest",
        "users": users,
        "events": len(events),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "events.jsonl"
            path.write_text("\n".join(json_line(*e) for e in events) + "\n")
            t = time.perf_counter()
            summary = run_bounded(
                [
                    "--input",
                    str(path),
                    "--redis_url",
                    url,
                    "--offline_path",
                    f"{tmp}/offline",
                    *stack_args(settings),
                ]
            )
            elapsed = time.perf_counter() - t
            assert summary.accepted == len(events), summary
            out["events_per_s"] = round(len(events) / elapsed, 1)

            # Naive: the same work per event, each written on its own.
            r.flushdb()
            naive_n = min(len(events), 500)
            store = online_store(r, settings, registry)
            offline = ParquetOfflineStore(Path(tmp) / "naive", registry)
            lines = path.read_text().splitlines()[:naive_n]
            t = time.perf_counter()
            for i, line in enumerate(lines):
                row = process_event(from_json_line(line, f"l{i}"), registry)
                assert isinstance(row, FeatureRow)
                store.write_rows([row])
                offline.write_rows([row])
            out["events_per_s_naive"] = round(naive_n / (time.perf_counter() - t), 1)

            r.flushdb()
            streamed = events[:STREAM_EVENTS]
            out["stream_events"] = len(streamed)
            out["stream_events_per_s"] = round(_stream(settings, state, url, Path(tmp) / "stream", streamed), 1)

        rows = [process_event(from_json_line(json_line(*e), "x"), registry) for e in events]
        rows = [x for x in rows if isinstance(x, FeatureRow) and x.entity == "user_profile" and x.version == "v1"]
        r.flushdb()
        t = time.perf_counter()
        store.write_rows(rows)
        out["online_write_rows_per_s"] = round(len(rows) / (time.perf_counter() - t), 1)
        r.flushdb()
        t = time.perf_counter()
        for row in rows:
            store.write_rows([row])
        out["online_write_rows_per_s_naive"] = round(len(rows) / (time.perf_counter() - t), 1)

        features = registry.get("user_profile", "v1").online_features
        ids = [row.entity_id for row in rows]
        rng = np.random.default_rng(0)
        batches = [list(rng.choice(ids, size=100, replace=False)) for _ in range(reads)]
        for name, read in (("", store.read_matrix), ("_naive", store.read_matrix_naive)):
            for batch in batches[:20]:  # warm connections and layout caches
                read("user_profile", "v1", batch, features)
            samples = []
            for batch in batches if not name else batches[: max(reads // 10, 50)]:
                t = time.perf_counter()
                m = read("user_profile", "v1", batch, features)
                samples.append(time.perf_counter() - t)
                assert m.found.all()
            p50, p99 = _percentiles(samples)
            out[f"online_read_100_p50_ms{name}"] = round(p50, 3)
            out[f"online_read_100_p99_ms{name}"] = round(p99, 3)
    finally:
        r.flushdb()
        r.close()
    out["speedup"] = {
        "events_per_s": round(out["events_per_s"] / out["events_per_s_naive"], 1),
        "online_write_rows_per_s": round(out["online_write_rows_per_s"] / out["online_write_rows_per_s_naive"], 1),
        "online_read_100_p50": round(out["online_read_100_p50_ms_naive"] / out["online_read_100_p50_ms"], 1),
    }
    return out
