"""The trigger function: HTTP and Pub/Sub entry points over one plain function.

Deployed as a Cloud Function (gen2) with ``--entry-point http_trigger`` or ``pubsub_trigger``;
its settings come from the environment ``infra/training.py`` declares (``app.contracts.TriggerEnv``),
and it submits only what ``app.trigger.admission`` admits: the stack's own spec and parameters.
Locally ``trigger_pipeline`` is called with a ``LocalSubmitter`` and a ``FileLedger``, no admission.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from app.bounds import OutOfBounds, load_json
from app.contracts import TriggerEnv
from app.settings import LimitsConfig
from app.trigger.admission import StackPipeline
from app.trigger.ledger import Claim
from app.trigger.payload import (
    PayloadError,
    TriggerPayload,
    decode_pubsub_data,
    parse_payload,
    with_schedule_id,
)

MAX_BODY_BYTES = 256 * 1024  # a payload is a few kB
TRIGGER_LIMITS = LimitsConfig(max_message_bytes=MAX_BODY_BYTES)


class Submitter(Protocol):
    def submit(self, p: TriggerPayload) -> str: ...


class Ledger(Protocol):
    def claim(self, trigger_id: str, record: dict[str, Any]) -> Claim: ...
    def commit(self, trigger_id: str, record: dict[str, Any]) -> None: ...
    def release(self, trigger_id: str) -> None: ...


@dataclass(frozen=True)
class TriggerResult:
    # 200 submitted or already submitted; 400/413 a payload no retry can fix; 409 another delivery of
    # this id is submitting it right now; 503 the submit failed (the id is released: a retry submits)
    status: int
    body: dict[str, Any]


def trigger_pipeline(
    doc: Any, submitter: Submitter, ledger: Ledger, admit: Callable[[TriggerPayload], TriggerPayload] | None = None
) -> TriggerResult:
    """Parse, admit (the cloud's ``StackPipeline.admit``; locally nothing), claim the id, submit."""
    try:
        payload = parse_payload(doc)
        if admit is not None:
            payload = admit(payload)
    except PayloadError as exc:
        return TriggerResult(400, {"error": str(exc)})
    record = {"reason": payload.reason, "stack": payload.stack, "schedule": payload.schedule}
    claim = ledger.claim(payload.trigger_id, record)
    if claim == "committed":
        return TriggerResult(
            200,
            {"trigger_id": payload.trigger_id, "submitted": False, "detail": "this trigger id was already submitted"},
        )
    if claim == "busy":
        return TriggerResult(409, {"trigger_id": payload.trigger_id, "error": "being submitted by another delivery"})
    try:
        job = submitter.submit(payload)
    except Exception as exc:  # whatever the submitter raised: release the id, so the retry submits it
        ledger.release(payload.trigger_id)
        return TriggerResult(
            503, {"trigger_id": payload.trigger_id, "error": f"submit failed: {type(exc).__name__}: {exc}"}
        )
    ledger.commit(payload.trigger_id, {**record, "job": job})
    return TriggerResult(
        200, {"trigger_id": payload.trigger_id, "submitted": True, "job": job, "labels": payload.labels()}
    )


def read_body(data: bytes) -> Any:
    """The HTTP body as JSON within the limits, or ``PayloadError`` (413 for size, else 400)."""
    try:
        return load_json(data, TRIGGER_LIMITS, "the body")
    except OutOfBounds as exc:
        raise PayloadError(exc.detail, 413 if exc.reason == "too_large" else 400) from None


def event_payload(data: Any) -> Any:
    """The trigger payload inside a Pub/Sub CloudEvent's data, or ``PayloadError`` (400)."""
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("data"), str | bytes):
        raise PayloadError("the CloudEvent carries no Pub/Sub message with data")
    publish_time = message.get("publishTime")
    return with_schedule_id(
        decode_pubsub_data(message["data"], TRIGGER_LIMITS), publish_time if isinstance(publish_time, str) else ""
    )


def _admission() -> StackPipeline:
    return StackPipeline.from_env(TriggerEnv.from_env(os.environ))


def _cloud(admission: StackPipeline) -> tuple[Submitter, Ledger, Callable[[TriggerPayload], TriggerPayload]]:
    from google.cloud import storage

    from app.trigger.ledger import GcsLedger
    from app.trigger.submit import VertexSubmitter, gcs_reader

    env = TriggerEnv.from_env(os.environ)
    client = storage.Client(project=env.project)
    submitter = VertexSubmitter(
        env.project, env.region, env.pipeline_service_account, env.pipeline_root, admission, gcs_reader(client)
    )
    return submitter, GcsLedger(client.bucket(env.ledger_bucket)), admission.admit


try:
    import functions_framework
except ImportError:  # pragma: no cover - the module stays importable without the framework
    functions_framework = None


def http_trigger(request: Any) -> tuple[str, int, dict[str, str]]:
    """HTTP entry: the request body is the payload (at most ``MAX_BODY_BYTES``, never read further)."""
    headers = {"Content-Type": "application/json"}
    try:
        if (request.content_length or 0) > MAX_BODY_BYTES:
            raise PayloadError(f"the body of {request.content_length} bytes; at most {MAX_BODY_BYTES}", 413)
        doc = read_body(request.stream.read(MAX_BODY_BYTES + 1))
        payload = parse_payload(doc)
        admission = _admission()
        admission.admit(payload)  # refuse before touching any cloud client
    except PayloadError as exc:
        return json.dumps({"error": str(exc)}), exc.status, headers
    result = trigger_pipeline(doc, *_cloud(admission))
    return json.dumps(result.body), result.status, headers


def pubsub_trigger(cloud_event: Any) -> None:
    """Pub/Sub entry (Eventarc CloudEvent): the message data is the payload. A bad event or payload
    is logged and answered 4xx: a retry could not fix it. A failed submit answers 5xx (retried)."""
    try:
        doc = event_payload(cloud_event.data)
        payload = parse_payload(doc)
        admission = _admission()
        admission.admit(payload)
    except PayloadError as exc:
        print(json.dumps({"severity": "ERROR", "error": str(exc)}))
        _answer(exc.status, str(exc))
        return
    result = trigger_pipeline(doc, *_cloud(admission))
    print(json.dumps({"severity": "INFO" if result.status == 200 else "ERROR", **result.body}))
    if result.status != 200:
        _answer(result.status, str(result.body.get("error")))


def _answer(status: int, description: str) -> None:
    """End a CloudEvent call with ``status`` (a return answers 200)."""
    import flask

    flask.abort(status, description=description)


if functions_framework is not None:
    http_trigger = functions_framework.http(http_trigger)
    pubsub_trigger = functions_framework.cloud_event(pubsub_trigger)
