"""Reserve, release and consume units: the SQL, one function per concurrency strategy.

Every function takes the (psycopg) connection explicitly and runs inside the transaction its
caller opened (``run_transaction``). A change writes the counter and its ledger row in one statement
(a data-modifying CTE), so the two can never part; a refusal is returned, not raised, so the
caller commits first: under SERIALIZABLE a read is only trustworthy once its transaction has
committed, and the commit is where PostgreSQL may still report 40001.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg.rows import class_row

from target import metrics
from target.database import Database
from target.problems import (
    AUTHORIZATION_INACTIVE,
    INSUFFICIENT_UNITS,
    SERIALIZATION_CONFLICT,
    ProblemError,
    not_found,
    unauthorized,
)

T = TypeVar("T")

# SQLSTATEs worth retrying: serialization_failure and deadlock_detected.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
FOREIGN_KEY_VIOLATION = "23503"
BACKOFF_BASE_S = 0.002
BACKOFF_CAP_S = 0.100
ACTIVE = "active"

AUTHORIZATION_COLUMNS = (
    "id, organization_id, patient_id, service_code, total_units, used_units, "
    "scheduled_units, status, start_date, end_date"
)


class Operation(StrEnum):
    RESERVE = "reserve"
    RELEASE = "release"
    CONSUME = "consume"


@dataclass(frozen=True)
class UnitChange:
    """One requested change, with who asked for it and the ledger id it will get."""

    operation: Operation
    authorization_id: uuid.UUID
    organization_id: uuid.UUID
    practitioner_id: uuid.UUID
    units: int
    request_id: str
    transaction_id: uuid.UUID


@dataclass
class RetryCount:
    """How many times a request's transaction was retried (read by the request log)."""

    retries: int = 0


@dataclass(frozen=True, slots=True)
class AuthorizationRecord:
    """An authorization row; ``today`` is the database's date when the row was read."""

    id: uuid.UUID
    organization_id: uuid.UUID
    patient_id: uuid.UUID
    service_code: str
    total_units: int
    used_units: int
    scheduled_units: int
    status: str
    start_date: dt.date
    end_date: dt.date
    today: dt.date | None = None


ChangeResult = AuthorizationRecord | ProblemError
AUTHORIZATION_ROW = class_row(AuthorizationRecord)


# -- SQL -----------------------------------------------------------------------------------
SELECT_AUTHORIZATION: LiteralString = (
    f"SELECT {AUTHORIZATION_COLUMNS}, CURRENT_DATE AS today FROM authorizations "
    "WHERE id = %(authorization_id)s AND organization_id = %(organization_id)s"
)
SELECT_AUTHORIZATION_FOR_UPDATE: LiteralString = SELECT_AUTHORIZATION + " FOR UPDATE"

# How each operation moves the counters, relative to the row's current value.
RELATIVE_CHANGES = {
    Operation.RESERVE: "scheduled_units = scheduled_units + %(units)s",
    Operation.RELEASE: "scheduled_units = scheduled_units - %(units)s",
    Operation.CONSUME: (
        "scheduled_units = scheduled_units - %(units)s, used_units = used_units + %(units)s"
    ),
}
# When an operation is allowed, as SQL: the same rules `refusal` applies in Python.
ALLOWED_CONDITIONS = {
    Operation.RESERVE: (
        "used_units + scheduled_units + %(units)s <= total_units "
        "AND CURRENT_DATE BETWEEN start_date AND end_date"
    ),
    Operation.RELEASE: "scheduled_units >= %(units)s",
    Operation.CONSUME: "scheduled_units >= %(units)s",
}
# The unsafe control writes values computed in Python: a lost update waiting to happen.
ABSOLUTE_CHANGE = "scheduled_units = %(scheduled_units)s, used_units = %(used_units)s"


def _update_with_ledger(assignments: str, condition: str = "") -> LiteralString:
    """Build one statement that updates the counters and writes the ledger row."""
    statement = (
        "WITH changed AS ("
        f" UPDATE authorizations SET {assignments}, updated_at = now()"
        " WHERE id = %(authorization_id)s AND organization_id = %(organization_id)s"
        f"{' AND ' + condition if condition else ''}"
        f" RETURNING {AUTHORIZATION_COLUMNS}"
        "), ledger AS ("
        " INSERT INTO unit_transactions"
        " (id, authorization_id, organization_id, practitioner_id, kind, units, request_id)"
        " SELECT %(transaction_id)s, id, organization_id, %(practitioner_id)s, %(kind)s,"
        " %(units)s, %(request_id)s FROM changed"
        f") SELECT {AUTHORIZATION_COLUMNS} FROM changed"
    )
    return statement  # type: ignore[return-value]  # built only from this module's constants


UPDATE_RELATIVE = {op: _update_with_ledger(RELATIVE_CHANGES[op]) for op in Operation}
UPDATE_IF_ALLOWED = {
    op: _update_with_ledger(
        RELATIVE_CHANGES[op], f"status = '{ACTIVE}' AND {ALLOWED_CONDITIONS[op]}"
    )
    for op in Operation
}
UPDATE_ABSOLUTE = _update_with_ledger(ABSOLUTE_CHANGE)


# -- queries -------------------------------------------------------------------------------
async def fetch_authorization(
    connection: psycopg.AsyncConnection, query: LiteralString, parameters: dict[str, Any]
) -> AuthorizationRecord | None:
    """Run a query that returns at most one authorization row."""
    async with connection.cursor(row_factory=AUTHORIZATION_ROW) as cursor:
        await cursor.execute(query, parameters)
        return await cursor.fetchone()


async def select_authorization(
    connection: psycopg.AsyncConnection,
    authorization_id: uuid.UUID,
    organization_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> AuthorizationRecord | None:
    """Return the organization's authorization (with the database's today), or None."""
    return await fetch_authorization(
        connection,
        SELECT_AUTHORIZATION_FOR_UPDATE if for_update else SELECT_AUTHORIZATION,
        {"authorization_id": authorization_id, "organization_id": organization_id},
    )


def refusal(
    row: AuthorizationRecord | None, operation: Operation, units: int
) -> ProblemError | None:
    """Return why ``operation`` may not change ``row`` by ``units``, or None if it may."""
    if row is None:
        return not_found()
    if row.status != ACTIVE:
        return ProblemError(409, AUTHORIZATION_INACTIVE, f"authorization is {row.status}")
    if operation is Operation.RESERVE:
        if row.today is None or not row.start_date <= row.today <= row.end_date:
            return ProblemError(
                409,
                AUTHORIZATION_INACTIVE,
                f"authorization is valid from {row.start_date} to {row.end_date}",
            )
        available = row.total_units - row.used_units - row.scheduled_units
        if units > available:
            return ProblemError(
                409, INSUFFICIENT_UNITS, f"{units} units requested, {available} available"
            )
    elif units > row.scheduled_units:
        return ProblemError(
            409, INSUFFICIENT_UNITS, f"{units} units requested, {row.scheduled_units} scheduled"
        )
    return None


def _parameters(change: UnitChange) -> dict[str, Any]:
    return {
        "authorization_id": change.authorization_id,
        "organization_id": change.organization_id,
        "practitioner_id": change.practitioner_id,
        "transaction_id": change.transaction_id,
        "kind": change.operation.value,
        "units": change.units,
        "request_id": change.request_id,
    }


async def update_with_ledger(
    connection: psycopg.AsyncConnection, statement: LiteralString, parameters: dict[str, Any]
) -> AuthorizationRecord | None:
    """Run one counter-and-ledger statement; return the changed row, or None if none matched."""
    return await fetch_authorization(connection, statement, parameters)


# -- strategies ----------------------------------------------------------------------------
async def change_units_serializable(
    connection: psycopg.AsyncConnection, change: UnitChange
) -> ChangeResult:
    """Read, check and write in a SERIALIZABLE transaction (the caller retries 40001)."""
    row = await select_authorization(connection, change.authorization_id, change.organization_id)
    return await _write_unless_refused(connection, change, row)


async def change_units_for_update(
    connection: psycopg.AsyncConnection, change: UnitChange
) -> ChangeResult:
    """Lock the row with SELECT ... FOR UPDATE, check, then write (READ COMMITTED)."""
    row = await select_authorization(
        connection, change.authorization_id, change.organization_id, for_update=True
    )
    return await _write_unless_refused(connection, change, row)


async def change_units_atomic(
    connection: psycopg.AsyncConnection, change: UnitChange
) -> ChangeResult:
    """Write with one conditional UPDATE; when it matches nothing, read once to say why."""
    changed = await update_with_ledger(
        connection, UPDATE_IF_ALLOWED[change.operation], _parameters(change)
    )
    if changed is not None:
        return changed
    row = await select_authorization(connection, change.authorization_id, change.organization_id)
    # The row may have changed since the UPDATE missed; the miss itself was a lack of units.
    return refusal(row, change.operation, change.units) or ProblemError(
        409, INSUFFICIENT_UNITS, f"{change.units} units requested, not enough left"
    )


async def change_units_unsafe(
    connection: psycopg.AsyncConnection, change: UnitChange, delay_s: float
) -> ChangeResult:
    """Read without a lock, wait, then write values computed in Python: CAN OVERBOOK."""
    row = await select_authorization(connection, change.authorization_id, change.organization_id)
    refused = refusal(row, change.operation, change.units)
    if refused is not None:
        return refused
    assert row is not None
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    scheduled, used = row.scheduled_units, row.used_units
    if change.operation is Operation.RESERVE:
        scheduled += change.units
    elif change.operation is Operation.RELEASE:
        scheduled -= change.units
    else:
        scheduled, used = scheduled - change.units, used + change.units
    parameters = _parameters(change) | {"scheduled_units": scheduled, "used_units": used}
    changed = await update_with_ledger(connection, UPDATE_ABSOLUTE, parameters)
    return changed if changed is not None else not_found()


async def _write_unless_refused(
    connection: psycopg.AsyncConnection, change: UnitChange, row: AuthorizationRecord | None
) -> ChangeResult:
    refused = refusal(row, change.operation, change.units)
    if refused is not None:
        return refused
    changed = await update_with_ledger(
        connection, UPDATE_RELATIVE[change.operation], _parameters(change)
    )
    return changed if changed is not None else not_found()


# -- running them --------------------------------------------------------------------------
def sqlstate(error: BaseException) -> str | None:
    """Return the SQLSTATE behind a psycopg (or SQLAlchemy-wrapped) error, if any."""
    original = getattr(error, "orig", error)
    return getattr(original, "sqlstate", None)


def backoff_s(attempt: int) -> float:
    """Return a full-jitter exponential backoff for retry number ``attempt`` (1-based)."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


async def run_transaction(
    database: Database,
    work: Callable[[psycopg.AsyncConnection], Awaitable[T | ProblemError]],
    *,
    max_retries: int,
    count: RetryCount,
) -> T:
    """Run ``work`` in a transaction, retrying 40001/40P01; raise a refusal after COMMIT."""
    while True:
        try:
            async with database.transaction() as connection:
                result = await work(connection)
        except psycopg.Error as error:
            state = sqlstate(error)
            if state == FOREIGN_KEY_VIOLATION:
                # Only the ledger's practitioner can be missing: the token names a stranger.
                raise unauthorized("the token's practitioner does not exist") from error
            if state not in RETRYABLE_SQLSTATES:
                raise
            if count.retries >= max_retries:
                metrics.SERIALIZATION_CONFLICTS.inc()
                raise ProblemError(
                    409,
                    SERIALIZATION_CONFLICT,
                    f"concurrent updates still conflicted after {count.retries} retries",
                ) from error
            count.retries += 1
            metrics.SERIALIZATION_RETRIES.inc()
            await asyncio.sleep(backoff_s(count.retries))
            continue
        if isinstance(result, ProblemError):
            raise result
        return result


def strategy_for(
    concurrency: str, unsafe_delay_s: float
) -> Callable[[psycopg.AsyncConnection, UnitChange], Awaitable[ChangeResult]]:
    """Return the change function of a concurrency strategy."""
    if concurrency == "serializable":
        return change_units_serializable
    if concurrency == "for_update":
        return change_units_for_update
    if concurrency == "atomic":
        return change_units_atomic
    if concurrency == "unsafe":
        return lambda connection, change: change_units_unsafe(connection, change, unsafe_delay_s)
    raise ValueError(f"unknown concurrency strategy {concurrency!r}")


async def change_units(
    database: Database, change: UnitChange, count: RetryCount
) -> AuthorizationRecord:
    """Apply ``change`` with the configured strategy; return the authorization as changed."""
    settings = database.settings
    strategy = strategy_for(settings.concurrency, settings.unsafe_delay_ms / 1000)
    return await run_transaction(
        database,
        lambda connection: strategy(connection, change),
        max_retries=settings.max_retries,
        count=count,
    )


async def read_authorization(
    database: Database, authorization_id: uuid.UUID, organization_id: uuid.UUID, count: RetryCount
) -> AuthorizationRecord:
    """Return the organization's authorization or raise the 404."""

    async def work(connection: psycopg.AsyncConnection) -> AuthorizationRecord | ProblemError:
        row = await select_authorization(connection, authorization_id, organization_id)
        return row if row is not None else not_found()

    return await run_transaction(
        database, work, max_retries=database.settings.max_retries, count=count
    )


def authorization_json(row: AuthorizationRecord) -> dict[str, Any]:
    """Render an authorization row in the API's shape."""
    return {
        "id": str(row.id),
        "organization_id": str(row.organization_id),
        "patient_id": str(row.patient_id),
        "service_code": row.service_code,
        "total_units": row.total_units,
        "used_units": row.used_units,
        "scheduled_units": row.scheduled_units,
        "available_units": row.total_units - row.used_units - row.scheduled_units,
        "status": row.status,
        "start_date": row.start_date.isoformat(),
        "end_date": row.end_date.isoformat(),
    }
