"""Each integrity check on a clean state and on a state where its violation was planted."""

from __future__ import annotations

import csv
from pathlib import Path

import psycopg
import pytest
from support_integrity import (
    HC_TOTAL,
    NO_RESPONSE,
    UNITS_PER_REQUEST,
    World,
    failed_checks,
    seed_by_hand,
)

from integrity import (
    IntegrityInputError,
    format_report,
    read_integrity_json,
    run_checks,
    write_integrity_json,
)
from integrity.checks import (
    CLIENT_RECONCILIATION,
    CONTENTION_EXPECTATION,
    LEDGER_CONSISTENCY,
    NO_OVERBOOKING,
    NO_OVERBOOKING_IN_HISTORY,
)
from integrity.history import read_unanswered
from load_runner.runner import write_results
from molotov_scenarios.recorder import Recorder
from results.collect import collect
from results.record_format import CONNECTION_ERROR, TIMEOUT, Record


@pytest.fixture(name="world")
def _world(database_url: str, tmp_path: Path) -> World:
    world = seed_by_hand(database_url, tmp_path)
    # A clean, busy run: both high-contention authorizations exhausted, normal traffic.
    for hc in world.high_contention:
        for _ in range(HC_TOTAL // UNITS_PER_REQUEST):
            world.apply(hc, "reserve", UNITS_PER_REQUEST)
    world.apply(world.normal[0], "reserve", 4)
    world.apply(world.normal[0], "consume", 3)
    world.apply(world.normal[1], "release", 5)
    return world


def test_clean_run_passes_every_check(world: World) -> None:
    report = world.check()
    assert report.ok, format_report(report)
    assert failed_checks(report) == set()
    assert report.client_operations == report.ledger_rows == 13
    assert (
        "2 of 2 high-contention authorizations exhausted"
        in report.check(CONTENTION_EXPECTATION).detail
    )


def test_overbooking_is_caught(world: World) -> None:
    # Consistent in ledger, counters and client file, yet beyond the budget: 20 + 10 + 80 > 100.
    world.apply(world.normal[1], "reserve", 80)
    report = world.check()
    assert failed_checks(report) == {NO_OVERBOOKING, NO_OVERBOOKING_IN_HISTORY}
    check = report.check(NO_OVERBOOKING)
    assert check.violations == 1
    assert check.rows[0]["authorization_id"] == world.normal[1]
    assert check.rows[0]["units_over"] == 5
    assert check.rows[0]["problem"] == "overbooked"


def test_negative_counter_is_caught_even_without_the_schema_guard(world: World) -> None:
    world.execute(
        "ALTER TABLE authorizations DROP CONSTRAINT ck_authorizations_scheduled_units_nonnegative"
    )
    world.apply(world.normal[0], "release", 20)  # only 11 scheduled
    report = world.check()
    assert NO_OVERBOOKING in failed_checks(report)
    assert report.check(NO_OVERBOOKING).rows[0]["problem"] == "negative_counter"


def test_counter_drift_is_caught(world: World) -> None:
    # A lost update: the ledger and the client saw the reservation, the counter did not.
    world.apply(world.normal[0], "reserve", 7, in_counters=False)
    report = world.check()
    assert failed_checks(report) == {LEDGER_CONSISTENCY}
    row = report.check(LEDGER_CONSISTENCY).rows[0]
    assert row["authorization_id"] == world.normal[0]
    assert (row["scheduled_units"], row["expected_scheduled_units"]) == (11, 18)
    assert (row["used_units"], row["expected_used_units"]) == (23, 23)


def test_used_units_drift_is_caught(world: World) -> None:
    world.execute(
        "UPDATE authorizations SET used_units = used_units + 1 WHERE id = %s", (world.normal[1],)
    )
    report = world.check()
    assert failed_checks(report) == {LEDGER_CONSISTENCY}
    assert report.check(LEDGER_CONSISTENCY).rows[0]["problem"] == "counter_drift"


def test_authorization_missing_from_the_baseline_is_caught(world: World) -> None:
    world.execute("DELETE FROM seed_baseline WHERE authorization_id = %s", (world.normal[1],))
    report = world.check()
    assert LEDGER_CONSISTENCY in failed_checks(report)
    assert report.check(LEDGER_CONSISTENCY).rows[0]["problem"] == "not_in_seed_baseline"


def test_lost_operation_is_caught(world: World) -> None:
    # The client was told "reserved"; neither the ledger nor the counters kept it.
    lost = world.apply(world.normal[0], "reserve", 2, in_ledger=False, in_counters=False)
    report = world.check()
    assert failed_checks(report) == {CLIENT_RECONCILIATION}
    check = report.check(CLIENT_RECONCILIATION)
    assert check.violations == 1
    assert (check.rows[0]["problem"], check.rows[0]["transaction_id"]) == ("lost", lost)


def test_phantom_operation_is_caught(world: World) -> None:
    phantom = world.apply(world.normal[0], "reserve", 2, seen_by_client=False)
    report = world.check()
    assert failed_checks(report) == {CLIENT_RECONCILIATION}
    row = report.check(CLIENT_RECONCILIATION).rows[0]
    assert (row["problem"], row["transaction_id"], row["ledger_units"]) == ("phantom", phantom, 2)


def test_ledger_row_of_a_request_that_got_no_response_is_excused(world: World) -> None:
    # The client gave up on the request (timeout), the server committed it all the same.
    committed = world.no_response("41-7", world.normal[0], "reserve", 2, committed=True)
    world.no_response("41-8", world.normal[1], "release", 1, committed=False)
    report = world.check()
    assert report.ok, format_report(report)
    check = report.check(CLIENT_RECONCILIATION)
    assert [(row["problem"], row["transaction_id"]) for row in check.rows] == [
        ("indeterminate", committed)
    ]
    assert (check.rows[0]["request_id"], check.rows[0]["source"]) == ("41-7", "high_contention")
    assert "1 ledger rows without a client record are excused" in check.detail
    assert "of the 2 requests that got no response" in check.detail


def test_phantom_is_caught_even_when_requests_went_unanswered(world: World) -> None:
    # Three timeouts, none of which committed: they excuse no other request's ledger row.
    for sequence in range(3):
        world.no_response(f"41-{sequence}", world.normal[0], "reserve", 2, committed=False)
    phantom = world.apply(world.normal[0], "reserve", 2, seen_by_client=False, request_id="41-9")
    anonymous = world.apply(world.normal[1], "reserve", 1, seen_by_client=False)
    report = world.check()
    assert failed_checks(report) == {CLIENT_RECONCILIATION}
    check = report.check(CLIENT_RECONCILIATION)
    assert check.violations == 2
    assert {(row["problem"], row["transaction_id"]) for row in check.rows} == {
        ("phantom", phantom),
        ("phantom", anonymous),
    }


def test_a_refused_request_that_wrote_a_row_is_no_longer_excused_by_count(world: World) -> None:
    # One timeout that did not commit, and a request answered 409 that wrote a ledger row
    # anyway: one unanswered request and one unseen row, which counting used to excuse.
    world.no_response("41-1", world.normal[0], "reserve", 2, committed=False)
    refused = world.apply(world.normal[0], "reserve", 2, seen_by_client=False, request_id="41-2")
    world.by_status["409"] = 1
    report = world.check()
    assert failed_checks(report) == {CLIENT_RECONCILIATION}
    row = report.check(CLIENT_RECONCILIATION).rows[0]
    assert (row["problem"], row["transaction_id"], row["request_id"]) == (
        "phantom",
        refused,
        "41-2",
    )
    assert "excused" not in report.check(CLIENT_RECONCILIATION).detail


@pytest.mark.parametrize(
    ("field_", "value"), [("authorization", 1), ("kind", "release"), ("units", 3)]
)
def test_unanswered_request_id_on_a_different_operation_is_a_phantom(
    world: World, field_: str, value: object
) -> None:
    authorization = world.normal[value] if field_ == "authorization" else world.normal[0]
    kind = value if field_ == "kind" else "reserve"
    units = value if field_ == "units" else 2
    world.no_response("41-1", world.normal[0], "reserve", 2, committed=False)
    world.apply(authorization, kind, units, seen_by_client=False, request_id="41-1")  # type: ignore[arg-type]
    report = world.check()
    row = report.check(CLIENT_RECONCILIATION).rows[0]
    assert (row["problem"], row["client_units"], row["ledger_units"]) == ("phantom", 2, units)


def test_a_result_without_unanswered_file_had_no_unanswered_requests(world: World) -> None:
    assert world.unanswered is None  # as written by a runner before unanswered.csv existed
    world.apply(world.normal[0], "reserve", 2, seen_by_client=False, request_id="41-1")
    report = world.check()
    assert report.check(CLIENT_RECONCILIATION).rows[0]["problem"] == "phantom"


def test_unanswered_requests_counted_but_not_listed_is_one_clear_error(world: World) -> None:
    world.by_status = {"200": 13, NO_RESPONSE: 2}
    with pytest.raises(IntegrityInputError, match=r"counts 2 requests .* no unanswered\.csv"):
        world.check()


def test_unanswered_file_that_disagrees_with_the_result_is_one_clear_error(world: World) -> None:
    world.no_response("41-1", world.normal[0], "reserve", 2, committed=False)
    world.by_status[NO_RESPONSE] = 3
    with pytest.raises(IntegrityInputError, match="lists 1 requests without a response"):
        world.check()


def test_the_runner_writes_every_unanswered_request_and_integrity_reads_them(
    tmp_path: Path,
) -> None:
    """Two processes' raw records merged: unanswered.csv names exactly the status-0 requests."""
    raw = tmp_path / "raw"
    per_process = {
        101: [
            Record("101-1", "reserve", "a", 200, "", 3.0, 0.1, "t-1", "reserve", 10),
            Record("101-2", "reserve", "a", 0, TIMEOUT, 10000.0, 0.2, "", "reserve", 10),
            Record("101-3", "release", "b", 409, "insufficient_units", 2.0, 0.3, "", "release", 5),
        ],
        102: [
            Record("102-1", "consume", "c", 0, CONNECTION_ERROR, 1.0, 0.15, "", "consume", 1),
            Record("102-2", "reserve", "c", 200, "", 2.0, 0.25, "t-2", "reserve", 1),
        ],
    }
    for pid, records in per_process.items():
        recorder = Recorder(raw, run_start_epoch=0.0)
        recorder.pid = pid
        for record in records:
            recorder.record(record)
        recorder.flush()
    collected = collect(raw)
    assert collected.problems == []
    result_dir = tmp_path / "high_throughput"
    write_results(result_dir, {"by_status": {"0": 2}}, collected)
    with (result_dir / "unanswered.csv").open(newline="") as handle:
        assert list(csv.reader(handle)) == [
            ["request_id", "authorization_id", "kind", "units"],
            ["102-1", "c", "consume", "1"],  # merged in start order
            ["101-2", "a", "reserve", "10"],
        ]
    assert [request.request_id for request in read_unanswered(result_dir, "x", 2)] == [
        "102-1",
        "101-2",
    ]


def test_doubled_operation_is_caught(world: World) -> None:
    # One request applied twice: two ledger rows under one request id, one reply to the client.
    world.apply(world.normal[0], "reserve", 1, request_id="req-1")
    world.apply(world.normal[0], "reserve", 1, request_id="req-1", seen_by_client=False)
    report = world.check()
    problems = {row["problem"] for row in report.check(CLIENT_RECONCILIATION).rows}
    assert problems == {"doubled", "phantom"}


def test_operation_recorded_twice_by_the_client_is_caught(world: World) -> None:
    world.operations.append(world.operations[-1])
    report = world.check()
    assert failed_checks(report) == {CLIENT_RECONCILIATION}
    row = report.check(CLIENT_RECONCILIATION).rows[0]
    assert (row["problem"], row["times_seen"]) == ("duplicate", 2)


def test_altered_operation_is_caught(world: World) -> None:
    transaction_id, authorization_id, kind, units = world.operations[-1]
    world.operations[-1] = (transaction_id, authorization_id, kind, units + 1)
    report = world.check()
    row = report.check(CLIENT_RECONCILIATION).rows[0]
    assert (row["problem"], row["client_units"], row["ledger_units"]) == ("mismatch", 6, 5)


def test_over_reserved_high_contention_authorization_is_caught(world: World) -> None:
    # The unsafe race: a sixth reservation granted while the counter stayed at 50.
    world.apply(world.high_contention[0], "reserve", UNITS_PER_REQUEST, in_counters=False)
    report = world.check()
    assert failed_checks(report) == {
        CONTENTION_EXPECTATION,
        LEDGER_CONSISTENCY,
        NO_OVERBOOKING,
        NO_OVERBOOKING_IN_HISTORY,
    }
    overbooked = report.check(NO_OVERBOOKING).rows[0]
    assert (overbooked["problem"], overbooked["booked_by_counters"]) == ("overbooked_in_ledger", 50)
    assert (overbooked["booked_by_ledger"], overbooked["units_over"]) == (60, 10)
    row = report.check(CONTENTION_EXPECTATION).rows[0]
    assert row["authorization_id"] == world.high_contention[0]
    assert (row["problem"], row["reservations"], row["expected_reservations"]) == (
        "over_reserved",
        6,
        5,
    )


def test_under_reserved_exhausted_authorization_is_caught(world: World) -> None:
    # The counter says full but the ledger lost one of the five reservations.
    lost = next(op for op in world.operations if op[1] == world.high_contention[1])
    world.operations.remove(lost)
    world.execute("DELETE FROM unit_transactions WHERE id = %s", (lost[0],))
    report = world.check()
    assert failed_checks(report) == {CONTENTION_EXPECTATION, LEDGER_CONSISTENCY}
    row = report.check(CONTENTION_EXPECTATION).rows[0]
    assert (row["problem"], row["reservations"]) == ("under_reserved", 4)


def test_authorization_not_yet_exhausted_is_not_judged(database_url: str, tmp_path: Path) -> None:
    world = seed_by_hand(database_url, tmp_path)
    for _ in range(HC_TOTAL // UNITS_PER_REQUEST):
        world.apply(world.high_contention[0], "reserve", UNITS_PER_REQUEST)
    world.apply(world.high_contention[1], "reserve", UNITS_PER_REQUEST)
    report = world.check()
    assert report.ok, format_report(report)
    assert "1 of 2" in report.check(CONTENTION_EXPECTATION).detail


def test_a_run_that_exhausted_nothing_fails_the_expectation(
    database_url: str, tmp_path: Path
) -> None:
    """Every request refused (expired tokens, say) must not pass as 'nothing overbooked'."""
    world = seed_by_hand(database_url, tmp_path)
    world.apply(world.high_contention[0], "reserve", UNITS_PER_REQUEST)
    report = world.check()
    assert failed_checks(report) == {CONTENTION_EXPECTATION}
    assert report.check(CONTENTION_EXPECTATION).rows[0]["problem"] == "none_exhausted"


def test_contention_check_does_not_apply_to_other_scenarios(world: World) -> None:
    world.apply(world.high_contention[0], "reserve", UNITS_PER_REQUEST, in_counters=False)
    report = world.check(scenario="mixed_operations")
    assert report.check(CONTENTION_EXPECTATION).ok
    assert "not applicable" in report.check(CONTENTION_EXPECTATION).detail
    assert not report.check(LEDGER_CONSISTENCY).ok


def test_offending_rows_are_capped_but_counted(world: World) -> None:
    world.execute("UPDATE authorizations SET scheduled_units = scheduled_units + 1")
    report = world.check(row_limit=3)
    check = report.check(LEDGER_CONSISTENCY)
    assert (check.violations, len(check.rows)) == (4, 3)


def test_checks_change_nothing(world: World) -> None:
    def snapshot() -> list[tuple[object, ...]]:
        with psycopg.connect(world.url) as conn:
            return conn.execute(
                "SELECT id, used_units, scheduled_units, "
                "(SELECT count(*) FROM unit_transactions) FROM authorizations ORDER BY id"
            ).fetchall()

    before = snapshot()
    world.check()
    assert snapshot() == before


def test_missing_seed_baseline_is_one_clear_error(world: World) -> None:
    world.execute("DROP TABLE seed_baseline")
    with pytest.raises(IntegrityInputError, match="seed_baseline not found"):
        world.check()


def test_missing_operations_file_is_one_clear_error(world: World) -> None:
    world.write_results()
    (world.result_dir / "operations.csv").unlink()
    with pytest.raises(IntegrityInputError, match=r"no operations\.csv in"):
        run_checks(world.url, [world.result_dir], fixtures_path=world.fixtures_path)


def test_malformed_operations_row_is_one_clear_error(world: World) -> None:
    world.operations.append(("x", "y", "reserve", "ten"))  # type: ignore[arg-type]
    with pytest.raises(IntegrityInputError, match="malformed row"):
        world.check()


def test_report_round_trips_through_integrity_json(world: World, tmp_path: Path) -> None:
    world.apply(world.normal[0], "reserve", 7, in_counters=False)
    report = world.check()
    path = write_integrity_json(report, world.result_dir)
    document = read_integrity_json(path)
    assert document["schema_version"] == 1
    assert document["ok"] is False
    assert [c["name"] for c in document["checks"]] == [c.name for c in report.checks]
    ledger = next(c for c in document["checks"] if c["name"] == LEDGER_CONSISTENCY)
    assert ledger["violations"] == 1
    assert ledger["rows"][0]["authorization_id"] == world.normal[0]
    text = format_report(report)
    assert "ledger_consistency: FAILED, 1 violations" in text
    assert world.normal[0] in text
