"""Command-line entry points behind `invoke db.*`: one clear line and a non-zero exit on error."""

from __future__ import annotations

import os
import sys

from local_postgres import LocalCluster, database_url
from pipeline.exits import cleanly, fail
from target.migrate import downgrade, upgrade


def db_up() -> None:
    if os.environ.get("DATABASE_URL"):
        print(os.environ["DATABASE_URL"])
        return
    info = cleanly(LocalCluster().up)
    state = "started" if info.started_here else "already running"
    print(info.url)
    print(f"({state}; data in {info.workdir})", file=sys.stderr)


def db_down() -> None:
    if os.environ.get("DATABASE_URL"):
        print("DATABASE_URL is set: not stopping a server this tool did not start", file=sys.stderr)
        return
    stopped = cleanly(LocalCluster().down)
    print("stopped" if stopped else "not running")


def db_url() -> None:
    if os.environ.get("DATABASE_URL"):
        print(os.environ["DATABASE_URL"])
        return
    cluster = LocalCluster()
    if not cleanly(cluster.is_running):
        fail("the project's PostgreSQL is not running: run `invoke db.up`")
    print(cluster.url())


def db_migrate(revision: str = "head") -> None:
    url = cleanly(database_url)
    cleanly(lambda: upgrade(url, revision))
    print(f"migrated to {revision}")


def db_downgrade(revision: str = "base") -> None:
    url = cleanly(database_url)
    cleanly(lambda: downgrade(url, revision))
    print(f"downgraded to {revision}")
