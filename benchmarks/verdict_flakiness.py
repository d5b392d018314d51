"""Run the smoke pipeline N times on an unchanged commit and count how often the verdict agrees.

    python benchmarks/verdict_flakiness.py [--runs 20] [--profile smoke] [--out FILE]

Each run is `invoke load-test.all --profile smoke` in its own process, against a throwaway
PostgreSQL cluster this script starts in a temporary folder (so that other engineers' runs
on the project's own cluster neither block nor disturb it; the pipeline then neither starts
nor stops the server, about 3 s less per run). It records each run's verdict, its reasons
(a run that is not GO must name its cause), its duration, the status of every latency
threshold, the slow seconds and the machine's load average when it started. The figures go
to --out (JSON) and a table on stdout; exit 0 when the most common verdict came out at least
`runs - 1` times, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local_postgres import LocalCluster  # noqa: E402
from results.files import SUMMARY_FILE  # noqa: E402

DEFAULT_RUNS = 20
RUN_TIMEOUT_S = 600


def run_once(invoke: Path, profile: str, reports_dir: Path, database_url: str) -> dict[str, Any]:
    """Run the pipeline once; return its verdict, reasons and figures from summary.json."""
    before = _run_dirs(reports_dir)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    completed = subprocess.run(
        [str(invoke), "load-test.all", "--profile", profile, "--reports-dir", str(reports_dir)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    wall = time.perf_counter() - started
    new = sorted(_run_dirs(reports_dir) - before)
    summary_path = new[-1] / SUMMARY_FILE if new else None
    if summary_path is None or not summary_path.exists():
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:]
        return {
            "decision": "NO REPORT",
            "reasons": tail,
            "wall_s": round(wall, 1),
            "load_average_1m": round(load, 2),
        }
    summary = json.loads(summary_path.read_text())
    return {
        "run_dir": str(new[-1]),
        # The folder's name ends with the commit: other engineers may commit meanwhile.
        "commit": new[-1].name.rsplit("-", 1)[-1],
        "decision": summary["verdict"]["decision"],
        "reasons": summary["verdict"]["reasons"],
        "exit_code": completed.returncode,
        "wall_s": round(wall, 1),
        "pipeline_s": summary.get("duration_s"),
        "load_average_1m": round(load, 2),
        "scenarios": {
            scenario["scenario"]: {
                "requests": scenario["requests"],
                "p95_ms": scenario["latency_ms"].get("p95"),
                "p99_ms": scenario["latency_ms"].get("p99"),
                "thresholds": {
                    t["name"]: t.get("status") or ("met" if t["ok"] else "missed")
                    for t in scenario["thresholds"]
                },
                "slow_seconds": [s["text"] for s in scenario.get("slow_seconds") or []],
            }
            for scenario in summary["scenarios"]
        },
    }


def _run_dirs(reports_dir: Path) -> set[Path]:
    """Return the run folders (other files, such as a run index, may sit beside them)."""
    return (
        {path for path in reports_dir.glob("*") if path.is_dir()} if reports_dir.exists() else set()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.runs < 1:
        print(f"verdict_flakiness: --runs must be at least 1, not {args.runs}", file=sys.stderr)
        return 2
    invoke = Path(sys.executable).parent / "invoke"
    if not invoke.exists():
        print(f"verdict_flakiness: no invoke beside {sys.executable}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="verdict-flakiness-"))
    out = args.out or work / "flakiness.json"
    cluster = LocalCluster(work / "pg")
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    runs: list[dict[str, Any]] = []
    try:
        url = cluster.up().url
        for number in range(1, args.runs + 1):
            run = run_once(invoke, args.profile, work / "reports", url)
            runs.append(run)
            print(
                f"run {number:2d}: {run['decision']:<11} {run['wall_s']:5.1f} s "
                f"load {run.get('load_average_1m', 0):4.1f}  "
                + (" | ".join(run["reasons"])[:300] if run["decision"] != "GO" else ""),
                flush=True,
            )
            _write(out, commit, args.profile, runs)
    finally:
        cluster.destroy()
    counts = Counter(run["decision"] for run in runs)
    most, times = counts.most_common(1)[0]
    print(f"verdicts: {dict(counts)}; {most} {times} of {len(runs)}; figures in {out}")
    return 0 if times >= len(runs) - 1 else 1


def _write(out: Path, commit: str, profile: str, runs: list[dict[str, Any]]) -> None:
    counts = Counter(run["decision"] for run in runs)
    walls = sorted(run["wall_s"] for run in runs)
    document = {
        "commit": commit,
        "profile": profile,
        "runs": len(runs),
        "verdicts": dict(counts),
        "wall_s": {"min": walls[0], "median": walls[len(walls) // 2], "max": walls[-1]},
        "details": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
