"""A lean keep-alive HTTP/1.1 client for one origin: what the scenarios send through.

aiohttp's request machinery (its request and response objects, header multidicts, timers,
trace hooks) was most of the generator's CPU per request. The scenarios only POST small JSON
bodies to one service and read small answers, so this client does just that: asyncio
Protocols, request bytes joined in one go, responses parsed by llhttp (through httptools),
which knows Content-Length, chunked bodies and the keep-alive rules.

Connections: a LIFO pool of idle ones with no limit, so there is one connection per request in
flight, as with aiohttp's ``TCPConnector(limit=None)``. A connection goes back to the pool only
after a complete response that allows keep-alive; one that errored, timed out, was closed by
its peer or answered ``Connection: close`` is closed and never reused. An idle connection is
dropped once its peer has closed it, or once it has been idle for ``IDLE_SHARE`` of the
server's keep-alive timeout (which the client is given), so that a user's think time never
meets a connection the server is closing at that moment. Should the server close one sooner
all the same, a request never meets the close unnoticed: an idle connection older than
``CHECK_SHARE`` of the cut-off is checked for a close that arrived since the event loop last
looked (one system call), and a reused connection the server resets before the first byte of
its answer (it closed without reading the request: a server that reads a request and then
dies sends a FIN, not a reset) is replaced and the request sent again, once, if the caller
allows it (``replayable``). A clean close after the request on a reused connection is not
replayed: it cannot tell a server that never read the request from one that died running it.

Errors: ``TimeoutError`` when the answer is not complete within the timeout (the connect
included); ``ConnectionError`` when the connection is refused, reset or closed before a full
response, or the response is malformed. A body framed only by the end of the connection
(neither Content-Length nor chunked) counts as cut short: httptools cannot tell its end from
a truncation, and the service never sends one.
"""

from __future__ import annotations

import asyncio
import collections
import select
import ssl
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import httptools

# Stop reusing an idle connection at this share of the server's keep-alive timeout: a margin
# for the clocks of the two sides and the time the close takes to arrive.
IDLE_SHARE = 0.8
# Look for a close not yet seen on an idle connection this far into its cut-off; a younger
# one cannot have met the server's keep-alive timer, and the check costs a system call.
CHECK_SHARE = 0.5
DEFAULT_PORTS = {"http": 80, "https": 443}

Headers = Sequence[tuple[bytes, bytes]] | Mapping[str, str]


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its response parsed as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.keep_alive = False  # the last complete response allows another request
        self.lost = False  # connection_lost fired: the peer or we closed it
        self.answered = False  # a byte of the answer to the current request has arrived
        self.reset = False  # the peer reset the connection: it did not read all we sent
        self.idle_since = 0.0

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.fd = transport.get_extra_info("socket").fileno()

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:
            # Bytes nobody asked for (a late answer, a 408 before closing): unusable now.
            self.close()
            return
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionError(f"malformed HTTP response: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reset = isinstance(exc, (ConnectionResetError, BrokenPipeError))
        self._fail(ConnectionError("the connection closed before a full response"))

    # -- httptools callbacks --
    def on_message_begin(self) -> None:
        if self.waiter is None:
            # A second answer to one request, right behind the first: which one was ours?
            self.keep_alive = False
            self.close()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        body, self.body = self.body, []
        if waiter is None:  # the second answer (on_message_begin closed the connection)
            return
        self.keep_alive = self.parser.should_keep_alive()
        if not waiter.done():
            waiter.set_result((self.parser.get_status_code(), b"".join(body)))

    # -- used by the client --
    def send(self, request: bytes, waiter: asyncio.Future[tuple[int, bytes]]) -> None:
        self.waiter = waiter
        self.keep_alive = False
        self.answered = False
        self.transport.write(request)  # type: ignore[union-attr]

    def time_out(self) -> None:
        if self.waiter is not None:  # else the answer came in the same loop round: keep it
            self._fail(TimeoutError("no complete response within the timeout"))
            self.close()

    def usable(self, now: float, idle_limit_s: float) -> bool:
        return (
            not self.lost
            and not self.transport.is_closing()  # type: ignore[union-attr]
            and now - self.idle_since < idle_limit_s
        )

    def closed_unseen(self) -> bool:
        """Tell whether the peer closed (or wrote) since the event loop last looked."""
        poller = select.poll()  # not select(): file numbers past 1023 are fine
        poller.register(self.fd, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class HttpClient:
    """POST to one origin (scheme, host, port of ``url``) over pooled keep-alive connections.

    Made inside the event loop that uses it; ``close()`` closes the idle connections.
    ``server_keep_alive_s``: how long the server keeps an idle connection open; the client
    stops reusing one at ``IDLE_SHARE`` of that. ``ssl_context``: for https, instead of the
    default one (which checks the certificate against the system's authorities).
    """

    def __init__(
        self,
        url: str,
        *,
        server_keep_alive_s: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {url!r}")
        if not server_keep_alive_s > 0:
            raise ValueError(f"server_keep_alive_s must be positive, not {server_keep_alive_s}")
        self.idle_limit_s = IDLE_SHARE * server_keep_alive_s
        self._check_after_s = CHECK_SHARE * self.idle_limit_s
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        if parts.port is not None and parts.port != DEFAULT_PORTS[parts.scheme]:
            netloc = f"{netloc}:{parts.port}"
        self._host_line = f"Host: {netloc}\r\n".encode("ascii")
        self._loop = asyncio.get_running_loop()
        self._idle: collections.deque[_Connection] = collections.deque()  # newest on the right
        self._closed = False
        self.opened = 0  # connections opened so far: the tests see reuse in it
        self.replayed = 0  # requests sent again after a reused connection was reset unanswered

    async def post(
        self,
        path: str | bytes,
        body: bytes,
        headers: Headers,
        timeout_s: float,
        *,
        replayable: bool = False,
    ) -> tuple[int, bytes]:
        """Send one POST and return (status, body) of its response.

        Raises TimeoutError after ``timeout_s`` (connect included), ConnectionError when no
        full, well-formed response arrives. ``replayable``: the request may reach the server
        twice (it carries an Idempotency-Key the server honours), so it is sent again, once,
        on a new connection when the server resets a reused one before any byte of the answer.
        """
        loop = self._loop
        deadline = loop.time() + timeout_s
        request = self._request(path, body, headers)
        connection = self._idle_connection(loop.time())
        if connection is not None:
            try:
                return await self._exchange(connection, request, deadline)
            except ConnectionError:
                if not (replayable and connection.reset) or connection.answered:
                    raise
                # The server closed it without reading our request: it crossed the close.
                self.replayed += 1
        connection = await self._connect(deadline)
        return await self._exchange(connection, request, deadline)

    def close(self) -> None:
        """Close the idle connections; a connection still in use is closed when it finishes."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    async def _exchange(
        self, connection: _Connection, request: bytes, deadline: float
    ) -> tuple[int, bytes]:
        loop = self._loop
        waiter: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        timer = loop.call_at(deadline, connection.time_out)
        try:
            connection.send(request, waiter)
            answer = await waiter
        except BaseException:  # a timeout, a broken connection or a cancelled caller
            connection.close()
            raise
        finally:
            timer.cancel()
        if connection.keep_alive and not self._closed:
            connection.idle_since = loop.time()
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    def _idle_connection(self, now: float) -> _Connection | None:
        idle, limit_s = self._idle, self.idle_limit_s
        while idle:
            connection = idle.pop()
            if connection.usable(now, limit_s) and not (
                now - connection.idle_since >= self._check_after_s and connection.closed_unseen()
            ):
                # The oldest are on the left: drop those gone stale, so that none lingers.
                while idle and not idle[0].usable(now, limit_s):
                    idle.popleft().close()
                return connection
            connection.close()
        return None

    async def _connect(self, deadline: float) -> _Connection:
        try:
            async with asyncio.timeout_at(deadline):
                _, connection = await self._loop.create_connection(
                    _Connection,
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except (TimeoutError, ConnectionError):
            raise  # already what post() promises (both are OSErrors: not wrapped below)
        except OSError as error:  # no route, unknown host, TLS failure
            raise ConnectionError(f"cannot connect to {self.host}:{self.port}: {error}") from error
        self.opened += 1
        return connection

    def _request(self, path: str | bytes, body: bytes, headers: Headers) -> bytes:
        if isinstance(path, str):
            path = path.encode()
        parts = [b"POST ", path, b" HTTP/1.1\r\n", self._host_line]
        parts += (b"Content-Length: ", b"%d" % len(body), b"\r\n")
        if isinstance(headers, Mapping):
            headers = [(name.encode(), value.encode()) for name, value in headers.items()]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"\r\n", body)
        return b"".join(parts)
