"""The trigger function: HTTP and Pub/Sub entry points over one plain function.

Deployed as a Cloud Function (gen2) with ``--entry-point http_trigger`` or ``pubsub_trigger``;
its settings come from the environment, read once by ``get_env`` (PROJECT, REGION,
PIPELINE_SERVICE_ACCOUNT, PIPELINE_ROOT, LEDGER_BUCKET). Locally ``trigger_pipeline`` is called
with a ``LocalSubmitter`` and a ``FileLedger``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Protocol

from app.trigger.payload import (
    PayloadError,
    TriggerPayload,
    decode_pubsub_data,
    parse_payload,
    with_schedule_id,
)


class Submitter(Protocol):
    def submit(self, p: TriggerPayload) -> str: ...


class Ledger(Protocol):
    def claim(self, trigger_id: str, record: dict[str, Any]) -> bool: ...


@dataclass(frozen=True)
class TriggerResult:
    status: int  # 200 submitted, 200 duplicate (nothing submitted), 400 bad payload
    body: dict[str, Any]


def trigger_pipeline(doc: Any, submitter: Submitter, ledger: Ledger) -> TriggerResult:
    try:
        payload = parse_payload(doc)
    except PayloadError as exc:
        return TriggerResult(400, {"error": str(exc)})
    record = {"reason": payload.reason, "stack": payload.stack, "schedule": payload.schedule}
    if not ledger.claim(payload.trigger_id, record):
        return TriggerResult(
            200,
            {"trigger_id": payload.trigger_id, "submitted": False, "detail": "this trigger id was already submitted"},
        )
    job = submitter.submit(payload)
    return TriggerResult(
        200, {"trigger_id": payload.trigger_id, "submitted": True, "job": job, "labels": payload.labels()}
    )


def get_env() -> dict[str, str]:
    required = ("PROJECT", "REGION", "PIPELINE_SERVICE_ACCOUNT", "PIPELINE_ROOT", "LEDGER_BUCKET")
    missing = [k for k in required if not os.environ.get(k)]
    if missing:
        raise RuntimeError(f"the trigger function needs environment variable(s) {missing}")
    return {k: os.environ[k] for k in required}


def _cloud() -> tuple[Submitter, Ledger]:
    from google.cloud import storage

    from app.trigger.ledger import GcsLedger
    from app.trigger.submit import VertexSubmitter

    env = get_env()
    return (
        VertexSubmitter(env["PROJECT"], env["REGION"], env["PIPELINE_SERVICE_ACCOUNT"], env["PIPELINE_ROOT"]),
        GcsLedger(storage.Client(project=env["PROJECT"]).bucket(env["LEDGER_BUCKET"])),
    )


try:
    import functions_framework
except ImportError:  # pragma: no cover - the module stays importable without the framework
    functions_framework = None


def http_trigger(request: Any) -> tuple[str, int, dict[str, str]]:
    """HTTP entry: the request body is the payload."""
    doc = request.get_json(silent=True)
    try:
        parse_payload(doc if doc is not None else "not JSON")  # refuse before touching any cloud client
    except PayloadError as exc:
        return json.dumps({"error": str(exc)}), 400, {"Content-Type": "application/json"}
    result = trigger_pipeline(doc, *_cloud())
    return json.dumps(result.body), result.status, {"Content-Type": "application/json"}


def pubsub_trigger(cloud_event: Any) -> None:
    """Pub/Sub entry (Eventarc CloudEvent): the message data is the payload. A bad payload is
    logged and acknowledged (returning normally): a retry could not fix it."""
    try:
        message = cloud_event.data["message"]
        doc = with_schedule_id(decode_pubsub_data(message["data"]), message.get("publishTime", ""))
    except PayloadError as exc:
        print(json.dumps({"severity": "ERROR", "error": str(exc)}))
        return
    result = trigger_pipeline(doc, *_cloud())
    print(json.dumps({"severity": "INFO" if result.status == 200 else "ERROR", **result.body}))


if functions_framework is not None:
    http_trigger = functions_framework.http(http_trigger)
    pubsub_trigger = functions_framework.cloud_event(pubsub_trigger)
