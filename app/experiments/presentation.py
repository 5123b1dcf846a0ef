"""The readout for people: plain text for the terminal, an HTML section for the reports.

Figures are formatted here and only here (``+4.2% (95% interval +1.1% to +7.3%)``); a figure that
does not exist (an arm with no sessions, an AUC without both outcomes) reads "n/a", never 0.
"""

from __future__ import annotations

import html
import re
from typing import Any

from app.charts import Fmt, interval_chart
from app.settings import PRIMARY_KIND, SHADOW_KIND

NA = "n/a"


def percent(x: float | None, signed: bool = False, digits: int = 1) -> str:
    if x is None:
        return NA
    value = x * 100
    if round(value, digits) == 0:  # "0%", never "+0%" or "-0%"
        value, signed = 0.0, False
    return f"{value:+.{digits}f}%" if signed else f"{value:.{digits}f}%"


def number(x: float | None, digits: int = 3) -> str:
    return NA if x is None else f"{x:.{digits}f}"


def p_value(p: float | None) -> str:
    if p is None:
        return NA
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def with_interval(value: float | None, low: float | None, high: float | None, show: Fmt) -> str:
    """``+4.2% (95% interval +1.1% to +7.3%)`` with ``show`` = a signed percent."""
    if value is None:
        return NA
    if low is None or high is None:
        return f"{show(value)} (no interval: too few sessions)"
    return f"{show(value)} (95% interval {show(low)} to {show(high)})"


def signed_percent(x: float | None) -> str:
    return percent(x, signed=True)


def change(d: dict[str, Any] | None, relative: bool = True) -> str:
    """A ``difference`` (``app/experiments/stats.py``): relative, or absolute with ``relative=False``."""
    if not d:
        return NA
    if relative:
        return with_interval(d["relative"], d["relative_ci_low"], d["relative_ci_high"], signed_percent)
    return with_interval(d["difference"], d["ci_low"], d["ci_high"], lambda x: f"{x:+.3f}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def srm_sentence(srm: dict[str, Any]) -> str:
    observed = " / ".join(str(n) for n in srm["observed"].values())
    shares = " / ".join(percent(s, digits=0) for s in srm["expected_share"].values())
    arms = " / ".join(srm["observed"])
    if srm["p_value"] is None:
        return f"sample ratio ({arms}): {observed} sessions; no test (needs two arms with sessions)"
    verdict = "MISMATCH: the split is not the configured one" if srm["detected"] else "no mismatch"
    return (
        f"sample ratio ({arms}): {observed} sessions against shares {shares}: chi-square "
        f"{srm['chi_square']:.2f}, p = {p_value(srm['p_value'])} ({verdict}, threshold {srm['alpha']:g})"
    )


def _shadow_sentence(name: str, v: dict[str, Any], primary: str, k: int) -> str:
    a = v["agreement_with_primary"]
    same = v["offline_on_requests_the_primary_scored"]
    if not a["requests"]:
        agreement = f"no request scored by both {name} and {primary}"
    else:
        agreement = (
            f"on {a['requests']} requests both scored, overlap@{k} {number(a[f'overlap_at_{k}'], 2)}, "
            f"Kendall tau {number(a['kendall_tau'], 2)}, Spearman {number(a['spearman'], 2)}"
        )
    s, p = same[SHADOW_KIND], same[PRIMARY_KIND]
    offline = (
        f"on the outcomes of those shown: NDCG@10 {number(s['ndcg_at_10'])} ({primary} {number(p['ndcg_at_10'])}), "
        f"AUC {number(s['auc'])} ({primary} {number(p['auc'])}), "
        f"calibration gap {number(s['calibration_gap'])} ({primary} {number(p['calibration_gap'])})"
    )
    who = f"shadow variant `{name}` (scores every request, never shown) against the primary `{primary}`"
    return f"{who}: {agreement}; {offline}"


def text(doc: dict[str, Any]) -> str:
    k, primary = doc["top_k"], doc[PRIMARY_KIND]
    s = doc["sessions"]
    since = doc["window"]["since"]
    when = f"since {since[:19].replace('T', ' ')} UTC" if since else "in all the impressions given"
    lines = [
        f"{_count(s['total'], 'session')} shown {when} (intervals: {doc['interval']})",
        f"{'variant':10} {'kind':8} {'share':>6} {'sessions':>8} {'matches/session':>16} "
        f"{f'match rate@{k}':>14} {'fallback':>9}  matches per session vs {primary}",
    ]
    for name, v in doc["variants"].items():
        if v["kind"] == SHADOW_KIND:
            continue
        head = f"{name:10} {v['kind']:8} {percent(v['traffic_share'], digits=0):>6} {v['sessions']:>8} "
        if v["status"] == "no sessions":
            lines.append(head + "no sessions")
            continue
        vs = "-" if v["kind"] == PRIMARY_KIND else change(v["vs_primary"] and v["vs_primary"]["matches_per_session"])
        lines.append(
            head + f"{number(v['matches_per_session']):>16} {percent(v['match_rate_at_k']):>14} "
            f"{percent(v['fallback_rate']):>9}  {vs}"
        )
    if s["unattributed"] or s["other_variants"]:
        lines.append(
            f"not in any arm: {_count(s['unattributed'], 'session')} neither served nor scored"
            + "".join(f"; {n} served by {a} (not in the stack)" for a, n in s["other_variants"].items())
        )
    lines.append(srm_sentence(doc["sample_ratio_mismatch"]))
    for name, v in doc["variants"].items():
        if v["kind"] == SHADOW_KIND:
            lines.append(_shadow_sentence(name, v, primary, k))
    return "\n".join(lines)


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_section(doc: dict[str, Any], heading: str = "h2") -> str:
    """The readout as HTML: the arms' table, the difference chart, the SRM test and the shadows."""
    k, primary = doc["top_k"], doc[PRIMARY_KIND]
    rows, bars = [], []
    for name, v in doc["variants"].items():
        if v["kind"] == SHADOW_KIND:
            continue
        if v["status"] == "no sessions":
            rows.append([name, v["kind"], percent(v["traffic_share"], digits=0), "0", "no sessions", "", "", ""])
            continue
        d = v.get("vs_primary") and v["vs_primary"]["matches_per_session"]
        rows.append(
            [
                name,
                v["kind"],
                percent(v["traffic_share"], digits=0),
                str(v["sessions"]),
                number(v["matches_per_session"]),
                percent(v["match_rate_at_k"]),
                percent(v["fallback_rate"]),
                "reference" if v["kind"] == PRIMARY_KIND else change(d),
            ]
        )
        if d and d["relative_ci_low"] is not None:
            bars.append((name, d["relative"], d["relative_ci_low"], d["relative_ci_high"]))
    header = ["variant", "kind", "share", "sessions", "matches / session", f"match rate in the top {k}", "fallback"]
    header.append(f"matches / session vs {primary}")
    chart = ""
    if bars:
        chart = f"<h3>Matches per session, each arm against {html.escape(primary)}</h3>" + interval_chart(
            bars, f"change vs {primary}", "arm (bar and dot: estimate, whisker: 95% interval)",
            lambda t: percent(t, signed=True, digits=0),
        )  # fmt: skip
    shadows = "".join(
        "<p>" + re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(_shadow_sentence(name, v, primary, k))) + ".</p>"
        for name, v in doc["variants"].items()
        if v["kind"] == SHADOW_KIND
    )
    s = doc["sessions"]
    missing = (
        f"<p>Not in any arm: {_count(s['unattributed'], 'session')} neither served nor scored.</p>"
        if s["unattributed"]
        else ""
    )
    return (
        f"<{heading}>Experiment readout from served data ({s['total']} sessions)</{heading}>"
        f"<p>Each arm against the primary variant <code>{html.escape(primary)}</code>, from the landed prediction "
        "records joined with "
        f"the impressions' outcomes; intervals: {html.escape(doc['interval'])}.</p>"
        f"{_table(rows, header)}{missing}<p>{html.escape(srm_sentence(doc['sample_ratio_mismatch']))}.</p>"
        f"{chart}{shadows}"
    )


def html_page(doc: dict[str, Any], stack: str) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rerank-platform: experiment readout ({html.escape(stack)})</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style>
</head><body>
<h1>rerank-platform: experiment readout, stack <code>{html.escape(stack)}</code></h1>
{html_section(doc)}
</body></html>
"""
