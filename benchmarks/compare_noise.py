"""Measure how honest load-test.compare is about noise: A/A false calls and an A/B slowdown.

    python benchmarks/compare_noise.py run --count 20 --reports-dir /tmp/aa     # smoke runs
    TARGET_EXTRA_LATENCY_MS=5 python benchmarks/compare_noise.py run --count 1 --reports-dir /tmp/ab
    python benchmarks/compare_noise.py aa /tmp/aa      # consecutive runs paired: 1-2, 3-4, ...
    python benchmarks/compare_noise.py aa /tmp/aa --per-side 2   # runs 1+3 against 2+4, ...
    python benchmarks/compare_noise.py ab BASE_RUN[,BASE_RUN...] NEW_RUN[,NEW_RUN...]

`run` calls `invoke load-test.all` (smoke profile unless --profile) one run after another, with
the environment as given (DATABASE_URL, TARGET_EXTRA_LATENCY_MS...). `aa` compares each pair
and counts the calls that say "worse" (false, since both sides ran the same commit and
settings), over all judged metrics and over latency and throughput alone. `ab` prints every
metric of one comparison.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from reporting.compare import BETTER, NOT_COMPARABLE, WORSE  # noqa: E402
from reporting.compare_report import compare_runs  # noqa: E402
from results.files import SUMMARY_FILE  # noqa: E402

RUN_GLOB = "*T*Z-*"
GO = "GO"
NOISY = ("p50_ms", "p95_ms", "p99_ms", "throughput_rps")


def run_many(count: int, reports_dir: Path, profile: str) -> None:
    """Run the pipeline ``count`` times, one after another, printing each verdict line."""
    for _ in range(count):
        completed = subprocess.run(
            [sys.executable, "-m", "invoke", "load-test.all", "--profile", profile,
             "--reports-dir", str(reports_dir)],
            cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        print((completed.stdout.strip().splitlines() or ["(no output)"])[-1], flush=True)


def pair_calls(
    reports_dir: Path, tolerance: float, per_side: int = 1, go_only: bool = False
) -> list[dict[str, Any]]:
    """Compare consecutive groups of ``per_side`` runs (1-2, 3-4, ... for one a side).

    Return every metric row of every pair. Runs in order of time, so with several a side the
    groups interleave: runs 1 and 3 against 2 and 4, as the matrix orders its repeats.
    """
    # Finished runs only: a run still going has no summary.json yet.
    runs = sorted(path.parent for path in reports_dir.glob(f"{RUN_GLOB}/summary.json"))
    if go_only:
        # What the gate meets: a GO baseline, and a run that would be GO but for the gate.
        runs = [run for run in runs if _decision(run) == GO]
    size = 2 * per_side
    rows = []
    for start in range(0, len(runs) - size + 1, size):
        group = runs[start : start + size]
        base, new = group[0::2], group[1::2]
        document, _ = compare_runs(
            ",".join(map(str, base)), ",".join(map(str, new)), tolerance=tolerance
        )
        label = f"{'+'.join(p.name for p in base)} → {'+'.join(p.name for p in new)}"
        for scenario in document["scenarios"]:
            for metric in scenario["metrics"]:
                rows.append({"pair": label, **metric})
    return rows


def report_aa(
    reports_dir: Path, tolerance: float, per_side: int = 1, go_only: bool = False
) -> None:
    """Print the share of false "worse" (and "better") calls over all A/A pairs."""
    calls = pair_calls(reports_dir, tolerance, per_side, go_only)
    rows = [row for row in calls if row["judgement"] != NOT_COMPARABLE]
    pairs = len({row["pair"] for row in rows})
    worse = [row for row in rows if row["judgement"] == WORSE]
    noisy = [row for row in rows if row["metric"] in NOISY]
    noisy_worse = [row for row in noisy if row["judgement"] == WORSE]
    better = [row for row in rows if row["judgement"] == BETTER]
    noisy_better = [row for row in noisy if row["judgement"] == BETTER]
    scope = "GO runs only" if go_only else "all runs"
    print(f"{pairs} A/A pairs ({scope}), {per_side} run(s) a side, tolerance {tolerance:.0%}")
    # Which side ran first is arbitrary: a false "better" is a false "worse" the other way.
    print(
        f"  all judged metrics: {len(worse)} worse ({_share(worse, rows)}), {len(better)} "
        f"better ({_share(better, rows)}) of {len(rows)}"
    )
    print(
        f"  latency and throughput: {len(noisy_worse)} worse ({_share(noisy_worse, noisy)}), "
        f"{len(noisy_better)} better ({_share(noisy_better, noisy)}) of {len(noisy)}"
    )
    print(f"  judgements: {dict(Counter(row['judgement'] for row in rows))}")
    for row in worse:
        print(
            f"  worse: {row['pair']} {row['scenario']} {row['label']}: {row['base']:.4g} → "
            f"{row['new']:.4g}, interval [{row['low']:.4g}, {row['high']:.4g}]"
            if row["low"] is not None
            else f"  worse: {row['pair']} {row['scenario']} {row['label']}"
        )


def report_ab(base: str, new: str, tolerance: float) -> None:
    """Print every metric of one comparison."""
    document, _ = compare_runs(base, new, tolerance=tolerance)
    for scenario in document["scenarios"]:
        for m in scenario["metrics"]:
            if m["low"] is None:
                print(f"{m['scenario']:17} {m['label']:22} {m['judgement']}")
                continue
            print(
                f"{m['scenario']:17} {m['label']:22} {m['base']:9.4g} → {m['new']:9.4g} "
                f"Δ {m['difference']:+9.4g} [{m['low']:+.4g}, {m['high']:+.4g}] {m['judgement']}"
            )


def _decision(run_dir: Path) -> str | None:
    summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    return (summary.get("verdict") or {}).get("decision")


def _share(part: list[Any], whole: list[Any]) -> str:
    return f"{100 * len(part) / len(whole):.1f} %" if whole else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tolerance", type=float, default=10.0, help="percent of the base value")
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run")
    runner.add_argument("--count", type=int, default=20)
    runner.add_argument("--reports-dir", type=Path, required=True)
    runner.add_argument("--profile", default="smoke")
    aa = commands.add_parser("aa")
    aa.add_argument("reports_dir", type=Path)
    aa.add_argument("--per-side", type=int, default=1, help="runs a side (repeats, pooled)")
    aa.add_argument("--go-only", action="store_true", help="pair only the runs that were GO")
    ab = commands.add_parser("ab")
    ab.add_argument("base")
    ab.add_argument("new")
    arguments = parser.parse_args()
    share = arguments.tolerance / 100
    if arguments.command == "run":
        run_many(arguments.count, arguments.reports_dir, arguments.profile)
    elif arguments.command == "aa":
        report_aa(arguments.reports_dir, share, arguments.per_side, arguments.go_only)
    else:
        report_ab(arguments.base, arguments.new, share)


if __name__ == "__main__":
    main()
