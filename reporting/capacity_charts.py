"""Inline SVG charts of a capacity search: latency and achieved throughput against offered rate.

Unlike the per-second charts, the x axis is a number (requests/s offered), so the steps are
drawn in rate order wherever the search tried them; a held step is a filled dot, a failed one
a hollow one, and the highest sustainable rate a dashed vertical line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reporting import svg

# The same canvas and colours as the scenario charts (reporting.charts).
from reporting.charts import (
    BOTTOM,
    FRAME,
    HEIGHT,
    LEFT,
    REQUESTS_COLOUR,
    RIGHT,
    SERIES_COLOURS,
    THRESHOLD_COLOUR,
    TOP,
    WIDTH,
)

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
        return svg.empty_svg(FRAME, label)
    ticks = svg.nice_ticks(max([*values, threshold_ms or 0.0]))
    x_top = _x_top(measured)
    parts = [svg.open_svg(FRAME, label), *svg.y_axis(FRAME, ticks, "ms"), *_rate_axis(x_top)]
    if threshold_ms is not None:
        y = FRAME.y(threshold_ms, ticks[-1])
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{THRESHOLD_COLOUR}" stroke-dasharray="6 4">'
            f"{svg.title(f'p95 threshold {threshold_ms:g} ms')}</line>"
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
    parts.append(svg.legend(FRAME, [(key, SERIES_COLOURS[f"{key}_ms"]) for key in LATENCY_KEYS]))
    return svg.close_svg(parts)


def throughput_vs_rate_svg(
    steps: Sequence[Mapping[str, Any]], *, sustainable_rps: float | None, label: str
) -> str:
    """Draw the answers per second each step achieved against the rate offered (ideal: y = x)."""
    measured = _measured(steps)
    if not measured:
        return svg.empty_svg(FRAME, label)
    x_top = _x_top(measured)
    achieved = [float(step.get("achieved_rps") or 0.0) for step in measured]
    ticks = svg.nice_ticks(max([*achieved, max(float(s["rate_rps"]) for s in measured)]))
    parts = [svg.open_svg(FRAME, label), *svg.y_axis(FRAME, ticks, "req/s"), *_rate_axis(x_top)]
    ideal_end = min(x_top, ticks[-1])
    parts.append(
        f'<line x1="{FRAME.x(0, x_top):.1f}" y1="{FRAME.y(0, ticks[-1]):.1f}" '
        f'x2="{FRAME.x(ideal_end, x_top):.1f}" y2="{FRAME.y(ideal_end, ticks[-1]):.1f}" '
        f'stroke="{IDEAL_COLOUR}" stroke-dasharray="3 3">{svg.title("achieved = offered")}</line>'
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
    parts.append(svg.legend(FRAME, [("answered", REQUESTS_COLOUR), ("succeeded", OK_COLOUR)]))
    return svg.close_svg(parts)


def _measured(steps: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Steps that produced figures (a step that raised has none), in rate order."""
    return sorted(
        (step for step in steps if step.get("latency_ms") is not None),
        key=lambda step: float(step["rate_rps"]),
    )


def _x_top(steps: Sequence[Mapping[str, Any]]) -> float:
    """Return the right end of the rate axis: a round rate at or above the highest offered."""
    return svg.nice_ticks(max(float(step["rate_rps"]) for step in steps))[-1]


def _rate_axis(x_top: float) -> list[str]:
    """Label the offered rate along the x axis, from 0 to ``x_top``."""
    parts = [svg.x_tick(FRAME, FRAME.x(tick, x_top), f"{tick:g}") for tick in svg.nice_ticks(x_top)]
    parts.append(svg.x_axis_title(FRAME, "offered rate, req/s"))
    return parts


def _sustainable_line(rate: float | None, x_top: float) -> list[str]:
    """Mark the highest sustainable rate with a dashed vertical line, if the search found one."""
    if rate is None:
        return []
    x = FRAME.x(rate, x_top)
    return [
        f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" '
        f'stroke="{OK_COLOUR}" stroke-dasharray="6 4">'
        f"{svg.title(f'highest sustainable rate {rate:g} req/s')}</line>"
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
    """Draw a series as a line through its steps, each step a dot: filled held, hollow failed."""
    coordinates = [(FRAME.x(rate, x_top), FRAME.y(value, y_top)) for rate, value, _ in points]
    parts = []
    if len(coordinates) > 1:
        parts.append(svg.polyline(coordinates, colour, name))
    for (x, y), (rate, value, held) in zip(coordinates, points, strict=True):
        fill = colour if held else "#fff"
        state = "held" if held else "failed"
        tooltip = svg.title(f"{name} at {rate:g} req/s offered: {value:,.1f} {unit} ({state})")
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" stroke="{colour}" '
            f'stroke-width="1.5">{tooltip}</circle>'
        )
    return parts
