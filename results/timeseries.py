"""Per-second time series: requests, errors and latency percentiles second by second."""

from __future__ import annotations

import math
from collections.abc import Iterable

from molotov_scenarios.records import Record, is_error
from results.latency import percentile

TIMESERIES_PERCENTILES = (50, 95, 99)


def per_second(records: Iterable[Record], *, seconds: int | None = None) -> list[dict[str, object]]:
    """Bucket records by the second they started in; every second appears, idle ones too.

    A second in which nothing started shows 0 requests and null percentiles, so a stall is a
    visible gap rather than a missing point. `seconds` extends the series to the run's length.
    """
    latencies: dict[int, list[float]] = {}
    errors: dict[int, int] = {}
    for record in records:
        second = max(math.floor(record.started_s), 0)
        latencies.setdefault(second, []).append(record.latency_ms)
        if is_error(record.status, record.code):
            errors[second] = errors.get(second, 0) + 1
    last = max(latencies, default=-1)
    length = max(last + 1, seconds or 0)
    series: list[dict[str, object]] = []
    for second in range(length):
        ordered = sorted(latencies.get(second, ()))
        point: dict[str, object] = {
            "second": second,
            "requests": len(ordered),
            "errors": errors.get(second, 0),
        }
        for percent in TIMESERIES_PERCENTILES:
            value = percentile(ordered, percent)
            point[f"p{percent}_ms"] = None if value is None else round(value, 3)
        series.append(point)
    return series
