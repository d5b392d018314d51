"""Watch the service during a scenario: process alive, /healthz each second, /metrics deltas.

Each event is recorded with its time: `crash` (the service is down: the supervisor exited),
`restart` (a worker died and the supervisor replaced it: the service stayed up), `worker_exit`
(a worker died and no replacement came within REPLACEMENT_GRACE_S), pool exhaustion and
/healthz failures. The result is the service.json each scenario folder holds and the verdict
reads.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil
from prometheus_client.parser import text_string_to_metric_families

from results.files import SERVICE_FILE
from watch.background import BackgroundThread

POLL_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.0
# The first scrape is the baseline every delta subtracts: worth a few tries.
FIRST_SCRAPE_ATTEMPTS = 3
FIRST_SCRAPE_RETRY_S = 0.5
# Counters whose change during a scenario the report shows; gauges are tracked as peaks.
COUNTERS = (
    "db_serialization_retries_total",
    "db_serialization_conflicts_total",
    "db_pool_timeouts_total",
    "http_requests_total",
    "http_5xx_total",
    "service_worker_restarts_total",
)

GAUGES = ("db_pool_size", "db_pool_checked_out", "db_pool_waiting")
POOL_TIMEOUTS = "db_pool_timeouts_total"
HTTP_REQUESTS = "http_requests_total"
RETRIES = "db_serialization_retries_total"
CONFLICTS = "db_serialization_conflicts_total"
# The counters kept at every poll, so the report can draw retry storms second by second.
SERIES_COUNTERS = {"retries": RETRIES, "conflicts": CONFLICTS, "requests": HTTP_REQUESTS}
SERVER_ERRORS = "http_5xx_total"
WORKER_RESTARTS = "service_worker_restarts_total"
# The supervisor replaces a dead worker within 2 s; only a worker still unreplaced after that is
# reported as an exit, so a replacement seen a tick later is one restart, not two events.
REPLACEMENT_GRACE_S = 2.0
REPLACEMENT_POLL_S = 0.1
SKIPPED_SUFFIXES = ("_created",)
RESOURCE_TRACKER = "multiprocessing.resource_tracker"


class WatchedService(Protocol):
    """What the watch needs of a running service (service_process.ServiceProcess has it)."""

    base_url: str
    pid: int | None  # None for a service we did not start: no process to watch

    def is_alive(self) -> bool: ...


@dataclass
class _WorkerExit:
    seen: float  # monotonic, for the grace period
    at: str
    reported: bool = False  # as a worker_exit, once the grace period passed unreplaced


@dataclass
class _Probe:
    checks: int = 0
    failures: int = 0
    failing_since: str | None = None


@dataclass
class ServiceWatch(BackgroundThread):
    """Poll a running service in a background thread for as long as the ``with`` block lasts."""

    service: WatchedService
    interval_s: float = POLL_INTERVAL_S
    events: list[dict[str, Any]] = field(default_factory=list)
    # None when no baseline could be scraped: the deltas are then unknown, not totals.
    before: dict[str, float] | None = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)
    # One point per poll: epoch seconds and the SERIES_COUNTERS' running totals.
    series: list[dict[str, float]] = field(default_factory=list)
    started_at: str = ""
    ended_at: str = ""

    def __post_init__(self) -> None:
        self._init_thread(
            self._poll, "service-watch", join_timeout_s=self.interval_s + PROBE_TIMEOUT_S * 2 + 1
        )
        self._probe = _Probe()
        self._alive = True
        self._workers = self._worker_pids()
        self._exits: dict[int, _WorkerExit] = {}
        self._restart_times: list[str] = []
        self._replacements_seen = 0
        self._last_metrics: dict[str, float] | None = {}

    def _before_start(self) -> None:
        self.started_at = now()
        self.before = self._first_scrape()
        if self.before is not None:
            self._keep_point(self.before)
        self._last_metrics = None if self.before is None else dict(self.before)

    def _after_stop(self) -> None:
        self._tick()  # one last look, so a crash in the final second is not missed
        self._await_replacements()
        self.after = self._scrape() or {}
        self.ended_at = now()

    def evidence(self) -> dict[str, Any]:
        """Return what was observed, in the service.json shape."""
        return {
            "schema_version": 1,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "pid": self.service.pid,
            "alive": self._alive and not any(e["kind"] == "crash" for e in self.events),
            "events": list(self.events),
            "healthz": {"checks": self._probe.checks, "failures": self._probe.failures},
            "before": None if self.before is None else dict(self.before),
            "after": dict(self.after),
            "delta": metric_delta(self.before, self.after),
            "peaks": dict(self.peaks),
            "worker_restarts": {"count": self._restart_count(), "at": list(self._restart_times)},
            "series": list(self.series),
        }

    def write(self, folder: Path) -> Path:
        """Write service.json into ``folder``."""
        path = Path(folder) / SERVICE_FILE
        path.write_text(json.dumps(self.evidence(), indent=2) + "\n", encoding="utf-8")
        return path

    # -- polling -------------------------------------------------------------------------
    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._tick()

    def _tick(self) -> None:
        if not self._alive:
            return
        self._check_workers()
        if not self.service.is_alive():
            self._alive = False
            self._record("crash", f"service process {self.service.pid} exited")
            return
        self._check_health()
        metrics = self._scrape()
        if metrics is not None:
            self._keep_point(metrics)
            self._check_restart_counter(metrics)
            self._check_pool(metrics)

    def _keep_point(self, metrics: dict[str, float]) -> None:
        point = {"t": round(time.time(), 3)}
        point.update({name: metrics.get(metric, 0.0) for name, metric in SERIES_COUNTERS.items()})
        self.series.append(point)

    def _check_workers(self) -> None:
        workers = self._worker_pids()
        gone, new = self._workers - workers, workers - self._workers
        self._workers = workers
        for pid in sorted(gone):
            self._exits[pid] = _WorkerExit(seen=time.monotonic(), at=now())
        if new and self._exits:
            # The earliest exits are the ones these newcomers replace.
            replaced = sorted(self._exits, key=lambda pid: self._exits[pid].seen)[: len(new)]
            at = self._exits[replaced[0]].at
            for pid in replaced:
                del self._exits[pid]
            self._replacements_seen += len(replaced)
            self._record_restart(f"workers {sorted(replaced)} replaced by {sorted(new)}", at)
        overdue = [
            pid
            for pid, exit_ in sorted(self._exits.items())
            if not exit_.reported and time.monotonic() - exit_.seen >= REPLACEMENT_GRACE_S
        ]
        if overdue:
            for pid in overdue:
                self._exits[pid].reported = True
            self._record(
                "worker_exit",
                f"workers {overdue} exited, none replaced them within {REPLACEMENT_GRACE_S:g} s",
                at=self._exits[overdue[0]].at,
            )

    def _await_replacements(self) -> None:
        """Give a worker that died just before the end its grace period to be replaced."""
        while self._alive and any(not exit_.reported for exit_ in self._exits.values()):
            time.sleep(REPLACEMENT_POLL_S)
            if not self.service.is_alive():
                self._tick()  # records the crash
                return
            self._check_workers()

    def _check_restart_counter(self, metrics: dict[str, float]) -> None:
        """Without worker pids to watch (a service we did not start), trust the counter."""
        if self.service.pid is not None or self._last_metrics is None:
            return
        restarted = metrics.get(WORKER_RESTARTS, 0.0) - self._last_metrics.get(WORKER_RESTARTS, 0.0)
        if restarted > 0:
            self._record_restart(f"{restarted:g} workers restarted ({WORKER_RESTARTS})", now())

    def _record_restart(self, detail: str, at: str) -> None:
        self._restart_times.append(at)
        self._record("restart", detail, at=at)

    def _restart_count(self) -> int | None:
        """Return the supervisor's own count when /metrics has it, else the restarts seen."""
        if self.before is not None and WORKER_RESTARTS in self.after:
            return int(self.after[WORKER_RESTARTS] - self.before.get(WORKER_RESTARTS, 0.0))
        return self._replacements_seen if self.service.pid is not None else None

    def _check_health(self) -> None:
        self._probe.checks += 1
        problem = probe_health(self.service.base_url)
        if problem is None:
            if self._probe.failing_since is not None:
                self._record("healthz_recovered", f"failing since {self._probe.failing_since}")
                self._probe.failing_since = None
            return
        self._probe.failures += 1
        if self._probe.failing_since is None:
            self._probe.failing_since = now()
            self._record("healthz_failed", problem)

    def _check_pool(self, metrics: dict[str, float]) -> None:
        for name in GAUGES:
            if name in metrics:
                self.peaks[name] = max(self.peaks.get(name, 0.0), metrics[name])
        if self._last_metrics is None:
            # No baseline yet: the counters hold earlier scenarios' timeouts too.
            self._last_metrics = metrics
            return
        new_timeouts = metrics.get(POOL_TIMEOUTS, 0.0) - self._last_metrics.get(POOL_TIMEOUTS, 0.0)
        if new_timeouts > 0:
            self._record("pool_exhaustion", f"{new_timeouts:g} requests found no free connection")
        self._last_metrics = metrics

    def _first_scrape(self) -> dict[str, float] | None:
        for attempt in range(FIRST_SCRAPE_ATTEMPTS):
            if attempt:
                time.sleep(FIRST_SCRAPE_RETRY_S)
            metrics = self._scrape()
            if metrics is not None:
                return metrics
        return None

    def _scrape(self) -> dict[str, float] | None:
        try:
            with urllib.request.urlopen(
                f"{self.service.base_url}/metrics", timeout=PROBE_TIMEOUT_S
            ) as response:
                return parse_metrics(response.read().decode("utf-8", errors="replace"))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _worker_pids(self) -> set[int]:
        if self.service.pid is None:
            return set()
        try:
            children = psutil.Process(self.service.pid).children()
            return {child.pid for child in children if _is_worker(child)}
        except psutil.Error:
            return set()

    def _record(self, kind: str, detail: str, at: str | None = None) -> None:
        self.events.append({"kind": kind, "at": at or now(), "detail": detail})


def _is_worker(process: psutil.Process) -> bool:
    """Tell a live server worker from a zombie (dead, not yet reaped) or a resource tracker."""
    try:
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return not any(RESOURCE_TRACKER in part for part in process.cmdline())
    except psutil.Error:
        return False


def probe_health(base_url: str) -> str | None:
    """Return why /healthz is unhealthy, or None when it answers 200 with status ok."""
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=PROBE_TIMEOUT_S) as response:
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return f"/healthz answered {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return f"/healthz unreachable: {error}"
    except ValueError:
        return "/healthz answered something that is not JSON"
    if body.get("status") != "ok":
        return f"/healthz said {body.get('status')!r}"
    return None


def parse_metrics(text: str) -> dict[str, float]:
    """Reduce Prometheus text to the figures the report reads (label sets summed)."""
    figures: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(SKIPPED_SUFFIXES):
                continue
            if sample.name in COUNTERS or sample.name in GAUGES:
                figures[sample.name] = figures.get(sample.name, 0.0) + sample.value
            if sample.name == HTTP_REQUESTS:
                status = sample.labels.get("status", "")
                if status.startswith("5"):
                    figures[SERVER_ERRORS] = figures.get(SERVER_ERRORS, 0.0) + sample.value
                    code = sample.labels.get("code", "")
                    key = f'{HTTP_REQUESTS}{{status="{status}",code="{code}"}}'
                    figures[key] = figures.get(key, 0.0) + sample.value
    return figures


def metric_delta(
    before: Mapping[str, float] | None, after: Mapping[str, float]
) -> dict[str, float | None]:
    """Return how much each counter grew; a counter that went backwards means a restart.

    Without a baseline (``before`` is None) every delta is None: subtracting from zero would
    charge this scenario with everything since the service started.
    """
    names = {name for name in after if name in COUNTERS or name.startswith(HTTP_REQUESTS + "{")}
    if before is None:
        return dict.fromkeys(sorted(names | set(COUNTERS)))
    return {name: after[name] - before.get(name, 0.0) for name in sorted(names)}


def now() -> str:
    """Return the current UTC time in ISO 8601 with milliseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
