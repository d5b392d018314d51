"""The nemesis: its schedule, each fault against the real thing, and the recovery arithmetic.

Faults run against a real Hypercorn service (two supervised workers) and the test session's
own PostgreSQL cluster; the recovery and cost figures are checked on hand-made records with
exact expected values; the verdict and charts on hand-made faults.json documents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from support_service import ServiceOptions

from faults.nemesis import (
    DONE,
    SKIPPED,
    FaultRecord,
    FaultSpec,
    Nemesis,
    NemesisConfigError,
    PostgresServer,
    delay_network,
    kill_worker,
    load_schedule,
    nemesis_for,
    parse_schedule,
    partition_db,
    pause_postgres,
    postgres_refusal,
    restart_postgres,
    slow_db_link,
)
from faults.relay import DbRelay
from local_postgres import ClusterInfo
from pipeline.service_process import ServiceProcess, start_service
from reporting.charts import FaultBand, throughput_over_time_svg
from reporting.verdict import CONDITIONAL, GO, NO_GO, ScenarioEvidence, decide
from results.record_format import Record
from results.recovery import FaultWindow, fault_cost, measure_recovery, steady_state
from watch.service_watch import probe_health

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# -- the schedule ------------------------------------------------------------------------------
def test_the_faults_profile_has_a_schedule_for_every_scenario() -> None:
    kinds = {
        spec.kind
        for scenario in ("high_contention", "high_throughput", "mixed_operations")
        for spec in load_schedule(scenario, "faults")
    }
    assert kinds == {"kill_worker", "postgres_restart", "postgres_pause", "db_slow_link"}
    assert {spec.kind for spec in load_schedule("session_scheduling", "faults")} == {
        "kill_worker",
        "db_partition",
    }
    assert load_schedule("high_throughput", "smoke") == ()


def test_a_schedule_is_sorted_and_defaults_are_filled_in() -> None:
    specs = parse_schedule(
        {"schedule": [{"at_s": 9, "kind": "kill_worker"}, {"at_s": 2, "kind": "postgres_pause"}]},
        "[x]",
        scenario_duration_s=20,
    )
    assert specs == (
        FaultSpec("postgres_pause", 2.0, duration_s=3.0),
        FaultSpec("kill_worker", 9.0),
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"at_s": 1, "kind": "meteor"}, "kind must be one of"),
        ({"kind": "kill_worker"}, "at_s is required"),
        ({"at_s": 1, "kind": "kill_worker", "duration_s": 2}, "instantaneous"),
        ({"at_s": 1, "kind": "postgres_pause", "delay_ms": 5}, "belong to a network_delay"),
        ({"at_s": 1, "kind": "network_delay", "loss_pct": 150}, "at most 100"),
        ({"at_s": -1, "kind": "kill_worker"}, "number ≥ 0"),
        ({"at_s": 14, "kind": "postgres_pause", "duration_s": 3}, "could not be observed"),
        ({"at_s": 1, "kind": "kill_worker", "target": "db"}, "unknown key(s) target"),
    ],
)
def test_a_bad_schedule_is_refused_with_where_and_why(entry: dict, message: str) -> None:
    with pytest.raises(NemesisConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_schedule({"schedule": [entry]}, "[s.p.nemesis]", scenario_duration_s=20)


def test_postgres_faults_on_a_server_not_ours_are_refused_unless_forced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pause = [(FaultSpec("postgres_pause", 1.0, 3.0),)]
    kill_only = [(FaultSpec("kill_worker", 1.0),)]
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert postgres_refusal(pause, target_url=None, force=False) is None
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone@elsewhere/db")
    assert "pass --force" in str(postgres_refusal(pause, target_url=None, force=False))
    assert postgres_refusal(pause, target_url=None, force=True) is None
    assert postgres_refusal(kill_only, target_url=None, force=False) is None


def test_the_command_refuses_postgres_faults_under_database_url_in_one_line(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
           "LOADTEST_REPORTS_DIR": str(tmp_path / "reports")}  # fmt: skip
    completed = subprocess.run(
        [sys.executable, "-m", "invoke", "load-test.all", "--profile", "faults"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "--force" in lines[0]
    assert not (tmp_path / "reports").exists()


# -- the faults, for real -----------------------------------------------------------------------
@pytest.fixture(scope="module", name="service_options")
def _service_options() -> ServiceOptions:
    return ServiceOptions(workers=2)


@pytest.fixture(name="postgres")
def _postgres(pg_cluster: ClusterInfo) -> PostgresServer:
    return PostgresServer(pg_cluster.workdir / "data", "postgres", pg_cluster.workdir / "pg.log")


def wait_for(condition: object, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_kill_worker_kills_one_worker_and_the_service_keeps_answering(
    service: ServiceProcess,
) -> None:
    before = service.worker_pids()
    assert len(before) == 2
    record = FaultRecord("kill_worker", 0.0)
    kill_worker(service, record)
    assert record.outcome == DONE
    victim = min(before)
    assert str(victim) in record.target
    assert wait_for(lambda: not psutil.pid_exists(victim) or _is_zombie(victim))
    assert probe_health(service.base_url) is None  # the other worker serves meanwhile
    assert wait_for(lambda: len(service.worker_pids()) == 2 and victim not in service.worker_pids())


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_kill_worker_is_skipped_for_a_service_that_is_not_ours() -> None:
    class Remote:
        base_url = "http://127.0.0.1:9"
        pid = None

    record = FaultRecord("kill_worker", 0.0)
    kill_worker(Remote(), record)
    assert record.outcome == SKIPPED
    assert "not ours" in record.reason


def test_pause_postgres_freezes_the_server_then_lets_it_go(
    postgres: PostgresServer, database_url: str
) -> None:
    record = FaultRecord("postgres_pause", 0.0)
    pausing = threading.Thread(
        target=pause_postgres, args=(postgres, record, 4.0, threading.Event())
    )
    pausing.start()
    try:
        assert wait_for(lambda: record.started_epoch is not None, 5)
        time.sleep(0.3)
        postmaster = psutil.Process(postgres.postmaster_pid())
        assert postmaster.status() == psutil.STATUS_STOPPED
        with pytest.raises(psycopg.OperationalError):  # libpq waits at least 2 s
            psycopg.connect(database_url, connect_timeout=2).close()
    finally:
        pausing.join()
    assert record.outcome == DONE
    assert record.ended_epoch - record.started_epoch >= 4.0  # type: ignore[operator]
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_restart_postgres_brings_up_a_new_postmaster(
    postgres: PostgresServer, database_url: str
) -> None:
    before = postgres.postmaster_pid()
    record = FaultRecord("postgres_restart", 0.0)
    restart_postgres(postgres, record)
    assert record.outcome == DONE
    assert record.details["new_postmaster_pid"] != before
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        settings = dict(conn.execute("SELECT name, setting FROM pg_settings").fetchall())
    # Restarted with the options it was started with, not the defaults.
    assert settings["track_commit_timestamp"] == "on"


def test_network_delay_is_skipped_with_tcs_reason_and_leaves_no_namespace() -> None:
    record = FaultRecord("network_delay", 0.0)
    delay_network(FaultSpec("network_delay", 0.0, 1.0), record, threading.Event())
    assert record.outcome == SKIPPED
    assert "netem" in record.reason
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"nemesis-{os.getpid()}" not in namespaces


def test_a_nemesis_runs_its_schedule_from_the_start_of_the_load(
    service: ServiceProcess, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    schedule = (FaultSpec("kill_worker", 0.5), FaultSpec("network_delay", 0.6, 1.0))
    with Nemesis(schedule, service=service, raw_dir=raw, postgres=None) as nemesis:
        time.sleep(0.3)
        assert nemesis.records[0].started_epoch is None  # not yet: no load seen
        (raw / "progress-1.json").write_text("{}")  # the generator is running
        assert wait_for(lambda: nemesis.records[1].outcome == SKIPPED and nemesis.records[1].reason)
        time.sleep(0.5)
    kill, delay = nemesis.records
    assert kill.outcome == DONE
    assert kill.healthz_back_after_s is not None
    assert "netem" in delay.reason
    written = nemesis.write(tmp_path)
    faults = json.loads(written.read_text())  # type: ignore[union-attr]
    assert [f["kind"] for f in faults["faults"]] == ["kill_worker", "network_delay"]
    assert faults["anchor"] == "generator processes seen running"


# -- recovery and cost, on hand-made records -------------------------------------------------------
def record(started_s: float, latency_ms: float = 10.0, status: int = 200, code: str = "",
           outcome: str = "ok") -> Record:  # fmt: skip
    return Record(f"r{started_s}", "reserve", "a", status, code, latency_ms, started_s, "t",
                  "reserve", 1, "k", 1, "w", outcome)  # fmt: skip


def steady(from_s: float, to_s: float, per_second: int) -> list[Record]:
    count = int((to_s - from_s) * per_second)
    return [record(from_s + i / per_second) for i in range(count)]


def test_recovery_is_when_throughput_and_health_are_both_back() -> None:
    # 10 served/s before a fault from 5 to 7 s, nothing until 8.5 s, then 10/s again.
    records = steady(0, 5, 10) + steady(8.5, 20, 10)
    recovery = measure_recovery(records, FaultWindow(5.0, 7.0), healthz_back_after_s=0.4)
    assert recovery.baseline_rps == pytest.approx(10.0)
    # Answers end at 8.51, 8.61, ...: [8.3, 9.3) is the first 1 s window (0.1 s steps) to hold
    # 8 of them, 80 % of the rate before; 1.3 s after the fault's end.
    assert recovery.throughput_back_after_s == pytest.approx(1.3)
    assert recovery.recovery_s == pytest.approx(1.3)
    assert recovery.recovered
    slow_health = measure_recovery(records, FaultWindow(5.0, 7.0), healthz_back_after_s=3.2)
    assert slow_health.recovery_s == pytest.approx(3.2)


def test_no_recovery_within_the_limit_is_not_recovered() -> None:
    records = steady(0, 5, 10) + steady(5, 30, 5)  # half the rate for good
    recovery = measure_recovery(records, FaultWindow(5.0, 6.0), healthz_back_after_s=0.1)
    assert recovery.throughput_back_after_s is None
    assert not recovery.recovered
    unhealthy = measure_recovery(
        steady(0, 30, 10), FaultWindow(5.0, 6.0), healthz_back_after_s=None
    )
    assert unhealthy.throughput_back_after_s == 0.0
    assert not unhealthy.recovered


def test_refusals_count_as_served_but_5xx_and_key_in_use_do_not() -> None:
    before = steady(0, 5, 10)
    after = [record(6 + i / 10, status=409, code="insufficient_units") for i in range(20)]
    assert measure_recovery(before + after, FaultWindow(5, 6), healthz_back_after_s=0).recovered
    for status, code in ((503, "unavailable"), (409, "idempotency_key_in_use")):
        after = [record(6 + i / 10, status=status, code=code) for i in range(20)]
        assert measure_recovery(before + after, FaultWindow(5, 6), healthz_back_after_s=0) \
            .throughput_back_after_s is None  # fmt: skip


def test_a_fault_costs_every_attempt_in_flight_during_its_window() -> None:
    records = [
        record(1.0),  # done before the window
        record(4.5, latency_ms=5000, status=0, code="timeout", outcome=""),  # sent before, hit
        record(5.5, status=503, code="unavailable", outcome=""),
        record(5.6, status=0, code="connection_error", outcome="info"),
        record(6.0, status=409, code="insufficient_units", outcome="fail"),
        record(9.0),  # after the window
    ]
    assert fault_cost(records, 5.0, 8.0) == {
        "attempts": 4, "refused": 1, "connection_errors": 1, "timed_out": 1,
        "unknown_outcome": 1,
    }  # fmt: skip
    outside = steady_state(records, [(5.0, 8.0)])
    assert outside["requests"] == 2
    assert outside["excluded_requests"] == 4
    assert outside["latency_ms"]["p95"] == 10.0


# -- verdict and charts ----------------------------------------------------------------------
def faults_document(*, recovered: bool, outcome: str = "done") -> dict:
    return {
        "faults": [
            {
                "kind": "postgres_pause", "outcome": outcome, "reason": "why", "start_s": 5.0,
                "end_s": 8.0, "planned_at_s": 5.0,
                "excused_from": "2026-01-01T00:00:02.000+00:00",
                "excused_until": "2026-01-01T00:00:20.000+00:00",
                "recovery": {"recovered": recovered, "recovery_s": 0.5 if recovered else None,
                             "healthz_back_after_s": 0.2, "throughput_back_after_s": None,
                             "observed_until_s": 15.0, "limit_s": 10.0, "baseline_rps": 100.0},
            }
        ],
        "steady_state": None,
    }  # fmt: skip


def evidence(faults: dict | None, events: list[dict]) -> ScenarioEvidence:
    result = {"totals": {"requests": 100, "errors": 0, "error_rate": 0.0}, "config": {},
              "run": {"exit_code": 0}, "by_status": {"200": 100}, "by_code": {}}  # fmt: skip
    integrity = {"ok": True, "checks": []}
    service = {"events": events, "healthz": {"checks": 10, "failures": len(events)},
               "delta": {"db_pool_timeouts_total": 0}, "before": {}}  # fmt: skip
    return ScenarioEvidence("s", result, integrity, service, faults=faults)


def test_a_fault_that_recovered_is_go_and_its_service_events_are_excused() -> None:
    events = [{"kind": "healthz_failed", "at": "2026-01-01T00:00:06.000+00:00", "detail": ""},
              {"kind": "restart", "at": "2026-01-01T00:00:07.000+00:00", "detail": ""}]  # fmt: skip
    assert decide([evidence(faults_document(recovered=True), events)]).decision == GO
    # The same events without a fault, or outside its window, are the service's own.
    assert decide([evidence(None, events)]).decision == NO_GO
    late = [{**event, "at": "2026-01-01T00:01:00.000+00:00"} for event in events]
    assert decide([evidence(faults_document(recovered=True), late)]).decision == NO_GO


def test_a_slow_recovery_is_no_go_and_a_failed_injection_conditional() -> None:
    verdict = decide([evidence(faults_document(recovered=False), [])])
    assert verdict.decision == NO_GO
    assert "did not recover within 10 s" in verdict.reasons[0]
    failed = decide([evidence(faults_document(recovered=True, outcome="failed"), [])])
    assert failed.decision == CONDITIONAL
    skipped = decide([evidence(faults_document(recovered=True, outcome="skipped"), [])])
    assert skipped.decision == GO
    assert "was skipped: why" in skipped.reasons[0]


def test_the_throughput_chart_shows_each_fault_as_a_band() -> None:
    series = [{"second": i, "requests": 10, "errors": 0} for i in range(20)]
    bands = [FaultBand(5.0, 8.0, 1.5, "postgres_pause"), FaultBand(12.0, 12.0, None, "kill")]
    svg = throughput_over_time_svg(series, label="t", bands=bands)
    assert svg.count('class="fault"') == 2
    assert svg.count('class="recovery"') == 1
    assert "postgres_pause" in svg
    assert 'class="fault"' not in throughput_over_time_svg(series, label="t")


# -- the DB link faults, through a real relay ------------------------------------------------------
@pytest.fixture(name="relay")
def _relay(database_url: str) -> Iterator[DbRelay]:
    with DbRelay.for_url(database_url) as relay:
        yield relay


def test_the_db_link_faults_are_read_with_their_own_keys() -> None:
    specs = parse_schedule(
        {"schedule": [{"at_s": 1, "kind": "db_slow_link", "duration_s": 2, "added_rtt_ms": 50},
                      {"at_s": 4, "kind": "db_partition", "reset": True},
                      {"at_s": 8, "kind": "db_slow_link"}]},
        "[x]",
        scenario_duration_s=20,
    )  # fmt: skip
    assert specs == (
        FaultSpec("db_slow_link", 1.0, duration_s=2.0, added_rtt_ms=50.0),
        FaultSpec("db_partition", 4.0, duration_s=3.0, reset=True),
        FaultSpec("db_slow_link", 8.0, duration_s=3.0, added_rtt_ms=100.0),
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"at_s": 1, "kind": "db_partition", "added_rtt_ms": 5}, "belongs to a db_slow_link"),
        ({"at_s": 1, "kind": "db_slow_link", "reset": True}, "belongs to a db_partition"),
        ({"at_s": 1, "kind": "db_partition", "reset": "yes"}, "reset must be true or false"),
        ({"at_s": 1, "kind": "db_slow_link", "added_rtt_ms": -5}, "number ≥ 0"),
        ({"at_s": 1, "kind": "kill_worker", "reset": True}, "belongs to a db_partition"),
    ],
)
def test_a_bad_db_link_fault_is_refused_with_where_and_why(entry: dict, message: str) -> None:
    with pytest.raises(NemesisConfigError, match=message):
        parse_schedule({"schedule": [entry]}, "[s.p.nemesis]", scenario_duration_s=20)


def test_a_db_link_fault_without_a_relay_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    schedule = (FaultSpec("kill_worker", 1.0), FaultSpec("db_partition", 2.0, 1.0))
    monkeypatch.setattr("faults.nemesis.load_schedule", lambda scenario, profile: schedule)

    class Remote:
        base_url = "http://127.0.0.1:9"
        pid = None

    arguments = {"service": Remote(), "out_dir": tmp_path, "database_url": "postgresql://x@h/d"}
    with pytest.raises(NemesisConfigError) as raised:
        nemesis_for("high_throughput", "faults", **arguments)  # type: ignore[arg-type]
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("[high_throughput.faults.nemesis]: db_partition need")
    assert "relay=relay" in message
    relay = DbRelay("127.0.0.1", 1)  # never started: the nemesis only holds on to it
    assert nemesis_for("high_throughput", "faults", relay=relay, **arguments).relay is relay  # type: ignore[arg-type]
    with pytest.raises(NemesisConfigError, match="db_partition need"):
        Nemesis(schedule, service=Remote(), raw_dir=tmp_path, postgres=None)


def test_db_partition_stalls_the_link_for_its_duration_then_lets_it_flow(
    relay: DbRelay, database_url: str
) -> None:
    answers: list[object] = []
    with psycopg.connect(relay.url_for(database_url), autocommit=True) as conn:
        conn.execute("SELECT 1")
        record = FaultRecord("db_partition", 0.0)
        spec = FaultSpec("db_partition", 0.0, duration_s=0.8)
        cutting = threading.Thread(
            target=partition_db, args=(relay, spec, record, threading.Event())
        )
        cutting.start()
        assert wait_for(lambda: relay.stats().partitioned, 5)
        asked = time.monotonic()
        answers.append(conn.execute("SELECT 2").fetchone())  # waits for the heal
        waited_s = time.monotonic() - asked
        cutting.join()
    assert answers == [(2,)]
    assert waited_s >= 0.5
    assert record.outcome == DONE
    assert record.ended_epoch - record.started_epoch >= 0.8  # type: ignore[operator]
    assert "stalled" in record.target
    assert record.details["reset"] is False
    assert record.details["bytes_held_at_heal"] > 0
    assert not relay.stats().partitioned


def test_db_partition_with_reset_cuts_the_connections(relay: DbRelay, database_url: str) -> None:
    conn = psycopg.connect(relay.url_for(database_url), autocommit=True)
    try:
        conn.execute("SELECT 1")
        record = FaultRecord("db_partition", 0.0)
        spec = FaultSpec("db_partition", 0.0, duration_s=0.3, reset=True)
        partition_db(relay, spec, record, threading.Event())
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()
    assert record.outcome == DONE
    assert record.details["connections_reset"] == 1
    with psycopg.connect(relay.url_for(database_url)) as healed:  # new connections work again
        assert healed.execute("SELECT 1").fetchone() == (1,)


def test_db_slow_link_adds_its_round_trip_for_its_duration_only(
    relay: DbRelay, database_url: str
) -> None:
    relay.set_added_rtt_ms(1.0)  # a baseline the fault adds to and gives back
    record = FaultRecord("db_slow_link", 0.0)
    spec = FaultSpec("db_slow_link", 0.0, duration_s=1.0, added_rtt_ms=40.0)
    slowing = threading.Thread(target=slow_db_link, args=(relay, spec, record, threading.Event()))
    with psycopg.connect(relay.url_for(database_url), autocommit=True) as conn:
        slowing.start()
        assert wait_for(lambda: relay.stats().added_rtt_ms == 41.0, 5)
        started = time.perf_counter()
        conn.execute("SELECT 1")
        slow_ms = (time.perf_counter() - started) * 1000
        slowing.join()
        started = time.perf_counter()
        conn.execute("SELECT 1")
        after_ms = (time.perf_counter() - started) * 1000
    assert slow_ms >= 40.0
    assert after_ms < 20.0
    assert relay.added_rtt_ms == 1.0
    assert record.outcome == DONE
    assert record.details == {"added_rtt_ms": 40.0, "rtt_ms_before": 1.0, "rtt_ms_during": 41.0}


def test_a_nemesis_cuts_and_slows_the_services_db_link_and_records_its_recovery(
    relay: DbRelay, database_url: str, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    schedule = (
        FaultSpec("db_slow_link", 0.2, duration_s=0.5, added_rtt_ms=50.0),
        FaultSpec("db_partition", 0.8, duration_s=0.6),
    )
    url = relay.url_for(database_url)
    with start_service(url, workers=1, log_path=tmp_path / "service.log") as service:
        assert probe_health(service.base_url) is None
        with Nemesis(schedule, service=service, raw_dir=raw, postgres=None, relay=relay) as nemesis:
            (raw / "progress-1.json").write_text("{}")  # the load begins
            assert wait_for(lambda: nemesis.records[1].healthz_back_after_s is not None, 15)
    slow, cut = nemesis.records
    assert (slow.outcome, cut.outcome) == (DONE, DONE)
    assert cut.started_epoch - slow.ended_epoch >= 0.0  # type: ignore[operator]
    faults = json.loads(nemesis.write(tmp_path).read_text())  # type: ignore[union-attr]
    by_kind = {fault["kind"]: fault for fault in faults["faults"]}
    assert by_kind["db_slow_link"]["duration_s"] == pytest.approx(0.5, abs=0.1)
    assert by_kind["db_partition"]["duration_s"] == pytest.approx(0.6, abs=0.1)
    assert by_kind["db_partition"]["recovery"]["healthz_back_after_s"] is not None
    assert by_kind["db_partition"]["excused_from"] is not None
    assert relay.stats().connections_accepted >= 1  # the service did talk through the relay
