"""Golden bytes for the online store format (docs/specs/online-store.md)."""

from __future__ import annotations

from app.featurestore.online import encode_value, layout_id


def test_value_layout_is_pinned() -> None:
    layout = layout_id(["age", "photo_quality"])
    assert layout == "091864e55f52"
    value = encode_value(1_772_323_200_000_000, layout, [31.0, 0.5])
    assert value == b"01772323200000000" + b"091864e55f52" + b"\x00\x00\xf8A" + b"\x00\x00\x00?"


def test_time_prefix_orders_like_the_times() -> None:
    early, late = encode_value(999_999, "x" * 12, []), encode_value(1_000_000, "x" * 12, [])
    assert early[:17] < late[:17] and len(early) == len(late) == 29
