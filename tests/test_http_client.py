"""The scenarios' lean HTTP/1.1 client: keep-alive reuse, framing, and every way a call fails.

Against real servers on 127.0.0.1: the service itself (Hypercorn on PostgreSQL) for what it
answers and when it closes an idle connection, and tiny asyncio servers scripted per test for
the edge cases no healthy service shows on demand (a chunked body, `Connection: close`, a
hang, a cut-off or malformed answer, a close that crosses a request).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support_service import SeededStack, seeded_stack

from local_postgres import ClusterInfo
from molotov_scenarios.http_client import HttpClient
from pipeline.service_process import start_service
from target.settings import DEFAULT_KEEP_ALIVE_S, KEEP_ALIVE_ENV

# What a tiny server does after its reply: keep the connection, close it (FIN), hang until
# the client hangs up, or reset it (RST: what a server's kernel sends for a request that
# reaches a socket its server closed without reading it).
KEEP, CLOSE, HANG, RESET = "keep", "close", "hang", "reset"
KEEP_ALIVE_S = 5.0  # the tiny servers' keep-alive, as the clients are told
BODY = b'{"units": 1}'
ANSWER = b'{"transaction_id": "t-1"}'
OK_REPLY = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
TIMEOUT_S = 5.0
WAIT_LIMIT = 500  # rounds of WAIT_ROUND_S before a wait for the other side gives up
WAIT_ROUND_S = 0.01


@dataclass(frozen=True)
class Reply:
    """Bytes a tiny server writes in answer to one request, and what it does then."""

    data: bytes
    then: str = KEEP


@dataclass
class TinyServer:
    """Answer each request as ``reply(connection, request)`` says (both numbered from 0)."""

    reply: Callable[[int, int], Reply]
    port: int = 0
    connections: int = 0
    requests: list[tuple[int, bytes]] = field(default_factory=list)  # (connection, raw request)
    closed: set[int] = field(default_factory=set)  # connections over, by either side
    closed_by_client: set[int] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        try:
            for index in itertools.count():
                try:
                    request = await read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.closed_by_client.add(number)
                    return
                self.requests.append((number, request))
                reply = self.reply(number, index)
                writer.write(reply.data)
                await writer.drain()
                if reply.then == CLOSE:
                    return
                if reply.then == RESET:
                    linger = struct.pack("ii", 1, 0)  # close at once, with a reset
                    writer.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, linger
                    )
                    return
                if reply.then == HANG:
                    with contextlib.suppress(ConnectionError):
                        await reader.read()  # until the client hangs up
                    self.closed_by_client.add(number)
                    return
        finally:
            writer.close()
            self.closed.add(number)

    def connection_of_each_request(self) -> list[int]:
        return [number for number, _ in self.requests]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


@contextlib.asynccontextmanager
async def running(
    server: TinyServer, tls: ssl.SSLContext | None = None
) -> AsyncIterator[TinyServer]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


def address(listener: asyncio.Server) -> str:
    return f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"


@contextlib.asynccontextmanager
async def client_of(
    server: TinyServer, keep_alive_s: float = KEEP_ALIVE_S
) -> AsyncIterator[HttpClient]:
    client = HttpClient(f"http://127.0.0.1:{server.port}", server_keep_alive_s=keep_alive_s)
    try:
        yield client
    finally:
        client.close()


async def wait_until(condition: Callable[[], bool]) -> None:
    """Give the other side of a connection the loop rounds it needs to act."""
    for _ in range(WAIT_LIMIT):
        if condition():
            return
        await asyncio.sleep(WAIT_ROUND_S)
    raise AssertionError("the other side never got there")


def always(reply: Reply) -> Callable[[int, int], Reply]:
    return lambda connection, request: reply


async def post(
    client: HttpClient, timeout_s: float = TIMEOUT_S, *, replayable: bool = False
) -> tuple[int, bytes]:
    headers = [(b"Content-Type", b"application/json")]
    return await client.post("/api/x", BODY, headers, timeout_s, replayable=replayable)


# -- The request ------------------------------------------------------------------------------
async def test_the_request_carries_the_host_length_headers_and_body() -> None:
    async with running(TinyServer(always(Reply(OK_REPLY)))) as server, client_of(server) as client:
        headers = [(b"Authorization", b"Bearer abc"), (b"X-Request-ID", b"r-1")]
        assert await client.post("/api/authorizations/a/reserve", BODY, headers, TIMEOUT_S) == (
            200,
            ANSWER,
        )
        await client.post(b"/b", b"", {"Idempotency-Key": "k"}, TIMEOUT_S)
    assert [request for _, request in server.requests] == [
        b"POST /api/authorizations/a/reserve HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\nContent-Length: 12\r\n"
        b"Authorization: Bearer abc\r\nX-Request-ID: r-1\r\n\r\n" % server.port + BODY,
        b"POST /b HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0\r\n"
        b"Idempotency-Key: k\r\n\r\n" % server.port,
    ]


def test_only_an_http_or_https_url_makes_a_client() -> None:
    async def make(url: str) -> HttpClient:
        return HttpClient(url, server_keep_alive_s=KEEP_ALIVE_S)

    for url in ("ftp://127.0.0.1/", "127.0.0.1:8000", "http:///path"):
        with pytest.raises(ValueError, match="not an http"):
            asyncio.run(make(url))
    client = asyncio.run(make("https://example.test/base"))
    assert (client.host, client.port) == ("example.test", 443)


# -- Keep-alive -------------------------------------------------------------------------------
async def test_one_connection_serves_request_after_request() -> None:
    async with running(TinyServer(always(Reply(OK_REPLY)))) as server, client_of(server) as client:
        answers = [await post(client) for _ in range(3)]
    assert answers == [(200, ANSWER)] * 3
    assert server.connection_of_each_request() == [0, 0, 0]
    assert client.opened == 1


async def test_concurrent_requests_each_get_a_connection_then_share_them() -> None:
    async with running(TinyServer(always(Reply(OK_REPLY)))) as server, client_of(server) as client:
        await asyncio.gather(*(post(client) for _ in range(3)))
        await asyncio.gather(*(post(client) for _ in range(3)))
    assert server.connections == 3
    assert sorted(server.connection_of_each_request()) == [0, 0, 1, 1, 2, 2]


async def test_a_chunked_body_is_read_whole() -> None:
    chunked = (
        b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    )
    async with running(TinyServer(always(Reply(chunked)))) as server, client_of(server) as client:
        assert await post(client) == (201, b"hello, world")
        assert await post(client) == (201, b"hello, world")
    assert server.connection_of_each_request() == [0, 0]


async def test_an_answer_split_across_packets_is_reassembled() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for piece in (OK_REPLY[:5], OK_REPLY[5:30], OK_REPLY[30:-3], OK_REPLY[-3:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(WAIT_ROUND_S)
        writer.close()

    listener = await asyncio.start_server(trickle, "127.0.0.1", 0)
    async with listener:
        client = HttpClient(address(listener), server_keep_alive_s=KEEP_ALIVE_S)
        assert await post(client) == (200, ANSWER)
        client.close()


async def test_after_connection_close_the_next_request_opens_a_new_connection() -> None:
    # The server leaves the socket open: only the header tells the client not to reuse it.
    closing = b"HTTP/1.1 409 Conflict\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"
    async with running(TinyServer(always(Reply(closing, then=HANG)))) as server:
        async with client_of(server) as client:
            assert await post(client) == (409, b"{}")
            assert await post(client) == (409, b"{}")
        await wait_until(lambda: server.closed == {0, 1})
    assert server.connection_of_each_request() == [0, 1]
    assert server.closed_by_client == {0, 1}


async def test_a_connection_the_server_closed_while_idle_is_not_used_again() -> None:
    async with (
        running(TinyServer(always(Reply(OK_REPLY, then=CLOSE)))) as server,
        client_of(server) as client,
    ):
        assert await post(client) == (200, ANSWER)
        await wait_until(lambda: 0 in server.closed)
        await asyncio.sleep(0.1)  # a user's think time: the client sees the close meanwhile
        assert await post(client) == (200, ANSWER)
    assert server.connection_of_each_request() == [0, 1]


async def test_a_connection_is_reused_until_most_of_the_servers_keep_alive_has_passed() -> None:
    # A server keeping idle connections 0.25 s: the client stops reusing one after 0.2 s.
    async with (
        running(TinyServer(always(Reply(OK_REPLY)))) as server,
        client_of(server, keep_alive_s=0.25) as client,
    ):
        assert client.idle_limit_s == pytest.approx(0.2)
        assert await post(client) == (200, ANSWER)
        await asyncio.sleep(0.1)
        assert await post(client) == (200, ANSWER)
        await asyncio.sleep(0.25)
        assert await post(client) == (200, ANSWER)
        await wait_until(lambda: 0 in server.closed)
    assert server.connection_of_each_request() == [0, 0, 1]
    assert 0 in server.closed_by_client


async def test_a_close_the_event_loop_has_not_seen_yet_is_noticed_before_sending() -> None:
    # The server's keep-alive timer closes the connection in the same loop round as the
    # next call starts: the close is in our socket, not yet seen. The request must not go
    # out on it (it would meet the close and fail).
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await read_request(reader)
                writer.write(OK_REPLY)
        writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with listener:
        client = HttpClient(address(listener), server_keep_alive_s=0.5)  # checked after 0.2 s
        assert await post(client) == (200, ANSWER)
        await asyncio.sleep(0.25)
        writers[0].transport.abort()  # the server's keep-alive timer fires
        await asyncio.sleep(0)  # its close reaches our socket; the loop has not looked since
        assert await post(client) == (200, ANSWER)
        assert (client.opened, client.replayed, len(writers)) == (2, 0, 2)
        client.close()


def close_under_the_second_request(then: str, data: bytes = b"") -> Callable[[int, int], Reply]:
    """Answer the first request on the first connection, then end it as ``then`` says."""

    def reply(connection: int, request: int) -> Reply:
        return Reply(data, then=then) if (connection, request) == (0, 1) else Reply(OK_REPLY)

    return reply


async def test_a_reused_connection_reset_before_any_answer_is_replaced_and_sent_again() -> None:
    # The reset says the server closed without reading the request (its keep-alive timer
    # and the request crossed): sending it again cannot run it twice.
    async with (
        running(TinyServer(close_under_the_second_request(RESET))) as server,
        client_of(server) as client,
    ):
        assert await post(client, replayable=True) == (200, ANSWER)
        assert await post(client, replayable=True) == (200, ANSWER)
        assert (client.opened, client.replayed) == (2, 1)
    assert server.connection_of_each_request() == [0, 0, 1]


@pytest.mark.parametrize(
    ("then", "data", "replayable"),
    [
        (RESET, b"", False),  # the caller does not allow a second send
        (CLOSE, b"", True),  # a FIN: the server may have read the request and died running it
        (RESET, OK_REPLY[:20], True),  # the answer had begun: the request was read
    ],
    ids=["not-replayable", "closed-not-reset", "reset-mid-answer"],
)
async def test_a_reused_connection_lost_otherwise_is_an_error_not_a_replay(
    then: str, data: bytes, replayable: bool
) -> None:
    async with (
        running(TinyServer(close_under_the_second_request(then, data))) as server,
        client_of(server) as client,
    ):
        assert await post(client, replayable=replayable) == (200, ANSWER)
        with pytest.raises(ConnectionError):
            await post(client, replayable=replayable)
        assert (client.opened, client.replayed) == (1, 0)
    assert server.connection_of_each_request() == [0, 0]


async def test_a_new_connection_reset_before_any_answer_is_not_sent_again() -> None:
    async with (
        running(TinyServer(always(Reply(b"", then=RESET)))) as server,
        client_of(server) as client,
    ):
        with pytest.raises(ConnectionError):
            await post(client, replayable=True)
        assert (client.opened, client.replayed) == (1, 0)
    assert server.connection_of_each_request() == [0]


async def test_close_hangs_up_the_idle_connections() -> None:
    async with running(TinyServer(always(Reply(OK_REPLY)))) as server:
        async with client_of(server) as client:
            await asyncio.gather(post(client), post(client))
        await wait_until(lambda: server.closed == {0, 1})
    assert server.closed_by_client == {0, 1}


async def test_an_answer_nobody_asked_for_makes_the_connection_unusable() -> None:
    # Two answers to one request, in one packet or two: the connection cannot be trusted.
    extra = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nextra"

    for second in (extra, extra[:-3]):  # whole or in part

        def reply(connection: int, request: int, second: bytes = second) -> Reply:
            return Reply(OK_REPLY + second if connection == 0 else OK_REPLY)

        async with running(TinyServer(reply)) as server, client_of(server) as client:
            assert await post(client) == (200, ANSWER)
            assert await post(client) == (200, ANSWER)
        assert server.connection_of_each_request() == [0, 1]

    async def answer_twice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await read_request(reader)
                writer.write(OK_REPLY)
                await asyncio.sleep(WAIT_ROUND_S)
                writer.write(extra[:-3])  # even a part of one
        writer.close()

    listener = await asyncio.start_server(answer_twice, "127.0.0.1", 0)
    async with listener:
        client = HttpClient(address(listener), server_keep_alive_s=KEEP_ALIVE_S)
        assert await post(client) == (200, ANSWER)
        await asyncio.sleep(5 * WAIT_ROUND_S)  # the second answer arrives on the idle connection
        assert await post(client) == (200, ANSWER)
        assert client.opened == 2
        client.close()


@pytest.fixture(name="certificate")
def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    """Make a self-signed certificate for 127.0.0.1; return (certificate, key) files."""
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(certificate), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return certificate, key


async def test_https_keeps_alive_and_checks_the_certificate(
    certificate: tuple[Path, Path],
) -> None:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(*certificate)
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    async with running(TinyServer(always(Reply(OK_REPLY))), server_tls) as server:
        client = HttpClient(
            f"https://127.0.0.1:{server.port}",
            server_keep_alive_s=KEEP_ALIVE_S,
            ssl_context=trusting,
        )
        assert [await post(client) for _ in range(2)] == [(200, ANSWER)] * 2
        client.close()
        assert server.connection_of_each_request() == [0, 0]
        # The default context does not know this certificate's issuer.
        with pytest.raises(ConnectionError, match="certificate"):
            await post(
                HttpClient(f"https://127.0.0.1:{server.port}", server_keep_alive_s=KEEP_ALIVE_S)
            )


# -- Failures ---------------------------------------------------------------------------------
async def test_no_answer_in_time_raises_timeout_and_the_connection_is_dropped() -> None:
    # The first connection never answers; later ones answer at once.
    def reply(connection: int, request: int) -> Reply:
        return Reply(b"", then=HANG) if connection == 0 else Reply(OK_REPLY)

    async with running(TinyServer(reply)) as server, client_of(server) as client:
        with pytest.raises(TimeoutError):
            await post(client, timeout_s=0.2)
        await wait_until(lambda: 0 in server.closed_by_client)
        assert await post(client) == (200, ANSWER)
    assert server.connection_of_each_request() == [0, 1]


async def test_a_late_answer_after_a_timeout_is_never_read_as_the_next_one() -> None:
    # Answers come 0.3 s late: the first call gives up; the next must not get its answer.
    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                request = await read_request(reader)
                await asyncio.sleep(0.3)
                answer = request.rsplit(b"\r\n\r\n", 1)[1]
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(answer))
                writer.write(answer)
        writer.close()

    listener = await asyncio.start_server(late, "127.0.0.1", 0)
    async with listener:
        client = HttpClient(address(listener), server_keep_alive_s=KEEP_ALIVE_S)
        with pytest.raises(TimeoutError):
            await client.post("/", b"first", (), 0.1)
        assert await client.post("/", b"second", (), TIMEOUT_S) == (200, b"second")
        assert client.opened == 2
        client.close()


async def test_a_peer_dropping_mid_response_raises_connection_error() -> None:
    cut = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + ANSWER
    async with (
        running(TinyServer(always(Reply(cut, then=CLOSE)))) as server,
        client_of(server) as client,
    ):
        with pytest.raises(ConnectionError):
            await post(client)


async def test_a_peer_dropping_before_any_answer_raises_connection_error() -> None:
    async with (
        running(TinyServer(always(Reply(b"", then=CLOSE)))) as server,
        client_of(server) as client,
    ):
        with pytest.raises(ConnectionError):
            await post(client)


async def test_a_malformed_status_line_raises_connection_error_and_drops_it() -> None:
    def reply(connection: int, request: int) -> Reply:
        if connection == 0:
            return Reply(b"HTTP/1.1 two hundred OK\r\ncontent-length: 0\r\n\r\n", then=HANG)
        return Reply(OK_REPLY)

    async with running(TinyServer(reply)) as server, client_of(server) as client:
        with pytest.raises(ConnectionError, match="malformed"):
            await post(client)
        assert await post(client) == (200, ANSWER)
        await wait_until(lambda: 0 in server.closed)
    assert server.connection_of_each_request() == [0, 1]
    assert 0 in server.closed_by_client


async def test_a_refused_connection_raises_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nobody listens there
    client = HttpClient(f"http://127.0.0.1:{port}", server_keep_alive_s=KEEP_ALIVE_S)
    with pytest.raises(ConnectionError):
        await post(client)


async def test_a_cancelled_call_leaves_no_connection_behind_for_reuse() -> None:
    def reply(connection: int, request: int) -> Reply:
        return Reply(b"", then=HANG) if connection == 0 else Reply(OK_REPLY)

    async with running(TinyServer(reply)) as server, client_of(server) as client:
        call = asyncio.ensure_future(post(client))
        await wait_until(lambda: len(server.requests) == 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await post(client) == (200, ANSWER)
        await wait_until(lambda: 0 in server.closed_by_client)
    assert server.connection_of_each_request() == [0, 1]


# -- Against the service ----------------------------------------------------------------------
@pytest.fixture(scope="module", name="stack")
def _stack(
    pg_cluster: ClusterInfo, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SeededStack]:
    folder = tmp_path_factory.mktemp("fixtures")
    with seeded_stack(pg_cluster, migrated_template, folder, background=0) as stack:
        yield stack


CONCURRENT_CALLS = 20


def reserve_request(stack: SeededStack, index: int) -> tuple[str, list[tuple[bytes, bytes]]]:
    """Return the path and headers that reserve on the high-throughput pool's ``index``-th."""
    entry = stack.fixtures["pools"]["high_throughput"][index]
    token = next(
        p["token"]
        for p in stack.fixtures["practitioners"]
        if p["organization_id"] == entry["organization_id"]
    )
    headers = [
        (b"Authorization", f"Bearer {token}".encode()),
        (b"Content-Type", b"application/json"),
    ]
    return f"/api/authorizations/{entry['id']}/reserve", headers


async def test_the_service_answers_request_after_request_on_one_connection(
    stack: SeededStack,
) -> None:
    path, headers = reserve_request(stack, 0)
    client = HttpClient(stack.base_url, server_keep_alive_s=DEFAULT_KEEP_ALIVE_S)
    try:
        answers = [await client.post(path, BODY, headers, TIMEOUT_S) for _ in range(3)]
    finally:
        client.close()
    assert [status for status, _ in answers] == [200, 200, 200]
    transaction_ids = {json.loads(body)["transaction_id"] for _, body in answers}
    assert len(transaction_ids) == 3
    assert client.opened == 1


async def test_a_refusal_from_the_service_leaves_the_connection_usable(
    stack: SeededStack,
) -> None:
    path, headers = reserve_request(stack, 1)
    client = HttpClient(stack.base_url, server_keep_alive_s=DEFAULT_KEEP_ALIVE_S)
    try:
        refused = await client.post(path, BODY, [(b"Authorization", b"Bearer nope")], TIMEOUT_S)
        status, body = await client.post(path, BODY, headers, TIMEOUT_S)
    finally:
        client.close()
    assert refused[0] == 401
    assert json.loads(refused[1])["code"] == "unauthorized"
    assert status == 200, body
    assert client.opened == 1


async def test_many_concurrent_calls_to_the_service_all_get_their_own_answer(
    stack: SeededStack,
) -> None:
    # Each call on an authorization of its own. SERIALIZABLE can still abort one of twenty
    # concurrent changes (its predicate locks are coarser than rows), and after its retries
    # the service answers 409 serialization_conflict: that is the service's business.
    calls = [reserve_request(stack, index) for index in range(CONCURRENT_CALLS)]
    client = HttpClient(stack.base_url, server_keep_alive_s=DEFAULT_KEEP_ALIVE_S)
    try:
        answers = await asyncio.gather(
            *(client.post(path, BODY, headers, TIMEOUT_S) for path, headers in calls)
        )
    finally:
        client.close()
    done = [
        (path, json.loads(body))
        for (path, _), (status, body) in zip(calls, answers, strict=True)
        if status == 200
    ]
    refused = [json.loads(body)["code"] for status, body in answers if status != 200]
    assert set(refused) <= {"serialization_conflict"}, answers
    assert done, answers
    # Each answer is the one to its own request: it names the authorization it reserved on.
    for path, body in done:
        assert body["authorization"]["id"] in path
    assert len({body["transaction_id"] for _, body in done}) == len(done)


async def test_the_service_closes_idle_connections_after_its_configured_keep_alive(
    stack: SeededStack,
) -> None:
    # TARGET_KEEP_ALIVE_S=1 reaches Hypercorn: a connection idle 1.5 s is closed by the
    # service (under Hypercorn's default of 5 s it would be reused). The client is told 60 s
    # so that only the service's close can explain the new connection.
    path, headers = reserve_request(stack, 2)
    with start_service(stack.database_url, env={KEEP_ALIVE_ENV: "1"}) as service:
        client = HttpClient(service.base_url, server_keep_alive_s=60.0)
        try:
            first = await client.post(path, BODY, headers, TIMEOUT_S)
            await asyncio.sleep(1.5)
            second = await client.post(path, BODY, headers, TIMEOUT_S)
        finally:
            client.close()
    assert (first[0], second[0]) == (200, 200), (first, second)
    assert (client.opened, client.replayed) == (2, 0)
