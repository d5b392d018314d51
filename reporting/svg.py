"""SVG primitives every chart of the report draws with: canvas, scales, ticks, axes, lines, text.

Pure functions returning markup strings; each chart module composes them and keeps only what
is its own (its data, its colours, its decorations). Every piece of text goes through `title`
or `text`, which escape it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

CLOSE = "</svg>"
GRID_COLOUR = "#dee2e6"
TEXT_COLOUR = "#495057"
LINE_WIDTH = 1.8  # a data series
TICKS = 5
X_TICK_DROP = 14  # an x tick's label sits this far below the plot
Y_TICK_INSET = 6  # a y tick's label ends this far left of the plot
Y_TITLE_X = 12  # the rotated y axis title's centre, from the canvas's left edge
X_TITLE_RISE = 6  # the x axis title's baseline, above the canvas's bottom edge
# The legend: one row in the band above the plot.
LEGEND_Y = 8
LEGEND_CHAR_PX = 5.6  # about one character of the 11 px sans-serif legend
BOX, LINE, DASH = "box", "line", "dash"


@dataclass(frozen=True)
class Frame:
    """A canvas and the margins around its plot area, in px."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int

    @property
    def plot_w(self) -> int:
        """Return the plot area's width."""
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> int:
        """Return the plot area's height."""
        return self.height - self.top - self.bottom

    def x(self, value: float, high: float) -> float:
        """Return the x of ``value`` on a linear axis from 0 (left edge) to ``high`` (right)."""
        return self.left + self.plot_w * value / high

    def y(self, value: float, high: float) -> float:
        """Return the y of ``value`` on a linear axis from 0 (bottom edge) to ``high`` (top)."""
        return self.top + self.plot_h - self.plot_h * value / high


def nice_ticks(top: float, count: int = TICKS) -> list[float]:
    """Return round tick values from 0 up to at least ``top`` (1-2-5 steps)."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(math.ceil(top / step - 1e-9) + 1)]


def open_svg(frame: Frame, label: str) -> str:
    """Return the opening tag of a chart of ``frame``'s size, named ``label`` for screen readers."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {frame.width} {frame.height}" '
        f'width="{frame.width}" height="{frame.height}" role="img" aria-label="{escape(label)}" '
        'font-family="sans-serif" font-size="11">'
        f"{title(label)}"
    )


def close_svg(parts: Sequence[str]) -> str:
    """Join a chart's parts (the first from `open_svg`) and close the svg."""
    return "".join([*parts, CLOSE])


def empty_svg(frame: Frame, label: str) -> str:
    """Return a chart that says it has no data."""
    middle = text(frame.width / 2, frame.height / 2, "no data recorded", anchor="middle")
    return close_svg([open_svg(frame, label), middle])


def title(content: str) -> str:
    """Return a tooltip element, escaped."""
    return f"<title>{escape(content)}</title>"


def text(x: float, y: float, content: str, *, anchor: str = "middle", rotate: bool = False) -> str:
    """Return a label at (x, y), escaped; ``rotate`` turns it to read upwards."""
    transform = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{TEXT_COLOUR}"{transform}>'
        f"{escape(content)}</text>"
    )


def grid_line(frame: Frame, y: float) -> str:
    """Return a horizontal grid line across the plot at ``y``."""
    return (
        f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{y:.1f}" y2="{y:.1f}" '
        f'stroke="{GRID_COLOUR}"/>'
    )


def vertical_grid_line(frame: Frame, x: float) -> str:
    """Return a vertical grid line down the plot at ``x``."""
    return (
        f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top}" y2="{frame.top + frame.plot_h}" '
        f'stroke="{GRID_COLOUR}"/>'
    )


def y_tick(frame: Frame, y: float, label: str) -> list[str]:
    """Return a y tick: its grid line and its label left of the plot."""
    return [grid_line(frame, y), text(frame.left - Y_TICK_INSET, y + 4, label, anchor="end")]


def y_axis_title(frame: Frame, content: str) -> str:
    """Return the y axis's title, rotated, centred beside the plot."""
    return text(Y_TITLE_X, frame.top + frame.plot_h / 2, content, anchor="middle", rotate=True)


def y_axis(frame: Frame, ticks: Sequence[float], unit: str) -> list[str]:
    """Return a linear y axis from 0 to the last tick: grid lines, tick labels and ``unit``."""
    parts = []
    for tick in ticks:
        parts += y_tick(frame, frame.y(tick, ticks[-1]), f"{tick:g}")
    parts.append(y_axis_title(frame, unit))
    return parts


def x_tick(frame: Frame, x: float, label: str) -> str:
    """Return an x tick's label below the plot."""
    return text(x, frame.top + frame.plot_h + X_TICK_DROP, label, anchor="middle")


def x_axis_title(frame: Frame, content: str) -> str:
    """Return the x axis's title, centred below the tick labels."""
    return text(frame.left + frame.plot_w / 2, frame.height - X_TITLE_RISE, content)


def polyline(coordinates: Sequence[tuple[float, float]], colour: str, name: str) -> str:
    """Return a data line through the (x, y) ``coordinates``, ``name`` as its tooltip."""
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in coordinates)
    return (
        f'<polyline fill="none" stroke="{colour}" stroke-width="{LINE_WIDTH}" '
        f'points="{points}">{title(name)}</polyline>'
    )


def legend(frame: Frame, entries: Sequence[tuple[str, str] | tuple[str, str, str]]) -> str:
    """Lay the legend out in the band above the plot, left to right from the plot's left edge.

    Each entry: (name, colour) for a filled box, or (name, colour, style) with style box, line
    or dash (a threshold or an offered rate).
    """
    parts = []
    x = float(frame.left)
    for entry in entries:
        name, colour = entry[0], entry[1]
        style = entry[2] if len(entry) > 2 else BOX  # type: ignore[misc]
        if style == BOX:
            parts.append(
                f'<rect x="{x:.1f}" y="{LEGEND_Y}" width="10" height="10" fill="{colour}"/>'
            )
        else:
            dash = ' stroke-dasharray="4 3"' if style == DASH else ""
            parts.append(
                f'<line x1="{x:.1f}" x2="{x + 12:.1f}" y1="{LEGEND_Y + 5}" y2="{LEGEND_Y + 5}" '
                f'stroke="{colour}" stroke-width="2"{dash}/>'
            )
        parts.append(text(x + 16, LEGEND_Y + 9, name, anchor="start"))
        x += 16 + LEGEND_CHAR_PX * len(name) + 14
    return f'<g class="legend">{"".join(parts)}</g>'
