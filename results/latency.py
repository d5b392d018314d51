"""Latency statistics: exact nearest-rank percentiles, fixed histogram buckets, live buckets."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

import numpy as np

from results.record_format import live_bucket_upper_ms

SUMMARY_PERCENTILES = (50, 90, 95, 99)
# Upper bounds (ms) of the histogram in result.json; dense around the thresholds (150-500 ms).
HISTOGRAM_BOUNDS_MS = (
    0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 125, 150, 175, 200, 250, 300, 400, 500,
    750, 1000, 1500, 2000, 3000, 5000, 10000, 30000, 60000,
)  # fmt: skip


def percentile(sorted_values: Sequence[float], percent: float) -> float | None:
    """Return the nearest-rank percentile of already sorted values, or None when there are none.

    Nearest rank: the smallest value with at least `percent` % of the values at or below it,
    so the answer is always an observed value (1..100 → p95 = 95, p100 = 100).
    """
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be within 0..100, not {percent!r}")
    if len(sorted_values) == 0:
        return None
    # Exact arithmetic: 0.07 * 100 is 7.000000000000001 in floats, which would skip a rank.
    rank = math.ceil(Fraction(str(percent)) * len(sorted_values) / 100)
    return float(sorted_values[max(rank, 1) - 1])


def sorted_latencies(latencies_ms: Iterable[float] | np.ndarray) -> np.ndarray:
    """Return the latencies as a sorted float array (8 bytes each, not a list of floats)."""
    if isinstance(latencies_ms, np.ndarray):
        return np.sort(latencies_ms.astype(np.float64, copy=False))
    return np.sort(np.fromiter(latencies_ms, dtype=np.float64))


def latency_summary(latencies_ms: Iterable[float] | np.ndarray) -> dict[str, float | int | None]:
    """Summarise latencies: count, mean, p50, p90, p95, p99 and max (None when empty)."""
    ordered = sorted_latencies(latencies_ms)
    count = len(ordered)
    summary: dict[str, float | int | None] = {"count": count}
    summary["mean"] = _round(math.fsum(ordered) / count) if count else None
    for percent in SUMMARY_PERCENTILES:
        summary[f"p{percent}"] = _round(percentile(ordered, percent))
    summary["max"] = _round(ordered[-1]) if count else None
    return summary


def histogram(
    latencies_ms: Iterable[float] | np.ndarray, bounds_ms: Sequence[float] = HISTOGRAM_BOUNDS_MS
) -> list[dict[str, float | int | None]]:
    """Count latencies per bucket (upper bound inclusive); the last bucket (None) is overflow."""
    values = np.asarray(
        latencies_ms if isinstance(latencies_ms, np.ndarray) else list(latencies_ms),
        dtype=np.float64,
    )
    # side="left" puts a latency equal to a bound in that bound's bucket, as bisect_left did.
    buckets = np.searchsorted(np.asarray(bounds_ms, dtype=np.float64), values, side="left")
    counts = np.bincount(buckets, minlength=len(bounds_ms) + 1).tolist()
    uppers: list[float | None] = [*bounds_ms, None]
    pairs = zip(uppers, counts, strict=True)
    return [{"upper_ms": upper, "count": count} for upper, count in pairs]


def merge_live_buckets(per_process: Iterable[Mapping[int, int]]) -> Counter[int]:
    """Add up several processes' live-progress bucket counts."""
    merged: Counter[int] = Counter()
    for buckets in per_process:
        merged.update(buckets)
    return merged


def live_percentile(buckets: Mapping[int, int], percent: float) -> float | None:
    """Return the upper bound of the bucket holding the nearest-rank percentile (None if empty)."""
    total = sum(buckets.values())
    if total == 0:
        return None
    rank = max(math.ceil(Fraction(str(percent)) * total / 100), 1)
    seen = 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= rank:
            return live_bucket_upper_ms(bucket)
    raise AssertionError("unreachable: the ranks add up to the total")


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)
