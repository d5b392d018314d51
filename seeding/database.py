"""Write the seeded rows into PostgreSQL, refuse unsafe targets, restore the baseline."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from local_postgres import is_marked_database
from seeding.dataset import (
    AuthorizationRow,
    DataSet,
    OrganizationRow,
    PatientRow,
    PractitionerRow,
    ServiceCodeRow,
)

# Children before parents: the order TRUNCATE and the emptiness checks walk them in.
SEEDED_TABLES = (
    "append_lists",
    "therapy_sessions",
    "idempotency_keys",
    "unit_transactions",
    "authorizations",
    "practitioners",
    "patients",
    "service_codes",
    "organizations",
)
MIGRATIONS_TABLE = "alembic_version"
BASELINE_TABLE = "seed_baseline"
OUR_TABLES = (*SEEDED_TABLES, MIGRATIONS_TABLE, BASELINE_TABLE)
CONNECT_TIMEOUT_S = 5
# Fail with a clear message rather than queue forever behind a running load test.
LOCK_TIMEOUT = "10s"
CREATE_BASELINE = """
CREATE TABLE IF NOT EXISTS seed_baseline (
    authorization_id uuid PRIMARY KEY,
    total_units integer NOT NULL,
    used_units integer NOT NULL,
    scheduled_units integer NOT NULL,
    status text NOT NULL
)
"""
FILL_BASELINE = """
INSERT INTO seed_baseline (authorization_id, total_units, used_units, scheduled_units, status)
SELECT id, total_units, used_units, scheduled_units, status FROM authorizations
"""
# Touch only the rows a load test changed: a reset between scenarios stays cheap at 100k rows.
RESTORE_COUNTERS = """
UPDATE authorizations AS a
SET total_units = b.total_units, used_units = b.used_units,
    scheduled_units = b.scheduled_units, status = b.status
FROM seed_baseline AS b
WHERE a.id = b.authorization_id
  AND (a.total_units, a.used_units, a.scheduled_units, a.status)
      IS DISTINCT FROM (b.total_units, b.used_units, b.scheduled_units, b.status)
"""
COUNT_MISSING_SEEDED = """
SELECT count(*) FROM seed_baseline AS b
WHERE NOT EXISTS (SELECT FROM authorizations AS a WHERE a.id = b.authorization_id)
"""
DELETE_UNSEEDED = """
DELETE FROM authorizations AS a
WHERE NOT EXISTS (SELECT FROM seed_baseline AS b WHERE b.authorization_id = a.id)
"""


# Our tables' foreign keys, as pg_dump would recreate them (name, table, definition).
SELECT_FOREIGN_KEYS = """
SELECT conname, conrelid::regclass::text, pg_get_constraintdef(oid)
FROM pg_constraint
WHERE contype = 'f' AND conrelid = ANY(%s::text[]::regclass[])
ORDER BY conrelid::regclass::text, conname
"""


class SeedingError(ValueError):
    """A problem the user must fix; the database was left as it was."""


def describe(database_url: str) -> str:
    """Name a database for messages without repeating a password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(database_url)
    except psycopg.Error:
        return "the database"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"database {info.get('dbname') or info.get('user') or '?'!r} on {host}:{port}"


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def connect(database_url: str) -> psycopg.Connection[Any]:
    """Open a connection, turning any failure into one SeedingError line."""
    try:
        return psycopg.connect(database_url, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as error:
        raise SeedingError(
            f"database unreachable ({describe(database_url)}): {first_line(error)}"
        ) from error


def existing_tables(conn: psycopg.Connection[Any]) -> dict[str, bool]:
    """Return which user tables exist, each flagged True when it is one of ours."""
    rows = conn.execute(
        "SELECT schemaname, tablename, schemaname = current_schema() FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    ).fetchall()
    return {
        name if in_current else f"{schema}.{name}": bool(in_current and name in OUR_TABLES)
        for schema, name, in_current in rows
    }


def tables_holding_data(conn: psycopg.Connection[Any], tables: Iterable[str]) -> list[str]:
    return [
        table
        for table in tables
        if conn.execute(
            sql.SQL("SELECT EXISTS (SELECT FROM {})").format(sql.Identifier(table))
        ).fetchone()[0]
    ]


def check_seedable(database_url: str, *, force: bool = False, require_schema: bool = True) -> None:
    """Raise SeedingError unless seeding may wipe the database at ``database_url``.

    A database may be wiped when it carries the load-test marker, when it holds nothing
    (no rows in our tables, no tables of anybody else's), or when ``force`` is given. With
    ``require_schema`` the migrations must have run already.
    """
    with connect(database_url) as conn:
        tables = existing_tables(conn)
        if require_schema:
            missing = [table for table in (*SEEDED_TABLES, MIGRATIONS_TABLE) if table not in tables]
            if missing:
                raise SeedingError(
                    f"{describe(database_url)} has no schema (missing {', '.join(missing)}): "
                    "run `invoke db.migrate` or `invoke load-test.setup` first"
                )
        if force or is_marked_database(database_url):
            return
        others = sorted(name for name, ours in tables.items() if not ours)
        with_data = tables_holding_data(conn, [t for t in SEEDED_TABLES if t in tables])
    if with_data or others:
        held = f"data in {', '.join(with_data)}" if with_data else f"tables {', '.join(others[:5])}"
        raise SeedingError(
            f"refusing to wipe {describe(database_url)}: it is not marked as a load-test "
            f"database and holds {held}; point DATABASE_URL at a throwaway database "
            "or pass --force"
        )


def load_dataset(database_url: str, dataset: DataSet) -> None:
    """Replace our tables' rows with ``dataset`` and record the baseline, in one transaction."""
    with connect(database_url) as conn:
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                conn.execute(CREATE_BASELINE)
                conn.execute(
                    sql.SQL("TRUNCATE {}").format(
                        sql.SQL(", ").join(map(sql.Identifier, (*SEEDED_TABLES, BASELINE_TABLE)))
                    )
                )
                with foreign_keys_dropped(conn):
                    copy_rows(conn, "organizations", OrganizationRow._fields, dataset.organizations)
                    copy_rows(conn, "service_codes", ServiceCodeRow._fields, dataset.service_codes)
                    copy_rows(conn, "patients", PatientRow._fields, dataset.all_patients)
                    copy_rows(conn, "practitioners", PractitionerRow._fields, dataset.practitioners)
                    copy_rows(
                        conn, "authorizations", AuthorizationRow._fields, dataset.all_authorizations
                    )
                conn.execute(FILL_BASELINE)
                # Fresh statistics make the planner look authorizations up by primary key.
                # On a table it believes tiny it plans a sequential scan, and under
                # SERIALIZABLE a sequential scan takes a predicate lock on the whole
                # relation: every reservation would then conflict with every other one.
                conn.execute(
                    sql.SQL("ANALYZE {}").format(
                        sql.SQL(", ").join(map(sql.Identifier, (*SEEDED_TABLES, BASELINE_TABLE)))
                    )
                )
        except psycopg.errors.LockNotAvailable as error:
            raise SeedingError(
                f"{describe(database_url)} is busy: another session holds a lock on the tables "
                "(is a load test or a migration running?); nothing was changed"
            ) from error
        except psycopg.Error as error:
            raise SeedingError(
                f"seeding {describe(database_url)} failed, nothing was changed: {first_line(error)}"
            ) from error


def vacuum_seeded_tables(database_url: str) -> None:
    """VACUUM the freshly loaded tables, outside any transaction as VACUUM requires.

    It sets hint bits and the visibility map now, so that the first scenario neither pays
    for them nor meets an autovacuum triggered by the bulk insert.
    """
    try:
        with connect(database_url) as conn:
            conn.autocommit = True
            conn.execute(
                sql.SQL("VACUUM {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, (*SEEDED_TABLES, BASELINE_TABLE)))
                )
            )
    except psycopg.Error as error:
        raise SeedingError(
            f"seeded {describe(database_url)}, but VACUUM failed: {first_line(error)}"
        ) from error


@contextmanager
def foreign_keys_dropped(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Drop our tables' foreign keys for a bulk load and add them back, checked, afterwards.

    With them in place COPY fires one referential check per row and reference (three per
    authorization): re-adding a key checks all rows in one join, about three times faster
    at scale 1000 (the "Populating a Database" advice of the PostgreSQL manual). Run inside
    the loading transaction, so no other session ever sees the table without its keys.
    """
    keys = conn.execute(SELECT_FOREIGN_KEYS, (list(SEEDED_TABLES),)).fetchall()
    for name, table, _ in keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.SQL(table), sql.Identifier(name)
            )
        )
    yield
    for name, table, definition in keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.SQL(table), sql.Identifier(name), sql.SQL(definition)
            )
        )


def copy_rows(
    conn: psycopg.Connection[Any], table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Bulk-load ``rows`` into ``table`` with COPY."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def reset_to_baseline(database_url: str) -> None:
    """Empty the ledger and restore every authorization's seeded counters, in one transaction."""
    with connect(database_url) as conn:
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                baseline = conn.execute("SELECT to_regclass(%s)", (BASELINE_TABLE,)).fetchone()[0]
                if baseline is None or not tables_holding_data(conn, [BASELINE_TABLE]):
                    raise SeedingError(
                        f"{describe(database_url)} has no seed baseline: "
                        "run `invoke load-test.seed` first"
                    )
                conn.execute(
                    "TRUNCATE unit_transactions, idempotency_keys, therapy_sessions, append_lists"
                )
                conn.execute(RESTORE_COUNTERS)
                missing = conn.execute(COUNT_MISSING_SEEDED).fetchone()[0]
                if missing:
                    raise SeedingError(
                        f"{missing} seeded authorizations no longer exist in "
                        f"{describe(database_url)}: reseed with `invoke load-test.seed`"
                    )
                conn.execute(DELETE_UNSEEDED)
        except psycopg.errors.LockNotAvailable as error:
            raise SeedingError(
                f"{describe(database_url)} is busy: another session holds a lock on the tables; "
                "nothing was changed"
            ) from error
        except psycopg.Error as error:
            raise SeedingError(
                f"resetting {describe(database_url)} failed, nothing was changed: "
                f"{first_line(error)}"
            ) from error
