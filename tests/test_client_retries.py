"""The scenario client retries an unknown outcome under the same Idempotency-Key.

A real service (Hypercorn on PostgreSQL) sits behind a tiny proxy on 127.0.0.1 that spoils the
first request: either it forwards it and then drops the connection without answering (the
change committed, the client cannot know), or it answers 503 without forwarding. The client
must retry with the same key and end `ok` with exactly one ledger row; against a service that
ignores keys (TARGET_IDEMPOTENCY=off) the same retry books twice and the exactly-once check
lists the duplicated operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from integrity import format_report, run_checks
from integrity.checks import CLIENT_RECONCILIATION, ONE_ROW_PER_KEY
from load_runner import run_scenario
from load_runner.runner import write_results
from local_postgres import ClusterInfo, create_marked_database
from local_postgres.cluster import url_for
from molotov_scenarios.http_client import HttpClient
from molotov_scenarios.retries import (
    FAIL,
    INFO,
    OK,
    Attempt,
    RetryPolicy,
    judge,
    new_idempotency_key,
    send_operation,
)
from pipeline.service_process import start_service
from results.collect import Collected
from results.files import HISTORY_FILE
from results.record_format import CONNECTION_ERROR, Record
from seeding import reset_to_baseline, seed_database
from target.settings import DEFAULT_JWT_SECRET, DEFAULT_KEEP_ALIVE_S

DROP_ANSWER = "drop_answer"  # forward, let it commit, then hang up without answering
UNAVAILABLE = "unavailable"  # answer 503 without forwarding
UNITS = 3
UNAVAILABLE_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n"
    b'content-length: 46\r\nconnection: close\r\n\r\n{"status": 503, "code": "unavailable", "x": 1}'
)


@dataclass
class Seen:
    """One request as the proxy saw it, and what the service answered (if it was asked)."""

    idempotency_key: str
    request_id: str
    upstream_status: int | None
    replayed: bool


@dataclass
class FlakyProxy:
    """Forward HTTP/1.1 requests to the service, spoiling the first ``spoil`` changes (POST)."""

    upstream_port: int
    mode: str
    spoil: int = 1
    seen: list[Seen] = field(default_factory=list)  # changes only
    port: int = 0
    spoiled: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head, body = await _read_message(reader)
                headers = _headers(head)
                change = head.startswith(b"POST ")
                spoiled = change and self.spoiled < self.spoil
                self.spoiled += spoiled
                if spoiled and self.mode == UNAVAILABLE:
                    key, request_id = headers.get("idempotency-key", ""), headers["x-request-id"]
                    self.seen.append(Seen(key, request_id, None, False))
                    writer.write(UNAVAILABLE_RESPONSE)
                    await writer.drain()
                    break
                answer_head, answer_body = await self.forward(head, body)
                answer_headers = _headers(answer_head)
                if change:
                    self.seen.append(
                        Seen(
                            headers.get("idempotency-key", ""),
                            headers.get("x-request-id", ""),
                            int(answer_head.split(b" ", 2)[1]),
                            answer_headers.get("idempotent-replayed") == "true",
                        )
                    )
                if spoiled:
                    break  # the service committed; the client never hears of it
                writer.write(answer_head + answer_body)
                await writer.drain()
        writer.close()

    async def forward(self, head: bytes, body: bytes) -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            writer.write(head + body)
            await writer.drain()
            return await _read_message(reader)
        finally:
            writer.close()


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Read one HTTP/1.1 message with a content-length body (all this service sends)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(_headers(head).get("content-length", "0"))
    return head, await reader.readexactly(length)


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines if line)
    }


@contextlib.asynccontextmanager
async def running(proxy: FlakyProxy) -> AsyncIterator[FlakyProxy]:
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    async with server:
        yield proxy


@dataclass(frozen=True)
class Stack:
    database_url: str
    port: int
    fixtures_path: Path
    fixtures: dict


def _stack(
    pg_cluster: ClusterInfo, template: str, tmp_path: Path, env: dict[str, str] | None
) -> Iterator[Stack]:
    name = f"test_retries_{uuid.uuid4().hex[:8]}"
    admin_url = url_for(pg_cluster.port, "postgres")
    create_marked_database(admin_url, name, template=template)
    database_url = url_for(pg_cluster.port, name)
    fixtures_path = tmp_path / "test-data.json"
    seed_database(
        database_url, background=0, fixtures_path=fixtures_path, jwt_secret=DEFAULT_JWT_SECRET
    )
    with start_service(database_url, env=env) as service:
        port = int(service.base_url.rsplit(":", 1)[1])
        yield Stack(database_url, port, fixtures_path, json.loads(fixtures_path.read_text()))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", name="stack")
def _idempotent_stack(
    pg_cluster: ClusterInfo, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    yield from _stack(pg_cluster, migrated_template, tmp_path_factory.mktemp("on"), None)


@pytest.fixture(scope="module", name="careless_stack")
def _careless_stack(
    pg_cluster: ClusterInfo, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {"TARGET_IDEMPOTENCY": "off"}
    yield from _stack(pg_cluster, migrated_template, tmp_path_factory.mktemp("off"), env)


def authorization(stack: Stack, index: int) -> tuple[str, str]:
    """Return (authorization id, a token of its organization) from the high-throughput pool."""
    entry = stack.fixtures["pools"]["high_throughput"][index]
    token = next(
        p["token"]
        for p in stack.fixtures["practitioners"]
        if p["organization_id"] == entry["organization_id"]
    )
    return entry["id"], token


async def reserve_through(proxy: FlakyProxy, authorization_id: str, token: str) -> list[Attempt]:
    """Reserve UNITS through the proxy as the scenario client does: one key, retried."""
    numbers = itertools.count(1)
    # The client's own pool, as the scenarios use it: a dropped connection must not be reused.
    client = HttpClient(f"http://127.0.0.1:{proxy.port}", server_keep_alive_s=DEFAULT_KEEP_ALIVE_S)
    try:
        return await send_operation(
            client,
            f"/api/authorizations/{authorization_id}/reserve",
            body=json.dumps({"units": UNITS}).encode(),
            headers=[
                (b"Authorization", f"Bearer {token}".encode()),
                (b"Content-Type", b"application/json"),
            ],
            idempotency_key=new_idempotency_key(),
            next_request_id=lambda: f"test-{next(numbers)}",
            rng=random.Random(7),
        )
    finally:
        client.close()


def ledger_rows(database_url: str, key: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(database_url) as conn:
        return [
            (str(row[0]), row[1], row[2])
            for row in conn.execute(
                "SELECT id, request_id, units FROM unit_transactions "
                "WHERE idempotency_key = %s ORDER BY created_at",
                (key,),
            )
        ]


def keys_sent(proxy: FlakyProxy) -> set[str]:
    return {seen.idempotency_key for seen in proxy.seen}


async def test_an_answer_lost_after_the_commit_is_retried_with_the_same_key(
    stack: Stack,
) -> None:
    authorization_id, token = authorization(stack, 0)
    async with running(FlakyProxy(stack.port, DROP_ANSWER)) as proxy:
        attempts = await reserve_through(proxy, authorization_id, token)
    assert [(a.status, a.code, a.outcome) for a in attempts] == [
        (0, CONNECTION_ERROR, ""),
        (200, "", OK),
    ]
    (key,) = keys_sent(proxy)
    assert len(key) == 32
    assert [seen.request_id for seen in proxy.seen] == [a.request_id for a in attempts]
    # The service ran the first attempt and replayed its answer to the retry.
    assert [(seen.upstream_status, seen.replayed) for seen in proxy.seen] == [
        (200, False),
        (200, True),
    ]
    assert ledger_rows(stack.database_url, key) == [
        (attempts[1].transaction_id, attempts[0].request_id, UNITS)
    ]


async def test_a_503_is_retried_with_the_same_key_and_books_once(stack: Stack) -> None:
    authorization_id, token = authorization(stack, 1)
    async with running(FlakyProxy(stack.port, UNAVAILABLE)) as proxy:
        attempts = await reserve_through(proxy, authorization_id, token)
    assert [(a.status, a.outcome) for a in attempts] == [(503, ""), (200, OK)]
    (key,) = keys_sent(proxy)
    assert ledger_rows(stack.database_url, key) == [
        (attempts[1].transaction_id, attempts[1].request_id, UNITS)
    ]


async def test_attempts_stop_at_the_cap_and_the_outcome_stays_unknown(stack: Stack) -> None:
    authorization_id, token = authorization(stack, 2)
    async with running(FlakyProxy(stack.port, UNAVAILABLE, spoil=100)) as proxy:
        attempts = await reserve_through(proxy, authorization_id, token)
    assert [a.attempt for a in attempts] == list(range(1, RetryPolicy().max_attempts + 1))
    assert attempts[-1].outcome == INFO
    assert len(keys_sent(proxy)) == 1
    assert ledger_rows(stack.database_url, next(iter(keys_sent(proxy)))) == []


async def test_without_idempotency_the_retry_books_twice_and_the_check_lists_it(
    careless_stack: Stack, tmp_path: Path
) -> None:
    stack = careless_stack
    authorization_id, token = authorization(stack, 0)
    async with running(FlakyProxy(stack.port, DROP_ANSWER)) as proxy:
        attempts = await reserve_through(proxy, authorization_id, token)
    (key,) = keys_sent(proxy)
    assert attempts[-1].outcome == OK
    assert len(ledger_rows(stack.database_url, key)) == 2
    result_dir = tmp_path / "high_throughput"
    records = [
        Record(a.request_id, "reserve", authorization_id, a.status, a.code, 1.0, float(a.attempt),
               a.transaction_id, "reserve", UNITS, key, a.attempt, "1-0", a.outcome)
        for a in attempts
    ]  # fmt: skip
    write_results(
        result_dir,
        {
            "schema_version": 1,
            "scenario": "high_throughput",
            "config": {"units_per_request": UNITS},
            "by_status": {"0": 1, "200": 1},
        },
        Collected(records, [], None, 0, "", 0, []),
    )
    report = run_checks(stack.database_url, [result_dir], fixtures_path=stack.fixtures_path)
    duplicates = report.check(ONE_ROW_PER_KEY)
    assert not duplicates.ok, format_report(report)
    assert [row["idempotency_key"] for row in duplicates.rows] == [key]
    # The request ids alone would not have told: the first row's request got no answer.
    assert report.check(CLIENT_RECONCILIATION).ok


def test_a_scenario_run_through_a_flaky_proxy_retries_and_stays_exactly_once(
    stack: Stack, tmp_path: Path
) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        "[high_throughput.flaky]\nusers = 4\nduration_s = 2\nthink_time_s = [0.02, 0.05]\n"
        "units_per_request = 1\n"
    )
    reset_to_baseline(stack.database_url)  # the ledger of the tests above is no part of it
    proxy = FlakyProxy(stack.port, DROP_ANSWER, spoil=3)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(proxy.handle, "127.0.0.1", 0))
    proxy.port = server.sockets[0].getsockname()[1]
    # The proxy's loop runs in a thread while the runner blocks on Molotov.
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        run = run_scenario(
            "high_throughput", profile="flaky", target_url=f"http://127.0.0.1:{proxy.port}",
            fixtures_path=stack.fixtures_path, out_dir=tmp_path / "out", config_path=profiles,
            progress=False,
        )  # fmt: skip
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
    assert run.completed, run.result["run"]
    events = [json.loads(line) for line in (run.result_dir / HISTORY_FILE).open()]
    completions = [event for event in events if event["type"] != "invoke"]
    assert len(events) == 2 * len(completions)
    assert [event["index"] for event in events] == list(range(len(events)))
    retried = [event for event in completions if event["attempts"] > 1]
    assert len(retried) >= 3
    assert all(event["type"] == OK for event in retried)
    assert run.result["operations"]["retried"] == len(retried)
    report = run_checks(stack.database_url, [run.result_dir], fixtures_path=stack.fixtures_path)
    assert report.ok, format_report(report)
    assert report.check(ONE_ROW_PER_KEY).checked


def test_every_answer_is_judged_as_the_contract_says() -> None:
    assert judge(200, "") == OK
    assert judge(201, "") == OK
    assert judge(200, "invalid_response") == INFO
    for status, code in [(0, "timeout"), (0, CONNECTION_ERROR), (502, "http_502"),
                         (503, "unavailable"), (504, "http_504"),
                         (409, "idempotency_key_in_use")]:  # fmt: skip
        assert judge(status, code) == "", (status, code)
    for status, code in [(409, "insufficient_units"), (422, "idempotency_key_reused"),
                         (401, "unauthorized"), (404, "not_found")]:  # fmt: skip
        assert judge(status, code) == FAIL, (status, code)
    assert judge(500, "internal") == INFO


def test_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy()
    rng = random.Random(3)
    pauses = [policy.backoff_s(retry, rng) for retry in range(1, 30) for _ in range(20)]
    assert max(pauses) <= policy.backoff_cap_s
    assert min(pauses) >= 0.0
    assert len(set(pauses)) == len(pauses)  # jittered: no two the same
    first = [policy.backoff_s(1, rng) for _ in range(200)]
    assert max(first) <= policy.backoff_base_s
