"""Helpers for the seeding tests: extra databases, ordered dumps, a pinned clock.

No tests live here; the test_seeding* modules import it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from local_postgres import ClusterInfo, create_marked_database
from local_postgres.cluster import url_for
from seeding.database import BASELINE_TABLE, SEEDED_TABLES
from target.migrate import upgrade

TEST_JWT_SECRET = "seeding-tests-secret-of-at-least-32-bytes"
SMALL_BACKGROUND = 40
DUMPED_TABLES = (*SEEDED_TABLES, BASELINE_TABLE)


def admin_url(pg_cluster: ClusterInfo) -> str:
    return url_for(pg_cluster.port, "postgres")


@contextmanager
def extra_database(
    pg_cluster: ClusterInfo, *, marked: bool, template: str | None = None, migrate: bool = False
) -> Iterator[str]:
    """Create a database (marked or not, from a template or empty); drop it afterwards."""
    name = f"seedtest_{uuid.uuid4().hex[:12]}"
    admin = admin_url(pg_cluster)
    if marked:
        create_marked_database(admin, name, template=template)
    else:
        with psycopg.connect(admin, autocommit=True) as conn:
            template_clause = sql.SQL("")
            if template:
                template_clause = sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(
                sql.SQL("CREATE DATABASE {}{}").format(sql.Identifier(name), template_clause)
            )
            # A template carries no comment over, but be explicit: this one is not ours.
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS NULL").format(sql.Identifier(name)))
    url = url_for(pg_cluster.port, name)
    if migrate:
        upgrade(url)
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def dump(url: str, tables: tuple[str, ...] = DUMPED_TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Return every row of ``tables`` (those that exist), ordered by all columns."""
    result = {}
    with psycopg.connect(url) as conn:
        for table in tables:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
                continue
            result[table] = conn.execute(
                sql.SQL("SELECT * FROM {} AS t ORDER BY t::text").format(sql.Identifier(table))
            ).fetchall()
    return result


def all_tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    return {row[0] for row in rows}


def scalar(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


def pin_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[], dt.datetime]:
    """Make seeding see one fixed day, a few seconds later at every call."""
    noon = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(12), tzinfo=dt.UTC)
    seconds = itertools.count(0, 7)

    def fake_now() -> dt.datetime:
        return noon + dt.timedelta(seconds=next(seconds))

    monkeypatch.setattr("seeding.seed.utc_now", fake_now)
    return fake_now


def fixtures_path(tmp_path: Path, name: str = "test-data.json") -> Path:
    return tmp_path / "fixtures" / name
