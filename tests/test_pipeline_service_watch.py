"""The service watch: Prometheus parsing on hand-picked text, and events from real servers."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.service_process import start_service
from reporting.verdict import ScenarioEvidence, judge_scenario
from watch.service_watch import (
    COUNTERS,
    FIRST_SCRAPE_ATTEMPTS,
    WORKER_RESTARTS,
    ServiceWatch,
    metric_delta,
    parse_metrics,
)

METRICS_TEXT = """\
# HELP http_requests_total HTTP requests
# TYPE http_requests_total counter
http_requests_total{route="/a",method="POST",status="200",code="ok"} 90.0
http_requests_total{route="/a",method="POST",status="409",code="insufficient_units"} 7.0
http_requests_total{route="/a",method="POST",status="503",code="unavailable"} 2.0
http_requests_total{route="/b",method="GET",status="500",code="internal_error"} 1.0
http_requests_created{route="/a",method="POST",status="200",code="ok"} 1.7e9
# TYPE db_serialization_retries_total counter
db_serialization_retries_total 12.0
# TYPE db_pool_timeouts_total counter
db_pool_timeouts_total 2.0
# TYPE db_pool_waiting gauge
db_pool_waiting 3.0
"""
WAIT_S = 20.0


def test_parse_metrics_sums_label_sets() -> None:
    assert parse_metrics(METRICS_TEXT) == {
        "http_requests_total": 100.0,
        "http_5xx_total": 3.0,
        'http_requests_total{status="503",code="unavailable"}': 2.0,
        'http_requests_total{status="500",code="internal_error"}': 1.0,
        "db_serialization_retries_total": 12.0,
        "db_pool_timeouts_total": 2.0,
        "db_pool_waiting": 3.0,
    }


def test_metric_delta_counts_counters_only() -> None:
    before = {"db_pool_timeouts_total": 1.0, "http_requests_total": 10.0, "db_pool_waiting": 4.0}
    after = {
        "db_pool_timeouts_total": 3.0,
        "http_requests_total": 25.0,
        "db_pool_waiting": 0.0,
        "db_serialization_retries_total": 5.0,
    }
    assert metric_delta(before, after) == {
        "db_pool_timeouts_total": 2.0,
        "db_serialization_retries_total": 5.0,
        "http_requests_total": 15.0,
    }


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class FakeState:
    healthy: bool = True
    pool_timeouts: float = 0.0
    alive: bool = True
    metrics_failures: int = 0  # how many /metrics requests to answer 500 before answering
    worker_restarts: float | None = None  # the supervisor's counter, when the service has one
    metrics_answered: int = 0  # /metrics answers with figures so far: the watcher's scrapes


@pytest.fixture(name="fake_service")
def _fake_service() -> Iterator[tuple[FakeState, object]]:
    """A plain HTTP server that answers /healthz and /metrics as the state says."""
    state = FakeState()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                status = 200 if state.healthy else 503
                body = b'{"status": "ok"}' if state.healthy else b'{"code": "unavailable"}'
            elif state.metrics_failures > 0:
                state.metrics_failures -= 1
                status, body = 500, b"busy"
            else:
                status = 200
                state.metrics_answered += 1
                text = f"db_pool_timeouts_total {state.pool_timeouts}\n"
                if state.worker_restarts is not None:
                    text += f"{WORKER_RESTARTS} {state.worker_restarts}\n"
                body = text.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    class Service:
        base_url = f"http://127.0.0.1:{server.server_address[1]}"
        pid = os.getpid()

        def is_alive(self) -> bool:
            return state.alive

    yield state, Service()
    server.shutdown()
    server.server_close()


def test_pool_exhaustion_and_health_failures_are_timed(fake_service) -> None:
    state, service = fake_service
    with ServiceWatch(service, interval_s=0.05) as watch:
        state.pool_timeouts = 4.0
        wait_for(lambda: any(e["kind"] == "pool_exhaustion" for e in watch.events), "exhaustion")
        state.healthy = False
        wait_for(lambda: any(e["kind"] == "healthz_failed" for e in watch.events), "failure")
        state.healthy = True
        wait_for(lambda: any(e["kind"] == "healthz_recovered" for e in watch.events), "recovery")
    evidence = watch.evidence()
    assert evidence["alive"] is True
    assert evidence["delta"]["db_pool_timeouts_total"] == 4.0
    exhaustion = next(e for e in evidence["events"] if e["kind"] == "pool_exhaustion")
    assert exhaustion["detail"] == "4 requests found no free connection"
    assert exhaustion["at"].startswith("20")
    assert evidence["healthz"]["failures"] >= 1


def test_metric_delta_without_a_baseline_is_unknown_not_a_total() -> None:
    after = {"db_pool_timeouts_total": 9.0, 'http_requests_total{status="503",code="x"}': 1.0}
    delta = metric_delta(None, after)
    assert set(delta) == {*COUNTERS, 'http_requests_total{status="503",code="x"}'}
    assert all(value is None for value in delta.values())


def test_a_failed_first_scrape_is_retried(fake_service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("watch.service_watch.FIRST_SCRAPE_RETRY_S", 0.01)
    state, service = fake_service
    state.pool_timeouts = 5.0  # an earlier scenario's
    state.metrics_failures = FIRST_SCRAPE_ATTEMPTS - 1
    with ServiceWatch(service, interval_s=0.05) as watch:
        state.pool_timeouts = 7.0
        wait_for(lambda: any(e["kind"] == "pool_exhaustion" for e in watch.events), "exhaustion")
    evidence = watch.evidence()
    assert evidence["before"] == {"db_pool_timeouts_total": 5.0}
    assert evidence["delta"] == {"db_pool_timeouts_total": 2.0}
    assert [e["detail"] for e in evidence["events"]] == ["2 requests found no free connection"]


def test_without_a_first_scrape_deltas_are_unknown_and_old_timeouts_are_not_blamed(
    fake_service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("watch.service_watch.FIRST_SCRAPE_RETRY_S", 0.01)
    state, service = fake_service
    state.pool_timeouts = 5.0  # an earlier scenario's
    state.metrics_failures = FIRST_SCRAPE_ATTEMPTS
    with ServiceWatch(service, interval_s=0.05) as watch:
        assert state.metrics_failures == 0, "every first attempt was made"
        # Three more scrapes that see the earlier scenarios' total: the watcher handled at
        # least two of them (it scrapes one at a time) before we look at its events.
        seen = state.metrics_answered
        wait_for(lambda: state.metrics_answered >= seen + 3, "three scrapes of the old total")
        assert watch.events == []
        state.pool_timeouts = 8.0
        wait_for(lambda: any(e["kind"] == "pool_exhaustion" for e in watch.events), "exhaustion")
    evidence = watch.evidence()
    assert evidence["before"] is None
    assert evidence["after"] == {"db_pool_timeouts_total": 8.0}
    assert evidence["delta"] == dict.fromkeys(sorted(COUNTERS))
    assert [e["detail"] for e in evidence["events"]] == ["3 requests found no free connection"]
    json.dumps(evidence)  # service.json can hold it
    # The report's consumers read it without failing (unknown counts show as missing).
    judge_scenario(ScenarioEvidence("high_contention", service=evidence))


def test_process_exit_is_a_crash(fake_service) -> None:
    state, service = fake_service
    with ServiceWatch(service, interval_s=0.05) as watch:
        state.alive = False
        wait_for(lambda: bool(watch.events), "crash")
    assert [e["kind"] for e in watch.evidence()["events"]] == ["crash"]
    assert watch.evidence()["alive"] is False


def test_real_service_a_killed_worker_is_a_restart_a_killed_supervisor_a_crash(
    database_url: str, tmp_path: Path
) -> None:
    with start_service(database_url, workers=2, log_path=tmp_path / "service.log") as service:
        with ServiceWatch(service, interval_s=0.1) as watch:
            wait_for(lambda: watch.evidence()["healthz"]["checks"] >= 3, "three probes")
        clean = watch.evidence()
        assert clean["events"] == []
        assert clean["alive"] is True
        assert clean["healthz"]["failures"] == 0
        assert clean["delta"]["http_requests_total"] >= 3  # our own probes are counted
        assert clean["worker_restarts"] == {"count": 0, "at": []}
        (folder := tmp_path / "scenario").mkdir()
        assert watch.write(folder).name == "service.json"

        # A worker that dies is replaced by the supervisor: a restart; the service stays up.
        victim = service.worker_pids()[0]
        with ServiceWatch(service, interval_s=0.1) as watch:
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: any(e["kind"] == "restart" for e in watch.events), "restart")
        evidence = watch.evidence()
        assert evidence["alive"] is True
        (restart,) = [e for e in evidence["events"] if e["kind"] == "restart"]
        assert restart["detail"].startswith(f"workers [{victim}] replaced by [")
        # A probe the victim was answering may fail; nothing else may happen.
        assert {e["kind"] for e in evidence["events"]} <= {
            "restart",
            "healthz_failed",
            "healthz_recovered",
        }
        assert evidence["delta"][WORKER_RESTARTS] == 1
        assert evidence["worker_restarts"] == {"count": 1, "at": [restart["at"]]}

        # The supervisor's death is the service's: a crash.
        with ServiceWatch(service, interval_s=0.1) as watch:
            os.kill(service.pid, signal.SIGKILL)
            wait_for(lambda: any(e["kind"] == "crash" for e in watch.events), "crash")
        evidence = watch.evidence()
        assert evidence["alive"] is False
        assert [e["kind"] for e in evidence["events"]][-1] == "crash"
        assert {e["kind"] for e in evidence["events"]} <= {"healthz_failed", "crash"}


def test_replaced_worker_is_a_restart(fake_service) -> None:
    """Watch this test process as the "server": its child processes play the workers."""
    _, service = fake_service
    first = subprocess.Popen(["sleep", "60"])
    second = None
    try:
        with ServiceWatch(service, interval_s=0.05) as watch:
            first.kill()
            first.wait()
            second = subprocess.Popen(["sleep", "60"])
            wait_for(lambda: bool(watch.events), "restart")
        (event,) = watch.evidence()["events"]
        assert event["kind"] == "restart"
        assert event["detail"] == f"workers [{first.pid}] replaced by [{second.pid}]"
        assert watch.evidence()["worker_restarts"] == {"count": 1, "at": [event["at"]]}
    finally:
        stop(first, second)


def test_a_replacement_seen_ticks_after_the_exit_is_one_restart_timed_at_the_exit(
    fake_service,
) -> None:
    _, service = fake_service
    first = subprocess.Popen(["sleep", "60"])
    second = None
    try:
        with ServiceWatch(service, interval_s=0.05) as watch:
            first.kill()
            first.wait()
            time.sleep(0.3)  # several ticks see the exit before the replacement comes
            second = subprocess.Popen(["sleep", "60"])
            wait_for(lambda: bool(watch.events), "restart")
        (event,) = watch.evidence()["events"]
        assert event["kind"] == "restart"
        assert event["detail"] == f"workers [{first.pid}] replaced by [{second.pid}]"
        assert event["at"] < watch.evidence()["ended_at"]
    finally:
        stop(first, second)


def test_an_exit_unreplaced_after_the_grace_period_is_a_worker_exit(
    fake_service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("watch.service_watch.REPLACEMENT_GRACE_S", 0.2)
    _, service = fake_service
    first = subprocess.Popen(["sleep", "60"])
    try:
        with ServiceWatch(service, interval_s=0.05) as watch:
            first.kill()
            first.wait()
            wait_for(lambda: bool(watch.events), "worker exit")
        (event,) = watch.evidence()["events"]
        assert event["kind"] == "worker_exit"
        assert event["detail"] == f"workers [{first.pid}] exited, none replaced them within 0.2 s"
        assert watch.evidence()["worker_restarts"] == {"count": 0, "at": []}
    finally:
        stop(first)


def test_an_exit_just_before_the_end_waits_for_its_replacement(fake_service) -> None:
    _, service = fake_service
    first = subprocess.Popen(["sleep", "60"])
    replacements: list[subprocess.Popen[bytes]] = []
    try:
        watch = ServiceWatch(service, interval_s=0.05)
        with watch:
            first.kill()
            first.wait()
            # The replacement comes after the watch was asked to stop, within the grace period.
            timer = threading.Timer(
                0.3, lambda: replacements.append(subprocess.Popen(["sleep", "60"]))
            )
            timer.start()
        timer.join()
        assert [e["kind"] for e in watch.evidence()["events"]] == ["restart"]
    finally:
        stop(first, *replacements)


def test_without_pids_the_restart_counter_tells_restarts(fake_service) -> None:
    state, service = fake_service
    service.pid = None  # a service we did not start
    state.worker_restarts = 2.0
    with ServiceWatch(service, interval_s=0.05) as watch:
        state.worker_restarts = 3.0
        wait_for(lambda: bool(watch.events), "restart")
    (event,) = watch.evidence()["events"]
    assert event["kind"] == "restart"
    assert event["detail"] == f"1 workers restarted ({WORKER_RESTARTS})"
    assert watch.evidence()["worker_restarts"] == {"count": 1, "at": [event["at"]]}
    assert watch.evidence()["alive"] is True


def stop(*processes: subprocess.Popen[bytes] | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
