"""The one chart module: matplotlib figures as inline SVG a person can read."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from codeserve.common.charts import Series, bar_chart, histogram_chart, line_chart

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    assert svg.startswith("<svg ")  # no XML prolog or doctype: it goes inside HTML
    return ET.fromstring(svg)


def _texts(root: ET.Element) -> set[str]:
    return {"".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")}


def _drawn(root: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if re.search(rf"-{kind}-\d+$", g.get("id", ""))]


def _box(group: ET.Element) -> tuple[float, float]:
    """Width and height of the rectangle a bar's path draws."""
    path = group.find(f"{SVG}path")
    assert path is not None
    points = [tuple(map(float, p)) for p in re.findall(r"([-\d.]+) ([-\d.]+)", path.get("d", ""))]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return max(xs) - min(xs), max(ys) - min(ys)


def test_a_line_chart_has_title_axis_labels_ticks_legend_and_its_lines() -> None:
    root = _parse(
        line_chart(
            "Latency vs rate",
            [
                Series("p50", [(1, 10), (2, 12), (4, 30)]),
                Series("p99", [(1, 20), (2, 25), (4, 90)]),
                Series("empty", []),
            ],
            "offered rate (requests/s)",
            "latency (ms)",
        )
    )
    texts = _texts(root)
    assert {"Latency vs rate", "offered rate (requests/s)", "latency (ms)", "p50", "p99"} <= texts
    assert "empty" not in texts
    assert {"1.0", "2.0", "4.0"} <= texts and "0" in texts  # x ticks; y starts at zero
    lines = _drawn(root, "line")
    assert len(lines) == 2 and all(g.find(f"{SVG}path") is not None for g in lines)
    assert root.get("aria-label") == "Latency vs rate"


def test_percent_axes_and_bar_values_are_labelled() -> None:
    root = _parse(
        bar_chart("pass@k", ["pass@1", "pass@10"], [0.25, 0.5], "k", "solved", percent=True)
    )
    assert {"25.0%", "50.0%", "pass@1", "pass@10", "100%", "0%"} <= _texts(root)
    (w1, h1), (w2, h2) = (_box(g) for g in _drawn(root, "bar"))
    assert w1 == pytest.approx(w2) and h2 == pytest.approx(2 * h1, rel=0.01)


def test_one_zero_width_bin_still_shows_a_bar() -> None:
    (bar,) = _drawn(_parse(histogram_chart("TTFT", [0.2, 0.2], [5], "seconds")), "bar")
    width, height = _box(bar)
    assert width > 1 and height > 1


def test_charts_in_one_page_share_no_ids_and_render_alike_twice() -> None:
    a = line_chart("A", [Series("x", [(0, 1), (1, 2)])], "x", "y")
    b = line_chart("B", [Series("x", [(0, 1), (1, 2)])], "x", "y")
    ids_a, ids_b = (set(re.findall(r'\bid="([^"]+)"', s)) for s in (a, b))
    assert ids_a and not ids_a & ids_b
    assert a == line_chart("A", [Series("x", [(0, 1), (1, 2)])], "x", "y")


def test_nothing_to_draw_is_a_placeholder() -> None:
    assert "no data" in line_chart("T", [Series("x", [])], "x", "y")
    assert "no data" in bar_chart("T", [], [], "x", "y")
    assert "no data" in histogram_chart("T", [], [], "x")
