"""`invoke target.serve`: serve in the foreground on the tools' database until interrupted."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from local_postgres import database_url
from pipeline.exits import cleanly, fail, first_line
from pipeline.service_process import (
    HOST,
    PROJECT_ROOT,
    STOP_TIMEOUT_S,
    bind_listener,
    check_launch,
    service_environment,
    supervisor_command,
)

MIGRATED_TABLE = "authorizations"


def check_database_ready(url: str) -> str | None:
    """Return why the service cannot use this database, or None when it can."""
    try:
        with psycopg.connect(url, connect_timeout=5) as connection:
            row = connection.execute("SELECT to_regclass(%s)", (MIGRATED_TABLE,)).fetchone()
    except psycopg.Error as error:
        return f"database unreachable: {first_line(error)}"
    if row is None or row[0] is None:
        return "database is not migrated: run `invoke db.migrate`"
    return None


def serve_forever(port: int, workers: int, strategy: str | None, host: str = HOST) -> None:
    """Serve in the foreground until interrupted; one clear line and exit 2 on a setup error."""
    url = cleanly(database_url)
    try:
        check_launch(url, strategy, workers, None)
    except ValueError as error:
        fail(str(error))
    problem = check_database_ready(url)
    if problem is not None:
        fail(problem)
    listener = cleanly(lambda: bind_listener(port, host))
    metrics_dir = Path(tempfile.mkdtemp(prefix="target-metrics-"))
    bound_port = listener.getsockname()[1]
    with listener:
        process = subprocess.Popen(
            supervisor_command(listener.fileno(), workers),
            env=service_environment(url, strategy, metrics_dir, None),
            cwd=PROJECT_ROOT,
            pass_fds=(listener.fileno(),),
        )
    print(f"serving on http://{host}:{bound_port} (Ctrl-C to stop)", file=sys.stderr)
    try:
        process.wait()
    except KeyboardInterrupt:
        # The supervisor got the same SIGINT from the terminal and is stopping its workers.
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if process.returncode not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise SystemExit(process.returncode)
