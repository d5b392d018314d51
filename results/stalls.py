"""Find the short stall behind a latency breach; the evidence each latency threshold is judged on.

A stall is a short window (about a second) in which requests wait together: a checkpoint's
fsync, a paused process, a burst of iowait on a shared machine. Its slow requests are not
independent samples, so the binomial interval (results.uncertainty) says nothing true about
them: a stall of one second decides a p99 of a ten-second run on its own. So each breached
latency threshold is looked at twice: with every request, and without the requests in flight
during the window of one second that holds the most slow requests. If the threshold holds
without that window, the breach was that stall, and the verdict says so rather than folding
it into NO-GO (reporting/latency_judgement.py decides what it is worth).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from results.latency import sorted_latencies
from results.record_format import Record
from results.record_table import RecordTable
from results.uncertainty import CONFIDENCE, METHOD, MIN_TAIL_REQUESTS, percentile_interval

# The slow requests of one stall started within this many seconds of each other.
STALL_WINDOW_S = 1.0
# ... and all of them ended within this many seconds of the first start: a closed-model run
# frozen for five seconds also has all its slow requests started within one second (its
# users were all waiting), and that is an outage, not a stall.
STALL_MAX_S = 2.0
LATENCY_THRESHOLD = re.compile(r"^p(\d+(?:\.\d+)?)_ms$")


@dataclass(frozen=True)
class Stall:
    """The window of about a second that holds the most requests slower than a limit."""

    start_s: float  # the first of its slow requests started here (seconds of the run)
    end_s: float  # ... and the last of them ended here
    slow_requests: int  # slow requests that started within the window
    slow_elsewhere: int  # slow requests outside it
    in_flight: int  # requests in flight at some moment of [start_s, end_s)

    def to_json(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "duration_s": round(self.end_s - self.start_s, 3),
            "slow_requests": self.slow_requests,
            "slow_elsewhere": self.slow_elsewhere,
            "in_flight": self.in_flight,
        }


def find_stall(
    records: Iterable[Record], limit_ms: float, *, window_s: float = STALL_WINDOW_S
) -> Stall | None:
    """Return the window of ``window_s`` holding the most requests slower than ``limit_ms``."""
    table = RecordTable.from_records(records)
    slow = np.flatnonzero(table.latency_ms > limit_ms)
    if not len(slow):
        return None
    slow = slow[np.argsort(table.started_s[slow], kind="stable")]
    starts = table.started_s[slow]
    # For each slow request, the first slow one that started within window_s before it: the
    # window ending at the earliest request that gathers the most of them wins.
    firsts = np.searchsorted(starts, starts - window_s, side="left")
    counts = np.arange(len(slow)) - firsts + 1
    last = int(np.argmax(counts))
    members = slow[firsts[last] : last + 1]
    start = float(table.started_s[members[0]])
    end = float(table.completed_s[members].max())
    return Stall(
        start_s=start,
        end_s=end,
        slow_requests=len(members),
        slow_elsewhere=len(slow) - len(members),
        in_flight=int(table.touching(start, end).sum()),
    )


def latency_evidence(
    records: Iterable[Record], thresholds: Mapping[str, Any], *, confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """Return, per latency threshold, the percentile's interval and, if breached, its stall."""
    table = RecordTable.from_records(records)
    ordered = sorted_latencies(table.latency_ms)
    judged: dict[str, Any] = {}
    for name, limit in thresholds.items():
        match = LATENCY_THRESHOLD.match(name)
        if match is None or limit is None:
            continue
        percent = float(match.group(1))
        interval = percentile_interval(ordered, percent, confidence)
        entry: dict[str, Any] = {
            "limit_ms": float(limit),
            **interval.to_json(),
            "slow_requests": int((ordered > float(limit)).sum()),
            "stall": None,
        }
        if interval.estimate is not None and interval.estimate > float(limit):
            stall = find_stall(table, float(limit))
            if stall is not None:
                outside = ~table.touching(stall.start_s, stall.end_s)
                entry["stall"] = {
                    **stall.to_json(),
                    "without": percentile_interval(
                        sorted_latencies(table.latency_ms[outside]), percent, confidence
                    ).to_json(),
                }
        judged[name] = entry
    return {
        "confidence": confidence,
        "method": METHOD,
        "min_tail_requests": MIN_TAIL_REQUESTS,
        "stall_window_s": STALL_WINDOW_S,
        "stall_max_s": STALL_MAX_S,
        "thresholds": judged,
    }
