"""A nemesis: inject faults into our own service and PostgreSQL while a scenario runs.

The schedule lives in molotov_scenarios/profiles.toml, one table per scenario and profile
beside the load settings (any profile may have one; the `faults` profile has one for each
scenario)::

    [high_throughput.faults.nemesis]
    schedule = [
      { at_s = 6, kind = "kill_worker" },
      { at_s = 12, kind = "postgres_pause", duration_s = 6 },
      { at_s = 24, kind = "network_delay", duration_s = 3, delay_ms = 100, loss_pct = 5 },
    ]

`at_s` counts seconds from the start of the scenario's load (the moment its generator
processes are seen running, within about a second of the records' own clock). Faults run one
after another in `at_s` order; a fault whose time has passed runs as soon as the previous one
is over. Kinds:

- `kill_worker`: SIGKILL of one service worker (the lowest pid): the supervisor must replace
  it while the other workers keep serving. Needs a service of ours with 2+ workers.
- `postgres_restart`: `pg_ctl restart -m fast` of the cluster (as its owner account): every
  connection is cut, in-flight transactions are rolled back.
- `postgres_pause`: SIGSTOP of the postmaster and every backend for `duration_s` (default 3),
  then SIGCONT: the server neither answers nor fails, so clients time out and retry.
- `network_delay`: `tc netem` delay (`delay_ms`, default 100) and loss (`loss_pct`, default 5)
  for `duration_s` (default 3), in a network namespace of our own. Where the kernel has no
  netem qdisc (tried, not guessed), the step is recorded as skipped with tc's own reason;
  this machine's kernel has none, so here the two kinds below are the network faults that run.
- `db_partition`: the service's link to PostgreSQL is cut for `duration_s` (default 3) at the
  DB relay (faults/relay.py) the service connects through: its connections stall with their
  bytes held and new ones hang, as on a black-holed link; with `reset = true` every connection
  is reset instead, and new ones too until the end.
- `db_slow_link`: the relay adds `added_rtt_ms` (default 100) of round-trip time, on top of
  whatever it adds already, for `duration_s` (default 3).

The two relay kinds need the service started through a relay (``relay.url_for(url)``) and
that relay given to nemesis_for(..., relay=relay); a schedule with either and no relay is
refused.

Each fault records its kind, target, start, end and outcome (`done`, `skipped` with why, or
`failed` with the error). After each fault's end the nemesis probes /healthz every 0.1 s; once
the scenario is over, the records give the rest (results/recovery.py): the recovery time,
what the fault cost, and the figures outside the fault windows. All of it goes to
`<scenario>/faults.json`, which the verdict and the report read.

Only the project's own cluster and service are touched: with DATABASE_URL set (a server we
were pointed at) the PostgreSQL faults are refused unless `--force`; with `--target-url` the
service is not ours, so no worker is killed (skipped, with why).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

import psutil
import psycopg

from load_runner.profiles import ProfileError, ProfilesFile, read_profiles
from local_postgres import LocalCluster
from local_postgres.cluster import SERVER_ACCOUNT, find_bin_dir
from results.collect import collect
from results.files import FAULTS_FILE, RAW_DIR
from results.recovery import (
    RECOVERY_LIMIT_S,
    FaultWindow,
    fault_cost,
    measure_recovery,
    steady_state,
)
from watch.background import BackgroundThread
from watch.service_watch import probe_health

if TYPE_CHECKING:  # the nemesis only acts on a relay it is handed
    from faults.relay import DbRelay

SCHEMA_VERSION = 1
KILL_WORKER = "kill_worker"
POSTGRES_RESTART = "postgres_restart"
POSTGRES_PAUSE = "postgres_pause"
NETWORK_DELAY = "network_delay"
DB_PARTITION = "db_partition"
DB_SLOW_LINK = "db_slow_link"
FAULT_KINDS = (
    KILL_WORKER,
    POSTGRES_RESTART,
    POSTGRES_PAUSE,
    NETWORK_DELAY,
    DB_PARTITION,
    DB_SLOW_LINK,
)
POSTGRES_FAULTS = frozenset({POSTGRES_RESTART, POSTGRES_PAUSE})
RELAY_FAULTS = frozenset({DB_PARTITION, DB_SLOW_LINK})  # those acting through the DB relay
# The kinds with a duration.
TIMED_FAULTS = frozenset({POSTGRES_PAUSE, NETWORK_DELAY, DB_PARTITION, DB_SLOW_LINK})
DONE, SKIPPED, FAILED = "done", "skipped", "failed"
SCHEDULE_KEYS = frozenset({"schedule"})
FAULT_KEYS = frozenset(
    {"at_s", "kind", "duration_s", "delay_ms", "loss_pct", "added_rtt_ms", "reset"}
)
DEFAULT_DURATION_S = 3.0
DEFAULT_DELAY_MS = 100.0
DEFAULT_LOSS_PCT = 5.0
DEFAULT_ADDED_RTT_MS = 100.0
# A fault must end this long before the scenario does, or its recovery cannot be seen.
MIN_OBSERVATION_S = 4.0
LOAD_START_TIMEOUT_S = 30.0  # generator processes not seen by then: count from the nemesis start
PROGRESS_GLOB = "progress-*.json"
PROGRESS_DELAY_S = 1.0  # a generator process writes its first progress file a second in
HEALTH_POLL_S = 0.1
RESTART_TIMEOUT_S = 60
# Slack on each side of a fault's window for the service watch, which polls once a second
# and gives each probe up to two seconds: its events lag the fault by that much.
WATCH_SLACK_S = 3.0
NETNS_PREFIX = "nemesis-"
NO_RELAY = (
    "{where}: {kinds} need(s) the DB relay, and none was given: start the service "
    "through a DbRelay (relay.url_for(database_url)) and pass nemesis_for(..., relay=relay)"
)
POSTGRES_REFUSED = (
    "the PostgreSQL faults only touch the project's own cluster: DATABASE_URL{target} points "
    "elsewhere; pass --force to inject them into that server all the same"
)


class NemesisConfigError(ProfileError):
    """A fault schedule that cannot run; the message says where and why."""


@dataclass(frozen=True)
class FaultSpec:
    """One planned fault."""

    kind: str
    at_s: float
    duration_s: float = 0.0
    delay_ms: float = DEFAULT_DELAY_MS
    loss_pct: float = DEFAULT_LOSS_PCT
    added_rtt_ms: float = DEFAULT_ADDED_RTT_MS  # a db_slow_link's
    reset: bool = False  # a db_partition's: reset the connections instead of stalling them


@dataclass
class FaultRecord:
    """What happened to one planned fault."""

    kind: str
    planned_at_s: float
    target: str = ""
    outcome: str = SKIPPED
    reason: str = ""
    started_epoch: float | None = None
    ended_epoch: float | None = None
    healthz_back_after_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


class NemesisService(Protocol):
    """What the nemesis needs of the service: its URL, and its process when it is ours."""

    base_url: str
    pid: int | None


# -- the schedule ---------------------------------------------------------------------------
def load_schedule(
    scenario: str, profile: str, config_path: Path | None = None
) -> tuple[FaultSpec, ...]:
    """Read and check one scenario's fault schedule under one profile (empty when none)."""
    return schedule_from(read_profiles(config_path), scenario, profile)


def schedule_from(profiles: ProfilesFile, scenario: str, profile: str) -> tuple[FaultSpec, ...]:
    """Check one scenario's fault schedule under one profile, from a profiles file already read."""
    table = profiles.nemesis_table(scenario, profile)
    if not table:
        return ()
    where = f"[{scenario}.{profile}.nemesis]"
    duration_s = profiles.scenario_config(scenario, profile).duration_s
    return parse_schedule(table, where, scenario_duration_s=duration_s)


def parse_schedule(
    table: Mapping[str, Any], where: str, *, scenario_duration_s: float
) -> tuple[FaultSpec, ...]:
    """Turn a `nemesis` table into fault specs in time order; raise NemesisConfigError."""
    unknown = sorted(set(table) - SCHEDULE_KEYS)
    if unknown:
        raise NemesisConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    entries = table.get("schedule", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise NemesisConfigError(f"{where}: schedule must be a list of {{at_s, kind, ...}} tables")
    specs = [_fault_spec(entry, f"{where} schedule[{i}]") for i, entry in enumerate(entries)]
    for spec in specs:
        if spec.at_s + spec.duration_s > scenario_duration_s - MIN_OBSERVATION_S:
            raise NemesisConfigError(
                f"{where}: the {spec.kind} at {spec.at_s:g} s ends less than "
                f"{MIN_OBSERVATION_S:g} s before the scenario does ({scenario_duration_s:g} s): "
                "its recovery could not be observed"
            )
    return tuple(sorted(specs, key=lambda spec: spec.at_s))


def _fault_spec(entry: Mapping[str, Any], where: str) -> FaultSpec:
    unknown = sorted(set(entry) - FAULT_KEYS)
    if unknown:
        raise NemesisConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    kind = entry.get("kind")
    if kind not in FAULT_KINDS:
        raise NemesisConfigError(f"{where}: kind must be one of {', '.join(FAULT_KINDS)}")
    timed = kind in TIMED_FAULTS
    if not timed and "duration_s" in entry:
        raise NemesisConfigError(f"{where}: a {kind} is instantaneous; drop duration_s")
    if kind != NETWORK_DELAY and ({"delay_ms", "loss_pct"} & set(entry)):
        raise NemesisConfigError(f"{where}: delay_ms and loss_pct belong to a network_delay")
    if kind != DB_SLOW_LINK and "added_rtt_ms" in entry:
        raise NemesisConfigError(f"{where}: added_rtt_ms belongs to a db_slow_link")
    if kind != DB_PARTITION and "reset" in entry:
        raise NemesisConfigError(f"{where}: reset belongs to a db_partition")
    reset = entry.get("reset", False)
    if not isinstance(reset, bool):
        raise NemesisConfigError(f"{where}: reset must be true or false, not {reset!r}")
    loss_pct = _number(entry, "loss_pct", where, DEFAULT_LOSS_PCT)
    if loss_pct > 100:
        raise NemesisConfigError(f"{where}: loss_pct must be at most 100")
    return FaultSpec(
        kind=str(kind),
        at_s=_number(entry, "at_s", where, None),
        duration_s=_number(entry, "duration_s", where, DEFAULT_DURATION_S) if timed else 0.0,
        delay_ms=_number(entry, "delay_ms", where, DEFAULT_DELAY_MS),
        loss_pct=loss_pct,
        added_rtt_ms=_number(entry, "added_rtt_ms", where, DEFAULT_ADDED_RTT_MS),
        reset=reset,
    )


def _number(entry: Mapping[str, Any], key: str, where: str, default: float | None) -> float:
    value = entry.get(key, default)
    if value is None:
        raise NemesisConfigError(f"{where}: {key} is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise NemesisConfigError(f"{where}: {key} must be a number ≥ 0, not {value!r}")
    return float(value)


def relay_refusal(schedule: Sequence[FaultSpec], relay: DbRelay | None, where: str) -> str | None:
    """Return why this schedule cannot run without a DB relay, or None when it can."""
    kinds = sorted({spec.kind for spec in schedule if spec.kind in RELAY_FAULTS})
    if not kinds or relay is not None:
        return None
    return NO_RELAY.format(where=where, kinds=" and ".join(kinds))


def postgres_refusal(
    schedules: Sequence[Sequence[FaultSpec]], *, target_url: str | None, force: bool
) -> str | None:
    """Return why the PostgreSQL faults of these schedules may not run, or None when they may.

    Our own cluster is the one we start when DATABASE_URL is not set; anything else is a
    server someone pointed us at, not ours to restart or freeze without --force.
    """
    wanted = any(spec.kind in POSTGRES_FAULTS for schedule in schedules for spec in schedule)
    if not wanted or force or not os.environ.get("DATABASE_URL"):
        return None
    return POSTGRES_REFUSED.format(target=" (with --target-url)" if target_url else "")


# -- PostgreSQL -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PostgresServer:
    """A PostgreSQL server on this machine that the nemesis may restart or pause."""

    data_dir: Path
    account: str  # the OS account that owns (and runs) it
    log_file: Path  # where a restarted server writes its log

    def postmaster_pid(self) -> int:
        """Return the postmaster's pid from postmaster.pid."""
        return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])

    def processes(self) -> list[psutil.Process]:
        """Return the postmaster and every backend and helper it forked."""
        postmaster = psutil.Process(self.postmaster_pid())
        return [postmaster, *postmaster.children(recursive=True)]

    def restart(self) -> None:
        """Restart fast (`pg_ctl restart -m fast -w`) with the options it was started with."""
        argv = [str(find_bin_dir() / "pg_ctl"), "restart", "-D", str(self.data_dir), "-m",
                "fast", "-w", "-t", str(RESTART_TIMEOUT_S), "-l", str(self.log_file)]  # fmt: skip
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.account, "--", *argv]
        # -l sends the new server's output to its log: on our pipes it would hold them open.
        result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"pg_ctl exited {result.returncode}")


def own_postgres() -> PostgresServer:
    """Return the project's own cluster (local_postgres), the one the pipeline starts."""
    cluster = LocalCluster()
    account = SERVER_ACCOUNT if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    return PostgresServer(cluster.data_dir, account, cluster.log_file)


def postgres_at(database_url: str) -> PostgresServer:
    """Find the server behind ``database_url`` on this machine (only with --force)."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
    if not (data_dir / "postmaster.pid").exists():
        raise RuntimeError(f"the server's data directory {data_dir} is not on this machine")
    owner = pwd.getpwuid(data_dir.stat().st_uid)
    log_dir = Path(tempfile.mkdtemp(prefix="nemesis-pg-"))
    if os.geteuid() == 0:
        os.chown(log_dir, owner.pw_uid, owner.pw_gid)
    return PostgresServer(data_dir, owner.pw_name, log_dir / "server.log")


# -- injecting --------------------------------------------------------------------------------
def kill_worker(service: NemesisService, record: FaultRecord) -> None:
    """SIGKILL the service worker with the lowest pid."""
    if service.pid is None:
        _skip(record, "the service is not ours (--target-url): no worker process to kill")
        return
    pids = service_worker_pids(service)
    if not pids:
        _skip(record, f"no worker process found under the service's pid {service.pid}")
        return
    victim = pids[0]
    record.target = f"service worker pid {victim} (of {len(pids)})"
    record.started_epoch = time.time()
    os.kill(victim, signal.SIGKILL)
    record.ended_epoch = time.time()
    record.outcome = DONE


def service_worker_pids(service: NemesisService) -> list[int]:
    """Return the service's worker pids, lowest first."""
    listed = getattr(service, "worker_pids", None)
    if callable(listed):
        return sorted(listed())
    try:
        children = psutil.Process(service.pid).children()
    except psutil.Error:
        return []
    # multiprocessing's resource tracker is a child too, but serves no request.
    return sorted(
        child.pid
        for child in children
        if not any("resource_tracker" in part for part in _cmdline(child))
    )


def restart_postgres(server: PostgresServer, record: FaultRecord) -> None:
    """Restart PostgreSQL fast and wait until it accepts connections again."""
    record.target = f"PostgreSQL in {server.data_dir} (postmaster pid {server.postmaster_pid()})"
    record.started_epoch = time.time()
    try:
        server.restart()
    finally:
        record.ended_epoch = time.time()
    record.details["new_postmaster_pid"] = server.postmaster_pid()
    record.outcome = DONE


def pause_postgres(
    server: PostgresServer, record: FaultRecord, duration_s: float, stop: threading.Event
) -> None:
    """SIGSTOP the postmaster and its backends for ``duration_s``, then SIGCONT them."""
    processes = server.processes()
    record.target = f"PostgreSQL postmaster {processes[0].pid} and {len(processes) - 1} children"
    record.started_epoch = time.time()
    try:
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.suspend()
        # The end of the scenario cuts a pause short: never leave the server frozen.
        stop.wait(duration_s)
    finally:
        # The children may have changed only through us: a stopped postmaster forks nothing.
        for process in reversed(processes):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()
        record.ended_epoch = time.time()
    record.outcome = DONE


def delay_network(spec: FaultSpec, record: FaultRecord, stop: threading.Event) -> None:
    """Delay and drop packets with tc netem in a namespace of our own, or say why not."""
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        _skip(record, f"{' and '.join(missing)} not found: iproute2 is needed for tc netem")
        return
    namespace = f"{NETNS_PREFIX}{os.getpid()}"
    record.target = f"network namespace {namespace}"
    created = _ip(["netns", "add", namespace])
    if created.returncode != 0:
        _skip(record, f"cannot create a network namespace: {_first_line(created)}")
        return
    try:
        _ip(["netns", "exec", namespace, "ip", "link", "set", "lo", "up"])
        netem = _ip(
            ["netns", "exec", namespace, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
             "delay", f"{spec.delay_ms:g}ms", "loss", f"{spec.loss_pct:g}%"]
        )  # fmt: skip
        if netem.returncode != 0:
            _skip(
                record,
                f"this kernel has no netem qdisc (tc said: {_first_line(netem)}); "
                "db_slow_link and db_partition shape the link to PostgreSQL at the DB relay",
            )
            return
        # netem works, but the generator and the service talk over the machine's own
        # loopback, outside this namespace; shaping that would touch the host's network.
        _skip(
            record,
            "netem is available, but routing the service's traffic through the namespace "
            "is not implemented (the generator and the service share the host's loopback)",
        )
    finally:
        _ip(["netns", "del", namespace])


def partition_db(
    relay: DbRelay, spec: FaultSpec, record: FaultRecord, stop: threading.Event
) -> None:
    """Cut the relay's link to PostgreSQL for ``spec.duration_s`` (stall, or reset), then heal."""
    mode = "reset" if spec.reset else "stalled"
    record.target = f"DB link through the relay {relay.address} to {relay.upstream} ({mode})"
    before = relay.stats()
    record.started_epoch = time.time()
    relay.partition(reset=spec.reset)
    try:
        # The end of the scenario cuts a partition short: never leave the link cut.
        stop.wait(spec.duration_s)
        held = relay.stats()
    finally:
        relay.heal()
        record.ended_epoch = time.time()
    record.details.update(
        reset=spec.reset,
        connections_reset=held.connections_reset - before.connections_reset,
        connections_accepted_meanwhile=held.connections_accepted - before.connections_accepted,
        bytes_held_at_heal=held.bytes_held,
    )
    record.outcome = DONE


def slow_db_link(
    relay: DbRelay, spec: FaultSpec, record: FaultRecord, stop: threading.Event
) -> None:
    """Add ``spec.added_rtt_ms`` to the relay's round trip for ``spec.duration_s``, then restore."""
    baseline_ms = relay.added_rtt_ms
    slowed_ms = baseline_ms + spec.added_rtt_ms
    record.target = f"DB link through the relay {relay.address} to {relay.upstream}"
    record.started_epoch = time.time()
    relay.set_added_rtt_ms(slowed_ms)
    try:
        stop.wait(spec.duration_s)
    finally:
        relay.set_added_rtt_ms(baseline_ms)
        record.ended_epoch = time.time()
    record.details.update(added_rtt_ms=spec.added_rtt_ms, rtt_ms_before=baseline_ms,
                          rtt_ms_during=slowed_ms)  # fmt: skip
    record.outcome = DONE


def _ip(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *arguments], capture_output=True, text=True, check=False)


def _first_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[0] if lines else f"exit code {result.returncode}"


def _skip(record: FaultRecord, reason: str) -> None:
    record.outcome = SKIPPED
    record.reason = reason


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


# -- the nemesis ------------------------------------------------------------------------------
class Nemesis(BackgroundThread):
    """Run a fault schedule in a background thread for as long as the ``with`` block lasts."""

    def __init__(
        self,
        schedule: Sequence[FaultSpec],
        *,
        service: NemesisService,
        raw_dir: Path,
        postgres: PostgresServer | None,
        postgres_unavailable: str = "",
        relay: DbRelay | None = None,
    ) -> None:
        refusal = relay_refusal(schedule, relay, "the nemesis")
        if refusal:
            raise NemesisConfigError(refusal)
        self.schedule = tuple(schedule)
        self.service = service
        self.raw_dir = Path(raw_dir)
        self.postgres = postgres
        self.postgres_unavailable = postgres_unavailable
        self.relay = relay
        self.records = [FaultRecord(spec.kind, spec.at_s) for spec in self.schedule]
        self.anchor_epoch: float | None = None
        self.anchor = ""
        self._init_thread(self._run, "nemesis")
        self._created = time.time()

    def __enter__(self) -> Self:
        # Without a schedule there is nothing to run: no thread waiting for the load either.
        return super().__enter__() if self.schedule else self

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        self.anchor_epoch, self.anchor = self._wait_for_load()
        for spec, record in zip(self.schedule, self.records, strict=True):
            delay = self.anchor_epoch + spec.at_s - time.time()
            if delay > 0 and self._stop.wait(delay):
                _skip(record, "the scenario ended before this fault's time")
                continue
            if self._stop.is_set():
                _skip(record, "the scenario ended before this fault's time")
                continue
            try:
                self._inject(spec, record)
            except Exception as error:  # recorded, never raised: the scenario carries on
                record.outcome = FAILED
                record.reason = f"{type(error).__name__}: {str(error).strip()[:300]}"
                record.started_epoch = record.started_epoch or time.time()
                record.ended_epoch = record.ended_epoch or time.time()
            if record.outcome == DONE:
                record.healthz_back_after_s = self._wait_for_health(record.ended_epoch or 0.0)

    def _wait_for_load(self) -> tuple[float, str]:
        """Return when the scenario's load began: its first generator progress file, less 1 s."""
        deadline = time.monotonic() + LOAD_START_TIMEOUT_S
        while not self._stop.is_set() and time.monotonic() < deadline:
            for path in self.raw_dir.glob(PROGRESS_GLOB):
                with contextlib.suppress(OSError):
                    written = path.stat().st_mtime
                    if written >= self._created:
                        return written - PROGRESS_DELAY_S, "generator processes seen running"
            self._stop.wait(0.1)
        return time.time(), "nemesis start (the generator was not seen running)"

    def _inject(self, spec: FaultSpec, record: FaultRecord) -> None:
        if spec.kind == KILL_WORKER:
            kill_worker(self.service, record)
        elif spec.kind == NETWORK_DELAY:
            delay_network(spec, record, self._stop)
        elif spec.kind in RELAY_FAULTS:
            assert self.relay is not None  # refused in __init__ otherwise
            if spec.kind == DB_PARTITION:
                partition_db(self.relay, spec, record, self._stop)
            else:
                slow_db_link(self.relay, spec, record, self._stop)
        elif self.postgres is None:
            _skip(record, self.postgres_unavailable or "no PostgreSQL server of ours to act on")
        elif spec.kind == POSTGRES_RESTART:
            restart_postgres(self.postgres, record)
        else:
            pause_postgres(self.postgres, record, spec.duration_s, self._stop)

    def _wait_for_health(self, since_epoch: float) -> float | None:
        """Probe /healthz until it answers 200; return how long after ``since_epoch``."""
        deadline = since_epoch + RECOVERY_LIMIT_S
        while time.time() <= deadline:
            if probe_health(self.service.base_url) is None:
                return max(time.time() - since_epoch, 0.0)
            time.sleep(HEALTH_POLL_S)
        return None

    # -- the evidence -------------------------------------------------------------------------
    def evidence(self, records: Sequence[Any], run_start_epoch: float | None) -> dict[str, Any]:
        """Return faults.json: each fault with its recovery and cost, and the steady state."""
        start = run_start_epoch if run_start_epoch is not None else (self.anchor_epoch or 0.0)
        faults = [_fault_evidence(record, records, start) for record in self.records]
        windows = [
            (fault["start_s"], fault["window_until_s"])
            for fault in faults
            if fault["outcome"] != SKIPPED and fault["start_s"] is not None
        ]
        return {
            "schema_version": SCHEMA_VERSION,
            "anchor": self.anchor,
            "anchored_at": _iso(self.anchor_epoch),
            "run_started_at": _iso(run_start_epoch),
            "recovery_limit_s": RECOVERY_LIMIT_S,
            "faults": faults,
            "steady_state": steady_state(records, windows),
        }

    def write(self, folder: Path) -> Path | None:
        """Write faults.json into ``folder`` from the scenario's records; nothing without faults."""
        if not self.schedule:
            return None

        collected = collect(self.raw_dir) if self.raw_dir.is_dir() else None
        records = collected.records if collected else []
        start = collected.run_start_epoch if collected else None
        path = Path(folder) / FAULTS_FILE
        document = self.evidence(records, start)
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        return path


def _fault_evidence(record: FaultRecord, records: Sequence[Any], start: float) -> dict[str, Any]:
    started = None if record.started_epoch is None else record.started_epoch - start
    ended = None if record.ended_epoch is None else record.ended_epoch - start
    document: dict[str, Any] = {
        **{key: value for key, value in asdict(record).items() if not key.endswith("_epoch")},
        "started_at": _iso(record.started_epoch),
        "ended_at": _iso(record.ended_epoch),
        "start_s": _round(started),
        "end_s": _round(ended),
        "duration_s": None if started is None or ended is None else _round(ended - started),
        "recovery": None,
        "cost": None,
        "window_until_s": None,
        "excused_from": None,
        "excused_until": None,
    }
    if record.outcome == SKIPPED or started is None or ended is None:
        return document
    recovery = measure_recovery(
        records,
        FaultWindow(started, ended),
        healthz_back_after_s=record.healthz_back_after_s,
    )
    until = ended + (recovery.recovery_s if recovery.recovered else RECOVERY_LIMIT_S)
    document.update(
        recovery=recovery.to_json(),
        cost=fault_cost(records, started, until),
        window_until_s=_round(until),
        # Service events (healthz failures, restarts, 503s) within this stretch are the
        # fault's doing, not the service's failing: the verdict excuses them.
        excused_from=_iso(start + started - WATCH_SLACK_S),
        excused_until=_iso(start + until + WATCH_SLACK_S),
    )
    return document


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat(timespec="milliseconds")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def nemesis_for(
    scenario: str,
    profile: str,
    *,
    service: NemesisService,
    out_dir: Path,
    database_url: str,
    force: bool = False,
    relay: DbRelay | None = None,
    schedule: tuple[FaultSpec, ...] | None = None,
) -> Nemesis:
    """Return the nemesis of one scenario under a profile (one that does nothing without faults).

    ``schedule``: the run plan's, already read and checked; None reads the profile's.

    PostgreSQL faults act on the project's own cluster; on the server behind DATABASE_URL only
    with ``force`` (the commands refuse earlier, in one line; here they are skipped). The DB
    link faults act on ``relay``, the one the service reaches PostgreSQL through; a schedule
    with them and no relay raises NemesisConfigError.
    """
    if schedule is None:
        schedule = load_schedule(scenario, profile)
    refusal = relay_refusal(schedule, relay, f"[{scenario}.{profile}.nemesis]")
    if refusal:
        raise NemesisConfigError(refusal)
    postgres: PostgresServer | None = None
    unavailable = ""
    if any(spec.kind in POSTGRES_FAULTS for spec in schedule):
        if not os.environ.get("DATABASE_URL"):
            postgres = own_postgres()
        elif force:
            try:
                postgres = postgres_at(database_url)
            except Exception as error:  # a skip with its reason, not a failed scenario
                unavailable = f"cannot act on the server behind DATABASE_URL: {error}"
        else:
            unavailable = POSTGRES_REFUSED.format(target="")
    return Nemesis(
        schedule,
        service=service,
        raw_dir=out_dir / scenario / RAW_DIR,
        postgres=postgres,
        postgres_unavailable=unavailable,
        relay=relay,
    )
