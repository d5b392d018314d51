"""Collect the facts of a run: versions, git commit, machine, PostgreSQL settings, data, plan."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

import psutil
import psycopg
from psycopg import sql

from pipeline.rundirs import git_state

KEY_PACKAGES = (
    "quart",
    "hypercorn",
    "sqlalchemy",
    "psycopg",
    "alembic",
    "molotov",
    "aiohttp",
    "jinja2",
)
POSTGRES_SETTINGS = (
    "default_transaction_isolation",
    "max_connections",
    "shared_buffers",
    "fsync",
    "synchronous_commit",
    "work_mem",
    "random_page_cost",
)
COUNTED_TABLES = (
    "organizations",
    "service_codes",
    "patients",
    "practitioners",
    "authorizations",
    "unit_transactions",
    "seed_baseline",
)
# The service's lookup of one authorization by id within its organization.
LOOKUP_QUERY = (
    "SELECT id, organization_id, total_units, used_units, scheduled_units, status "
    "FROM authorizations WHERE id = %(id)s AND organization_id = %(organization_id)s"
)
SEQ_SCAN = "Seq Scan"


def collect_facts(database_url: str | None) -> dict[str, Any]:
    """Return the run facts; a part that cannot be collected is named in ``errors``."""
    commit, dirty = git_state()
    facts: dict[str, Any] = {
        "git": {"commit": commit, "dirty": dirty},
        "machine": machine(),
        "versions": {"python": platform.python_version(), "packages": package_versions()},
        "errors": [],
    }
    if database_url is None:
        facts["errors"].append("no database: PostgreSQL facts not collected")
        return facts
    try:
        with psycopg.connect(database_url, connect_timeout=5, autocommit=True) as conn:
            facts["versions"]["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
            facts["postgres_settings"] = postgres_settings(conn)
            facts["data_volume"] = data_volume(conn)
            facts["lookup_plan"] = lookup_plan(conn)
    except psycopg.Error as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        facts["errors"].append(f"PostgreSQL facts: {first}")
    return facts


def machine() -> dict[str, Any]:
    """Describe the machine the run used."""
    return {
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python_implementation": sys.implementation.name,
    }


def package_versions() -> dict[str, str]:
    """Return the installed version of each key package."""
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def postgres_settings(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Return the server settings that change what a load test measures."""
    rows = conn.execute(
        "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
        (list(POSTGRES_SETTINGS),),
    ).fetchall()
    return {name: value for name, value in rows}


def data_volume(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Count the rows of each table the service reads or writes (exactly, not estimated)."""
    counts = {}
    for table in COUNTED_TABLES:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
            continue
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        counts[table] = int(conn.execute(query).fetchone()[0])
    return counts


def lookup_plan(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """EXPLAIN the authorization lookup under SERIALIZABLE for one real authorization."""
    row = conn.execute(
        "SELECT id, organization_id FROM authorizations WHERE status = 'active' LIMIT 1"
    ).fetchone()
    if row is None:
        return {"query": LOOKUP_QUERY, "plan": "(no authorization to look up)", "seq_scan": False}
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        plan_rows = conn.execute(
            "EXPLAIN " + LOOKUP_QUERY, {"id": row[0], "organization_id": row[1]}
        ).fetchall()
    plan = "\n".join(line for (line,) in plan_rows)
    return {
        "query": LOOKUP_QUERY.replace("%(id)s", "$1").replace("%(organization_id)s", "$2"),
        "isolation": "serializable",
        "plan": plan,
        "seq_scan": SEQ_SCAN in plan,
    }
