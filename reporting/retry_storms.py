"""Retry storms second by second: the service's 40001/40P01 retries per committed operation.

Pure: the service's counters polled once a second (service.json's `series`, epoch times) are
put on the run's seconds (result.json's `started_at` and `timeseries`), where each second's
committed operations are its answered requests less its errors.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping, Sequence
from typing import Any


def retry_series(
    result: Mapping[str, Any] | None, service: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Return, per second of the run: retries, committed operations and their ratio."""
    seconds: Sequence[Mapping[str, Any]] = (result or {}).get("timeseries") or []
    points: Sequence[Mapping[str, Any]] = (service or {}).get("series") or []
    started = _epoch((result or {}).get("started_at"))
    if not seconds or len(points) < 2 or started is None:
        return []
    retries = [0.0] * len(seconds)
    for before, after in itertools.pairwise(points):
        index = int(float(after["t"]) - started)
        if 0 <= index < len(seconds):
            retries[index] += max(float(after["retries"]) - float(before["retries"]), 0.0)
    series = []
    for index, second in enumerate(seconds):
        committed = max(int(second.get("requests") or 0) - int(second.get("errors") or 0), 0)
        series.append(
            {
                "second": second.get("second", index),
                "retries": retries[index],
                "committed": committed,
                "retries_per_committed": round(retries[index] / committed, 3)
                if committed
                else None,
            }
        )
    return series


def _epoch(moment: Any) -> float | None:
    if not isinstance(moment, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(moment)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()
