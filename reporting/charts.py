"""Inline SVG charts of a scenario for the HTML report: no script, no network, just markup.

The primitives (canvas, axes, lines, legend) are reporting/svg.py's; this module holds the
scenario charts' canvas, colours and what each chart draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reporting import svg

WIDTH = 640
HEIGHT = 230
# The band above the plot (TOP) holds the legend, so that no line crosses it.
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 40
FRAME = svg.Frame(WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM)
MAX_X_LABELS = 12
SERIES_COLOURS = {"p50_ms": "#2b8a3e", "p95_ms": "#e67700", "p99_ms": "#c92a2a"}
REQUESTS_COLOUR = "#1c7ed6"
ERRORS_COLOUR = "#c92a2a"
EXPECTED_COLOUR = "#f59f00"  # refusals the scenario provokes on purpose
OFFERED_COLOUR = "#495057"
THRESHOLD_COLOUR = "#862e9c"
THRESHOLD_COLOURS = {"p95": "#862e9c", "p99": "#d6336c"}
THRESHOLD_DASHES = {"p95": "6 4", "p99": "2 3"}
BAR_COLOUR = "#1c7ed6"
LOG_STEPS = (1, 2, 5)  # tick values of a logarithmic axis, in each decade
COUNT_FLOOR = 0.5  # a log count axis starts below one request, so a single request shows
FAULT_COLOUR = "#c92a2a"  # an injected fault, from its start to its end
RECOVERY_COLOUR = "#f59f00"  # from the fault's end until the service had recovered
BAND_OPACITY = 0.18
MIN_BAND_PX = 3.0  # an instantaneous fault (a killed worker) still shows


@dataclass(frozen=True)
class FaultBand:
    """An injected fault on the time axis, in seconds of the run."""

    start_s: float
    end_s: float
    recovered_s: float | None  # seconds after end_s until recovery; None if it never did
    label: str


def histogram_svg(
    buckets: Sequence[Mapping[str, Any]],
    *,
    label: str,
    thresholds: Sequence[tuple[str, float]] = (),
) -> str:
    """Draw the latency histogram on a logarithmic latency axis, each bar over its bucket's span.

    The buckets are unequal (dense around the thresholds), so each bar covers its own bounds on
    a log latency axis; its height is on a log scale of requests, so that a tail of a few
    requests still shows beside thousands. ``thresholds``: (percentile, limit in ms), e.g.
    ("p95", 200): each a vertical dashed line, named in the legend. Empty buckets at the ends
    are trimmed.
    """
    counts = [int(b.get("count") or 0) for b in buckets]
    used = [i for i, count in enumerate(counts) if count]
    if not used:
        return svg.empty_svg(FRAME, label)
    spans = _bucket_spans(buckets)[used[0] : used[-1] + 1]
    shown = list(buckets[used[0] : used[-1] + 1])
    limits = [(name, float(limit)) for name, limit in thresholds if limit and limit > 0]
    low = min([spans[0][0], *(limit / 1.5 for _, limit in limits)])
    high = max([spans[-1][1], *(limit * 1.5 for _, limit in limits)])
    plot_w, plot_h = FRAME.plot_w, FRAME.plot_h

    def x_of(ms: float) -> float:
        return LEFT + plot_w * math.log(ms / low) / math.log(high / low)

    top = 10 ** max(math.ceil(math.log10(max(counts))), 1)

    def y_of(count: float) -> float:
        share = math.log(max(count, COUNT_FLOOR) / COUNT_FLOOR) / math.log(top / COUNT_FLOOR)
        return TOP + plot_h - plot_h * share

    parts = [svg.open_svg(FRAME, label)]
    for tick in (10.0**power for power in range(round(math.log10(top)) + 1)):
        parts += svg.y_tick(FRAME, y_of(tick), f"{tick:,.0f}")
    parts.append(svg.y_axis_title(FRAME, "requests (log)"))
    parts += [svg.x_tick(FRAME, x_of(tick), _ms_label(tick)) for tick in _log_ticks(low, high)]
    for bucket, (lower, upper) in zip(shown, spans, strict=True):
        count = int(bucket.get("count") or 0)
        x0, x1 = x_of(lower), x_of(upper)
        y = y_of(count) if count else TOP + plot_h
        tooltip = svg.title(f"{_bucket_label(bucket.get('upper_ms'))} ms: {count} requests")
        parts.append(
            f'<rect x="{x0 + 0.5:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 1, 1):.1f}"'
            f' height="{TOP + plot_h - y:.1f}" fill="{BAR_COLOUR}">{tooltip}</rect>'
        )
    entries: list[tuple[str, str, str]] = [("requests", BAR_COLOUR, svg.BOX)]
    for name, limit in limits:
        x = x_of(limit)
        colour = THRESHOLD_COLOURS.get(name, THRESHOLD_COLOUR)
        caption = f"{name} limit {limit:g} ms"
        parts.append(
            f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" '
            f'y2="{TOP + plot_h}" stroke="{colour}" stroke-width="1.5" '
            f'stroke-dasharray="{THRESHOLD_DASHES.get(name, "6 4")}">{svg.title(caption)}</line>'
        )
        entries.append((caption, colour, svg.DASH))
    parts.append(svg.x_axis_title(FRAME, "latency (log scale)"))
    parts.append(svg.legend(FRAME, entries))
    return svg.close_svg(parts)


def _bucket_spans(buckets: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """Return each bucket's (lower, upper) bound in ms: the first from half its upper bound,
    the overflow bucket (no upper bound) up to twice the last bound."""
    spans: list[tuple[float, float]] = []
    previous: float | None = None
    for bucket in buckets:
        upper = bucket.get("upper_ms")
        if upper is None or (isinstance(upper, float) and math.isinf(upper)):
            lower = previous if previous is not None else 1.0
            spans.append((lower, lower * 2))
            continue
        upper = float(upper)
        spans.append((previous if previous is not None else upper / 2, upper))
        previous = upper
    return spans


def _log_ticks(low: float, high: float) -> list[float]:
    """Return the 1-2-5 values from ``low`` to ``high``; only powers of ten when they are many."""
    ticks = [
        step * 10.0**power
        for power in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        for step in LOG_STEPS
    ]
    ticks = [t for t in ticks if low <= t * (1 + 1e-9) and t <= high * (1 + 1e-9)]
    if len(ticks) > MAX_X_LABELS:
        ticks = [t for t in ticks if math.log10(t).is_integer()]
    return ticks


def _ms_label(ms: float) -> str:
    return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms:g} ms"


def latency_over_time_svg(
    series: Sequence[Mapping[str, Any]],
    *,
    threshold_ms: float | None,
    label: str,
    bands: Sequence[FaultBand] = (),
    p99_threshold_ms: float | None = None,
) -> str:
    """Draw p50, p95 and p99 second by second; an idle second leaves a gap.

    ``threshold_ms`` and ``p99_threshold_ms``: the p95 and p99 limits, dashed and in the legend.
    """
    values = [
        float(point[key])
        for point in series
        for key in SERIES_COLOURS
        if point.get(key) is not None
    ]
    if not values:
        return svg.empty_svg(FRAME, label)
    limits = [
        (name, float(limit))
        for name, limit in (("p95", threshold_ms), ("p99", p99_threshold_ms))
        if limit is not None
    ]
    ticks = svg.nice_ticks(max([*values, *(limit for _, limit in limits)]))
    parts = [svg.open_svg(FRAME, label), *svg.y_axis(FRAME, ticks, "ms"), *_seconds_axis(series)]
    parts += _fault_bands(bands, len(series))
    entries: list[tuple[str, str, str]] = [
        (k.removesuffix("_ms"), c, svg.LINE) for k, c in SERIES_COLOURS.items()
    ]
    for name, limit in limits:
        y = FRAME.y(limit, ticks[-1])
        colour = THRESHOLD_COLOURS[name]
        caption = f"{name} limit {limit:g} ms"
        parts.append(
            f'<line class="threshold" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="{colour}" stroke-width="1.5" '
            f'stroke-dasharray="{THRESHOLD_DASHES[name]}">{svg.title(caption)}</line>'
        )
        entries.append((caption, colour, svg.DASH))
    for key, colour in SERIES_COLOURS.items():
        points = [(i, point.get(key)) for i, point in enumerate(series)]
        parts += _polylines(points, len(series), ticks[-1], colour, key.removesuffix("_ms"))
    parts.append(svg.legend(FRAME, entries))
    return svg.close_svg(parts)


def throughput_over_time_svg(
    series: Sequence[Mapping[str, Any]],
    *,
    label: str,
    bands: Sequence[FaultBand] = (),
    offered_rps: float | None = None,
) -> str:
    """Draw the achieved rate (answers per second) and the errors, apart, second by second.

    ``offered_rps``: the open model's arrival rate, a dashed line the answers should follow.
    Expected refusals and unexpected errors are separate lines (a series written before they
    were split shows its errors as one). Each injected fault is a band.
    """
    if not series:
        return svg.empty_svg(FRAME, label)
    answered = "answered" if any("answered" in point for point in series) else "requests"
    lines: list[tuple[str, str, str]] = [(answered, REQUESTS_COLOUR, answered)]
    if any("unexpected_errors" in point for point in series):
        lines += [
            ("expected_errors", EXPECTED_COLOUR, "expected refusals"),
            ("unexpected_errors", ERRORS_COLOUR, "unexpected errors"),
        ]
    else:
        lines.append(("errors", ERRORS_COLOUR, "errors"))
    top = max(int(point.get(key) or 0) for point in series for key, _, _ in lines)
    ticks = svg.nice_ticks(max(top, offered_rps or 0.0))
    parts = [
        svg.open_svg(FRAME, label),
        *svg.y_axis(FRAME, ticks, "per second"),
        *_seconds_axis(series),
    ]
    parts += _fault_bands(bands, len(series))
    entries: list[tuple[str, str, str]] = []
    if offered_rps is not None:
        y = FRAME.y(float(offered_rps), ticks[-1])
        caption = f"offered {offered_rps:g}/s"
        parts.append(
            f'<line class="offered" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{OFFERED_COLOUR}" stroke-width="1.5" stroke-dasharray="6 4">'
            f"{svg.title(caption)}</line>"
        )
        entries.append((caption, OFFERED_COLOUR, svg.DASH))
    for key, colour, name in lines:
        points = [(i, point.get(key) or 0) for i, point in enumerate(series)]
        parts += _polylines(points, len(series), ticks[-1], colour, name)
        entries.append((name, colour, svg.LINE))
    parts.append(svg.legend(FRAME, entries))
    return svg.close_svg(parts)


RETRIES_COLOUR = "#e8590c"


def retries_over_time_svg(
    series: Sequence[Mapping[str, Any]], *, label: str, bands: Sequence[FaultBand] = ()
) -> str:
    """Draw 40001/40P01 retries per committed operation, second by second."""
    values = [p["retries_per_committed"] for p in series if p.get("retries_per_committed")]
    if not series or not any(point.get("retries") for point in series):
        return svg.empty_svg(FRAME, label)
    ticks = svg.nice_ticks(max(values or [1.0]))
    parts = [
        svg.open_svg(FRAME, label),
        *svg.y_axis(FRAME, ticks, "per committed op"),
        *_seconds_axis(series),
    ]
    parts += _fault_bands(bands, len(series))
    points = [(i, point.get("retries_per_committed")) for i, point in enumerate(series)]
    parts += _polylines(points, len(series), ticks[-1], RETRIES_COLOUR, "retries")
    parts.append(svg.legend(FRAME, [("retries", RETRIES_COLOUR, svg.LINE)]))
    return svg.close_svg(parts)


def _fault_bands(bands: Sequence[FaultBand], length: int) -> list[str]:
    """Shade each fault (red) and its recovery (amber) behind the lines."""
    parts = []
    right = WIDTH - RIGHT
    for band in bands:
        x_start = min(_x(band.start_s, length), right)
        x_end = min(max(_x(band.end_s, length), x_start + MIN_BAND_PX), right)
        parts.append(
            f'<rect class="fault" x="{x_start:.1f}" y="{TOP}" width="{x_end - x_start:.1f}" '
            f'height="{FRAME.plot_h:.1f}" fill="{FAULT_COLOUR}" fill-opacity="{BAND_OPACITY}">'
            f"{svg.title(band.label)}</rect>"
        )
        if band.recovered_s:
            x_back = min(_x(band.end_s + band.recovered_s, length), right)
            if x_back > x_end:
                parts.append(
                    f'<rect class="recovery" x="{x_end:.1f}" y="{TOP}" '
                    f'width="{x_back - x_end:.1f}" height="{FRAME.plot_h:.1f}" '
                    f'fill="{RECOVERY_COLOUR}" fill-opacity="{BAND_OPACITY}">'
                    f"{svg.title(f'{band.label}: recovering')}</rect>"
                )
    return parts


def _x(index: float, length: int) -> float:
    """Return the x of the ``index``-th of ``length`` seconds; a lone second sits in the middle."""
    return FRAME.x(index, length - 1) if length > 1 else LEFT + FRAME.plot_w / 2


def _seconds_axis(series: Sequence[Mapping[str, Any]]) -> list[str]:
    """Label at most MAX_X_LABELS seconds of the run along the x axis."""
    length = len(series)
    every = max(1, math.ceil(length / MAX_X_LABELS))
    parts = [
        svg.x_tick(FRAME, _x(i, length), f"{point.get('second', i)}")
        for i, point in enumerate(series)
        if i % every == 0
    ]
    parts.append(svg.x_axis_title(FRAME, "second of the run"))
    return parts


def _polylines(
    points: Sequence[tuple[int, Any]], length: int, top: float, colour: str, name: str
) -> list[str]:
    """Draw a series as lines broken where a value is None; a lone value is a dot."""
    runs: list[list[tuple[float, float]]] = [[]]
    for index, value in points:
        if value is None:
            runs.append([])
            continue
        runs[-1].append((_x(index, length), FRAME.y(float(value), top)))
    parts = []
    for run in filter(None, runs):
        if len(run) == 1:
            x, y = run[0]
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{colour}"/>')
        else:
            parts.append(svg.polyline(run, colour, name))
    return parts


def _bucket_label(upper: Any) -> str:
    if upper is None or (isinstance(upper, float) and math.isinf(upper)):
        return "more"
    return f"≤{float(upper):g}"
