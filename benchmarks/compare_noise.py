"""Measure how honest load-test.compare is about noise: A/A false calls and an A/B slowdown.

    python benchmarks/compare_noise.py run --count 20 --reports-dir /tmp/aa     # smoke runs
    TARGET_EXTRA_LATENCY_MS=5 python benchmarks/compare_noise.py run --count 1 --reports-dir /tmp/ab
    python benchmarks/compare_noise.py aa /tmp/aa      # consecutive runs paired: 1-2, 3-4, ...
    python benchmarks/compare_noise.py aa /tmp/aa --per-side 2   # runs 1+3 against 2+4, ...
    python benchmarks/compare_noise.py ab BASE_RUN[,BASE_RUN...] NEW_RUN[,NEW_RUN...]
    python benchmarks/compare_noise.py cycle --cycles 12 --reports-dir /tmp/c   # 0,0,2,5,10 ms
    python benchmarks/compare_noise.py cycle --cycles 20 --reports-dir /tmp/s \
        --transaction-shape statement --scenarios high_contention   # the low-noise shape
    python benchmarks/compare_noise.py study /tmp/c    # A/A and power, margins on and off

`run` calls `invoke load-test.all` (smoke profile unless --profile) one run after another, with
the environment as given (DATABASE_URL, TARGET_EXTRA_LATENCY_MS...). `aa` compares each pair
and counts the calls that say "worse" (false, since both sides ran the same commit and
settings), over all judged metrics and over latency and throughput alone. `ab` prints every
metric of one comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from reporting.compare import (  # noqa: E402
    BETTER,
    DEFAULT_MARGINS,
    INTEGRITY_METRIC,
    NO_MARGINS,
    NOT_COMPARABLE,
    WORSE,
    judge,
    with_relative,
)
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


def run_cycles(
    cycles: int,
    reports_dir: Path,
    profile: str,
    extra_latencies: list[int],
    scenarios: str,
    transaction_shape: str = "",
) -> None:
    """Run ``cycles`` rounds of one run per entry of ``extra_latencies``, interleaved.

    Each run goes to ``reports_dir/x<ms>/`` with TARGET_EXTRA_LATENCY_MS=<ms>: a round of
    0,0,2,5,10 gives two A/A runs and one run of each known slowdown, close together in time.
    """
    for cycle in range(1, cycles + 1):
        for extra in extra_latencies:
            options = ["--scenarios", scenarios] if scenarios else []
            if transaction_shape:
                options += ["--transaction-shape", transaction_shape]
            completed = subprocess.run(
                [sys.executable, "-m", "invoke", "load-test.all", "--profile", profile,
                 "--reports-dir", str(reports_dir / f"x{extra}"), *options],
                cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
                env={**os.environ, "TARGET_EXTRA_LATENCY_MS": str(extra)},
            )  # fmt: skip
            last = (completed.stdout.strip().splitlines() or ["(no output)"])[-1]
            print(f"cycle {cycle} x{extra}: {last}", flush=True)


def pair_calls(
    reports_dir: Path, tolerance: float | None, per_side: int = 1, go_only: bool = False
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
            ",".join(map(str, base)), ",".join(map(str, new)), margins=_margins(tolerance)
        )
        label = f"{'+'.join(p.name for p in base)} → {'+'.join(p.name for p in new)}"
        for scenario in document["scenarios"]:
            for metric in scenario["metrics"]:
                rows.append({"pair": label, **metric})
    return rows


def report_aa(
    reports_dir: Path, tolerance: float | None, per_side: int = 1, go_only: bool = False
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
    rule = "default margins" if tolerance is None else f"margins with {tolerance:.0%} shares"
    print(f"{pairs} A/A pairs ({scope}), {per_side} run(s) a side, {rule}")
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


def study(cycles_dir: Path, extra_latencies: list[int]) -> None:
    """Print A/A false calls and the power to see a known slowdown, 1 and 3 runs a side.

    ``cycles_dir`` holds x0/ (two runs a cycle) and x<ms>/ (one a cycle), as `cycle` writes
    them. A/A: each cycle's two x0 runs against each other; three a side: the first x0 runs
    of three cycles against their second ones. Power: each cycle's first x0 run against its
    x<ms> run; three a side: three cycles' of each. Every interval is computed once, without
    margins, and judged twice: without margins and with the defaults. Integrity is left out
    (pass/fail, not a statistical call).
    """
    zero = _finished(cycles_dir / "x0")
    first, second = zero[0::2], zero[1::2]
    cycles = min(len(first), len(second))
    for per_side in (1, 3):
        groups = [range(c, c + per_side) for c in range(0, cycles - per_side + 1, per_side)]
        rows = [
            row
            for group in groups
            for row in _rows([first[i] for i in group], [second[i] for i in group])
        ]
        for label, margins in (("margins off", NO_MARGINS), ("margins on", DEFAULT_MARGINS)):
            judged = [_judged(row, margins) for row in rows]
            worse, better = judged.count(WORSE), judged.count(BETTER)
            print(
                f"A/A, {per_side} run(s) a side, {len(groups)} pairs, {label}: {worse} worse "
                f"({_share([1] * worse, judged)}), {better} better ({_share([1] * better, judged)})"
                f" of {len(judged)} judged metrics",
                flush=True,
            )
    for extra in extra_latencies:
        slow = _finished(cycles_dir / f"x{extra}")
        count = min(len(first), len(slow))
        for per_side in (1, 3):
            groups = [range(c, c + per_side) for c in range(0, count - per_side + 1, per_side)]
            p50 = [
                row
                for group in groups
                for row in _rows([first[i] for i in group], [slow[i] for i in group])
                if row["metric"] == "p50_ms"
            ]
            for label, margins in (("margins off", NO_MARGINS), ("margins on", DEFAULT_MARGINS)):
                worse = [row for row in p50 if _judged(row, margins) == WORSE]
                print(
                    f"+{extra} ms, {per_side} run(s) a side, {len(groups)} pairs, {label}: p50 "
                    f"worse in {len(worse)} of {len(p50)} scenario-pairs "
                    f"({_share(worse, p50)}); differences "
                    + ", ".join(f"{row['difference']:+.1f}" for row in p50),
                    flush=True,
                )


def _finished(folder: Path) -> list[Path]:
    return sorted(path.parent for path in folder.glob(f"{RUN_GLOB}/summary.json"))


def _rows(base: list[Path], new: list[Path]) -> list[dict[str, Any]]:
    document, _ = compare_runs(
        ",".join(map(str, base)), ",".join(map(str, new)), margins=NO_MARGINS
    )
    return [
        metric
        for scenario in document["scenarios"]
        for metric in scenario["metrics"]
        if metric["metric"] != INTEGRITY_METRIC and metric["judgement"] != NOT_COMPARABLE
    ]


def _judged(row: dict[str, Any], margins: Any) -> str:
    return judge(
        difference=row["difference"],
        low=row["low"],
        high=row["high"],
        margin=margins[row["metric"]].of(row["base"]),
        direction=row["direction"],
    )


def _margins(tolerance: float | None) -> Any:
    return DEFAULT_MARGINS if tolerance is None else with_relative(DEFAULT_MARGINS, tolerance)


def report_ab(base: str, new: str, tolerance: float | None) -> None:
    """Print every metric of one comparison."""
    document, _ = compare_runs(base, new, margins=_margins(tolerance))
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
    parser.add_argument(
        "--tolerance", type=float, default=None, help="percent: the latency/throughput share"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run")
    runner.add_argument("--count", type=int, default=20)
    runner.add_argument("--reports-dir", type=Path, required=True)
    runner.add_argument("--profile", default="smoke")
    cycle = commands.add_parser("cycle")
    cycle.add_argument("--cycles", type=int, default=12)
    cycle.add_argument("--reports-dir", type=Path, required=True)
    cycle.add_argument("--profile", default="smoke")
    cycle.add_argument("--extra-latencies", default="0,0,2,5,10")
    cycle.add_argument("--scenarios", default="")
    cycle.add_argument("--transaction-shape", default="", help="interactive (default) or statement")
    studied = commands.add_parser("study")
    studied.add_argument("cycles_dir", type=Path)
    studied.add_argument("--extra-latencies", default="2,5,10")
    aa = commands.add_parser("aa")
    aa.add_argument("reports_dir", type=Path)
    aa.add_argument("--per-side", type=int, default=1, help="runs a side (repeats, pooled)")
    aa.add_argument("--go-only", action="store_true", help="pair only the runs that were GO")
    ab = commands.add_parser("ab")
    ab.add_argument("base")
    ab.add_argument("new")
    arguments = parser.parse_args()
    share = None if arguments.tolerance is None else arguments.tolerance / 100
    if arguments.command == "run":
        run_many(arguments.count, arguments.reports_dir, arguments.profile)
    elif arguments.command == "cycle":
        run_cycles(
            arguments.cycles,
            arguments.reports_dir,
            arguments.profile,
            [int(ms) for ms in arguments.extra_latencies.split(",")],
            arguments.scenarios,
            arguments.transaction_shape,
        )
    elif arguments.command == "study":
        study(arguments.cycles_dir, [int(ms) for ms in arguments.extra_latencies.split(",")])
    elif arguments.command == "aa":
        report_aa(arguments.reports_dir, share, arguments.per_side, arguments.go_only)
    else:
        report_ab(arguments.base, arguments.new, share)


if __name__ == "__main__":
    main()
