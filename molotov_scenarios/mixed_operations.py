"""Scenario 3 (mixed operations): 70 % reserve, 20 % release, 10 % consume.

20 % of the calls go to one shared authorization, the rest to authorizations picked at random
among the others. A user releases or consumes the units it booked on the chosen authorization;
when it holds none there it still sends the call (a session cancelled or delivered by a
colleague), which the service may refuse with 409 insufficient_units. Those refusals, and the
reservations refused once the shared authorization is full, are the expected 10-20 % errors.
"""

from __future__ import annotations

import aiohttp
from molotov import scenario

from molotov_scenarios.common import (
    ENVIRONMENT,
    consume,
    guarded,
    mixed_authorization,
    release,
    reserve,
    think,
    worker_of,
)

RESERVE_WEIGHT = 70
RELEASE_WEIGHT = 20
CONSUME_WEIGHT = 10


@scenario(weight=RESERVE_WEIGHT)
@guarded
async def reserve_units(session: aiohttp.ClientSession) -> None:
    """Book units for upcoming sessions."""
    authorization = mixed_authorization(worker_of(session))
    if await reserve(session, authorization, ENVIRONMENT.units_per_request) is not None:
        await think(session)


@scenario(weight=RELEASE_WEIGHT)
@guarded
async def release_units(session: aiohttp.ClientSession) -> None:
    """Cancel booked sessions and give their units back."""
    authorization = mixed_authorization(worker_of(session))
    if await release(session, authorization, ENVIRONMENT.units_per_request) is not None:
        await think(session)


@scenario(weight=CONSUME_WEIGHT)
@guarded
async def consume_units(session: aiohttp.ClientSession) -> None:
    """Record delivered sessions: their scheduled units become used."""
    authorization = mixed_authorization(worker_of(session))
    if await consume(session, authorization, ENVIRONMENT.units_per_request) is not None:
        await think(session)
