"""Re-rank requests and prediction records on the wire (docs/specs/serving-messages.md).

Request: JSON ``{request_id, user_id, surface, candidate_ids[], requested_at}``, attribute ``arm``
set by the client. Ids only: the worker reads every feature from the online store.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from app.bounds import DEFAULT_LIMITS, OutOfBounds, id_problem, load_json, parse_rfc3339, time_problem
from app.settings import LimitsConfig

# Reasons a retry may fix (a profile not ingested yet, a passing fault): nacked with backoff until the
# last delivery attempt. Every other reason is dead-lettered at once: no redelivery can change it.
TRANSIENT_REASONS = frozenset({"unknown_user", "unknown_candidates", "internal_error", "result_write_error"})
REQUEST_FIELDS = ("request_id", "user_id", "surface", "candidate_ids", "requested_at")


class PoisonMessage(ValueError):
    """A message that cannot be served as it is; ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail

    @property
    def transient(self) -> bool:
        return self.reason in TRANSIENT_REASONS


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


def parse_request(data: bytes, limits: LimitsConfig = DEFAULT_LIMITS, now: datetime | None = None) -> RerankRequest:
    """A request within the stack's limits (docs/specs/serving-messages.md), or ``PoisonMessage``.

    Duplicate candidate ids are served once, at their first position.
    """
    try:
        doc = load_json(data, limits, "request")
    except OutOfBounds as exc:
        raise PoisonMessage(exc.reason, exc.detail) from None
    if not isinstance(doc, dict):
        raise PoisonMessage("undecodable", "expected a JSON object")
    missing = [k for k in REQUEST_FIELDS if k not in doc]
    if missing:
        raise PoisonMessage("undecodable", f"missing field(s) {missing}")
    for key in ("request_id", "user_id", "surface"):
        problem = id_problem(doc[key], key, limits)
        if problem:
            raise PoisonMessage("bad_id", problem)
    cands = doc["candidate_ids"]
    if not isinstance(cands, list):
        raise PoisonMessage("undecodable", f"candidate_ids must be a list, got {type(cands).__name__}")
    if not cands:
        raise PoisonMessage("empty_candidates", "the request has no candidates to order")
    if len(cands) > limits.max_candidates:
        raise PoisonMessage("too_many_candidates", f"{len(cands)} candidates; at most {limits.max_candidates}")
    for i, c in enumerate(cands):
        problem = id_problem(c, f"candidate_ids[{i}]", limits)
        if problem:
            raise PoisonMessage("bad_id", problem)
    try:
        at = parse_rfc3339(doc["requested_at"])
    except ValueError as exc:
        raise PoisonMessage("bad_requested_at", f"requested_at {str(doc['requested_at'])[:64]!r}: {exc}") from None
    window = time_problem(
        at, "requested_at", now or datetime.now(UTC), timedelta(seconds=limits.max_request_age_seconds), limits
    )
    if window:
        raise PoisonMessage("bad_requested_at", window)
    return RerankRequest(doc["request_id"], doc["user_id"], doc["surface"], tuple(dict.fromkeys(cands)), at)


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
    def from_json(cls, data: bytes, limits: LimitsConfig = DEFAULT_LIMITS) -> Prediction:
        """A record as ``to_json`` writes it; ``ValueError`` (with the reason) for anything else."""
        try:
            doc = load_json(data, limits, "prediction record")
        except OutOfBounds as exc:
            raise ValueError(exc.detail) from None
        if not isinstance(doc, dict) or set(doc) != set(cls.__dataclass_fields__):
            raise ValueError(f"expected an object with exactly the fields {sorted(cls.__dataclass_fields__)}")
        strings = ("request_id", "user_id", "surface", "variant", "model_id", "requested_at", "scored_at")
        bad = [k for k in strings if not isinstance(doc[k], str)]
        if bad:
            raise ValueError(f"field(s) {bad} must be strings")
        ids, scores = doc["candidate_ids"], doc["scores"]
        if not isinstance(ids, list) or not all(isinstance(c, str) for c in ids):
            raise ValueError("candidate_ids must be a list of strings")
        numeric = isinstance(scores, list) and all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in scores
        )
        if not numeric or len(scores) != len(ids):
            raise ValueError("scores must be a list of numbers, one per candidate")
        for key in ("requested_at", "scored_at"):
            parse_rfc3339(doc[key])  # ValueError names the problem
        return cls(**{**doc, "candidate_ids": tuple(ids), "scores": tuple(float(x) for x in scores)})
