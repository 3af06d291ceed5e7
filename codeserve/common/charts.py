"""The charts of the HTML reports (the eval harness's and the load tester's), drawn by matplotlib
and returned as inline SVG.

Inline SVG keeps a report one self-contained file that opens offline, scales without blurring,
and keeps its text as text (searchable, selectable). matplotlib gives every chart real axes, ticks,
labels and legends instead of hand-placed shapes. No pyplot: each `Figure` gets an Agg canvas
of its own (which measures the text for the layout) and is saved as SVG, so nothing needs a
display and nothing touches pyplot's global backend or figure registry, which a program that
imports Codeserve may be using for itself.

Data lines and bars carry the ids `<chart>-line-<i>` and `<chart>-bar-<i>`, so that a test (or a
script) can tell what was drawn from the axes' own lines.
"""

from __future__ import annotations

import hashlib
import html
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# One size for every chart: two fit side by side in a report 1200 px wide (538 x 317 px).
_SIZE_IN = (5.6, 3.3)
# Okabe-Ito: told apart also by readers with colour-vision deficiencies.
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_STYLE = {
    "svg.fonttype": "none",  # text stays <text>, not glyph outlines
    "svg.hashsalt": "codeserve",  # ids from content: the same chart renders to the same bytes
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
}
# Where an id is defined or referred to: id="x", url(#x), xlink:href="#x".
_ID_OR_REFERENCE = re.compile(r'(\bid="|url\(#|href="#)')


@dataclass(frozen=True)
class Series:
    """One named line of (x, y) points."""

    name: str
    points: Sequence[tuple[float, float]]


def placeholder(title: str) -> str:
    """What stands where a chart has nothing to draw."""
    return f"<p class='no-chart'><em>{html.escape(title)}: no data</em></p>"


def line_chart(title: str, series: Sequence[Series], x_label: str, y_label: str, *,
               y_from_zero: bool = True, y_percent: bool = False, steps: bool = False) -> str:
    """Lines with a legend (markers too when the points are few enough to tell apart); empty
    series are left out, and a chart with none is a placeholder. `steps`: each point's value
    holds until the next point's x (rates over time buckets), drawn as a staircase."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return placeholder(title)

    def draw(ax: Axes) -> None:
        for i, s in enumerate(drawn):
            xs, ys = zip(*s.points, strict=True)
            marker = "o" if len(xs) <= 30 and not steps else None
            ax.plot(xs, ys, label=s.name, color=_COLOURS[i % len(_COLOURS)], linewidth=1.6,
                    marker=marker, markersize=3.5, drawstyle="steps-post" if steps else "default",
                    gid=f"line-{i}")
        if y_from_zero:
            ax.set_ylim(bottom=0)
        if y_percent:
            ax.yaxis.set_major_formatter(_percent_formatter())
        ax.legend(loc="best")

    return _render(title, x_label, y_label, draw)


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], x_label: str,
              y_label: str, *, percent: bool = False) -> str:
    """One bar a label, each with its value written above it; `percent`: values are fractions
    shown as percentages on a 0-100% axis."""
    if not values:
        return placeholder(title)

    def draw(ax: Axes) -> None:
        bars = ax.bar(list(labels), list(values), color=_COLOURS[0], width=0.6)
        for i, bar in enumerate(bars):
            bar.set_gid(f"bar-{i}")
        ax.bar_label(bars, labels=[_fmt(v, percent) for v in values], padding=2)
        if percent:
            ax.set_ylim(0, 1.08)  # room for the label of a bar at 100%
            ax.yaxis.set_major_formatter(_percent_formatter())
        else:
            ax.set_ylim(0, max(values) * 1.12 or 1)
        ax.grid(axis="x", visible=False)

    return _render(title, x_label, y_label, draw)


def histogram_chart(title: str, edges: Sequence[float], counts: Sequence[int], x_label: str,
                    y_label: str = "count") -> str:
    """Bars over the bins `edges[i]..edges[i+1]`. A single bin of zero width (every value
    equal) is drawn as a narrow bar at that value rather than disappearing."""
    if not counts:
        return placeholder(title)

    def draw(ax: Axes) -> None:
        lefts = list(edges[:-1])
        widths = [high - low for low, high in zip(edges[:-1], edges[1:], strict=True)]
        if not any(widths):
            span = abs(lefts[0]) * 0.02 or 0.01
            lefts, widths = [lefts[0] - span / 2], [span]
        bars = ax.bar(lefts, list(counts), width=widths, align="edge", color=_COLOURS[1],
                      edgecolor="white", linewidth=0.6)
        for i, bar in enumerate(bars):
            bar.set_gid(f"bar-{i}")
        ax.set_ylim(0, max(counts) * 1.08 or 1)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.grid(axis="x", visible=False)

    return _render(title, x_label, y_label, draw)


def _render(title: str, x_label: str, y_label: str, draw: Callable[[Axes], None]) -> str:
    # Imported on first use: matplotlib takes a few hundred ms to import, which every command
    # that never draws a chart would pay.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=_SIZE_IN, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.set_title(title)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        draw(ax)
        return _inline_svg(fig, title)


def _inline_svg(fig: Figure, title: str) -> str:
    """The figure as an <svg> element to put straight into HTML: no XML prolog or doctype, an
    accessible name, and its ids prefixed per chart, since matplotlib numbers them the same
    in every figure (`axes_1`, clip paths) and ids are shared by the whole HTML page."""
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    svg = out.getvalue()
    svg = svg[svg.index("<svg"):].strip()
    prefix = "c" + hashlib.sha1(svg.encode()).hexdigest()[:8] + "-"
    svg = _ID_OR_REFERENCE.sub(lambda m: m.group(1) + prefix, svg)
    # Shrinks with a narrow window instead of overflowing it.
    label = f'role="img" aria-label="{html.escape(title)}" style="max-width:100%;height:auto"'
    return svg.replace("<svg ", f"<svg {label} ", 1)


def _fmt(value: float, percent: bool) -> str:
    return f"{100 * value:.1f}%" if percent else f"{value:g}"


def _percent_formatter() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0, decimals=0)
