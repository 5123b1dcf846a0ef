"""Re-rank requests and prediction records on the wire (docs/specs/serving-messages.md).

Request: JSON ``{request_id, user_id, surface, candidate_ids[], requested_at}``, attribute ``arm``
set by the client. Ids only: the worker reads every feature from the online store.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

MAX_CANDIDATES = 1000


class PoisonMessage(ValueError):
    """A message no retry can fix; ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class RerankRequest:
    request_id: str
    user_id: str
    surface: str
    candidate_ids: tuple[str, ...]
    requested_at: datetime

    def to_json(self) -> bytes:
        doc = {
            **asdict(self),
            "candidate_ids": list(self.candidate_ids),
            "requested_at": self.requested_at.astimezone(UTC).isoformat(),
        }
        return json.dumps(doc, separators=(",", ":")).encode()


def parse_request(data: bytes) -> RerankRequest:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoisonMessage("undecodable", f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PoisonMessage("undecodable", "expected a JSON object")
    missing = [k for k in ("request_id", "user_id", "surface", "candidate_ids", "requested_at") if k not in doc]
    if missing:
        raise PoisonMessage("undecodable", f"missing field(s) {missing}")
    cands = doc["candidate_ids"]
    if not isinstance(cands, list) or not all(isinstance(c, str) and c and "\n" not in c for c in cands):
        raise PoisonMessage("undecodable", "candidate_ids must be a list of non-empty strings without newlines")
    if not cands:
        raise PoisonMessage("empty_candidates", "the request has no candidates to order")
    if len(cands) > MAX_CANDIDATES:
        raise PoisonMessage("too_many_candidates", f"{len(cands)} candidates; at most {MAX_CANDIDATES}")
    try:
        at = datetime.fromisoformat(str(doc["requested_at"]).replace("Z", "+00:00"))
        if at.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError as exc:
        raise PoisonMessage("undecodable", f"requested_at {doc['requested_at']!r}: {exc}") from None
    if not doc["user_id"] or not doc["surface"] or not doc["request_id"]:
        raise PoisonMessage("undecodable", "request_id, user_id and surface must be non-empty")
    return RerankRequest(
        str(doc["request_id"]), str(doc["user_id"]), str(doc["surface"]), tuple(cands), at.astimezone(UTC)
    )


@dataclass(frozen=True)
class Prediction:
    """What a variant scored: published for the sink, joined later with outcomes."""

    request_id: str
    user_id: str
    surface: str
    variant: str
    model_id: str
    candidate_ids: tuple[str, ...]
    scores: tuple[float, ...]
    requested_at: str
    scored_at: str

    def to_json(self) -> bytes:
        return json.dumps(
            {**asdict(self), "candidate_ids": list(self.candidate_ids), "scores": [round(s, 6) for s in self.scores]},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Prediction:
        doc: dict[str, Any] = json.loads(data)
        return cls(**{**doc, "candidate_ids": tuple(doc["candidate_ids"]), "scores": tuple(doc["scores"])})
