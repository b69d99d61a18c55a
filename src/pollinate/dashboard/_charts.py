"""Line charts as SVG text, drawn on the server: axes, ticks, labels and a legend.

Colours come from the stylesheet (classes ``s0``..``s5``), never from inline styles, so the
pages keep their strict Content-Security-Policy. Every label is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Series", "line_chart", "nice_ticks"]

_W, _H = 460, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 14, 28, 44
_COLOURS = 6
_MAX_POINTS = 600
_MAX_TICKS = 20
_LIMIT = 1e300
"""Values are drawn within ±_LIMIT: the difference of two stays a finite float."""


@dataclass(frozen=True, slots=True)
class Series:
    """One line: its name, its points (x, y) in x order, and its colour (0-5; None: by order)."""

    name: str
    points: tuple[tuple[float, float], ...]
    colour: int | None = None


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering ``low..high``.

    At most ``_MAX_TICKS`` + 1, counted by index: values too close for a step to tell apart
    (1e16 and 1e16 + 2) get one tick, and a range wider than floats (-1e308..1e308) is clamped.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    low, high = _clamped(low), _clamped(high)
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    step = 0.0 if raw <= 0 else _nice_step(raw)
    if step <= math.ulp(max(abs(low), abs(high))):
        return [low]
    first = math.floor(low / step) * step
    last = min(math.ceil((high - first) / step - 0.001), _MAX_TICKS)
    return [round(first + i * step, 12) for i in range(last + 1)]


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 or 10 times a power of ten that is at least ``raw``."""
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _clamped(value: float) -> float:
    """``value`` within ±``_LIMIT``, so that differences of two values stay finite."""
    return max(-_LIMIT, min(value, _LIMIT))


def _thinned(series: Series) -> Series:
    """At most about ``_MAX_POINTS`` points, evenly picked, the last one kept; clamped."""
    points = tuple((_clamped(x), _clamped(y)) for x, y in series.points)
    if len(points) <= _MAX_POINTS:
        return Series(series.name, points, series.colour)
    step = math.ceil(len(points) / _MAX_POINTS)
    kept = points[::step] + ((points[-1],) if (len(points) - 1) % step else ())
    return Series(series.name, kept, series.colour)


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.4g}"


def line_chart(title: str, series: Sequence[Series], x_label: str, y_label: str = "") -> str:
    """An SVG chart of ``series`` (empty series are left out; no points: a note instead)."""
    drawn = [_thinned(s) for s in series if s.points]
    if not drawn:
        return f'<p class="empty">{escape(title)}: no values yet</p>'
    xs = [x for s in drawn for x, _ in s.points]
    ys = [y for s in drawn for _, y in s.points]
    x_ticks, y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    x0, x1 = min(x_ticks[0], min(xs)), max(x_ticks[-1], max(xs))
    y0, y1 = min(y_ticks[0], min(ys)), max(y_ticks[-1], max(ys))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + (x - x0) / ((x1 - x0) or 1) * plot_w

    def py(y: float) -> float:
        return _TOP + plot_h - (y - y0) / ((y1 - y0) or 1) * plot_h

    parts = [
        f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
        f'<svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for y in y_ticks:
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" '
            f'y1="{py(y):.1f}" y2="{py(y):.1f}"/>'
            f'<text class="tick" x="{_LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end">'
            f"{_label(y)}</text>"
        )
    for x in x_ticks:
        parts.append(
            f'<line class="axis" x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{_TOP + plot_h}" '
            f'y2="{_TOP + plot_h + 4}"/><text class="tick" x="{px(x):.1f}" '
            f'y="{_TOP + plot_h + 17}" text-anchor="middle">{_label(x)}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_TOP + plot_h}" '
        f'y2="{_TOP + plot_h}"/><line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" '
        f'y2="{_TOP + plot_h}"/>'
        f'<text class="label" x="{_LEFT + plot_w / 2:.1f}" y="{_H - 6}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    if y_label:
        parts.append(
            f'<text class="label" transform="translate(14 {_TOP + plot_h / 2:.1f}) rotate(-90)" '
            f'text-anchor="middle">{escape(y_label)}</text>'
        )
    for i, s in enumerate(drawn):
        cls = f"s{(i if s.colour is None else s.colour) % _COLOURS}"
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        parts.append(f'<polyline class="line {cls}" points="{path}"/>')
        if len(s.points) <= 40:
            parts.extend(
                f'<circle class="dot {cls}" cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5">'
                f"<title>{escape(s.name)}: {_label(x)}, {_label(y)}</title></circle>"
                for x, y in s.points
            )
        legend_x = _LEFT + 130 * i
        parts.append(
            f'<rect class="key {cls}" x="{legend_x}" y="8" width="10" height="10"/>'
            f'<text class="legend" x="{legend_x + 14}" y="17">{escape(s.name)}</text>'
        )
    parts.append("</svg></figure>")
    return "".join(parts)
