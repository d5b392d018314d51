"""Measure what the DB relay adds to a PostgreSQL round trip, and what it costs in CPU.

    python benchmarks/db_relay_accuracy.py [--samples 1000] [--url URL] [--json PATH]

Without --url it starts a throwaway cluster of the project's own in a temporary folder. One
relay per asked figure (0, 0.3, 0.5, 1, 2 and 5 ms of round trip), all running at once, plus a
direct connection: each sample round runs one `SELECT 1` on every connection in turn, so the
machine's mood of the moment weighs on every column alike. Printed for each: the round trip's
median, p95 and p99; what it adds over the relay at 0 ms at each of those; the median's error
against the asked figure; and the relay process's CPU per round trip (its user + system time
over the sampling, divided by the round trips it carried; on this Firecracker VM every wake-up
and system call is dear, and a delayed round trip wakes the relay twice more, for its timers).

A second table runs CONCURRENCY connections in one asyncio client, each in a closed loop of
`SELECT 1` for a few seconds, direct and then through a relay at 0 and at 1 ms: round trips
per second and the relay's CPU per round trip when many chunks share its wake-ups, as under
the service's pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

import psycopg  # noqa: E402

from faults.relay import DbRelay  # noqa: E402
from local_postgres import LocalCluster  # noqa: E402
from local_postgres.cluster import url_for  # noqa: E402

ASKED_RTT_MS = (0.0, 0.3, 0.5, 1.0, 2.0, 5.0)
WARM_UP_ROUNDS = 50
DIRECT = "direct"
CONCURRENCY = 32
CONCURRENT_SECONDS = 4.0
CONCURRENT_RTT_MS = (0.0, 1.0)


@dataclass(frozen=True)
class Column:
    """One connection's round trips, and what a relay's figure adds over the relay at 0 ms."""

    name: str
    asked_ms: float | None
    median_ms: float
    p95_ms: float
    p99_ms: float
    added_median_ms: float | None
    added_p95_ms: float | None
    added_p99_ms: float | None
    median_error_pct: float | None
    relay_cpu_us_per_round_trip: float | None
    relay_mean_lateness_ms: float | None


@dataclass(frozen=True)
class Concurrent:
    """Many connections at once through one relay."""

    asked_ms: float | None  # None: the direct connections, without a relay
    connections: int
    round_trips_per_s: float
    median_ms: float
    relay_cpu_us_per_round_trip: float | None


def percentile(values: list[float], share: float) -> float:
    """Return the nearest-rank percentile of ``values`` (``share`` in 0..1)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def sample_round_trips(urls: dict[str, str], samples: int) -> dict[str, list[float]]:
    """Return each URL's `SELECT 1` round trips in ms, every URL sampled once per round."""
    connections = {name: psycopg.connect(url, autocommit=True) for name, url in urls.items()}
    times: dict[str, list[float]] = {name: [] for name in urls}
    try:
        for i in range(WARM_UP_ROUNDS + samples):
            for name, conn in connections.items():
                started = time.perf_counter()
                conn.execute("SELECT 1").fetchone()
                if i >= WARM_UP_ROUNDS:
                    times[name].append((time.perf_counter() - started) * 1000)
    finally:
        for conn in connections.values():
            conn.close()
    return times


def measure_accuracy(admin_url: str, samples: int) -> list[Column]:
    """Sample the direct connection and one relay per asked figure side by side."""
    with ExitStack() as stack:
        relays = {
            f"relay {asked:g} ms": stack.enter_context(
                DbRelay.for_url(admin_url, added_rtt_ms=asked)
            )
            for asked in ASKED_RTT_MS
        }
        urls = {DIRECT: admin_url} | {name: r.url_for(admin_url) for name, r in relays.items()}
        before = {name: relay.stats() for name, relay in relays.items()}
        times = sample_round_trips(urls, samples)
        after = {name: relay.stats() for name, relay in relays.items()}
    base = times["relay 0 ms"]
    columns = []
    for name, values in times.items():
        relay_stats = after.get(name)
        asked = None if relay_stats is None else relay_stats.added_rtt_ms
        added = [
            None if asked is None else percentile(values, share) - percentile(base, share)
            for share in (0.5, 0.95, 0.99)
        ]
        cpu_us = lateness = None
        if relay_stats is not None:
            # Each round trip is a few chunks each way; the stats requests' own CPU is noise.
            cpu_s = relay_stats.cpu_s - before[name].cpu_s
            cpu_us = cpu_s / len(values) * 1e6
            lateness = relay_stats.mean_lateness_ms
        columns.append(
            Column(
                name=name,
                asked_ms=asked,
                median_ms=statistics.median(values),
                p95_ms=percentile(values, 0.95),
                p99_ms=percentile(values, 0.99),
                added_median_ms=added[0],
                added_p95_ms=added[1],
                added_p99_ms=added[2],
                median_error_pct=(
                    None if not asked or added[0] is None else (added[0] - asked) / asked * 100
                ),
                relay_cpu_us_per_round_trip=cpu_us,
                relay_mean_lateness_ms=lateness,
            )
        )
    return columns


async def closed_loops(url: str, connections: int, seconds: float) -> list[float]:
    """Run ``connections`` closed loops of `SELECT 1` for ``seconds``; return the round trips."""
    opened = [
        await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(connections)
    ]
    times: list[float] = []
    deadline = time.monotonic() + seconds

    async def loop(conn: psycopg.AsyncConnection) -> None:
        cursor = conn.cursor()
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await cursor.execute("SELECT 1")
            await cursor.fetchone()
            times.append((time.perf_counter() - started) * 1000)

    try:
        await asyncio.gather(*(loop(conn) for conn in opened))
    finally:
        for conn in opened:
            await conn.close()
    return times


def measure_concurrent(admin_url: str, connections: int, seconds: float) -> list[Concurrent]:
    """Drive PostgreSQL directly, then one relay at each figure, with many connections."""
    times = asyncio.run(closed_loops(admin_url, connections, seconds))
    results = [Concurrent(None, connections, len(times) / seconds, statistics.median(times), None)]
    for asked in CONCURRENT_RTT_MS:
        with DbRelay.for_url(admin_url, added_rtt_ms=asked) as relay:
            before = relay.stats()
            times = asyncio.run(closed_loops(relay.url_for(admin_url), connections, seconds))
            after = relay.stats()
        results.append(
            Concurrent(
                asked_ms=asked,
                connections=connections,
                round_trips_per_s=len(times) / seconds,
                median_ms=statistics.median(times),
                relay_cpu_us_per_round_trip=(after.cpu_s - before.cpu_s) / len(times) * 1e6,
            )
        )
    return results


def render(columns: list[Column], concurrent: list[Concurrent], samples: int) -> str:
    """Return both tables as Markdown."""

    def ms(value: float | None) -> str:
        return "" if value is None else f"{value:.3f}"

    lines = [
        f"`SELECT 1` round trips, {samples} samples per column, sampled in turn (ms):",
        "",
        "| connection | median | p95 | p99 | added median | added p95 | added p99 "
        "| median error | relay CPU µs/round trip | timer lateness |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for column in columns:
        error = "" if column.median_error_pct is None else f"{column.median_error_pct:+.1f} %"
        cpu = column.relay_cpu_us_per_round_trip
        lines.append(
            f"| {column.name} | {ms(column.median_ms)} | {ms(column.p95_ms)} "
            f"| {ms(column.p99_ms)} | {ms(column.added_median_ms)} | {ms(column.added_p95_ms)} "
            f"| {ms(column.added_p99_ms)} | {error} | {'' if cpu is None else f'{cpu:.0f}'} "
            f"| {ms(column.relay_mean_lateness_ms)} |"
        )
    lines += [
        "",
        f"{concurrent[0].connections} connections in closed loops through one relay "
        f"({CONCURRENT_SECONDS:g} s each):",
        "",
        "| connection | round trips/s | median ms | relay CPU µs/round trip |",
        "|---|---:|---:|---:|",
    ]
    for row in concurrent:
        name = DIRECT if row.asked_ms is None else f"relay {row.asked_ms:g} ms"
        cpu = row.relay_cpu_us_per_round_trip
        lines.append(
            f"| {name} | {row.round_trips_per_s:,.0f} | {row.median_ms:.3f} "
            f"| {'' if cpu is None else f'{cpu:.0f}'} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Measure, print the tables, and write the JSON document when asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--url", help="a libpq URL; default: a throwaway cluster of our own")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()
    with ExitStack() as stack:
        admin_url = options.url
        if admin_url is None:
            cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="relay-bench-")))
            admin_url = url_for(cluster.up().port, "postgres")
            stack.callback(cluster.destroy)
        with DbRelay.for_url(admin_url) as relay:
            print(f"relay: {relay.loop_name}, {relay.timer_name} timers\n", flush=True)
        columns = measure_accuracy(admin_url, options.samples)
        concurrent = measure_concurrent(admin_url, options.concurrency, CONCURRENT_SECONDS)
    print(render(columns, concurrent, options.samples))
    if options.json:
        document = {
            "accuracy": [asdict(column) for column in columns],
            "concurrent": [asdict(row) for row in concurrent],
        }
        options.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
