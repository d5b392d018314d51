"""Inline SVG charts of a capacity search: latency and achieved throughput against offered rate.

Unlike the per-second charts, the x axis is a number (requests/s offered), so the steps are
drawn in rate order wherever the search tried them; a held step is a filled dot, a failed one
a hollow one, and the highest sustainable rate a dashed vertical line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

# The same canvas, axes and look as the scenario charts (reporting.charts).
from reporting.charts import (
    BOTTOM,
    HEIGHT,
    LEFT,
    REQUESTS_COLOUR,
    RIGHT,
    SERIES_COLOURS,
    THRESHOLD_COLOUR,
    TOP,
    WIDTH,
    nice_ticks,
)
from reporting.charts import _empty as empty_chart
from reporting.charts import _legend as legend
from reporting.charts import _open as open_chart
from reporting.charts import _text as text
from reporting.charts import _y_axis as y_axis

LATENCY_KEYS = ("p50", "p95", "p99")
IDEAL_COLOUR = "#adb5bd"
OK_COLOUR = "#2b8a3e"


def latency_vs_rate_svg(
    steps: Sequence[Mapping[str, Any]],
    *,
    sustainable_rps: float | None,
    threshold_ms: float | None,
    label: str,
) -> str:
    """Draw p50, p95 and p99 of each step's measured window against the rate it was offered."""
    measured = _measured(steps)
    values = [
        float(step["latency_ms"][key])
        for step in measured
        for key in LATENCY_KEYS
        if step["latency_ms"].get(key) is not None
    ]
    if not values:
        return empty_chart(label)
    ticks = nice_ticks(max([*values, threshold_ms or 0.0]))
    x_top = _x_top(measured)
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [open_chart(label), *y_axis(ticks, plot_h, "ms"), *_x_axis(x_top, plot_h)]
    if threshold_ms is not None:
        y = _y(threshold_ms, ticks[-1])
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{THRESHOLD_COLOUR}" stroke-dasharray="6 4"><title>p95 threshold '
            f"{threshold_ms:g} ms</title></line>"
        )
    parts += _sustainable_line(sustainable_rps, x_top)
    for key in LATENCY_KEYS:
        colour = SERIES_COLOURS[f"{key}_ms"]
        points = [
            (float(step["rate_rps"]), float(step["latency_ms"][key]), bool(step["passed"]))
            for step in measured
            if step["latency_ms"].get(key) is not None
        ]
        parts += _series(points, x_top, ticks[-1], colour, key, unit="ms")
    parts.append(legend([(key, SERIES_COLOURS[f"{key}_ms"]) for key in LATENCY_KEYS]))
    return "".join([*parts, "</svg>"])


def throughput_vs_rate_svg(
    steps: Sequence[Mapping[str, Any]], *, sustainable_rps: float | None, label: str
) -> str:
    """Draw the answers per second each step achieved against the rate offered (ideal: y = x)."""
    measured = _measured(steps)
    if not measured:
        return empty_chart(label)
    x_top = _x_top(measured)
    achieved = [float(step.get("achieved_rps") or 0.0) for step in measured]
    ticks = nice_ticks(max([*achieved, max(float(s["rate_rps"]) for s in measured)]))
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [open_chart(label), *y_axis(ticks, plot_h, "req/s"), *_x_axis(x_top, plot_h)]
    ideal_end = min(x_top, ticks[-1])
    parts.append(
        f'<line x1="{_x(0, x_top):.1f}" y1="{_y(0, ticks[-1]):.1f}" '
        f'x2="{_x(ideal_end, x_top):.1f}" y2="{_y(ideal_end, ticks[-1]):.1f}" '
        f'stroke="{IDEAL_COLOUR}" stroke-dasharray="3 3"><title>achieved = offered</title></line>'
    )
    parts += _sustainable_line(sustainable_rps, x_top)
    for key, colour, name in (
        ("achieved_rps", REQUESTS_COLOUR, "answered"),
        ("ok_rps", OK_COLOUR, "succeeded"),
    ):
        points = [
            (float(step["rate_rps"]), float(step.get(key) or 0.0), bool(step["passed"]))
            for step in measured
        ]
        parts += _series(points, x_top, ticks[-1], colour, name, unit="req/s")
    parts.append(legend([("answered", REQUESTS_COLOUR), ("succeeded", OK_COLOUR)]))
    return "".join([*parts, "</svg>"])


def _measured(steps: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Steps that produced figures (a step that raised has none), in rate order."""
    return sorted(
        (step for step in steps if step.get("latency_ms") is not None),
        key=lambda step: float(step["rate_rps"]),
    )


def _x_top(steps: Sequence[Mapping[str, Any]]) -> float:
    return nice_ticks(max(float(step["rate_rps"]) for step in steps))[-1]


def _x(rate: float, x_top: float) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * rate / x_top


def _y(value: float, y_top: float) -> float:
    plot_h = HEIGHT - TOP - BOTTOM
    return TOP + plot_h - plot_h * value / y_top


def _x_axis(x_top: float, plot_h: float) -> list[str]:
    parts = [
        text(_x(tick, x_top), TOP + plot_h + 14, f"{tick:g}", anchor="middle")
        for tick in nice_ticks(x_top)
    ]
    parts.append(text(LEFT + (WIDTH - LEFT - RIGHT) / 2, HEIGHT - 6, "offered rate, req/s"))
    return parts


def _sustainable_line(rate: float | None, x_top: float) -> list[str]:
    if rate is None:
        return []
    x = _x(rate, x_top)
    return [
        f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" '
        f'stroke="{OK_COLOUR}" stroke-dasharray="6 4"><title>highest sustainable rate '
        f"{rate:g} req/s</title></line>"
    ]


def _series(
    points: Sequence[tuple[float, float, bool]],
    x_top: float,
    y_top: float,
    colour: str,
    name: str,
    *,
    unit: str,
) -> list[str]:
    coordinates = [(_x(rate, x_top), _y(value, y_top)) for rate, value, _ in points]
    parts = []
    if len(coordinates) > 1:
        joined = " ".join(f"{x:.1f},{y:.1f}" for x, y in coordinates)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{joined}">'
            f"<title>{escape(name)}</title></polyline>"
        )
    for (x, y), (rate, value, held) in zip(coordinates, points, strict=True):
        fill = colour if held else "#fff"
        state = "held" if held else "failed"
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" stroke="{colour}" '
            f'stroke-width="1.5"><title>{escape(name)} at {rate:g} req/s offered: '
            f"{value:,.1f} {unit} ({state})</title></circle>"
        )
    return parts
