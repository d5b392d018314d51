"""Reserve, release and consume units in the configured transaction shape; retry 40001/40P01.

Under the `interactive` shape (the default, what the team's ORM application does) a change is
a unit of work in `interactive_changes`. Under the `statement` shape it is one statement from
`reservation_sql` (one round trip, its own transaction); here the statement shape's unsafe
read-wait-write and its answer to a repeated Idempotency-Key. Either way a serialization
failure or deadlock runs the whole unit of work again, with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import sqlalchemy.exc
from psycopg.rows import class_row

from retry_backoff import full_jitter_delay_s
from target import metrics
from target.database import Database
from target.idempotency import StoredOutcome, key_in_use, replay
from target.interactive_changes import (
    change_in_transaction,
    select_authorization_record,
)
from target.interactive_changes import select_stored_key as select_stored_key_in_session
from target.operations import (
    AuthorizationRecord,
    ChangeOutcome,
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
UNIQUE_VIOLATION = "23505"
# The n-th retry waits uniform(0, min(cap, base * 2^(n-1))): retry_backoff.full_jitter_delay_s.
BACKOFF_BASE_S = 0.004
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


def backoff_s(retry: int) -> float:
    """Return the pause before retry number ``retry`` (1-based): full jitter, capped."""
    return full_jitter_delay_s(retry, base_s=BACKOFF_BASE_S, cap_s=BACKOFF_CAP_S)


async def run_with_retries(
    database: Database, work: Callable[[], Awaitable[T]], count: RetryCount
) -> T:
    """Run ``work``; on 40001/40P01 run it whole again with backoff, a bounded number of times."""
    max_retries = database.settings.max_retries
    while True:
        try:
            return await work()
        except (psycopg.Error, sqlalchemy.exc.DBAPIError) as error:
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
    """Apply ``change`` in the configured shape and strategy; a stored key gets its outcome."""
    settings = database.settings
    keyed = change.idempotency_key is not None and settings.idempotency
    unsafe_delay_s = settings.unsafe_delay_ms / 1000
    # `constraint` guards units with the authorization's row lock, as for_update does.
    strategy = "for_update" if settings.concurrency == "constraint" else settings.concurrency
    await database.injected_delays.before_change()

    async def unit_of_work() -> ChangeOutcome:
        try:
            async with database.session() as session:
                return await change_in_transaction(
                    session, strategy, change, keyed=keyed, unsafe_delay_s=unsafe_delay_s
                )
        except sqlalchemy.exc.IntegrityError as error:
            if sqlstate(error) != UNIQUE_VIOLATION:
                raise
            # Only the key can collide: a request with it committed after this one looked.
            return await replay_stored_key(database, change, error)

    async def one_statement() -> ChangeOutcome:
        async with database.connect() as connection:
            return await apply_statement(connection, strategy, change, keyed, unsafe_delay_s)

    if settings.transaction_shape == "statement":
        return await run_with_retries(database, one_statement, count)
    return await run_with_retries(database, unit_of_work, count)


async def replay_stored_key(
    database: Database, change: UnitChange, collision: Exception
) -> ChangeOutcome:
    """Answer a change whose key another request stored meanwhile with that request's outcome."""
    if change.idempotency_key is None:
        raise collision
    async with database.session() as session, session.begin():
        stored = await select_stored_key_in_session(
            session, change.organization_id, change.idempotency_key
        )
    if stored is None:
        raise collision
    transaction_id, row = replay(stored, change)
    return ChangeOutcome(transaction_id, row, replayed=True)


async def apply_statement(
    connection: psycopg.AsyncConnection,
    strategy: str,
    change: UnitChange,
    keyed: bool,
    unsafe_delay_s: float,
) -> ChangeOutcome:
    """Apply ``change`` as one statement; a key stored meanwhile is answered as stored."""
    try:
        return await attempt_change(
            connection, strategy, change, keyed=keyed, unsafe_delay_s=unsafe_delay_s
        )
    except psycopg.errors.UniqueViolation:
        # Only the key can collide: an earlier request with it has committed its outcome.
        if not keyed or change.idempotency_key is None:
            raise
        stored = await select_stored_key(connection, change.organization_id, change.idempotency_key)
        if stored is None:
            raise
        transaction_id, row = replay(stored, change)
        return ChangeOutcome(transaction_id, row, replayed=True)


async def read_authorization(
    database: Database, authorization_id: uuid.UUID, organization_id: uuid.UUID, count: RetryCount
) -> AuthorizationRecord:
    """Return the organization's authorization or raise the 404."""

    async def in_session() -> AuthorizationRecord | None:
        async with database.session() as session, session.begin():
            return await select_authorization_record(session, authorization_id, organization_id)

    async def on_connection() -> AuthorizationRecord | None:
        async with database.connect() as connection:
            return await select_authorization(connection, authorization_id, organization_id)

    statement_shape = database.settings.transaction_shape == "statement"
    row = await run_with_retries(database, on_connection if statement_shape else in_session, count)
    if row is None:
        raise not_found()
    return row
