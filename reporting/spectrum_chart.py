"""Inline SVG of latency percentile spectra, overlaid, on HdrHistogram's log axis of 1/(1-q)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from reporting import svg

WIDTH = 640
HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 22, 40
FRAME = svg.Frame(WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM)
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
        return svg.empty_svg(FRAME, label)
    # The axis runs to the next tenfold step past the highest finite percentile drawn.
    reach = max((_x_value(q) for _, _, points in shown for q, _ in points if q < 100), default=1)
    x_top = max(math.ceil(reach), 1)
    y_ticks = svg.nice_ticks(max(value for _, _, points in shown for _, value in points))
    parts = [svg.open_svg(FRAME, label), *svg.y_axis(FRAME, y_ticks, "latency, ms")]
    for percent, caption in X_LABELS:
        position = _x_value(percent)
        if position > x_top + 1e-9:
            break
        x = FRAME.x(position, x_top)
        parts += [svg.vertical_grid_line(FRAME, x), svg.x_tick(FRAME, x, caption)]
    parts.append(svg.x_axis_title(FRAME, "percentile (log scale of 1/(1-q))"))
    for index, (name, colour, points) in enumerate(shown):
        coordinates = [
            (FRAME.x(min(_x_value(q), x_top), x_top), FRAME.y(value, y_ticks[-1]))
            for q, value in points
        ]
        parts.append(svg.polyline(coordinates, colour, name))
        x = LEFT + 8 + 90 * index
        parts.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{colour}"/>')
        parts.append(svg.text(x + 14, 13, name, anchor="start"))
    return svg.close_svg(parts)


def _x_value(percent: float) -> float:
    """Return log10(1 / (1 - q)): 0 at the median's left end, 1 at p90, 2 at p99..."""
    remaining = 1 - percent / 100
    return math.log10(1 / remaining) if remaining > 0 else math.inf
