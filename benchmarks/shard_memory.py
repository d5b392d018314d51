"""Measure a generator process's memory for 1,000,000 recorded requests, spilling and not.

    python benchmarks/shard_memory.py [--requests 1000000] [--json PATH]

Each case runs in a fresh interpreter: it builds a Recorder (molotov_scenarios/recorder.py),
records `--requests` realistic records (shard-prefixed request ids and Idempotency-Keys,
uuid transaction ids, a live-progress update every 10,000 as the watch task does about once a
second), writes the files as the last worker does, and prints its peak RSS (getrusage
ru_maxrss) before and after. Cases: `spill` (the default, records appended to disk every
20,000), `memory` (spilling off: every record held to the end, as before), and `summarise`
(what the runner does once Molotov has ended: read the files back into compact columns,
results.record_table, and write result.json, operations.csv, unanswered.csv, history.jsonl),
and `merge` (the same over two shards' folders of half the requests each, as
`load-test.merge` does once it has checked that the shards belong together).

A script, not a test: it prints figures and passes or fails on nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = PROJECT_ROOT / ".loadtest" / "shard_memory.json"

CASE = r"""
import json, os, resource, sys, time, uuid, random
from pathlib import Path
from molotov_scenarios.recorder import Recorder
from results.record_format import Record

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

case, requests, folder, prefix = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
if case in ("summarise", "merge"):
    # What the runner does once Molotov has ended: read every process's records back, build
    # result.json, and write operations.csv, unanswered.csv and history.jsonl beside it.
    from results.collect import collect
    from load_runner.profiles import ScenarioConfig, Thresholds
    from load_runner.runner import MolotovOutcome, write_results, build_result
    config = ScenarioConfig(scenario="high_throughput", profile="benchmark", users=50,
                            duration_s=1000.0, ramp_up_s=0.0, think_time_s=(0.0, 0.0),
                            processes=1, units_per_request=2, arrival_rate_rps=None,
                            thresholds=Thresholds())
    before = peak_mb()
    started = time.perf_counter()
    # A merge reads every shard's folder into one table (load_runner/merge.py) and goes on
    # exactly as the runner does.
    collected = collect([Path(part) for part in str(folder).split(os.pathsep)])
    outcome = MolotovOutcome(exit_code=0, timed_out=False, wall_s=1000.0, cpu_seconds=1.0,
                             stderr_tail="")
    result = build_result(config, "http://127.0.0.1:1", outcome, collected, time.time())
    write_results(Path(str(folder).split(os.pathsep)[0]).parent / case, result, collected)
    print(json.dumps({"case": case, "requests": result["totals"]["requests"],
                      "rss_before_mb": before, "peak_rss_mb": peak_mb(),
                      "seconds": time.perf_counter() - started}))
    sys.exit()
rng = random.Random(1)
recorder = Recorder(folder, time.time(), prefix)
if case == "memory":
    recorder.spill_every = 10**12
before = peak_mb()
authorizations = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(55)]
started = time.perf_counter()
for sequence in range(requests):
    ok = sequence % 10 != 0
    recorder.record(Record(
        request_id=recorder.next_request_id(), operation="reserve",
        authorization_id=authorizations[sequence % 55], status=200 if ok else 409,
        code="" if ok else "insufficient_units", latency_ms=rng.uniform(1, 50),
        started_s=sequence / 1000, transaction_id=str(uuid.UUID(int=rng.getrandbits(128),
        version=4)) if ok else "", kind="reserve", units=2,
        idempotency_key="%s%032x" % (prefix, rng.getrandbits(128)), attempt=1,
        worker=f"{prefix}{recorder.pid}-{sequence % 50}", outcome="ok" if ok else "fail"))
    if sequence % 10_000 == 0:
        recorder.write_progress()
recorder.write_progress()
recorder.flush()
print(json.dumps({"case": case, "requests": recorder.recorded, "rss_before_mb": before,
                  "peak_rss_mb": peak_mb(), "seconds": time.perf_counter() - started}))
"""


def run_case(case: str, requests: int, folder: Path | str, prefix: str = "s1-") -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-c", CASE, case, str(requests), str(folder), prefix],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="A generator process's memory per records.")
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="shard-memory-") as folder:
        for case in ("spill", "memory"):
            target = Path(folder) / case
            row = run_case(case, args.requests, target)
            row["records_file_mb"] = (
                sum(p.stat().st_size for p in target.glob("records-*.csv")) / 2**20
            )
            rows.append(row)
        rows.append(run_case("summarise", args.requests, Path(folder) / "spill"))
        # Two shards of half the requests each, merged: every shard's records in one table.
        halves = [Path(folder) / f"shard-{index}" for index in (1, 2)]
        for index, half in enumerate(halves, start=1):
            run_case("spill", args.requests // 2, half, prefix=f"s{index}-")
        rows.append(run_case("merge", args.requests, os.pathsep.join(map(str, halves))))
    for row in rows:
        print(
            f"{row['case']:8s} {row['requests']:>9,} records: peak RSS {row['peak_rss_mb']:6.0f} MB"
            f" (interpreter and imports {row['rss_before_mb']:.0f} MB)"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"requests": args.requests, "cases": rows}, indent=2))
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
