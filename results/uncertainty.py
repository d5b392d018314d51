"""How sure a percentile is: distribution-free confidence intervals from order statistics.

A percentile estimated from n latencies is uncertain. Whatever the distribution, the number
of samples at or below the true q-quantile is Binomial(n, q), so the interval between two
order statistics X(l) ≤ X(u) (the l-th and u-th smallest) covers the true quantile with
probability P(l ≤ B ≤ u - 1) for B ~ Binomial(n, q) (exact for continuous latencies,
conservative with ties). The ranks are chosen equal-tailed: X(l) lies above the true
quantile with probability at most (1 - confidence) / 2, and X(u) below it likewise, so the
coverage is at least `confidence` (it is printed with the interval).

No normal approximation and no bootstrap: for a p99 from a few hundred requests those are
wrong exactly where the verdict needs them. A sample too small for a rank to exist on one
side (p99 from fewer than 367 requests has no 95 % upper bound) says so with None.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from results.latency import percentile

CONFIDENCE = 0.95
METHOD = (
    "order statistics: the ranks bounding the percentile come from the binomial distribution "
    "of the number of samples below it (distribution-free, equal-tailed, exact coverage)"
)
# A percentile with fewer requests than this beyond it is decided by a handful of requests:
# one burst of slow ones moves it wherever it likes, so it is reported as too small to judge.
MIN_TAIL_REQUESTS = 20


@dataclass(frozen=True)
class PercentileInterval:
    """A nearest-rank percentile and the order statistics that bound it."""

    percent: float
    n: int
    confidence: float
    estimate: float | None
    lower: float | None  # None: the sample is too small for a lower bound at this confidence
    upper: float | None  # None: likewise for an upper bound
    lower_rank: int | None
    upper_rank: int | None
    coverage: float | None  # the interval's exact coverage, when both bounds exist

    @property
    def tail_requests(self) -> float:
        """Return how many requests are expected beyond the percentile."""
        return self.n * (1 - self.percent / 100)

    def to_json(self) -> dict[str, Any]:
        return {
            "percent": self.percent,
            "n": self.n,
            "confidence": self.confidence,
            "estimate_ms": _round(self.estimate),
            "lower_ms": _round(self.lower),
            "upper_ms": _round(self.upper),
            "lower_rank": self.lower_rank,
            "upper_rank": self.upper_rank,
            "coverage": None if self.coverage is None else round(self.coverage, 6),
            "tail_requests": round(self.tail_requests, 3),
        }


def binomial_cdf(n: int, p: float) -> list[float]:
    """Return P(B ≤ k) for k = 0..n, B ~ Binomial(n, p), summed in log space (no overflow)."""
    if not 0 <= p <= 1:
        raise ValueError(f"p must be within 0..1, not {p!r}")
    return list(_cdf_values(n, p))


def order_statistic_ranks(
    n: int, percent: float, confidence: float = CONFIDENCE
) -> tuple[int | None, int | None, float | None]:
    """Return the 1-based ranks (l, u) bounding the percent-th percentile, and their coverage.

    l is the largest rank with P(B ≤ l - 1) ≤ α/2, u the smallest with P(B ≤ u - 1) ≥ 1 - α/2;
    either is None when no rank within 1..n qualifies.
    """
    if not 0 < percent < 100:
        raise ValueError(f"percent must lie strictly within 0..100, not {percent!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly within 0..1, not {confidence!r}")
    if n <= 0:
        return None, None, None
    tail = (1 - confidence) / 2
    lower = upper = None
    at_lower = 0.0  # P(B ≤ l - 1): the lower rank's CDF value, for the coverage
    # Walk the CDF without keeping it: a million requests would make a list of a million floats.
    ranks = itertools.islice(_cdf_values(n, percent / 100), n)  # P(B ≤ rank - 1), rank 1..n
    for rank, below in enumerate(ranks, start=1):
        if below <= tail and upper is None:
            lower, at_lower = rank, below
        if below >= 1 - tail:
            upper = rank
            coverage = below - at_lower if lower is not None else None
            return lower, upper, coverage
    return lower, upper, None


def _cdf_values(n: int, p: float) -> Iterator[float]:
    """Yield P(B ≤ k) for k = 0..n, B ~ Binomial(n, p), one at a time."""
    if p in (0.0, 1.0):
        yield from [1.0] * (n + 1) if p == 0 else [0.0] * n + [1.0]
        return
    log_p, log_q = math.log(p), math.log1p(-p)
    log_n = math.lgamma(n + 1)
    total = 0.0
    for k in range(n + 1):
        log_pmf = log_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q
        total += math.exp(log_pmf)
        yield min(total, 1.0)


def percentile_interval(
    sorted_values: Sequence[float], percent: float, confidence: float = CONFIDENCE
) -> PercentileInterval:
    """Return the nearest-rank percentile of sorted values with its order-statistic interval."""
    n = len(sorted_values)
    lower_rank, upper_rank, coverage = order_statistic_ranks(n, percent, confidence)
    return PercentileInterval(
        percent=percent,
        n=n,
        confidence=confidence,
        estimate=percentile(sorted_values, percent),
        lower=None if lower_rank is None else sorted_values[lower_rank - 1],
        upper=None if upper_rank is None else sorted_values[upper_rank - 1],
        lower_rank=lower_rank,
        upper_rank=upper_rank,
        coverage=coverage,
    )


def smallest_sample_with_upper_bound(percent: float, confidence: float = CONFIDENCE) -> int:
    """Return the fewest samples for which the percentile has an upper bound at all.

    X(n) bounds it once P(all n below the quantile) = q^n ≤ α/2.
    """
    q = percent / 100
    return math.ceil(math.log((1 - confidence) / 2) / math.log(q))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
