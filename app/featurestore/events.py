"""Feature events on the wire, and the one function that turns an event into a row or a dead letter.

Wire forms (docs/specs/feature-events.md):
- Pub/Sub: data = the entity's protobuf bytes; attributes ``entity``, ``version``, ``event_time``.
- JSON lines: ``{"entity", "version", "event_time", "data": {<proto JSON>}}``.
- Length-delimited protobuf file: records of varint length + ``rerank.events.v1.FeatureEvent`` bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from app.bounds import DEFAULT_LIMITS, OutOfBounds, id_problem, load_json, parse_rfc3339, time_problem
from app.featurestore.registry import Registry, UnknownEntityError, UnknownVersionError
from app.schemas.envelope_pb2 import FeatureEvent
from app.settings import LimitsConfig

REASONS = (
    "undecodable",
    "too_large",
    "unknown_entity",
    "unknown_version",
    "missing_event_time",
    "bad_event_time",
    "bad_id",
    "schema_violation",
    "internal_error",
    # A store refused the write (after retries), or its key holds something else: the event is kept here.
    "store_unavailable",
    "store_conflict",
)
_ATTRIBUTE_BYTES = 1024  # Pub/Sub's limit on an attribute value


def _attribute(value: str) -> str:
    return value.encode("utf-8", "replace")[:_ATTRIBUTE_BYTES].decode("utf-8", "ignore")


@dataclass(frozen=True)
class RawEvent:
    entity: str | None
    version: str | None
    event_time: str | None
    source: str
    payload: bytes | None = None  # protobuf bytes
    json_data: dict[str, Any] | None = None  # proto JSON (file source)
    raw: bytes = b""  # what arrived, kept verbatim for the dead letter
    undecodable: str | None = None  # set when the envelope itself could not be read
    undecodable_reason: str = "undecodable"  # or too_large


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str
    source: str
    entity: str | None = None
    version: str | None = None
    event_time: str | None = None
    raw: bytes = b""

    def attributes(self) -> dict[str, str]:
        attrs = {"reason": self.reason, "detail": _attribute(self.detail), "source": _attribute(self.source)}
        for key in ("entity", "version", "event_time"):
            if getattr(self, key):
                attrs[key] = _attribute(getattr(self, key))
        return attrs

    def to_json(self) -> str:
        return json.dumps({**self.attributes(), "raw_base64": base64.b64encode(self.raw).decode()}, sort_keys=True)


@dataclass(frozen=True)
class FeatureRow:
    entity: str
    version: str
    entity_id: str
    event_time: datetime
    values: dict[str, Any] = field(hash=False)
    vector: tuple[float, ...]
    payload: bytes
    source: str = field(default="", compare=False)  # where it came from, for a store's dead letter


def parse_event_time(text: str) -> datetime:
    return parse_rfc3339(text)


def format_event_time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def process_event(
    raw: RawEvent, registry: Registry, now: datetime | None = None, limits: LimitsConfig = DEFAULT_LIMITS
) -> FeatureRow | DeadLetter:
    """Decode, validate and transform one event; anything wrong becomes a dead letter with its reason.

    Nothing raises: an error this function did not foresee is the event's dead letter with reason
    ``internal_error``, so one event never costs its neighbours (a Beam bundle, a file).
    """

    def dead(reason: str, detail: str) -> DeadLetter:
        return DeadLetter(reason, detail, raw.source, raw.entity, raw.version, raw.event_time, raw.raw)

    try:
        return _process(raw, registry, now or datetime.now(UTC), limits, dead)
    except Exception as exc:  # the boundary: no input may escape as an exception
        return dead("internal_error", f"{type(exc).__name__}: {exc}")


def _process(
    raw: RawEvent, registry: Registry, now: datetime, limits: LimitsConfig, dead: Any
) -> FeatureRow | DeadLetter:
    if raw.undecodable:
        return dead(raw.undecodable_reason, raw.undecodable)
    if len(raw.raw) > limits.max_message_bytes:
        return dead("too_large", f"event of {len(raw.raw)} bytes; at most {limits.max_message_bytes}")
    if not raw.entity or not raw.version:
        return dead("unknown_entity", "the event has no entity/version attribute")
    try:
        spec = registry.get(raw.entity, raw.version)
    except UnknownEntityError as exc:
        return dead("unknown_entity", exc.args[0][:200])
    except UnknownVersionError as exc:
        return dead("unknown_version", exc.args[0][:200])
    if not raw.event_time:
        return dead("missing_event_time", "the event has no event_time attribute")
    try:
        at = parse_event_time(raw.event_time)
    except ValueError as exc:
        return dead("bad_event_time", f"event_time {raw.event_time[:64]!r} is not RFC 3339: {exc}")
    window = time_problem(at, "event_time", now, timedelta(days=limits.max_event_age_days), limits)
    if window:
        return dead("bad_event_time", window)
    try:
        msg: Message
        if raw.json_data is not None:
            msg = json_format.ParseDict(raw.json_data, spec.message_cls())
        else:
            msg = spec.message_cls.FromString(raw.payload or b"")
    except DecodeError as exc:
        return dead("undecodable", f"not a {spec.full_name}: {exc}")
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        return dead("schema_violation", f"{spec.full_name}: {str(exc)[:300]}")
    key = getattr(msg, spec.key_field)
    problem = id_problem(key, spec.key_field, limits) if key else None  # a missing key is a schema violation
    if problem:
        return dead("bad_id", problem)
    try:
        problems = spec.problems(msg, at)
        if problems:
            return dead("schema_violation", "; ".join(problems))
        values = spec.values(msg, at)
        vector = tuple(float(values[name]) for name in spec.online_features)
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a Timestamp field beyond datetime's range
        return dead("schema_violation", f"{spec.full_name}: {type(exc).__name__}: {exc}")
    return FeatureRow(
        spec.entity,
        spec.version,
        getattr(msg, spec.key_field),
        at,
        values,
        vector,
        msg.SerializeToString(deterministic=True),
        raw.source,
    )


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise DecodeError("truncated or overlong varint")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


# Sources --------------------------------------------------------------------------------------


def from_pubsub(data: bytes, attributes: dict[str, str], message_id: str) -> RawEvent:
    return RawEvent(
        entity=attributes.get("entity"),
        version=attributes.get("version"),
        event_time=attributes.get("event_time"),
        source=f"pubsub:{message_id}",
        payload=data,
        raw=data,
    )


def from_json_line(line: bytes | str, where: str, limits: LimitsConfig = DEFAULT_LIMITS) -> RawEvent:
    """One line of a JSON lines file, kept as the bytes that arrived (invalid UTF-8 included)."""
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogatepass")
    try:
        doc = load_json(line, limits, "line")
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
            raise OutOfBounds("undecodable", "expected an object with a 'data' object")
        wrong = [
            k for k in ("entity", "version", "event_time") if doc.get(k) is not None and not isinstance(doc[k], str)
        ]
        if wrong:
            raise OutOfBounds("undecodable", f"field(s) {wrong} must be strings")
    except OutOfBounds as exc:
        return RawEvent(
            None,
            None,
            None,
            where,
            raw=line,
            undecodable=f"not a JSON feature event: {exc.detail}",
            undecodable_reason=exc.reason,
        )
    return RawEvent(
        doc.get("entity"), doc.get("version"), doc.get("event_time"), where, json_data=doc["data"], raw=line
    )


def read_delimited(stream: IO[bytes], name: str) -> Iterator[RawEvent]:
    """Events from a varint-length-delimited stream of ``FeatureEvent`` envelopes.

    A damaged record cannot be skipped past (its length is untrustworthy), so it ends the file
    with one dead letter naming the offset; everything before it is kept.
    """
    buf = stream.read()
    pos, index = 0, 0
    while pos < len(buf):
        where = f"{name}#record{index}@{pos}"
        try:
            size, start = _read_varint(buf, pos)
            if start + size > len(buf):
                raise DecodeError(f"record of {size} bytes runs past the end of the file")
            envelope = FeatureEvent.FromString(buf[start : start + size])
        except DecodeError as exc:
            yield RawEvent(
                None,
                None,
                None,
                where,
                raw=buf[pos:],
                undecodable=f"damaged length-delimited record: {exc}; the rest of the file is dead-lettered",
            )
            return
        yield RawEvent(
            envelope.entity or None,
            envelope.version or None,
            envelope.event_time or None,
            where,
            payload=envelope.payload,
            raw=buf[start : start + size],
        )
        pos, index = start + size, index + 1


# Producers ------------------------------------------------------------------------------------


def event_attributes(entity: str, version: str, event_time: datetime) -> dict[str, str]:
    return {"entity": entity, "version": version, "event_time": format_event_time(event_time)}


def json_line(entity: str, version: str, event_time: datetime, msg: Message) -> str:
    data = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return json.dumps({**event_attributes(entity, version, event_time), "data": data}, sort_keys=True)


def write_delimited(stream: IO[bytes], events: Iterable[tuple[str, str, datetime, Message]]) -> int:
    count = 0
    for entity, version, at, msg in events:
        record = FeatureEvent(
            entity=entity, version=version, event_time=format_event_time(at), payload=msg.SerializeToString()
        ).SerializeToString()
        stream.write(_varint(len(record)) + record)
        count += 1
    return count
