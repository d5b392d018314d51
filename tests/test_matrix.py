"""The strategy matrix: headroom, the recommendation, an unsafe run's violations, bad input."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reporting.compare import Request, ScenarioSample, blocks_from_requests
from reporting.compare_inputs import RunSample
from reporting.matrix import (
    StrategyRuns,
    cell_figures,
    cheapest_without_anomaly,
    headroom,
    matrix_document,
    meets_every_threshold,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "high_throughput"


def summary(run_id: str, p95: float, *, integrity_ok: bool = True) -> dict[str, Any]:
    """A summary.json with one scenario: p95 against 150 ms, error rate against 2 %."""
    checks = [
        {"name": "no_overbooking", "ok": integrity_ok, "violations": 0 if integrity_ok else 4}
    ]
    return {
        "run_id": run_id,
        "verdict": {"decision": "GO" if p95 <= 150 and integrity_ok else "CONDITIONAL"},
        "scenarios": [
            {
                "scenario": SCENARIO,
                "thresholds": [
                    {"name": "p95_ms", "limit": 150.0, "measured": p95, "ok": p95 <= 150},
                    {"name": "error_rate_max", "limit": 0.02, "measured": 0.01, "ok": True},
                ],
                "integrity": {"ok": integrity_ok, "checks": checks},
            }
        ],
    }


def run(run_id: str, mean_ms: float, seed: int) -> RunSample:
    rng = random.Random(seed)
    made = [
        Request(i / 50, rng.gauss(mean_ms, 3), False, False, False) for i in range(500)
    ]  # 10 s at 50/s
    sample = ScenarioSample(SCENARIO, blocks_from_requests(made), integrity_ok=True)
    return RunSample(
        Path(run_id), run_id, "smoke", None, None, None, {SCENARIO: sample},
        {SCENARIO: tuple(r.latency_ms for r in made)},
    )  # fmt: skip


def test_headroom_is_the_smallest_margin_of_any_threshold_in_any_run() -> None:
    # p95 120 of 150: 20 % left; error rate 1 % of 2 %: 50 % left. The second run: 10 %.
    margin, tightest = headroom([summary("a", 120.0), summary("b", 135.0)])
    assert margin == pytest.approx(0.10)
    assert tightest == f"{SCENARIO} p95_ms"


def test_a_minimum_error_rate_counts_its_margin_upwards() -> None:
    document = summary("a", 100.0)
    document["scenarios"][0]["thresholds"] = [
        {"name": "error_rate_min", "limit": 0.10, "measured": 0.12, "ok": True}
    ]
    assert headroom([document])[0] == pytest.approx(0.2)


def test_recommends_the_strategy_meeting_every_threshold_with_most_headroom() -> None:
    strategies = [
        StrategyRuns("serializable", (run("s1", 30, 1), run("s2", 30, 2)),
                     (summary("s1", 140.0), summary("s2", 120.0))),
        StrategyRuns("for_update", (run("f1", 20, 3), run("f2", 20, 4)),
                     (summary("f1", 100.0), summary("f2", 110.0))),
        StrategyRuns("unsafe", (run("u1", 10, 5), run("u2", 10, 6)),
                     (summary("u1", 50.0, integrity_ok=False), summary("u2", 50.0))),
    ]  # fmt: skip
    document = matrix_document(strategies, profile="smoke", repeats=2)
    assert document["recommendation"] == "for_update"
    rows = {row["strategy"]: row for row in document["strategies"]}
    assert rows["for_update"]["headroom"] == pytest.approx(40 / 150)
    # The fastest strategy is not recommended: it overbooked, and says where.
    assert not rows["unsafe"]["meets_every_threshold"]
    assert rows["unsafe"]["integrity_violations"] == [
        f"u1 {SCENARIO}: no_overbooking (4 violation(s))"
    ]
    # Against the reference (the first strategy): 10 ms faster at p50, judged better.
    p50 = next(
        m for m in document["against_reference"]["for_update"][SCENARIO] if m["metric"] == "p50_ms"
    )
    assert p50["low"] < -10 * 0.5
    assert p50["judgement"] == "better"


def test_no_recommendation_when_no_strategy_meets_every_threshold() -> None:
    strategies = [StrategyRuns("serializable", (run("s1", 30, 1),), (summary("s1", 200.0),))]
    document = matrix_document(strategies, profile="smoke", repeats=1)
    assert document["recommendation"] is None
    assert "closest: serializable" in document["recommendation_reason"]
    assert not meets_every_threshold([summary("s1", 200.0)])


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--strategies", "serializable,bogus"], "--strategy must be one of"),
        (["--strategies", "atomic,atomic"], "each strategy once"),
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--repeats", "two"], "--repeats must be a whole number"),
    ],
)
def test_matrix_refuses_bad_input_before_running(
    tmp_path: Path, options: list[str], expected: str
) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "invoke", "load-test.matrix", "--reports-dir", str(tmp_path),
         *options],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert expected in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def _cell_summary(scenario: str, violations: int, service_ms: float, p95: float) -> dict:
    checks = [{"name": "no_overlapping_sessions", "ok": violations == 0, "violations": violations}]
    return {
        "scenarios": [
            {
                "scenario": scenario,
                "integrity": {"checks": checks},
                "latency_ms": {"p95": p95, "p99": 2 * p95},
                "cost": {
                    "committed_per_s": 100.0,
                    "retries_per_committed": 0.5,
                    "service_cpu_ms_per_committed": service_ms,
                    "postgres_cpu_ms_per_committed": 1.0,
                },
            }
        ]
    }


def test_cells_sum_anomalies_by_rule_and_name_the_cheapest_cell_without_one() -> None:
    scenario = "session_scheduling"
    cells = {
        # Cheapest of all, but it double-booked in one repeat: never recommended.
        "serializable/interactive/repeatable_read": cell_figures(
            [_cell_summary(scenario, 0, 2.0, 10.0), _cell_summary(scenario, 3, 2.0, 12.0)],
            scenario,
        ),
        "serializable/interactive/serializable": cell_figures(
            [_cell_summary(scenario, 0, 4.0, 20.0), _cell_summary(scenario, 0, 6.0, 30.0)],
            scenario,
        ),
        "for_update/interactive/read_committed": cell_figures(
            [_cell_summary(scenario, 0, 6.0, 15.0)], scenario
        ),
    }
    skewed = cells["serializable/interactive/repeatable_read"]
    assert skewed["anomalies"] == {"no_overlapping_sessions": 3}
    serializable = cells["serializable/interactive/serializable"]
    assert serializable["anomalies"] == {}
    assert serializable["service_cpu_ms_per_committed"] == 5.0  # the median of 4 and 6
    assert serializable["cpu_ms_per_committed"] == 6.0  # service + PostgreSQL
    assert serializable["p95"] == 25.0
    assert cheapest_without_anomaly(cells) == "serializable/interactive/serializable"
    with_cycles = _cell_summary("isolation_append", 0, 1.0, 5.0)
    with_cycles["scenarios"][0]["isolation"] = {
        "forbidden_kinds": ["G2-item"],
        "anomaly_counts": {"G2-item": 5, "G-nonadjacent": 1},
    }
    assert cell_figures([with_cycles], "isolation_append")["anomalies"] == {"G2-item": 5}
    assert cheapest_without_anomaly({"x": skewed}) is None
