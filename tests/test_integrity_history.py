"""no_overbooking_in_history: an overbooking that was later released must still be caught.

The end state of such a run is clean (counters within the total, ledger consistent, every
operation reconciled): only replaying the ledger in commit order shows the moment it was over.
"""

from __future__ import annotations

from pathlib import Path

from support_integrity import failed_checks, seed_by_hand

from integrity.checks import NO_OVERBOOKING_IN_HISTORY
from integrity.output import format_report

SCENARIO = "mixed_operations"  # not high_contention: its own expectation is not under test


def test_an_overbooking_released_later_is_caught(database_url: str, tmp_path: Path) -> None:
    world = seed_by_hand(database_url, tmp_path)
    authorization = world.normal[1]  # total 100, 30 booked at the seed
    world.apply(authorization, "reserve", 70)  # exactly full
    world.apply(authorization, "reserve", 10)  # 110 of 100: the overbooking
    world.apply(authorization, "release", 10)  # back to 100 by the end
    report = world.check(scenario=SCENARIO)
    assert failed_checks(report) == {NO_OVERBOOKING_IN_HISTORY}, format_report(report)
    (row,) = report.check(NO_OVERBOOKING_IN_HISTORY).rows
    assert (row["authorization_id"], row["peak_booked"], row["units_over"]) == (
        authorization,
        110,
        10,
    )


def test_a_full_but_never_over_history_passes(database_url: str, tmp_path: Path) -> None:
    world = seed_by_hand(database_url, tmp_path)
    authorization = world.normal[1]
    world.apply(authorization, "reserve", 70)  # exactly full, never over
    world.apply(authorization, "release", 10)
    world.apply(authorization, "reserve", 10)
    world.apply(authorization, "consume", 50)  # used, still booked: no change to the total
    report = world.check(scenario=SCENARIO)
    assert report.ok, format_report(report)
    assert report.check(NO_OVERBOOKING_IN_HISTORY).detail == "ledger replayed in commit order"
