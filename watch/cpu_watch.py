"""Sample the CPU time of the service, PostgreSQL and the load generator while a run goes on.

A background thread reads psutil's per-process CPU times every half second, grouped by who the
processes belong to; ``cores_used(start, end)`` then tells how many cores each group kept busy
between two moments (wall-clock epoch seconds), counting only processes alive at both ends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import psutil
import psycopg

from watch.background import BackgroundThread

SAMPLE_INTERVAL_S = 0.5
MACHINE = "machine"  # every core's busy time, whoever used it: shows other tenants' load
SERVICE = "service"
POSTGRES = "postgres"
GENERATOR = "generator"
LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1")
POSTGRES_PROCESS_NAMES = ("postgres", "postmaster")

PidFinder = Callable[[], set[int]]


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds per group and process at one moment (MACHINE: busy seconds of all cores)."""

    at_epoch: float
    by_group: Mapping[str, Mapping[int, float]]


@dataclass
class CpuWatch(BackgroundThread):
    """Sample groups of processes in a thread for as long as the ``with`` block lasts."""

    groups: Mapping[str, PidFinder]
    interval_s: float = SAMPLE_INTERVAL_S
    samples: list[CpuSample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._init_thread(self._run, "cpu-watch", join_timeout_s=self.interval_s * 4 + 1)

    def _before_start(self) -> None:
        self.sample()

    def sample(self) -> None:
        """Take one sample now."""
        by_group: dict[str, dict[int, float]] = {MACHINE: {0: _machine_busy_seconds()}}
        for name, find in self.groups.items():
            by_group[name] = _cpu_seconds(find())
        self.samples.append(CpuSample(time.time(), by_group))

    def cores_used(self, start_epoch: float, end_epoch: float) -> dict[str, float | None]:
        """Return each group's average busy cores between the samples closest inside the window.

        None for a group when fewer than two samples fall in the window or none of its
        processes lived through it (e.g. a database on another machine).
        """
        inside = [s for s in self.samples if start_epoch <= s.at_epoch <= end_epoch]
        names = [MACHINE, *self.groups]
        if len(inside) < 2:
            return dict.fromkeys(names)
        first, last = inside[0], inside[-1]
        elapsed = last.at_epoch - first.at_epoch
        used: dict[str, float | None] = {}
        for name in names:
            before, after = first.by_group.get(name, {}), last.by_group.get(name, {})
            lived = before.keys() & after.keys()
            used[name] = (
                round(sum(after[pid] - before[pid] for pid in lived) / elapsed, 4)
                if lived and elapsed > 0
                else None
            )
        return used

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()


def process_tree(pid: int | None) -> set[int]:
    """Return ``pid`` and all its descendants (empty when it is gone or None)."""
    if pid is None:
        return set()
    try:
        root = psutil.Process(pid)
        return {pid, *(child.pid for child in root.children(recursive=True))}
    except psutil.Error:
        return set()


def own_children_except(*excluded: PidFinder) -> PidFinder:
    """Return a finder of this process's descendants minus those the given finders name.

    The load generator is whatever we forked that is not the service (Molotov's processes).
    """

    def find() -> set[int]:
        others: set[int] = set()
        for finder in excluded:
            others |= finder()
        return process_tree(os.getpid()) - {os.getpid()} - others

    return find


def postgres_finder(database_url: str) -> PidFinder:
    """Return a finder of the PostgreSQL server's processes, if the server runs on this machine.

    The postmaster is found as the parent of our own backend; a server elsewhere (or one we may
    not inspect) yields an empty set, and its CPU is then reported as unknown.
    """
    postmaster = _local_postmaster(database_url)

    def find() -> set[int]:
        return process_tree(postmaster)

    return find


def _local_postmaster(database_url: str) -> int | None:
    host = urlsplit(database_url).hostname or ""
    if host not in LOCAL_HOSTS and not host.startswith("/"):
        return None
    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            parent = psutil.Process(int(backend)).parent()
    except (psycopg.Error, psutil.Error, TypeError):
        return None
    if parent is None or parent.name() not in POSTGRES_PROCESS_NAMES:
        return None
    return parent.pid


def _cpu_seconds(pids: set[int]) -> dict[int, float]:
    seconds: dict[int, float] = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue  # exited between listing and reading
        seconds[pid] = times.user + times.system
    return seconds


def _machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    # Linux counts guest time inside user time already; idle and iowait are not busy.
    not_busy = ("idle", "iowait", "guest", "guest_nice")
    return sum(value for name, value in times._asdict().items() if name not in not_busy)
