"""Inline SVG of latency percentile spectra, overlaid, on HdrHistogram's log axis of 1/(1-q)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from reporting.charts import nice_ticks

WIDTH = 640
HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 22, 40
# The labelled percentiles on the x axis: each a tenfold step of 1/(1-q).
X_LABELS = ((0.0, "0 %"), (90.0, "90 %"), (99.0, "99 %"), (99.9, "99.9 %"), (99.99, "99.99 %"))
SERIES = (("base", "#1c7ed6"), ("new", "#e8590c"))


def spectrum_svg(
    spectra: Sequence[Sequence[tuple[float, float]]],
    *,
    label: str,
    names: Sequence[str] = ("base", "new"),
    colours: Sequence[str] = tuple(colour for _, colour in SERIES),
) -> str:
    """Draw each (percentile, latency ms) series as a line; x = log10(1 / (1 - q))."""
    series = zip(names, colours, spectra, strict=False)
    shown = [(name, colour, points) for name, colour, points in series if points]
    if not shown:
        return _open(label) + _text(WIDTH / 2, HEIGHT / 2, "no data recorded") + "</svg>"
    # The axis runs to the next tenfold step past the highest finite percentile drawn.
    reach = max((_x_value(q) for _, _, points in shown for q, _ in points if q < 100), default=1)
    x_top = max(math.ceil(reach), 1)
    y_ticks = nice_ticks(max(value for _, _, points in shown for _, value in points))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [_open(label)]
    for tick in y_ticks:
        y = TOP + plot_h - plot_h * tick / y_ticks[-1]
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dee2e6"/>'
        )
        parts.append(_text(LEFT - 6, y + 4, f"{tick:g}", anchor="end"))
    parts.append(_text(12, TOP + plot_h / 2, "latency, ms", rotate=True))
    for percent, text in X_LABELS:
        position = _x_value(percent)
        if position > x_top + 1e-9:
            break
        x = LEFT + plot_w * position / x_top
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#dee2e6"/>'
        )
        parts.append(_text(x, TOP + plot_h + 14, text))
    parts.append(_text(LEFT + plot_w / 2, HEIGHT - 6, "percentile (log scale of 1/(1-q))"))
    for index, (name, colour, points) in enumerate(shown):
        coordinates = " ".join(
            f"{LEFT + plot_w * min(_x_value(q), x_top) / x_top:.1f},"
            f"{TOP + plot_h - plot_h * value / y_ticks[-1]:.1f}"
            for q, value in points
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{coordinates}">'
            f"<title>{escape(name)}</title></polyline>"
        )
        x = LEFT + 8 + 90 * index
        parts.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(x + 14, 13, name, anchor="start"))
    return "".join([*parts, "</svg>"])


def _x_value(percent: float) -> float:
    """Return log10(1 / (1 - q)): 0 at the median's left end, 1 at p90, 2 at p99..."""
    remaining = 1 - percent / 100
    return math.log10(1 / remaining) if remaining > 0 else math.inf


def _open(label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(label)}" '
        'font-family="sans-serif" font-size="11">'
        f"<title>{escape(label)}</title>"
    )


def _text(x: float, y: float, text: str, *, anchor: str = "middle", rotate: bool = False) -> str:
    transform = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="#495057"{transform}>'
        f"{escape(text)}</text>"
    )
