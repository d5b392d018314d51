"""The runner against an in-memory stand-in: profiles, bad input, merging, crashes, open model.

The stand-in (load_runner.calibration_target) applies the service's unit rules in memory, so
these tests check the generator's plumbing; test_scenarios.py runs the same scenarios against
the real service on PostgreSQL.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from load_runner import SCENARIOS, LoadRunError, run_scenario
from load_runner import runner as runner_module
from load_runner.profiles import (
    ProfileError,
    Thresholds,
    available_profiles,
    load_scenario_config,
)
from load_runner.progress import ProgressDisplay, progress_line
from load_runner.runner import MolotovOutcome, build_result, execute
from molotov_scenarios.environment import ENVIRONMENT_VARIABLE
from molotov_scenarios.fixtures import FixturesError, load_fixtures
from results.collect import Collected, LiveProgress, read_progress
from results.files import PROCESS_PREFIX, PROGRESS_PREFIX, RECORDS_PREFIX
from results.record_format import Record, live_bucket, live_bucket_upper_ms
from results.summary import in_flight_window_s, summarise_requests

TEST_PROFILES = """
[high_contention.thresholds]
p95_ms = 200
p99_ms = 500

[high_contention.test]
users = 20
duration_s = 2
think_time_s = [0.05, 0.1]
processes = 2
units_per_request = 10

[high_throughput.test]
users = 10
duration_s = 5
think_time_s = [0.02, 0.05]
processes = 2
units_per_request = 2

[mixed_operations.test]
users = 10
duration_s = 2
think_time_s = [0.02, 0.05]
processes = 1
units_per_request = 2

[session_scheduling.test]
users = 10
duration_s = 2
think_time_s = [0.02, 0.05]
processes = 1
units_per_request = 2

[isolation_append.test]
users = 10
duration_s = 2
think_time_s = [0.02, 0.05]
processes = 1
units_per_request = 1
"""
ORGANIZATIONS = 3
POOL_SIZES = {"high_contention": (10, 50), "normal": (20, 200), "high_throughput": (25, 1000)}


def write_fixtures(path: Path) -> dict:
    """Write a fixture file shaped as seeding writes it, with fresh ids."""
    organizations = [str(uuid.uuid4()) for _ in range(ORGANIZATIONS)]
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    document = {
        "schema_version": 1,
        "tokens_expire_at": expires_at.isoformat(),
        "practitioners": [
            {"id": str(uuid.uuid4()), "organization_id": org, "token": f"token-{index}"}
            for index, org in enumerate(organizations)
        ],
        "pools": {
            pool: [
                {"id": str(uuid.uuid4()), "organization_id": organizations[i % ORGANIZATIONS],
                 "total_units": total}
                for i in range(count)
            ]
            for pool, (count, total) in POOL_SIZES.items()
        },
    }  # fmt: skip
    path.write_text(json.dumps(document))
    return document


def start_target(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "load_runner.calibration_target", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


@pytest.fixture(scope="module", name="target_url")
def _target_url() -> Iterator[str]:
    process, url = start_target("--total-units", "50")
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(name="profiles_path")
def _profiles_path(tmp_path: Path) -> Path:
    path = tmp_path / "profiles.toml"
    path.write_text(TEST_PROFILES)
    return path


@pytest.fixture(name="fixtures_path")
def _fixtures_path(tmp_path: Path) -> Path:
    path = tmp_path / "test-data.json"
    write_fixtures(path)
    return path


# -- Profiles ---------------------------------------------------------------------------------
def test_full_profiles_hold_the_reference_figures_and_the_issue_thresholds() -> None:
    full = {scenario: load_scenario_config(scenario, "full") for scenario in SCENARIOS}
    assert (full["high_contention"].users, full["high_contention"].duration_s) == (50, 60)
    assert (full["high_throughput"].users, full["high_throughput"].duration_s) == (200, 300)
    assert (full["mixed_operations"].users, full["mixed_operations"].duration_s) == (100, 600)
    assert full["high_contention"].thresholds == Thresholds(
        p95_ms=200, p99_ms=500, unexpected_error_rate_max=0.01
    )
    assert full["high_throughput"].thresholds == Thresholds(
        p95_ms=150, p99_ms=300, error_rate_max=0.02, unexpected_error_rate_max=0.01
    )
    assert full["mixed_operations"].thresholds == Thresholds(
        p95_ms=175, error_rate_min=0.10, error_rate_max=0.20, unexpected_error_rate_max=0.01
    )
    assert full["high_contention"].units_per_request == 10
    assert available_profiles() == ["faults", "full", "open", "smoke"]
    for scenario in SCENARIOS:
        smoke = load_scenario_config(scenario, "smoke")
        # Long enough to judge its own p95 (issue 10), short enough for a pipeline under 60 s.
        assert smoke.duration_s <= 15
        assert smoke.load_model == "closed"
        assert load_scenario_config(scenario, "open").load_model == "open"
        assert smoke.thresholds == full[scenario].thresholds


def test_a_profile_added_to_the_toml_file_is_available_without_code(profiles_path: Path) -> None:
    assert available_profiles(profiles_path) == ["test"]
    config = load_scenario_config("high_contention", "test", profiles_path)
    assert (config.users, config.processes, config.users_per_process) == (20, 2, 10)
    assert config.think_time_s == (0.05, 0.1)
    assert config.thresholds == Thresholds(p95_ms=200, p99_ms=500)
    assert config.load_model == "closed"
    assert config.to_result()["think_time_s"] == 0.075
    # A profile only one scenario defines cannot run the pipeline: it is not listed.
    profiles_path.write_text(TEST_PROFILES + "\n[high_contention.extra]\nusers = 1\n")
    assert available_profiles(profiles_path) == ["test"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("users = 5\nprocesses = 2\nduration_s = 2\nunits_per_request = 1", "multiple of"),
        ("users = 4\nduration_s = 2\nunits_per_request = 1\nusres = 3", "unknown key"),
        ("users = 4\nduration_s = 2\nramp_up_s = 2\nunits_per_request = 1", "shorter than"),
        ("users = 0\nduration_s = 2\nunits_per_request = 1", "users must be at least 1"),
        ("users = 4\nduration_s = 2\nunits_per_request = 1.5", "whole number"),
        ("users = 4\nduration_s = 2\nunits_per_request = 1\nthink_time_s = [2, 1]", "max < min"),
        ("duration_s = 2\nunits_per_request = 1", "users is required"),
        ("users = 4\nduration_s = 2\nunits_per_request = 1\n[high_contention.bad.thresholds]\n"
         "p95 = 1", "unknown threshold"),
    ],
)  # fmt: skip
def test_a_malformed_profile_gets_one_clear_error(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(f"[high_contention.bad]\n{table}\n")
    with pytest.raises(ProfileError, match=message):
        load_scenario_config("high_contention", "bad", path)


# -- Bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scenario": "low_contention"}, "unknown scenario"),
        ({"profile": "huge"}, "no profile 'huge'"),
        ({"fixtures": "missing"}, "fixtures file not found"),
        ({"fixtures": "malformed"}, "malformed"),
        ({"fixtures": "expired"}, "hold tokens that expired at .*run `invoke load-test.seed`"),
        ({"fixtures": "expiring"}, "before a 2 s run would end"),
        ({"target_url": "http://127.0.0.1:9"}, "unreachable"),
        ({"target_url": "127.0.0.1:8000"}, "must look like"),
        ({"arrival_rate": -5.0}, "positive number"),
    ],
)
def test_bad_input_raises_one_clear_error_and_writes_nothing(
    tmp_path: Path,
    target_url: str,
    profiles_path: Path,
    fixtures_path: Path,
    change: dict,
    message: str,
) -> None:
    if change.get("fixtures") == "missing":
        fixtures_path = tmp_path / "nowhere.json"
    elif change.get("fixtures") == "malformed":
        fixtures_path.write_text(json.dumps({"schema_version": 1, "pools": {}}))
    elif change.get("fixtures") in ("expired", "expiring"):
        ahead = {"expired": -60, "expiring": 1}[change["fixtures"]]
        expire_fixtures(fixtures_path, dt.timedelta(seconds=ahead))
    out_dir = tmp_path / "out"
    with pytest.raises(LoadRunError, match=message):
        run_scenario(
            change.get("scenario", "high_contention"),
            profile=change.get("profile", "test"),
            target_url=change.get("target_url", target_url),
            fixtures_path=fixtures_path,
            out_dir=out_dir,
            config_path=profiles_path,
            progress=False,
            arrival_rate=change.get("arrival_rate"),
        )
    assert not out_dir.exists()


def expire_fixtures(path: Path, from_now: dt.timedelta) -> None:
    """Make a fixture file's tokens expire ``from_now``."""
    document = json.loads(path.read_text())
    document["tokens_expire_at"] = (dt.datetime.now(dt.UTC) + from_now).isoformat()
    path.write_text(json.dumps(document))


NOON = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("expires_at", "valid_for_s", "problem"),
    [
        ("2026-11-27T11:59:59+00:00", 0, "expired at 2026-11-27T11:59:59+00:00"),
        ("2026-11-27T12:00:00+00:00", 0, "expired at"),
        ("2026-11-27T11:00:00", 0, "expired at 2026-11-27T11:00:00+00:00"),  # no zone: UTC
        ("2026-11-27T13:00:00+01:00", 0, "expired at"),  # 12:00 UTC
        ("2026-11-27T12:00:59+00:00", 60, "expire at 2026-11-27T12:00:59+00:00, before a 60 s"),
        ("2026-11-27T12:01:01+00:00", 60, None),
        (None, 0, None),  # a hand-made file without the field is not checked
    ],
)
def test_fixtures_whose_tokens_expire_before_the_run_ends_are_refused(
    fixtures_path: Path, expires_at: str | None, valid_for_s: float, problem: str | None
) -> None:
    document = json.loads(fixtures_path.read_text())
    document.pop("tokens_expire_at")
    if expires_at is not None:
        document["tokens_expire_at"] = expires_at
    fixtures_path.write_text(json.dumps(document))
    if problem is None:
        load_fixtures(fixtures_path, valid_for_s=valid_for_s, now=NOON)
        return
    with pytest.raises(FixturesError) as raised:
        load_fixtures(fixtures_path, valid_for_s=valid_for_s, now=NOON)
    message = str(raised.value)
    assert message.startswith(f"fixtures at {fixtures_path} hold tokens that ")
    assert problem in message
    assert message.endswith(": run `invoke load-test.seed`")


def test_an_expiry_that_is_not_a_time_is_malformed(fixtures_path: Path) -> None:
    document = json.loads(fixtures_path.read_text())
    document["tokens_expire_at"] = "tomorrow"
    fixtures_path.write_text(json.dumps(document))
    with pytest.raises(FixturesError, match="malformed"):
        load_fixtures(fixtures_path)


# -- Throughput -------------------------------------------------------------------------------
def test_throughput_counts_the_time_requests_were_in_flight_not_the_start_up(
    profiles_path: Path,
) -> None:
    """10 requests between 3.0 s and 4.0 s after global_setup: 10 req/s, not 10 / 4."""
    records = [
        Record(f"r{i}", "reserve", "a", 200, "", 100.0, 3.0 + i / 10, f"t{i}", "reserve", 1)
        for i in range(10)
    ]
    collected = Collected(
        records=records,
        processes=[],
        run_start_epoch=1000.0,
        exceptions=0,
        first_exception="",
        scheduled_requests=0,
        problems=[],
    )
    outcome = MolotovOutcome(0, False, wall_s=6.0, cpu_seconds=1.0, stderr_tail="")
    config = load_scenario_config("high_contention", "test", profiles_path)
    result = build_result(config, "http://127.0.0.1:1", outcome, collected, 999.0)
    assert result["duration_s"] == 4.0  # the run's wall time, fork and start-up included
    assert result["totals"]["measured_window_s"] == 1.0
    assert result["totals"]["throughput_rps"] == 10.0
    assert result["totals"]["requests"] == 10


def test_no_request_means_no_window_and_no_throughput() -> None:
    assert in_flight_window_s([]) == 0.0
    assert summarise_requests([], elapsed_s=0.0, window_s=0.0)["totals"] == {
        "requests": 0, "errors": 0, "error_rate": 0.0, "throughput_rps": 0.0,
        "measured_window_s": 0.0,
    }  # fmt: skip


# -- Merging ----------------------------------------------------------------------------------
def test_every_request_is_counted_once_across_processes(
    tmp_path: Path, target_url: str, profiles_path: Path, fixtures_path: Path
) -> None:
    run = run_scenario(
        "high_contention",
        profile="test",
        target_url=target_url,
        fixtures_path=fixtures_path,
        out_dir=tmp_path / "out",
        config_path=profiles_path,
        progress=False,
    )
    result = run.result
    assert run.completed, result["run"]
    assert result["run"] == {
        "exit_code": 0, "crashed": False, "timed_out": False, "stderr_tail": "", "reasons": [],
    }  # fmt: skip
    raw = run.result_dir / "raw"
    summaries = [json.loads(p.read_text()) for p in raw.glob(f"{PROCESS_PREFIX}*.json")]
    assert len(summaries) == 2 == result["generator"]["processes"]
    rows = [row for p in raw.glob(f"{RECORDS_PREFIX}*.csv") for row in csv.reader(p.open())]
    requests = result["totals"]["requests"]
    assert requests > 0
    assert requests == len(rows) == sum(summary["requests"] for summary in summaries)
    assert len({row[0] for row in rows}) == requests  # request ids: nobody counted twice
    assert requests == sum(result["by_status"].values())
    assert requests == sum(op["requests"] for op in result["by_operation"].values())
    assert requests == sum(point["requests"] for point in result["timeseries"])
    assert requests == result["latency_ms"]["count"]
    assert requests == sum(bucket["count"] for bucket in result["latency_histogram"])
    errors = result["totals"]["errors"]
    assert errors == requests - result["by_status"].get("200", 0)
    assert errors == sum(point["errors"] for point in result["timeseries"])

    with (run.result_dir / "operations.csv").open() as handle:
        operations = list(csv.DictReader(handle))
    assert len(operations) == result["by_status"]["200"]
    assert {op["kind"] for op in operations} == {"reserve"}
    successes = Counter(op["authorization_id"] for op in operations)
    refused = Counter(row[2] for row in rows if row[3] == "409")
    assert refused, "every user on one 50-unit authorization: most reservations must be refused"
    for authorization_id in refused:
        assert successes[authorization_id] == 5  # exhausted: exactly 50 / 10
    assert result["by_code"] == {"insufficient_units": refused.total()}
    assert result["load_model"] == "closed"
    assert result["config"]["users"] == 20
    assert result["generator"]["cpu_seconds"] > 0


# -- Crashes ----------------------------------------------------------------------------------
def test_a_scenario_that_fails_at_import_is_reported_as_crashed(
    tmp_path: Path, target_url: str, profiles_path: Path, fixtures_path: Path
) -> None:
    broken = tmp_path / "broken_scenario.py"
    broken.write_text("raise RuntimeError('scenario module is broken')\n")
    config = load_scenario_config("high_contention", "test", profiles_path)
    run = execute(
        config,
        scenario_module=broken,
        target_url=target_url,
        fixtures_path=fixtures_path,
        out_dir=tmp_path / "out",
        progress=False,
    )
    assert not run.completed
    assert run.result["run"]["crashed"] is True
    assert run.result["run"]["exit_code"] != 0
    assert "scenario module is broken" in run.result["run"]["stderr_tail"]
    assert any("exited with code" in reason for reason in run.result["run"]["reasons"])
    assert json.loads((run.result_dir / "result.json").read_text())["run"]["crashed"] is True


def test_a_killed_generator_process_is_reported_as_crashed(
    tmp_path: Path, target_url: str, profiles_path: Path, fixtures_path: Path
) -> None:
    out_dir = tmp_path / "out"
    outcome: dict = {}

    def run() -> None:
        outcome["run"] = run_scenario(
            "high_throughput",
            profile="test",
            target_url=target_url,
            fixtures_path=fixtures_path,
            out_dir=out_dir,
            config_path=profiles_path,
            progress=False,
        )

    thread = threading.Thread(target=run)
    thread.start()
    victim = _wait_for_forked_generator(str(out_dir.resolve()))
    try:
        victim.send_signal(signal.SIGKILL)
    except psutil.NoSuchProcess:
        pytest.fail("the generator process ended before the test could kill it")
    thread.join(timeout=60)
    result = outcome["run"].result
    assert not outcome["run"].completed
    assert result["run"]["crashed"] is True
    assert "1 of 2 generator processes wrote no results" in result["run"]["reasons"]


def _wait_for_forked_generator(record_root: str) -> psutil.Process:
    """Find a Molotov child process (forked by Molotov's main process) of this test's run."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for process in psutil.process_iter(["pid", "ppid"]):
            try:
                ours = record_root in process.environ().get(ENVIRONMENT_VARIABLE, "")
                parent = process.parent()
                forked = parent is not None and record_root in parent.environ().get(
                    ENVIRONMENT_VARIABLE, ""
                )
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if ours and forked and _is_generator(process):
                return process
        time.sleep(0.1)
    raise AssertionError("no forked generator process showed up")


def _is_generator(process: psutil.Process) -> bool:
    # Molotov also starts manager processes (for its console); a worker process runs our loop
    # and has written a progress file by the time it is busy, which is what we wait for.
    record_dir = Path(json.loads(process.environ()[ENVIRONMENT_VARIABLE])["record_dir"])
    return (record_dir / f"progress-{process.pid}.json").exists()


def test_a_run_past_its_time_limit_is_killed_and_reported(
    tmp_path: Path,
    target_url: str,
    profiles_path: Path,
    fixtures_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner_module, "TIMEOUT_FACTOR", 0.0)
    monkeypatch.setattr(runner_module, "TIMEOUT_MARGIN_S", 1.0)
    run = run_scenario(
        "high_contention",
        profile="test",
        target_url=target_url,
        fixtures_path=fixtures_path,
        out_dir=tmp_path / "out",
        config_path=profiles_path,
        progress=False,
    )
    assert not run.completed
    assert run.result["run"]["timed_out"] is True
    assert run.result["run"]["crashed"] is True
    leftovers = [
        process
        for process in psutil.process_iter()
        if _environment_of(process).find(str(tmp_path)) >= 0
    ]
    assert leftovers == []


def _environment_of(process: psutil.Process) -> str:
    try:
        return process.environ().get(ENVIRONMENT_VARIABLE, "")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


# -- Open model -------------------------------------------------------------------------------
def test_open_model_counts_latency_from_the_intended_start(
    tmp_path: Path, profiles_path: Path, fixtures_path: Path
) -> None:
    # 5 users, a server answering in 200 ms, 50 requests/s asked: each user can do 5/s but is
    # scheduled for 10/s, so requests fall ever further behind their intended start. A closed
    # loop would report about 200 ms throughout; the open model must show the queue.
    process, url = start_target("--delay-ms", "200")
    try:
        profiles_path.write_text(
            "[high_throughput.slow]\nusers = 5\nduration_s = 4\nunits_per_request = 1\n"
        )
        run = run_scenario(
            "high_throughput",
            profile="slow",
            target_url=url,
            fixtures_path=fixtures_path,
            out_dir=tmp_path / "out",
            config_path=profiles_path,
            progress=False,
            arrival_rate=50.0,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
    result = run.result
    assert run.completed, result["run"]
    assert result["load_model"] == "open"
    assert result["config"]["arrival_rate_rps"] == 50.0
    assert result["latency_ms"]["p50"] >= 200
    # Requests fell ever further behind: the last ones waited over a second for their turn.
    assert result["latency_ms"]["max"] > 1000
    # Half the slots could not be sent at all: the result says so.
    open_model = result["open_model"]
    assert open_model["sent_requests"] == result["totals"]["requests"]
    assert open_model["scheduled_requests"] > 1.5 * open_model["sent_requests"]


# -- Progress ---------------------------------------------------------------------------------
def test_progress_line_shows_elapsed_rate_p95_and_errors() -> None:
    progress = LiveProgress(requests=200, errors=10, buckets={})
    line = progress_line("high_contention", elapsed_s=2.5, total_s=5, progress=progress,
                         rate_rps=80.0)  # fmt: skip
    assert line == (
        "high_contention:   2.5/5 s |    80.0 req/s | p95 - | 200 requests | errors 10 (5.0%)"
    )


def test_progress_without_a_terminal_prints_plain_lines_now_and_then() -> None:
    stream = io.StringIO()
    display = ProgressDisplay("high_throughput", total_s=20, stream=stream)
    for second in range(12):
        display.update(float(second), LiveProgress(requests=second * 10, errors=0, buckets={}))
    display.finish()
    lines = stream.getvalue().splitlines()
    assert [line.split("/")[0].split()[-1] for line in lines] == ["0.0", "5.0", "10.0", "11.0"]
    assert "\r" not in stream.getvalue()


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal, as stderr is in an interactive shell."""

    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_a_rich_bar_with_the_same_figures() -> None:
    stream = FakeTerminal()
    display = ProgressDisplay("high_throughput", total_s=20, stream=stream)
    buckets = {live_bucket(12.0): 19, live_bucket(480.0): 1}
    for second in range(1, 4):
        display.update(float(second), LiveProgress(second * 20, second, buckets))
    display.finish()
    shown = stream.getvalue()
    assert "\x1b[" in shown  # redrawn in place with terminal control codes, not plain lines
    last = shown.rsplit("high_throughput", 1)[1]
    assert "3.0/20 s" in last
    assert f"p95 {live_bucket_upper_ms(live_bucket(12.0)):.1f} ms" in last
    assert "60 requests" in last
    assert "errors 3 (5.0%)\n" in last  # finish() leaves the last state on its own line


def test_live_progress_adds_up_every_process_file(tmp_path: Path) -> None:
    """Two processes' progress files: counts add up, buckets merge by number, a torn file waits."""
    (tmp_path / f"{PROGRESS_PREFIX}1.json").write_text(
        json.dumps({"requests": 3, "errors": 1, "buckets": {"4": 2, "9": 1}})
    )
    (tmp_path / f"{PROGRESS_PREFIX}2.json").write_text(
        json.dumps({"requests": 2, "errors": 0, "buckets": {"9": 2}})
    )
    (tmp_path / f"{PROGRESS_PREFIX}3.json").write_text('{"requests": ')  # being rewritten
    progress = read_progress(tmp_path)
    assert progress == LiveProgress(requests=5, errors=1, buckets={4: 2, 9: 3})
