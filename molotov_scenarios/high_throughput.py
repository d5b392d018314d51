"""Scenario 2 (high throughput): users spread over every active authorization.

Each user reserves a few units on an authorization picked at random among all of them, thinks,
then releases what it reserved, so no authorization runs dry however long the run lasts.
"""

from __future__ import annotations

from molotov import scenario

from molotov_scenarios.common import (
    ENVIRONMENT,
    Worker,
    any_authorization,
    guarded,
    release,
    reserve,
    think,
)


@scenario(weight=100)
@guarded
async def reserve_then_release(worker: Worker) -> None:
    """Reserve units on a random authorization, think, then release them."""
    authorization = any_authorization(worker)
    units = ENVIRONMENT.units_per_request
    booked = await reserve(worker, authorization, units)
    if booked is None or not await think(worker):
        return
    if booked.ok:
        await release(worker, authorization, units)
        await think(worker)
