"""Command-line entry points behind `invoke db.*`: one clear line and a non-zero exit on error."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import psycopg
import sqlalchemy.exc

from local_postgres import ClusterError, LocalCluster, database_url

T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear error line and exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_cleanly(step: Callable[[], T]) -> T:
    """Run ``step``, turning the errors a user can fix into one line and a non-zero exit."""
    try:
        return step()
    except ClusterError as error:
        fail(str(error))
    except (psycopg.OperationalError, sqlalchemy.exc.OperationalError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        fail(f"database unreachable: {first_line}")


def db_up() -> None:
    if os.environ.get("DATABASE_URL"):
        print(os.environ["DATABASE_URL"])
        return
    info = run_cleanly(LocalCluster().up)
    state = "started" if info.started_here else "already running"
    print(info.url)
    print(f"({state}; data in {info.workdir})", file=sys.stderr)


def db_down() -> None:
    if os.environ.get("DATABASE_URL"):
        print("DATABASE_URL is set: not stopping a server this tool did not start", file=sys.stderr)
        return
    stopped = run_cleanly(LocalCluster().down)
    print("stopped" if stopped else "not running")


def db_url() -> None:
    if os.environ.get("DATABASE_URL"):
        print(os.environ["DATABASE_URL"])
        return
    cluster = LocalCluster()
    if not run_cleanly(cluster.is_running):
        fail("the project's PostgreSQL is not running: run `invoke db.up`")
    print(cluster.url())


def db_migrate(revision: str = "head") -> None:
    from target.migrate import upgrade

    url = run_cleanly(database_url)
    run_cleanly(lambda: upgrade(url, revision))
    print(f"migrated to {revision}")


def db_downgrade(revision: str = "base") -> None:
    from target.migrate import downgrade

    url = run_cleanly(database_url)
    run_cleanly(lambda: downgrade(url, revision))
    print(f"downgraded to {revision}")
