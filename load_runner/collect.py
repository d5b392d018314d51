"""Read what every Molotov process wrote: its records, its self-watch and its live progress."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from molotov_scenarios.environment import PROCESS_PREFIX, PROGRESS_PREFIX, RECORDS_PREFIX
from molotov_scenarios.records import Record, decode_record
from results.latency import merge_live_buckets
from results.records import DuplicateRecordError, merge_records
from results.summary import ProcessReport


@dataclass(frozen=True)
class Collected:
    """Every process's records merged, their self-watch, and anything wrong with the files."""

    records: list[Record]
    processes: list[ProcessReport]
    run_start_epoch: float | None
    exceptions: int
    first_exception: str
    scheduled_requests: int
    problems: list[str]


@dataclass(frozen=True)
class LiveProgress:
    """Counts so far across processes, for the progress line."""

    requests: int
    errors: int
    buckets: dict[int, int]


def collect(record_dir: Path) -> Collected:
    """Read and merge every process's files; note (don't hide) anything missing or inconsistent."""
    problems: list[str] = []
    per_process: list[list[Record]] = []
    reports: list[ProcessReport] = []
    starts: list[float] = []
    exceptions = scheduled = 0
    first_exception = ""
    for summary_path in sorted(record_dir.glob(f"{PROCESS_PREFIX}*.json")):
        summary = json.loads(summary_path.read_text())
        pid = int(summary["pid"])
        records_path = record_dir / f"{RECORDS_PREFIX}{pid}.csv"
        try:
            with records_path.open(newline="") as handle:
                records = [decode_record(row) for row in csv.reader(handle)]
        except FileNotFoundError:
            problems.append(f"process {pid} wrote a summary but no records")
            records = []
        if len(records) != summary["requests"]:
            problems.append(
                f"process {pid} counted {summary['requests']} requests "
                f"but its file holds {len(records)}"
            )
        per_process.append(records)
        reports.append(
            ProcessReport(
                pid=pid,
                requests=len(records),
                cpu_seconds=float(summary["cpu_seconds"]),
                wall_seconds=float(summary["wall_seconds"]),
                loop_lag_ms=tuple(float(lag) for lag in summary["loop_lag_ms"]),
            )
        )
        starts.append(float(summary["run_start_epoch"]))
        exceptions += int(summary["exceptions"])
        scheduled += int(summary["scheduled_requests"])
        first_exception = first_exception or str(summary["first_exception"])
    try:
        records = merge_records(per_process)
    except DuplicateRecordError as error:
        problems.append(str(error))
        records = [record for process in per_process for record in process]
    return Collected(
        records=records,
        processes=reports,
        run_start_epoch=min(starts) if starts else None,
        exceptions=exceptions,
        first_exception=first_exception,
        scheduled_requests=scheduled,
        problems=problems,
    )


def read_progress(record_dir: Path) -> LiveProgress:
    """Add up the progress files the processes rewrite about once a second."""
    requests = errors = 0
    per_process: list[dict[int, int]] = []
    for path in record_dir.glob(f"{PROGRESS_PREFIX}*.json"):
        try:
            progress = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # replaced between listing and reading: next round will see it
        requests += int(progress["requests"])
        errors += int(progress["errors"])
        # JSON keys are text: the bucket numbers become ints again here.
        per_process.append({int(bucket): int(n) for bucket, n in progress["buckets"].items()})
    buckets = dict(merge_live_buckets(per_process))
    return LiveProgress(requests=requests, errors=errors, buckets=buckets)
