"""Book, cancel and complete therapy sessions: rules that span rows, in one unit of work each.

A booking reads the practitioner's and the patient's sessions around the slot and the units
the authorization's sessions already hold, decides in Python, and inserts a row. No row is
updated twice, so first-updater-wins never fires: what keeps the rules is the strategy.

- serializable (and atomic, which has no multi-row form): no lock. SERIALIZABLE aborts one of
  two bookings that read each other's slot (40001); REPEATABLE READ and READ COMMITTED let
  both insert: write skew, a double booking.
- for_update: lock the parent rows first, in one fixed order (authorization, practitioner,
  patient), so two bookings that could collide run one after the other.
- constraint: exclusion constraints refuse overlapping rows (schedule_guards), and the
  authorization's row lock guards the units.
- unsafe: no lock, and a wait between the reads and the insert.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass

import sqlalchemy.exc
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from target.interactive_changes import select_authorization
from target.models import Patient, Practitioner, TherapySession
from target.operations import ACTIVE
from target.problems import (
    AUTHORIZATION_INACTIVE,
    IDEMPOTENCY_KEY_REUSED,
    INSUFFICIENT_UNITS,
    NOT_FOUND,
    PATIENT_BUSY,
    PRACTITIONER_BUSY,
    SESSION_NOT_BOOKED,
    ProblemError,
    not_found,
)
from target.schedule_guards import PATIENT_OVERLAP, PRACTITIONER_OVERLAP

LOCKING_STRATEGIES = frozenset({"for_update", "constraint"})
BOOKED, CANCELLED, COMPLETED = "booked", "cancelled", "completed"
HOLDING_STATUSES = (BOOKED, COMPLETED)  # sessions that hold their slot and their units
EXCLUSION_VIOLATION = "23P01"


@dataclass(frozen=True, slots=True)
class Booking:
    """A requested session, with who asked for it and the id it will get."""

    authorization_id: uuid.UUID
    organization_id: uuid.UUID
    practitioner_id: uuid.UUID
    starts_at: dt.datetime
    ends_at: dt.datetime
    units: int
    request_id: str
    session_id: uuid.UUID
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A requested cancel or complete of one session."""

    session_id: uuid.UUID
    organization_id: uuid.UUID
    status: str  # cancelled or completed
    request_id: str
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    """A session as the answer shows it; ``replayed`` when a repeated key got the first answer."""

    session: TherapySession
    replayed: bool = False


async def book_in_transaction(
    session: AsyncSession, strategy: str, booking: Booking, *, unsafe_delay_s: float
) -> SessionOutcome:
    """Book a session in one interactive transaction, or raise why it may not be booked."""
    async with session.begin():
        if booking.idempotency_key is not None:
            earlier = await select_session_by_key(session, booking)
            if earlier is not None:
                return SessionOutcome(replay_booking(earlier, booking), replayed=True)
        locking = strategy in LOCKING_STRATEGIES
        authorization, today = await select_authorization(
            session, booking.authorization_id, booking.organization_id, lock=locking
        )
        if authorization is None or today is None:
            raise not_found()
        if locking:
            await lock_people(session, booking.practitioner_id, authorization.patient_id)
        if authorization.status != ACTIVE or not (
            authorization.start_date <= today <= authorization.end_date
        ):
            raise ProblemError(409, AUTHORIZATION_INACTIVE, "authorization is not active today")
        practitioner_slot = TherapySession.practitioner_id == booking.practitioner_id
        if await count_overlapping(session, practitioner_slot, booking):
            raise practitioner_busy()
        if await count_overlapping(
            session, TherapySession.patient_id == authorization.patient_id, booking
        ):
            raise patient_busy()
        held = await units_held(session, booking.authorization_id)
        available = authorization.total_units - authorization.used_units - held
        if booking.units > available:
            raise ProblemError(
                409,
                INSUFFICIENT_UNITS,
                f"{booking.units} units requested, {available} left for sessions",
            )
        if strategy == "unsafe" and unsafe_delay_s > 0:
            await asyncio.sleep(unsafe_delay_s)  # widen the write-skew window
        row = new_session(booking, authorization.patient_id)
        session.add(row)
        await flush_guarded(session)
    return SessionOutcome(row)


async def change_status_in_transaction(
    session: AsyncSession, strategy: str, change: StatusChange
) -> SessionOutcome:
    """Cancel or complete a booked session in one interactive transaction."""
    async with session.begin():
        query = select(TherapySession).where(
            TherapySession.id == change.session_id,
            TherapySession.organization_id == change.organization_id,
        )
        if strategy in LOCKING_STRATEGIES:
            query = query.with_for_update()
        row = await session.scalar(query)
        if row is None:
            raise ProblemError(404, NOT_FOUND, "session not found")
        repeated = change.idempotency_key is not None and (
            row.status_idempotency_key == change.idempotency_key
        )
        if repeated and row.status == change.status:
            return SessionOutcome(row, replayed=True)
        if row.status != BOOKED:
            raise ProblemError(409, SESSION_NOT_BOOKED, f"the session is {row.status}")
        row.status = change.status
        row.status_idempotency_key = change.idempotency_key
        row.status_request_id = change.request_id
        row.updated_at = func.now()  # type: ignore[assignment]
    return SessionOutcome(row)


async def select_session_by_key(session: AsyncSession, booking: Booking) -> TherapySession | None:
    """Return the session an earlier request with the booking's key made, if any."""
    return await session.scalar(
        select(TherapySession).where(
            TherapySession.organization_id == booking.organization_id,
            TherapySession.idempotency_key == booking.idempotency_key,
        )
    )


def replay_booking(earlier: TherapySession, booking: Booking) -> TherapySession:
    """Return the earlier session for a repeat of its request; 422 for another request."""
    asked = (booking.authorization_id, booking.starts_at, booking.ends_at, booking.units)
    made = (earlier.authorization_id, earlier.starts_at, earlier.ends_at, earlier.units)
    if asked != made:
        raise ProblemError(
            422, IDEMPOTENCY_KEY_REUSED, "this Idempotency-Key was used for a different booking"
        )
    return earlier


async def lock_people(
    session: AsyncSession, practitioner_id: uuid.UUID, patient_id: uuid.UUID
) -> None:
    """Lock the practitioner's and the patient's rows, in that order (after the authorization)."""
    await session.execute(
        select(Practitioner.id).where(Practitioner.id == practitioner_id).with_for_update()
    )
    await session.execute(select(Patient.id).where(Patient.id == patient_id).with_for_update())


async def count_overlapping(
    session: AsyncSession, whose: ColumnElement[bool], booking: Booking
) -> int:
    """Count the held sessions (of one practitioner or patient) that overlap the booking's slot."""
    count = await session.scalar(
        select(func.count())
        .select_from(TherapySession)
        .where(
            whose,
            TherapySession.status.in_(HOLDING_STATUSES),
            TherapySession.starts_at < booking.ends_at,
            TherapySession.ends_at > booking.starts_at,
        )
    )
    return int(count or 0)


async def units_held(session: AsyncSession, authorization_id: uuid.UUID) -> int:
    """Sum the units of the authorization's sessions that hold units (booked or completed)."""
    held = await session.scalar(
        select(func.coalesce(func.sum(TherapySession.units), 0)).where(
            TherapySession.authorization_id == authorization_id,
            TherapySession.status.in_(HOLDING_STATUSES),
        )
    )
    return int(held or 0)


def new_session(booking: Booking, patient_id: uuid.UUID) -> TherapySession:
    """Build the session row a booking inserts."""
    return TherapySession(
        id=booking.session_id,
        organization_id=booking.organization_id,
        authorization_id=booking.authorization_id,
        practitioner_id=booking.practitioner_id,
        patient_id=patient_id,
        starts_at=booking.starts_at,
        ends_at=booking.ends_at,
        units=booking.units,
        status=BOOKED,
        request_id=booking.request_id,
        idempotency_key=booking.idempotency_key,
    )


async def flush_guarded(session: AsyncSession) -> None:
    """Insert now, so that an exclusion constraint's refusal becomes the booking's 409."""
    try:
        await session.flush()
    except sqlalchemy.exc.IntegrityError as error:
        diagnostic = getattr(error.orig, "diag", None)
        constraint = getattr(diagnostic, "constraint_name", None)
        if getattr(error.orig, "sqlstate", None) != EXCLUSION_VIOLATION:
            raise
        if constraint == PRACTITIONER_OVERLAP:
            raise practitioner_busy() from error
        if constraint == PATIENT_OVERLAP:
            raise patient_busy() from error
        raise


def practitioner_busy() -> ProblemError:
    return ProblemError(409, PRACTITIONER_BUSY, "the practitioner has a session at that time")


def patient_busy() -> ProblemError:
    return ProblemError(409, PATIENT_BUSY, "the patient has a session at that time")
