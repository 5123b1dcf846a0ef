"""The prediction sink: lands prediction records in the offline store (locally; BigQuery
subscriptions do this in the cloud). Appends Parquet under ``<offline>/predictions/event_date=...``
and acks only what was written."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from app.serving.messages import Prediction

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
    except Exception:  # the batch's writer failed on some record: find it
        landed = 0
        for data, p in good:
            try:
                landed += write_predictions(root, [p])
            except Exception as exc:
                bad.append(_rejected(data, f"not writable: {type(exc).__name__}: {exc}"))
        return landed, bad


def run_sink(subscriber: Any, subscription: str, root: Path, stop: threading.Event, batch: int = 500) -> int:
    """Pull, write, ack until ``stop``; returns how many records were landed."""
    landed = 0
    while not stop.is_set():
        resp = subscriber.pull(subscription=subscription, max_messages=batch, timeout=2)
        msgs = resp.received_messages
        if not msgs:
            continue
        n, bad = land(root, [m.message.data for m in msgs])
        landed += n
        if bad:  # kept beside the table with the reason, not dropped
            with open(root / f"{PREDICTIONS_TABLE}.rejected.jsonl", "a") as f:
                f.write("\n".join(bad) + "\n")
        subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in msgs])
    return landed
