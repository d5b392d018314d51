"""The project's own cluster: idempotent up/down, migrations both ways, the safety marker."""

from __future__ import annotations

import psycopg

from local_postgres import ClusterInfo, LocalCluster, is_marked_database
from local_postgres.cluster import url_for
from target.migrate import downgrade, upgrade

EXPECTED_TABLES = {
    "organizations",
    "service_codes",
    "patients",
    "practitioners",
    "authorizations",
    "unit_transactions",
    "idempotency_keys",
    "therapy_sessions",
    "append_lists",
}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {row[0] for row in rows} - {"alembic_version"}


def test_up_is_idempotent_and_reports_the_same_url(pg_cluster: ClusterInfo) -> None:
    again = LocalCluster(pg_cluster.workdir).up()
    assert again.started_here is False
    assert again.url == pg_cluster.url


def test_created_database_carries_the_marker(pg_cluster: ClusterInfo) -> None:
    assert is_marked_database(pg_cluster.url)
    assert not is_marked_database(url_for(pg_cluster.port, "postgres"))


def test_migrations_go_up_and_down(database_url: str) -> None:
    assert _tables(database_url) == EXPECTED_TABLES
    downgrade(database_url)
    assert _tables(database_url) == set()
    upgrade(database_url)
    assert _tables(database_url) == EXPECTED_TABLES


def test_no_check_constraint_forbids_overbooking(database_url: str) -> None:
    """The schema must let overbooking happen so that the integrity checks can see it."""
    with psycopg.connect(database_url) as conn:
        definitions = [
            row[0]
            for row in conn.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'authorizations'::regclass AND contype = 'c'"
            )
        ]
    assert definitions, "expected the non-negativity checks"
    assert not any("total_units" in d and "scheduled_units" in d for d in definitions)


def test_down_is_a_noop_when_stopped(tmp_path) -> None:
    assert LocalCluster(tmp_path / "never-started").down() is False
