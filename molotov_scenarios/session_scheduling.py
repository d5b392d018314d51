"""Scenario 4 (session scheduling): practitioners book, cancel and complete therapy sessions.

Each booking is an hour on a 15-minute grid, on one of a few days, mostly in the popular
morning slots, against one of the scheduling pool's authorizations (its patient's). Users
of one organization share its practitioners' tokens, and a patient is booked by several
practitioners, so concurrent bookings collide on both rules that span rows: no overlapping
sessions for a practitioner, none for a patient. Units run out too (40 units, 2 a session).
Cancels free slots again, so the collisions go on all run long. Refusals (practitioner_busy,
patient_busy, insufficient_units) are the expected answers; a double booking never is.
"""

from __future__ import annotations

import datetime as dt

from molotov import scenario

from molotov_scenarios.common import (
    ENVIRONMENT,
    FIXTURES,
    Worker,
    book_session,
    guarded,
    settle_session,
    think,
)
from molotov_scenarios.fixtures import SCHEDULING

BOOK_WEIGHT = 60
CANCEL_WEIGHT = 30
COMPLETE_WEIGHT = 10
FIRST_DAY = dt.datetime(2030, 1, 7, tzinfo=dt.UTC)  # a Monday; the reset empties every run
DAYS = 2
DAY_STARTS_AT = dt.timedelta(hours=9)
SLOTS_PER_DAY = 28  # 9:00 to 15:45 every 15 minutes
POPULAR_SLOTS = 4  # 9:00 to 9:45: hour sessions starting there all overlap
POPULAR_SHARE = 0.8
SESSION_MINUTES = 60


def pick_start(rng_random: float, rng_day: int, rng_slot: int) -> str:
    """Return a session start as RFC 3339: a popular morning slot most of the time."""
    slots = POPULAR_SLOTS if rng_random < POPULAR_SHARE else SLOTS_PER_DAY
    start = FIRST_DAY + dt.timedelta(days=rng_day % DAYS) + DAY_STARTS_AT
    return (start + dt.timedelta(minutes=15 * (rng_slot % slots))).isoformat()


@scenario(weight=BOOK_WEIGHT)
@guarded
async def book_therapy_session(worker: Worker) -> None:
    """Book an hour for a patient in a slot others want too."""
    await book(worker)


async def book(worker: Worker) -> None:
    rng = worker.rng
    authorization = rng.choice(FIXTURES.pools[SCHEDULING])
    starts_at = pick_start(rng.random(), rng.randrange(DAYS), rng.randrange(SLOTS_PER_DAY))
    units = ENVIRONMENT.units_per_request
    if await book_session(worker, authorization, starts_at, SESSION_MINUTES, units) is not None:
        await think(worker)


async def settle(worker: Worker, operation: str) -> None:
    if not worker.sessions:
        await book(worker)
        return
    session_id, authorization = worker.sessions.pop(worker.rng.randrange(len(worker.sessions)))
    if await settle_session(worker, operation, session_id, authorization) is not None:
        await think(worker)


@scenario(weight=CANCEL_WEIGHT)
@guarded
async def cancel_therapy_session(worker: Worker) -> None:
    """Cancel one of this user's sessions: its slot and units are free again."""
    await settle(worker, "cancel")


@scenario(weight=COMPLETE_WEIGHT)
@guarded
async def complete_therapy_session(worker: Worker) -> None:
    """Record one of this user's sessions as delivered."""
    await settle(worker, "complete")
