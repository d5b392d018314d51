"""Start, stop and locate the project's own throwaway PostgreSQL cluster.

The cluster lives in a work folder (``.loadtest/pg`` by default), listens on a free port
on 127.0.0.1 plus a Unix socket in that folder, and trusts local connections: it is a
disposable test server, never a place for real data. PostgreSQL refuses to run as root,
so when we are root the server processes run as the ``postgres`` system account.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

DATABASE_NAME = "loadtest"
SUPERUSER = "postgres"
SERVER_ACCOUNT = "postgres"
# Written on every database this tool creates; seeding only wipes databases that carry it.
MARKER_COMMENT = "clinic-loadtest: throwaway load-test database"
DEFAULT_WORKDIR = Path(__file__).resolve().parent.parent / ".loadtest" / "pg"
SEARCHED_BIN_DIRS = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")
START_TIMEOUT_S = 30.0
# Settings that matter for a load test on a small machine; durable commits stay on.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "300",
    "shared_buffers": "256MB",
    "fsync": "on",
    "synchronous_commit": "on",
    # Lets the integrity checks replay the ledger in commit order (overbooking in history).
    "track_commit_timestamp": "on",
    "log_min_messages": "warning",
    # Serialization failures are the service's daily bread under SERIALIZABLE: one line each,
    # not one more with the whole statement (129,000 lines over a few runs, and the disk
    # writes of that log inside the measured window).
    "log_min_error_statement": "panic",
    # What the slow-second attribution can read back: checkpoints, and lock waits longer
    # than deadlock_timeout (1 s).
    "log_checkpoints": "on",
    "log_lock_waits": "on",
}


class ClusterError(RuntimeError):
    """A problem that the user must fix (missing binaries, a server that will not start)."""


@dataclass(frozen=True)
class ClusterInfo:
    """Where a running cluster can be reached."""

    url: str
    port: int
    workdir: Path
    started_here: bool


def find_bin_dir() -> Path:
    """Return the folder holding ``initdb`` and ``pg_ctl``, from PATH or the usual places."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    candidates = sorted(
        (p for pattern in SEARCHED_BIN_DIRS for p in Path("/").glob(pattern.lstrip("/"))),
        key=_version_key,
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise ClusterError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under "
        "/usr/lib/postgresql/*/bin: install PostgreSQL (e.g. `apt-get install postgresql`) "
        "or set DATABASE_URL to a server you own."
    )


def _version_key(path: Path) -> tuple[int, ...]:
    parts = [part for part in path.parts if part.isdigit()]
    return tuple(int(part) for part in parts) or (0,)


def url_for(port: int, database: str = DATABASE_NAME) -> str:
    """Return the libpq URL of a database on the local cluster."""
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"


class LocalCluster:
    """A PostgreSQL cluster in a work folder of the project's own."""

    def __init__(self, workdir: Path = DEFAULT_WORKDIR) -> None:
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.port_file = self.workdir / "port"
        self.log_file = self.workdir / "server.log"

    # -- state -------------------------------------------------------------------------
    def is_running(self) -> bool:
        """Tell whether the server of this work folder is up."""
        if not (self.data_dir / "PG_VERSION").exists() or not self.port_file.exists():
            return False
        result = self._run_as_server_account(
            [str(find_bin_dir() / "pg_ctl"), "status", "-D", str(self.data_dir)], check=False
        )
        return result.returncode == 0

    def port(self) -> int:
        return int(self.port_file.read_text().strip())

    def url(self, database: str = DATABASE_NAME) -> str:
        return url_for(self.port(), database)

    # -- lifecycle ---------------------------------------------------------------------
    def up(self) -> ClusterInfo:
        """Start the cluster (initialising it first if needed); a no-op when it runs."""
        if self.is_running():
            return ClusterInfo(self.url(), self.port(), self.workdir, started_here=False)
        bin_dir = find_bin_dir()
        self._prepare_workdir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run_as_server_account(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                ]
            )
        port = free_port()
        options = " ".join(
            [f"-p {port}", f"-k {self.workdir}"]
            + [f"-c {name}={value}" for name, value in SERVER_SETTINGS.items()]
        )
        self._run_as_server_account(
            [
                str(bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                str(int(START_TIMEOUT_S)),
            ],
            error_hint=f"see {self.log_file}",
        )
        self.port_file.write_text(f"{port}\n")
        create_marked_database(url_for(port, "postgres"), DATABASE_NAME)
        return ClusterInfo(url_for(port), port, self.workdir, started_here=True)

    def down(self) -> bool:
        """Stop the cluster; return False when it was not running (a no-op)."""
        if not self.is_running():
            return False
        self._run_as_server_account(
            [str(find_bin_dir() / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"]
        )
        return True

    def destroy(self) -> None:
        """Stop the cluster and delete its work folder."""
        self.down()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------
    def _prepare_workdir(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_ACCOUNT)
            # The server account must be able to reach and own its folder.
            for parent in [self.workdir, *self.workdir.parents]:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
            os.chown(self.workdir, account.pw_uid, account.pw_gid)
            self.workdir.chmod(0o700)

    def _run_as_server_account(
        self, argv: list[str], *, check: bool = True, error_hint: str = ""
    ) -> subprocess.CompletedProcess[str]:
        program = Path(argv[0]).name
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVER_ACCOUNT, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            last = detail[-1] if detail else f"exit code {result.returncode}"
            hint = f" ({error_hint})" if error_hint else ""
            raise ClusterError(f"{program} failed: {last}{hint}")
        return result


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_marked_database(admin_url: str, name: str, template: str | None = None) -> None:
    """Create database ``name`` (if missing) and mark it as a throwaway load-test database."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            template_clause = (
                psycopg.sql.SQL(" TEMPLATE {}").format(psycopg.sql.Identifier(template))
                if template
                else psycopg.sql.SQL("")
            )
            conn.execute(
                psycopg.sql.SQL("CREATE DATABASE {}{}").format(
                    psycopg.sql.Identifier(name), template_clause
                )
            )
        conn.execute(
            psycopg.sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Literal(MARKER_COMMENT)
            )
        )


def is_marked_database(url: str) -> bool:
    """Tell whether the database at ``url`` was created by this tool."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE datname = current_database()"
        ).fetchone()
    return bool(row and row[0] == MARKER_COMMENT)
