"""The demo's HTML report: one self-contained file with inline SVG charts (no JavaScript, no CDN)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from app.charts import histogram, interval_chart, line_chart
from app.experiments.presentation import html_section, number, percent, signed_percent, with_interval
from app.settings import PRIMARY_KIND


def roc_svg(fpr: Sequence[float], tpr: Sequence[float], auc: float) -> str:
    return line_chart(
        [([0, 1], [0, 1], "#bbb"), (fpr, tpr, "#1f77b4")],
        "false positive rate",
        "true positive rate (recall)",
        (0.0, 1.0),
        (0.0, 1.0),
        lambda t: f"{t:.1f}",
        note=f"AUC {auc:.3f}",
    )


def latency_svg(values_ms: Sequence[float]) -> str:
    if not values_ms:
        return "<p>No request was served fresh, so there is no latency to show.</p>"
    return histogram(values_ms, "publish to result written (ms)", "requests")


def lift_svg(arms: dict[str, dict[str, Any]]) -> str:
    shown = [(a, v["lift"], v["lift_ci_low"], v["lift_ci_high"]) for a, v in arms.items() if v.get("sessions")]
    if not shown:
        return "<p>No sessions.</p>"
    return interval_chart(
        shown,
        "expected matches vs the default order",
        "arm (bar: estimate, whisker: 95% interval)",
        lambda t: percent(t, signed=True, digits=0),
    )


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} ms"


def render(summary: dict[str, Any], roc: dict[str, list[float]], latencies_ms: Sequence[float]) -> str:
    m = summary["training"][summary["experiment"][PRIMARY_KIND]]["metrics"]
    metric_rows = [
        [who, number(m[f"{who}_ndcg_at_10"], 4), number(m[f"{who}_map_at_10"], 4), number(m[f"{who}_auc"], 4)]
        for who in ("model", "baseline", "oracle")
    ]
    ab_rows = [
        [
            arm,
            v["sessions"],
            number(v["expected_matches_per_session"]),
            number(v["default_expected_matches_per_session"]),
            with_interval(v["lift"], v["lift_ci_low"], v["lift_ci_high"], signed_percent),
            percent(v["fallback_rate"]),
        ]
        for arm, v in summary["ab"].items()
        if v.get("sessions")
    ]
    s, market = summary["serving"], summary["market"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rerank-platform demo</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}.charts{{display:flex;flex-wrap:wrap;gap:1em}}
code{{font-size:90%}}</style>
</head><body>
<h1>rerank-platform: local demo</h1>
<p>Stack <code>{html.escape(summary["stack"])}</code>; a simulated market of {market["users"]:,} users over
{market["days"]} days ({market["impressions"]:,} impressions); finished in {summary["total_s"]:.0f} s.</p>
<h2>Offline evaluation (test days, relevance = mutual match)</h2>
{_table(metric_rows, ["ordering", "NDCG@10", "MAP@10", "AUC"])}
<p>The primary's model reaches {m["model_vs_oracle_ndcg_at_10"]:.1%} of the oracle's NDCG@10 (the oracle orders by
the market's true match probabilities, known only because this is a simulation).</p>
{html_section(summary["experiment"])}
<p>The same readout from the command line: <code>{html.escape(summary["experiment"]["command"])}</code></p>
<h2>Each arm against no re-ranking (simulation only)</h2>
<p>The market knows every pair's true match probability, so each replayed session is also scored as if the viewer
had seen the core service's default order: expected matches in the top {summary["top_k"]} per session. Expected
matches are far less noisy than the matches that happened, which is all a real readout (above) can count.</p>
{_table(ab_rows, ["arm", "sessions", "expected matches", "default order", "change (95% interval)", "fallback"])}
<h2>Serving</h2>
<p>{s["sessions"]} sessions replayed at {s["requests_per_s"]:.1f} requests/s; latency from publish to result written:
median {_ms(s["latency_p50_ms"])}, 99th percentile {_ms(s["latency_p99_ms"])}; fallback rate
{percent(s["fallback_rate"])}; dead letters: {_dead_letters(summary["dead_letters"])}.</p>
<div class="charts">
<div><h3>ROC of the primary's model (test days)</h3>{roc_svg(roc["fpr"], roc["tpr"], m["model_auc"])}</div>
<div><h3>End-to-end latency</h3>{latency_svg(list(latencies_ms))}</div>
<div><h3>Each arm against the default order</h3>{lift_svg(summary["ab"])}</div>
</div>
</body></html>
"""


def _dead_letters(dead: dict[str, Any]) -> str:
    """``feature events 6 (undecodable 1, ...); requests 0``, escaped for HTML."""
    parts = []
    for kind, d in dead.items():
        reasons = ", ".join(f"{r.replace('_', ' ')} {n}" for r, n in d["by_reason"].items())
        parts.append(f"{kind.replace('_', ' ')} {d['total']}" + (f" ({reasons})" if reasons else ""))
    return html.escape("; ".join(parts))
