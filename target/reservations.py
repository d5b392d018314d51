"""Reserve, release and consume units: run a change's statement, retry what may be retried.

The statements live in `reservation_sql` (one round trip per change, each its own
transaction), the rules in `operations`. Here: the unsafe control's read-wait-write, the retry
on 40001/40P01, and the answer to a repeated Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import random
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.rows import class_row

from target import metrics
from target.database import Database
from target.idempotency import StoredOutcome, key_in_use, replay
from target.operations import (
    AuthorizationRecord,
    Operation,
    UnitChange,
    refusal,
    refusal_after_miss,
)
from target.problems import SERIALIZATION_CONFLICT, ProblemError, not_found, unauthorized
from target.reservation_sql import CHANGE_STATEMENTS, SELECT_AUTHORIZATION, SELECT_STORED_KEY

# SQLSTATEs worth retrying: serialization_failure and deadlock_detected.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
FOREIGN_KEY_VIOLATION = "23503"
BACKOFF_BASE_S = 0.002
BACKOFF_CAP_S = 0.100

AUTHORIZATION_ROW = class_row(AuthorizationRecord)
_CURSORS: weakref.WeakKeyDictionary[psycopg.AsyncConnection, psycopg.AsyncCursor[Any]] = (
    weakref.WeakKeyDictionary()
)
T = TypeVar("T")


@dataclass
class RetryCount:
    """How many times a request's transaction was retried (read by the request log)."""

    retries: int = 0


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    """A change that was applied: now, or by the first request with the same key."""

    transaction_id: uuid.UUID
    authorization: AuthorizationRecord
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class _StatementResult:
    key_held: bool
    applied: bool
    row: AuthorizationRecord | None


# -- one statement -------------------------------------------------------------------------
async def select_authorization(
    connection: psycopg.AsyncConnection, authorization_id: uuid.UUID, organization_id: uuid.UUID
) -> AuthorizationRecord | None:
    """Return the organization's authorization (with the database's today), or None."""
    async with connection.cursor(row_factory=AUTHORIZATION_ROW) as cursor:
        await cursor.execute(
            SELECT_AUTHORIZATION,
            {"authorization_id": authorization_id, "organization_id": organization_id},
        )
        return await cursor.fetchone()


async def select_stored_key(
    connection: psycopg.AsyncConnection, organization_id: uuid.UUID, key: str
) -> StoredOutcome | None:
    """Return what `idempotency_keys` holds for the organization's key, or None."""
    async with connection.cursor(row_factory=class_row(StoredOutcome)) as cursor:
        await cursor.execute(
            SELECT_STORED_KEY, {"organization_id": organization_id, "idempotency_key": key}
        )
        return await cursor.fetchone()


def statement_parameters(change: UnitChange) -> dict[str, Any]:
    return {
        "authorization_id": change.authorization_id,
        "organization_id": change.organization_id,
        "practitioner_id": change.practitioner_id,
        "transaction_id": change.transaction_id,
        "kind": change.operation.value,
        "units": change.units,
        "request_id": change.request_id,
        "idempotency_key": change.idempotency_key,
        "fingerprint": change.fingerprint(),
    }


async def run_change_statement(
    connection: psycopg.AsyncConnection,
    strategy: str,
    change: UnitChange,
    *,
    keyed: bool,
    absolute: tuple[int, int] | None = None,
) -> _StatementResult:
    """Run the change's one statement; ``absolute`` is the unsafe control's (scheduled, used)."""
    parameters = statement_parameters(change)
    if absolute is not None:
        parameters["scheduled_units"], parameters["used_units"] = absolute
    cursor = reusable_cursor(connection)
    await cursor.execute(CHANGE_STATEMENTS[strategy, change.operation, keyed], parameters)
    result = await cursor.fetchone()
    if result is None:
        # Only atomic's unkeyed statement returns nothing: it matched no row. Say why.
        row = await select_authorization(
            connection, change.authorization_id, change.organization_id
        )
        return _StatementResult(key_held=True, applied=False, row=row)
    # Columns: key_held, applied, then the authorization's (AUTHORIZATION_COLUMNS, today).
    key_held, applied, *columns = result
    row = AuthorizationRecord(*columns) if columns[0] is not None else None
    return _StatementResult(key_held=bool(key_held), applied=bool(applied), row=row)


def reusable_cursor(connection: psycopg.AsyncConnection) -> psycopg.AsyncCursor[Any]:
    """Return the connection's own tuple-row cursor, made on first use.

    A new cursor per statement (its adapters map, and a dict row factory that decodes the
    column names again for every row) cost about 70 µs of the ~190 µs psycopg spends on a
    change statement; connections serve one request at a time, so one cursor each suffices.
    """
    cursor = _CURSORS.get(connection)
    if cursor is None or cursor.closed:
        cursor = _CURSORS[connection] = connection.cursor()
    return cursor


def _absolute_counters(row: AuthorizationRecord, change: UnitChange) -> tuple[int, int]:
    scheduled, used = row.scheduled_units, row.used_units
    if change.operation is Operation.RESERVE:
        return scheduled + change.units, used
    if change.operation is Operation.RELEASE:
        return scheduled - change.units, used
    return scheduled - change.units, used + change.units


async def attempt_change(
    connection: psycopg.AsyncConnection,
    strategy: str,
    change: UnitChange,
    *,
    keyed: bool,
    unsafe_delay_s: float,
) -> ChangeOutcome:
    """Apply ``change`` once; raise its refusal, or psycopg's error for the caller to judge."""
    absolute = None
    if strategy == "unsafe":
        # Read without a lock, wait, then write values computed here: CAN OVERBOOK.
        before = await select_authorization(
            connection, change.authorization_id, change.organization_id
        )
        refused = refusal(before, change.operation, change.units)
        if refused is not None:
            raise refused
        assert before is not None
        if unsafe_delay_s > 0:
            await asyncio.sleep(unsafe_delay_s)
        absolute = _absolute_counters(before, change)
    result = await run_change_statement(
        connection, strategy, change, keyed=keyed, absolute=absolute
    )
    if not result.key_held:
        raise key_in_use()
    if result.row is None:
        raise not_found()
    if not result.applied:
        raise refusal_after_miss(result.row, change.operation, change.units)
    return ChangeOutcome(change.transaction_id, result.row)


# -- retries -------------------------------------------------------------------------------
def sqlstate(error: BaseException) -> str | None:
    """Return the SQLSTATE behind a psycopg (or SQLAlchemy-wrapped) error, if any."""
    original = getattr(error, "orig", error)
    return getattr(original, "sqlstate", None)


def backoff_s(attempt: int) -> float:
    """Return a full-jitter exponential backoff for retry number ``attempt`` (1-based)."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


async def run_with_retries(
    database: Database,
    work: Callable[[psycopg.AsyncConnection], Awaitable[T]],
    count: RetryCount,
) -> T:
    """Run ``work`` on a pooled connection, retrying 40001/40P01 with backoff."""
    max_retries = database.settings.max_retries
    while True:
        try:
            async with database.connect() as connection:
                return await work(connection)
        except psycopg.Error as error:
            state = sqlstate(error)
            if state == FOREIGN_KEY_VIOLATION:
                # Only the token's practitioner or organization can be missing: a stranger.
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


async def change_units(database: Database, change: UnitChange, count: RetryCount) -> ChangeOutcome:
    """Apply ``change`` with the configured strategy; answer a stored key with its outcome."""
    settings = database.settings
    keyed = change.idempotency_key is not None and settings.idempotency
    unsafe_delay_s = settings.unsafe_delay_ms / 1000
    await database.injected_delays.before_change()

    async def work(connection: psycopg.AsyncConnection) -> ChangeOutcome:
        try:
            return await attempt_change(
                connection, settings.concurrency, change, keyed=keyed, unsafe_delay_s=unsafe_delay_s
            )
        except psycopg.errors.UniqueViolation:
            # Only the key can collide: an earlier request with it has committed its outcome.
            if not keyed or change.idempotency_key is None:
                raise
            stored = await select_stored_key(
                connection, change.organization_id, change.idempotency_key
            )
            if stored is None:
                raise
            transaction_id, row = replay(stored, change)
            return ChangeOutcome(transaction_id, row, replayed=True)

    return await run_with_retries(database, work, count)


async def read_authorization(
    database: Database, authorization_id: uuid.UUID, organization_id: uuid.UUID, count: RetryCount
) -> AuthorizationRecord:
    """Return the organization's authorization or raise the 404."""

    async def work(connection: psycopg.AsyncConnection) -> AuthorizationRecord | None:
        return await select_authorization(connection, authorization_id, organization_id)

    row = await run_with_retries(database, work, count)
    if row is None:
        raise not_found()
    return row
