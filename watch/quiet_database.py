"""Keep the tool's own maintenance out of a scenario's measured window.

Before each scenario: VACUUM (ANALYZE) the tables the scenarios write, then CHECKPOINT, and
wait for both to finish, so that neither a vacuum of the last scenario's dead rows nor a
checkpoint's fsync lands inside the measurement (a CHECKPOINT also restarts the
checkpoint_timeout clock: no timed checkpoint falls within the next few minutes). During the
scenario, autovacuum is paused on those tables (`autovacuum_enabled = off`) and restored to
what it was afterwards; an autovacuum elsewhere still shows in the attribution sampler.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

# The tables a scenario writes: counters, ledger and idempotency keys.
WRITTEN_TABLES = ("authorizations", "unit_transactions", "idempotency_keys")
AUTOVACUUM_OPTION = "autovacuum_enabled"
LOCK_TIMEOUT = "5s"


def prepare_measured_window(database_url: str, tables: Sequence[str] = WRITTEN_TABLES) -> dict:
    """VACUUM (ANALYZE) ``tables`` and CHECKPOINT; return what ran, how long, what failed."""
    done: dict[str, Any] = {"tables": list(tables), "steps": []}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        present = _present(conn, tables)
        if present:
            statement = sql.SQL("VACUUM (ANALYZE) {}").format(
                sql.SQL(", ").join(map(sql.Identifier, present))
            )
            done["steps"].append(_timed(conn, "VACUUM (ANALYZE)", statement))
        # CHECKPOINT needs superuser or pg_checkpoint: on a server where we lack it, say so.
        done["steps"].append(_timed(conn, "CHECKPOINT", sql.SQL("CHECKPOINT")))
    return done


@contextmanager
def autovacuum_paused(
    database_url: str, tables: Sequence[str] = WRITTEN_TABLES
) -> Iterator[dict[str, Any]]:
    """Turn autovacuum off on ``tables`` for the block; restore each table's own setting.

    No connection is held across the block: a fault may restart PostgreSQL meanwhile.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        before = _autovacuum_settings(conn, _present(conn, tables))
        paused: dict[str, Any] = {"tables": sorted(before), "error": None}
        try:
            for table in before:
                conn.execute(
                    sql.SQL("ALTER TABLE {} SET ({} = off)").format(
                        sql.Identifier(table), sql.SQL(AUTOVACUUM_OPTION)
                    )
                )
        except psycopg.Error as error:
            paused["error"] = f"autovacuum not paused: {str(error).strip().splitlines()[0]}"
    try:
        yield paused
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            _restore(conn, before)


def autovacuum_setting(database_url: str, table: str) -> str | None:
    """Return a table's own autovacuum_enabled ('on'/'off'), or None when it has none."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return _autovacuum_settings(conn, [table]).get(table)


def _restore(conn: psycopg.Connection[Any], before: dict[str, str | None]) -> None:
    for table, value in before.items():
        if value is None:
            statement = sql.SQL("ALTER TABLE {} RESET ({})").format(
                sql.Identifier(table), sql.SQL(AUTOVACUUM_OPTION)
            )
        else:
            statement = sql.SQL("ALTER TABLE {} SET ({} = {})").format(
                sql.Identifier(table), sql.SQL(AUTOVACUUM_OPTION), sql.Literal(value)
            )
        conn.execute(statement)


def _autovacuum_settings(
    conn: psycopg.Connection[Any], tables: Sequence[str]
) -> dict[str, str | None]:
    rows = conn.execute(
        "SELECT c.relname, c.reloptions FROM pg_class c "
        "WHERE c.oid = ANY(SELECT to_regclass(t)::oid FROM unnest(%s::text[]) AS t)",
        (list(tables),),
    ).fetchall()
    settings: dict[str, str | None] = {}
    for name, options in rows:
        own = [o.split("=", 1)[1] for o in options or [] if o.startswith(AUTOVACUUM_OPTION + "=")]
        settings[name] = own[0] if own else None
    return settings


def _present(conn: psycopg.Connection[Any], tables: Sequence[str]) -> list[str]:
    rows = conn.execute(
        "SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NOT NULL", (list(tables),)
    ).fetchall()
    return [row[0] for row in rows]


def _timed(conn: psycopg.Connection[Any], name: str, statement: sql.Composable) -> dict:
    started = time.perf_counter()
    try:
        conn.execute(statement)
        error = None
    except psycopg.Error as failure:
        error = str(failure).strip().splitlines()[0]
    return {"step": name, "seconds": round(time.perf_counter() - started, 3), "error": error}
