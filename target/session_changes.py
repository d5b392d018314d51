"""Run bookings and status changes of sessions with the service's strategy and retries."""

from __future__ import annotations

import sqlalchemy.exc

from target.database import Database
from target.reservations import UNIQUE_VIOLATION, RetryCount, run_with_retries, sqlstate
from target.scheduling import (
    Booking,
    SessionOutcome,
    StatusChange,
    book_in_transaction,
    change_status_in_transaction,
    replay_booking,
    select_session_by_key,
)


async def book_session(database: Database, booking: Booking, count: RetryCount) -> SessionOutcome:
    """Book ``booking``; a repeat of its key gets the session the first request made."""
    settings = database.settings
    unsafe_delay_s = settings.unsafe_delay_ms / 1000
    await database.ensure_schedule_guards()
    await database.injected_delays.before_change()

    async def unit_of_work() -> SessionOutcome:
        try:
            async with database.session() as session:
                return await book_in_transaction(
                    session, settings.concurrency, booking, unsafe_delay_s=unsafe_delay_s
                )
        except sqlalchemy.exc.IntegrityError as error:
            if sqlstate(error) != UNIQUE_VIOLATION or booking.idempotency_key is None:
                raise
            # Only the key can collide: a request with it committed after this one looked.
            async with database.session() as session, session.begin():
                earlier = await select_session_by_key(session, booking)
            if earlier is None:
                raise
            return SessionOutcome(replay_booking(earlier, booking), replayed=True)

    return await run_with_retries(database, unit_of_work, count)


async def change_session_status(
    database: Database, change: StatusChange, count: RetryCount
) -> SessionOutcome:
    """Cancel or complete a session."""
    await database.injected_delays.before_change()

    async def unit_of_work() -> SessionOutcome:
        async with database.session() as session:
            return await change_status_in_transaction(
                session, database.settings.concurrency, change
            )

    return await run_with_retries(database, unit_of_work, count)
