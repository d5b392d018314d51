"""Prometheus remote write: the encoding by hand-picked bytes, the feed's figures, and a real
Prometheus (Debian's `prometheus`, started here with its remote-write receiver) that reads the
series back and agrees with result.json and summary.json.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support_profiles import high_contention_profile

from load_runner.profiles import PROFILES_PATH_ENV
from pipeline.commands import all_command
from pipeline.metrics_stream import MetricsStream, RemoteWriter, finish_stream
from pipeline.run import run_all
from reporting.live_metrics import (
    RemoteWriteUrlError,
    ScenarioFeed,
    check_remote_write_url,
    verdict_samples,
)
from reporting.remote_write import encode_write_request, labelled, snappy_compress
from reporting.report import write_report
from results.collect import LiveProgress, OperationProgress
from results.record_format import live_bucket, live_bucket_upper_ms

PROMETHEUS = shutil.which("prometheus") or (
    "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="no prometheus binary (Debian: apt-get install prometheus; .ci/run installs it)",
)
READY_TIMEOUT_S = 30.0
LABELS = {"job": "clinic-loadtest", "run_id": "r1", "commit": "abc1234", "profile": "smoke"}


# -- the encoding ----------------------------------------------------------------------------
def test_snappy_writes_a_literal_then_a_copy() -> None:
    # Length 12 (varint), literal "abcd" (tag 3<<2), copy 8 bytes from 4 back (tag 7<<2|2).
    assert snappy_compress(b"abcdabcdabcd") == b"\x0c\x0cabcd\x1e\x04\x00"
    assert snappy_compress(b"") == b"\x00"
    # A literal of 60 bytes or more puts its length after the tag (60<<2 = one byte of it).
    assert snappy_compress(bytes(range(61)))[:3] == b"\x3d\xf0\x3c"


def test_a_write_request_is_the_protobuf_remote_write_reads() -> None:
    sample = labelled("up", 1.0, 1000, {"job": "x"})
    # WriteRequest{timeseries(1): {labels(1): [__name__=up, job=x], samples(2): {1.0, 1000}}}
    name = b"\x0a\x0e" + b"\x0a\x08__name__" + b"\x12\x02up"
    job = b"\x0a\x08" + b"\x0a\x03job" + b"\x12\x01x"
    # value: fixed64 little-endian 1.0; timestamp: varint 1000 = e8 07.
    point = b"\x12\x0c" + b"\x09\x00\x00\x00\x00\x00\x00\xf0\x3f" + b"\x10\xe8\x07"
    series = name + job + point
    assert encode_write_request([sample]) == b"\x0a" + bytes([len(series)]) + series


def test_a_url_that_is_not_http_is_refused() -> None:
    assert check_remote_write_url("http://127.0.0.1:9090/api/v1/write")
    for bad in ("127.0.0.1:9090", "ftp://host/x", "http://", "http://host:port/x"):
        with pytest.raises(RemoteWriteUrlError, match="--prometheus-remote-write"):
            check_remote_write_url(bad)


# -- the feed's figures ----------------------------------------------------------------------
def _buckets(latencies_ms: list[float]) -> dict[int, int]:
    buckets: dict[int, int] = {}
    for latency in latencies_ms:
        buckets[live_bucket(latency)] = buckets.get(live_bucket(latency), 0) + 1
    return buckets


def _progress(reserve_ms: list[float], errors: int, in_flight: int) -> LiveProgress:
    operation = OperationProgress(len(reserve_ms), errors, _buckets(reserve_ms))
    return LiveProgress(
        len(reserve_ms), errors, _buckets(reserve_ms), {"reserve": operation}, in_flight
    )


def _values(samples: list[Any]) -> dict[tuple[str, str, str], float]:
    labels = [dict(sample.labels) for sample in samples]
    return {
        (s.name, la.get("operation", ""), la.get("quantile", "")): s.value
        for s, la in zip(samples, labels, strict=True)
    }


def test_the_feed_sends_totals_and_the_percentiles_of_the_new_requests_only() -> None:
    feed = ScenarioFeed("high_contention", LABELS)
    first = list(range(1, 101))  # 1..100 ms: p50 is 50, p95 95, p99 99 (nearest rank)
    values = _values(feed.samples(_progress(first, 3, 7), 1000, {"retries": 4.0}))
    assert values[("loadtest_requests_total", "reserve", "")] == 100
    assert values[("loadtest_errors_total", "reserve", "")] == 3
    assert values[("loadtest_operations_in_flight", "", "")] == 7
    assert values[("loadtest_db_serialization_retries_total", "", "")] == 4
    for percent in (50, 95, 99):
        expected_s = live_bucket_upper_ms(live_bucket(percent)) / 1000
        assert values[("loadtest_latency_seconds", "reserve", str(percent / 100))] == expected_s
        assert values[("loadtest_latency_seconds", "", str(percent / 100))] == expected_s
    # The next second adds ten requests of 1 s: its percentiles are of those ten alone.
    values = _values(feed.samples(_progress([*first, *[1000.0] * 10], 3, 0), 2000, None))
    assert values[("loadtest_requests_total", "reserve", "")] == 110
    one_second = live_bucket_upper_ms(live_bucket(1000.0)) / 1000
    assert values[("loadtest_latency_seconds", "reserve", "0.5")] == one_second
    assert ("loadtest_db_serialization_retries_total", "", "") not in values  # unknown: none
    # A progress file skipped mid-rewrite reads fewer requests: the counter does not go back,
    # and no new request means no percentile.
    values = _values(feed.samples(_progress(first, 1, 0), 3000, {"retries": 4.0}))
    assert values[("loadtest_requests_total", "reserve", "")] == 110
    assert values[("loadtest_errors_total", "reserve", "")] == 3
    assert ("loadtest_latency_seconds", "reserve", "0.5") not in values


def test_the_verdict_is_one_series_per_decision() -> None:
    samples = verdict_samples("NO-GO", LABELS, 5000)
    assert {dict(s.labels)["decision"]: s.value for s in samples} == {
        "GO": 0.0,
        "CONDITIONAL": 0.0,
        "NO-GO": 1.0,
    }


# -- a real Prometheus -----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module", name="prometheus")
def _prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start Prometheus on 127.0.0.1 with its remote-write receiver; yield its base URL."""
    if PROMETHEUS is None:
        pytest.skip("no prometheus binary")
    folder = tmp_path_factory.mktemp("prometheus")
    config = folder / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with (folder / "prometheus.log").open("w") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-remote-write-receiver",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log_text = (folder / "prometheus.log").read_text()[-2000:]
                raise RuntimeError(f"prometheus did not become ready:\n{log_text}")
            time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _query(base_url: str, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Return an instant query's vector: each series' labels (no __name__) to its value."""
    query = urllib.parse.urlencode({"query": promql, "time": f"{time.time() + 1:.3f}"})
    with urllib.request.urlopen(f"{base_url}/api/v1/query?{query}", timeout=5) as response:
        document = json.loads(response.read())
    assert document["status"] == "success", document
    return {
        tuple(sorted((k, v) for k, v in item["metric"].items() if k != "__name__")): float(
            item["value"][1]
        )
        for item in document["data"]["result"]
    }


def _one(base_url: str, promql: str) -> float:
    (value,) = _query(base_url, promql).values()
    return value


def _write_progress(raw: Path, pid: int, reserve: int, release: int, in_flight: int) -> None:
    operations = {
        "reserve": {"requests": reserve, "errors": reserve // 10, "buckets": {"500": reserve}},
        "release": {"requests": release, "errors": 0, "buckets": {"400": release}},
    }
    document = {
        "pid": pid,
        "requests": reserve + release,
        "errors": reserve // 10,
        "buckets": {"500": reserve, "400": release},
        "cpu_seconds": 0.0,
        "in_flight": in_flight,
        "operations": operations,
    }
    temporary = raw / f"progress-{pid}.json.tmp"
    temporary.write_text(json.dumps(document))
    temporary.replace(raw / f"progress-{pid}.json")


@needs_prometheus
def test_prometheus_reads_back_the_streamed_series(prometheus: str, tmp_path: Path) -> None:
    raw = tmp_path / "high_contention" / "raw"
    raw.mkdir(parents=True)
    stream = MetricsStream(RemoteWriter(f"{prometheus}/api/v1/write"), interval_s=0.1)
    stream.labels = {**LABELS, "run_id": "feed-test"}
    retries = {"retries": 0.0, "conflicts": 0.0}
    with stream, stream.follow("high_contention", raw, lambda: dict(retries)):
        for second in range(1, 6):
            _write_progress(raw, 1, reserve=100 * second, release=10 * second, in_flight=second)
            _write_progress(raw, 2, reserve=50 * second, release=5 * second, in_flight=1)
            retries["retries"] = 3.0 * second
            time.sleep(0.15)
    line = finish_stream(stream, "CONDITIONAL", tmp_path)
    evidence = json.loads((tmp_path / "remote_write.json").read_text())
    assert evidence["failed"] == 0, evidence
    assert evidence["writes"] >= 5
    assert line.startswith("[remote write] 0 of ")
    assert "CONDITIONAL was sent" in line

    run = '{run_id="feed-test"}'
    requests = _query(prometheus, f"sum by (operation) (loadtest_requests_total{run})")
    assert requests == {(("operation", "release"),): 75.0, (("operation", "reserve"),): 750.0}
    assert _one(prometheus, f"sum(loadtest_errors_total{run})") == 75.0
    assert _one(prometheus, f"loadtest_operations_in_flight{run}") == 6.0
    assert _one(prometheus, f"loadtest_db_serialization_retries_total{run}") == 15.0
    # Every reserve took bucket 500's latency: each second's percentiles say so.
    p99 = 'loadtest_latency_seconds{run_id="feed-test",operation="reserve",quantile="0.99"}'
    assert _one(prometheus, f"max_over_time({p99}[5m])") == pytest.approx(
        live_bucket_upper_ms(500) / 1000
    )
    assert _one(prometheus, f"count_over_time({p99}[5m])") >= 2  # one point a second, not one
    verdict = _query(prometheus, f"loadtest_verdict{run}")
    assert {dict(labels)["decision"]: value for labels, value in verdict.items()} == {
        "GO": 0.0,
        "CONDITIONAL": 1.0,
        "NO-GO": 0.0,
    }
    (labels,) = _query(prometheus, "loadtest_verdict{run_id='feed-test',decision='GO'}")
    assert dict(labels)["commit"] == "abc1234"
    assert dict(labels)["profile"] == "smoke"


class _BlackHole:
    """A TCP server that accepts connections and never answers: the slowest endpoint."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.socket.close()
        for connection in self.held:
            connection.close()


@pytest.mark.parametrize("endpoint", ["refused", "silent"])
def test_an_endpoint_that_fails_costs_the_feed_its_writes_not_the_run_its_time(
    endpoint: str, tmp_path: Path
) -> None:
    hole = _BlackHole()
    port = _free_port() if endpoint == "refused" else hole.port
    raw = tmp_path / "high_contention" / "raw"
    raw.mkdir(parents=True)
    stream = MetricsStream(RemoteWriter(f"http://127.0.0.1:{port}/api/v1/write"), interval_s=0.1)
    stream.labels = dict(LABELS)
    started = time.monotonic()
    try:
        with stream, stream.follow("high_contention", raw):
            for second in range(1, 11):
                _write_progress(raw, 1, reserve=10 * second, release=second, in_flight=1)
                time.sleep(0.1)
        loaded = time.monotonic() - started
        line = finish_stream(stream, "GO", tmp_path)
    finally:
        hole.close()
    # One second of "load", plus at most the writer's deadline at the end (2 s), however slow.
    assert loaded < 1.0 + 2.0 + 0.5
    evidence = json.loads((tmp_path / "remote_write.json").read_text())
    assert evidence["writes"] >= 5
    assert evidence["delivered"] == 0
    assert evidence["failed"] == evidence["writes"]
    assert evidence["verdict"] == {"decision": "GO", "delivered": False}
    assert f"{evidence['writes']} of {evidence['writes']} writes to" in line
    assert "the run was not affected" in line
    assert "GO was not delivered" in line


# -- a short real run ------------------------------------------------------------------------
SCENARIO = "high_contention"


@needs_prometheus
def test_a_run_streams_what_its_result_and_verdict_say(
    prometheus: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("LOADTEST_FIXTURES_PATH", str(tmp_path / "test-data.json"))
    monkeypatch.setenv(
        PROFILES_PATH_ENV,
        str(high_contention_profile(tmp_path / "profiles.toml", users=20, duration_s=3)),
    )
    monkeypatch.delenv("TARGET_UNSAFE_DELAY_MS", raising=False)
    stream = MetricsStream.to(f"{prometheus}/api/v1/write")
    outcome = run_all(
        profile="smoke",
        scenarios=[SCENARIO],
        reports_root=tmp_path / "reports",
        progress=False,
        metrics_stream=stream,
    )
    finish_stream(stream, outcome.decision, outcome.run_dir)
    result = json.loads((outcome.run_dir / SCENARIO / "result.json").read_text())
    summary = json.loads(outcome.summary_path.read_text())
    run = f'{{run_id="{outcome.run_dir.name}",scenario="{SCENARIO}"}}'
    assert result["totals"]["requests"] > 0
    assert _one(prometheus, f"sum(loadtest_requests_total{run})") == result["totals"]["requests"]
    assert _one(prometheus, f"sum(loadtest_errors_total{run})") == result["totals"]["errors"]
    by_operation = _query(prometheus, f"sum by (operation) (loadtest_requests_total{run})")
    assert {dict(labels)["operation"]: value for labels, value in by_operation.items()} == {
        operation: figures["requests"] for operation, figures in result["by_operation"].items()
    }
    decided = _query(prometheus, f'loadtest_verdict{{run_id="{outcome.run_dir.name}"}} == 1')
    assert [dict(labels)["decision"] for labels in decided] == [summary["verdict"]["decision"]]
    (labels,) = decided
    assert dict(labels)["strategy"] == summary["strategy"]
    assert dict(labels)["isolation"] == summary["isolation"]
    # About a point a second of the run, and the report says no write failed.
    p95 = (
        f'loadtest_latency_seconds{{run_id="{outcome.run_dir.name}",operation="",quantile="0.95"}}'
    )
    assert _one(prometheus, f"count_over_time({p95}[5m])") >= 2
    assert summary["remote_write"]["failed"] == 0
    assert summary["remote_write"]["line"].startswith("0 of ")
    assert summary["remote_write"]["line"] in outcome.report_path.read_text()


def test_a_run_whose_endpoint_refuses_keeps_its_verdict_and_says_so(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("LOADTEST_FIXTURES_PATH", str(tmp_path / "test-data.json"))
    monkeypatch.setenv(
        PROFILES_PATH_ENV,
        str(high_contention_profile(tmp_path / "profiles.toml", users=20, duration_s=3)),
    )
    monkeypatch.delenv("TARGET_UNSAFE_DELAY_MS", raising=False)
    url = f"http://127.0.0.1:{_free_port()}/api/v1/write"  # nothing listens there
    stream = MetricsStream.to(url)
    outcome = run_all(
        profile="smoke",
        scenarios=[SCENARIO],
        reports_root=tmp_path / "reports",
        progress=False,
        metrics_stream=stream,
    )
    line = finish_stream(stream, outcome.decision, outcome.run_dir)
    summary = json.loads(outcome.summary_path.read_text())
    run = json.loads((outcome.run_dir / "run.json").read_text())
    writes = summary["remote_write"]["writes"]
    assert writes >= 3  # about one a second of load
    assert summary["remote_write"]["failed"] == writes
    assert summary["remote_write"]["line"].startswith(f"{writes} of {writes} writes to {url}")
    assert "the run was not affected" in outcome.report_path.read_text()
    assert "was not delivered" in line
    assert all(step["ok"] for step in run["steps"])
    # The same run folder without the feed's figures decides the same, for the same reasons.
    del run["remote_write"]
    (outcome.run_dir / "run.json").write_text(json.dumps(run))
    again = write_report(outcome.run_dir)
    assert again.decision == outcome.decision
    assert tuple(again.summary["verdict"]["reasons"]) == outcome.reasons
    assert "remote_write" not in again.summary


def test_a_bad_url_exits_2_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOADTEST_REPORTS_DIR", str(tmp_path / "reports"))
    with pytest.raises(SystemExit) as exited:
        all_command(scenarios=SCENARIO, prometheus_remote_write="127.0.0.1:9090/api/v1/write")
    assert exited.value.code == 2
    assert "--prometheus-remote-write must be an http(s) URL" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()  # no run folder: nothing started
