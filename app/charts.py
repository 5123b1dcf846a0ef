"""Inline SVG charts for the HTML reports (no JavaScript, no CDN): every chart has both axes
labelled, with ticks and tick values."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

W, H = 460, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 52
Fmt = Callable[[float], str]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values inside [lo, hi], about ``count`` of them (steps of 1, 2 or 5 times a power of ten)."""
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo]
    power = math.floor(math.log10((hi - lo) / count))

    def ticks(step: float) -> list[float]:
        first = math.ceil(lo / step - 1e-9)
        return [round(i * step, 12) for i in range(first, math.floor(hi / step + 1e-9) + 1)]

    steps = [m * 10.0**p for p in (power, power + 1) for m in (1, 2, 5)]
    # the step whose tick count is nearest ``count``; the larger step on a tie
    return min((ticks(step) for step in reversed(steps)), key=lambda t: abs(len(t) - count)) or [lo]


@dataclass(frozen=True)
class Frame:
    """Data ranges mapped onto the plot area."""

    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float

    def x(self, v: float) -> float:
        return LEFT + (v - self.x_lo) / ((self.x_hi - self.x_lo) or 1.0) * (W - LEFT - RIGHT)

    def y(self, v: float) -> float:
        return H - BOTTOM - (v - self.y_lo) / ((self.y_hi - self.y_lo) or 1.0) * (H - TOP - BOTTOM)


def _text(x: float, y: float, body: str, anchor: str = "middle", size: int = 11, extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}"{extra}>{html.escape(body)}</text>'


def axes(
    f: Frame,
    x_label: str,
    y_label: str,
    y_ticks: Sequence[float],
    y_fmt: Fmt,
    x_ticks: Sequence[tuple[float, str]] = (),
) -> str:
    """Both axes with their labels; y ticks at ``y_ticks``, x ticks at (position, label) pairs."""
    parts = [
        f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="#333"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="#333"/>',
        _text((LEFT + W - RIGHT) / 2, H - 10, x_label, size=12),
        _text(
            14, (TOP + H - BOTTOM) / 2, y_label, size=12, extra=f' transform="rotate(-90 14 {(TOP + H - BOTTOM) / 2})"'
        ),
    ]
    for t in y_ticks:
        y = f.y(t)
        parts.append(f'<line x1="{LEFT - 4}" y1="{y:.1f}" x2="{LEFT}" y2="{y:.1f}" stroke="#333"/>')
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(_text(LEFT - 6, y + 4, y_fmt(t), anchor="end", size=10))
    for pos, label in x_ticks:
        x = f.x(pos)
        parts.append(f'<line x1="{x:.1f}" y1="{H - BOTTOM}" x2="{x:.1f}" y2="{H - BOTTOM + 4}" stroke="#333"/>')
        parts.append(_text(x, H - BOTTOM + 16, label, size=10))
    return "".join(parts)


def svg(body: str, title: str) -> str:
    return (
        f'<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" role="img">'
        f"<title>{html.escape(title)}</title>{body}</svg>"
    )


def line_chart(
    series: Sequence[tuple[Sequence[float], Sequence[float], str]],
    x_label: str,
    y_label: str,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    fmt: Fmt,
    note: str = "",
) -> str:
    """Lines of (xs, ys, colour) over fixed ranges; ``note`` is written in the lower right corner."""
    f = Frame(*x_range, *y_range)
    lines = "".join(
        f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
        + " ".join(f"{f.x(x):.1f},{f.y(y):.1f}" for x, y in zip(xs, ys, strict=True))
        + '"/>'
        for xs, ys, color in series
    )
    x_ticks = [(t, fmt(t)) for t in nice_ticks(*x_range)]
    body = axes(f, x_label, y_label, nice_ticks(*y_range), fmt, x_ticks) + lines
    if note:
        body += _text(W - RIGHT - 6, H - BOTTOM - 8, note, anchor="end", size=12)
    return svg(body, f"{y_label} by {x_label}")


def histogram(values: Sequence[float], x_label: str, y_label: str, bins: int = 30) -> str:
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins)
    top = max(int(counts.max()), 1)
    y_ticks = [t for t in nice_ticks(0, top) if float(t).is_integer()]
    f = Frame(float(edges[0]), float(edges[-1]), 0.0, float(max(top, y_ticks[-1])))
    bars = "".join(
        f'<rect x="{f.x(edges[i]):.1f}" y="{f.y(c):.1f}" width="{max(f.x(edges[i + 1]) - f.x(edges[i]) - 1, 0.5):.1f}" '
        f'height="{f.y(0) - f.y(c):.1f}" fill="#2ca02c"/>'
        for i, c in enumerate(counts)
    )
    x_ticks = [(t, f"{t:g}") for t in nice_ticks(float(edges[0]), float(edges[-1]))]
    return svg(axes(f, x_label, y_label, y_ticks, lambda t: f"{t:.0f}", x_ticks) + bars, f"{y_label} by {x_label}")


def interval_chart(items: Sequence[tuple[str, float, float, float]], y_label: str, x_label: str, fmt: Fmt) -> str:
    """A bar per (label, value, low, high) with its interval as a whisker, and a dashed line at 0."""
    lo = min([0.0, *(i[2] for i in items)])
    hi = max([0.0, *(i[3] for i in items)])
    pad = (hi - lo) * 0.08 or 0.01
    ticks = nice_ticks(lo - pad, hi + pad)
    f = Frame(0.0, float(len(items) + 1), min(ticks[0], lo - pad), max(ticks[-1], hi + pad))
    parts = []
    for i, (_, value, low, high) in enumerate(items, start=1):
        x = f.x(i)
        parts.append(
            f'<rect x="{x - 18:.1f}" y="{min(f.y(value), f.y(0)):.1f}" width="36" '
            f'height="{abs(f.y(value) - f.y(0)):.1f}" fill="#ff7f0e"/>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.y(low):.1f}" y2="{f.y(high):.1f}" stroke="#000" stroke-width="2"/>'
            f'<line x1="{x - 8:.1f}" x2="{x + 8:.1f}" y1="{f.y(low):.1f}" y2="{f.y(low):.1f}" stroke="#000"/>'
            f'<line x1="{x - 8:.1f}" x2="{x + 8:.1f}" y1="{f.y(high):.1f}" y2="{f.y(high):.1f}" stroke="#000"/>'
            f'<circle cx="{x:.1f}" cy="{f.y(value):.1f}" r="4" fill="#000"/>'  # seen even when the bar is ~0
        )
    zero = (
        f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{f.y(0):.1f}" y2="{f.y(0):.1f}" stroke="#999" stroke-dasharray="4"/>'
    )
    x_ticks = [(i, label) for i, (label, *_) in enumerate(items, start=1)]
    return svg(axes(f, x_label, y_label, ticks, fmt, x_ticks) + zero + "".join(parts), y_label)
