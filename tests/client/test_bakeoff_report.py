"""The bake-off's charts (added to codeserve.common.charts) read at a glance."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from codeserve.common.charts import Point, Series, line_chart, scatter_chart

SVG = "{http://www.w3.org/2000/svg}"


def _texts(root: ET.Element) -> set[str]:
    return {"".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")}


def _groups(root: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if re.search(rf"-{kind}-\d+$", g.get("id", ""))]


def test_scatter_names_every_point_and_marks_the_pareto_front() -> None:
    svg = scatter_chart(
        "humaneval+: pass@10 vs sampling speed",
        [Point("fast", 40.0, 0.2), Point("good", 5.0, 0.6), Point("meh", 4.0, 0.1)],
        "candidates/s",
        "pass@10",
        front=["good", "fast"],
        y_percent=True,
    )
    assert svg.startswith("<svg ")
    root = ET.fromstring(svg)
    texts = _texts(root)
    assert {"humaneval+: pass@10 vs sampling speed", "candidates/s", "pass@10"} <= texts
    assert {"fast", "good", "meh", "Pareto front"} <= texts  # legend (and labels on the front)
    assert {"0%", "100%"} <= texts
    assert len(_groups(root, "point")) == 3 and len(_groups(root, "front")) == 1
    assert root.get("aria-label") == "humaneval+: pass@10 vs sampling speed"
    assert "no data" in scatter_chart("empty", [], "x", "y")


def test_a_log_k_axis_has_plain_ticks_and_the_legend_below_hides_no_line() -> None:
    root = ET.fromstring(
        line_chart(
            "pass@k by k",
            [
                Series("a", [(1, 0.1), (10, 0.4), (50, 0.6)]),
                Series("b", [(1, 0.2), (10, 0.3), (50, 0.35)]),
            ],
            "k",
            "pass@k",
            y_percent=True,
            x_log=True,
            legend_below=True,
        )
    )
    texts = _texts(root)
    assert {"1", "10", "50", "a", "b"} <= texts and "$\\mathdefault{10^{1}}$" not in texts
    assert len(_groups(root, "line")) == 2
