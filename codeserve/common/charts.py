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
# Charts with their legend under the axes: as wide, taller by the legend.
_TALL_SIZE_IN = (5.6, 4.0)
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


def line_chart(
    title: str,
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    *,
    y_from_zero: bool = True,
    y_percent: bool = False,
    steps: bool = False,
    x_log: bool = False,
    legend_below: bool = False,
) -> str:
    """Lines with a legend (markers too when the points are few enough to tell apart); empty
    series are left out, and a chart with none is a placeholder. `steps`: each point's value
    holds until the next point's x (rates over time buckets), drawn as a staircase. `x_log`:
    a logarithmic x axis with plain-number ticks (k = 1, 10, 100). `legend_below`: the legend
    goes under the axes, where it hides no line (a taller chart)."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return placeholder(title)

    def draw(ax: Axes) -> None:
        for i, s in enumerate(drawn):
            xs, ys = zip(*s.points, strict=True)
            marker = "o" if len(xs) <= 30 and not steps else None
            ax.plot(
                xs,
                ys,
                label=s.name,
                color=_COLOURS[i % len(_COLOURS)],
                linewidth=1.6,
                marker=marker,
                markersize=3.5,
                drawstyle="steps-post" if steps else "default",
                gid=f"line-{i}",
            )
        if y_from_zero:
            ax.set_ylim(bottom=0)
        if y_percent:
            ax.yaxis.set_major_formatter(_percent_formatter())
        if x_log:
            _plain_log_x(ax)
        if legend_below:
            _legend_below(ax, len(drawn))
        else:
            ax.legend(loc="best")

    return _render(title, x_label, y_label, draw, size=_TALL_SIZE_IN if legend_below else _SIZE_IN)


@dataclass(frozen=True)
class Point:
    """One named point of a scatter chart."""

    name: str
    x: float
    y: float


def scatter_chart(
    title: str,
    points: Sequence[Point],
    x_label: str,
    y_label: str,
    *,
    front: Sequence[str] = (),
    front_name: str = "Pareto front",
    y_percent: bool = False,
    x_log: bool = False,
) -> str:
    """One marker per point, each in its own colour and named in a legend under the axes (so
    it never hides a point). `front`: the names of points joined, in x order, by a dashed
    staircase (a Pareto front: nothing lies to its upper right), ringed and named beside
    them. Points carry the ids `<chart>-point-<i>`, the front `<chart>-front-0`."""
    if not points:
        return placeholder(title)
    on_front = set(front)

    def draw(ax: Axes) -> None:
        for i, p in enumerate(points):
            ax.scatter(
                [p.x],
                [p.y],
                s=46,
                color=_COLOURS[i % len(_COLOURS)],
                label=p.name,
                zorder=3,
                gid=f"point-{i}",
            )
        best = sorted((p.x, p.y, p.name) for p in points if p.name in on_front)
        if best:
            xs, ys, names = zip(*best, strict=True)
            ax.plot(
                xs,
                ys,
                linestyle="--",
                color="#555555",
                linewidth=1.2,
                drawstyle="steps-pre" if len(xs) > 1 else "default",
                marker="o",
                markersize=11,
                markerfacecolor="none",
                markeredgecolor="#555555",
                label=front_name,
                zorder=2,
                gid="front-0",
            )
            for x, y, name in best:
                ax.annotate(
                    name,
                    (x, y),
                    xytext=(7, 7),
                    textcoords="offset points",
                    fontsize=8,
                    color="#333333",
                )
        if y_percent:
            ax.set_ylim(-0.03, 1.1)
            ax.yaxis.set_major_formatter(_percent_formatter())
        if x_log:
            _plain_log_x(ax)
        else:
            ax.set_xlim(left=0, right=max(p.x for p in points) * 1.3 or 1)
        _legend_below(ax, len(points) + (1 if best else 0))

    return _render(title, x_label, y_label, draw, size=_TALL_SIZE_IN)


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    x_label: str,
    y_label: str,
    *,
    percent: bool = False,
) -> str:
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


def histogram_chart(
    title: str, edges: Sequence[float], counts: Sequence[int], x_label: str, y_label: str = "count"
) -> str:
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
        bars = ax.bar(
            lefts,
            list(counts),
            width=widths,
            align="edge",
            color=_COLOURS[1],
            edgecolor="white",
            linewidth=0.6,
        )
        for i, bar in enumerate(bars):
            bar.set_gid(f"bar-{i}")
        ax.set_ylim(0, max(counts) * 1.08 or 1)
        ax.yaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]
        ax.grid(axis="x", visible=False)

    return _render(title, x_label, y_label, draw)


def _render(
    title: str,
    x_label: str,
    y_label: str,
    draw: Callable[[Axes], None],
    size: tuple[float, float] = _SIZE_IN,
) -> str:
    # Imported on first use: matplotlib takes a few hundred ms to import, which every command
    # that never draws a chart would pay.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_STYLE):  # type: ignore[arg-type]
        fig = Figure(figsize=size, layout="constrained")
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
    svg = svg[svg.index("<svg") :].strip()
    prefix = "c" + hashlib.sha1(svg.encode()).hexdigest()[:8] + "-"
    svg = _ID_OR_REFERENCE.sub(lambda m: m.group(1) + prefix, svg)
    # Shrinks with a narrow window instead of overflowing it.
    label = f'role="img" aria-label="{html.escape(title)}" style="max-width:100%;height:auto"'
    return svg.replace("<svg ", f"<svg {label} ", 1)


def _fmt(value: float, percent: bool) -> str:
    return f"{100 * value:.1f}%" if percent else f"{value:g}"


def _legend_below(ax: Axes, entries: int) -> None:
    columns = min(3, max(1, entries))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=columns)


def _plain_log_x(ax: Axes) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _percent_formatter() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0, decimals=0)
