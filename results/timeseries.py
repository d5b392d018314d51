"""Per-second time series: requests, answers, errors and latency percentiles second by second."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from results.latency import percentile
from results.outcomes import outcome_codes
from results.record_format import Record
from results.record_table import RecordTable

TIMESERIES_PERCENTILES = (50, 95, 99)


def per_second(
    records: Iterable[Record], *, seconds: int | None = None, expected_codes: Iterable[str] = ()
) -> list[dict[str, object]]:
    """Bucket records by the second they started in; every second appears, idle ones too.

    A second in which nothing started shows 0 requests and null percentiles, so a stall is a
    visible gap rather than a missing point. `seconds` extends the series to the run's length.
    The errors are split into the refusals the scenario expects (``expected_codes``) and the
    unexpected ones; `answered` counts the responses that arrived in the second (a refusal is
    an answer, a timeout is not): the achieved rate, against the requests sent.
    """
    table = RecordTable.from_records(records)
    second_of = np.maximum(np.floor(table.started_s), 0).astype(np.int64)
    outcome, names = outcome_codes(table, expected_codes)
    unexpected = np.bincount(second_of[outcome == len(names) - 1], minlength=1)
    # An answer that arrived after the last second of the series is left out of it.
    answered_at = np.maximum(np.floor(table.completed_s[table.status > 0]), 0).astype(np.int64)
    answered = np.bincount(answered_at, minlength=1)
    # Sorted by second, then by latency: each second's latencies are one sorted slice.
    order = np.lexsort((table.latency_ms, second_of))
    ordered_seconds, ordered_latencies = second_of[order], table.latency_ms[order]
    errors = np.bincount(second_of[table.error], minlength=1)
    last = int(second_of.max()) if len(table) else -1
    length = max(last + 1, seconds or 0)
    bounds = np.searchsorted(ordered_seconds, np.arange(length + 1), side="left")
    series: list[dict[str, object]] = []
    for second in range(length):
        ordered = ordered_latencies[bounds[second] : bounds[second + 1]]
        error_count = int(errors[second]) if second < len(errors) else 0
        unexpected_count = int(unexpected[second]) if second < len(unexpected) else 0
        point: dict[str, object] = {
            "second": second,
            "requests": len(ordered),
            "errors": error_count,
            "expected_errors": error_count - unexpected_count,
            "unexpected_errors": unexpected_count,
            "answered": int(answered[second]) if second < len(answered) else 0,
        }
        for percent in TIMESERIES_PERCENTILES:
            value = percentile(ordered, percent)
            point[f"p{percent}_ms"] = None if value is None else round(value, 3)
        series.append(point)
    return series
