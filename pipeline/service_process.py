"""Run the service in a subprocess for the pipeline, the tests and the tools.

This process binds the port; target.supervisor gets the socket and keeps W Hypercorn workers
serving it, replacing any that dies. A service we did not start is a RemoteService.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import psutil

from target.metrics import MULTIPROC_DIR_ENV
from target.settings import Settings
from target.supervisor import GRACEFUL_TIMEOUT_S, LISTEN_BACKLOG, STOP_MARGIN_S

HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_POLL_S = 0.1
HEALTH_TIMEOUT_S = 2.0
LOG_TAIL_LINES = 20
MIGRATED_TABLE = "authorizations"
# The supervisor stops its workers within their graceful timeout plus a margin: wait a bit more.
STOP_TIMEOUT_S = GRACEFUL_TIMEOUT_S + STOP_MARGIN_S + 2
REACHABILITY_TIMEOUT_S = 3.0


class ServiceStartError(RuntimeError):
    """The service did not come up; the message carries the end of its log."""


class TargetUnreachableError(ValueError):
    """The --target-url given answers nothing."""


class ServiceProcess:
    """The supervisor and its Hypercorn workers, in subprocesses; a context manager that stops them.

    ``pid`` is the supervisor's; the workers are its children (``worker_pids()``).
    """

    def __init__(
        self, process: subprocess.Popen[bytes], base_url: str, log_path: Path, metrics_dir: Path
    ) -> None:
        self._process = process
        self._metrics_dir = metrics_dir
        self.base_url = base_url
        self.pid = process.pid
        self.log_path = log_path

    def is_alive(self) -> bool:
        """Tell whether the supervisor is still running (a dead worker is replaced, not fatal)."""
        return self._process.poll() is None

    def worker_pids(self) -> list[int]:
        """Return the pids of the workers serving now, e.g. for a fault injector to kill one."""
        return worker_pids(self.pid)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """Stop gracefully (SIGTERM), then by force (SIGKILL); return the exit code."""
        if self.is_alive():
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self._process.wait(timeout=timeout_s)
        # Workers share the supervisor's process group: make sure none outlives it.
        self._kill_group()
        shutil.rmtree(self._metrics_dir, ignore_errors=True)
        return self._process.returncode

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last lines of the server's log."""
        return _tail(self.log_path, lines)

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_service(
    database_url: str,
    *,
    port: int = 0,
    workers: int = 1,
    strategy: str | None = None,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    ready_timeout_s: float = 30.0,
    app_path: str | None = None,
) -> ServiceProcess:
    """Start the service on 127.0.0.1 (a free port when 0); wait until /healthz answers 200.

    ``app_path`` serves another ASGI app the same way (the benchmarks' framework floor).
    """
    check_launch(database_url, strategy, workers, env)
    listener = bind_listener(port)
    bound_port = listener.getsockname()[1]
    metrics_dir = Path(tempfile.mkdtemp(prefix="target-metrics-"))
    child_env = service_environment(database_url, strategy, metrics_dir, env)
    if log_path is None:
        log_path = Path(tempfile.mkdtemp(prefix="target-log-")) / "service.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with listener, log_path.open("ab") as log_file:
        process = subprocess.Popen(
            supervisor_command(listener.fileno(), workers, app_path),
            env=child_env,
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
            # Its own process group, so stop() can reach the workers too.
            start_new_session=True,
        )
    service = ServiceProcess(process, f"http://{HOST}:{bound_port}", log_path, metrics_dir)
    try:
        wait_until_healthy(service, ready_timeout_s)
    except BaseException:
        service.stop(timeout_s=GRACEFUL_TIMEOUT_S)
        raise
    return service


def check_launch(
    database_url: str, strategy: str | None, workers: int, env: dict[str, str] | None
) -> None:
    """Raise one clear ValueError for settings the workers would die on.

    The service's own Settings check the strategy and the other TARGET_* values, here before
    any worker starts.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    Settings.from_env(service_environment(database_url, strategy, Path(os.devnull), env))


def bind_listener(port: int, host: str = HOST) -> socket.socket:
    """Bind and listen in this process, so the child inherits a port nobody can take first.

    Tests and load tests stay on 127.0.0.1; `invoke target.serve --host 0.0.0.0` is for a
    container whose pod address the generators reach (deploy/kubernetes/service.yaml).
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise ServiceStartError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    listener.listen(LISTEN_BACKLOG)
    listener.set_inheritable(True)
    return listener


def supervisor_command(listener_fd: int, workers: int, app_path: str | None = None) -> list[str]:
    """Return the command that supervises ``workers`` Hypercorn workers on the socket."""
    command = [
        sys.executable,
        "-m",
        "target.supervisor",
        "--fd",
        str(listener_fd),
        "--workers",
        str(workers),
    ]
    return command if app_path is None else [*command, "--app", app_path]


def worker_pids(supervisor_pid: int) -> list[int]:
    """Return the pids of a supervisor's live workers (its children), lowest first."""
    try:
        children = psutil.Process(supervisor_pid).children()
    except psutil.Error:
        return []
    pids = []
    for child in children:
        # A killed worker stays a zombie child until the supervisor reaps it: not serving.
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE:
                pids.append(child.pid)
    return sorted(pids)


def service_environment(
    database_url: str, strategy: str | None, metrics_dir: Path, extra: dict[str, str] | None
) -> dict[str, str]:
    """Return the child's environment: ours, plus the database, strategy and metrics folder."""
    child_env = dict(os.environ)
    child_env["DATABASE_URL"] = database_url
    child_env[MULTIPROC_DIR_ENV] = str(metrics_dir)
    child_env["PYTHONUNBUFFERED"] = "1"
    if strategy is not None:
        child_env["TARGET_CONCURRENCY"] = strategy
    child_env.update(extra or {})
    return child_env


def wait_until_healthy(service: ServiceProcess, timeout_s: float) -> None:
    """Poll /healthz until it answers 200; raise ServiceStartError with the log otherwise."""
    deadline = time.monotonic() + timeout_s
    last_problem = "no answer yet"
    while time.monotonic() < deadline:
        if not service.is_alive():
            raise ServiceStartError(
                f"service exited with code {service._process.returncode} before it was ready; "
                f"last lines of {service.log_path}:\n{service.log_tail()}"
            )
        try:
            with urllib.request.urlopen(
                f"{service.base_url}/healthz", timeout=HEALTH_TIMEOUT_S
            ) as response:
                if response.status == 200:
                    return
                last_problem = f"/healthz answered {response.status}"
        except urllib.error.HTTPError as error:
            last_problem = f"/healthz answered {error.code}"
        except (urllib.error.URLError, OSError) as error:
            last_problem = f"/healthz unreachable: {error}"
        time.sleep(READY_POLL_S)
    raise ServiceStartError(
        f"service not healthy within {timeout_s:g} s ({last_problem}); "
        f"last lines of {service.log_path}:\n{service.log_tail()}"
    )


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class RemoteService:
    """A service we did not start: watched over HTTP only."""

    pid = None

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def is_alive(self) -> bool:
        return True  # no process of ours to poll; /healthz tells whether it answers


def check_reachable(base_url: str, timeout_s: float = REACHABILITY_TIMEOUT_S) -> None:
    """Raise TargetUnreachableError unless ``base_url`` answers HTTP at all (any status)."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/healthz", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered: the scenario's own checks judge what it said
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise TargetUnreachableError(f"target {base_url} is unreachable: {reason}") from error
