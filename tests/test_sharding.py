"""Sharded runs: N shard processes against one real service, merged exactly, then checked.

The round trip runs each shard as its own `invoke load-test.scenario2 --shard I/N` process;
as root, where `ip netns` works, each in a network namespace of its own (a veth pair, its own
address, the service reached through a forwarder on the host side), else on loopback. The test
prints which ran. The merge must reproduce the percentiles of all the shards' records taken
together, and the integrity checks must reconcile the union of their operations with the ledger.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support_profiles import shortened_profiles
from support_service import SeededStack, seeded_stack

from load_runner.merge import merge_shards
from load_runner.profiles import PROFILES_PATH_ENV, load_scenario_config
from load_runner.sharding import (
    Shard,
    ShardError,
    estimate_clock_offset,
    parse_shard,
    parse_start_at,
    shard_config,
)
from local_postgres import ClusterInfo
from pipeline.merge import merge_and_report
from results.latency import latency_summary
from results.merge import ShardMergeError
from results.record_format import decode_record
from seeding import reset_to_baseline

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BACKGROUND = 5_000
SCENARIO = "high_throughput"
TASK = "load-test.scenario2"
SHARDS = 2
START_MARGIN_S = 10.0  # shard processes start, import and estimate their clock within this
SHORT_RUN_S = 4


@pytest.fixture(scope="module", name="stack")
def _stack(
    pg_cluster: ClusterInfo, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SeededStack]:
    """Seed one database and serve it for the whole module; each test resets it to baseline."""
    folder = tmp_path_factory.mktemp("fixtures")
    with seeded_stack(pg_cluster, migrated_template, folder, background=BACKGROUND) as stack:
        yield stack


# -- Shard arithmetic and bad input ---------------------------------------------------------
def test_shard_arguments_are_read_and_checked() -> None:
    assert parse_shard("2/4") == Shard(2, 4)
    for bad in ("0/4", "5/4", "4", "a/b", "1/0", "-1/3"):
        with pytest.raises(ShardError):
            parse_shard(bad)
    now = 1_000_000.0
    assert parse_start_at("999998", now=now) == 999_998.0  # a moment late: tolerated
    with pytest.raises(ShardError, match="in the past"):
        parse_start_at("999990", now=now)


def test_each_shard_runs_its_share_of_users_and_rate() -> None:
    closed = load_scenario_config(SCENARIO, "smoke")  # 40 users over 2 processes
    shares = [shard_config(closed, Shard(i, 3)) for i in (1, 2, 3)]
    assert [s.users for s in shares] == [14, 13, 13]
    assert sum(s.users for s in shares) == closed.users
    assert all(s.users % s.processes == 0 for s in shares)
    opened = load_scenario_config(SCENARIO, "open")  # 300 requests/s
    assert sum(shard_config(opened, Shard(i, 4)).arrival_rate_rps for i in range(1, 5)) == 300
    with pytest.raises(ShardError, match="too few"):
        shard_config(closed, Shard(41, 41))  # 40 users: none left for it


@pytest.mark.parametrize(
    ("shard", "start_in_s", "expected"),
    [("3/2", 30, "within 1..2"), ("0/2", 30, "within 1..2"), ("1/2", -60, "in the past")],
)
def test_bad_shard_input_is_one_line_and_exit_2(
    shard: str, start_in_s: float, expected: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    completed = _invoke(TASK, "--shard", shard, "--start-at", str(time.time() + start_in_s),
                        "--target-url", "http://127.0.0.1:9", "--run-dir", str(out))  # fmt: skip
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1
    assert expected in lines[0]
    assert not out.exists()


def test_the_clock_offset_comes_from_the_date_header(stack: SeededStack) -> None:
    # Same host, same clock: the estimate must find (about) zero, within its own bounds.
    offset = estimate_clock_offset(stack.base_url)
    assert offset.source == "date_header"
    assert offset.uncertainty_s < 0.5
    assert abs(offset.offset_s) <= offset.uncertainty_s + 0.01


# -- The round trip ---------------------------------------------------------------------------
def test_shards_merge_exactly_and_reconcile_with_the_ledger(
    stack: SeededStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The merge is exact at any length: 4 s of load give each shard hundreds of records.
    profiles = shortened_profiles(tmp_path / "profiles.toml", "smoke", SHORT_RUN_S)
    monkeypatch.setenv(PROFILES_PATH_ENV, str(profiles))  # the shards inherit it
    reset_to_baseline(stack.database_url)
    start_at = time.time() + START_MARGIN_S
    outs = [tmp_path / f"shard-{index}" for index in range(1, SHARDS + 1)]
    with _network(SHARDS, stack.base_url) as (mode, urls):
        print(f"shards ran in: {mode}", file=sys.stderr)
        processes = [
            _start_invoke(
                TASK,
                "--shard",
                f"{index}/{SHARDS}",
                "--start-at",
                f"{start_at:.3f}",
                "--target-url",
                urls[index - 1],
                "--run-dir",
                str(out),
                env={"LOADTEST_FIXTURES_PATH": str(stack.fixtures_path)},
                netns=f"lt-shard-{index}" if mode == "netns" else None,
            )
            for index, out in enumerate(outs, start=1)
        ]
        outputs = [process.communicate(timeout=180) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    shard_results = [json.loads((o / SCENARIO / "result.json").read_text()) for o in outs]
    # Each shard ran its share, from the shared start, with ids of its own.
    assert [r["config"]["users"] for r in shard_results] == [20, 20]
    assert all(r["shard"]["start_at"] == pytest.approx(start_at) for r in shard_results)
    assert all(r["totals"]["requests"] > 0 for r in shard_results)
    records = [_raw_records(out / SCENARIO) for out in outs]
    for index, shard_records in enumerate(records, start=1):
        assert all(r.request_id.startswith(f"s{index}-") for r in shard_records)
        assert all(r.idempotency_key.startswith(f"s{index}-") for r in shard_records)
        # Both shards count from the shared start, and neither sends before it.
        assert min(r.started_s for r in shard_records) >= 0.0

    monkeypatch.setenv("DATABASE_URL", stack.database_url)
    run_dir = tmp_path / "merged"
    run_dir.mkdir()
    decision, reasons = merge_and_report(outs, run_dir, stack.fixtures_path, allow_missing=False)
    merged = json.loads((run_dir / SCENARIO / "result.json").read_text())
    everything = [record for shard_records in records for record in shard_records]
    # Exact: recomputed from every record, never averaged.
    assert merged["latency_ms"] == latency_summary(r.latency_ms for r in everything)
    assert (
        merged["totals"]["requests"]
        == len(everything)
        == sum(r["totals"]["requests"] for r in shard_results)
    )
    assert sum(p["requests"] for p in merged["timeseries"]) == len(everything)
    for code in {c for r in shard_results for c in r["by_status"]}:
        assert merged["by_status"][code] == sum(r["by_status"].get(code, 0) for r in shard_results)
    assert [s["shard"] for s in merged["generator"]["shards"]] == ["1/2", "2/2"]
    # Each organization's requests, from the run's fixtures, add up over the shards.
    per_organization: Counter[str] = Counter()
    for result in shard_results:
        per_organization.update(
            {o["organization_id"]: o["requests"] for o in result["by_organization"]}
        )
    assert {o["organization_id"]: o["requests"] for o in merged["by_organization"]} == dict(
        per_organization
    )
    assert merged["config"]["users"] == 40
    # Integrity over the union of both shards' operations: every ok operation reconciled.
    integrity = json.loads((run_dir / SCENARIO / "integrity.json").read_text())
    assert integrity["ok"], integrity
    assert integrity["client_operations"] == sum(1 for r in everything if r.outcome == "ok")
    assert (run_dir / SCENARIO / "service.json").exists()  # shard 1 watched the service
    assert (run_dir / "report.html").exists()
    # The latency verdict depends on how busy the shared machine is; the merge itself must
    # bring no reason of its own (a crashed shard, a missing one, a failed check).
    assert decision in ("GO", "CONDITIONAL", "NO-GO")
    assert not [r for r in reasons if "crashed" in r or "missing" in r or "integrity" in r]

    # Merging one shard gives that shard's own result, figure for figure.
    alone = merge_shards(
        [outs[0]], tmp_path / "alone", allow_missing=True, fixtures_path=stack.fixtures_path
    ).result
    for section in ("totals", "by_operation", "by_status", "by_code", "latency_ms",
                    "latency_histogram", "timeseries", "operations", "duration_s",
                    "by_organization", "latency_evidence"):  # fmt: skip
        assert alone[section] == shard_results[0][section], section
    assert alone["shards"]["missing"] == ["2/2"]
    assert any("2/2 missing" in reason for reason in alone["run"]["reasons"])

    # A missing shard without --allow-missing, or a shard of another run: refused.
    with pytest.raises(ShardMergeError, match="missing"):
        merge_shards([outs[0]], tmp_path / "refused")
    other = tmp_path / "other-run"
    shutil.copytree(outs[1], other)
    document = json.loads((other / SCENARIO / "result.json").read_text())
    document["shard"]["start_at"] += 60
    (other / SCENARIO / "result.json").write_text(json.dumps(document))
    with pytest.raises(ShardMergeError, match="different runs"):
        merge_shards([outs[0], other], tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_merge_command_refuses_in_one_line(tmp_path: Path, stack: SeededStack) -> None:
    completed = _invoke("load-test.merge", str(tmp_path / "nothing-here"),
                        "--run-dir", str(tmp_path / "run"),
                        env={"LOADTEST_FIXTURES_PATH": str(stack.fixtures_path)})  # fmt: skip
    assert completed.returncode == 2
    assert len(completed.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


# -- Helpers ----------------------------------------------------------------------------------
def _raw_records(result_dir: Path) -> list:
    rows = []
    for path in sorted((result_dir / "raw").glob("records-*.csv")):
        with path.open(newline="") as handle:
            rows += [decode_record(row) for row in csv.reader(handle)]
    return rows


def _start_invoke(
    *args: str, env: dict[str, str] | None = None, netns: str | None = None
) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "invoke", *args]
    if netns:
        command = ["ip", "netns", "exec", netns, *command]
    return subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    process = _start_invoke(*args, env=env)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


@contextmanager
def _network(count: int, base_url: str) -> Iterator[tuple[str, list[str]]]:
    """Give each shard a network namespace and address where the machine allows it.

    Namespace lt-shard-I holds 10.231.I.2 on one end of a veth pair; the host end holds
    10.231.I.1, where a forwarder passes connections on to the service on 127.0.0.1.
    Otherwise (not root, no `ip netns`): every shard on loopback.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None or not _netns_works():
        yield "loopback", [base_url] * count
        return
    port = int(base_url.rsplit(":", 1)[1])
    created: list[int] = []
    forwarders: list[_Forwarder] = []
    try:
        urls = []
        for index in range(1, count + 1):
            _make_namespace(index)
            created.append(index)
            forwarder = _Forwarder(f"10.231.{index}.1", ("127.0.0.1", port))
            forwarders.append(forwarder)
            urls.append(f"http://10.231.{index}.1:{forwarder.port}")
        yield "netns", urls
    finally:
        for forwarder in forwarders:
            forwarder.stop()
        for index in created:
            subprocess.run(["ip", "netns", "del", f"lt-shard-{index}"], check=False)
            subprocess.run(["ip", "link", "del", f"lt-host-{index}"], check=False,
                           stderr=subprocess.DEVNULL)  # fmt: skip


def _netns_works() -> bool:
    probe = f"lt-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if made:
        subprocess.run(["ip", "netns", "del", probe], check=False)
    return made


def _make_namespace(index: int) -> None:
    name, host, inner = f"lt-shard-{index}", f"lt-host-{index}", f"lt-ns-{index}"
    for command in (
        ["ip", "netns", "add", name],
        ["ip", "link", "add", host, "type", "veth", "peer", "name", inner],
        ["ip", "link", "set", inner, "netns", name],
        ["ip", "addr", "add", f"10.231.{index}.1/30", "dev", host],
        ["ip", "link", "set", host, "up"],
        ["ip", "netns", "exec", name, "ip", "addr", "add", f"10.231.{index}.2/30", "dev", inner],
        ["ip", "netns", "exec", name, "ip", "link", "set", inner, "up"],
        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
    ):
        subprocess.run(command, check=True, capture_output=True)


class _Forwarder:
    """A TCP forwarder on one host-side address, in a thread of its own."""

    def __init__(self, host: str, target: tuple[str, int]) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, host, 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
