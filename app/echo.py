"""What an error line may echo back of a value a user gave: its repr, cut short (a huge value, a
YAML alias bomb's expansion, never fills a terminal or a log)."""

from __future__ import annotations

SHOWN_CHARS = 200


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)``, at most ``limit`` characters; a longer one ends saying how long it was."""
    r = repr(value)
    return r if len(r) <= limit else f"{r[: limit - 40]}... ({len(r)} characters)"
