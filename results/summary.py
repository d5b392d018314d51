"""Summarise merged records and the generator's self-watch into result.json's sections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from molotov_scenarios.records import Record, is_error
from results.latency import histogram, latency_summary, percentile
from results.timeseries import per_second

LOOP_LAG_LIMIT_MS = 50.0  # p99 event-loop lag above this: timings include the generator's delay
PROCESS_CPU_LIMIT = 0.85  # share of one core a generator process may use before it saturates


@dataclass(frozen=True)
class ProcessReport:
    """What one generator process measured about itself."""

    pid: int
    requests: int
    cpu_seconds: float
    wall_seconds: float
    loop_lag_ms: tuple[float, ...]


@dataclass
class _Tally:
    """Running counts for one operation or for the whole run."""

    requests: int = 0
    errors: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)

    def add(self, record: Record) -> None:
        self.requests += 1
        self.errors += is_error(record.status, record.code)
        self.by_status[str(record.status)] += 1
        if record.code:
            self.by_code[record.code] += 1


def in_flight_window_s(records: Iterable[Record]) -> float:
    """Return the seconds from the first request's start to the last request's end (0 if none)."""
    spans = [(record.started_s, record.started_s + record.latency_ms / 1000) for record in records]
    if not spans:
        return 0.0
    return max(max(end for _, end in spans) - min(start for start, _ in spans), 0.0)


def throughput_rps(requests: int, seconds: float) -> float:
    """Return requests per second over ``seconds`` (0 when there was no time)."""
    return round(requests / seconds, 3) if seconds > 0 else 0.0


def summarise_requests(
    records: Sequence[Record], *, elapsed_s: float, window_s: float | None = None
) -> dict[str, object]:
    """Count and time the requests: totals, breakdowns, latency, histogram and time series.

    Throughput is over ``window_s`` when given (the time requests were in flight, which
    totals then report as `measured_window_s`), else over ``elapsed_s``.
    """
    overall = _Tally()
    operations: dict[str, _Tally] = {}
    for record in records:
        overall.add(record)
        operations.setdefault(record.operation, _Tally()).add(record)
    latencies = [record.latency_ms for record in records]
    requests = overall.requests
    totals: dict[str, float | int] = {
        "requests": requests,
        "errors": overall.errors,
        "error_rate": round(overall.errors / requests, 6) if requests else 0.0,
        "throughput_rps": throughput_rps(requests, elapsed_s if window_s is None else window_s),
    }
    if window_s is not None:
        totals["measured_window_s"] = round(window_s, 3)
    return {
        "totals": totals,
        "by_operation": {
            name: {
                "requests": tally.requests,
                "errors": tally.errors,
                "by_status": _sorted_counts(tally.by_status),
                "by_code": _sorted_counts(tally.by_code),
            }
            for name, tally in sorted(operations.items())
        },
        "by_status": _sorted_counts(overall.by_status),
        "by_code": _sorted_counts(overall.by_code),
        "latency_ms": latency_summary(latencies),
        "latency_histogram": histogram(latencies),
        "timeseries": per_second(records, seconds=int(elapsed_s)),
    }


def summarise_generator(
    processes: Iterable[ProcessReport],
    *,
    cpu_seconds: float,
    duration_s: float,
    cpu_count: int,
) -> dict[str, object]:
    """Judge whether the generator, rather than the service, limited the run."""
    reports = list(processes)
    lags = sorted(lag for report in reports for lag in report.loop_lag_ms)
    lag_p99 = percentile(lags, 99) or 0.0
    lag_max = lags[-1] if lags else 0.0
    reasons: list[str] = []
    if lag_p99 > LOOP_LAG_LIMIT_MS:
        reasons.append(
            f"event-loop lag p99 {lag_p99:.1f} ms > {LOOP_LAG_LIMIT_MS:.0f} ms: "
            "latencies include the generator's own delay"
        )
    for report in reports:
        busy = report.cpu_seconds / report.wall_seconds if report.wall_seconds > 0 else 0.0
        if busy > PROCESS_CPU_LIMIT:
            reasons.append(
                f"generator process {report.pid} used {busy:.0%} of a core "
                f"(> {PROCESS_CPU_LIMIT:.0%})"
            )
    capacity = duration_s * cpu_count
    return {
        "processes": len(reports),
        "cpu_seconds": round(cpu_seconds, 3),
        "cpu_share_of_machine": round(cpu_seconds / capacity, 4) if capacity > 0 else 0.0,
        "loop_lag_p99_ms": round(lag_p99, 3),
        "loop_lag_max_ms": round(lag_max, 3),
        "bottleneck": bool(reasons),
        "reasons": reasons,
    }


def _sorted_counts(counts: Mapping[str, int]) -> dict[str, int]:
    return {key: counts[key] for key in sorted(counts)}
