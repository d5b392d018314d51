"""The service at an earlier revision beside the service now: same run, same client, interleaved.

    python benchmarks/service_before_after.py --base-rev REV [--strategies serializable,atomic]
        [--seconds 10] [--repeats 3]

Checks REV out into a temporary git worktree and serves that revision's app the way that
revision did (`python -m hypercorn --workers 2 --worker-class uvloop target.app:create_app()`
in its tree), then the current tree's service (its supervisor, 2 workers); both on the same
migrated database (the current migrations: older code ignores the newer column and table),
driven by the same wrk script (service_throughput.py), repeated and interleaved. Prints the
medians of reservations/s and of service CPU per reservation.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service_throughput import (
    BENCHMARK_JWT_SECRET,
    WARMUP_S,
    HttpRun,
    http_targets,
    ledger_rows,
    reset_service_database,
    run_http,
    run_wrk,
    seeded_service_cluster,
    tree_cpu_s,
    write_wrk_script,
)

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """Check ``revision`` out into a temporary worktree for the block."""
    path = Path(tempfile.mkdtemp(prefix="before-")) / "tree"
    subprocess.run(["git", "worktree", "add", "-q", str(path), revision], cwd=ROOT, check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)


@contextlib.contextmanager
def old_service(tree: Path, url: str, strategy: str) -> Iterator[tuple[str, int]]:
    """Serve the old tree's app as it served itself; yield its base URL and pid."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics_dir = tempfile.mkdtemp(prefix="before-metrics-")
    env = dict(os.environ, DATABASE_URL=url, TARGET_CONCURRENCY=strategy,
               JWT_SECRET=BENCHMARK_JWT_SECRET, PROMETHEUS_MULTIPROC_DIR=metrics_dir)  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--worker-class", "uvloop", "--backlog", "1024", "target.app:create_app()"],
        cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as answer,
            ):
                if answer.status == 200:
                    break
            time.sleep(0.2)
        yield base_url, process.pid
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def run_old(tree: Path, url: str, strategy: str, seconds: float, work: Path) -> tuple[float, float]:
    """Return (reservations/s, service CPU ms per reservation) of the old revision."""
    reset_service_database(url)
    script = write_wrk_script(work / "before.lua", http_targets(url), keyed=False)
    with old_service(tree, url, strategy) as (base_url, pid):
        run_wrk(base_url, script, WARMUP_S, "before-warmup")
        rows, cpu = ledger_rows(url), tree_cpu_s(pid)
        summary = run_wrk(base_url, script, seconds, "before")
        cpu = tree_cpu_s(pid) - cpu
        committed = ledger_rows(url) - rows
    duration_s = summary["duration_us"] / 1e6
    return committed / duration_s, cpu * 1000 / max(committed, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-rev", required=True)
    parser.add_argument("--strategies", default="serializable,atomic")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="before-after-"))
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with worktree(args.base_rev) as tree, seeded_service_cluster(work) as (url, postgres):
        for repeat in range(1, args.repeats + 1):
            for strategy in args.strategies.split(","):
                before = run_old(tree, url, strategy, args.seconds, work)
                now = run_http(
                    HttpRun("service", strategy, repeat, 2, 8, False),
                    url, args.seconds, work, postgres, None,
                )  # fmt: skip
                after = (now.reservations_per_s, now.cpu_ms_per_reservation["service"])
                figures.setdefault((strategy, "before"), []).append(before)
                figures.setdefault((strategy, "after"), []).append(after)
                print(f"repeat {repeat} {strategy}: before {before[0]:.0f}/s "
                      f"{before[1]:.3f} ms, after {after[0]:.0f}/s {after[1]:.3f} ms",
                      file=sys.stderr)  # fmt: skip
    print(f"| strategy | {args.base_rev} res/s | now res/s | ratio | CPU ms/res before | now |")
    print("|---|---:|---:|---:|---:|---:|")
    for strategy in args.strategies.split(","):
        before, after = figures[strategy, "before"], figures[strategy, "after"]
        rate_b = statistics.median(b[0] for b in before)
        rate_a = statistics.median(a[0] for a in after)
        print(
            f"| {strategy} | {rate_b:,.0f} | {rate_a:,.0f} | {rate_a / rate_b:.2f}x "
            f"| {statistics.median(b[1] for b in before):.3f} "
            f"| {statistics.median(a[1] for a in after):.3f} |"
        )


if __name__ == "__main__":
    main()
