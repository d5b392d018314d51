"""Each strategy's one statement, raced against a concurrent write on the real server.

A second transaction books the last units and holds its row lock while the statement runs;
then it commits. The statement must refuse (or, under SERIALIZABLE, fail with 40001 for the
service to retry). Run at READ COMMITTED, the serializable strategy's read-check-write
overbooks: its safety comes from the isolation level, not from the SQL alone.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from support_service import add_authorization, seed_clinic

from target.operations import AuthorizationRecord, Operation, UnitChange
from target.reservation_sql import AUTHORIZATION_COLUMNS, CHANGE_STATEMENTS
from target.reservations import statement_parameters

TOTAL_UNITS = 10
LOCK_WAIT_TIMEOUT_S = 10.0


def reserve(clinic_tenant: Any, authorization_id: uuid.UUID) -> UnitChange:
    return UnitChange(
        operation=Operation.RESERVE,
        authorization_id=authorization_id,
        organization_id=clinic_tenant.organization_id,
        practitioner_id=clinic_tenant.practitioner_id,
        units=TOTAL_UNITS,
        request_id="race",
        transaction_id=uuid.uuid4(),
    )


def race(url: str, strategy: str, isolation: str, change: UnitChange) -> dict[str, Any]:
    """Run the statement while another transaction books every unit; return what it did."""
    outcome: dict[str, Any] = {}
    with psycopg.connect(url) as rival:
        rival.execute(
            "UPDATE authorizations SET scheduled_units = scheduled_units + %s WHERE id = %s",
            (TOTAL_UNITS, change.authorization_id),
        )
        options = f"-c default_transaction_isolation={isolation.replace(' ', chr(92) + ' ')}"

        def run_statement() -> None:
            try:
                with psycopg.connect(url, autocommit=True, options=options) as conn:
                    outcome["pid"] = conn.info.backend_pid
                    row = conn.execute(
                        CHANGE_STATEMENTS[strategy, change.operation, False],
                        statement_parameters(change),
                    ).fetchone()
                    # No row, or applied = false: nothing matched, nothing was written.
                    outcome["applied"] = bool(row and row[1])
            except psycopg.Error as error:
                outcome["sqlstate"] = error.sqlstate

        statement = threading.Thread(target=run_statement)
        statement.start()
        wait_until_blocked(url, outcome)
        rival.commit()
        statement.join(timeout=LOCK_WAIT_TIMEOUT_S)
    return outcome


def wait_until_blocked(url: str, outcome: dict[str, Any]) -> None:
    """Wait until the statement's backend waits for the rival's row lock."""
    deadline = time.monotonic() + LOCK_WAIT_TIMEOUT_S
    with psycopg.connect(url, autocommit=True) as observer:
        while time.monotonic() < deadline:
            pid = outcome.get("pid")
            if pid is not None:
                row = observer.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
                if row is not None and row[0] == "Lock":
                    return
            time.sleep(0.02)
    raise AssertionError("the statement never waited for the rival's row lock")


def scheduled_units(url: str, authorization_id: uuid.UUID) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT scheduled_units FROM authorizations WHERE id = %s", (authorization_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("strategy", "isolation", "expected"),
    [
        ("serializable", "serializable", {"sqlstate": "40001"}),
        ("for_update", "read committed", {"applied": False}),
        ("atomic", "read committed", {"applied": False}),
    ],
)
def test_the_statement_never_books_units_a_concurrent_writer_took(
    database_url: str, strategy: str, isolation: str, expected: dict[str, Any]
) -> None:
    clinic = seed_clinic(database_url)
    authorization_id = add_authorization(database_url, clinic.home, total_units=TOTAL_UNITS)
    outcome = race(database_url, strategy, isolation, reserve(clinic.home, authorization_id))
    assert {key: outcome.get(key) for key in expected} == expected
    assert scheduled_units(database_url, authorization_id) == TOTAL_UNITS


def test_the_serializable_statement_overbooks_without_serializable_isolation(
    database_url: str,
) -> None:
    clinic = seed_clinic(database_url)
    authorization_id = add_authorization(database_url, clinic.home, total_units=TOTAL_UNITS)
    outcome = race(
        database_url, "serializable", "read committed", reserve(clinic.home, authorization_id)
    )
    assert outcome.get("applied") is True
    assert scheduled_units(database_url, authorization_id) == 2 * TOTAL_UNITS


def test_the_statement_returns_the_columns_the_record_is_built_from() -> None:
    assert [field.name for field in dataclasses.fields(AuthorizationRecord)] == [
        *AUTHORIZATION_COLUMNS,
        "today",
    ]
