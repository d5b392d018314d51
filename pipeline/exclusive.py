"""One load test at a time per database: a second run would reset the first one's data.

A session-level advisory lock, held on its own connection for as long as a pipeline step
that writes test data runs. PostgreSQL releases it when that connection closes, so a crashed
run never leaves the database locked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

# An arbitrary key of ours; advisory lock keys are scoped to the database.
LOAD_TEST_LOCK_KEY = 0x6C6F_6164_7465_7374  # "loadtest"


class DatabaseBusyError(RuntimeError):
    """Another load test holds the database."""


@contextmanager
def exclusive_database(database_url: str) -> Iterator[None]:
    """Hold the load-test lock on ``database_url``, or raise DatabaseBusyError at once."""
    connection = psycopg.connect(database_url, autocommit=True, connect_timeout=5)
    try:
        row = connection.execute(
            "SELECT pg_try_advisory_lock(%s)", (LOAD_TEST_LOCK_KEY,)
        ).fetchone()
        if not (row and row[0]):
            raise DatabaseBusyError(
                "another load test is running against this database (it holds the load-test "
                "lock): wait for it to finish, or point DATABASE_URL at another database"
            )
        yield
    finally:
        connection.close()
