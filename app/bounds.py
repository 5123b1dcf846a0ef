"""The checks every boundary applies to outside data before anything else reads it
(docs/specs/limits.md): size, JSON nesting, ids and times. Each check answers with a reason code
and a one-line detail instead of raising whatever the parser happened to raise.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from app.settings import LimitsConfig

DEFAULT_LIMITS = LimitsConfig()
# Control characters (newlines included) would break line-oriented formats (the results table joins ids
# with "\n"); surrogates cannot be encoded as UTF-8 at all.
_BAD_ID_CHARS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


class OutOfBounds(ValueError):
    """Outside data a boundary refuses; ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def json_depth(doc: Any, limit: int) -> int:
    """Nesting depth of ``doc`` (a scalar is 0), counted without recursion and no further than ``limit + 1``."""
    deepest, stack = 0, [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            if depth > limit:
                return depth
            stack.extend((child, depth) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def load_json(data: bytes | str, limits: LimitsConfig = DEFAULT_LIMITS, what: str = "message") -> Any:
    """Parse bounded JSON: too_large, undecodable (not UTF-8, not JSON, or nested too deep)."""
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > limits.max_message_bytes:
        raise OutOfBounds("too_large", f"{what} of {size} bytes; at most {limits.max_message_bytes}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        doc = json.loads(text)
    except UnicodeDecodeError as exc:
        raise OutOfBounds("undecodable", f"{what} is not UTF-8: {exc}") from None
    except RecursionError:
        raise OutOfBounds("undecodable", f"{what} is nested deeper than {limits.max_json_depth}") from None
    except ValueError as exc:
        raise OutOfBounds("undecodable", f"{what} is not JSON: {exc}") from None
    if json_depth(doc, limits.max_json_depth) > limits.max_json_depth:
        raise OutOfBounds("undecodable", f"{what} is nested deeper than {limits.max_json_depth}")
    return doc


def id_problem(value: Any, what: str, limits: LimitsConfig = DEFAULT_LIMITS) -> str | None:
    """Why ``value`` cannot be an id (a non-empty string of at most max_id_length printable characters), or None."""
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if not value:
        return f"{what} is empty"
    if len(value) > limits.max_id_length:
        return f"{what} has {len(value)} characters; at most {limits.max_id_length}"
    if _BAD_ID_CHARS.search(value):
        return f"{what} {value[:40]!r} contains a control character or a lone surrogate"
    return None


def parse_rfc3339(value: Any) -> datetime:
    """An RFC 3339 time with a zone, in UTC; ValueError for anything else (including out-of-range dates)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError("has no time zone")
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+05:00 has no UTC equivalent
        raise ValueError(f"out of range: {exc}") from None


def time_problem(at: datetime, what: str, now: datetime, max_age: timedelta, limits: LimitsConfig) -> str | None:
    """Why ``at`` is outside [now - max_age, now + clock skew], or None."""
    skew = timedelta(seconds=limits.max_clock_skew_seconds)
    if at > now + skew:
        return f"{what} {at.isoformat()} is in the future: more than {skew} ahead of now ({now.isoformat()})"
    if at < now - max_age:
        return f"{what} {at.isoformat()} is too old: more than {max_age} before now ({now.isoformat()})"
    return None
