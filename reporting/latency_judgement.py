"""Judge a latency threshold with its uncertainty: met, missed, not judgeable, or one stall.

Input: one threshold's entry of result.json's `latency_evidence` (results/stalls.py): the
nearest-rank percentile, its order-statistic interval (results/uncertainty.py) and, when the
percentile is above the limit, the window of about a second holding the most slow requests
with the percentile recomputed without it. Pure: the verdict maps the status to a decision.

The rules (README, "How a threshold is judged"):
- met: the percentile is at or below the limit (certain when the whole interval is);
- missed for certain: the interval's lower bound is above the limit; by more than 50 % of
  the limit (the lower bound, not the estimate) it is NO-GO on its own;
- missed, not certain: the percentile is above the limit but the interval reaches below it;
- too small to judge: fewer than MIN_TAIL_REQUESTS requests are expected beyond the
  percentile, or no order statistic can bound it on the side that decides;
- one stall: the percentile is above the limit, but without the requests in flight during
  one window of about a second (at most STALL_MAX_S from first start to last end) it is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NO_GO_MISS_PCT = 50.0
TOLERANCE = 1e-9

MET = "met"
MET_NOT_CERTAIN = "met, not certain"
TOO_SMALL = "too small to judge"
MISSED_NOT_CERTAIN = "missed, not certain"
MISSED = "missed for certain"
MISSED_FAR = "missed for certain by more than 50 %"
STALL = "missed in one stall"
STATUSES = (MET, MET_NOT_CERTAIN, TOO_SMALL, MISSED_NOT_CERTAIN, MISSED, MISSED_FAR, STALL)


@dataclass(frozen=True)
class LatencyJudgement:
    """What one latency threshold's evidence says."""

    status: str
    limit_ms: float
    estimate_ms: float | None
    lower_ms: float | None
    upper_ms: float | None
    n: int
    confidence: float
    # How far above the limit the lower bound lies (0 when it does not), in % of the limit.
    certain_miss_pct: float
    note: str  # the interval and what it means, for the finding and the report
    stall: Mapping[str, Any] | None = None

    @property
    def met(self) -> bool:
        """Tell whether the percentile itself is at or below the limit."""
        return self.estimate_ms is not None and self.estimate_ms <= self.limit_ms


def judge_latency(
    entry: Mapping[str, Any], *, min_tail_requests: float, stall_max_s: float
) -> LatencyJudgement:
    """Return the status of one latency threshold from its evidence entry."""
    limit = float(entry["limit_ms"])
    estimate, lower, upper = entry.get("estimate_ms"), entry.get("lower_ms"), entry.get("upper_ms")
    n = int(entry.get("n") or 0)
    confidence = float(entry.get("confidence") or 0.95)
    certain_miss = max((lower - limit) / limit * 100, 0.0) if lower is not None and limit else 0.0
    interval = _interval_text(lower, upper, confidence, n)
    base = dict(
        estimate_ms=estimate,
        lower_ms=lower,
        upper_ms=upper,
        n=n,
        confidence=confidence,
        certain_miss_pct=certain_miss,
        limit_ms=limit,
    )
    if estimate is None:
        return LatencyJudgement(TOO_SMALL, note="nothing was measured", **base)
    stall = entry.get("stall")
    if estimate > limit and stall and _explains(stall, limit, stall_max_s):
        without = stall["without"]
        note = (
            f"{interval}; one stall: {stall['slow_requests']} of the {entry['slow_requests']} "
            f"requests over {limit:g} ms were in flight within "
            f"{stall['start_s']:.1f}-{stall['end_s']:.1f} s of the run; without the "
            f"{stall['in_flight']} requests in flight then, p{_pct(entry)} is "
            f"{without['estimate_ms']:.1f} ms"
        )
        return LatencyJudgement(STALL, note=note, stall=stall, **base)
    tail = float(entry.get("tail_requests") or 0.0)
    deciding_bound = lower if estimate > limit else upper
    if tail < min_tail_requests or deciding_bound is None:
        note = (
            f"{interval}; too small to judge: about {tail:.0f} "
            f"{'request lies' if round(tail) == 1 else 'requests lie'} beyond "
            f"p{_pct(entry)} (at least {min_tail_requests:g} needed)"
            if tail < min_tail_requests
            else f"{interval}; too small to judge: no {confidence:.0%} bound from {n} requests"
        )
        return LatencyJudgement(TOO_SMALL, note=note, **base)
    if estimate <= limit:
        status = MET if upper <= limit else MET_NOT_CERTAIN
        return LatencyJudgement(status, note=interval, **base)
    if lower <= limit:
        return LatencyJudgement(MISSED_NOT_CERTAIN, note=f"{interval}, reaching below", **base)
    far = certain_miss > NO_GO_MISS_PCT + TOLERANCE
    status = MISSED_FAR if far else MISSED
    return LatencyJudgement(status, note=f"{interval}, all above the limit", **base)


def _explains(stall: Mapping[str, Any], limit: float, stall_max_s: float) -> bool:
    """Tell whether the threshold holds once the stall's window is left out."""
    without = stall.get("without") or {}
    estimate = without.get("estimate_ms")
    short = float(stall.get("duration_s") or 0.0) <= stall_max_s
    return short and estimate is not None and estimate <= limit


def _interval_text(lower: Any, upper: Any, confidence: float, n: int) -> str:
    low = "unbounded" if lower is None else f"{lower:.1f}"
    high = "unbounded" if upper is None else f"{upper:.1f}"
    return f"{confidence:.0%} interval {low}-{high} ms from {n:,} requests"


def _pct(entry: Mapping[str, Any]) -> str:
    return f"{float(entry.get('percent') or 0):g}"
