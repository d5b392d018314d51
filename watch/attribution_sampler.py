"""Sample what the database, the host and the service are doing, about every 100 ms.

During a scenario a background thread records, per sample:
- PostgreSQL (`pg_stat_activity`): the test database's client backends by state and by wait
  event (`IO:WALSync`, `Lock:transactionid`, ...), the checkpointer's and WAL writer's wait
  event (a checkpoint writing or syncing shows there), running VACUUM / ANALYZE / autovacuum
  with their relation (`pg_stat_progress_vacuum`, `pg_stat_progress_analyze`, backend_type),
  and active backends of other databases (someone else's load on a shared server);
- `pg_stat_bgwriter`'s counters (checkpoints, buffers written by checkpoint, bgwriter and
  backends), cumulative: the attribution takes their differences;
- the host's CPU: busy, iowait and steal shares since the previous sample (psutil);
- the service's workers: their CPU share of one core each since the previous sample, and,
  once a second, the service's own event-loop lag gauge from /metrics
  (`service_event_loop_lag_seconds`, the worst live worker's over the last second) when the
  service exposes it.

The generator's own event-loop lag is probed by each Molotov process every 100 ms; after
the run `generator_lag` places those probes on the run's clock. Everything goes to
samples.json in the scenario folder; reporting/attribution.py reads it. One connection, a
few catalog reads per sample: about a millisecond of a backend's time every 100 ms.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from results.files import SAMPLES_FILE
from watch.background import BackgroundThread

SAMPLE_INTERVAL_S = 0.1
CONNECT_TIMEOUT_S = 5
RECONNECT_EVERY_S = 1.0
GENERATOR_PROCESS_GLOB = "process-*.json"
GENERATOR_LAG_INTERVAL_S = 0.1  # molotov_scenarios/recorder.py probes this often
SERVICE_LOOP_LAG_METRIC = "service_event_loop_lag_seconds"
SERVICE_LAG_EVERY_SAMPLES = 10  # the gauge covers the last second: read it once a second
METRICS_TIMEOUT_S = 0.5

# Client backends of the test database, by state and wait event; other databases' load.
ACTIVITY_SQL = """
SELECT datname = current_database() AS ours, backend_type, state,
       coalesce(wait_event_type || ':' || wait_event, '') AS wait, count(*)
FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
GROUP BY 1, 2, 3, 4
"""
# VACUUM and ANALYZE in progress, by whom (autovacuum worker or a session) and on what.
MAINTENANCE_SQL = """
SELECT 'vacuum' AS what, a.backend_type, p.relid::regclass::text, p.phase
FROM pg_stat_progress_vacuum p JOIN pg_stat_activity a USING (pid)
UNION ALL
SELECT 'analyze', a.backend_type, p.relid::regclass::text, p.phase
FROM pg_stat_progress_analyze p JOIN pg_stat_activity a USING (pid)
"""
BGWRITER_SQL = """
SELECT checkpoints_timed + checkpoints_req, buffers_checkpoint, buffers_clean,
       buffers_backend, buffers_backend_fsync
FROM pg_stat_bgwriter
"""
BGWRITER_FIELDS = ("checkpoints", "buffers_checkpoint", "buffers_clean", "buffers_backend",
                   "buffers_backend_fsync")  # fmt: skip
# Background processes whose wait event tells what they are busy with.
WATCHED_BACKGROUND = {"checkpointer": "checkpointer", "walwriter": "walwriter"}


class AttributionSampler(BackgroundThread):
    """Sample the database, host and service in a thread for as long as the block lasts."""

    def __init__(
        self,
        database_url: str,
        service_pids: Callable[[], Sequence[int]] = list,
        *,
        metrics_url: str | None = None,
        interval_s: float = SAMPLE_INTERVAL_S,
    ) -> None:
        self.database_url = database_url
        self.metrics_url = metrics_url
        self.service_pids = service_pids
        self.interval_s = interval_s
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.started_epoch = 0.0
        self.ended_epoch = 0.0
        self._init_thread(
            self._run, "attribution-sampler", join_timeout_s=interval_s * 10 + CONNECT_TIMEOUT_S
        )
        self._conn: psycopg.Connection[Any] | None = None
        self._last_connect = 0.0
        self._cpu: Any = None
        # pid → (process, when its CPU time was last read, that CPU time)
        self._workers: dict[int, tuple[psutil.Process, float, float]] = {}

    def _before_start(self) -> None:
        self.started_epoch = time.time()
        self._connect()
        self._cpu = psutil.cpu_times()

    def _after_stop(self) -> None:
        self.ended_epoch = time.time()
        if self._conn is not None:
            self._conn.close()

    def document(self, **extra: Any) -> dict[str, Any]:
        """Return samples.json's content."""
        return {
            "schema_version": 1,
            "interval_s": self.interval_s,
            "started_epoch": self.started_epoch,
            "ended_epoch": self.ended_epoch,
            "service_loop_lag_metric": SERVICE_LOOP_LAG_METRIC,
            "errors": self.errors,
            **extra,
            "samples": self.samples,
        }

    def write(self, folder: Path, **extra: Any) -> Path:
        """Write samples.json into ``folder`` (generator lag read from its raw/ files)."""
        folder = Path(folder)
        document = self.document(generator_lag=generator_lag(folder / "raw"), **extra)
        path = folder / SAMPLES_FILE
        path.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")
        return path

    # -- sampling ------------------------------------------------------------------------
    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.samples.append(self.sample())
            next_at += self.interval_s
            # Keep to the schedule; after a late sample, do not try to catch up in a burst.
            next_at = max(next_at, time.monotonic())
            self._stop.wait(next_at - time.monotonic())

    def _connect(self) -> None:
        """Open the sampling connection; on failure, say so and try again a second later."""
        self._last_connect = time.monotonic()
        try:
            self._conn = psycopg.connect(
                self.database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            )
            self._conn.execute("SET application_name = 'clinic-loadtest attribution sampler'")
        except psycopg.Error as error:
            self._conn = None
            self._error(f"no database samples: {error}")

    def sample(self) -> dict[str, Any]:
        """Take one sample now."""
        sample: dict[str, Any] = {"t": round(time.time(), 3)}
        # A fault (a PostgreSQL restart) ends the connection: reconnect, at most once a second.
        if self._conn is None and time.monotonic() - self._last_connect >= RECONNECT_EVERY_S:
            self._connect()
        if self._conn is not None:
            try:
                sample["pg"] = self._database()
            except psycopg.Error as error:
                self._error(f"database sample failed: {error}")
                if self._conn.broken or self._conn.closed:
                    self._conn.close()
                    self._conn = None
        sample["host"] = self._host()
        sample["service"] = self._service()
        if self.metrics_url and len(self.samples) % SERVICE_LAG_EVERY_SAMPLES == 0:
            lag = self._service_loop_lag()
            if lag is not None:
                sample["service"]["loop_lag_ms"] = round(lag * 1000, 1)
        return sample

    def _service_loop_lag(self) -> float | None:
        """Return the service's event-loop lag gauge in seconds, None when it has none."""
        assert self.metrics_url is not None
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=METRICS_TIMEOUT_S) as response:
                text = response.read().decode("utf-8", errors="replace")
            for family in text_string_to_metric_families(text):
                for metric in family.samples:
                    if metric.name == SERVICE_LOOP_LAG_METRIC:
                        return float(metric.value)
        except (urllib.error.URLError, OSError, ValueError) as error:
            self._error(f"no service loop lag from /metrics: {error}")
        return None

    def _database(self) -> dict[str, Any]:
        assert self._conn is not None
        waits: dict[str, int] = {}
        states: dict[str, int] = {}
        background: dict[str, str] = {}
        others_active = 0
        for ours, backend_type, state, wait, count in self._conn.execute(ACTIVITY_SQL):
            if backend_type in WATCHED_BACKGROUND:
                background[WATCHED_BACKGROUND[backend_type]] = wait
            if backend_type != "client backend":
                continue
            if not ours:
                others_active += count if state == "active" else 0
                continue
            states[state or "unknown"] = states.get(state or "unknown", 0) + count
            if state == "active" and wait:
                waits[wait] = waits.get(wait, 0) + count
        maintenance = [
            {"what": what, "by": by, "relation": relation, "phase": phase}
            for what, by, relation, phase in self._conn.execute(MAINTENANCE_SQL)
        ]
        row = self._conn.execute(BGWRITER_SQL).fetchone() or ()
        return {
            "states": states,
            "waits": waits,
            "background": background,
            "other_databases_active": others_active,
            "maintenance": maintenance,
            "bgwriter": dict(zip(BGWRITER_FIELDS, (int(v) for v in row), strict=False)),
        }

    def _host(self) -> dict[str, float]:
        now = psutil.cpu_times()
        before, self._cpu = self._cpu, now
        delta = {field: getattr(now, field) - getattr(before, field) for field in now._fields}
        total = sum(delta.values())
        if total <= 0:
            return {}

        def share(field: str) -> float:
            return round(100 * max(delta.get(field, 0.0), 0.0) / total, 1)

        idle = share("idle")
        iowait, steal = share("iowait"), share("steal")
        return {"busy": round(100 - idle - iowait, 1), "iowait": iowait, "steal": steal}

    def _service(self) -> dict[str, Any]:
        pids = set(self.service_pids())
        shares: dict[str, float] = {}
        for pid in set(self._workers) - pids:
            del self._workers[pid]
        for pid in pids:
            try:
                process, then, used_before = self._workers.get(pid) or (
                    psutil.Process(pid),
                    0.0,
                    0.0,
                )
                now, used = time.monotonic(), _cpu_seconds(process)
                if then:
                    shares[str(pid)] = round(100 * (used - used_before) / max(now - then, 1e-6), 1)
                self._workers[pid] = (process, now, used)
            except psutil.Error:
                self._workers.pop(pid, None)
        return {"worker_cpu_pct": shares}

    def _error(self, message: str) -> None:
        line = message.strip().splitlines()[0] if message.strip() else message
        if line not in self.errors:
            self.errors.append(line)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def generator_lag(raw_dir: Path) -> list[dict[str, float]]:
    """Place each generator process's event-loop lag probes on the run's clock (epoch seconds).

    A process probes every 100 ms from its first worker's start: probe i ends after i + 1
    sleeps and the lags before it. The process's run_start_epoch is the origin (its workers
    start within a fraction of a second of it).
    """
    probes: list[dict[str, float]] = []
    for path in sorted(Path(raw_dir).glob(GENERATOR_PROCESS_GLOB)):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            at = float(summary["run_start_epoch"])
            lags = [float(lag) for lag in summary.get("loop_lag_ms") or []]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for lag in lags:
            at += GENERATOR_LAG_INTERVAL_S + lag / 1000
            probes.append({"t": round(at, 3), "lag_ms": lag})
    probes.sort(key=lambda probe: probe["t"])
    return probes
