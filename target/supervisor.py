"""Supervise Hypercorn workers on one listening socket: replace the dead, give up on a crash loop.

Hypercorn 0.18's own ``--workers N`` mode stops every worker when one dies. This parent
process instead holds the listening socket it was given (``--fd``) and starts each worker as
``python -m hypercorn --bind fd://N --workers 0 APP``: with ``--workers 0`` Hypercorn serves
in that very process, with its own SIGTERM/SIGINT handling and graceful timeout, so we write
no server code and each worker is a fresh interpreter (nothing inherited from this process,
and a broken app cannot break the supervisor, which never imports it). All workers accept
from the same socket, so while one is replaced the others keep serving the port.

    python -m target.supervisor --fd N --workers W [--app target.app:create_app()]

Exit codes: 0 after SIGTERM/SIGINT (workers stopped gracefully), 1 after giving up on a crash
loop, 2 for bad arguments. A dead worker's live gauges are dropped and every replacement is
counted in ``service_worker_restarts_total``.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

from retry_backoff import capped_exponential_s
from target import metrics
from target.settings import DEFAULT_KEEP_ALIVE_S, keep_alive_s

APP_PATH = "target.app:create_app()"
LISTEN_BACKLOG = 1024
GRACEFUL_TIMEOUT_S = 3
# uvloop cuts the event loop's share of each request (Quart + Hypercorn make several tasks and
# futures per request); plain asyncio remains the fallback where it is not installed.
WORKER_CLASS = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"

POLL_INTERVAL_S = 0.05
# Backoff between restarts of one slot: first, first*2, first*4, ... up to the cap.
FIRST_RESTART_DELAY_S = 0.1
MAX_RESTART_DELAY_S = 5.0
# A worker that lived this long died of something new: its slot's backoff starts over.
STABLE_UPTIME_S = 10.0
# This many worker deaths (any slot) within the window is a crash loop: stop and exit.
CRASH_LIMIT = 5
CRASH_WINDOW_S = 30.0
# Beyond Hypercorn's graceful timeout, time for the app's own shutdown (closing the pool).
STOP_MARGIN_S = 5.0
GAVE_UP_EXIT_CODE = 1
BAD_ARGUMENTS_EXIT_CODE = 2
PR_SET_PDEATHSIG = 1
LOG_PREFIX = "supervisor:"


@dataclass
class WorkerSlot:
    """One of the W places a worker serves in; its process changes, its backoff is its own."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    consecutive_crashes: int = 0
    restart_at: float | None = None


class Supervisor:
    """Keep ``workers`` Hypercorn processes serving the socket ``listener_fd``."""

    def __init__(
        self,
        listener_fd: int,
        workers: int,
        app_path: str = APP_PATH,
        keep_alive_s: int = DEFAULT_KEEP_ALIVE_S,
    ) -> None:
        self.command = worker_command(listener_fd, app_path, keep_alive_s)
        self.listener_fd = listener_fd
        self.slots = [WorkerSlot(index) for index in range(workers)]
        self.crash_times: deque[float] = deque()
        self.stop_signal: int | None = None

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (return 0) or a crash loop (return 1)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._request_stop)
        for slot in self.slots:
            self._start(slot)
        note(f"supervising {len(self.slots)} workers on fd {self.listener_fd}")
        while self.stop_signal is None:
            gave_up = self._look_after_workers()
            if gave_up is not None:
                self._stop_workers()
                print(f"{LOG_PREFIX} giving up: {gave_up}", file=sys.stderr, flush=True)
                return GAVE_UP_EXIT_CODE
            time.sleep(POLL_INTERVAL_S)
        note(f"{signal.Signals(self.stop_signal).name} received: stopping the workers")
        self._stop_workers()
        return 0

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_signal = signum

    def _look_after_workers(self) -> str | None:
        """Reap dead workers and start due replacements; return why to give up, if so."""
        for slot in self.slots:
            if slot.process is not None:
                exit_code = slot.process.poll()
                if exit_code is not None:
                    gave_up = self._worker_died(slot, slot.process.pid, exit_code)
                    if gave_up is not None:
                        return gave_up
            if self._restart_due(slot):
                self._start(slot)
                metrics.WORKER_RESTARTS.inc()
        return None

    def _restart_due(self, slot: WorkerSlot) -> bool:
        return (
            slot.process is None
            and slot.restart_at is not None
            and time.monotonic() >= slot.restart_at
            and self.stop_signal is None
        )

    def _worker_died(self, slot: WorkerSlot, pid: int, exit_code: int) -> str | None:
        # The worker died without dropping its live gauges (pool size, checked out): do it.
        metrics.forget_worker(pid)
        now = time.monotonic()
        uptime_s = now - slot.started_at
        slot.process = None
        if uptime_s >= STABLE_UPTIME_S:
            slot.consecutive_crashes = 0
        slot.consecutive_crashes += 1
        self.crash_times.append(now)
        while self.crash_times and now - self.crash_times[0] > CRASH_WINDOW_S:
            self.crash_times.popleft()
        death = f"worker {pid} {describe_exit(exit_code)} after {uptime_s:.1f} s"
        if len(self.crash_times) >= CRASH_LIMIT:
            return (
                f"{len(self.crash_times)} worker deaths within {CRASH_WINDOW_S:g} s "
                f"(last: {death}); see the lines above for why"
            )
        delay_s = restart_delay_s(slot.consecutive_crashes)
        slot.restart_at = now + delay_s
        note(f"{death}; slot {slot.index} restarts in {delay_s:.1f} s")
        return None

    def _start(self, slot: WorkerSlot) -> None:
        slot.process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            pass_fds=(self.listener_fd,),
            preexec_fn=prepare_worker(),
        )
        slot.started_at = time.monotonic()
        slot.restart_at = None

    def _stop_workers(self) -> None:
        """SIGTERM every worker (each finishes its in-flight requests), then SIGKILL stragglers."""
        running = [slot.process for slot in self.slots if slot.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACEFUL_TIMEOUT_S + STOP_MARGIN_S
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                note(f"worker {process.pid} did not stop in time: killing it")
                process.kill()
                process.wait()
            metrics.forget_worker(process.pid)  # a worker stopped before serving kept its gauges
        for slot in self.slots:
            slot.process = None


def worker_command(
    listener_fd: int, app_path: str = APP_PATH, keep_alive_s: int = DEFAULT_KEEP_ALIVE_S
) -> list[str]:
    """Return the command of one worker: Hypercorn serving in its own process (--workers 0)."""
    return [
        sys.executable,
        "-m",
        "hypercorn",
        "--bind",
        f"fd://{listener_fd}",
        "--workers",
        "0",
        "--backlog",
        str(LISTEN_BACKLOG),
        "--graceful-timeout",
        str(GRACEFUL_TIMEOUT_S),
        "--keep-alive",
        str(keep_alive_s),
        "--worker-class",
        WORKER_CLASS,
        app_path,
    ]


def restart_delay_s(consecutive_crashes: int) -> float:
    """Return how long a slot waits before its next worker: doubling, capped."""
    # retry_backoff's ceiling without its jitter: one supervisor, and a crash loop stays legible.
    return capped_exponential_s(
        consecutive_crashes, base_s=FIRST_RESTART_DELAY_S, cap_s=MAX_RESTART_DELAY_S
    )


def describe_exit(exit_code: int) -> str:
    """Say how a process ended, from Popen's return code (negative: killed by a signal)."""
    if exit_code < 0:
        try:
            return f"was killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"was killed by signal {-exit_code}"
    return f"exited with code {exit_code}"


def prepare_worker() -> Callable[[], None]:
    """Return the pre-exec hook of a worker: ignore the terminal's SIGINT, die with the parent.

    A terminal's Ctrl-C reaches the whole process group; the supervisor turns it into SIGTERM
    for each worker. Ignoring SIGINT only lasts until Hypercorn installs its own handler, so a
    worker still importing is not interrupted mid-import (a traceback, nothing else).
    On Linux a worker also gets SIGTERM when the supervisor dies: without that a kill -9 of
    the supervisor would leave workers serving the port unwatched.
    """
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    supervisor_pid = os.getpid()

    def prepare() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != supervisor_pid:  # the supervisor died before prctl took effect
                os._exit(1)

    return prepare


def note(message: str) -> None:
    """Log what the supervisor did, on stdout; stderr is kept for the one line when it gives up."""
    print(f"{LOG_PREFIX} {message}", flush=True)


def check_listener(listener_fd: int) -> str | None:
    """Return why ``listener_fd`` is not a listening TCP socket, or None when it is."""
    try:
        listener = socket.socket(fileno=listener_fd)
    except OSError as error:
        return f"fd {listener_fd} is not a socket: {error.strerror}"
    try:
        if not listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return f"fd {listener_fd} is a socket that is not listening"
        return None
    except OSError as error:
        return f"fd {listener_fd} is not a usable socket: {error.strerror}"
    finally:
        listener.detach()  # the workers need it open


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(BAD_ARGUMENTS_EXIT_CODE)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, check the socket, and supervise until stopped or given up."""
    parser = _OneLineParser(prog="python -m target.supervisor", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="the bound, listening socket")
    parser.add_argument("--workers", type=int, default=1, help="how many workers serve it")
    parser.add_argument("--app", default=APP_PATH, help="the ASGI app, as Hypercorn takes it")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    problem = check_listener(args.fd)
    if problem is not None:
        parser.error(problem)
    try:
        keep_alive = keep_alive_s(os.environ)  # TARGET_KEEP_ALIVE_S
    except ValueError as error:
        parser.error(str(error))
    return Supervisor(args.fd, args.workers, args.app, keep_alive).run()


if __name__ == "__main__":
    raise SystemExit(main())
