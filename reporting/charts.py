"""Inline SVG charts for the HTML report: no script, no network, just markup."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

WIDTH = 640
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 40
TICKS = 5
MAX_X_LABELS = 12
SERIES_COLOURS = {"p50_ms": "#2b8a3e", "p95_ms": "#e67700", "p99_ms": "#c92a2a"}
REQUESTS_COLOUR = "#1c7ed6"
ERRORS_COLOUR = "#c92a2a"
THRESHOLD_COLOUR = "#862e9c"
BAR_COLOUR = "#1c7ed6"
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


def histogram_svg(buckets: Sequence[Mapping[str, Any]], *, label: str) -> str:
    """Draw the latency histogram: one bar per bucket, empty buckets at the ends trimmed."""
    counts = [int(b.get("count") or 0) for b in buckets]
    used = [i for i, count in enumerate(counts) if count]
    if not used:
        return _empty(label)
    shown = list(buckets[used[0] : used[-1] + 1])
    ticks = nice_ticks(max(counts))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(shown)
    parts = [_open(label), *_y_axis(ticks, plot_h, "requests")]
    every = math.ceil(len(shown) / MAX_X_LABELS)
    for i, bucket in enumerate(shown):
        count = int(bucket.get("count") or 0)
        height = plot_h * count / ticks[-1]
        x = LEFT + i * slot
        upper = _bucket_label(bucket.get("upper_ms"))
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{TOP + plot_h - height:.1f}" width="{max(slot - 2, 1):.1f}"'
            f' height="{height:.1f}" fill="{BAR_COLOUR}"><title>{escape(upper)} ms: {count} '
            "requests</title></rect>"
        )
        if i % every == 0:
            parts.append(_text(x + slot / 2, TOP + plot_h + 14, upper, anchor="middle"))
    parts.append(_text(LEFT + plot_w / 2, HEIGHT - 6, "latency, ms (bucket upper bound)"))
    return "".join([*parts, "</svg>"])


def latency_over_time_svg(
    series: Sequence[Mapping[str, Any]],
    *,
    threshold_ms: float | None,
    label: str,
    bands: Sequence[FaultBand] = (),
) -> str:
    """Draw p50, p95 and p99 second by second; an idle second leaves a gap."""
    values = [
        float(point[key])
        for point in series
        for key in SERIES_COLOURS
        if point.get(key) is not None
    ]
    if not values:
        return _empty(label)
    ticks = nice_ticks(max([*values, threshold_ms or 0.0]))
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [_open(label), *_y_axis(ticks, plot_h, "ms"), *_x_axis(series, plot_h)]
    parts += _fault_bands(bands, len(series), plot_h)
    if threshold_ms is not None:
        y = _y(threshold_ms, ticks[-1], plot_h)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{THRESHOLD_COLOUR}" stroke-dasharray="6 4"><title>p95 threshold '
            f"{threshold_ms:g} ms</title></line>"
        )
    for key, colour in SERIES_COLOURS.items():
        points = [(i, point.get(key)) for i, point in enumerate(series)]
        parts += _polylines(points, len(series), ticks[-1], plot_h, colour, key.removesuffix("_ms"))
    parts.append(_legend([(k.removesuffix("_ms"), c) for k, c in SERIES_COLOURS.items()]))
    return "".join([*parts, "</svg>"])


def throughput_over_time_svg(
    series: Sequence[Mapping[str, Any]], *, label: str, bands: Sequence[FaultBand] = ()
) -> str:
    """Draw requests and errors per second (and each injected fault as a band)."""
    if not series:
        return _empty(label)
    top = max(int(point.get("requests") or 0) for point in series)
    ticks = nice_ticks(top)
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [_open(label), *_y_axis(ticks, plot_h, "per second"), *_x_axis(series, plot_h)]
    parts += _fault_bands(bands, len(series), plot_h)
    for key, colour in (("requests", REQUESTS_COLOUR), ("errors", ERRORS_COLOUR)):
        points = [(i, point.get(key) or 0) for i, point in enumerate(series)]
        parts += _polylines(points, len(series), ticks[-1], plot_h, colour, key)
    parts.append(_legend([("requests", REQUESTS_COLOUR), ("errors", ERRORS_COLOUR)]))
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
    parts.append(_legend([("retries", RETRIES_COLOUR)]))
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


def _legend(entries: Sequence[tuple[str, str]]) -> str:
    parts = []
    for i, (name, colour) in enumerate(entries):
        x = WIDTH - RIGHT - 70 * (len(entries) - i)
        parts.append(f'<rect x="{x}" y="{TOP}" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(x + 14, TOP + 9, name, anchor="start"))
    return "".join(parts)


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
