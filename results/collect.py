"""Read what every Molotov process wrote: its records, its self-watch and its live progress."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from results.files import PROCESS_PREFIX, PROGRESS_PREFIX, RECORDS_PREFIX
from results.latency import merge_live_buckets
from results.record_table import RecordTable, RecordTableBuilder
from results.records import DuplicateRecordError, check_each_request_once, sort_by_start
from results.summary import ProcessReport


@dataclass(frozen=True)
class Collected:
    """Every process's records merged, their self-watch, and anything wrong with the files."""

    records: RecordTable  # ordered by start
    processes: list[ProcessReport]
    run_start_epoch: float | None
    exceptions: int
    first_exception: str
    scheduled_requests: int
    problems: list[str]
    duplicate: str = ""  # the first request (or operation's attempt) recorded twice, if any


@dataclass(frozen=True)
class OperationProgress:
    """One operation's counts so far across processes (for the live feed by operation)."""

    requests: int
    errors: int
    buckets: dict[int, int]


@dataclass(frozen=True)
class LiveProgress:
    """Counts so far across processes, for the progress line and the live metrics feed."""

    requests: int
    errors: int
    buckets: dict[int, int]
    operations: dict[str, OperationProgress] = field(default_factory=dict)
    in_flight: int = 0  # logical operations under way when each process last wrote


def collect(record_dirs: Path | Sequence[Path]) -> Collected:
    """Read and merge every process's files (of one folder, or of several: a merge of shards);
    note (don't hide) anything missing or inconsistent."""
    folders = [record_dirs] if isinstance(record_dirs, Path) else list(record_dirs)
    problems: list[str] = []
    reports: list[ProcessReport] = []
    starts: list[float] = []
    exceptions = scheduled = 0
    first_exception = ""
    pattern = f"{PROCESS_PREFIX}*.json"
    paths = [path for folder in folders for path in sorted(folder.glob(pattern))]
    summaries = [(path, json.loads(path.read_text())) for path in paths]
    # Every process's rows into one table, sized by what the processes say they wrote.
    builder = RecordTableBuilder(capacity=sum(int(s["requests"]) for _, s in summaries))
    for summary_path, summary in summaries:
        pid = int(summary["pid"])
        records_path = summary_path.parent / f"{RECORDS_PREFIX}{pid}.csv"
        try:
            with records_path.open(newline="") as handle:
                recorded = builder.add_rows(csv.reader(handle))
        except FileNotFoundError:
            problems.append(f"process {pid} wrote a summary but no records")
            recorded = 0
        if recorded != summary["requests"]:
            problems.append(
                f"process {pid} counted {summary['requests']} requests "
                f"but its file holds {recorded}"
            )
        reports.append(
            ProcessReport(
                pid=pid,
                requests=recorded,
                cpu_seconds=float(summary["cpu_seconds"]),
                wall_seconds=float(summary["wall_seconds"]),
                loop_lag_ms=tuple(float(lag) for lag in summary["loop_lag_ms"]),
            )
        )
        starts.append(float(summary["run_start_epoch"]))
        exceptions += int(summary["exceptions"])
        scheduled += int(summary["scheduled_requests"])
        first_exception = first_exception or str(summary["first_exception"])
    records = builder.build()
    duplicate = ""
    try:
        check_each_request_once(records)
    except DuplicateRecordError as error:
        duplicate = str(error)
        problems.append(duplicate)
    sort_by_start(records)
    return Collected(
        records=records,
        processes=reports,
        run_start_epoch=min(starts) if starts else None,
        exceptions=exceptions,
        first_exception=first_exception,
        scheduled_requests=scheduled,
        problems=problems,
        duplicate=duplicate,
    )


def read_progress(record_dir: Path) -> LiveProgress:
    """Add up the progress files the processes rewrite about once a second."""
    requests = errors = in_flight = 0
    per_process: list[dict[int, int]] = []
    by_operation: dict[str, list[OperationProgress]] = {}
    for path in record_dir.glob(f"{PROGRESS_PREFIX}*.json"):
        try:
            progress = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # replaced between listing and reading: next round will see it
        requests += int(progress["requests"])
        errors += int(progress["errors"])
        # JSON keys are text: the bucket numbers become ints again here.
        per_process.append({int(bucket): int(n) for bucket, n in progress["buckets"].items()})
        in_flight += int(progress.get("in_flight", 0))
        for operation, counts in progress.get("operations", {}).items():
            by_operation.setdefault(operation, []).append(
                OperationProgress(
                    int(counts["requests"]),
                    int(counts["errors"]),
                    {int(bucket): int(n) for bucket, n in counts["buckets"].items()},
                )
            )
    buckets = dict(merge_live_buckets(per_process))
    operations = {
        operation: OperationProgress(
            requests=sum(part.requests for part in parts),
            errors=sum(part.errors for part in parts),
            buckets=dict(merge_live_buckets(part.buckets for part in parts)),
        )
        for operation, parts in sorted(by_operation.items())
    }
    return LiveProgress(requests, errors, buckets, operations, in_flight)
