"""List-append transactions: Elle's workload, run at the service's isolation level.

A transaction is a short list of micro-operations on an organization's keys, run in order:
`append k v` adds v at the end of k's list, `read k` returns k's whole list. Each key is one
row of `append_lists` whose `value` (a bigint[]) is the whole list.

Why the list a read returns is in version order: an append writes
`value = value || ARRAY[v]` on the key's row, so it writes a new version of that row whose
array is the previous version's array with v added. PostgreSQL applies writes to one row one
at a time (the second writer waits for the first's row lock, then writes on top of the version
the first committed, or aborts with 40001 at REPEATABLE READ and SERIALIZABLE), so the
row's versions form a chain and each version's array extends the one before. A read sees one
version; its array lists the appends of every version up to that one, in the order they were
written. The order of the elements is therefore the order of the row's versions, which is
what Elle infers the write-write dependencies from.

The first append to a key inserts the row: `INSERT ... ON CONFLICT DO UPDATE` does that and
appends when the row is there. Two concurrent first appends: at READ COMMITTED the second
waits for the first's insert and then appends to the committed row; at REPEATABLE READ and
SERIALIZABLE it fails with 40001 (the row it conflicts with is not in its snapshot) and the
whole transaction runs again (`run_with_retries`).

Shapes: under `interactive` the transaction is an SQLAlchemy unit of work (`async with
session.begin():`), one round trip per micro-operation, as an ORM application would run it.
Under `statement` it is BEGIN, one statement per micro-operation and COMMIT sent in one
psycopg pipeline: a single round trip. One SQL statement cannot do it: the parts of one
statement share a snapshot, so a read would not see an append earlier in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import psycopg
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from target.api_types import AppendOp, ListKey, ReadOp, ReadResultOp
from target.database import Database
from target.models import AppendList
from target.reservations import RetryCount, run_with_retries

MicroOp = AppendOp | ReadOp
CompletedOp = AppendOp | ReadResultOp

APPEND_SQL = (
    "INSERT INTO append_lists (organization_id, key, value) "
    "VALUES (%(organization_id)s, %(key)s, ARRAY[%(value)s::bigint]) "
    "ON CONFLICT (organization_id, key) DO UPDATE SET value = append_lists.value || EXCLUDED.value"
)
READ_SQL = (
    "SELECT value FROM append_lists WHERE organization_id = %(organization_id)s AND key = %(key)s"
)


@dataclass(frozen=True, slots=True)
class ListTransaction:
    """One request's micro-operations, for one organization."""

    organization_id: uuid.UUID
    ops: Sequence[MicroOp]
    transaction_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class ListTransactionOutcome:
    """The committed transaction's micro-operations, reads filled in."""

    transaction_id: uuid.UUID
    ops: list[CompletedOp]


def stored_key(key: ListKey) -> str:
    """Return a key as stored: its JSON text, so that 3 and "3" are different rows."""
    return msgspec.json.encode(key).decode()


async def run_list_transaction(
    database: Database, transaction: ListTransaction, count: RetryCount
) -> ListTransactionOutcome:
    """Run the micro-operations in one transaction; retry it whole on 40001/40P01."""

    async def unit_of_work() -> ListTransactionOutcome:
        async with database.session() as session:
            return await list_transaction_in_session(session, transaction)

    async def pipelined() -> ListTransactionOutcome:
        async with database.connect() as connection:
            return await list_transaction_pipelined(connection, transaction)

    if database.settings.transaction_shape == "statement":
        return await run_with_retries(database, pipelined, count)
    return await run_with_retries(database, unit_of_work, count)


async def list_transaction_in_session(
    session: AsyncSession, transaction: ListTransaction
) -> ListTransactionOutcome:
    """Run the micro-operations as one unit of work on ``session``."""
    completed: list[CompletedOp] = []
    async with session.begin():
        for op in transaction.ops:
            if isinstance(op, AppendOp):
                await update_append_list(session, transaction.organization_id, op)
                completed.append(op)
            else:
                values = await select_append_list(session, transaction.organization_id, op.key)
                completed.append(ReadResultOp(op.key, values))
    return ListTransactionOutcome(transaction.transaction_id, completed)


async def update_append_list(
    session: AsyncSession, organization_id: uuid.UUID, op: AppendOp
) -> None:
    """Append ``op.value`` to the key's list, creating the row on the key's first append."""
    statement = insert(AppendList).values(
        organization_id=organization_id, key=stored_key(op.key), value=[op.value]
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[AppendList.organization_id, AppendList.key],
            set_={"value": AppendList.value.concat(statement.excluded.value)},
        )
    )


async def select_append_list(
    session: AsyncSession, organization_id: uuid.UUID, key: ListKey
) -> list[int]:
    """Return the key's whole list in append order ([] for a key never appended to)."""
    values = await session.scalar(
        select(AppendList.value).where(
            AppendList.organization_id == organization_id, AppendList.key == stored_key(key)
        )
    )
    return list(values or [])


async def list_transaction_pipelined(
    connection: psycopg.AsyncConnection, transaction: ListTransaction
) -> ListTransactionOutcome:
    """Run the micro-operations between BEGIN and COMMIT, all sent in one round trip."""
    cursors: list[psycopg.AsyncCursor[tuple[list[int]]] | None] = []
    async with connection.pipeline(), connection.transaction():
        for op in transaction.ops:
            parameters = {
                "organization_id": transaction.organization_id,
                "key": stored_key(op.key),
            }
            if isinstance(op, AppendOp):
                await connection.execute(APPEND_SQL, {**parameters, "value": op.value})
                cursors.append(None)
            else:
                cursors.append(await connection.execute(READ_SQL, parameters))
    completed: list[CompletedOp] = []
    for op, cursor in zip(transaction.ops, cursors, strict=True):
        if cursor is None:
            completed.append(op)  # type: ignore[arg-type]
            continue
        row = await cursor.fetchone()
        completed.append(ReadResultOp(op.key, list(row[0]) if row else []))
    return ListTransactionOutcome(transaction.transaction_id, completed)
