"""Time seeding at scale 1 and 1000 on a throwaway local cluster; print medians.

    python benchmarks/seed_scale.py [--repeats 3] [--background 100000] [--json PATH]

Each repeat seeds the same migrated database again (a full reset and reload, as
`invoke load-test.seed` does), scale 1 and scale 1000 interleaved so that a noisy
neighbour on the machine weighs on both alike. A script, not a test: nothing here passes
or fails on time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

# Run from a checkout without installing: the project root holds the packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local_postgres import LocalCluster
from seeding import SeedSummary, seed_database
from seeding.credentials import password_hash
from target.migrate import upgrade

SCALES = (1, 1000)
DEFAULT_REPEATS = 3
DEFAULT_BACKGROUND = 100_000
BENCHMARK_JWT_SECRET = "benchmark-only-secret-of-32-bytes-or-more"


@dataclass(frozen=True)
class ScaleResult:
    """Median time of seeding one scale, and what it wrote."""

    scale: int
    background: int
    repeats: int
    rows: int
    active_authorizations: int
    practitioners: int
    fixtures_bytes: int
    median_s: float
    min_s: float
    max_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.median_s


def measure(repeats: int, background: int) -> list[ScaleResult]:
    """Seed every scale ``repeats`` times on a fresh cluster; return the medians."""
    workdir = Path(tempfile.mkdtemp(prefix="seed-bench-"))
    cluster = LocalCluster(workdir / "pg")
    timings: dict[int, list[SeedSummary]] = {scale: [] for scale in SCALES}
    try:
        url = cluster.up().url
        upgrade(url)
        for repeat in range(repeats):
            for scale in SCALES:
                # Time a cold seeding, as one `invoke load-test.seed` is: bcrypt included.
                password_hash.cache_clear()
                summary = seed_database(
                    url,
                    scale=scale,
                    background=background,
                    jwt_secret=BENCHMARK_JWT_SECRET,
                    fixtures_path=workdir / f"fixtures-{scale}.json",
                )
                timings[scale].append(summary)
                print(
                    f"repeat {repeat + 1}/{repeats} scale {scale}: {summary.elapsed_s:.2f} s",
                    file=sys.stderr,
                )
        return [
            summarise(scale, background, timings[scale], workdir / f"fixtures-{scale}.json")
            for scale in SCALES
        ]
    finally:
        cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def summarise(
    scale: int, background: int, summaries: list[SeedSummary], fixtures: Path
) -> ScaleResult:
    seconds = [summary.elapsed_s for summary in summaries]
    last = summaries[-1]
    return ScaleResult(
        scale=scale,
        background=background,
        repeats=len(summaries),
        rows=last.rows,
        active_authorizations=last.active_authorizations,
        practitioners=last.practitioners,
        fixtures_bytes=fixtures.stat().st_size,
        median_s=statistics.median(seconds),
        min_s=min(seconds),
        max_s=max(seconds),
    )


def table(results: list[ScaleResult]) -> str:
    lines = [
        "| scale | background | active authorizations | practitioners | rows written "
        "| median s (min-max) | rows/s | fixture file |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.scale} | {r.background:,} | {r.active_authorizations:,} | "
            f"{r.practitioners:,} | {r.rows:,} | {r.median_s:.2f} ({r.min_s:.2f}-{r.max_s:.2f}) "
            f"| {r.rows_per_s:,.0f} | {r.fixtures_bytes / 1e3:,.0f} kB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--background", type=int, default=DEFAULT_BACKGROUND)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.background < 0:
        parser.error("--background must be at least 0")
    results = measure(args.repeats, args.background)
    print(table(results))
    if args.json:
        args.json.write_text(
            json.dumps([asdict(r) | {"rows_per_s": r.rows_per_s} for r in results], indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
