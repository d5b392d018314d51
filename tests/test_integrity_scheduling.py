"""The scheduling checks: each on a clean session_scheduling run and on one where its violation
was planted.

The generator's side is written by the real code (Records → results.history → history.jsonl,
operations.csv and unanswered.csv as the runner derives them); the sessions are planted by
hand in a real PostgreSQL database, the way a service with or without its guards would leave
them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from support_integrity import World, failed_checks, seed_by_hand

from integrity import CHECK_NAMES, IntegrityReport, format_report
from integrity.checks import (
    CLIENT_RECONCILIATION,
    EXACTLY_ONCE_CHECKS,
    OK_OPERATIONS_IN_LEDGER,
)
from integrity.scheduling import (
    NO_OVER_SCHEDULED_AUTHORIZATIONS,
    NO_OVERLAPPING_SESSIONS,
    SCHEDULING_CHECKS,
    SESSIONS_RECONCILE_WITH_CLIENT,
)
from molotov_scenarios.retries import judge
from results.files import HISTORY_FILE
from results.history import history_lines
from results.record_format import NO_RESPONSE_STATUS, TIMEOUT, Record, unanswered_requests
from results.records import successful_operations

SCENARIO = "session_scheduling"
DAY = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
CODES = {NO_RESPONSE_STATUS: TIMEOUT, 503: "unavailable", 409: "practitioner_busy"}
STATUS_AFTER = {"cancel": "cancelled", "complete": "completed"}


def at(hour: float) -> dt.datetime:
    """Return the time ``hour`` hours into the test's day."""
    return DAY + dt.timedelta(hours=hour)


@dataclass
class SchedulingRun:
    """One session_scheduling run: the attempts the client recorded and the sessions left."""

    world: World
    patient_id: str
    other_practitioner_id: str
    other_patient_id: str
    records: list[Record] = field(default_factory=list)
    sessions: dict[str, tuple[str, int]] = field(default_factory=dict)  # id: authorization, units
    clock_s: float = 0.0

    def book(
        self,
        authorization_id: str,
        units: int,
        starts: float,
        ends: float,
        *,
        practitioner_id: str | None = None,
        patient_id: str | None = None,
        answers: Sequence[int] = (201,),
        applied: bool = True,
    ) -> tuple[str, str]:
        """Record one booking, one attempt per answer; ``applied``: its first attempt wrote it.

        Returns the session id (the one a 2xx names) and the booking's key.
        """
        key, session_id = uuid.uuid4().hex, str(uuid.uuid4())
        request_ids = self._request_ids(len(answers))
        self.sessions[session_id] = (authorization_id, units)
        if applied:
            self.plant_session(
                authorization_id,
                units,
                starts,
                ends,
                session_id=session_id,
                key=key,
                request_id=request_ids[0],
                practitioner_id=practitioner_id,
                patient_id=patient_id,
            )
        self._attempts("book", authorization_id, units, key, answers, request_ids, session_id)
        return session_id, key

    def change(
        self,
        kind: str,
        session_id: str,
        *,
        answers: Sequence[int] = (200,),
        applied: bool = True,
    ) -> str:
        """Record one cancel or complete of a session; ``applied``: its first attempt wrote it."""
        key = uuid.uuid4().hex
        request_ids = self._request_ids(len(answers))
        authorization_id, units = self.sessions[session_id]
        if applied:
            self.world.execute(
                "UPDATE therapy_sessions SET status = %s, status_idempotency_key = %s, "
                "status_request_id = %s, updated_at = now() WHERE id = %s",
                (STATUS_AFTER[kind], key, request_ids[0], session_id),
            )
        self._attempts(kind, authorization_id, units, key, answers, request_ids, session_id)
        return key

    def plant_session(
        self,
        authorization_id: str,
        units: int,
        starts: float,
        ends: float,
        *,
        session_id: str | None = None,
        key: str | None = None,
        request_id: str | None = None,
        practitioner_id: str | None = None,
        patient_id: str | None = None,
        status: str = "booked",
    ) -> str:
        """Write one session row as the service would, whether or not the client knows it."""
        session_id = session_id or str(uuid.uuid4())
        self.world.execute(
            "INSERT INTO therapy_sessions (id, organization_id, authorization_id, "
            "practitioner_id, patient_id, starts_at, ends_at, units, status, request_id, "
            "idempotency_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                session_id,
                self.world.organization_id,
                authorization_id,
                practitioner_id or self.world.practitioner_id,
                patient_id or self.patient_id,
                at(starts),
                at(ends),
                units,
                status,
                request_id,
                key,
            ),
        )
        return session_id

    def reserve(self, authorization_id: str, units: int) -> str:
        """Record one ok reserve of the counter scenarios, with its keyed ledger row."""
        key, transaction_id = uuid.uuid4().hex, str(uuid.uuid4())
        request_ids = self._request_ids(1)
        self.world.execute(
            "INSERT INTO unit_transactions (id, authorization_id, organization_id, "
            "practitioner_id, kind, units, request_id, idempotency_key) "
            "VALUES (%s, %s, %s, %s, 'reserve', %s, %s, %s)",
            (
                transaction_id,
                authorization_id,
                self.world.organization_id,
                self.world.practitioner_id,
                units,
                request_ids[0],
                key,
            ),
        )
        self.world.execute(
            "UPDATE authorizations SET scheduled_units = scheduled_units + %s WHERE id = %s",
            (units, authorization_id),
        )
        self._attempts("reserve", authorization_id, units, key, [201], request_ids, transaction_id)
        return transaction_id

    def check(self, **kwargs: object) -> IntegrityReport:
        """Write the result folder from the records, as the runner does, and run every check."""
        self.world.operations = list(successful_operations(self.records))
        self.world.unanswered = list(unanswered_requests(self.records))
        self.world.by_status = {}
        for record in self.records:
            status = str(record.status)
            self.world.by_status[status] = self.world.by_status.get(status, 0) + 1
        self.world.write_results(SCENARIO)
        (self.world.result_dir / HISTORY_FILE).write_text(
            "".join(line + "\n" for line in history_lines(self.records))
        )
        return self.world.check(SCENARIO, **kwargs)

    def _request_ids(self, count: int) -> list[str]:
        return [f"7-{len(self.records) + n}" for n in range(1, count + 1)]

    def _attempts(
        self,
        kind: str,
        authorization_id: str,
        units: int,
        key: str,
        answers: Sequence[int],
        request_ids: Sequence[str],
        transaction_id: str,
    ) -> None:
        for number, status in enumerate(answers, start=1):
            code = "" if 200 <= status < 300 else CODES.get(status, f"http_{status}")
            last = number == len(answers)
            self.records.append(
                Record(
                    request_id=request_ids[number - 1],
                    operation=kind,
                    authorization_id=authorization_id,
                    status=status,
                    code=code,
                    latency_ms=5.0,
                    started_s=self.clock_s,
                    transaction_id="" if code else transaction_id,
                    kind=kind,
                    units=units,
                    idempotency_key=key,
                    attempt=number,
                    worker="7-0",
                    outcome=(judge(status, code) or "info") if last else "",
                )
            )
            self.clock_s += 0.01


@pytest.fixture(name="run")
def _run(database_url: str, tmp_path: Path) -> SchedulingRun:
    world = seed_by_hand(database_url, tmp_path)
    world.result_dir = tmp_path / SCENARIO
    other_practitioner, other_patient = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT id::text FROM patients").fetchone()
        assert found
        conn.execute(
            "INSERT INTO practitioners VALUES (%s, %s, 'c@example.org', 'C D', 'rbt', 'x')",
            (other_practitioner, world.organization_id),
        )
        conn.execute(
            "INSERT INTO patients VALUES (%s, %s, 'Grace', 'Hopper', '1990-01-01', 'M2')",
            (other_patient, world.organization_id),
        )
    return SchedulingRun(world, found[0], other_practitioner, other_patient)


@pytest.fixture(name="clean")
def _clean(run: SchedulingRun) -> SchedulingRun:
    """A clean run: bookings, a replayed one, a refused one, an unknown one, status changes."""
    normal = run.world.normal
    first, _ = run.book(normal[0], 4, 9, 10)
    run.book(normal[0], 4, 10, 11)  # touches the first: one ends when the next starts
    # The same hour, but another practitioner and another patient.
    third, _ = run.book(
        normal[1],
        2,
        9,
        10,
        practitioner_id=run.other_practitioner_id,
        patient_id=run.other_patient_id,
    )
    run.book(normal[0], 3, 12, 13, answers=[0, 503, 201])  # first answer lost, then replayed
    run.book(normal[0], 3, 12.5, 13.5, answers=[409], applied=False)  # practitioner busy
    run.book(normal[1], 2, 14, 15, answers=[0, 0, 0])  # unknown to the end, committed once
    run.book(normal[1], 2, 16, 17, answers=[0, 0, 0], applied=False)  # unknown, never there
    run.change("cancel", first)
    run.change("complete", third, answers=[503, 200])
    run.change("cancel", third, answers=[409], applied=False)  # already completed
    return run


def problems(report: IntegrityReport, name: str) -> list[str]:
    return [row["problem"] for row in report.check(name).rows]


def test_clean_scheduling_run_passes_every_check_and_each_ran(clean: SchedulingRun) -> None:
    report = clean.check()
    assert report.ok, format_report(report)
    assert [check.name for check in report.checks] == list(CHECK_NAMES)
    # Nothing NOT CHECKED (a CONDITIONAL verdict): the counter exactly-once checks have no
    # counter operation to hold against the ledger and say so.
    assert all(check.checked for check in report.checks), format_report(report)
    assert "only scheduling operations" in report.check(OK_OPERATIONS_IN_LEDGER).detail
    reconcile = report.check(SESSIONS_RECONCILE_WITH_CLIENT)
    assert "10 scheduling operations (fail 2, info 2, ok 6)" in reconcile.detail
    assert (report.client_operations, report.ledger_rows) == (0, 0)
    assert (report.scheduling_operations, report.session_rows) == (6, 5)


def test_overlapping_sessions_of_one_practitioner_are_caught(run: SchedulingRun) -> None:
    first, _ = run.book(run.world.normal[0], 4, 9, 10)
    second, _ = run.book(run.world.normal[1], 4, 9.5, 10.5, patient_id=run.other_patient_id)
    report = run.check()
    assert failed_checks(report) == {NO_OVERLAPPING_SESSIONS}, format_report(report)
    check = report.check(NO_OVERLAPPING_SESSIONS)
    assert check.violations == 1
    row = check.rows[0]
    assert row["problem"] == "practitioner_overlap"
    assert row["practitioner_id"] == run.world.practitioner_id
    assert (row["first_session_id"], row["second_session_id"]) == (first, second)
    assert (row["first_request_id"], row["second_request_id"]) == ("7-1", "7-2")
    assert (row["overlap_starts_at"], row["overlap_ends_at"]) == (
        "2026-03-02 09:30:00+00",
        "2026-03-02 10:00:00+00",
    )
    assert first in row["evidence"]
    assert "request 7-2" in row["evidence"]
    assert f"practitioner {run.world.practitioner_id}" in row["evidence"]


def test_overlapping_sessions_of_one_patient_are_caught(run: SchedulingRun) -> None:
    first, _ = run.book(run.world.normal[0], 4, 9, 10)
    second, _ = run.book(
        run.world.normal[0], 4, 8.5, 9.25, practitioner_id=run.other_practitioner_id
    )
    report = run.check()
    assert failed_checks(report) == {NO_OVERLAPPING_SESSIONS}, format_report(report)
    [row] = report.check(NO_OVERLAPPING_SESSIONS).rows
    assert row["problem"] == "patient_overlap"
    assert (row["patient_id"], row["practitioner_id"]) == (run.patient_id, None)
    # The earlier start comes first.
    assert (row["first_session_id"], row["second_session_id"]) == (second, first)
    assert (row["first_request_id"], row["second_request_id"]) == ("7-2", "7-1")


def test_touching_sessions_do_not_overlap(run: SchedulingRun) -> None:
    run.book(run.world.normal[0], 4, 9, 10)
    run.book(run.world.normal[0], 4, 10, 11)
    run.book(run.world.normal[0], 4, 8, 9)
    report = run.check()
    assert report.check(NO_OVERLAPPING_SESSIONS).ok, format_report(report)


def test_cancelled_sessions_never_count(run: SchedulingRun) -> None:
    high_contention = run.world.high_contention[0]  # total 50, none used
    first, _ = run.book(high_contention, 30, 9, 10)
    run.book(high_contention, 30, 9, 10)  # overlaps and over-schedules the first...
    run.change("cancel", first)  # ...which is cancelled
    report = run.check()
    assert report.ok, format_report(report)


def test_write_skew_pairs_are_all_counted_and_the_rows_capped(run: SchedulingRun) -> None:
    for _ in range(4):  # four bookings of one practitioner and one patient in one hour
        run.book(run.world.normal[0], 1, 9, 10)
    check = run.check(row_limit=5).check(NO_OVERLAPPING_SESSIONS)
    assert (check.violations, len(check.rows)) == (12, 5)  # 6 pairs under each rule
    assert "12 overlapping pairs" in check.detail


def test_over_scheduled_authorization_is_caught_with_its_excess(run: SchedulingRun) -> None:
    high_contention, normal = run.world.high_contention[0], run.world.normal[0]
    first, _ = run.book(high_contention, 30, 9, 10)
    second, _ = run.book(high_contention, 30, 10, 11)
    run.change("complete", first)  # delivered units still count
    run.book(normal, 80, 12, 13)  # used 20 + 80 = 100: exactly the total
    report = run.check()
    assert failed_checks(report) == {NO_OVER_SCHEDULED_AUTHORIZATIONS}, format_report(report)
    [row] = report.check(NO_OVER_SCHEDULED_AUTHORIZATIONS).rows
    assert row["authorization_id"] == high_contention
    assert (row["total_units"], row["used_units"], row["scheduled_by_sessions"]) == (50, 0, 60)
    assert (row["units_over"], row["sessions"]) == (10, 2)
    assert set(row["newest_session_ids"].split()) == {first, second}
    assert set(row["newest_request_ids"].split()) == {"7-1", "7-2"}


def test_used_units_count_against_the_total(run: SchedulingRun) -> None:
    run.book(run.world.normal[0], 81, 12, 13)  # used 20 + 81 = 101 of 100
    [row] = run.check().check(NO_OVER_SCHEDULED_AUTHORIZATIONS).rows
    assert (row["used_units"], row["units_over"]) == (20, 1)


def test_ok_booking_without_its_session_is_caught(run: SchedulingRun) -> None:
    session_id, key = run.book(run.world.normal[0], 4, 9, 10, applied=False)
    report = run.check()
    assert failed_checks(report) == {SESSIONS_RECONCILE_WITH_CLIENT}, format_report(report)
    [row] = report.check(SESSIONS_RECONCILE_WITH_CLIENT).rows
    assert row["problem"] == "ok_book_missing"
    assert (row["idempotency_key"], row["client_session_id"]) == (key, session_id)


def test_ok_booking_whose_session_differs_is_caught(run: SchedulingRun) -> None:
    session_id, _key = run.book(run.world.normal[0], 4, 9, 10)
    run.world.execute("UPDATE therapy_sessions SET units = 5 WHERE id = %s", (session_id,))
    [row] = run.check().check(SESSIONS_RECONCILE_WITH_CLIENT).rows
    assert row["problem"] == "ok_book_mismatch"
    assert (row["session_id"], row["client_units"], row["units"]) == (session_id, 4, 5)


def test_session_of_a_refused_booking_is_caught(run: SchedulingRun) -> None:
    session_id, key = run.book(run.world.normal[0], 4, 9, 10, answers=[503, 409])
    [row] = run.check().check(SESSIONS_RECONCILE_WITH_CLIENT).rows
    assert row["problem"] == "failed_book_applied"
    assert (row["idempotency_key"], row["session_id"], row["request_id"]) == (
        key,
        session_id,
        "7-1",
    )


def test_phantom_session_is_caught(run: SchedulingRun) -> None:
    run.book(run.world.normal[0], 4, 9, 10)
    phantom = run.plant_session(run.world.normal[0], 2, 11, 12, key="never-sent", request_id="99-1")
    report = run.check()
    assert failed_checks(report) == {SESSIONS_RECONCILE_WITH_CLIENT}, format_report(report)
    [row] = report.check(SESSIONS_RECONCILE_WITH_CLIENT).rows
    assert (row["problem"], row["session_id"]) == ("phantom", phantom)
    assert (row["booking_key"], row["request_id"]) == ("never-sent", "99-1")


def test_session_of_a_request_that_got_no_response_is_indeterminate(run: SchedulingRun) -> None:
    # The request got no response; the session it wrote carries no key the client knows.
    session_id, _ = run.book(run.world.normal[0], 4, 9, 10, answers=[0], applied=False)
    run.plant_session(run.world.normal[0], 4, 9, 10, session_id=session_id, request_id="7-1")
    report = run.check()
    assert report.ok, format_report(report)
    check = report.check(SESSIONS_RECONCILE_WITH_CLIENT)
    assert "indeterminate_booking: 1" in check.detail
    assert "excused" in check.detail
    assert check.rows[0]["session_id"] == session_id


def test_unanswered_request_of_another_size_does_not_excuse_a_session(
    run: SchedulingRun,
) -> None:
    run.book(run.world.normal[0], 4, 9, 10, answers=[0], applied=False)
    run.plant_session(run.world.normal[0], 6, 9, 10, request_id="7-1")
    [row] = run.check().check(SESSIONS_RECONCILE_WITH_CLIENT).rows
    assert (row["problem"], row["client_units"], row["units"]) == ("phantom", 4, 6)


def test_unknown_booking_applied_twice_is_caught(run: SchedulingRun) -> None:
    # Without the unique key index a retry whose first attempt committed books again.
    run.world.execute("DROP INDEX ux_therapy_sessions_idempotency_key")
    session_id, key = run.book(run.world.normal[1], 2, 9, 10, answers=[0, 0])
    run.plant_session(run.world.normal[1], 2, 11, 12, key=key, request_id="7-2")
    [row] = run.check().check(SESSIONS_RECONCILE_WITH_CLIENT).rows
    assert (row["problem"], row["idempotency_key"], row["session_rows"]) == ("booked_twice", key, 2)
    assert row["client_outcome"] == "info"
    assert session_id in row["session_id"].split()
    assert set(row["request_id"].split()) == {"7-1", "7-2"}


def test_ok_cancel_of_a_session_still_booked_is_caught(run: SchedulingRun) -> None:
    session_id, _ = run.book(run.world.normal[0], 4, 9, 10)
    key = run.change("cancel", session_id, applied=False)
    report = run.check()
    assert failed_checks(report) == {SESSIONS_RECONCILE_WITH_CLIENT}, format_report(report)
    [row] = report.check(SESSIONS_RECONCILE_WITH_CLIENT).rows
    assert (row["problem"], row["session_id"], row["status"]) == (
        "cancel_not_applied",
        session_id,
        "booked",
    )
    assert row["idempotency_key"] == f"cancel {key}"


def test_session_both_cancelled_and_completed_is_a_lost_update(run: SchedulingRun) -> None:
    session_id, _ = run.book(run.world.normal[0], 4, 9, 10)
    cancel = run.change("cancel", session_id)
    complete = run.change("complete", session_id)  # overwrote the cancel it never saw
    [row] = run.check().check(SESSIONS_RECONCILE_WITH_CLIENT).rows
    assert (row["problem"], row["session_id"], row["status"]) == (
        "cancelled_and_completed",
        session_id,
        "completed",
    )
    assert row["idempotency_key"] == f"cancel {cancel} complete {complete}"
    assert row["status_idempotency_key"] == complete


def test_status_changes_the_client_did_not_make_are_caught(run: SchedulingRun) -> None:
    refused, _ = run.book(run.world.normal[0], 4, 9, 10)
    key = run.change("cancel", refused, answers=[409])  # refused, yet applied
    changed, _ = run.book(run.world.normal[0], 4, 11, 12)
    run.world.execute(
        "UPDATE therapy_sessions SET status = 'completed', status_request_id = '99-9' "
        "WHERE id = %s",
        (changed,),
    )
    rows = run.check().check(SESSIONS_RECONCILE_WITH_CLIENT).rows
    assert sorted((row["problem"], row["session_id"]) for row in rows) == [
        ("failed_status_change_applied", refused),
        ("phantom_status_change", changed),
    ]
    assert next(row for row in rows if row["session_id"] == refused)["idempotency_key"] == key


def test_each_check_reads_only_its_own_operations(run: SchedulingRun) -> None:
    # One folder with both: a session id is no ledger id, and a ledger id is no session.
    run.reserve(run.world.normal[0], 3)
    run.book(run.world.normal[0], 4, 9, 10)
    report = run.check()
    assert report.ok, format_report(report)
    assert all(report.check(name).checked for name in EXACTLY_ONCE_CHECKS)
    assert (
        "1 ok operations, 1 of them in the ledger" in report.check(OK_OPERATIONS_IN_LEDGER).detail
    )
    assert report.check(CLIENT_RECONCILIATION).ok
    assert (report.client_operations, report.ledger_rows) == (1, 1)
    assert (report.scheduling_operations, report.session_rows) == (1, 1)


def test_scheduling_checks_run_on_a_counter_run_and_can_fail(run: SchedulingRun) -> None:
    run.reserve(run.world.normal[0], 3)
    report = run.check()
    assert report.ok, format_report(report)
    assert all(report.check(name).checked for name in SCHEDULING_CHECKS)
    run.plant_session(run.world.normal[0], 4, 9, 10, key="made-by-nobody")
    report = run.check()
    assert failed_checks(report) == {SESSIONS_RECONCILE_WITH_CLIENT}, format_report(report)


def test_a_database_without_sessions_table_is_not_checked(run: SchedulingRun) -> None:
    run.world.execute("DROP TABLE therapy_sessions")
    report = run.check()
    for name in SCHEDULING_CHECKS:
        assert not report.check(name).checked
        assert "no therapy_sessions table" in report.check(name).detail
