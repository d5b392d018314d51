"""Each scenario's smoke profile against the real service (Hypercorn) on real PostgreSQL.

Checked: every request is recorded once across processes, the client's record of successful
operations matches the ledger exactly, nothing is overbooked, and each scenario does what it
claims (exactly 5 successes per exhausted 50-unit authorization; at least 50 authorizations
touched; the 70/20/10 mix with one shared authorization).
"""

from __future__ import annotations

import csv
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from support_profiles import shortened_profiles
from support_service import SeededStack, seeded_stack

from integrity import format_report, run_checks
from integrity.checks import EXACTLY_ONCE_CHECKS
from load_runner import ScenarioRun, run_scenario
from load_runner.profiles import PROFILES_PATH_ENV, load_scenario_config
from local_postgres import ClusterInfo
from pipeline.service_process import start_service
from results.files import PROCESS_PREFIX, RECORDS_PREFIX
from seeding import reset_to_baseline, seed_database
from target.settings import DEFAULT_JWT_SECRET

# Enough closed history behind the active rows for PostgreSQL to look authorizations up by
# index (a sequential scan would make SERIALIZABLE conflict on everything), yet quick to seed.
BACKGROUND = 5_000
CONTENDED_TOTAL_UNITS = 50
# Seconds of load where a few show what a test checks: high_contention visits its whole pool
# (10 authorizations, half a second each: CONTENTION_SLICE_MIN_S), high_throughput touches
# hundreds of authorizations a second. The 70/20/10 mix keeps the whole smoke run for its
# sample size.
SHORT_RUN_S = 5


@pytest.fixture(scope="module", name="stack")
def _stack(
    pg_cluster: ClusterInfo, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SeededStack]:
    """Seed one database and serve it for the whole module; each test resets it to baseline."""
    folder = tmp_path_factory.mktemp("fixtures")
    with seeded_stack(pg_cluster, migrated_template, folder, background=BACKGROUND) as stack:
        yield stack


@pytest.fixture(name="short_smoke")
def _short_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the smoke profile with SHORT_RUN_S of load."""
    profiles = shortened_profiles(tmp_path / "profiles.toml", "smoke", SHORT_RUN_S)
    monkeypatch.setenv(PROFILES_PATH_ENV, str(profiles))


def run_smoke(stack: SeededStack, scenario: str, out_dir: Path) -> ScenarioRun:
    reset_to_baseline(stack.database_url)
    return run_scenario(
        scenario,
        profile="smoke",
        target_url=stack.base_url,
        fixtures_path=stack.fixtures_path,
        out_dir=out_dir,
        progress=False,
    )


def raw_records(run: ScenarioRun) -> list[list[str]]:
    raw = run.result_dir / "raw"
    return [row for path in raw.glob(f"{RECORDS_PREFIX}*.csv") for row in csv.reader(path.open())]


def client_operations(run: ScenarioRun) -> set[tuple[str, str, str, int]]:
    with (run.result_dir / "operations.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    operations = {
        (row["transaction_id"], row["authorization_id"], row["kind"], int(row["units"]))
        for row in rows
    }
    assert len(operations) == len(rows), "a transaction id appears twice in operations.csv"
    return operations


def ledger(database_url: str) -> set[tuple[str, str, str, int]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id::text, authorization_id::text, kind, units FROM unit_transactions"
        ).fetchall()
    return set(rows)


def overbooked(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT id, total_units, used_units, scheduled_units FROM authorizations "
            "WHERE used_units + scheduled_units > total_units "
            "OR used_units < 0 OR scheduled_units < 0"
        ).fetchall()


def assert_counts_add_up(run: ScenarioRun, processes: int) -> list[list[str]]:
    """Every request recorded once, across processes, in every breakdown of result.json."""
    result = run.result
    assert run.completed, result["run"]
    rows = raw_records(run)
    summaries = [
        json.loads(path.read_text())
        for path in (run.result_dir / "raw").glob(f"{PROCESS_PREFIX}*.json")
    ]
    requests = result["totals"]["requests"]
    assert len(summaries) == processes == result["generator"]["processes"]
    assert requests > 0
    assert requests == len(rows) == sum(summary["requests"] for summary in summaries)
    assert len({row[0] for row in rows}) == requests
    assert requests == sum(result["by_status"].values())
    assert requests == sum(op["requests"] for op in result["by_operation"].values())
    assert requests == sum(point["requests"] for point in result["timeseries"])
    assert requests == result["latency_ms"]["count"]
    successes = sum(count for status, count in result["by_status"].items() if status[0] == "2")
    assert result["totals"]["errors"] == requests - successes
    assert_one_key_per_operation(run, rows)
    return rows


def assert_one_key_per_operation(run: ScenarioRun, rows: list[list[str]]) -> None:
    """Every attempt carries its operation's key; each operation ends once, in the history too."""
    by_key: dict[str, list[list[str]]] = {}
    for row in rows:
        by_key.setdefault(row[10], []).append(row)
    assert all(len(key) == 32 for key in by_key), "an attempt was sent without a key"
    for attempts in by_key.values():
        attempts.sort(key=lambda row: int(row[11]))
        assert [int(row[11]) for row in attempts] == list(range(1, len(attempts) + 1))
        assert [row[13] for row in attempts[:-1]] == [""] * (len(attempts) - 1)
        assert attempts[-1][13] in ("ok", "fail", "info")
        assert len({(row[2], row[8], row[9], row[12]) for row in attempts}) == 1
    operations = run.result["operations"]
    assert operations["operations"] == operations["keyed"] == len(by_key)
    assert operations["attempts"] == len(rows)
    events = [json.loads(line) for line in (run.result_dir / "history.jsonl").open()]
    assert len(events) == 2 * len(by_key)
    assert [event["index"] for event in events] == list(range(len(events)))
    assert [event["time"] for event in events] == sorted(event["time"] for event in events)
    open_by_process: dict[int, str] = {}
    for event in events:  # each process runs one operation at a time, as Jepsen requires
        if event["type"] == "invoke":
            assert event["process"] not in open_by_process
            open_by_process[event["process"]] = event["value"]["key"]
        else:
            assert open_by_process.pop(event["process"]) == event["value"]["key"]
            assert event["type"] == by_key[event["value"]["key"]][-1][13]
    assert not open_by_process


@pytest.mark.usefixtures("short_smoke")
def test_high_contention_gives_exactly_five_successes_per_exhausted_authorization(
    stack: SeededStack, tmp_path: Path
) -> None:
    run = run_smoke(stack, "high_contention", tmp_path)
    rows = assert_counts_add_up(run, load_scenario_config("high_contention", "smoke").processes)
    operations = client_operations(run)
    assert operations == ledger(stack.database_url)
    assert overbooked(stack.database_url) == []

    pool = {entry["id"] for entry in stack.fixtures["pools"]["high_contention"]}
    assert {row[2] for row in rows} <= pool
    refused = {row[2] for row in rows if row[4] == "insufficient_units"}
    assert len(refused) >= len(pool) // 2, "the users must move through the pool"
    successes = Counter(authorization for _, authorization, _, _ in operations)
    units = run.result["config"]["units_per_request"]
    with psycopg.connect(stack.database_url) as conn:
        scheduled = dict(
            conn.execute(
                "SELECT id::text, scheduled_units FROM authorizations WHERE id = ANY(%s::uuid[])",
                (sorted(refused),),
            ).fetchall()
        )
    for authorization_id in refused:
        assert successes[authorization_id] == CONTENDED_TOTAL_UNITS // units
        assert scheduled[authorization_id] == CONTENDED_TOTAL_UNITS
    # Everyone fired on the same authorization at once: most calls were refused.
    assert run.result["by_code"]["insufficient_units"] > run.result["by_status"]["200"]


@pytest.mark.usefixtures("short_smoke")
def test_high_throughput_touches_at_least_fifty_authorizations(
    stack: SeededStack, tmp_path: Path
) -> None:
    run = run_smoke(stack, "high_throughput", tmp_path)
    rows = assert_counts_add_up(run, load_scenario_config("high_throughput", "smoke").processes)
    assert len({row[2] for row in rows}) >= 50
    operations = client_operations(run)
    assert operations == ledger(stack.database_url)
    assert overbooked(stack.database_url) == []
    kinds = Counter(kind for _, _, kind, _ in operations)
    # Every release follows a successful reservation of the same units.
    assert 0 < kinds["release"] <= kinds["reserve"]
    assert set(kinds) == {"reserve", "release"}


def test_mixed_operations_keeps_its_mix_and_never_overbooks(
    stack: SeededStack, tmp_path: Path
) -> None:
    run = run_smoke(stack, "mixed_operations", tmp_path)
    rows = assert_counts_add_up(run, load_scenario_config("mixed_operations", "smoke").processes)
    operations = client_operations(run)
    assert operations == ledger(stack.database_url)
    assert overbooked(stack.database_url) == []

    requests = len(rows)
    mix = Counter(row[1] for row in rows)
    # Molotov draws each call's operation by weight: binomial spread, far inside these bounds.
    assert 0.60 < mix["reserve"] / requests < 0.80
    assert 0.12 < mix["release"] / requests < 0.28
    assert 0.04 < mix["consume"] / requests < 0.16
    shared = stack.fixtures["pools"]["high_contention"][0]["id"]
    reserves = [row for row in rows if row[1] == "reserve"]
    shared_reserves = [row for row in reserves if row[2] == shared]
    assert 0.12 < len(shared_reserves) / len(reserves) < 0.28
    assert any(row[4] == "insufficient_units" for row in shared_reserves)
    with psycopg.connect(stack.database_url) as conn:
        total, used, scheduled = conn.execute(
            "SELECT total_units, used_units, scheduled_units FROM authorizations WHERE id = %s",
            (shared,),
        ).fetchone()
    assert used + scheduled <= total
    # Keys reached the ledger: the exactly-once checks run (not NOT CHECKED) and hold.
    report = run_checks(stack.database_url, [run.result_dir], fixtures_path=stack.fixtures_path)
    assert report.ok, format_report(report)
    assert all(report.check(name).checked for name in EXACTLY_ONCE_CHECKS)


def test_a_service_that_dies_mid_run_shows_as_connection_errors(
    database_url: str, tmp_path: Path
) -> None:
    fixtures_path = tmp_path / "test-data.json"
    seed_database(
        database_url, background=0, fixtures_path=fixtures_path, jwt_secret=DEFAULT_JWT_SECRET
    )
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        "[high_throughput.dying]\nusers = 10\nduration_s = 4\nthink_time_s = [0.02, 0.05]\n"
        "units_per_request = 1\n"
    )
    service = start_service(database_url)
    outcome: dict = {}

    def run() -> None:
        outcome["run"] = run_scenario(
            "high_throughput", profile="dying", target_url=service.base_url,
            fixtures_path=fixtures_path, out_dir=tmp_path / "out", config_path=profiles,
            progress=False,
        )  # fmt: skip

    thread = threading.Thread(target=run)
    thread.start()
    try:
        raw = tmp_path / "out" / "high_throughput" / "raw"
        deadline = time.monotonic() + 30
        while not list(raw.glob("progress-*.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        service.stop()
    thread.join(timeout=60)
    result = outcome["run"].result
    assert outcome["run"].completed, result["run"]
    assert result["by_code"].get("connection_error", 0) > 0
    assert result["totals"]["errors"] >= result["by_code"]["connection_error"]
    assert result["by_status"]["0"] == result["by_code"].get("connection_error", 0) + result[
        "by_code"
    ].get("timeout", 0)
    # Each request without a response is named, so that integrity can excuse its ledger row.
    result_dir = outcome["run"].result_dir
    raw_rows = [
        row
        for path in (result_dir / "raw").glob(f"{RECORDS_PREFIX}*.csv")
        for row in csv.reader(path.open())
    ]
    with (result_dir / "unanswered.csv").open(newline="") as handle:
        unanswered = list(csv.DictReader(handle))
    assert len(unanswered) == result["by_status"]["0"]
    assert {
        (u["request_id"], u["authorization_id"], u["kind"], u["units"]) for u in unanswered
    } == {(row[0], row[2], row[8], row[9]) for row in raw_rows if row[3] == "0"}
