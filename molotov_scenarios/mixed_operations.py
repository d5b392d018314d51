"""Scenario 3 (mixed operations): 70 % reserve, 20 % release, 10 % consume.

Each call picks an authorization first: 20 % of the time the one shared authorization (a
50-unit one), otherwise one of the high-throughput pool at random. A reservation books units
there. A release or a consumption settles units the user booked: on the chosen authorization
if it holds some there, else on its largest booking elsewhere (a practitioner cancels or
delivers their own sessions). The shared authorization fills up within the first seconds and
its units are then used up by deliveries, so from then on the reservations aimed at it (about
14 % of all calls) are refused with 409 insufficient_units: the expected 10-20 % error rate.
Over-subscription is the point: the service must refuse them all, and never overbook.
"""

from __future__ import annotations

from molotov import scenario

from molotov_scenarios.common import (
    ENVIRONMENT,
    Worker,
    consume,
    guarded,
    mixed_authorization,
    own_booking,
    release,
    reserve,
    think,
)

RESERVE_WEIGHT = 70
RELEASE_WEIGHT = 20
CONSUME_WEIGHT = 10


@scenario(weight=RESERVE_WEIGHT)
@guarded
async def reserve_units(worker: Worker) -> None:
    """Book units for upcoming sessions."""
    authorization = mixed_authorization(worker)
    if await reserve(worker, authorization, ENVIRONMENT.units_per_request) is not None:
        await think(worker)


@scenario(weight=RELEASE_WEIGHT)
@guarded
async def release_units(worker: Worker) -> None:
    """Cancel booked sessions and give their units back."""
    units = ENVIRONMENT.units_per_request
    authorization = own_booking(worker, mixed_authorization(worker), units)
    if await release(worker, authorization, units) is not None:
        await think(worker)


@scenario(weight=CONSUME_WEIGHT)
@guarded
async def consume_units(worker: Worker) -> None:
    """Record delivered sessions: their scheduled units become used."""
    units = ENVIRONMENT.units_per_request
    authorization = own_booking(worker, mixed_authorization(worker), units)
    if await consume(worker, authorization, units) is not None:
        await think(worker)
