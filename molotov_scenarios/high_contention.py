"""Scenario 1 (high contention): every user reserves on the same 50-unit authorization at once.

The run is cut into equal slices, one authorization of the high-contention pool per slice. A
user's think time never runs past the next slice's start, so at each switch every user fires
at the same moment on a fresh authorization, and keeps trying it until the slice ends.
Expected and checked later: exactly 5 reservations of 10 units succeed per exhausted 50-unit
authorization, every other one gets 409 insufficient_units, and nothing is overbooked.
"""

from __future__ import annotations

from molotov import scenario

from molotov_scenarios.common import (
    ENVIRONMENT,
    Worker,
    contended_authorization,
    guarded,
    next_contention_switch_s,
    now_s,
    reserve,
    think,
)

# Wake a hair after the switch, never before it: an early wake-up would hit the old one.
SWITCH_MARGIN_S = 0.002


@scenario(weight=100)
@guarded
async def reserve_contended_units(worker: Worker) -> None:
    """Reserve units on the authorization every user is on right now, then wait."""
    authorization = contended_authorization(now_s())
    if await reserve(worker, authorization, ENVIRONMENT.units_per_request) is None:
        return
    await think(worker, until_s=next_contention_switch_s(now_s()) + SWITCH_MARGIN_S)
