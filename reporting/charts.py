"""Inline SVG charts for the HTML report: no script, no network, just markup."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

WIDTH = 640
HEIGHT = 230
# The band above the plot (TOP) holds the legend, so that no line crosses it.
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 40
LEGEND_Y = 8
LEGEND_CHAR_PX = 5.6  # about one character of the 11 px sans-serif legend
TICKS = 5
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
BOX, LINE, DASH = "box", "line", "dash"
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


def nice_ticks(top: float, count: int = TICKS) -> list[float]:
    """Return round tick values from 0 up to at least ``top`` (1-2-5 steps)."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(math.ceil(top / step - 1e-9) + 1)]


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
        return _empty(label)
    spans = _bucket_spans(buckets)[used[0] : used[-1] + 1]
    shown = list(buckets[used[0] : used[-1] + 1])
    limits = [(name, float(limit)) for name, limit in thresholds if limit and limit > 0]
    low = min([spans[0][0], *(limit / 1.5 for _, limit in limits)])
    high = max([spans[-1][1], *(limit * 1.5 for _, limit in limits)])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(ms: float) -> float:
        return LEFT + plot_w * math.log(ms / low) / math.log(high / low)

    top = 10 ** max(math.ceil(math.log10(max(counts))), 1)

    def y_of(count: float) -> float:
        share = math.log(max(count, COUNT_FLOOR) / COUNT_FLOOR) / math.log(top / COUNT_FLOOR)
        return TOP + plot_h - plot_h * share

    parts = [_open(label)]
    for tick in (10.0**power for power in range(round(math.log10(top)) + 1)):
        y = y_of(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dee2e6"/>'
        )
        parts.append(_text(LEFT - 6, y + 4, f"{tick:,.0f}", anchor="end"))
    parts.append(_text(12, TOP + plot_h / 2, "requests (log)", anchor="middle", rotate=True))
    for tick in _log_ticks(low, high):
        parts.append(_text(x_of(tick), TOP + plot_h + 14, _ms_label(tick), anchor="middle"))
    for bucket, (lower, upper) in zip(shown, spans, strict=True):
        count = int(bucket.get("count") or 0)
        x0, x1 = x_of(lower), x_of(upper)
        y = y_of(count) if count else TOP + plot_h
        parts.append(
            f'<rect x="{x0 + 0.5:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 1, 1):.1f}"'
            f' height="{TOP + plot_h - y:.1f}" fill="{BAR_COLOUR}"><title>'
            f"{escape(_bucket_label(bucket.get('upper_ms')))} ms: {count} requests</title></rect>"
        )
    entries: list[tuple[str, str, str]] = [("requests", BAR_COLOUR, BOX)]
    for name, limit in limits:
        x = x_of(limit)
        colour = THRESHOLD_COLOURS.get(name, THRESHOLD_COLOUR)
        text = f"{name} limit {limit:g} ms"
        parts.append(
            f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" '
            f'y2="{TOP + plot_h}" stroke="{colour}" stroke-width="1.5" '
            f'stroke-dasharray="{THRESHOLD_DASHES.get(name, "6 4")}">'
            f"<title>{escape(text)}</title></line>"
        )
        entries.append((text, colour, DASH))
    parts.append(_text(LEFT + plot_w / 2, HEIGHT - 6, "latency (log scale)"))
    parts.append(_legend(entries))
    return "".join([*parts, "</svg>"])


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
        return _empty(label)
    limits = [
        (name, float(limit))
        for name, limit in (("p95", threshold_ms), ("p99", p99_threshold_ms))
        if limit is not None
    ]
    ticks = nice_ticks(max([*values, *(limit for _, limit in limits)]))
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [_open(label), *_y_axis(ticks, plot_h, "ms"), *_x_axis(series, plot_h)]
    parts += _fault_bands(bands, len(series), plot_h)
    entries: list[tuple[str, str, str]] = [
        (k.removesuffix("_ms"), c, LINE) for k, c in SERIES_COLOURS.items()
    ]
    for name, limit in limits:
        y = _y(limit, ticks[-1], plot_h)
        colour = THRESHOLD_COLOURS[name]
        text = f"{name} limit {limit:g} ms"
        parts.append(
            f'<line class="threshold" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="{colour}" stroke-width="1.5" '
            f'stroke-dasharray="{THRESHOLD_DASHES[name]}"><title>{escape(text)}</title></line>'
        )
        entries.append((text, colour, DASH))
    for key, colour in SERIES_COLOURS.items():
        points = [(i, point.get(key)) for i, point in enumerate(series)]
        parts += _polylines(points, len(series), ticks[-1], plot_h, colour, key.removesuffix("_ms"))
    parts.append(_legend(entries))
    return "".join([*parts, "</svg>"])


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
        return _empty(label)
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
    ticks = nice_ticks(max(top, offered_rps or 0.0))
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [_open(label), *_y_axis(ticks, plot_h, "per second"), *_x_axis(series, plot_h)]
    parts += _fault_bands(bands, len(series), plot_h)
    entries: list[tuple[str, str, str]] = []
    if offered_rps is not None:
        y = _y(float(offered_rps), ticks[-1], plot_h)
        text = f"offered {offered_rps:g}/s"
        parts.append(
            f'<line class="offered" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{OFFERED_COLOUR}" stroke-width="1.5" stroke-dasharray="6 4">'
            f"<title>{escape(text)}</title></line>"
        )
        entries.append((text, OFFERED_COLOUR, DASH))
    for key, colour, name in lines:
        points = [(i, point.get(key) or 0) for i, point in enumerate(series)]
        parts += _polylines(points, len(series), ticks[-1], plot_h, colour, name)
        entries.append((name, colour, LINE))
    parts.append(_legend(entries))
    return "".join([*parts, "</svg>"])


RETRIES_COLOUR = "#e8590c"


def retries_over_time_svg(
    series: Sequence[Mapping[str, Any]], *, label: str, bands: Sequence[FaultBand] = ()
) -> str:
    """Draw 40001/40P01 retries per committed operation, second by second."""
    values = [p["retries_per_committed"] for p in series if p.get("retries_per_committed")]
    if not series or not any(point.get("retries") for point in series):
        return _empty(label)
    ticks = nice_ticks(max(values or [1.0]))
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [_open(label), *_y_axis(ticks, plot_h, "per committed op"), *_x_axis(series, plot_h)]
    parts += _fault_bands(bands, len(series), plot_h)
    points = [(i, point.get("retries_per_committed")) for i, point in enumerate(series)]
    parts += _polylines(points, len(series), ticks[-1], plot_h, RETRIES_COLOUR, "retries")
    parts.append(_legend([("retries", RETRIES_COLOUR, LINE)]))
    return "".join([*parts, "</svg>"])


def _fault_bands(bands: Sequence[FaultBand], length: int, plot_h: float) -> list[str]:
    """Shade each fault (red) and its recovery (amber) behind the lines."""
    parts = []
    right = WIDTH - RIGHT
    for band in bands:
        x_start = min(_x(band.start_s, length), right)
        x_end = min(max(_x(band.end_s, length), x_start + MIN_BAND_PX), right)
        parts.append(
            f'<rect class="fault" x="{x_start:.1f}" y="{TOP}" width="{x_end - x_start:.1f}" '
            f'height="{plot_h:.1f}" fill="{FAULT_COLOUR}" fill-opacity="{BAND_OPACITY}">'
            f"<title>{escape(band.label)}</title></rect>"
        )
        if band.recovered_s:
            x_back = min(_x(band.end_s + band.recovered_s, length), right)
            if x_back > x_end:
                parts.append(
                    f'<rect class="recovery" x="{x_end:.1f}" y="{TOP}" '
                    f'width="{x_back - x_end:.1f}" height="{plot_h:.1f}" '
                    f'fill="{RECOVERY_COLOUR}" fill-opacity="{BAND_OPACITY}">'
                    f"<title>{escape(band.label)}: recovering</title></rect>"
                )
    return parts


def _open(label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(label)}" '
        'font-family="sans-serif" font-size="11">'
        f"<title>{escape(label)}</title>"
    )


def _empty(label: str) -> str:
    return (
        _open(label) + _text(WIDTH / 2, HEIGHT / 2, "no data recorded", anchor="middle") + "</svg>"
    )


def _y(value: float, top: float, plot_h: float) -> float:
    return TOP + plot_h - plot_h * value / top


def _x(index: float, length: int) -> float:
    plot_w = WIDTH - LEFT - RIGHT
    return LEFT + (plot_w * index / (length - 1) if length > 1 else plot_w / 2)


def _y_axis(ticks: list[float], plot_h: float, unit: str) -> list[str]:
    parts = []
    for tick in ticks:
        y = _y(tick, ticks[-1], plot_h)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dee2e6"/>'
        )
        parts.append(_text(LEFT - 6, y + 4, f"{tick:g}", anchor="end"))
    parts.append(_text(12, TOP + plot_h / 2, unit, anchor="middle", rotate=True))
    return parts


def _x_axis(series: Sequence[Mapping[str, Any]], plot_h: float) -> list[str]:
    length = len(series)
    every = max(1, math.ceil(length / MAX_X_LABELS))
    parts = [
        _text(_x(i, length), TOP + plot_h + 14, f"{point.get('second', i)}", anchor="middle")
        for i, point in enumerate(series)
        if i % every == 0
    ]
    parts.append(_text(LEFT + (WIDTH - LEFT - RIGHT) / 2, HEIGHT - 6, "second of the run"))
    return parts


def _polylines(
    points: Sequence[tuple[int, Any]],
    length: int,
    top: float,
    plot_h: float,
    colour: str,
    name: str,
) -> list[str]:
    runs: list[list[str]] = [[]]
    for index, value in points:
        if value is None:
            runs.append([])
            continue
        runs[-1].append(f"{_x(index, length):.1f},{_y(float(value), top, plot_h):.1f}")
    parts = []
    for run in filter(None, runs):
        if len(run) == 1:
            x, y = run[0].split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="2" fill="{colour}"/>')
        else:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" '
                f'points="{" ".join(run)}"><title>{escape(name)}</title></polyline>'
            )
    return parts


def _legend(entries: Sequence[tuple[str, str] | tuple[str, str, str]]) -> str:
    """Lay the legend out in the band above the plot, left to right from the plot's left edge.

    Each entry: (name, colour) for a filled box, or (name, colour, style) with style box, line
    or dash (a threshold or an offered rate).
    """
    parts = []
    x = float(LEFT)
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
        parts.append(_text(x + 16, LEGEND_Y + 9, name, anchor="start"))
        x += 16 + LEGEND_CHAR_PX * len(name) + 14
    return f'<g class="legend">{"".join(parts)}</g>'


def _text(x: float, y: float, text: str, *, anchor: str = "middle", rotate: bool = False) -> str:
    transform = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="#495057"{transform}>'
        f"{escape(text)}</text>"
    )


def _bucket_label(upper: Any) -> str:
    if upper is None or (isinstance(upper, float) and math.isinf(upper)):
        return "more"
    return f"≤{float(upper):g}"
