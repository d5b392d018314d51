"""A TCP relay in front of PostgreSQL that adds round-trip time and cuts the link on demand.

The kernel here has no netem qdisc, so latency between the service and PostgreSQL, and network
faults on that link, are made in user space: the service connects to the relay, the relay to
PostgreSQL, and every byte passes through it::

    with DbRelay.for_url(database_url, added_rtt_ms=1.0) as relay:
        start_service(relay.url_for(database_url), ...)
        relay.partition()  # a black-holed link: bytes are held, nothing is forwarded
        relay.heal()

``added_rtt_ms`` is a *round-trip* figure, split evenly: each direction delays what it carries
by half of it. A chunk read at time t is written on at t + delay, in order; the delays of
consecutive chunks do not add up (a link with latency, not a queue of sleeps). When the delay
is lowered, chunks already in flight keep theirs and later ones wait behind them, so byte order
holds. Only data is delayed: the TCP handshake with the relay is local and immediate.

The relay runs in a child process of its own (this file run as a script, uvloop when installed)
so its CPU shares no GIL with the process that starts it; the parent drives it with JSON lines
over the child's stdin and stdout. The child exits when its stdin closes, so it never outlives
its parent.

Timing: asyncio's epoll loop waits in whole milliseconds (a 0.15 ms timer fired 1.0 ms late)
and uvloop rounds to the nearest millisecond (it fired 0.15, 0.25 and 0.5 ms timers at once),
both measured here. The relay therefore keeps its own timer heap on a Linux timerfd
(nanosecond deadlines, read by the event loop like any file descriptor). A timer woke the loop
45-55 µs after its deadline on this machine: timers are armed that much early, a lead measured
at start-up (``timer_lead_ms``) and then stepped so that half the delayed chunks go out late
and half early, which keeps the *median* delay the one asked for. On a machine whose cores are
all busy the relay waits for a CPU like everything else, and the tail grows with it
(benchmarks/db_relay_accuracy.py). Off Linux it falls back to ``loop.call_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import heapq
import itertools
import json
import math
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, cast
from urllib.parse import unquote, urlsplit, urlunsplit

LISTEN_HOST = "127.0.0.1"
DEFAULT_PG_PORT = 5432
UNIX_SOCKET_NAME = ".s.PGSQL.{port}"  # libpq's name for a server's socket in its directory
URL_SCHEMES = ("postgresql", "postgres")
ADDRESS_PARAMETERS = frozenset({"host", "hostaddr", "port"})  # libpq query keys naming the server
START_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 3.0
# Held bytes per direction before the relay stops reading from the sender: a partition or a
# slow reader holds at most this much, and TCP's own flow control pushes back beyond it.
HIGH_WATER_BYTES = 4 * 1024 * 1024
LOW_WATER_BYTES = HIGH_WATER_BYTES // 2
# How the start-up measures the timer's wake-up lateness, and the most it will arm early by.
CALIBRATION_SAMPLES = 200
CALIBRATION_DELAY_S = 0.0002
MAX_TIMER_LEAD_S = 0.0002
LEAD_STEP_S = 0.000001  # how far each timer's lateness moves the lead


class RelayError(RuntimeError):
    """The relay process did not start, or did not answer its parent."""


@dataclass(frozen=True)
class RelayStats:
    """The relay's counters, read from its process."""

    added_rtt_ms: float
    partitioned: bool
    reset_on_partition: bool
    connections_accepted: int
    connections_open: int
    connections_reset: int  # cut by a partition with reset
    bytes_to_upstream: int  # forwarded from the clients to PostgreSQL
    bytes_to_client: int  # forwarded from PostgreSQL to the clients
    bytes_held: int  # read but not yet forwarded (in flight, or held by a partition)
    chunks_received: int  # reads from either side
    chunks_forwarded: int  # writes to either side (chunks due together go in one write)
    cpu_s: float  # the relay process's CPU time (user + system) since it started
    timer_lead_ms: float  # how early timers are armed now, to wake on time
    mean_lateness_ms: float  # how late, on average, a delayed chunk was forwarded (< 0: early)


@dataclass(frozen=True)
class Upstream:
    """Where the relay connects: a TCP host and port, or a PostgreSQL Unix socket."""

    host: str
    port: int

    @property
    def unix_path(self) -> str | None:
        """Return the socket's path when ``host`` is a directory (libpq's convention)."""
        if not self.host.startswith("/"):
            return None
        return str(Path(self.host) / UNIX_SOCKET_NAME.format(port=self.port))

    def __str__(self) -> str:
        return self.unix_path or f"{self.host}:{self.port}"


# -- libpq URLs ---------------------------------------------------------------------------------
def upstream_of(libpq_url: str) -> Upstream:
    """Return the server a libpq URL names (its host may be a socket directory)."""
    parts = _split_url(libpq_url)
    hostport = parts.netloc.rpartition("@")[2]
    host, port = _split_hostport(hostport, libpq_url)
    for key, value in _query_pairs(parts.query):
        # libpq lets the query name the server too (postgresql:///db?host=/run/postgresql).
        if key == "host":
            host = value
        elif key == "port":
            port = value
    if "," in host or "," in port:
        raise ValueError(f"{_redacted(libpq_url)} names several hosts; the relay takes one")
    if not host:
        raise ValueError(f"{_redacted(libpq_url)} names no host (nor a socket directory)")
    if port and not port.isdigit():
        raise ValueError(f"{_redacted(libpq_url)}: port {port!r} is not a number")
    return Upstream(host, int(port) if port else DEFAULT_PG_PORT)


def url_with_address(libpq_url: str, host: str, port: int) -> str:
    """Return ``libpq_url`` with its server replaced by ``host:port``, other parameters kept."""
    parts = _split_url(libpq_url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if "," in hostport:
        raise ValueError(f"{_redacted(libpq_url)} names several hosts; the relay takes one")
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # The raw query pairs are kept byte for byte: re-encoding them could turn %20 into +,
    # which libpq does not read as a space.
    query = "&".join(
        pair
        for pair in parts.query.split("&")
        if pair and unquote(pair.partition("=")[0]) not in ADDRESS_PARAMETERS
    )
    return urlunsplit((parts.scheme, f"{userinfo}{at}{address}", parts.path, query, ""))


def _split_url(libpq_url: str) -> Any:
    parts = urlsplit(libpq_url)
    if parts.scheme not in URL_SCHEMES:
        raise ValueError(f"not a libpq URL (postgresql://...): {_redacted(libpq_url)}")
    return parts


def _split_hostport(hostport: str, libpq_url: str) -> tuple[str, str]:
    if hostport.startswith("["):  # an IPv6 literal
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket:
            raise ValueError(f"{_redacted(libpq_url)}: unclosed [ in the host")
        return host, rest.removeprefix(":")
    host, colon, port = hostport.rpartition(":")
    if not colon:
        return unquote(hostport), ""
    return unquote(host), port


def _query_pairs(query: str) -> list[tuple[str, str]]:
    pairs = [pair.partition("=") for pair in query.split("&") if pair]
    return [(unquote(key), unquote(value)) for key, _, value in pairs]


def _redacted(libpq_url: str) -> str:
    """Return the URL without its password, fit for an error message."""
    parts = urlsplit(libpq_url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}{at}{hostport}"))


def checked_rtt_ms(added_rtt_ms: float) -> float:
    """Return ``added_rtt_ms`` as a float; raise ValueError unless it is finite and ≥ 0."""
    if isinstance(added_rtt_ms, bool) or not isinstance(added_rtt_ms, int | float):
        raise ValueError(f"added_rtt_ms must be a number of milliseconds, not {added_rtt_ms!r}")
    if not math.isfinite(added_rtt_ms) or added_rtt_ms < 0:
        raise ValueError(f"added_rtt_ms must be a finite number ≥ 0, not {added_rtt_ms!r}")
    return float(added_rtt_ms)


# -- the parent's handle -----------------------------------------------------------------------
class DbRelay:
    """A relay process between clients on 127.0.0.1 and one PostgreSQL server."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int = DEFAULT_PG_PORT,
        *,
        added_rtt_ms: float = 0.0,
        listen_host: str = LISTEN_HOST,
        listen_port: int = 0,
    ) -> None:
        self.upstream = Upstream(upstream_host, int(upstream_port))
        self._added_rtt_ms = checked_rtt_ms(added_rtt_ms)
        self.host = listen_host
        self.port = listen_port  # the bound port once started (a free one when 0)
        self.loop_name = ""  # "uvloop" or "asyncio", as the child reports
        self.timer_name = ""  # "timerfd" or "call_at"
        self.timer_lead_ms = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._lock = threading.Lock()  # one request and its reply at a time

    @classmethod
    def for_url(cls, libpq_url: str, *, added_rtt_ms: float = 0.0, listen_port: int = 0) -> DbRelay:
        """Return a relay (not started) to the server ``libpq_url`` names."""
        upstream = upstream_of(libpq_url)
        return cls(upstream.host, upstream.port, added_rtt_ms=added_rtt_ms, listen_port=listen_port)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Self:
        """Start the relay process and wait until it listens."""
        if self._process is not None:
            raise RelayError("the relay is already running")
        config = {
            "upstream_host": self.upstream.host,
            "upstream_port": self.upstream.port,
            "listen_host": self.host,
            "listen_port": self.port,
            "added_rtt_ms": self._added_rtt_ms,
        }
        # Kept open while the child runs, read only to explain its death.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        # -I: the child imports nothing from the caller's folder or PYTHONPATH, only the
        # standard library and the environment's uvloop.
        self._process = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__).resolve()), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd="/",
        )
        try:
            ready = self._read_reply(START_TIMEOUT_S, "start")
        except RelayError:
            self.stop()
            raise
        if not ready.get("ready"):
            self.stop()
            raise RelayError(f"the DB relay did not start: {ready.get('error', ready)}")
        self.port = int(ready["port"])
        self.loop_name = str(ready["loop"])
        self.timer_name = str(ready["timer"])
        self.timer_lead_ms = float(ready["timer_lead_ms"])
        return self

    def stop(self) -> None:
        """Stop the relay process (every connection through it is closed) and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            process.stdin.close()  # type: ignore[union-attr]  # the child exits on EOF
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(OSError, ValueError):
            process.stdout.close()  # type: ignore[union-attr]
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """Return the relay process's pid while it runs."""
        return None if self._process is None else self._process.pid

    @property
    def address(self) -> str:
        """Return where clients connect, host:port."""
        return f"{self.host}:{self.port}"

    @property
    def added_rtt_ms(self) -> float:
        """Return the round-trip time the relay adds now, in milliseconds."""
        return self._added_rtt_ms

    def url_for(self, libpq_url: str) -> str:
        """Return ``libpq_url`` pointed at this relay (user, database and parameters kept)."""
        if self._process is None:
            raise RelayError("start the relay first: its port is chosen when it starts")
        return url_with_address(libpq_url, self.host, self.port)

    # -- control --------------------------------------------------------------------------------
    def set_added_rtt_ms(self, added_rtt_ms: float) -> None:
        """Add this much round-trip time from now on, half in each direction."""
        value = checked_rtt_ms(added_rtt_ms)
        self._request({"op": "set_rtt", "added_rtt_ms": value})
        self._added_rtt_ms = value

    def partition(self, seconds: float | None = None, *, reset: bool = False) -> None:
        """Cut the link to PostgreSQL, until heal() or for ``seconds``.

        Without ``reset`` the link is black-holed: open connections stall with their bytes
        held (none forwarded, none dropped), new ones are accepted and held too, and all of
        it flows on once healed. With ``reset`` every open connection is reset (RST to the
        client and to PostgreSQL), and new ones are reset as they arrive until healed.
        """
        if seconds is not None and (not math.isfinite(seconds) or seconds < 0):
            raise ValueError(f"a partition lasts a finite number of seconds ≥ 0, not {seconds!r}")
        self._request({"op": "partition", "seconds": seconds, "reset": bool(reset)})

    def heal(self) -> None:
        """End a partition: held bytes flow on, held connections reach PostgreSQL."""
        self._request({"op": "heal"})

    def stats(self) -> RelayStats:
        """Return the relay's counters."""
        return RelayStats(**self._request({"op": "stats"})["stats"])

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            process = self._process
            if process is None or process.stdin is None:
                raise RelayError("the relay is not running")
            try:
                process.stdin.write(json.dumps(message).encode() + b"\n")
                process.stdin.flush()
            except (BrokenPipeError, ValueError) as error:
                raise RelayError(f"the relay process is gone: {self._child_error()}") from error
            reply = self._read_reply(REPLY_TIMEOUT_S, str(message["op"]))
        if not reply.get("ok"):
            raise RelayError(f"the relay refused {message['op']}: {reply.get('error')}")
        return reply

    def _read_reply(self, timeout_s: float, what: str) -> dict[str, Any]:
        process = self._process
        assert process is not None
        assert process.stdout is not None
        # The child writes whole lines, one per request, so a readable pipe holds a whole
        # reply and readline() does not block past the timeout.
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RelayError(f"the relay did not answer {what} within {timeout_s:g} s")
            readable, _, _ = select.select([process.stdout], [], [], remaining)
            if readable:
                break
        line = process.stdout.readline()
        if not line:
            raise RelayError(f"the relay process exited: {self._child_error()}")
        return json.loads(line)  # type: ignore[no-any-return]

    def _child_error(self) -> str:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(1.0)
        if self._stderr is None:
            return "no output"
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        code = None if self._process is None else self._process.returncode
        return lines[-1] if lines else f"exit code {code}"


# -- the relay process --------------------------------------------------------------------------
class _CallAtTimer:
    """The fallback timer: the event loop's own (millisecond granularity on epoll)."""

    name = "call_at"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # The loop's clock is time.monotonic(); the data path stamps chunks with it.
        self._offset = loop.time() - time.monotonic()

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        self._loop.call_at(when + self._offset, callback)


class _TimerFdTimer:
    """A heap of deadlines on one Linux timerfd: sub-millisecond wake-ups in any event loop."""

    name = "timerfd"
    _CLOCK_MONOTONIC = 1  # the clock time.monotonic() reads on Linux
    _TFD_NONBLOCK = os.O_NONBLOCK
    _TFD_CLOEXEC = 0o2000000
    _TFD_TIMER_ABSTIME = 1

    class _Itimerspec(ctypes.Structure):
        """struct itimerspec: two struct timespec, each {tv_sec, tv_nsec} as C longs."""

        _fields_ = (("it_interval", ctypes.c_long * 2), ("it_value", ctypes.c_long * 2))

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.timerfd_create(
            self._CLOCK_MONOTONIC, self._TFD_NONBLOCK | self._TFD_CLOEXEC
        )
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()  # equal deadlines run in the order they were set
        self._armed_at = math.inf
        self._firing = False
        self._spec = self._Itimerspec()
        loop.add_reader(self._fd, self._fire)

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (when, next(self._order), callback))
        if when < self._armed_at and not self._firing:
            self._arm(when)

    def _arm(self, when: float) -> None:
        # A zero deadline would disarm the timer: one nanosecond is already past as well.
        seconds = max(int(when), 0)
        nanoseconds = max(int((when - seconds) * 1e9), 1 if seconds == 0 else 0)
        self._spec.it_value[0], self._spec.it_value[1] = seconds, nanoseconds
        if self._libc.timerfd_settime(
            self._fd, self._TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None
        ):
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        self._armed_at = when

    def _fire(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)
        self._armed_at = math.inf
        self._firing = True
        try:
            heap = self._heap
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                heapq.heappop(heap)[2]()
        finally:
            self._firing = False
        if heap:
            self._arm(heap[0][0])


class _Direction:
    """One way through one connection: chunks in, each written on at its due time, in order."""

    __slots__ = ("armed", "core", "dest", "dest_full", "eof", "finished", "forwarded_key",
                 "held", "last_due", "link", "queue", "source", "source_paused")  # fmt: skip

    def __init__(self, core: _RelayCore, link: _Link, forwarded_key: str) -> None:
        self.core = core
        self.link = link
        self.forwarded_key = forwarded_key
        self.queue: deque[tuple[float, bytes]] = deque()
        self.held = 0
        self.last_due = 0.0
        self.source: asyncio.Transport | None = None
        self.dest: asyncio.Transport | None = None
        self.armed = False
        self.eof = False  # the sender has finished
        self.finished = False  # its end was passed on (or there is no one left to tell)
        self.dest_full = False
        self.source_paused = False

    def receive(self, data: bytes) -> None:
        core = self.core
        core.counters["chunks_received"] += 1
        if not self.queue and core.half_delay_s == 0 and self.can_forward():
            self._write(data)  # no delay asked: no timer either
            return
        due = max(time.monotonic() + core.half_delay_s, self.last_due)
        self.last_due = due
        self.queue.append((due, data))
        self.held += len(data)
        core.held += len(data)
        self._arm()
        self.update_reading()

    def end_of_input(self) -> None:
        self.eof = True
        self.flush()

    def can_forward(self) -> bool:
        return self.dest is not None and not self.core.partitioned and not self.finished

    def flush(self) -> None:
        if not self.can_forward():
            return
        horizon = time.monotonic() + self.core.timer_lead_s
        chunks = []
        queue = self.queue
        while queue and queue[0][0] <= horizon:
            chunks.append(queue.popleft()[1])
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self.held -= len(data)
            self.core.held -= len(data)
            self._write(data)
        if not queue and self.eof:
            self._pass_on_end()
        self._arm()
        self.update_reading()

    def drop(self) -> None:
        """Forget what is held: its receiver is gone."""
        self.core.held -= self.held
        self.held = 0
        self.queue.clear()
        self.finished = True

    def _write(self, data: bytes) -> None:
        assert self.dest is not None
        self.dest.write(data)
        self.core.counters[self.forwarded_key] += len(data)
        self.core.counters["chunks_forwarded"] += 1

    def _pass_on_end(self) -> None:
        self.finished = True
        assert self.dest is not None
        if self.dest.can_write_eof():
            self.dest.write_eof()
        self.link.close_when_done()

    def _arm(self) -> None:
        if self.armed or not self.queue or not self.can_forward():
            return
        self.armed = True
        self.core.timer.call_at(self.queue[0][0] - self.core.timer_lead_s, self._fire)

    def _fire(self) -> None:
        self.armed = False
        if self.queue:
            self.core.note_lateness(time.monotonic() - self.queue[0][0])
        self.flush()

    def update_reading(self) -> None:
        if self.source is None:
            return
        if self.source_paused:
            if not self.dest_full and self.held <= LOW_WATER_BYTES:
                self.source_paused = False
                with contextlib.suppress(RuntimeError):
                    self.source.resume_reading()
        elif self.dest_full or self.held > HIGH_WATER_BYTES:
            self.source_paused = True
            with contextlib.suppress(RuntimeError):
                self.source.pause_reading()


class _Side(asyncio.Protocol):
    """One socket of a connection: what it reads goes ``inbound``, ``outbound`` writes to it."""

    def __init__(self, link: _Link, inbound: _Direction, outbound: _Direction) -> None:
        self.link = link
        self.inbound = inbound
        self.outbound = outbound

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.inbound.source = transport
        self.outbound.dest = transport
        if self is self.link.client_side:
            self.link.accepted(transport)
        else:
            self.outbound.flush()  # what the client sent while PostgreSQL was being reached

    def data_received(self, data: bytes) -> None:
        self.inbound.receive(data)

    def eof_received(self) -> bool:
        self.inbound.end_of_input()
        return True  # keep our sending half open: the other way may still have bytes to give

    def pause_writing(self) -> None:
        self.outbound.dest_full = True
        self.outbound.update_reading()

    def resume_writing(self) -> None:
        self.outbound.dest_full = False
        self.outbound.update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.outbound.drop()
        if exc is not None:
            self.link.reset()
            return
        self.inbound.end_of_input()
        self.link.close_when_done()


class _Link:
    """One client connection and its connection to PostgreSQL."""

    def __init__(self, core: _RelayCore) -> None:
        self.core = core
        self.to_upstream = _Direction(core, self, "bytes_to_upstream")
        self.to_client = _Direction(core, self, "bytes_to_client")
        self.client_side = _Side(self, self.to_upstream, self.to_client)
        self.upstream_side = _Side(self, self.to_client, self.to_upstream)
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.closed = False

    def accepted(self, transport: asyncio.Transport) -> None:
        self.client = transport
        core = self.core
        core.links.add(self)
        core.counters["connections_accepted"] += 1
        if core.partitioned and core.reset_on_partition:
            self.reset()
        elif core.partitioned:
            core.waiting.add(self)  # a black-holed link: PostgreSQL hears of it once healed
        else:
            self.connect()

    def connect(self) -> None:
        self.core.waiting.discard(self)
        self.core.loop.create_task(self._connect())

    async def _connect(self) -> None:
        loop, upstream = self.core.loop, self.core.upstream
        try:
            if upstream.unix_path:
                transport, _ = await loop.create_unix_connection(
                    lambda: self.upstream_side, upstream.unix_path
                )
            else:
                transport, _ = await loop.create_connection(
                    lambda: self.upstream_side, upstream.host, upstream.port
                )
        except OSError:
            self.reset()  # PostgreSQL unreachable: the client sees its connection reset
            return
        self.upstream = transport  # type: ignore[assignment]
        if self.closed:
            transport.abort()

    def close_when_done(self) -> None:
        if self.to_upstream.finished and self.to_client.finished:
            self._close(abort=False)

    def reset(self) -> None:
        self._close(abort=True)

    def _close(self, *, abort: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.core.links.discard(self)
        self.core.waiting.discard(self)
        for direction in (self.to_upstream, self.to_client):
            direction.drop()
        for transport in (self.client, self.upstream):
            if transport is None or transport.is_closing():
                continue
            if abort:
                _abort_with_rst(transport)
            else:
                transport.close()


def _abort_with_rst(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    # SO_LINGER 0: close() sends RST, not FIN, as a cut link looks to its ends.
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _RelayCore:
    """The relay's state inside its process: the links, the delay, the partition."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: dict[str, Any]) -> None:
        self.loop = loop
        self.upstream = Upstream(str(config["upstream_host"]), int(config["upstream_port"]))
        self.added_rtt_ms = float(config["added_rtt_ms"])
        self.half_delay_s = self.added_rtt_ms / 2000
        try:
            self.timer: _TimerFdTimer | _CallAtTimer = _TimerFdTimer(loop)
        except (OSError, AttributeError):  # not Linux: the loop's own timers
            self.timer = _CallAtTimer(loop)
        self.timer_lead_s = 0.0
        self.lateness_total_s = 0.0
        self.lateness_count = 0
        self.partitioned = False
        self.reset_on_partition = False
        self.heal_handle: asyncio.TimerHandle | None = None
        self.links: set[_Link] = set()
        self.waiting: set[_Link] = set()  # accepted during a partition, not yet connected on
        self.held = 0
        self.counters = dict.fromkeys(
            ("connections_accepted", "connections_reset", "bytes_to_upstream",
             "bytes_to_client", "chunks_received", "chunks_forwarded"),
            0,
        )  # fmt: skip

    async def calibrate(self) -> None:
        """Measure how late the timer wakes the loop; arm timers that much early."""
        lateness = []
        for _ in range(CALIBRATION_SAMPLES):
            woke = self.loop.create_future()
            due = time.monotonic() + CALIBRATION_DELAY_S
            self.timer.call_at(due, lambda woke=woke: woke.set_result(time.monotonic()))
            lateness.append(await woke - due)
        self.timer_lead_s = min(max(statistics.median(lateness), 0.0), MAX_TIMER_LEAD_S)

    def note_lateness(self, late_s: float) -> None:
        """Count how late a timer forwarded its chunk, and arm timers a little earlier or later.

        The start-up calibration is an idle machine's figure; under load, or after a longer
        sleep, the loop wakes later, so the lead follows what the timers actually do. Steps
        of a fixed size, up when late and down when early, settle where half the chunks are
        late: the median delay is the one asked for (a mean would be pulled by the few
        wake-ups that come very late).
        """
        self.lateness_total_s += late_s
        self.lateness_count += 1
        lead = self.timer_lead_s + (LEAD_STEP_S if late_s > 0 else -LEAD_STEP_S)
        self.timer_lead_s = min(max(lead, 0.0), MAX_TIMER_LEAD_S)

    def set_rtt(self, added_rtt_ms: float) -> None:
        self.added_rtt_ms = checked_rtt_ms(added_rtt_ms)
        self.half_delay_s = self.added_rtt_ms / 2000

    def partition(self, seconds: float | None, reset: bool) -> None:
        self._cancel_heal()
        self.partitioned = True
        self.reset_on_partition = reset
        if reset:
            for link in list(self.links):
                self.counters["connections_reset"] += 1
                link.reset()
        if seconds is not None:
            self.heal_handle = self.loop.call_later(seconds, self.heal)

    def heal(self) -> None:
        self._cancel_heal()
        self.partitioned = False
        self.reset_on_partition = False
        for link in list(self.waiting):
            link.connect()
        for link in list(self.links):
            link.to_upstream.flush()
            link.to_client.flush()

    def _cancel_heal(self) -> None:
        if self.heal_handle is not None:
            self.heal_handle.cancel()
            self.heal_handle = None

    def stats(self) -> dict[str, Any]:
        cpu = os.times()
        return {
            **self.counters,
            "added_rtt_ms": self.added_rtt_ms,
            "partitioned": self.partitioned,
            "reset_on_partition": self.reset_on_partition,
            "connections_open": len(self.links),
            "bytes_held": self.held,
            "cpu_s": cpu.user + cpu.system,
            "timer_lead_ms": self.timer_lead_s * 1000,
            "mean_lateness_ms": (
                self.lateness_total_s / self.lateness_count * 1000 if self.lateness_count else 0.0
            ),
        }

    def command(self, message: dict[str, Any]) -> dict[str, Any]:
        """Carry out one control message; return its reply."""
        op = message.get("op")
        if op == "set_rtt":
            self.set_rtt(message["added_rtt_ms"])
        elif op == "partition":
            self.partition(message.get("seconds"), bool(message.get("reset")))
        elif op == "heal":
            self.heal()
        elif op != "stats":
            return {"ok": False, "error": f"unknown op {op!r}"}
        return {"ok": True, "stats": self.stats()}


async def _serve(config: dict[str, Any], loop_name: str) -> None:
    loop = asyncio.get_running_loop()
    core = _RelayCore(loop, config)
    try:
        server = await loop.create_server(
            lambda: _Link(core).client_side, config["listen_host"], int(config["listen_port"])
        )
    except OSError as error:
        _reply({"ready": False, "error": f"cannot listen: {error}"})
        return
    await core.calibrate()
    _reply({
        "ready": True,
        "port": server.sockets[0].getsockname()[1],
        "loop": loop_name,
        "timer": core.timer.name,
        "timer_lead_ms": round(core.timer_lead_s * 1000, 4),
    })  # fmt: skip
    control = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(control), sys.stdin)
    while line := await control.readline():  # EOF: the parent is done with us, or gone
        try:
            reply = core.command(json.loads(line))
        except (ValueError, KeyError, TypeError) as error:
            reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        _reply(reply)
    server.close()
    for link in list(core.links):
        link.reset()


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    """Run the relay process: argv[1] is its JSON configuration."""
    # Ctrl-C reaches the whole process group: the parent decides when the relay stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(sys.argv[1])
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(config, "asyncio"))
    else:
        uvloop.run(_serve(config, "uvloop"))


if __name__ == "__main__":
    main()
