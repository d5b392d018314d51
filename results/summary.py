"""Summarise merged records and the generator's self-watch into result.json's sections."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from results.latency import histogram, latency_summary, percentile
from results.outcomes import summarise_outcomes
from results.record_format import Record
from results.record_table import Labels, RecordTable
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


def in_flight_window_s(records: Iterable[Record]) -> float:
    """Return the seconds from the first request's start to the last request's end (0 if none)."""
    table = RecordTable.from_records(records)
    if not len(table):
        return 0.0
    return max(float(table.completed_s.max() - table.started_s.min()), 0.0)


def throughput_rps(requests: int, seconds: float) -> float:
    """Return requests per second over ``seconds`` (0 when there was no time)."""
    return round(requests / seconds, 3) if seconds > 0 else 0.0


def summarise_requests(
    records: Iterable[Record],
    *,
    elapsed_s: float,
    window_s: float | None = None,
    expected_codes: Iterable[str] = (),
) -> dict[str, object]:
    """Count and time the requests: totals, breakdowns, latency, histogram and time series.

    Throughput is over ``window_s`` when given (the time requests were in flight, which
    totals then report as `measured_window_s`), else over ``elapsed_s``. ``expected_codes``,
    the refusals the scenario provokes on purpose, split the errors in `outcomes` and in the
    time series from the unexpected ones.
    """
    expected_codes = tuple(expected_codes)
    table = RecordTable.from_records(records)
    requests = len(table)
    errors = int(table.error.sum())
    totals: dict[str, float | int] = {
        "requests": requests,
        "errors": errors,
        "error_rate": round(errors / requests, 6) if requests else 0.0,
        "throughput_rps": throughput_rps(requests, elapsed_s if window_s is None else window_s),
    }
    if window_s is not None:
        totals["measured_window_s"] = round(window_s, 3)
    by_operation: dict[str, object] = {}
    for code, name in sorted(enumerate(table.operation.labels), key=lambda pair: pair[1]):
        rows = table.operation.codes == code
        if rows.any():
            by_operation[name] = {
                "requests": int(rows.sum()),
                "errors": int(table.error[rows].sum()),
                "by_status": _status_counts(table.status[rows]),
                "by_code": _label_counts(table.code, rows),
            }
    return {
        "totals": totals,
        "by_operation": by_operation,
        "by_status": _status_counts(table.status),
        "by_code": _label_counts(table.code, None),
        "latency_ms": latency_summary(table.latency_ms),
        "latency_histogram": histogram(table.latency_ms),
        "timeseries": per_second(table, seconds=int(elapsed_s), expected_codes=expected_codes),
        "outcomes": summarise_outcomes(table, expected_codes),
    }


def _status_counts(statuses: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(statuses, return_counts=True)
    pairs = zip(values.tolist(), counts.tolist(), strict=True)
    return _sorted_counts({str(value): n for value, n in pairs})


def _label_counts(column: Labels, rows: np.ndarray | None) -> dict[str, int]:
    """Count each non-empty label (of the masked rows)."""
    codes = column.codes if rows is None else column.codes[rows]
    counts = np.bincount(codes, minlength=len(column.labels)).tolist()
    return _sorted_counts(
        {label: n for label, n in zip(column.labels, counts, strict=True) if label and n}
    )


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
