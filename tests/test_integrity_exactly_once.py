"""The exactly-once checks: each on a clean keyed run and on a run where its violation was planted.

The generator's side is written by the real code (Records → results.history → history.jsonl,
operations.csv and unanswered.csv as the runner derives them); the ledger side is planted by
hand in a real PostgreSQL database, the way a service with or without idempotency would leave it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from support_integrity import SCHEDULE, World, seed_by_hand

from integrity import format_report, run_checks
from integrity.checks import (
    CLIENT_RECONCILIATION,
    EXACTLY_ONCE_CHECKS,
    INFO_OPERATIONS_AT_MOST_ONCE,
    NO_ROW_FOR_FAILED_OPERATIONS,
    OK_OPERATIONS_IN_LEDGER,
    ONE_ROW_PER_KEY,
)
from molotov_scenarios.retries import judge
from results.files import HISTORY_FILE
from results.history import history_lines
from results.record_format import NO_RESPONSE_STATUS, TIMEOUT, Record, unanswered_requests
from results.records import successful_operations

SCENARIO = "mixed_operations"  # not high_contention: the contention expectation stays out of it
CODES = {
    NO_RESPONSE_STATUS: TIMEOUT,
    503: "unavailable",
    409: "insufficient_units",
    500: "internal",
}


@dataclass
class KeyedRun:
    """One scenario's attempts as the retrying client records them, and the ledger they left."""

    world: World
    records: list[Record] = field(default_factory=list)
    clock_s: float = 0.0

    def operation(
        self,
        authorization_id: str,
        kind: str,
        units: int,
        *,
        answers: Sequence[int],
        applied_by: Sequence[int] = (),
        key: str | None = None,
    ) -> str:
        """Record one logical operation: one attempt per answer (an HTTP status, 0 for none).

        ``applied_by``: the attempts whose request wrote a ledger row under the key (with
        idempotency only the first can; without it a retry books again). A 2xx answer carries
        the row its own attempt wrote, else the first one (a replay). Returns the key.
        """
        key = key or uuid.uuid4().hex
        request_ids = [f"9-{len(self.records) + n}" for n in range(1, len(answers) + 1)]
        rows = {
            attempt: self.plant_row(
                authorization_id, kind, units, key=key, request_id=request_ids[attempt - 1]
            )
            for attempt in applied_by
        }
        for number, status in enumerate(answers, start=1):
            code = "" if 200 <= status < 300 else CODES.get(status, f"http_{status}")
            transaction_id = ""
            if not code:
                transaction_id = rows.get(number) or next(iter(rows.values()))
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
                    transaction_id=transaction_id,
                    kind=kind,
                    units=units,
                    idempotency_key=key,
                    attempt=number,
                    worker="9-0",
                    outcome=(judge(status, code) or "info") if last else "",
                )
            )
            self.clock_s += 0.01
        return key

    def plant_row(
        self,
        authorization_id: str,
        kind: str,
        units: int,
        *,
        key: str,
        request_id: str | None = None,
        organization_id: str | None = None,
    ) -> str:
        """Write one ledger row under ``key`` and move the counters as the service would."""
        transaction_id = str(uuid.uuid4())
        scheduled_sign, used_sign = SCHEDULE[kind]
        with psycopg.connect(self.world.url) as conn:
            conn.execute(
                "INSERT INTO unit_transactions (id, authorization_id, organization_id, "
                "practitioner_id, kind, units, request_id, idempotency_key) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    transaction_id,
                    authorization_id,
                    organization_id or self.world.organization_id,
                    self.world.practitioner_id,
                    kind,
                    units,
                    request_id,
                    key,
                ),
            )
            conn.execute(
                "UPDATE authorizations SET scheduled_units = scheduled_units + %s, "
                "used_units = used_units + %s WHERE id = %s",
                (scheduled_sign * units, used_sign * units, authorization_id),
            )
        return transaction_id

    def check(self, *, history: bool = True, **kwargs: object):
        """Write the result folder from the records, as the runner does, and run every check."""
        self.world.operations = list(successful_operations(self.records))
        self.world.unanswered = list(unanswered_requests(self.records))
        self.world.by_status = {}
        for record in self.records:
            status = str(record.status)
            self.world.by_status[status] = self.world.by_status.get(status, 0) + 1
        self.world.write_results(SCENARIO)
        history_path = self.world.result_dir / HISTORY_FILE
        if history:
            history_path.write_text("".join(line + "\n" for line in history_lines(self.records)))
        else:
            history_path.unlink(missing_ok=True)
        return run_checks(
            self.world.url,
            [self.world.result_dir],
            fixtures_path=self.world.fixtures_path,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture(name="run")
def _run(database_url: str, tmp_path: Path) -> KeyedRun:
    run = KeyedRun(seed_by_hand(database_url, tmp_path))
    normal = run.world.normal
    # A clean, retried run as the idempotent service leaves it.
    run.operation(normal[0], "reserve", 4, answers=[200], applied_by=[1])
    # First attempt committed but its answer was lost; the retry got the replay.
    run.operation(normal[0], "consume", 3, answers=[0, 503, 200], applied_by=[1])
    # Refused for good.
    run.operation(normal[1], "release", 500, answers=[409])
    # Unknown to the end: one never applied, one applied once (a 503 after a lost commit ack).
    run.operation(normal[1], "reserve", 5, answers=[0, 0, 0])
    run.operation(normal[1], "reserve", 6, answers=[503, 503], applied_by=[1])
    return run


def failed(report) -> set[str]:
    return {check.name for check in report.checks if not check.ok}


def test_clean_keyed_run_passes_every_check_and_every_exactly_once_check_ran(
    run: KeyedRun,
) -> None:
    report = run.check()
    assert failed(report) == set(), format_report(report)
    for name in EXACTLY_ONCE_CHECKS:
        assert report.check(name).checked, report.check(name).detail
    # The info operation applied once was excused by its key, though no request id matched.
    assert "indeterminate: 1" in report.check(CLIENT_RECONCILIATION).detail


def test_retry_that_booked_twice_is_caught_and_listed(run: KeyedRun) -> None:
    # TARGET_IDEMPOTENCY=off: the lost first attempt committed, and so did the retry.
    key = run.operation(run.world.normal[0], "reserve", 2, answers=[0, 200], applied_by=[1, 2])
    report = run.check()
    duplicate = report.check(ONE_ROW_PER_KEY)
    assert not duplicate.ok
    assert duplicate.violations == 1
    row = duplicate.rows[0]
    assert row["problem"] == "duplicated_operation"
    assert row["idempotency_key"] == key
    assert row["ledger_rows"] == 2
    assert len(row["transaction_ids"].split()) == 2
    assert row["client_outcome"] == "ok"
    assert row["client_attempts"] == 2
    assert report.check(OK_OPERATIONS_IN_LEDGER).rows[0]["problem"] == "ok_applied_twice"
    # The request-id reconciliation alone excuses the first row (its request got no answer):
    # only the key shows the double booking.
    assert report.check(CLIENT_RECONCILIATION).ok
    assert key in format_report(report)


def test_duplicate_ledger_row_with_the_same_key_is_caught(run: KeyedRun) -> None:
    key = run.operation(run.world.normal[0], "reserve", 1, answers=[200], applied_by=[1])
    run.plant_row(run.world.normal[0], "reserve", 1, key=key)
    report = run.check()
    assert ONE_ROW_PER_KEY in failed(report)
    assert [row["idempotency_key"] for row in report.check(ONE_ROW_PER_KEY).rows] == [key]


def test_same_key_in_two_organizations_is_not_a_duplicate(run: KeyedRun) -> None:
    key = run.operation(run.world.normal[0], "reserve", 1, answers=[200], applied_by=[1])
    other_org = str(uuid.uuid4())
    run.world.execute("INSERT INTO organizations (id, name) VALUES (%s, 'OrgB')", (other_org,))
    with psycopg.connect(run.world.url) as conn:
        # Another organization's own row under the same key (ledger and counters consistent).
        patient, authorization = str(uuid.uuid4()), str(uuid.uuid4())
        conn.execute(
            "INSERT INTO patients VALUES (%s, %s, 'Grace', 'Hopper', '1990-01-01', 'M2')",
            (patient, other_org),
        )
        conn.execute(
            "INSERT INTO authorizations (id, organization_id, patient_id, service_code, "
            "total_units, used_units, scheduled_units, start_date, end_date) "
            "VALUES (%s, %s, %s, '97151', 100, 0, 0, '2026-01-01', '2026-12-31')",
            (authorization, other_org, patient),
        )
        conn.execute("INSERT INTO seed_baseline VALUES (%s, 100, 0, 0, 'active')", (authorization,))
    run.plant_row(authorization, "reserve", 1, key=key, organization_id=other_org)
    run.world.operations = []
    report = run.check()
    assert report.check(ONE_ROW_PER_KEY).ok, format_report(report)
    # That row is no operation of this client's: the reconciliation still calls it a phantom.
    assert CLIENT_RECONCILIATION in failed(report)


def test_ok_operation_missing_from_the_ledger_is_caught(run: KeyedRun) -> None:
    key = run.operation(run.world.normal[0], "reserve", 1, answers=[200], applied_by=[1])
    run.world.execute("DELETE FROM unit_transactions WHERE idempotency_key = %s", (key,))
    run.world.execute(
        "UPDATE authorizations SET scheduled_units = scheduled_units - 1 WHERE id = %s",
        (run.world.normal[0],),
    )
    report = run.check()
    check = report.check(OK_OPERATIONS_IN_LEDGER)
    assert not check.ok
    assert [(row["problem"], row["idempotency_key"]) for row in check.rows] == [
        ("ok_not_in_ledger", key)
    ]


def test_ok_operation_booked_under_another_authorization_is_caught(run: KeyedRun) -> None:
    key = run.operation(run.world.normal[0], "reserve", 1, answers=[200], applied_by=[1])
    run.world.execute("UPDATE unit_transactions SET units = 2 WHERE idempotency_key = %s", (key,))
    check = run.check().check(OK_OPERATIONS_IN_LEDGER)
    assert [row["problem"] for row in check.rows] == ["ok_mismatch"]


def test_row_for_a_definitely_refused_operation_is_caught(run: KeyedRun) -> None:
    key = run.operation(run.world.normal[1], "reserve", 7, answers=[503, 409])
    run.plant_row(run.world.normal[1], "reserve", 7, key=key, request_id="9-404")
    report = run.check()
    check = report.check(NO_ROW_FOR_FAILED_OPERATIONS)
    assert not check.ok
    assert check.rows[0]["problem"] == "failed_but_in_ledger"
    assert check.rows[0]["idempotency_key"] == key
    assert check.rows[0]["request_ids"] == "9-404"


def test_info_operation_applied_twice_is_caught(run: KeyedRun) -> None:
    key = run.operation(run.world.normal[1], "reserve", 2, answers=[0, 0], applied_by=[1, 2])
    report = run.check()
    check = report.check(INFO_OPERATIONS_AT_MOST_ONCE)
    assert not check.ok
    assert [(row["problem"], row["idempotency_key"], row["ledger_rows"]) for row in check.rows] == [
        ("info_applied_twice", key, 2)
    ]
    assert ONE_ROW_PER_KEY in failed(report)


def test_info_operation_applied_once_passes(run: KeyedRun) -> None:
    run.operation(run.world.normal[1], "release", 2, answers=[504, 0], applied_by=[2])
    report = run.check()
    assert report.check(INFO_OPERATIONS_AT_MOST_ONCE).ok, format_report(report)
    assert report.ok


def test_offending_operations_are_capped_but_counted(run: KeyedRun) -> None:
    for _ in range(3):
        run.operation(run.world.normal[0], "reserve", 1, answers=[0, 200], applied_by=[1, 2])
    check = run.check(row_limit=2).check(ONE_ROW_PER_KEY)
    assert check.violations == 3
    assert len(check.rows) == 2


def test_results_without_a_history_are_not_checked_rather_than_passed(run: KeyedRun) -> None:
    report = run.check(history=False)
    for name in EXACTLY_ONCE_CHECKS[1:]:
        check = report.check(name)
        assert not check.checked
        assert check.detail.startswith("NOT CHECKED")
    assert f"{OK_OPERATIONS_IN_LEDGER}: NOT CHECKED" in format_report(report)
    # The ledger still carries keys, so one row per key is checked from the ledger alone.
    assert report.check(ONE_ROW_PER_KEY).checked


def test_records_without_keys_are_not_checked(database_url: str, tmp_path: Path) -> None:
    run = KeyedRun(seed_by_hand(database_url, tmp_path))
    transaction_id = run.world.apply(run.world.normal[0], "reserve", 1, seen_by_client=False)
    run.records.append(
        Record("1-1", "reserve", run.world.normal[0], 200, "", 5.0, 0.0, transaction_id,
               "reserve", 1)
    )  # fmt: skip
    report = run.check()
    assert report.ok
    assert all(not report.check(name).checked for name in EXACTLY_ONCE_CHECKS)
    events = [
        json.loads(line) for line in (run.world.result_dir / HISTORY_FILE).read_text().splitlines()
    ]
    assert [event["type"] for event in events] == ["invoke", "ok"]
