"""Reservations/s of the service beside pgbench and beside the bare framework, with CPU shares.

    python benchmarks/service_throughput.py [--seconds 10] [--repeats 3] [--workers 2]
        [--pool-size 8] [--keyed] [--py-spy DIR] [--json PATH]

On one fresh throwaway cluster, for each strategy (serializable, for_update, atomic), three
parties side by side, repeated ``--repeats`` times and interleaved:

- pgbench: the anchors of ../shared/anchors/pgbench (50 clients, 2 threads, 55 hot
  authorizations among 100,000 inert rows, 5 units per reservation): PostgreSQL's ceiling;
- service: the service under the project's supervisor with ``--workers`` Hypercorn workers,
  driven by wrk (a C client, so the client's CPU hardly counts) with 50 connections reserving
  5 units on random hot authorizations, each with a token of the authorization's organization
  (``--keyed`` adds a unique Idempotency-Key to every request);
- floor: a minimal Quart route (benchmarks/floor_app.py) under the same supervisor, Hypercorn
  settings and client: parse the JSON body, answer JSON. The framework's own ceiling.

For each run the CPU seconds of each party are read from /proc (psutil): the service's
supervisor and workers, every PostgreSQL process of the cluster (exited backends included,
through the postmaster's children times) and the client (wrk or pgbench, from rusage), and
divided by the reservations committed. A script, not a test: nothing passes or fails on time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Run from a checkout without installing: the project root holds the packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jwt
import psutil
import psycopg

from faults.relay import DbRelay
from local_postgres import LocalCluster, create_marked_database
from local_postgres.cluster import find_bin_dir, url_for
from pipeline.service_process import ServiceProcess, start_service
from target.migrate import upgrade

# The anchors ship beside the project root, in shared/ (as on the CI machine).
ANCHORS_DIR = Path(
    os.environ.get(
        "PGBENCH_ANCHORS", Path(__file__).resolve().parents[2] / "shared" / "anchors" / "pgbench"
    )
)
ANCHOR_SCRIPTS = {
    "serializable": "s1_serializable.sql",
    "for_update": "s2_for_update.sql",
    "atomic": "s3_atomic_cte.sql",
}
STRATEGIES = tuple(ANCHOR_SCRIPTS)
DEFAULT_SECONDS = 10.0
DEFAULT_REPEATS = 3
DEFAULT_JSON = Path(__file__).resolve().parent.parent / ".loadtest" / "service_throughput.json"
CLIENTS = 50
PGBENCH_THREADS = 2
PGBENCH_MAX_TRIES = 10
UNITS = 5
HOT_AUTHORIZATIONS = 55
FILLER_AUTHORIZATIONS = 100_000
ORGANIZATIONS = 5
HUGE_BUDGET = 1_000_000_000
SERVICE_WORKERS = 2
SERVICE_POOL_SIZE = 8
WARMUP_S = 2.0
WRK_THREADS = 2
WRK_TIMEOUT_S = 10
FLOOR_APPS = {
    "floor": "benchmarks.floor_app:create_app()",
    "floor+sql": "benchmarks.floor_app:create_app_with_sql()",
}
RETRY_COUNTERS = {
    "service": "db_serialization_retries_total",
    "floor+sql": "floor_serialization_retries_total",
}
PARTIES = ("pgbench", "driver", "service", "floor+sql", "floor")
DRIVER_SCRIPT = Path(__file__).resolve().parent / "driver_alone.py"
PERCENTILES = (50, 95, 99)
BENCHMARK_JWT_SECRET = "benchmark-only-secret-of-32-bytes-or-more"
ANCHOR_DATABASE = "anchor"
SERVICE_DATABASE = "service"
SERVICE_CODE = "97153"


@dataclass(frozen=True)
class Measurement:
    """One timed run: reservations committed per second and their latency."""

    system: str  # "pgbench", "service" or "floor"
    strategy: str
    repeat: int
    duration_s: float
    reservations: int
    failures: int
    reservations_per_s: float
    latency_ms: dict[str, float]
    retries: int
    cpu_ms_per_reservation: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    shape: str = "statement"  # the service's TARGET_TRANSACTION_SHAPE (or the floor's)
    db_latency_ms: float = 0.0  # round trip the relay added between the party and PostgreSQL


def percentiles_ms(latencies_s: list[float]) -> dict[str, float]:
    """Return nearest-rank p50/p95/p99 of latencies in seconds, in milliseconds."""
    ordered = sorted(latencies_s)
    if not ordered:
        return {f"p{p}": float("nan") for p in PERCENTILES}
    return {
        f"p{p}": round(ordered[max(0, -(-p * len(ordered) // 100) - 1)] * 1000, 2)
        for p in PERCENTILES
    }


# -- setup ---------------------------------------------------------------------------------
def psql(bin_dir: Path, url: str, sql_file: Path) -> None:
    """Run an SQL file with psql, stopping at the first error."""
    subprocess.run(
        [str(bin_dir / "psql"), url, "-q", "-v", "ON_ERROR_STOP=1", "-f", str(sql_file)],
        check=True,
        capture_output=True,
    )


SERVICE_SEED_SQL = f"""
TRUNCATE unit_transactions, authorizations, practitioners, patients, organizations,
    service_codes CASCADE;
INSERT INTO service_codes (code, description) VALUES ('{SERVICE_CODE}', 'Benchmark');
INSERT INTO organizations (id, name)
    SELECT gen_random_uuid(), 'Org ' || g FROM generate_series(1, {ORGANIZATIONS}) g;
INSERT INTO patients (id, organization_id, first_name, last_name, date_of_birth, member_id)
    SELECT gen_random_uuid(), id, 'Bench', 'Patient', '2015-01-01', 'M1'
    FROM organizations;
INSERT INTO practitioners (id, organization_id, email, full_name, role, password_hash)
    SELECT gen_random_uuid(), id, md5(id::text) || '@bench.test', 'Bench', 'bcba', '!'
    FROM organizations;
INSERT INTO authorizations (id, organization_id, patient_id, service_code, total_units,
        start_date, end_date, status)
    SELECT gen_random_uuid(), p.organization_id, p.id, '{SERVICE_CODE}', {HUGE_BUDGET},
        CURRENT_DATE - 30, CURRENT_DATE + 365, 'active'
    FROM generate_series(1, {HOT_AUTHORIZATIONS}) g
    JOIN (SELECT id, organization_id, row_number() OVER (ORDER BY id) - 1 AS n FROM patients) p
        ON p.n = g % {ORGANIZATIONS};
-- Inert rows so the planner uses the primary-key index, as on a production-sized table.
INSERT INTO authorizations (id, organization_id, patient_id, service_code, total_units,
        start_date, end_date, status)
    SELECT gen_random_uuid(), p.organization_id, p.id, '{SERVICE_CODE}', 0,
        CURRENT_DATE - 400, CURRENT_DATE - 35, 'closed'
    FROM generate_series(1, {FILLER_AUTHORIZATIONS}) g
    CROSS JOIN (SELECT id, organization_id FROM patients ORDER BY id LIMIT 1) p;
"""
SERVICE_RESET_SQL = (
    "TRUNCATE unit_transactions, idempotency_keys; "
    "UPDATE authorizations SET scheduled_units = 0, used_units = 0 WHERE status = 'active';"
)


def maintain(url: str) -> None:
    """Vacuum, analyze and checkpoint, so every run starts from the same clean state."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE authorizations")
        conn.execute("VACUUM ANALYZE unit_transactions")
        conn.execute("VACUUM ANALYZE idempotency_keys")
        conn.execute("CHECKPOINT")


def seed_service_database(url: str) -> None:
    """Fill the migrated service database with the benchmark's authorizations."""
    with psycopg.connect(url) as conn:
        conn.execute(SERVICE_SEED_SQL)
    maintain(url)


def reset_service_database(url: str) -> None:
    """Empty the ledger and the counters between runs."""
    with psycopg.connect(url) as conn:
        conn.execute(SERVICE_RESET_SQL)
    maintain(url)


def service_targets(url: str) -> list[tuple[str, dict[str, str]]]:
    """Return each hot authorization with headers carrying a token of its organization."""
    now = int(time.time())
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.id, a.organization_id, p.id FROM authorizations a "
            "JOIN practitioners p ON p.organization_id = a.organization_id "
            "WHERE a.status = 'active' ORDER BY a.id"
        ).fetchall()
    targets = []
    for authorization_id, organization_id, practitioner_id in rows:
        claims = {
            "sub": str(practitioner_id),
            "org": str(organization_id),
            "role": "bcba",
            "iat": now,
            "exp": now + 24 * 3600,
        }
        token = jwt.encode(claims, BENCHMARK_JWT_SECRET, algorithm="HS256")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        targets.append((str(authorization_id), headers))
    return targets


# -- pgbench -------------------------------------------------------------------------------
def run_pgbench(
    bin_dir: Path,
    url: str,
    strategy: str,
    seconds: float,
    repeat: int,
    log_dir: Path,
    postgres: PostgresCpu,
) -> Measurement:
    """Reseed the anchor database and run one strategy's pgbench script."""
    psql(bin_dir, url, ANCHORS_DIR / "seed_big_sparse.sql")
    prefix = log_dir / f"{strategy}-{repeat}"
    command = [
        str(bin_dir / "pgbench"), url, "-n", "-M", "prepared",
        "-j", str(PGBENCH_THREADS), "-c", str(CLIENTS), "-T", str(round(seconds)),
        f"--max-tries={PGBENCH_MAX_TRIES}", "--failures-detailed",
        "-D", "lo=1", "-D", f"hi={HOT_AUTHORIZATIONS}", "-D", f"units={UNITS}",
        "-l", f"--log-prefix={prefix}", "-f", str(ANCHORS_DIR / ANCHOR_SCRIPTS[strategy]),
    ]  # fmt: skip
    postgres_before, client_before = postgres.cpu_s(), children_cpu_s()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu_s = {
        "postgres": postgres.cpu_s() - postgres_before,
        "client": children_cpu_s() - client_before,
    }
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed: {(result.stderr or result.stdout).strip()}")
    measurement = summarise_pgbench_log(str(prefix), strategy, repeat, result.stdout)
    measurement.cpu_ms_per_reservation.update(per_reservation_ms(cpu_s, measurement.reservations))
    return measurement


def summarise_pgbench_log(prefix: str, strategy: str, repeat: int, stdout: str) -> Measurement:
    """Read pgbench's per-transaction logs (-l) the way the anchors' pct.py does."""
    # pg15 with --max-tries: client tx_no latency_us|failed|... script_no epoch_s epoch_us retries
    rows = []
    for path in glob.glob(prefix + ".[0-9]*"):
        with open(path) as log:
            for line in log:
                parts = line.split()
                finished = int(parts[4]) + int(parts[5]) / 1e6
                retries = int(parts[6]) if len(parts) > 6 else 0
                rows.append((finished, parts[2], retries))
    if not rows:
        raise RuntimeError(f"pgbench wrote no transaction log at {prefix}")
    started = min(row[0] for row in rows)
    ended = max(row[0] for row in rows)
    latencies_s = [int(row[1]) / 1e6 for row in rows if row[1].isdigit()]
    failures = sum(1 for row in rows if not row[1].isdigit())
    duration = ended - started
    reported = re.search(r"tps = ([\d.]+) \(without initial", stdout)
    return Measurement(
        system="pgbench",
        strategy=strategy,
        repeat=repeat,
        duration_s=round(duration, 3),
        reservations=len(latencies_s),
        failures=failures,
        reservations_per_s=round(len(latencies_s) / duration, 1),
        latency_ms=percentiles_ms(latencies_s),
        retries=sum(row[2] for row in rows),
        details={"pgbench_reported_tps": float(reported[1]) if reported else None},
    )


# -- CPU accounting ------------------------------------------------------------------------
def children_cpu_s() -> float:
    """Return the CPU seconds of this process's reaped children (the clients: wrk, pgbench)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tree_cpu_s(pid: int) -> float:
    """Return the CPU seconds of a live process and its live descendants."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


@dataclass(frozen=True)
class PostgresCpu:
    """Every PostgreSQL process of one cluster, exited backends included."""

    postmaster_pid: int

    @classmethod
    def of_cluster(cls, data_dir: Path) -> PostgresCpu:
        return cls(int((data_dir / "postmaster.pid").read_text().splitlines()[0]))

    def cpu_s(self) -> float:
        # A backend that exits is reaped by the postmaster and moves into its children times.
        postmaster = psutil.Process(self.postmaster_pid)
        times = postmaster.cpu_times()
        return tree_cpu_s(self.postmaster_pid) + times.children_user + times.children_system


def per_reservation_ms(cpu_s: dict[str, float], reservations: int) -> dict[str, float]:
    """Turn CPU seconds per party into CPU milliseconds per committed reservation."""
    if reservations <= 0:
        return {party: float("nan") for party in cpu_s}
    return {party: round(seconds * 1000 / reservations, 3) for party, seconds in cpu_s.items()}


# -- wrk -----------------------------------------------------------------------------------
WRK_SCRIPT = """
local targets = {%(targets)s}
local body = '{"units": %(units)d}'
local keyed = %(keyed)s
local counter = 0
local prefix = ""

function setup(thread)
  setup_count = (setup_count or 0) + 1
  thread:set("thread_id", setup_count)
end

function init(args)
  prefix = (args[1] or "run") .. "-" .. tostring(thread_id)
  math.randomseed(os.time() + (thread_id or 0))
end

function request()
  local target = targets[math.random(#targets)]
  local headers = {["Authorization"] = target[2], ["Content-Type"] = "application/json"}
  if keyed then
    counter = counter + 1
    headers["Idempotency-Key"] = prefix .. "-" .. counter
  end
  return wrk.format("POST", target[1], headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %%d, "duration_us": %%d, "non_2xx": %%d, "socket_errors": %%d, '
    .. '"timeouts": %%d, "p50_us": %%d, "p95_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write,
    e.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def write_wrk_script(path: Path, targets: list[tuple[str, str]], keyed: bool) -> Path:
    """Write the Lua script: random hot authorizations, each with its organization's token."""
    entries = ",".join(f'{{"{route}", "{token}"}}' for route, token in targets)
    path.write_text(
        WRK_SCRIPT % {"targets": entries, "units": UNITS, "keyed": "true" if keyed else "false"}
    )
    return path


def run_wrk(base_url: str, script: Path, seconds: float, run_id: str) -> dict[str, Any]:
    """Run wrk with ``CLIENTS`` connections; return its summary line as a dict."""
    command = [
        "wrk", f"-t{WRK_THREADS}", f"-c{CLIENTS}", f"-d{max(1, round(seconds))}s",
        f"--timeout={WRK_TIMEOUT_S}s", "-s", str(script), base_url, "--", run_id,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    match = re.search(r"^WRK (\{.*\})$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed: {(result.stderr or result.stdout).strip()}")
    return json.loads(match[1])


def http_targets(url: str) -> list[tuple[str, str]]:
    """Return (reserve path, Authorization header value) for every hot authorization."""
    return [
        (f"/api/authorizations/{authorization_id}/reserve", headers["Authorization"])
        for authorization_id, headers in service_targets(url)
    ]


def scrape_counter(base_url: str, name: str) -> float:
    """Read one unlabelled counter from the service's /metrics."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def ledger_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM unit_transactions").fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class HttpRun:
    """How to run one HTTP party."""

    system: str  # "service", "floor+sql" or "floor"
    strategy: str
    repeat: int
    workers: int
    pool_size: int
    keyed: bool
    shape: str = "statement"
    isolation: str | None = None  # None: the strategy's own level
    db_latency_ms: float = 0.0


def relay_cpu_s(relay: DbRelay | None) -> float:
    """Return the relay process's CPU seconds so far (0 without a relay)."""
    if relay is None or relay.pid is None:
        return 0.0
    times = psutil.Process(relay.pid).cpu_times()
    return times.user + times.system


def run_http(
    run: HttpRun,
    url: str,
    seconds: float,
    log_dir: Path,
    postgres: PostgresCpu,
    py_spy_dir: Path | None,
    relay: DbRelay | None = None,
) -> Measurement:
    """Serve the service (or the floor) and drive it with wrk: warm-up, then a counted run.

    With a ``relay`` the service reaches PostgreSQL through it; the relay's CPU is counted.
    """
    reset_service_database(url)
    targets = http_targets(url)
    script = write_wrk_script(log_dir / f"{run.system}.lua", targets, run.keyed)
    tag = f"{run.system}-{run.shape}-{run.strategy}-{run.db_latency_ms:g}ms-{run.repeat}"
    env = {
        "JWT_SECRET": BENCHMARK_JWT_SECRET,
        "TARGET_POOL_SIZE": str(run.pool_size),
        "TARGET_TRANSACTION_SHAPE": run.shape,
        **({"TARGET_ISOLATION": run.isolation} if run.isolation else {}),
    }
    with start_service(
        relay.url_for(url) if relay else url,
        strategy=run.strategy,
        workers=run.workers,
        env=env,
        log_path=log_dir / f"{tag}.log",
        app_path=FLOOR_APPS.get(run.system),
    ) as service:
        run_wrk(service.base_url, script, WARMUP_S, f"{tag}-warmup")
        # The service and floor+sql count their retries on /metrics; the bare floor has none.
        is_service = run.system in RETRY_COUNTERS
        writes = run.system in ("service", "floor+sql")
        retries_counter = RETRY_COUNTERS.get(run.system, "")
        retries_before = scrape_counter(service.base_url, retries_counter) if is_service else 0
        rows_before = ledger_rows(url)
        profilers = start_profilers(service, py_spy_dir, tag) if py_spy_dir else []
        cpu_before = {
            "service": tree_cpu_s(service.pid),
            "postgres": postgres.cpu_s(),
            "client": children_cpu_s(),
            "relay": relay_cpu_s(relay),
        }
        summary = run_wrk(service.base_url, script, seconds, tag)
        cpu_s = {
            "service": tree_cpu_s(service.pid) - cpu_before["service"],
            "postgres": postgres.cpu_s() - cpu_before["postgres"],
            "client": children_cpu_s() - cpu_before["client"],
        }
        if relay is not None:
            cpu_s["relay"] = relay_cpu_s(relay) - cpu_before["relay"]
        stop_profilers(profilers)
        retries = (
            scrape_counter(service.base_url, retries_counter) - retries_before if is_service else 0
        )
    duration_s = summary["duration_us"] / 1e6
    answered_ok = summary["requests"] - summary["non_2xx"] - summary["socket_errors"]
    committed = ledger_rows(url) - rows_before if writes else answered_ok
    reservations = min(answered_ok, committed) if writes else answered_ok
    return Measurement(
        system=run.system,
        strategy=run.strategy,
        repeat=run.repeat,
        duration_s=round(duration_s, 3),
        reservations=reservations,
        failures=summary["non_2xx"] + summary["socket_errors"],
        reservations_per_s=round(reservations / duration_s, 1),
        latency_ms={
            "p50": summary["p50_us"] / 1000,
            "p95": summary["p95_us"] / 1000,
            "p99": summary["p99_us"] / 1000,
        },
        retries=int(retries),
        cpu_ms_per_reservation=per_reservation_ms(cpu_s, reservations),
        details={
            "wrk": summary,
            "ledger_rows": committed if writes else None,
            "workers": run.workers,
            "pool_size": run.pool_size,
            "keyed": run.keyed,
            "isolation": run.isolation,
            "cpu_s": {party: round(value, 3) for party, value in cpu_s.items()},
        },
        shape=run.shape,
        db_latency_ms=run.db_latency_ms,
    )


@dataclass(frozen=True)
class DriverRun:
    """How to run the bare-psycopg floor (benchmarks/driver_alone.py)."""

    strategy: str
    repeat: int
    workers: int
    pool_size: int
    shape: str = "statement"
    keyed: bool = False
    isolation: str | None = None
    db_latency_ms: float = 0.0


def run_driver(
    url: str,
    strategy: str,
    seconds: float,
    repeat: int,
    workers: int,
    pool_size: int,
    postgres: PostgresCpu,
) -> Measurement:
    """Run the service's statement from bare psycopg: one process per worker, its pool size."""
    return run_driver_as(DriverRun(strategy, repeat, workers, pool_size), url, seconds, postgres)


def run_driver_as(
    run: DriverRun,
    url: str,
    seconds: float,
    postgres: PostgresCpu,
    relay: DbRelay | None = None,
    py_spy_dir: Path | None = None,
) -> Measurement:
    """Run the bare-psycopg floor of ``run.shape``: one process per worker, its pool size each.

    With a ``relay`` the processes reach PostgreSQL through it; the relay's CPU is counted.
    """
    reset_service_database(url)
    command = [
        sys.executable,
        str(DRIVER_SCRIPT),
        relay.url_for(url) if relay else url,
        run.strategy,
        "--shape",
        run.shape,
        *(["--keyed"] if run.keyed else []),
        *(["--isolation", run.isolation] if run.isolation else []),
    ]
    # A short run first, as the service gets its warm-up: connections, plans, caches.
    subprocess.run([*command, str(WARMUP_S), str(run.pool_size)], check=True, capture_output=True)
    rows_before = ledger_rows(url)
    postgres_before, relay_before = postgres.cpu_s(), relay_cpu_s(relay)
    processes = [
        subprocess.Popen(
            [*command, str(seconds), str(run.pool_size)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(run.workers)
    ]
    tag = f"driver-{run.shape}-{run.strategy}-{run.db_latency_ms:g}ms-{run.repeat}"
    profilers = (
        start_profilers_for([p.pid for p in processes], py_spy_dir, tag) if py_spy_dir else []
    )
    outputs = [json.loads(process.communicate()[0]) for process in processes]
    postgres_cpu = postgres.cpu_s() - postgres_before
    cpu_s = {"driver": sum(output["cpu_s"] for output in outputs), "postgres": postgres_cpu}
    if relay is not None:
        cpu_s["relay"] = relay_cpu_s(relay) - relay_before
    stop_profilers(profilers)
    duration_s = max(output["seconds"] for output in outputs)
    reservations = sum(output["reservations"] for output in outputs)
    # Latency: each process's percentile, the median over processes (they run alike).
    latency = {
        key: statistics.median(output["latency_ms"][key] for output in outputs)
        for key in outputs[0]["latency_ms"]
    }
    return Measurement(
        system="driver",
        strategy=run.strategy,
        repeat=run.repeat,
        duration_s=round(duration_s, 3),
        reservations=reservations,
        failures=sum(output["failures"] for output in outputs),
        reservations_per_s=round(reservations / duration_s, 1),
        latency_ms=latency,
        retries=sum(output["retries"] for output in outputs),
        cpu_ms_per_reservation=per_reservation_ms(cpu_s, reservations),
        details={
            "workers": run.workers,
            "connections_each": run.pool_size,
            "keyed": run.keyed,
            "isolation": run.isolation,
            "ledger_rows": ledger_rows(url) - rows_before,
        },
        shape=run.shape,
        db_latency_ms=run.db_latency_ms,
    )


def start_profilers(service: ServiceProcess, out_dir: Path, tag: str) -> list[subprocess.Popen]:
    """Record each worker with py-spy (raw collapsed stacks) while the counted run lasts."""
    return start_profilers_for(service.worker_pids(), out_dir, tag)


def start_profilers_for(pids: list[int], out_dir: Path, tag: str) -> list[subprocess.Popen]:
    """Record each process with py-spy (raw collapsed stacks) until stop_profilers."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                "200",
                "--nonblocking",
                "--output",
                str(out_dir / f"{tag}-worker{index}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index, pid in enumerate(pids)
    ]


def stop_profilers(profilers: list[subprocess.Popen]) -> None:
    for profiler in profilers:
        profiler.send_signal(2)  # SIGINT: py-spy writes its file and exits
    for profiler in profilers:
        profiler.wait(timeout=30)


@contextlib.contextmanager
def seeded_service_cluster(workdir: Path) -> Iterator[tuple[str, PostgresCpu]]:
    """Start a throwaway cluster with a migrated, seeded service database; yield its URL."""
    cluster = LocalCluster(workdir / "pg")
    try:
        info = cluster.up()
        create_marked_database(url_for(info.port, "postgres"), SERVICE_DATABASE)
        url = url_for(info.port, SERVICE_DATABASE)
        upgrade(url)
        seed_service_database(url)
        yield url, PostgresCpu.of_cluster(cluster.data_dir)
    finally:
        cluster.destroy()


# -- the whole run -------------------------------------------------------------------------
def measure(
    seconds: float,
    repeats: int,
    workers: int,
    pool_size: int,
    keyed: bool,
    py_spy_dir: Path | None,
) -> list[Measurement]:
    """Run pgbench, the service and the floor per strategy, ``repeats`` times interleaved."""
    workdir = Path(tempfile.mkdtemp(prefix="service-bench-"))
    cluster = LocalCluster(workdir / "pg")
    bin_dir = find_bin_dir()
    measurements = []
    try:
        info = cluster.up()
        postgres = PostgresCpu.of_cluster(cluster.data_dir)
        admin_url = url_for(info.port, "postgres")
        for name in (ANCHOR_DATABASE, SERVICE_DATABASE):
            create_marked_database(admin_url, name)
        anchor_url = url_for(info.port, ANCHOR_DATABASE)
        service_url = url_for(info.port, SERVICE_DATABASE)
        psql(bin_dir, anchor_url, ANCHORS_DIR / "schema.sql")
        upgrade(service_url)
        seed_service_database(service_url)
        for repeat in range(1, repeats + 1):
            for strategy in STRATEGIES:
                profile_dir = py_spy_dir if repeat == 1 else None
                http = {
                    system: HttpRun(system, strategy, repeat, workers, pool_size, keyed)
                    for system in ("service", "floor+sql", "floor")
                }
                for measurement in (
                    run_pgbench(bin_dir, anchor_url, strategy, seconds, repeat, workdir, postgres),
                    run_driver(
                        service_url, strategy, seconds, repeat, workers, pool_size, postgres
                    ),
                    run_http(http["service"], service_url, seconds, workdir, postgres, profile_dir),
                    run_http(http["floor+sql"], service_url, seconds, workdir, postgres, None),
                    run_http(http["floor"], service_url, seconds, workdir, postgres, None),
                ):
                    measurements.append(measurement)
                    cpu = measurement.cpu_ms_per_reservation
                    print(
                        f"repeat {repeat}/{repeats} {strategy:12} {measurement.system:8} "
                        f"{measurement.reservations_per_s:8.0f}/s p95 "
                        f"{measurement.latency_ms['p95']} ms failures {measurement.failures} "
                        f"cpu ms/res {cpu}",
                        file=sys.stderr,
                    )
    finally:
        cluster.destroy()
    return measurements


def summarise(measurements: list[Measurement]) -> list[dict[str, Any]]:
    """Return per-strategy medians of each party and the service's shares of the others."""
    rows = []
    for strategy in STRATEGIES:
        row: dict[str, Any] = {"strategy": strategy}
        for system in PARTIES:
            runs = [m for m in measurements if m.strategy == strategy and m.system == system]
            parties = sorted({party for m in runs for party in m.cpu_ms_per_reservation})
            row[system] = {
                "reservations_per_s": statistics.median(m.reservations_per_s for m in runs),
                "min_per_s": min(m.reservations_per_s for m in runs),
                "max_per_s": max(m.reservations_per_s for m in runs),
                **{
                    key: statistics.median(m.latency_ms[key] for m in runs)
                    for key in runs[0].latency_ms
                },
                "failures": sum(m.failures for m in runs),
                "retries": sum(m.retries for m in runs),
                "reservations": sum(m.reservations for m in runs),
                "cpu_ms_per_reservation": {
                    party: round(
                        statistics.median(m.cpu_ms_per_reservation[party] for m in runs), 3
                    )
                    for party in parties
                },
            }
        service = row["service"]["reservations_per_s"]
        row["service_share_of_pgbench"] = round(service / row["pgbench"]["reservations_per_s"], 3)
        row["service_share_of_floor"] = round(service / row["floor"]["reservations_per_s"], 3)
        row["service_share_of_driver"] = round(service / row["driver"]["reservations_per_s"], 3)
        row["service_share_of_floor_sql"] = round(
            service / row["floor+sql"]["reservations_per_s"], 3
        )
        rows.append(row)
    return rows


def render_table(rows: list[dict[str, Any]]) -> str:
    """Render the medians as Markdown: throughput and latency, then CPU per reservation."""
    lines = [
        "| strategy | party | res/s (min-max) | p50 / p95 / p99 ms | service / party |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        shares = {
            "pgbench": row["service_share_of_pgbench"],
            "floor": row["service_share_of_floor"],
            "driver": row["service_share_of_driver"],
            "floor+sql": row["service_share_of_floor_sql"],
        }
        for system in PARTIES:
            party = row[system]
            share = f"{shares[system]:.0%}" if system in shares else ""
            lines.append(
                f"| {row['strategy']} | {system} | {party['reservations_per_s']:,.0f} "
                f"({party['min_per_s']:,.0f}-{party['max_per_s']:,.0f}) "
                f"| {party['p50']:.1f} / {party['p95']:.1f} / {party['p99']:.1f} | {share} |"
            )
    lines += [
        "",
        "| strategy | party | CPU ms per reservation: service / driver / PostgreSQL / client |",
        "|---|---|---:|",
    ]
    for row in rows:
        for system in PARTIES:
            cpu = row[system]["cpu_ms_per_reservation"]
            figures = " / ".join(
                f"{cpu[party]:.3f}" if party in cpu else "-"
                for party in ("service", "driver", "postgres", "client")
            )
            lines.append(f"| {row['strategy']} | {system} | {figures} |")
    return "\n".join(lines)


# -- the transaction shapes (--shapes) -----------------------------------------------------
SHAPES = ("statement", "interactive")
SHAPES_STRATEGY = "serializable"
SHAPES_ISOLATION = "serializable"
SHAPES_DB_LATENCIES_MS = (0.0, 1.0)
# (system, also through the relay): the service, its bare-psycopg floor (same round trips,
# no service code, no HTTP), the framework with the same round trips (floor+sql) and the
# framework alone (floor, no database, one shape is enough).
SHAPES_PARTIES = ("service", "driver", "floor+sql", "floor")


def measure_shapes(
    seconds: float,
    repeats: int,
    workers: int,
    pool_size: int,
    latencies_ms: tuple[float, ...],
    py_spy_dir: Path | None,
) -> list[Measurement]:
    """Run each shape at serializable beside its floors, at each added DB round trip.

    Keyed (a unique Idempotency-Key per request), as the team's clients send. Repeats are
    interleaved and the order of the shapes alternates; with ``py_spy_dir`` an extra repeat 0
    (not counted) records the service's workers and the floors under py-spy.
    """
    workdir = Path(tempfile.mkdtemp(prefix="service-shapes-"))
    measurements: list[Measurement] = []
    with seeded_service_cluster(workdir) as (url, postgres):
        if py_spy_dir is not None:
            profile_shapes(url, seconds, workers, pool_size, workdir, postgres, py_spy_dir)
        for repeat in range(1, repeats + 1):
            shapes = SHAPES if repeat % 2 else SHAPES[::-1]
            for latency_ms in latencies_ms:
                with relay_for(url, latency_ms) as relay:
                    for shape in shapes:
                        http = HttpRun(
                            "service", SHAPES_STRATEGY, repeat, workers, pool_size, True,
                            shape, SHAPES_ISOLATION, latency_ms,
                        )  # fmt: skip
                        driver = DriverRun(
                            SHAPES_STRATEGY, repeat, workers, pool_size, shape, True,
                            SHAPES_ISOLATION, latency_ms,
                        )  # fmt: skip
                        progress = (repeat, repeats)
                        measurements += [
                            report_progress(
                                run_http(http, url, seconds, workdir, postgres, None, relay),
                                *progress,
                            ),
                            report_progress(
                                run_driver_as(driver, url, seconds, postgres, relay), *progress
                            ),
                        ]
                        if latency_ms == 0:
                            floor_sql = dataclasses.replace(http, system="floor+sql")
                            measurement = run_http(floor_sql, url, seconds, workdir, postgres, None)
                            measurements.append(report_progress(measurement, *progress))
                if latency_ms == 0:
                    floor = HttpRun("floor", SHAPES_STRATEGY, repeat, workers, pool_size, True)
                    measurement = run_http(floor, url, seconds, workdir, postgres, None)
                    measurements.append(report_progress(measurement, repeat, repeats))
    return measurements


def profile_shapes(
    url: str,
    seconds: float,
    workers: int,
    pool_size: int,
    workdir: Path,
    postgres: PostgresCpu,
    py_spy_dir: Path,
) -> None:
    """Record each shape's service workers, floor+sql workers and driver processes (0 ms)."""
    for shape in SHAPES:
        http = HttpRun(
            "service", SHAPES_STRATEGY, 0, workers, pool_size, True, shape, SHAPES_ISOLATION
        )
        for run in (http, dataclasses.replace(http, system="floor+sql")):
            cpu = run_http(run, url, seconds, workdir, postgres, py_spy_dir).cpu_ms_per_reservation
            print(f"profiled {run.system} {shape}: cpu ms per reservation {cpu}", file=sys.stderr)
        driver = DriverRun(SHAPES_STRATEGY, 0, workers, pool_size, shape, True, SHAPES_ISOLATION)
        cpu = run_driver_as(driver, url, seconds, postgres, None, py_spy_dir)
        print(f"profiled driver {shape}: {cpu.cpu_ms_per_reservation}", file=sys.stderr)


@contextlib.contextmanager
def relay_for(url: str, latency_ms: float) -> Iterator[DbRelay | None]:
    """Yield a relay adding ``latency_ms`` of round trip to PostgreSQL; None (direct) at 0."""
    if latency_ms == 0:
        yield None
        return
    with DbRelay.for_url(url, added_rtt_ms=latency_ms) as relay:
        yield relay


def report_progress(measurement: Measurement, repeat: int, repeats: int) -> Measurement:
    cpu = measurement.cpu_ms_per_reservation
    print(
        f"repeat {repeat}/{repeats} {measurement.shape:11} {measurement.db_latency_ms:g} ms "
        f"{measurement.system:9} {measurement.reservations_per_s:7.0f}/s "
        f"retries {measurement.retries} failures {measurement.failures} "
        f"p50/p95 {measurement.latency_ms['p50']}/{measurement.latency_ms['p95']} ms "
        f"cpu ms/res {cpu}",
        file=sys.stderr,
    )
    return measurement


def shape_key(measurement: Measurement) -> tuple[str, str, float]:
    # The framework floor touches no database: the same whatever the shape.
    shape = "-" if measurement.system == "floor" else measurement.shape
    return measurement.system, shape, measurement.db_latency_ms


def attempts(measurement: Measurement) -> int:
    """Return the transactions tried: each operation once, plus every retry.

    An operation given up after the retry budget (a failure) counts its last attempt here and
    the others among the retries.
    """
    return max(1, measurement.reservations + measurement.failures + measurement.retries)


def python_cpu_ms(measurement: Measurement) -> float:
    """Return the Python side's CPU ms per committed operation (service, floor or driver)."""
    cpu = measurement.cpu_ms_per_reservation
    return cpu.get("service", cpu.get("driver", float("nan")))


def summarise_shapes(measurements: list[Measurement]) -> dict[str, Any]:
    """Return medians per (party, shape, added RTT) and per-repeat ratios' medians."""
    groups: dict[tuple[str, str, float], list[Measurement]] = {}
    for measurement in measurements:
        groups.setdefault(shape_key(measurement), []).append(measurement)
    rows = []
    for (system, shape, latency_ms), runs in groups.items():
        parties = sorted({party for m in runs for party in m.cpu_ms_per_reservation})
        rows.append(
            {
                "system": system,
                "shape": shape,
                "db_latency_ms": latency_ms,
                "runs": len(runs),
                "committed_per_s": statistics.median(m.reservations_per_s for m in runs),
                "min_per_s": min(m.reservations_per_s for m in runs),
                "max_per_s": max(m.reservations_per_s for m in runs),
                "retries_per_committed": round(
                    statistics.median(m.retries / max(1, m.reservations) for m in runs), 3
                ),
                "failures": sum(m.failures for m in runs),
                "attempts_per_committed": round(
                    statistics.median(attempts(m) / max(1, m.reservations) for m in runs), 3
                ),
                "python_cpu_ms_per_attempt": round(
                    statistics.median(
                        python_cpu_ms(m) * m.reservations / attempts(m) for m in runs
                    ),
                    3,
                ),
                **{
                    key: statistics.median(m.latency_ms[key] for m in runs)
                    for key in ("p50", "p95", "p99")
                },
                "cpu_ms_per_committed": {
                    party: round(
                        statistics.median(m.cpu_ms_per_reservation[party] for m in runs), 3
                    )
                    for party in parties
                },
            }
        )
    by_repeat = {(shape_key(m), m.repeat): m for m in measurements}
    repeats = sorted({m.repeat for m in measurements})

    def ratio(numerator: tuple[str, str, float], denominator: tuple[str, str, float]) -> Any:
        values = [
            by_repeat[numerator, r].reservations_per_s
            / by_repeat[denominator, r].reservations_per_s
            for r in repeats
            if (numerator, r) in by_repeat and (denominator, r) in by_repeat
        ]
        if not values:
            return None
        return {
            "median": round(statistics.median(values), 3),
            "each": [round(v, 3) for v in values],
        }

    ratios = {}
    latencies = sorted({m.db_latency_ms for m in measurements})
    for shape in SHAPES:
        for latency_ms in latencies:
            ratios[f"{shape} {latency_ms:g} ms: service / driver"] = ratio(
                ("service", shape, latency_ms), ("driver", shape, latency_ms)
            )
        ratios[f"{shape} 0 ms: service / floor+sql"] = ratio(
            ("service", shape, 0.0), ("floor+sql", shape, 0.0)
        )
        ratios[f"{shape} 0 ms: floor+sql / driver"] = ratio(
            ("floor+sql", shape, 0.0), ("driver", shape, 0.0)
        )
        for system in ("service", "driver"):
            for latency_ms in latencies[1:]:
                ratios[f"{shape} {system}: {latency_ms:g} ms / 0 ms"] = ratio(
                    (system, shape, latency_ms), (system, shape, 0.0)
                )
    for latency_ms in latencies:
        ratios[f"service {latency_ms:g} ms: interactive / statement"] = ratio(
            ("service", "interactive", latency_ms), ("service", "statement", latency_ms)
        )
    return {"rows": rows, "ratios": {k: v for k, v in ratios.items() if v is not None}}


def render_shapes(summary: dict[str, Any]) -> str:
    """Render the shapes' medians and ratios as Markdown."""
    lines = [
        "| shape | added RTT | party | committed/s (min-max) | retries / committed | failed "
        "| p50 / p95 / p99 ms | CPU ms / committed: Python / PostgreSQL / relay / wrk "
        "| Python CPU ms / attempt |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(
        summary["rows"],
        key=lambda r: (r["shape"], r["db_latency_ms"], SHAPES_PARTIES.index(r["system"])),
    ):
        cpu = row["cpu_ms_per_committed"]
        python = cpu.get("service", cpu.get("driver", float("nan")))
        figures = " / ".join(
            f"{value:.3f}" if value is not None else "-"
            for value in (python, cpu.get("postgres"), cpu.get("relay"), cpu.get("client"))
        )
        lines.append(
            f"| {row['shape']} | {row['db_latency_ms']:g} ms | {row['system']} "
            f"| {row['committed_per_s']:,.0f} ({row['min_per_s']:,.0f}-{row['max_per_s']:,.0f}) "
            f"| {row['retries_per_committed']:.3f} | {row['failures']} "
            f"| {row['p50']:.1f} / {row['p95']:.1f} / {row['p99']:.1f} | {figures} "
            f"| {row['python_cpu_ms_per_attempt']:.3f} |"
        )
    lines += ["", "| ratio of committed/s, same repeat | median | each repeat |", "|---|---:|---|"]
    for name, value in summary["ratios"].items():
        each = ", ".join(f"{v:.2f}" for v in value["each"])
        lines.append(f"| {name} | {value['median']:.0%} | {each} |")
    return "\n".join(lines)


def main_shapes(args: argparse.Namespace) -> None:
    """Run --shapes: measure, print the tables, write the JSON."""
    load_before = os.getloadavg()
    measurements = measure_shapes(
        args.seconds,
        args.repeats,
        args.workers,
        args.pool_size,
        tuple(args.db_latencies_ms),
        args.py_spy,
    )
    summary = summarise_shapes(measurements)
    print(render_shapes(summary))
    path = (
        args.json.with_name(args.json.stem + "_shapes.json")
        if args.json == DEFAULT_JSON
        else args.json
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "load_average_before": load_before,
                    "load_average_after": os.getloadavg(),
                    "python": platform.python_version(),
                },
                "config": {
                    "seconds": args.seconds,
                    "repeats": args.repeats,
                    "clients": CLIENTS,
                    "units": UNITS,
                    "strategy": SHAPES_STRATEGY,
                    "isolation": SHAPES_ISOLATION,
                    "keyed": True,
                    "service_workers": args.workers,
                    "pool_size": args.pool_size,
                    "db_latencies_ms": args.db_latencies_ms,
                },
                "summary": summary,
                "runs": [asdict(m) for m in measurements],
            },
            indent=2,
        )
    )
    print(f"wrote {path}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--workers", type=int, default=SERVICE_WORKERS)
    parser.add_argument("--pool-size", type=int, default=SERVICE_POOL_SIZE)
    parser.add_argument("--keyed", action="store_true", help="send a unique Idempotency-Key")
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="record each worker in repeat 1 to here (--shapes: in an extra, uncounted repeat 0)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument(
        "--shapes",
        action="store_true",
        help="compare the transaction shapes at serializable, keyed, beside their floors",
    )
    parser.add_argument(
        "--db-latencies-ms",
        type=float,
        nargs="+",
        default=list(SHAPES_DB_LATENCIES_MS),
        help="with --shapes: added DB round trips to run at (0: direct)",
    )
    args = parser.parse_args()
    if args.seconds < 1 or args.repeats < 1 or args.workers < 1 or args.pool_size < 1:
        parser.error("--seconds, --repeats, --workers and --pool-size must be at least 1")
    if args.shapes:
        if 0 not in args.db_latencies_ms or min(args.db_latencies_ms) < 0:
            parser.error("--db-latencies-ms must include 0 and be non-negative")
        main_shapes(args)
        return
    if not (ANCHORS_DIR / "schema.sql").exists():
        print(f"error: pgbench anchors not found in {ANCHORS_DIR}", file=sys.stderr)
        raise SystemExit(2)
    load_before = os.getloadavg()
    measurements = measure(
        args.seconds, args.repeats, args.workers, args.pool_size, args.keyed, args.py_spy
    )
    rows = summarise(measurements)
    print(render_table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "schema_version": 2,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "load_average_before": load_before,
                    "load_average_after": os.getloadavg(),
                    "python": platform.python_version(),
                },
                "config": {
                    "seconds": args.seconds,
                    "repeats": args.repeats,
                    "clients": CLIENTS,
                    "units": UNITS,
                    "service_workers": args.workers,
                    "pool_size": args.pool_size,
                    "keyed": args.keyed,
                    "hot_authorizations": HOT_AUTHORIZATIONS,
                    "filler_authorizations": FILLER_AUTHORIZATIONS,
                },
                "summary": rows,
                "runs": [asdict(m) for m in measurements],
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
