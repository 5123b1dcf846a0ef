"""The trigger payload: what a schedule or a drift check asks the trigger function to submit.

Pub/Sub message data (JSON) or HTTP body::

    {"trigger_id": "drift-2026-03-12", "reason": "feature_drift: ...", "stack": "dev",
     "schedule": "nightly",                       # optional: which schedule fired
     "template_uri": "gs://bucket/pipelines/rerank-training.yaml",  # or "pipeline_spec": {...} (local only)
     "parameters": {"offline_uri": "bq://p.d", ...}, "figures": {...}}   # figures: optional evidence

This is the shape; what a cloud stack's function agrees to submit is narrower
(``app.trigger.admission``: its own stack, spec and published parameters).
"""

from __future__ import annotations

import base64
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.bounds import DEFAULT_LIMITS, OutOfBounds, load_json
from app.settings import LimitsConfig


class PayloadError(ValueError):
    """A payload that cannot be submitted: the entry answers ``status`` (400, or 413 for size) with this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class TriggerPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trigger_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    reason: str = Field(min_length=1, max_length=500)
    stack: str = Field(pattern=r"^[a-z][a-z0-9-]{0,19}$")
    schedule: str | None = None
    template_uri: str | None = None
    pipeline_spec: dict[str, Any] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    figures: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_pipeline(self) -> TriggerPayload:
        if (self.template_uri is None) == (self.pipeline_spec is None):
            raise ValueError("give exactly one of template_uri (a gs:// or local path) and pipeline_spec (inline)")
        return self

    def labels(self) -> dict[str, str]:
        """Vertex labels: lowercase, at most 63 characters, [a-z0-9_-]."""

        def clean(text: str) -> str:
            return "".join(c if c.isalnum() or c in "-_" else "-" for c in text.lower())[:63]

        return {
            "reason": clean(self.reason.split(":", 1)[0]),
            "stack": clean(self.stack),
            "schedule": clean(self.schedule or "none"),
            "trigger": clean(self.trigger_id),
        }


def parse_payload(doc: Any) -> TriggerPayload:
    if not isinstance(doc, dict):
        raise PayloadError("the payload must be a JSON object")
    try:
        return TriggerPayload.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise PayloadError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


def decode_pubsub_data(data_b64: str | bytes, limits: LimitsConfig = DEFAULT_LIMITS) -> Any:
    try:
        return load_json(base64.b64decode(data_b64, validate=True), limits, "the message data")
    except OutOfBounds as exc:
        raise PayloadError(exc.detail, 413 if exc.reason == "too_large" else 400) from None
    except (ValueError, TypeError) as exc:
        raise PayloadError(f"the message data is not base64: {exc}") from None


def with_schedule_id(doc: Any, publish_time: str) -> Any:
    """A scheduled payload carries no trigger id (Cloud Scheduler sends the same body every time);
    it gets ``<schedule>-<UTC hour it was published>``, so redeliveries of one firing submit once
    and the next firing submits again."""
    if not isinstance(doc, dict) or doc.get("trigger_id") or not doc.get("schedule"):
        return doc
    hour = "".join(ch for ch in publish_time if ch.isdigit())[:10]  # 2026-11-27T03:00:04Z -> 2026112703
    return {**doc, "trigger_id": f"{doc['schedule']}-{hour}"}
