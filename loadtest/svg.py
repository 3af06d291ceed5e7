"""Minimal inline-SVG line charts for the HTML report (no plotting dependency)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
_W, _H = 640, 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 28, 44


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.2e}"


def line_chart(title: str, series: list[Series], x_label: str, y_label: str) -> str:
    """An SVG line chart with axes, ticks and a legend; empty series are skipped."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return f"<p><em>{escape(title)}: no data</em></p>"
    xs = [x for s in drawn for x, _ in s.points]
    ys = [y for s in drawn for _, y in s.points]
    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = nice_ticks(min(0.0, min(ys)), max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return _TOP + plot_h - (y - y0) / (y1 - y0) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" font-family="sans-serif" font-size="11">',
        f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
    ]
    for t in x_ticks:
        parts.append(f'<line x1="{px(t):.1f}" y1="{_TOP}" x2="{px(t):.1f}" y2="{_TOP + plot_h}" stroke="#eee"/>')
        parts.append(f'<text x="{px(t):.1f}" y="{_TOP + plot_h + 14}" text-anchor="middle">{_label(t)}</text>')
    for t in y_ticks:
        parts.append(f'<line x1="{_LEFT}" y1="{py(t):.1f}" x2="{_LEFT + plot_w}" y2="{py(t):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{_LEFT - 4}" y="{py(t) + 4:.1f}" text-anchor="end">{_label(t)}</text>')
    parts.append(
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>'
    )
    parts.append(f'<text x="{_LEFT + plot_w / 2}" y="{_H - 6}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(
        f'<text transform="translate(14 {_TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">'
        f"{escape(y_label)}</text>"
    )
    for i, s in enumerate(drawn):
        colour = _COLOURS[i % len(_COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        if len(s.points) < 30:
            parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in s.points]
        ly = _TOP + 12 + 14 * i
        parts.append(f'<rect x="{_LEFT + 8}" y="{ly - 8}" width="10" height="3" fill="{colour}"/>')
        parts.append(f'<text x="{_LEFT + 22}" y="{ly - 3}">{escape(s.name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
