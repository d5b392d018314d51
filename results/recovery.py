"""What a fault cost and how fast the service came back, from the generator's records.

Pure functions over records (one per attempt) and fault windows in seconds of the run (the
records' own clock): the nemesis calls them once the scenario has ended.

- *Served*: an attempt the service answered with a decision, a 2xx or a refusal (4xx such as
  `insufficient_units`): a refusal is the service doing its job. A 409
  `idempotency_key_in_use` is not a decision ("ask again later"), nor is a 5xx or no answer.
- *Throughput*: served attempts per second by the time they completed (start + latency), so
  the burst of answers a resumed server sends counts when it happened.
- *Recovered*: from the first moment `t` at or after the fault's end where the served rate
  over `[t, t + 1 s)` is back to 80 % of its rate over the few seconds before the fault, and
  /healthz answered 200 (the nemesis probes it live). Searched in 0.1 s steps up to a limit.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from results.latency import latency_summary
from results.record_format import (
    CONNECTION_ERROR,
    NO_RESPONSE_STATUS,
    TIMEOUT,
    Record,
    is_error,
)

RECOVERED_SHARE = 0.8  # throughput back to this share of its rate before the fault
RECOVERY_LIMIT_S = 10.0  # not recovered within this long after the fault's end: NO-GO
BASELINE_WINDOW_S = 3.0  # the rate "before the fault" is measured over this many seconds
RATE_WINDOW_S = 1.0
SEARCH_STEP_S = 0.1
KEY_IN_USE = "idempotency_key_in_use"
INFO = "info"  # the last attempt of an operation whose outcome stayed unknown


@dataclass(frozen=True)
class FaultWindow:
    """When a fault began and ended, in seconds since the scenario's run started."""

    start_s: float
    end_s: float


@dataclass(frozen=True)
class Recovery:
    """How the service came back after one fault."""

    baseline_rps: float  # served per second over the window before the fault
    recovered_rps: float | None  # served per second over the first window that met the bar
    throughput_back_after_s: float | None  # None: not back within the limit (or the run)
    healthz_back_after_s: float | None
    recovery_s: float | None  # the later of the two; None when either never came back
    observed_until_s: float  # seconds after the fault's end that the records cover

    @property
    def recovered(self) -> bool:
        return self.recovery_s is not None and self.recovery_s <= RECOVERY_LIMIT_S

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline_rps": round(self.baseline_rps, 3),
            "recovered_rps": None if self.recovered_rps is None else round(self.recovered_rps, 3),
            "throughput_back_after_s": _round(self.throughput_back_after_s),
            "healthz_back_after_s": _round(self.healthz_back_after_s),
            "recovery_s": _round(self.recovery_s),
            "recovered": self.recovered,
            "observed_until_s": round(self.observed_until_s, 3),
            "limit_s": RECOVERY_LIMIT_S,
            "required_share": RECOVERED_SHARE,
        }


def is_served(record: Record) -> bool:
    """Tell whether the service answered an attempt with a decision (2xx or 4xx)."""
    return 200 <= record.status < 500 and record.code != KEY_IN_USE


def completed_s(record: Record) -> float:
    """Return when an attempt ended, in seconds of the run."""
    return record.started_s + record.latency_ms / 1000


def measure_recovery(
    records: Sequence[Record],
    window: FaultWindow,
    *,
    healthz_back_after_s: float | None,
    limit_s: float = RECOVERY_LIMIT_S,
) -> Recovery:
    """Measure how long after ``window`` ends the service served at its earlier rate again."""
    served_ends = sorted(completed_s(r) for r in records if is_served(r))
    first_s = min((r.started_s for r in records), default=window.start_s)
    last_s = max((completed_s(r) for r in records), default=window.end_s)
    baseline_from = max(window.start_s - BASELINE_WINDOW_S, first_s)
    baseline = _rate(served_ends, baseline_from, window.start_s)
    bar = RECOVERED_SHARE * baseline
    throughput_after: float | None = None
    recovered_rps: float | None = None
    steps = round(limit_s / SEARCH_STEP_S)
    for step in range(steps + 1):
        start = window.end_s + step * SEARCH_STEP_S
        if start + RATE_WINDOW_S > last_s:
            break  # the run ended: a partial window would understate the rate
        rate = _rate(served_ends, start, start + RATE_WINDOW_S)
        if rate >= bar:
            throughput_after, recovered_rps = step * SEARCH_STEP_S, rate
            break
    recovery: float | None = None
    if throughput_after is not None and healthz_back_after_s is not None:
        recovery = max(throughput_after, healthz_back_after_s)
    return Recovery(
        baseline_rps=baseline,
        recovered_rps=recovered_rps,
        throughput_back_after_s=throughput_after,
        healthz_back_after_s=healthz_back_after_s,
        recovery_s=recovery,
        observed_until_s=max(last_s - window.end_s, 0.0),
    )


def fault_cost(records: Iterable[Record], start_s: float, until_s: float) -> dict[str, int]:
    """Count what the attempts in flight at any time within [start_s, until_s) lost to a fault.

    `refused`: answered with a 5xx; `connection_errors`: no connection or a reset;
    `timed_out`: no answer in time; `unknown_outcome`: logical operations whose final outcome
    stayed unknown (`info`) after their last attempt.
    """
    cost = {"attempts": 0, "refused": 0, "connection_errors": 0, "timed_out": 0,
            "unknown_outcome": 0}  # fmt: skip
    for record in records:
        if not touches(record, start_s, until_s):
            continue
        cost["attempts"] += 1
        if record.status >= 500:
            cost["refused"] += 1
        elif record.status == NO_RESPONSE_STATUS and record.code == TIMEOUT:
            cost["timed_out"] += 1
        elif record.status == NO_RESPONSE_STATUS or record.code == CONNECTION_ERROR:
            cost["connection_errors"] += 1
        if getattr(record, "outcome", "") == INFO:
            cost["unknown_outcome"] += 1
    return cost


def outside_windows(
    records: Iterable[Record], windows: Sequence[tuple[float, float]]
) -> list[Record]:
    """Return the attempts that were in flight during none of the [start, until) windows."""
    return [
        record
        for record in records
        if not any(touches(record, start, until) for start, until in windows)
    ]


def touches(record: Record, start_s: float, until_s: float) -> bool:
    """Tell whether an attempt was in flight at some moment of [start_s, until_s).

    An attempt sent just before a fault is hit by it as much as one sent during it: a request
    stuck in a frozen PostgreSQL from 0.1 s before the pause times out all the same.
    """
    return record.started_s < until_s and completed_s(record) > start_s


def steady_state(
    records: Sequence[Record], windows: Sequence[tuple[float, float]]
) -> dict[str, Any]:
    """Summarise the attempts outside the fault windows, where the thresholds still apply."""
    kept = outside_windows(records, windows)
    errors = sum(1 for r in kept if is_error(r.status, r.code))
    by_code: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for record in kept:
        by_status[str(record.status)] = by_status.get(str(record.status), 0) + 1
        if record.code:
            by_code[record.code] = by_code.get(record.code, 0) + 1
    return {
        "requests": len(kept),
        "excluded_requests": len(records) - len(kept),
        "errors": errors,
        "error_rate": round(errors / len(kept), 6) if kept else 0.0,
        "by_status": dict(sorted(by_status.items())),
        "by_code": dict(sorted(by_code.items())),
        "latency_ms": latency_summary(r.latency_ms for r in kept),
    }


def _rate(sorted_ends: Sequence[float], start_s: float, end_s: float) -> float:
    length = end_s - start_s
    if length <= 0:
        return 0.0
    return (bisect_left(sorted_ends, end_s) - bisect_left(sorted_ends, start_s)) / length


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 3)
