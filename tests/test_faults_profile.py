"""Proof that the checks bite on a bad day: the faults pipeline, with and without idempotency.

Both tests run `invoke load-test.all --profile faults --force` in a subprocess against a fresh
database on the test session's own cluster (which the nemesis pauses and kills workers of),
with a shorter faults profile from a test-only profiles file (LOADTEST_PROFILES_PATH). The
PostgreSQL pauses outlast a client's attempt timeout, so clients retry operations whose first
attempt is still stuck in the frozen server: with Idempotency-Key enforced nothing books
twice and the run is GO; with TARGET_IDEMPOTENCY=off a retry books again and the run must be
NO-GO with the duplicated operations listed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from load_runner.profiles import DEFAULT_PROFILES_PATH, PROFILES_PATH_ENV

# The faults and exactly-once machinery under test here is the counter scenarios': their
# one-statement shape keeps the two-core machine's CPU for the faults (the interactive shape
# and session_scheduling are tested for correctness in test_service_storms/_sessions).
SCENARIOS = ("high_contention", "high_throughput", "mixed_operations")
SHAPE = "statement"

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 240
# Per scenario: load settings and a short fault schedule (14 s each instead of 24-26 s).
SHORT_FAULTS = {
    "high_contention": (
        "users = 30\nduration_s = 14\nramp_up_s = 0\nthink_time_s = [0.1, 0.3]\n"
        "processes = 1\nunits_per_request = 10\n",
        '{ at_s = 3, kind = "kill_worker" },\n{ at_s = 6, kind = "postgres_restart" }',
    ),
    "high_throughput": (
        "users = 40\nduration_s = 14\nramp_up_s = 1\nthink_time_s = [0.05, 0.25]\n"
        "processes = 2\nunits_per_request = 2\n",
        '{ at_s = 3, kind = "postgres_pause", duration_s = 6 },\n'
        '{ at_s = 9, kind = "db_slow_link", duration_s = 1, added_rtt_ms = 50 }',
    ),
    "mixed_operations": (
        "users = 30\nduration_s = 14\nramp_up_s = 0\nthink_time_s = [0.05, 0.25]\n"
        "processes = 1\nunits_per_request = 10\n",
        '{ at_s = 3, kind = "postgres_pause", duration_s = 6 },\n'
        '{ at_s = 9, kind = "db_partition", duration_s = 1 }',
    ),
}
EXACTLY_ONCE_CHECK = "one_row_per_idempotency_key"
# A scenario whose schedule pauses PostgreSQL, the fault that makes clients retry into a
# stalled server (its 40 users booked 9 and 14 operations twice in the runs measured): the run
# without idempotency needs only it to book twice.
PAUSED_SCENARIOS = ("high_throughput",)


def short_faults_profiles(path: Path) -> Path:
    """Write a profiles file: the real scenario settings and thresholds, short faults tables."""
    document = tomllib.loads(DEFAULT_PROFILES_PATH.read_text())
    lines = ["[service.faults]", "workers = 2", ""]
    for scenario in SCENARIOS:
        shared = document[scenario]
        codes = ", ".join(json.dumps(code) for code in shared.get("expected_error_codes", []))
        lines += [f"[{scenario}]", f"expected_error_codes = [{codes}]", ""]
        lines += [f"[{scenario}.thresholds]"]
        lines += [f"{key} = {value}" for key, value in shared["thresholds"].items()]
        faults = shared["faults"]
        load, schedule = SHORT_FAULTS[scenario]
        lines += ["", f"[{scenario}.faults]", load, f"[{scenario}.faults.thresholds]"]
        lines += [f"{key} = {value}" for key, value in faults.get("thresholds", {}).items()]
        lines += ["", f"[{scenario}.faults.nemesis]", f"schedule = [\n{schedule},\n]", ""]
    path.write_text("\n".join(lines))
    return path


def run_faults_pipeline(
    database_url: str, tmp_path: Path, scenarios: tuple[str, ...] = SCENARIOS, **service_env: str
) -> tuple[subprocess.CompletedProcess[str], Path, float]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TARGET_")}
    env.update(
        DATABASE_URL=database_url,
        LOADTEST_FIXTURES_PATH=str(tmp_path / "test-data.json"),
        **{PROFILES_PATH_ENV: str(short_faults_profiles(tmp_path / "profiles.toml"))},
        **service_env,
    )
    reports = tmp_path / "reports"
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "invoke", "load-test.all", "--profile", "faults", "--force",
         "--reports-dir", str(reports), "--scenarios", ",".join(scenarios),
         "--transaction-shape", SHAPE],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    (run_dir,) = [path for path in reports.iterdir() if path.is_dir()]
    return completed, run_dir, time.perf_counter() - started


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def injected(run_dir: Path) -> list[dict[str, Any]]:
    return [
        fault
        for scenario in SCENARIOS
        for fault in read(run_dir / scenario / "faults.json")["faults"]
    ]


def test_faults_profile_with_idempotency_ends_go(database_url: str, tmp_path: Path) -> None:
    completed, run_dir, elapsed_s = run_faults_pipeline(database_url, tmp_path)
    print(f"faults pipeline (short profile), set-up included: {elapsed_s:.1f} s")
    summary = read(run_dir / "summary.json")
    assert summary["verdict"]["decision"] == "GO", (
        summary["verdict"]["reasons"],
        completed.stderr[-3000:],
    )
    assert completed.returncode == 0
    # The faults did happen, each recovered, and the clients did retry into a stalled server.
    faults = injected(run_dir)
    assert sorted(f["kind"] for f in faults) == sorted(
        [
            "kill_worker",
            "postgres_restart",
            "postgres_pause",
            "postgres_pause",
            "db_slow_link",
            "db_partition",
        ]
    )
    assert all(f["outcome"] == "done" and f["recovery"]["recovered"] for f in faults), faults
    assert sum(f["cost"]["timed_out"] for f in faults if f["kind"] == "postgres_pause") > 0
    assert summary["integrity_ok"] is True
    html = (run_dir / "report.html").read_text()
    assert 'class="fault"' in html  # the bands on the per-second charts
    assert "Injected faults" in html


def test_faults_profile_without_idempotency_ends_no_go_with_the_duplicates_listed(
    database_url: str, tmp_path: Path
) -> None:
    completed, run_dir, elapsed_s = run_faults_pipeline(
        database_url, tmp_path, PAUSED_SCENARIOS, TARGET_IDEMPOTENCY="off"
    )
    print(f"faults pipeline without idempotency: {elapsed_s:.1f} s")
    assert completed.returncode == 1
    summary = read(run_dir / "summary.json")
    assert summary["verdict"]["decision"] == "NO-GO"
    duplicated = [
        (scenario["scenario"], check)
        for scenario in summary["scenarios"]
        for check in scenario["integrity"]["checks"]
        if check["name"] == EXACTLY_ONCE_CHECK and not check["ok"]
    ]
    assert duplicated, [s["integrity"]["checks"] for s in summary["scenarios"]]
    scenario, check = duplicated[0]
    assert f"{scenario}: integrity check {EXACTLY_ONCE_CHECK} failed" in " ".join(
        summary["verdict"]["reasons"]
    )
    # The report lists the doubled operations by their key.
    row = check["rows"][0]
    key = next(value for name, value in row.items() if "key" in name and value)
    assert str(key) in (run_dir / "report.html").read_text()
