"""Reservations/s of the service per pool size and worker count: where to size the pool.

    python benchmarks/pool_size_sweep.py [--pool-sizes 2,4,8,16] [--workers 2,3]
        [--strategy serializable] [--seconds 10] [--repeats 3]

Same set-up, client (wrk, 50 connections) and CPU accounting as service_throughput.py; every
(workers, pool size) pair is run once per repeat, interleaved, and the medians are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service_throughput import HttpRun, run_http, seeded_service_cluster


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool-sizes", type=numbers, default=[2, 4, 8, 16])
    parser.add_argument("--workers", type=numbers, default=[2])
    parser.add_argument("--strategy", default="serializable")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pool-sweep-"))
    results: dict[tuple[int, int], list] = {}
    with seeded_service_cluster(workdir) as (url, postgres):
        for repeat in range(1, args.repeats + 1):
            for workers in args.workers:
                for pool_size in args.pool_sizes:
                    run = HttpRun("service", args.strategy, repeat, workers, pool_size, False)
                    measurement = run_http(run, url, args.seconds, workdir, postgres, None)
                    results.setdefault((workers, pool_size), []).append(measurement)
                    print(
                        f"repeat {repeat} workers {workers} pool {pool_size}: "
                        f"{measurement.reservations_per_s:.0f}/s p95 "
                        f"{measurement.latency_ms['p95']:.1f} ms retries {measurement.retries} "
                        f"cpu {measurement.cpu_ms_per_reservation}",
                        file=sys.stderr,
                    )
    print(f"| workers | pool per worker | {args.strategy} res/s (min-max) | p95 ms | retries/s |")
    print("|---:|---:|---:|---:|---:|")
    for (workers, pool_size), runs in sorted(results.items()):
        rates = [m.reservations_per_s for m in runs]
        print(
            f"| {workers} | {pool_size} | {statistics.median(rates):,.0f} "
            f"({min(rates):,.0f}-{max(rates):,.0f}) "
            f"| {statistics.median(m.latency_ms['p95'] for m in runs):.1f} "
            f"| {statistics.median(m.retries / m.duration_s for m in runs):,.0f} |"
        )


if __name__ == "__main__":
    main()
