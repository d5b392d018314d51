"""Record every request in memory and write one process's results when its last worker ends.

Molotov has no per-process teardown hook: each worker's setup and teardown fixtures count
workers in, and the teardown that brings the count back to zero writes the files. Recording
stays lean on the hot path (one tuple appended to a list); a background task measures the
event-loop lag and rewrites a small progress file about once a second for the runner's live line.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from results.files import PROCESS_PREFIX, PROGRESS_PREFIX, RECORDS_PREFIX
from results.record_format import (
    Record,
    encode_record,
    is_error,
    live_bucket,
)

LAG_PROBE_INTERVAL_S = 0.1  # the watch task sleeps this long and measures how late it wakes up
PROGRESS_EVERY_PROBES = 10  # a progress file about every second
# Records are kept in memory up to this many, then appended to records-<pid>.csv.spill and
# dropped: a shard's million requests take a few MB of memory instead of about 500 MB.
SPILL_EVERY_RECORDS = 20_000
SPILL_SUFFIX = ".spill"
SLOT_PREFIX = "slot-"  # slot-<n>: claimed by one process of the run (see _claim_process_slot)


class Recorder:
    """Hold one Molotov process's records and self-watch figures."""

    def __init__(self, record_dir: Path, run_start_epoch: float, id_prefix: str = "") -> None:
        self.record_dir = record_dir
        self.run_start_epoch = run_start_epoch
        self.pid = os.getpid()
        self.id_prefix = id_prefix  # "s2-" on shard 2: request ids unique across shards
        self.process_slot = _claim_process_slot(record_dir)
        self.records: list[Record] = []  # the records not yet spilled to disk
        self.spilled = 0  # records already appended to the spill file
        self.spill_every = SPILL_EVERY_RECORDS
        self.loop_lag_ms: list[float] = []
        self.exceptions = 0
        self.scheduled_requests = 0  # open model: slots within the run, sent or not
        self.first_exception = ""
        self.active_workers = 0
        self.workers_seen = 0
        self._sequence = 0
        # perf_counter() + offset = seconds since the run started, on the shared wall clock.
        self.offset_s = time.time() - time.perf_counter() - run_start_epoch
        self._cpu_start = time.process_time()
        self._wall_start = time.perf_counter()
        self._live_buckets: Counter[int] = Counter()
        self._live_counted = 0
        self._live_errors = 0
        # Per operation: [requests, errors, latency buckets], for a live feed by operation.
        self._live_operations: dict[str, tuple[list[int], Counter[int]]] = {}
        self.in_flight = 0  # logical operations sent and not yet ended (common._call counts)
        self._watch: asyncio.Task[None] | None = None

    def next_request_id(self) -> str:
        self._sequence += 1
        return f"{self.id_prefix}{self.pid}-{self._sequence}"

    def seconds_since_start(self, perf_time: float) -> float:
        return perf_time + self.offset_s

    @property
    def recorded(self) -> int:
        """Return how many requests this process has recorded, spilled or not."""
        return self.spilled + len(self.records)

    def record(self, record: Record) -> None:
        self.records.append(record)
        if len(self.records) >= self.spill_every:
            self.spill()

    def spill(self) -> None:
        """Append the records in memory to the spill file and let them go."""
        self._count_live()  # the progress line has seen them before they leave
        self.record_dir.mkdir(parents=True, exist_ok=True)
        with self._spill_path.open("a", newline="") as handle:
            self._records_csv(handle)
        self.spilled += len(self.records)
        self.records = []
        self._live_counted = 0

    @property
    def _spill_path(self) -> Path:
        return self.record_dir / f"{RECORDS_PREFIX}{self.pid}.csv{SPILL_SUFFIX}"

    def record_exception(self, error: BaseException) -> None:
        self.exceptions += 1
        if not self.first_exception:
            self.first_exception = "".join(traceback.format_exception(error)).strip()

    def worker_started(self) -> None:
        """Count a worker in; start the watch task with the process's first worker."""
        if self.workers_seen == 0:
            self._cpu_start = time.process_time()
            self._wall_start = time.perf_counter()
        self.active_workers += 1
        self.workers_seen += 1
        if self._watch is None or self._watch.done():
            self._watch = asyncio.get_running_loop().create_task(self._watch_loop())

    def worker_stopped(self) -> None:
        """Count a worker out; the last one writes the process's files (again, if need be)."""
        self.active_workers -= 1
        if self.active_workers > 0:
            return
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self.write_progress()
        self.flush()

    def flush(self) -> None:
        """Write every record so far and the process summary, each atomically."""
        self.record_dir.mkdir(parents=True, exist_ok=True)
        records_path = self.record_dir / f"{RECORDS_PREFIX}{self.pid}.csv"
        if self.spilled or self._spill_path.exists():
            self.spill()
            _write_atomically(records_path, self._copy_spill)
        else:
            _write_atomically(records_path, self._records_csv)
        summary = {
            "pid": self.pid,
            "run_start_epoch": self.run_start_epoch,
            "requests": self.recorded,
            "workers": self.workers_seen,
            "cpu_seconds": time.process_time() - self._cpu_start,
            "wall_seconds": time.perf_counter() - self._wall_start,
            "loop_lag_ms": self.loop_lag_ms,
            "scheduled_requests": self.scheduled_requests,
            "exceptions": self.exceptions,
            "first_exception": self.first_exception,
        }
        process_path = self.record_dir / f"{PROCESS_PREFIX}{self.pid}.json"
        _write_atomically(process_path, lambda handle: json.dump(summary, handle))

    def write_progress(self) -> None:
        """Write counts and live latency buckets so far for the runner's progress line."""
        self._count_live()
        progress = {
            "pid": self.pid,
            "requests": self.recorded,
            "errors": self._live_errors,
            "buckets": {str(bucket): count for bucket, count in self._live_buckets.items()},
            "cpu_seconds": time.process_time() - self._cpu_start,
            "in_flight": self.in_flight,
            "operations": {
                operation: {
                    "requests": counts[0],
                    "errors": counts[1],
                    "buckets": {str(bucket): n for bucket, n in buckets.items()},
                }
                for operation, (counts, buckets) in self._live_operations.items()
            },
        }
        self.record_dir.mkdir(parents=True, exist_ok=True)
        path = self.record_dir / f"{PROGRESS_PREFIX}{self.pid}.json"
        _write_atomically(path, lambda handle: json.dump(progress, handle))

    def _count_live(self) -> None:
        fresh = self.records[self._live_counted :]
        self._live_counted += len(fresh)
        operations = self._live_operations
        for record in fresh:
            if record.operation not in operations:
                operations[record.operation] = ([0, 0], Counter())
            counts, buckets = operations[record.operation]
            bucket = live_bucket(record.latency_ms)
            buckets[bucket] += 1
            self._live_buckets[bucket] += 1
            counts[0] += 1
            if is_error(record.status, record.code):
                counts[1] += 1
                self._live_errors += 1

    def _copy_spill(self, handle: TextIO) -> None:
        with self._spill_path.open(newline="") as spill:
            shutil.copyfileobj(spill, handle)

    async def _watch_loop(self) -> None:
        probes = 0
        while True:
            before = time.perf_counter()
            await asyncio.sleep(LAG_PROBE_INTERVAL_S)
            late_s = time.perf_counter() - before - LAG_PROBE_INTERVAL_S
            self.loop_lag_ms.append(round(max(late_s, 0.0) * 1000, 3))
            probes += 1
            if probes % PROGRESS_EVERY_PROBES == 0:
                self.write_progress()

    def _records_csv(self, handle: TextIO) -> None:
        csv.writer(handle).writerows(encode_record(record) for record in self.records)


def _claim_process_slot(record_dir: Path) -> int:
    """Return this process's slot, 0, 1, ...: the first `slot-<n>` file it manages to create.

    Pids differ from run to run; slots do not, so they can seed the users' random streams.
    """
    record_dir.mkdir(parents=True, exist_ok=True)
    for slot in range(10_000):
        try:
            (record_dir / f"{SLOT_PREFIX}{slot}").touch(exist_ok=False)
        except FileExistsError:
            continue
        return slot
    raise RuntimeError(f"no free process slot in {record_dir}")


def _write_atomically(path: Path, write: Callable[[TextIO], object]) -> None:
    """Write through a temporary file and rename it, so a reader never sees half a file."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    with temporary.open("w", newline="") as handle:
        write(handle)
    temporary.replace(path)
