"""Reservations/s of the service beside plain pgbench on the same reserve transaction.

    python benchmarks/service_throughput.py [--seconds 10] [--repeats 3] [--json PATH]

On one fresh throwaway cluster, for each strategy (serializable, for_update, atomic):
(a) the pgbench anchors of ../shared/anchors/pgbench (50 clients, 2 threads, 55 hot
authorizations among 100,000 inert rows, 5 units per reservation), and (b) the service under
Hypercorn with 2 workers, driven by a lean closed-loop aiohttp client with 50 concurrent
users reserving 5 units on random authorizations of the same shape. Every measurement is
repeated ``--repeats`` times, interleaved, and the medians are reported with the service's
share of the pgbench ceiling. A script, not a test: nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Run from a checkout without installing: the project root holds the packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import jwt
import psycopg

from local_postgres import LocalCluster, create_marked_database
from local_postgres.cluster import find_bin_dir, url_for
from target.migrate import upgrade
from target.serve import ServiceProcess, start_service

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
WARMUP_S = 1.0
REQUEST_TIMEOUT_S = 30.0
PERCENTILES = (50, 95, 99)
BENCHMARK_JWT_SECRET = "benchmark-only-secret-of-32-bytes-or-more"
ANCHOR_DATABASE = "anchor"
SERVICE_DATABASE = "service"
SERVICE_CODE = "97153"


@dataclass(frozen=True)
class Measurement:
    """One timed run: reservations committed per second and their latency."""

    system: str  # "pgbench" or "service"
    strategy: str
    repeat: int
    duration_s: float
    reservations: int
    failures: int
    reservations_per_s: float
    latency_ms: dict[str, float]
    retries: int
    details: dict[str, Any] = field(default_factory=dict)


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
    "TRUNCATE unit_transactions; "
    "UPDATE authorizations SET scheduled_units = 0, used_units = 0 WHERE status = 'active';"
)


def maintain(url: str) -> None:
    """Vacuum, analyze and checkpoint, so every run starts from the same clean state."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE authorizations")
        conn.execute("VACUUM ANALYZE unit_transactions")
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
    bin_dir: Path, url: str, strategy: str, seconds: float, repeat: int, log_dir: Path
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
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed: {(result.stderr or result.stdout).strip()}")
    return summarise_pgbench_log(str(prefix), strategy, repeat, result.stdout)


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


# -- the service ---------------------------------------------------------------------------
async def drive_reservations(
    base_url: str, targets: list[tuple[str, dict[str, str]]], seconds: float
) -> tuple[list[float], Counter[str], float]:
    """Run CLIENTS closed-loop users for a warm-up plus ``seconds``; return what was measured.

    Only requests that start after the warm-up and end before the deadline count.
    """
    body = json.dumps({"units": UNITS}).encode()
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + WARMUP_S
    measure_until = measure_from + seconds
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)

    async def user(session: aiohttp.ClientSession) -> None:
        while (started := loop.time()) < measure_until:
            authorization_id, headers = random.choice(targets)
            try:
                async with session.post(
                    f"/api/authorizations/{authorization_id}/reserve", data=body, headers=headers
                ) as response:
                    await response.read()
                    outcome = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as error:
                outcome = type(error).__name__
            ended = loop.time()
            if started >= measure_from and ended <= measure_until:
                outcomes[outcome] += 1
                if outcome == "200":
                    latencies.append(ended - started)

    cpu_before = time.process_time()
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(user(session) for _ in range(CLIENTS)))
    return latencies, outcomes, time.process_time() - cpu_before


def scrape_counter(service: ServiceProcess, name: str) -> float:
    """Read one unlabelled counter from the service's /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"{service.base_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def run_service(url: str, strategy: str, seconds: float, repeat: int, log_dir: Path) -> Measurement:
    """Reset the service database, serve it with 2 workers and drive reservations."""
    reset_service_database(url)
    targets = service_targets(url)
    with start_service(
        url,
        strategy=strategy,
        workers=SERVICE_WORKERS,
        env={"JWT_SECRET": BENCHMARK_JWT_SECRET},
        log_path=log_dir / f"service-{strategy}-{repeat}.log",
    ) as service:
        latencies, outcomes, client_cpu_s = asyncio.run(
            drive_reservations(service.base_url, targets, seconds)
        )
        retries = scrape_counter(service, "db_serialization_retries_total")
        conflicts = scrape_counter(service, "db_serialization_conflicts_total")
    with psycopg.connect(url) as conn:
        ledger_rows = conn.execute("SELECT count(*) FROM unit_transactions").fetchone()
    return Measurement(
        system="service",
        strategy=strategy,
        repeat=repeat,
        duration_s=seconds,
        reservations=len(latencies),
        failures=sum(count for outcome, count in outcomes.items() if outcome != "200"),
        reservations_per_s=round(len(latencies) / seconds, 1),
        latency_ms=percentiles_ms(latencies),
        retries=int(retries),
        details={
            "outcomes": dict(outcomes),
            "serialization_conflicts": int(conflicts),
            "client_cpu_s": round(client_cpu_s, 2),
            "ledger_rows_incl_warmup": ledger_rows[0] if ledger_rows else None,
        },
    )


# -- the whole run -------------------------------------------------------------------------
def measure(seconds: float, repeats: int) -> list[Measurement]:
    """Run pgbench and the service per strategy, ``repeats`` times interleaved."""
    workdir = Path(tempfile.mkdtemp(prefix="service-bench-"))
    cluster = LocalCluster(workdir / "pg")
    bin_dir = find_bin_dir()
    measurements = []
    try:
        info = cluster.up()
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
                for measurement in (
                    run_pgbench(bin_dir, anchor_url, strategy, seconds, repeat, workdir),
                    run_service(service_url, strategy, seconds, repeat, workdir),
                ):
                    measurements.append(measurement)
                    print(
                        f"repeat {repeat}/{repeats} {strategy:12} {measurement.system:8} "
                        f"{measurement.reservations_per_s:8.0f}/s p95 "
                        f"{measurement.latency_ms['p95']} ms failures {measurement.failures}",
                        file=sys.stderr,
                    )
    finally:
        cluster.destroy()
    return measurements


def summarise(measurements: list[Measurement]) -> list[dict[str, Any]]:
    """Return per-strategy medians of both systems and the service's share of pgbench."""
    rows = []
    for strategy in STRATEGIES:
        row: dict[str, Any] = {"strategy": strategy}
        for system in ("pgbench", "service"):
            runs = [m for m in measurements if m.strategy == strategy and m.system == system]
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
            }
        row["service_share_of_pgbench"] = round(
            row["service"]["reservations_per_s"] / row["pgbench"]["reservations_per_s"], 3
        )
        rows.append(row)
    return rows


def render_table(rows: list[dict[str, Any]]) -> str:
    """Render the medians as a Markdown table."""
    lines = [
        "| strategy | pgbench res/s | p50 / p95 / p99 ms | service res/s (min-max) "
        "| p50 / p95 / p99 ms | service / pgbench |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        anchor, service = row["pgbench"], row["service"]
        lines.append(
            f"| {row['strategy']} | {anchor['reservations_per_s']:,.0f} "
            f"| {anchor['p50']} / {anchor['p95']} / {anchor['p99']} "
            f"| {service['reservations_per_s']:,.0f} "
            f"({service['min_per_s']:,.0f}-{service['max_per_s']:,.0f}) "
            f"| {service['p50']} / {service['p95']} / {service['p99']} "
            f"| {row['service_share_of_pgbench']:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    if args.seconds < 1 or args.repeats < 1:
        parser.error("--seconds and --repeats must be at least 1")
    if not (ANCHORS_DIR / "schema.sql").exists():
        print(f"error: pgbench anchors not found in {ANCHORS_DIR}", file=sys.stderr)
        raise SystemExit(2)
    load_before = os.getloadavg()
    measurements = measure(args.seconds, args.repeats)
    rows = summarise(measurements)
    print(render_table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "load_average_before": load_before,
                    "python": platform.python_version(),
                },
                "config": {
                    "seconds": args.seconds,
                    "repeats": args.repeats,
                    "clients": CLIENTS,
                    "units": UNITS,
                    "service_workers": SERVICE_WORKERS,
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
