"""The prediction sink: lands prediction records in the offline store (locally; BigQuery
subscriptions do this in the cloud). Appends Parquet under ``<offline>/predictions/event_date=...``
and acks only what was written, or rejected with its reason beside the table.

A folder that refuses writes (disk full, read-only, not a folder) is no record's fault: the batch
is not acked, its leases are extended while the write is retried with backoff, and it is handed
back on a stop. A retried batch may land a record twice; readers keep the latest record per
request and variant (``app/trigger/served.py``)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from app.serving.messages import Prediction

log = logging.getLogger("rerank.sink")
PREDICTIONS_TABLE = "predictions"
SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("user_id", pa.string()),
        ("surface", pa.string()),
        ("variant", pa.string()),
        ("model_id", pa.string()),
        ("candidate_ids", pa.list_(pa.string())),
        ("scores", pa.list_(pa.float64())),
        ("requested_at", pa.timestamp("us", tz="UTC")),
        ("scored_at", pa.timestamp("us", tz="UTC")),
    ]
)


def write_predictions(root: Path, predictions: Sequence[Prediction]) -> int:
    by_day: dict[str, list[dict[str, Any]]] = {}
    for p in predictions:
        requested = datetime.fromisoformat(p.requested_at)
        by_day.setdefault(requested.astimezone(UTC).date().isoformat(), []).append(
            {
                "request_id": p.request_id,
                "user_id": p.user_id,
                "surface": p.surface,
                "variant": p.variant,
                "model_id": p.model_id,
                "candidate_ids": list(p.candidate_ids),
                "scores": list(p.scores),
                "requested_at": requested,
                "scored_at": datetime.fromisoformat(p.scored_at),
            }
        )
    for day, rows in by_day.items():
        folder = root / PREDICTIONS_TABLE / f"event_date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{uuid.uuid4().hex[:12]}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), folder / f".{name}.tmp")
        (folder / f".{name}.tmp").rename(folder / name)
    return len(predictions)


def _rejected(data: bytes, reason: str) -> str:
    return json.dumps({"reason": reason, "raw_base64": base64.b64encode(data).decode()})


def land(root: Path, datas: Sequence[bytes]) -> tuple[int, list[str]]:
    """Write the records among ``datas``; returns how many landed and a rejection line for each other one.

    A record that parses but still cannot be written is found by writing one record at a time, so it
    never takes its batch down with it.
    """
    good: list[tuple[bytes, Prediction]] = []
    bad: list[str] = []
    for data in datas:
        try:
            good.append((data, Prediction.from_json(data)))
        except ValueError as exc:
            bad.append(_rejected(data, f"not a prediction record: {exc}"))
    try:
        return write_predictions(root, [p for _, p in good]), bad
    except OSError:
        raise  # the folder refuses writes: no record is to blame (the caller retries)
    except Exception:  # the batch's writer failed on some record: find it
        landed = 0
        for data, p in good:
            try:
                landed += write_predictions(root, [p])
            except OSError:
                raise
            except Exception as exc:
                bad.append(_rejected(data, f"not writable: {type(exc).__name__}: {exc}"))
        return landed, bad


def _land_and_keep_rejects(root: Path, datas: Sequence[bytes]) -> int:
    n, bad = land(root, datas)
    if bad:  # kept beside the table with the reason, not dropped
        with open(root / f"{PREDICTIONS_TABLE}.rejected.jsonl", "a") as f:
            f.write("\n".join(bad) + "\n")
    return n


def run_sink(
    subscriber: Any,
    subscription: str,
    root: Path,
    stop: threading.Event,
    batch: int = 500,
    lease_s: int = 60,
    backoff_max_s: float = 10.0,
) -> int:
    """Pull, write, ack until ``stop``; returns how many records were landed."""
    landed = 0
    while not stop.is_set():
        resp = subscriber.pull(subscription=subscription, max_messages=batch, timeout=2)
        msgs = resp.received_messages
        if not msgs:
            continue
        ids, delay = [m.ack_id for m in msgs], 0.5
        while True:
            try:
                landed += _land_and_keep_rejects(root, [m.message.data for m in msgs])
                break
            except OSError as exc:
                log.warning(
                    "offline folder refuses writes (%s); %d records held, retrying in %.1fs", exc, len(ids), delay
                )
                subscriber.modify_ack_deadline(subscription=subscription, ack_ids=ids, ack_deadline_seconds=lease_s)
                if stop.wait(delay):  # stopping: hand the batch back, acked by nobody
                    subscriber.modify_ack_deadline(subscription=subscription, ack_ids=ids, ack_deadline_seconds=0)
                    return landed
                delay = min(delay * 2, backoff_max_s)
        subscriber.acknowledge(subscription=subscription, ack_ids=ids)
    return landed
