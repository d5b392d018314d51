"""Time and peak memory of the list-append checker (anomalies/) on synthetic histories.

    python benchmarks/history_check_speed.py [--sizes 10000 30000 100000] [--repeats 3]
        [--inject 20] [--json PATH]

Each history is a simulated serializable execution: 50 concurrent processes, each invoking a
transaction of 1-4 micro-operations (reads or appends, half and half) over 30 active keys;
a transaction takes effect at one instant between its invoke and its completion, in that
order, so the history is strictly serializable. As in Elle's generator a key is retired
after 128 appends and a fresh one takes its place, which keeps reads short. 1% of
transactions fail (no effect) and 0.5% end `info` (half of those took effect; the process is
then replaced). `--inject N` turns N pairs of transactions into write skews (each reads the
key the other appends, both before either append): N G2-item cycles for the checker to find.

Every check runs in a fresh Python process, so its peak RSS (ru_maxrss) is the checker's own
(interpreter and imports included). The SCC step is also timed alone on the whole graph's
edges with networkx and, when installed, rustworkx.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 50
ACTIVE_KEYS = 30
APPENDS_PER_KEY = 128
MAX_MICRO_OPS = 4
FAIL_RATE = 0.01
INFO_RATE = 0.005
# Mean durations in nanoseconds: invoke to effect, effect to completion, think time.
TO_EFFECT_NS = 2_000_000
TO_COMPLETION_NS = 1_000_000
THINK_NS = 200_000
DEFAULT_SIZES = (10_000, 30_000, 100_000)
SEED = 20261127


def generate_history(transactions: int, inject: int, seed: int = SEED) -> list[str]:
    """Simulate a strictly serializable execution and return its history as JSON lines."""
    rng = random.Random(seed)
    state: dict[str, list[int]] = {}
    active = [f"k{n}" for n in range(ACTIVE_KEYS)]
    next_key = ACTIVE_KEYS
    next_value: dict[str, int] = {}
    # Effects (in effect order) that start a write-skew pair; never two in a row.
    skew_at = set(rng.sample(range(0, transactions - 2, 2), inject)) if inject else set()
    lines: list[tuple[int, int, str]] = []
    # Heap of (time, sequence, action, process, txn number).
    heap: list[tuple[int, int, str, int, int]] = []
    sequence = 0
    for process in range(PROCESSES):
        heap.append((rng.randrange(TO_EFFECT_NS), sequence, "invoke", process, -1))
        sequence += 1
    heapq.heapify(heap)
    next_process = PROCESSES
    started = 0
    skew_partner: list[tuple[str, str, list[int]]] = []
    effects = 0
    txn_values: dict[int, list[list[Any]]] = {}
    txn_outcome: dict[int, str] = {}

    def fresh_value(key: str) -> int:
        value = next_value.get(key, 0) + 1
        next_value[key] = value
        return value

    def retire_full_keys() -> None:
        nonlocal next_key
        for slot, key in enumerate(active):
            if next_value.get(key, 0) >= APPENDS_PER_KEY:
                active[slot] = f"k{next_key}"
                next_key += 1

    def take_effect(effect_number: int, applies: bool) -> list[list[Any]]:
        if skew_partner:
            # The second of a write-skew pair, taking effect right after the first: it read
            # the key the first appended to as it was before that append.
            read_key, append_key, seen = skew_partner.pop()
            value = fresh_value(append_key)
            state.setdefault(append_key, []).append(value)
            return [["r", read_key, seen], ["append", append_key, value]]
        if effect_number in skew_at:
            first, second = rng.sample(active, 2)
            seen_first = list(state.get(first, []))
            seen_second = list(state.get(second, []))
            value = fresh_value(second)
            state.setdefault(second, []).append(value)
            skew_partner.append((second, first, seen_second))
            return [["r", first, seen_first], ["append", second, value]]
        mops: list[list[Any]] = []
        for _ in range(rng.randint(1, MAX_MICRO_OPS)):
            key = rng.choice(active)
            if rng.random() < 0.5:
                mops.append(["r", key, list(state.get(key, []))])
            else:
                value = fresh_value(key)
                mops.append(["append", key, value])
                if applies:
                    state.setdefault(key, []).append(value)
        retire_full_keys()
        return mops

    def event(time: int, kind: str, process: int, value: list[list[Any]]) -> None:
        line = json.dumps(
            {"time": time, "process": process, "type": kind, "f": "txn", "value": value}
        )
        lines.append((time, len(lines), line))

    invoke_times: dict[int, tuple[int, int]] = {}
    while heap:
        time, _, action, process, txn = heapq.heappop(heap)
        if action == "invoke":
            if started >= transactions:
                continue
            txn = started
            started += 1
            invoke_times[txn] = (time, process)
            effect = time + 1 + int(rng.expovariate(1 / TO_EFFECT_NS))
            heapq.heappush(heap, (effect, sequence, "effect", process, txn))
        elif action == "effect":
            roll = rng.random()
            outcome = (
                "fail" if roll < FAIL_RATE else "info" if roll < FAIL_RATE + INFO_RATE else "ok"
            )
            if skew_partner or effects in skew_at:
                outcome = "ok"
            applies = outcome == "ok" or (outcome == "info" and rng.random() < 0.5)
            txn_values[txn] = take_effect(effects, applies)
            effects += 1
            txn_outcome[txn] = outcome
            done = time + 1 + int(rng.expovariate(1 / TO_COMPLETION_NS))
            heapq.heappush(heap, (done, sequence, "complete", process, txn))
        else:
            value = txn_values.pop(txn)
            invoke_time, _ = invoke_times.pop(txn)
            invoked = [[f, k, None if f == "r" else v] for f, k, v in value]
            event(invoke_time, "invoke", process, invoked)
            outcome = txn_outcome.pop(txn)
            event(time, outcome, process, value if outcome == "ok" else invoked)
            if outcome == "info":
                # Jepsen never reuses a process whose operation may still be running.
                process = next_process
                next_process += 1
            think = time + 1 + int(rng.expovariate(1 / THINK_NS))
            heapq.heappush(heap, (think, sequence, "invoke", process, -1))
        sequence += 1
    lines.sort()
    return [line for _, _, line in lines]


CHILD = r"""
import json, resource, sys, time
from anomalies import check_history
from anomalies.graph import build_graph, graph_edges, strongly_connected_components
from anomalies.history import read_history
from anomalies.models import order_edges_needed

path, model, compare = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
started = time.perf_counter()
result = check_history(path, require=model)
total = time.perf_counter() - started
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
report = {
    "total_s": total, "peak_rss_mb": rss_mb, "timing_s": dict(result.timing_s),
    "edges": result.edges, "counts": dict(result.anomaly_counts), "valid": result.valid,
}
if compare:
    graph = build_graph(read_history(path), order_edges_needed(model))
    edges = list(graph_edges(graph))
    for backend in ("networkx", "rustworkx"):
        try:
            began = time.perf_counter()
            components = strongly_connected_components(edges, backend=backend)
            report[f"scc_{backend}_s"] = time.perf_counter() - began
            report[f"scc_{backend}_components"] = len(components)
        except ImportError:
            report[f"scc_{backend}_s"] = None
print(json.dumps(report))
"""


def run_check(path: Path, model: str, compare: bool) -> dict[str, Any]:
    """Check one history in a fresh process and return its figures."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), model, "1" if compare else "0"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(done.stdout)


def median_of(runs: list[dict[str, Any]], field: str) -> float | None:
    """Return the median of one figure over repeated runs, None when never measured."""
    values = [run[field] for run in runs if run.get(field) is not None]
    return statistics.median(values) if values else None


def main() -> None:
    """Generate each size, check it `--repeats` times, print and optionally save medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inject", type=int, default=20, help="write-skew pairs to inject")
    parser.add_argument("--model", default="serializable")
    parser.add_argument("--json", type=Path, default=None)
    arguments = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="history-check-") as folder:
        for size in arguments.sizes:
            path = Path(folder) / f"history-{size}.jsonl"
            path.write_text("\n".join(generate_history(size, arguments.inject)) + "\n")
            megabytes = path.stat().st_size / 1e6
            runs = [
                run_check(path, arguments.model, compare=repeat == 0)
                for repeat in range(arguments.repeats)
            ]
            row = {
                "transactions": size,
                "file_mb": round(megabytes, 1),
                "edges": runs[0]["edges"],
                "counts": runs[0]["counts"],
                "total_s": median_of(runs, "total_s"),
                "peak_rss_mb": median_of(runs, "peak_rss_mb"),
                "read_s": statistics.median(r["timing_s"]["read"] for r in runs),
                "graph_s": statistics.median(r["timing_s"]["graph"] for r in runs),
                "scc_s": statistics.median(r["timing_s"]["scc"] for r in runs),
                "cycles_s": statistics.median(r["timing_s"]["cycles"] for r in runs),
                "scc_networkx_s": runs[0].get("scc_networkx_s"),
                "scc_rustworkx_s": runs[0].get("scc_rustworkx_s"),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(
        "| transactions | file MB | edges | total s | read s | graph s | SCC s | cycles s "
        "| peak RSS MB | SCC networkx s | SCC rustworkx s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        rustworkx = "n/a" if row["scc_rustworkx_s"] is None else f"{row['scc_rustworkx_s']:.2f}"
        print(
            f"| {row['transactions']:,} | {row['file_mb']} | {row['edges']:,} "
            f"| {row['total_s']:.2f} | {row['read_s']:.2f} | {row['graph_s']:.2f} "
            f"| {row['scc_s']:.2f} | {row['cycles_s']:.2f} | {row['peak_rss_mb']:.0f} "
            f"| {row['scc_networkx_s']:.2f} | {rustworkx} |"
        )
    if arguments.json:
        arguments.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
