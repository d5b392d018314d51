"""Scenario 2 (high throughput): users spread over every active authorization.

Each user reserves a few units on an authorization picked at random among all of them, thinks,
then releases what it reserved, so no authorization runs dry however long the run lasts.
"""

from __future__ import annotations

import aiohttp
from molotov import scenario

from molotov_scenarios.common import (
    ENVIRONMENT,
    any_authorization,
    guarded,
    release,
    reserve,
    think,
    worker_of,
)


@scenario(weight=100)
@guarded
async def reserve_then_release(session: aiohttp.ClientSession) -> None:
    """Reserve units on a random authorization, think, then release them."""
    authorization = any_authorization(worker_of(session))
    units = ENVIRONMENT.units_per_request
    booked = await reserve(session, authorization, units)
    if booked is None or not await think(session):
        return
    if booked.ok:
        await release(session, authorization, units)
        await think(session)
