"""The capacity search: exact sequences of rates with a fake judge, then one real short run.

The pure part (doubling, bisecting, the time budget, stopping on a failure) runs against a
judge that passes every rate up to a limit and a clock that each step moves forward; the real
part runs two short steps against the project's cluster and a real Hypercorn server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from pipeline.capacity import (
    CONVERGED,
    FATAL,
    NOTHING_SUSTAINABLE,
    OUT_OF_TIME,
    SearchPlan,
    StepOutcome,
    next_rate,
    search,
)
from pipeline.capacity_run import (
    CAPACITY_FILE,
    CapacitySettings,
    capacity_command,
    run_capacity,
)
from pipeline.exclusive import exclusive_database
from reporting.capacity import (
    StepJudgement,
    judge_step,
    limit_observations,
    measured_window,
    step_resources,
)
from reporting.verdict import ScenarioEvidence
from results.record_format import Record

STEP_COST_S = 20.0


class FakeClock:
    """A clock that only moves when a step runs."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def judge_up_to(
    limit_rps: float, clock: FakeClock, *, fatal_at: float | None = None
) -> tuple[Callable[[float], StepOutcome], list[float]]:
    """Return a step that sustains every rate up to ``limit_rps``, and the rates it was asked."""
    asked: list[float] = []

    def run_step(rate: float) -> StepOutcome:
        asked.append(rate)
        clock.now += STEP_COST_S
        if fatal_at is not None and rate >= fatal_at:
            return StepOutcome(rate, passed=False, fatal=True, reasons=("integrity violated",))
        return StepOutcome(rate, passed=rate <= limit_rps)

    return run_step, asked


def plan(start: float = 100.0, max_duration_s: float = 1000.0) -> SearchPlan:
    # Nominal step: 3 + 10 + 7 = 20 s, the fake step's cost.
    return SearchPlan(
        start_rate_rps=start,
        max_duration_s=max_duration_s,
        step_s=10.0,
        warmup_s=3.0,
        overhead_guess_s=7.0,
    )


def test_doubles_then_bisects_until_within_ten_percent() -> None:
    clock = FakeClock()
    run_step, asked = judge_up_to(700.0, clock)
    result = search(run_step, plan(), clock=clock)
    # 800 fails: bisect 400..800 → 600 (ok) → 700 (ok) → 750 (fails); 700..750 is 7 % apart.
    assert asked == [100.0, 200.0, 400.0, 800.0, 600.0, 700.0, 750.0]
    assert [step.passed for step in result.steps] == [True] * 3 + [False, True, True, False]
    assert result.stop_reason == CONVERGED
    assert result.sustainable_rate_rps == 700.0
    assert result.first_failed_rate_rps == 750.0
    assert [step.wall_s for step in result.steps] == [STEP_COST_S] * 7


def test_bisecting_stops_once_the_bracket_is_within_ten_percent_of_the_good_rate() -> None:
    clock = FakeClock()
    run_step, asked = judge_up_to(140.0, clock)
    result = search(run_step, plan(start=50.0), clock=clock)
    # 200 fails: 150 fails, 125 holds (20 % apart), 137.5 holds: 150 is 9.1 % above it.
    assert asked == [50.0, 100.0, 200.0, 150.0, 125.0, 137.5]
    assert result.sustainable_rate_rps == 137.5
    assert result.first_failed_rate_rps == 150.0
    assert result.stop_reason == CONVERGED


def test_a_failed_first_step_halves_until_one_holds() -> None:
    clock = FakeClock()
    run_step, asked = judge_up_to(30.0, clock)
    result = search(run_step, plan(start=100.0), clock=clock)
    # Never higher after a failure: 50, 25 (holds), then bisect 25..50, midpoints rounded to
    # a tenth (31.25 → 31.3, 28.15 → 28.2, 29.75 → 29.8).
    assert asked == [100.0, 50.0, 25.0, 37.5, 31.3, 28.2, 29.8]
    assert result.sustainable_rate_rps == 29.8
    assert result.first_failed_rate_rps == 31.3


def test_nothing_sustainable_stops_below_the_minimum_rate() -> None:
    clock = FakeClock()
    run_step, asked = judge_up_to(0.0, clock)
    result = search(run_step, plan(start=4.0), clock=clock)
    assert asked == [4.0, 2.0, 1.0]
    assert result.stop_reason == NOTHING_SUSTAINABLE
    assert result.sustainable_rate_rps is None
    assert result.first_failed_rate_rps == 1.0


def test_a_fatal_step_stops_the_search_at_once() -> None:
    clock = FakeClock()
    run_step, asked = judge_up_to(10_000.0, clock, fatal_at=400.0)
    result = search(run_step, plan(), clock=clock)
    assert asked == [100.0, 200.0, 400.0]
    assert result.stop_reason == FATAL
    assert "integrity violated" in result.stop_detail
    assert result.sustainable_rate_rps == 200.0


def test_no_step_starts_that_would_overrun_max_duration() -> None:
    clock = FakeClock()
    run_step, asked = judge_up_to(10_000.0, clock)
    # Room for 3 steps of 20 s in 70 s; a 4th would end at 80 s.
    result = search(run_step, plan(max_duration_s=70.0), clock=clock)
    assert asked == [100.0, 200.0, 400.0]
    assert result.stop_reason == OUT_OF_TIME
    assert "800 req/s" in result.stop_detail
    assert clock.now - 1000.0 <= 70.0
    assert result.sustainable_rate_rps == 400.0
    assert result.first_failed_rate_rps is None


def test_the_budget_is_planned_with_the_longest_step_so_far() -> None:
    clock = FakeClock()
    asked: list[float] = []

    def slow_second_step(rate: float) -> StepOutcome:
        asked.append(rate)
        clock.now += 40.0 if len(asked) == 2 else 20.0
        return StepOutcome(rate, passed=True)

    # 20 + 40 = 60 s spent, 45 s left: the guess (20 s) would fit, the longest step (40) too,
    # so a third runs (20 s); then 25 s left < 40 s: stop.
    result = search(slow_second_step, plan(max_duration_s=105.0), clock=clock)
    assert asked == [100.0, 200.0, 400.0]
    assert result.stop_reason == OUT_OF_TIME
    assert clock.now - 1000.0 <= 105.0


def test_next_rate_ignores_a_pass_above_the_first_failure() -> None:
    steps = [
        StepOutcome(100.0, True),
        StepOutcome(200.0, False),
        StepOutcome(150.0, True),
        StepOutcome(175.0, False),
        StepOutcome(300.0, True),  # noise above a failure: not sustainable
    ]
    assert next_rate(steps, start_rate_rps=100.0) == 162.5


# -- one step's figures ----------------------------------------------------------------------
def record(started_s: float, latency_ms: float, status: int = 200, code: str = "") -> Record:
    return Record(
        request_id=f"r{started_s}",
        operation="reserve",
        authorization_id="a",
        status=status,
        code=code,
        latency_ms=latency_ms,
        started_s=started_s,
        transaction_id="t" if status == 200 else "",
        kind="reserve",
        units=1,
    )


def test_the_measured_window_leaves_out_the_warm_up() -> None:
    records = [
        record(0.2, 2000.0),  # warm-up: not measured, but answered inside the window (at 2.2 s)
        record(0.5, 10.0),  # warm-up, answered in the warm-up
        record(1.0, 20.0),
        record(1.5, 30.0, status=409, code="insufficient_units"),
        record(2.0, 40.0),
        record(2.9, 500.0),  # intended inside, answered after the window (3.4 s)
        record(3.0, 5.0),  # after the window
    ]
    whole = {
        "config": {"thresholds": {"p95_ms": 100.0}, "expected_error_codes": ["insufficient_units"]},
        "open_model": {"arrival_rate_rps": 2.0, "scheduled_requests": 9, "sent_requests": 7},
        "run": {"exit_code": 0, "crashed": False, "timed_out": False},
        "generator": {"bottleneck": False},
    }
    window = measured_window(whole, records, warmup_s=1.0, step_s=2.0)
    assert window["totals"]["requests"] == 4
    assert window["totals"]["errors"] == 1
    assert window["latency_ms"]["p50"] == 30.0
    assert window["latency_ms"]["max"] == 500.0
    # Answered inside [1, 3): the ones started at 0.2, 1.0, 1.5 and 2.0 → 4 in 2 s.
    assert window["totals"]["throughput_rps"] == 2.0
    assert window["totals"]["ok_rps"] == 1.5
    # The 2 slots never sent are charged to the window.
    assert window["open_model"] == {
        "arrival_rate_rps": 2.0,
        "scheduled_requests": 6,
        "sent_requests": 4,
    }


def test_a_step_is_judged_by_the_verdicts_scenario_rules() -> None:
    integrity = {"ok": True, "checks": []}
    service = {"alive": True, "events": [], "healthz": {"failures": 0}, "delta": {}}
    result = {
        "config": {"thresholds": {"p95_ms": 100.0}, "expected_error_codes": []},
        "run": {"exit_code": 0, "crashed": False, "timed_out": False},
        "totals": {"requests": 10, "error_rate": 0.0},
        "latency_ms": {"p95": 99.0},
        "generator": {"bottleneck": False},
    }
    held = judge_step(ScenarioEvidence("high_throughput", result, integrity, service))
    assert held == StepJudgement(passed=True, fatal=False, reasons=())
    slow = {**result, "latency_ms": {"p95": 120.0}}
    failed = judge_step(ScenarioEvidence("high_throughput", slow, integrity, service))
    assert not failed.passed
    assert not failed.fatal
    assert failed.reasons == ("p95_ms 120.0 ms against at most 100.0 ms, missed by 20.0 %",)
    busy = {**result, "generator": {"bottleneck": True, "reasons": ["lag"]}}
    flagged = judge_step(ScenarioEvidence("high_throughput", busy, integrity, service))
    assert flagged.reasons == ("the load generator was the bottleneck (lag)",)
    broken = {"ok": False, "checks": [{"name": "no_overbooking", "ok": False, "violations": 2}]}
    fatal = judge_step(ScenarioEvidence("high_throughput", result, broken, service))
    assert fatal.fatal
    assert not fatal.passed


def test_resources_per_request_and_what_ran_out() -> None:
    cores = {"machine": 1.9, "service": 0.9, "postgres": 0.3, "generator": 0.2}
    service = {
        "delta": {"db_pool_timeouts_total": 5.0, "db_serialization_retries_total": 200.0},
        "peaks": {"db_pool_waiting": 12.0, "db_pool_checked_out": 8.0, "db_pool_size": 8.0},
    }
    resources = step_resources(cores, service, achieved_rps=300.0, requests=1000)
    assert resources["service_cpu_ms_per_request"] == 3.0
    assert resources["postgres_cpu_ms_per_request"] == 1.0
    assert resources["other_cpu_cores"] == 0.5
    assert resources["pool_timeouts_per_request"] == 0.005
    assert resources["serialization_retries_per_request"] == 0.2
    assert resources["serialization_conflicts_per_request"] is None
    found = limit_observations(
        resources, service_workers=1, cpu_count=2, generator_bottleneck=False
    )
    assert [line.split(" (")[0] for line in found] == [
        "the service's connection pool",
        "every pooled connection was in use, 12 requests waiting at the peak",
        "service worker CPU",
        "the machine's 2 cores",
        "serialization retries",
    ]


# -- a real run ----------------------------------------------------------------------------
def test_a_short_real_run_writes_capacity_json_and_the_report(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("LOADTEST_FIXTURES_PATH", str(tmp_path / "test-data.json"))
    # Test-only step length: 1 s of warm-up and 2 s measured; 18 s leave room for two steps.
    settings = CapacitySettings(
        scenario="high_throughput",
        max_duration_s=18.0,
        start_rate_rps=20.0,
        step_s=2.0,
        warmup_s=1.0,
    )
    outcome = run_capacity(
        settings, database_url=database_url, reports_root=tmp_path / "reports", progress=False
    )
    capacity = json.loads((outcome.run_dir / CAPACITY_FILE).read_text())
    steps = capacity["steps"]
    assert steps, capacity["stop_detail"]
    assert steps[0]["rate_rps"] == 20.0
    assert capacity["settings"]["step_s"] == 2.0
    # Each rate follows from the ones before it by the search's own rule.
    outcomes = [StepOutcome(s["rate_rps"], s["passed"], s["fatal"]) for s in steps]
    for index, step in enumerate(steps[1:], start=1):
        assert step["rate_rps"] == next_rate(outcomes[:index], start_rate_rps=20.0)
    for step in steps:
        assert step["integrity_ok"], step
        folder = outcome.run_dir / step["result_dir"]
        integrity = json.loads((folder / "integrity.json").read_text())
        assert integrity["ok"]
        measured = json.loads((folder / "measured.json").read_text())
        whole = json.loads((folder / "result.json").read_text())
        # The warm-up is excluded: the window holds fewer requests than the whole step.
        assert 0 < measured["totals"]["requests"] < whole["totals"]["requests"]
        assert measured["measured_window"] == {"from_s": 1.0, "to_s": 3.0, "warmup_s": 1.0}
        assert step["requests"] == measured["totals"]["requests"]
        assert step["latency_ms"]["p95"] == measured["latency_ms"]["p95"]
        assert step["resources"]["service_cpu_cores"] is not None
        assert step["resources"]["generator_cpu_cores"] is not None
        if step["passed"]:
            assert step["reasons"] == []
        else:
            assert step["reasons"]
    good = [s["rate_rps"] for s in steps if s["passed"]]
    if capacity["sustainable"] is not None:
        assert capacity["sustainable"]["rate_rps"] == max(good)
        published = json.loads((outcome.run_dir / "high_throughput" / "result.json").read_text())
        assert published["measured_window"]["warmup_s"] == 1.0
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert summary["capacity"]["steps"] == steps
    html = (outcome.run_dir / "report.html").read_text()
    assert 'id="capacity"' in html
    assert "offered rate" in html


# -- bad input -----------------------------------------------------------------------------
def only_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert captured.out == ""
    return lines[0]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_duration", "abc", "--max-duration must be a positive number, not 'abc'"),
        ("max_duration", "0", "--max-duration must be a positive number, not '0'"),
        ("max_duration", "-30", "--max-duration must be a positive number, not '-30'"),
        ("max_duration", "nan", "--max-duration must be a positive number, not 'nan'"),
        ("max_duration", "inf", "--max-duration must be a positive number, not 'inf'"),
        ("max_duration", "5", "--max-duration 5 s leaves no room for one step"),
        ("start_rate", "0", "--start-rate must be a positive number, not '0'"),
        ("start_rate", "fast", "--start-rate must be a positive number, not 'fast'"),
        ("step_duration", "-1", "--step-duration must be a positive number, not '-1'"),
        ("step_duration", "5", "--step-duration must be at least 10 s, not 5"),
        ("workers", "1.5", "--workers must be a whole number, not '1.5'"),
        ("scenario", "nope", "--scenario must be one of high_contention, high_throughput"),
        ("strategy", "nope", "--strategy must be one of serializable"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2_before_anything_starts(
    option: str,
    value: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # An unreachable database: bad input must be refused before anything reaches for one.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    reports = tmp_path / "reports"
    with pytest.raises(SystemExit) as exit_info:
        capacity_command(**{option: value}, reports_dir=str(reports))  # type: ignore[arg-type]
    assert exit_info.value.code == 2
    assert only_error_line(capsys).startswith(f"error: {message}")
    assert not reports.exists()


def test_a_capacity_run_is_refused_while_another_load_test_holds_the_database(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    reports = tmp_path / "reports"
    with exclusive_database(database_url), pytest.raises(SystemExit) as exit_info:
        capacity_command(max_duration="60", reports_dir=str(reports))
    assert exit_info.value.code == 2
    assert only_error_line(capsys).startswith("error: another load test is running")
    assert not reports.exists()
    # Nothing was seeded either: the database is as migrated, empty.
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM authorizations").fetchone()[0] == 0
