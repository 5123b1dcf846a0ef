"""The report charts: round ticks, and every chart's axes labelled with tick values."""

from __future__ import annotations

import re

import pytest

from app.charts import histogram, interval_chart, line_chart, nice_ticks


@pytest.mark.parametrize(
    ("lo", "hi", "ticks"),
    [
        (0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (-0.12, 0.61, [0.0, 0.2, 0.4, 0.6]),
        (37.0, 512.0, [100.0, 200.0, 300.0, 400.0, 500.0]),
    ],
)
def test_ticks_are_round_and_inside_the_range(lo: float, hi: float, ticks: list[float]) -> None:
    assert nice_ticks(lo, hi) == pytest.approx(ticks)


def _tick_labels(svg: str) -> list[str]:
    return re.findall(r'font-size="10"[^>]*>([^<]+)</text>', svg)


def test_each_chart_has_both_axis_labels_and_ticks() -> None:
    charts = {
        "line": line_chart([([0, 1], [0, 1], "#000")], "x things", "y things", (0, 1), (0, 1), lambda t: f"{t:.1f}"),
        "histogram": histogram([10.0, 12.0, 30.0, 55.0], "x things", "y things", bins=5),
        "intervals": interval_chart([("b", 0.04, 0.01, 0.07)], "y things", "x things", lambda t: f"{t:+.0%}"),
    }
    for name, svg in charts.items():
        assert ">x things</text>" in svg and ">y things</text>" in svg, name
        labels = _tick_labels(svg)
        assert len(labels) >= 3, (name, labels)
        assert not any("np." in label or len(label) > 8 for label in labels), (name, labels)
    assert "b" in _tick_labels(charts["intervals"]), "the arm names its x tick"
