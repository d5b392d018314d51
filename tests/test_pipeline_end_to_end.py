"""The whole pipeline as a user runs it: `invoke load-test.*` in a subprocess, real everything.

Each run gets a fresh marked database (DATABASE_URL) and a reports folder of its own; the
figures in summary.json and report.html are checked against the result files the runner
wrote, and the verdict is derived again here, by plain arithmetic, from those files. The
runs that check the plumbing use the smoke profile with a few seconds of load per scenario
(LOADTEST_PROFILES_PATH): what they check does not depend on how long the load lasts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from support_profiles import shortened_profiles

from load_runner.profiles import PROFILES_PATH_ENV, SCENARIOS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEDULING = "session_scheduling"  # its operations are sessions, not ledger rows
LIST_APPEND = "isolation_append"  # its transactions are lists, checked for anomalies
RUN_TIMEOUT_S = 240
NO_GO_MISS = 0.5
# Widens the unsafe strategy's read-modify-write window so the race is not left to chance.
UNSAFE_DELAY_MS = "30"
# Seconds of load per scenario in the plumbing runs: high_contention's authorizations run dry
# within the first second, every other scenario has hundreds of requests by then, and 24
# users appending at REPEATABLE READ write a skew within a few hundred transactions
# (test_service_lists finds one in 240).
SHORT_RUN_S = 4


def invoke(
    *args: str, env: dict[str, str], timeout: float = RUN_TIMEOUT_S
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return completed, time.perf_counter() - started


def environment(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TARGET_")}
    env.update(
        DATABASE_URL=database_url,
        LOADTEST_FIXTURES_PATH=str(tmp_path / "test-data.json"),
        **extra,
    )
    return env


def short_smoke(tmp_path: Path) -> dict[str, str]:
    """Point the pipeline at the smoke profile with SHORT_RUN_S of load per scenario."""
    profiles = shortened_profiles(tmp_path / "profiles.toml", "smoke", SHORT_RUN_S)
    return {PROFILES_PATH_ENV: str(profiles)}


def only_run_dir(reports: Path) -> Path:
    (run_dir,) = [path for path in reports.iterdir() if path.is_dir()]
    return run_dir


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


class Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def visible_text(html: str) -> str:
    parser = Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def expected_decision(run_dir: Path) -> str:
    """Derive the verdict from the files alone: thresholds, integrity, service, runs."""
    worst = "GO"
    for scenario in SCENARIOS:
        result = read(run_dir / scenario / "result.json")
        integrity = read(run_dir / scenario / "integrity.json")
        service = read(run_dir / scenario / "service.json")
        run = result["run"]
        if (
            not integrity["ok"]
            or run["crashed"]
            or run["timed_out"]
            or run["exit_code"] != 0
            or not service["alive"]
            or any(
                e["kind"] in ("crash", "restart", "worker_exit", "pool_exhaustion")
                for e in service["events"]
            )
            or result["by_code"].get("unavailable")
            or service["delta"].get("db_pool_timeouts_total")
        ):
            return "NO-GO"
        requests = result["totals"]["requests"]
        expected_codes = set(result["config"]["expected_error_codes"])
        unexpected = sum(n for code, n in result["by_code"].items() if code not in expected_codes)
        for name, limit in result["config"]["thresholds"].items():
            if limit is None:
                continue
            if name.endswith("_ms"):
                worst = max(worst, latency_decision(result, name, limit), key=DECISIONS.index)
                if worst == "NO-GO":
                    return worst
                continue
            if name == "error_rate_min":
                measured = result["totals"]["error_rate"]
                miss = (limit - measured) / limit
            else:
                if name == "error_rate_max":
                    measured = result["totals"]["error_rate"]
                elif name == "unexpected_error_rate_max":
                    measured = unexpected / requests
                else:
                    measured = result["latency_ms"][name.removesuffix("_ms")]
                miss = (measured - limit) / limit if limit else (1e9 if measured else 0.0)
            # Only latency and unexpected errors can make NO-GO on their own.
            graded = name.endswith("_ms") or name == "unexpected_error_rate_max"
            if graded and miss > NO_GO_MISS + 1e-9:
                return "NO-GO"
            if miss > 0:
                worst = "CONDITIONAL"
        server_errors = sum(n for status, n in result["by_status"].items() if status[0] == "5")
        if server_errors or service["healthz"]["failures"]:
            worst = "CONDITIONAL"
    return worst


DECISIONS = ("GO", "CONDITIONAL", "NO-GO")


def latency_decision(result: dict[str, Any], name: str, limit: float) -> str:
    """Judge a latency threshold from its interval, as README's rule says, by hand."""
    entry = result["latency_evidence"]["thresholds"][name]
    estimate, lower = entry["estimate_ms"], entry["lower_ms"]
    stall = entry["stall"]
    if stall and stall["duration_s"] <= 2.0 and stall["without"]["estimate_ms"] <= limit:
        return "GO"  # one stall: named, not folded into the decision
    if estimate <= limit:
        return "GO"
    if entry["tail_requests"] < 20 or lower is None or lower <= limit:
        return "CONDITIONAL"  # too small to judge, or a miss the interval does not confirm
    return "NO-GO" if (lower - limit) / limit > NO_GO_MISS + 1e-9 else "CONDITIONAL"


def test_smoke_pipeline_end_to_end(database_url: str, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    env = environment(database_url, tmp_path, **short_smoke(tmp_path))
    completed, elapsed_s = invoke(
        "load-test.all", "--profile", "smoke", "--reports-dir", str(reports), env=env
    )
    print(f"smoke pipeline, set-up included: {elapsed_s:.1f} s")
    run_dir = only_run_dir(reports)
    summary = read(run_dir / "summary.json")
    decision = summary["verdict"]["decision"]

    # Exit code and the one line say the same as the report.
    assert completed.returncode == (0 if decision == "GO" else 1), completed.stderr[-3000:]
    last_line = completed.stdout.strip().splitlines()[-1]
    assert last_line.startswith(f"{decision}: report at {run_dir / 'report.html'}")

    # Every step ran, and serializable kept every integrity check.
    run = read(run_dir / "run.json")
    assert [s["name"] for s in run["steps"] if not s["ok"]] == []
    assert [s["name"] for s in run["steps"]][:7] == ["setup", "start_service", *SCENARIOS]
    assert summary["integrity_ok"] is True

    # Figures against the result files.
    results = {name: read(run_dir / name / "result.json") for name in SCENARIOS}
    assert summary["totals"]["requests"] == sum(r["totals"]["requests"] for r in results.values())
    assert summary["totals"]["errors"] == sum(r["totals"]["errors"] for r in results.values())
    html = visible_text((run_dir / "report.html").read_text())
    assert decision in html
    for scenario_summary in summary["scenarios"]:
        result = results[scenario_summary["scenario"]]
        assert result["totals"]["requests"] > 0
        assert scenario_summary["requests"] == result["totals"]["requests"]
        assert scenario_summary["latency_ms"]["p95"] == result["latency_ms"]["p95"]
        assert f"{result['latency_ms']['p95']:,.1f} ms" in html
        integrity = read(run_dir / scenario_summary["scenario"] / "integrity.json")
        if scenario_summary["scenario"] == SCHEDULING:
            assert integrity["scheduling_operations"] > 0
            assert integrity["session_rows"] > 0
        elif scenario_summary["scenario"] == LIST_APPEND:
            anomalies = read(run_dir / LIST_APPEND / "anomalies.json")
            assert anomalies["valid"] is True, anomalies["anomaly_counts"]
            assert scenario_summary["isolation"]["valid"] is True
        else:
            assert integrity["client_operations"] == integrity["ledger_rows"] > 0
    contention = read(run_dir / "high_contention" / "integrity.json")
    detail = next(c for c in contention["checks"] if c["name"] == "contention_expectation")
    assert "high-contention authorizations exhausted" in detail["detail"]

    # The verdict follows from the files by the documented rules.
    assert decision == expected_decision(run_dir)
    markdown = (run_dir / "PERFORMANCE_TEST_RESULTS.md").read_text()
    assert markdown.startswith(f"# Performance test results: {decision}")

    # The checks can be run again on what the database still holds: the last scenario.
    verified, _ = invoke("load-test.verify", "--run-dir", str(run_dir), env=env, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert "integrity: OK" in verified.stdout
    rerendered, _ = invoke("load-test.report", "--run-dir", str(run_dir), env=env, timeout=60)
    assert rerendered.returncode == 0, rerendered.stderr
    assert rerendered.stdout.startswith(f"{decision}: report at")


def test_unsafe_control_run_is_no_go_with_the_overbooking_in_the_report(
    database_url: str, tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    env = environment(
        database_url, tmp_path, TARGET_UNSAFE_DELAY_MS=UNSAFE_DELAY_MS, **short_smoke(tmp_path)
    )
    # Everything asserted is about high_contention, where the overbooking happens.
    completed, elapsed_s = invoke(
        "load-test.all", "--strategy", "unsafe", "--scenarios", "high_contention",
        "--reports-dir", str(reports), env=env,
    )  # fmt: skip
    print(f"unsafe control run: {elapsed_s:.1f} s")
    assert completed.returncode == 1
    assert completed.stdout.strip().splitlines()[-1].startswith("NO-GO: report at")
    run_dir = only_run_dir(reports)
    summary = read(run_dir / "summary.json")
    assert summary["verdict"]["decision"] == "NO-GO"
    assert summary["strategy"] == "unsafe"
    contention = next(s for s in summary["scenarios"] if s["scenario"] == "high_contention")
    checks = {c["name"]: c for c in contention["integrity"]["checks"]}
    overbooking = checks["no_overbooking"]
    assert not overbooking["ok"]
    assert overbooking["rows"][0]["problem"] == "overbooked_in_ledger"
    assert overbooking["rows"][0]["booked_by_ledger"] > overbooking["rows"][0]["total_units"]
    assert not checks["contention_expectation"]["ok"]
    assert "high_contention: integrity check no_overbooking failed" in " ".join(
        summary["verdict"]["reasons"]
    )
    html = visible_text((run_dir / "report.html").read_text())
    assert "NO-GO" in html
    assert "overbooked_in_ledger" in html
    assert overbooking["rows"][0]["authorization_id"] in html


def test_one_scenario_then_verify_then_report(database_url: str, tmp_path: Path) -> None:
    env = environment(database_url, tmp_path, **short_smoke(tmp_path))
    out = tmp_path / "run"
    ran, _ = invoke("load-test.scenario1", "--run-dir", str(out), env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip().startswith("high_contention: ")
    assert (out / "high_contention" / "service.json").exists()
    verified, _ = invoke("load-test.verify", "--run-dir", str(out / "high_contention"), env=env)
    assert verified.returncode == 0, verified.stderr
    assert (out / "high_contention" / "integrity.json").exists()
    reported, _ = invoke("load-test.report", "--run-dir", str(out), env=env)
    assert reported.returncode == 0, reported.stderr
    summary = read(out / "summary.json")
    assert [s["scenario"] for s in summary["scenarios"]] == ["high_contention"]
    assert summary["integrity_ok"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("load-test.all", "--strategy", "bogus"), "error: --strategy must be one of"),
        (("load-test.all", "--profile", "nope"), "error: "),
        # 0 is the default: the profile's own worker count.
        (("load-test.all", "--workers=-1"), "error: --workers must be at least 1"),
        (("load-test.report", "--run-dir", "/nonexistent/run"), "error: run folder"),
        (("load-test.verify", "--run-dir", "/nonexistent/results"), "error: results folder"),
    ],
)
def test_bad_input_is_one_clear_line_and_changes_nothing(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    env = {**os.environ, "LOADTEST_REPORTS_DIR": str(tmp_path / "reports")}
    env.pop("DATABASE_URL", None)
    completed, _ = invoke(*args, env=env, timeout=60)
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith(message)
    assert not (tmp_path / "reports").exists()


def test_list_append_at_repeatable_read_is_no_go_with_a_write_skew(
    database_url: str, tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    env = environment(database_url, tmp_path, **short_smoke(tmp_path))
    completed, _ = invoke(
        "load-test.all",
        "--scenarios",
        LIST_APPEND,
        "--isolation",
        "repeatable_read",
        "--reports-dir",
        str(reports),
        env=env,
    )
    run_dir = only_run_dir(reports)
    summary = read(run_dir / "summary.json")
    assert completed.returncode == 1, completed.stderr[-3000:]
    assert summary["verdict"]["decision"] == "NO-GO"
    anomalies = read(run_dir / LIST_APPEND / "anomalies.json")
    assert anomalies["valid"] is False
    assert "G2-item" in anomalies["forbidden_kinds"], anomalies["anomaly_counts"]
    # PostgreSQL's REPEATABLE READ is snapshot isolation: nothing SI forbids.
    assert "snapshot-isolation" in anomalies["consistent_with"]
    assert any("isolation: not serializable (G2-item" in r for r in summary["verdict"]["reasons"])
    html = visible_text((run_dir / "report.html").read_text())
    assert "not serializable (G2-item" in html
    assert "One of the smallest cycles" in html
    # The task gives the same verdict on the same history: 1, forbidden anomalies.
    checked, _ = invoke("load-test.check-history", str(run_dir), env=env, timeout=60)
    assert checked.returncode == 1, checked.stderr
    assert "INVALID: not serializable" in checked.stdout
    assert (run_dir / LIST_APPEND / "anomalies.json").exists()
    bad, _ = invoke("load-test.check-history", str(tmp_path / "nowhere"), env=env, timeout=60)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1
