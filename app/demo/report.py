"""The demo's HTML report: one self-contained file with inline SVG charts (no JavaScript, no CDN)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

W, H, PAD = 420, 300, 40


def _polyline(xs: Sequence[float], ys: Sequence[float], x_max: float, y_max: float, color: str) -> str:
    pts = " ".join(
        f"{PAD + x / x_max * (W - 2 * PAD):.1f},{H - PAD - y / y_max * (H - 2 * PAD):.1f}"
        for x, y in zip(xs, ys, strict=True)
    )
    return f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>'


def _axes(x_label: str, y_label: str) -> str:
    return (
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#333"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>'
        f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle" font-size="12">{html.escape(x_label)}</text>'
        f'<text x="12" y="{H / 2}" font-size="12" transform="rotate(-90 12 {H / 2})" '
        f'text-anchor="middle">{html.escape(y_label)}</text>'
    )


def roc_svg(fpr: Sequence[float], tpr: Sequence[float], auc: float) -> str:
    return (
        f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">{_axes("false positive rate", "recall")}'
        f"{_polyline([0, 1], [0, 1], 1, 1, '#bbb')}{_polyline(fpr, tpr, 1, 1, '#1f77b4')}"
        f'<text x="{W - PAD}" y="{H - PAD - 8}" text-anchor="end" font-size="12">AUC {auc:.3f}</text></svg>'
    )


def histogram_svg(values_ms: Sequence[float], bins: int = 30) -> str:
    if not values_ms:
        return "<p>No request was served fresh, so there is no latency to show.</p>"
    counts, edges = np.histogram(values_ms, bins=bins)
    top, width = max(int(counts.max()), 1), (W - 2 * PAD) / bins
    bars = "".join(
        f'<rect x="{PAD + i * width:.1f}" y="{H - PAD - c / top * (H - 2 * PAD):.1f}" width="{width - 1:.1f}" '
        f'height="{c / top * (H - 2 * PAD):.1f}" fill="#2ca02c"/>'
        for i, c in enumerate(counts)
    )
    ticks = "".join(
        f'<text x="{PAD + i * (W - 2 * PAD) / 4:.0f}" y="{H - PAD + 14}" font-size="10" '
        f'text-anchor="middle">{edges[0] + i * (edges[-1] - edges[0]) / 4:.0f}</text>'
        for i in range(5)
    )
    return (
        f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">'
        f"{_axes('publish to result written (ms)', 'requests')}{bars}{ticks}</svg>"
    )


def lift_svg(arms: dict[str, dict[str, float]]) -> str:
    shown = {a: v for a, v in arms.items() if v.get("sessions")}
    if not shown:
        return "<p>No sessions.</p>"
    lo = min(min(v["lift_ci_low"] for v in shown.values()), 0.0)
    hi = max(max(v["lift_ci_high"] for v in shown.values()), 0.0)
    span = (hi - lo) or 1.0

    def y(v: float) -> float:
        return H - PAD - (v - lo) / span * (H - 2 * PAD)

    parts, step = [], (W - 2 * PAD) / (len(shown) + 1)
    for i, (arm, v) in enumerate(shown.items(), start=1):
        x = PAD + i * step
        parts.append(
            f'<rect x="{x - 18:.1f}" y="{min(y(v["lift"]), y(0)):.1f}" width="36" '
            f'height="{abs(y(v["lift"]) - y(0)):.1f}" fill="#ff7f0e"/>'
        )
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y(v["lift_ci_low"]):.1f}" y2="{y(v["lift_ci_high"]):.1f}" '
            f'stroke="#000" stroke-width="2"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{H - PAD + 14}" text-anchor="middle" font-size="12">{html.escape(arm)}'
            f" {v['lift']:+.0%}</text>"
        )
    zero = f'<line x1="{PAD}" x2="{W - PAD}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#999" stroke-dasharray="4"/>'
    return (
        f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">'
        f"{_axes('arm (95% interval)', 'lift in matches vs default order')}{zero}{''.join(parts)}</svg>"
    )


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(summary: dict[str, Any], roc: dict[str, list[float]], latencies_ms: Sequence[float]) -> str:
    m = summary["training"]["primary"]["metrics"]
    metric_rows = [
        [who, f"{m[f'{who}_ndcg_at_10']:.4f}", f"{m[f'{who}_map_at_10']:.4f}", f"{m[f'{who}_auc']:.4f}"]
        for who in ("model", "baseline", "oracle")
    ]
    ab_rows = [
        [
            arm,
            v["sessions"],
            f"{v['expected_matches_per_session']:.3f}",
            f"{v['default_expected_matches_per_session']:.3f}",
            f"{v['lift']:+.1%}",
            f"[{v['lift_ci_low']:+.1%}, {v['lift_ci_high']:+.1%}]",
            f"{v['fallback_rate']:.1%}",
        ]
        for arm, v in summary["ab"].items()
        if v.get("sessions")
    ]
    s = summary["serving"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rerank-platform demo</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}.charts{{display:flex;flex-wrap:wrap;gap:1em}}</style>
</head><body>
<h1>rerank-platform: local demo</h1>
<p>Stack <code>{html.escape(summary["stack"])}</code>; market of {summary["market"]["users"]} users over
{summary["market"]["days"]} days ({summary["market"]["impressions"]} impressions);
finished in {summary["total_s"]} s.</p>
<h2>Offline evaluation (test days, relevance = mutual match)</h2>
{_table(metric_rows, ["ordering", "NDCG@10", "MAP@10", "AUC"])}
<p>Pointwise model / oracle NDCG@10: {m["model_vs_oracle_ndcg_at_10"]:.3f}.</p>
<h2>Online A/B replay ({s["sessions"]} sessions, top {summary["top_k"]} seen)</h2>
{_table(ab_rows, ["arm", "sessions", "expected matches", "default order", "lift", "95% interval", "fallback"])}
<h2>Serving</h2>
<p>Latency p50 {s["latency_p50_ms"]} ms, p99 {s["latency_p99_ms"]} ms; {s["requests_per_s"]} requests/s replayed;
fallback rate {s["fallback_rate"]:.1%}; dead letters: {_dead_letters(summary["dead_letters"])}.</p>
<div class="charts">
<div><h3>ROC (primary model)</h3>{roc_svg(roc["fpr"], roc["tpr"], m["model_auc"])}</div>
<div><h3>End-to-end latency</h3>{histogram_svg(list(latencies_ms))}</div>
<div><h3>A/B lift</h3>{lift_svg(summary["ab"])}</div>
</div>
</body></html>
"""


def _dead_letters(dead: dict[str, Any]) -> str:
    """``feature events 6 (undecodable 1, ...); requests 0``, escaped for HTML."""
    parts = []
    for kind, d in dead.items():
        reasons = ", ".join(f"{r} {n}" for r, n in d["by_reason"].items())
        parts.append(f"{kind.replace('_', ' ')} {d['total']}" + (f" ({reasons})" if reasons else ""))
    return html.escape("; ".join(parts))
