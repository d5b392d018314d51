"""Reserve, release and consume as the team's ORM application runs them: one unit of work.

A change is an interactive transaction on an `AsyncSession`: BEGIN, read the authorization
through the ORM, apply the rules in Python, write the new counters and the ledger row, COMMIT.
What keeps it correct is the strategy, and nothing else:

- serializable: no lock. The isolation level alone must stop two transactions from both
  deciding on the same stale read (SERIALIZABLE and REPEATABLE READ abort the second writer
  with 40001; READ COMMITTED lets it overwrite the first: a lost update).
- for_update, constraint: the read locks the row (SELECT ... FOR UPDATE), so the decision is
  made on the latest counters.
- atomic: the check sits in a conditional UPDATE's WHERE with relative increments.
- unsafe: the planted control. It reads, waits TARGET_UNSAFE_DELAY_MS, then writes.

A keyed change first takes a transaction-scoped advisory lock on its key (a repeat still in
flight fails to take it: 409 idempotency_key_in_use) and looks for a stored outcome; it stores
its own outcome, refusals included, in the same transaction as its ledger row.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from target.idempotency import StoredOutcome, image_of, key_in_use, replay
from target.models import Authorization, IdempotencyKey, UnitTransaction
from target.operations import (
    ACTIVE,
    AuthorizationRecord,
    ChangeOutcome,
    Operation,
    UnitChange,
    refusal,
    refusal_after_miss,
)
from target.problems import ProblemError, not_found

LOCKING_STRATEGIES = frozenset({"for_update", "constraint"})
CLAIM_KEY = text(
    "SELECT pg_try_advisory_xact_lock("
    "hashtextextended(CAST(:organization_id AS text) || '/' || :idempotency_key, 0)) AS held"
)


async def change_in_transaction(
    session: AsyncSession,
    strategy: str,
    change: UnitChange,
    *,
    keyed: bool,
    unsafe_delay_s: float,
) -> ChangeOutcome:
    """Apply ``change`` in one interactive transaction; raise its refusal after the COMMIT."""
    refused: ProblemError | None = None
    async with session.begin():
        if keyed:
            stored = await claim_key(session, change)
            if stored is not None:
                transaction_id, row = replay(stored, change)
                return ChangeOutcome(transaction_id, row, replayed=True)
        if strategy == "atomic":
            after = await update_if_allowed(session, change)
            before = after or await select_authorization_record(
                session, change.authorization_id, change.organization_id
            )
            if after is None:
                refused = refusal_after_miss(before, change.operation, change.units)
        else:
            authorization, today = await select_authorization(
                session,
                change.authorization_id,
                change.organization_id,
                lock=strategy in LOCKING_STRATEGIES,
            )
            before = record_of(authorization, today)
            refused = refusal(before, change.operation, change.units)
            if refused is None and authorization is not None:
                if strategy == "unsafe" and unsafe_delay_s > 0:
                    await asyncio.sleep(unsafe_delay_s)  # widen the lost-update window
                apply_counters(authorization, change)
            after = record_of(authorization, today) if refused is None else None
        if before is None:
            raise not_found()
        if refused is None:
            session.add(ledger_row(change))
        if keyed:
            session.add(stored_outcome(change, after or before, applied=refused is None))
    if refused is not None:
        raise refused
    assert after is not None
    return ChangeOutcome(change.transaction_id, after)


async def claim_key(session: AsyncSession, change: UnitChange) -> StoredOutcome | None:
    """Lock the change's key for this transaction and return its stored outcome, if any."""
    held = await session.scalar(
        CLAIM_KEY,
        {"organization_id": str(change.organization_id), "idempotency_key": change.idempotency_key},
    )
    if not held:
        raise key_in_use()
    return await select_stored_key(session, change.organization_id, change.idempotency_key)


async def select_stored_key(
    session: AsyncSession, organization_id: uuid.UUID, key: str | None
) -> StoredOutcome | None:
    """Return what `idempotency_keys` holds for the organization's key, or None."""
    stored = await session.get(IdempotencyKey, (organization_id, key))
    if stored is None:
        return None
    return StoredOutcome(stored.fingerprint, stored.applied, stored.image, stored.transaction_id)


async def select_authorization(
    session: AsyncSession,
    authorization_id: uuid.UUID,
    organization_id: uuid.UUID,
    *,
    lock: bool,
) -> tuple[Authorization | None, dt.date | None]:
    """Read the organization's authorization (locked when asked) and the database's today."""
    query = select(Authorization, func.current_date()).where(
        Authorization.id == authorization_id,
        Authorization.organization_id == organization_id,
    )
    if lock:
        query = query.with_for_update(of=Authorization)
    found = (await session.execute(query)).first()
    return (None, None) if found is None else (found[0], found[1])


async def select_authorization_record(
    session: AsyncSession, authorization_id: uuid.UUID, organization_id: uuid.UUID
) -> AuthorizationRecord | None:
    """Read the organization's authorization as the record the API renders, or None."""
    authorization, today = await select_authorization(
        session, authorization_id, organization_id, lock=False
    )
    return record_of(authorization, today)


async def update_if_allowed(
    session: AsyncSession, change: UnitChange
) -> AuthorizationRecord | None:
    """Apply the change with relative increments only where the rules allow it (atomic)."""
    table = Authorization
    units = change.units
    allowed = [table.status == ACTIVE]
    if change.operation is Operation.RESERVE:
        allowed += [
            table.used_units + table.scheduled_units + units <= table.total_units,
            func.current_date().between(table.start_date, table.end_date),
        ]
        values: dict[str, Any] = {"scheduled_units": table.scheduled_units + units}
    else:
        allowed.append(table.scheduled_units >= units)
        values = {"scheduled_units": table.scheduled_units - units}
        if change.operation is Operation.CONSUME:
            values["used_units"] = table.used_units + units
    statement = (
        update(table)
        .where(
            table.id == change.authorization_id,
            table.organization_id == change.organization_id,
            *allowed,
        )
        .values(**values, updated_at=func.now())
        .returning(table, func.current_date())
        .execution_options(synchronize_session=False)
    )
    found = (await session.execute(statement)).first()
    return None if found is None else record_of(found[0], found[1])


def apply_counters(authorization: Authorization, change: UnitChange) -> None:
    """Set the new counters on the ORM object: the flush writes them as absolute values."""
    if change.operation is Operation.RESERVE:
        authorization.scheduled_units += change.units
    else:
        authorization.scheduled_units -= change.units
        if change.operation is Operation.CONSUME:
            authorization.used_units += change.units
    authorization.updated_at = func.now()  # type: ignore[assignment]


def record_of(
    authorization: Authorization | None, today: dt.date | None
) -> AuthorizationRecord | None:
    """Copy an ORM authorization into the record the API renders."""
    if authorization is None:
        return None
    return AuthorizationRecord(
        id=authorization.id,
        organization_id=authorization.organization_id,
        patient_id=authorization.patient_id,
        service_code=authorization.service_code,
        total_units=authorization.total_units,
        used_units=authorization.used_units,
        scheduled_units=authorization.scheduled_units,
        status=authorization.status,
        start_date=authorization.start_date,
        end_date=authorization.end_date,
        today=today,
    )


def ledger_row(change: UnitChange) -> UnitTransaction:
    """Build the change's ledger row."""
    return UnitTransaction(
        id=change.transaction_id,
        authorization_id=change.authorization_id,
        organization_id=change.organization_id,
        practitioner_id=change.practitioner_id,
        kind=change.operation.value,
        units=change.units,
        request_id=change.request_id,
        idempotency_key=change.idempotency_key,
    )


def stored_outcome(
    change: UnitChange, row: AuthorizationRecord, *, applied: bool
) -> IdempotencyKey:
    """Build the key's stored outcome: what a repeat of the request must be answered with."""
    return IdempotencyKey(
        organization_id=change.organization_id,
        key=change.idempotency_key,
        fingerprint=change.fingerprint(),
        applied=applied,
        image=image_of(row),
        transaction_id=change.transaction_id if applied else None,
    )
