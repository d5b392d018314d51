"""The scheduling checks: therapy sessions never overlap, never over-schedule an authorization,
and are what the client's book, cancel and complete operations say they are."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from integrity.check_result import CheckResult, not_checked, plain_row
from integrity.history import HistoryOperation, UnansweredRequest
from integrity.queries import query

NO_OVERLAPPING_SESSIONS = "no_overlapping_sessions"
NO_OVER_SCHEDULED_AUTHORIZATIONS = "no_over_scheduled_authorizations"
SESSIONS_RECONCILE_WITH_CLIENT = "sessions_reconcile_with_client"
SCHEDULING_CHECKS = (
    NO_OVERLAPPING_SESSIONS,
    NO_OVER_SCHEDULED_AUTHORIZATIONS,
    SESSIONS_RECONCILE_WITH_CLIENT,
)
SCHEDULING_DESCRIPTIONS = {
    NO_OVERLAPPING_SESSIONS: "No two sessions that are not cancelled overlap in time "
    "([starts_at, ends_at), so touching sessions do not) for one practitioner or for one "
    "patient: no booking slipped past another's overlap check (write skew).",
    NO_OVER_SCHEDULED_AUTHORIZATIONS: "No authorization's used units plus the units of its "
    "booked and completed sessions, summed from the session rows, exceed its total.",
    SESSIONS_RECONCILE_WITH_CLIENT: "Every booking, cancel and complete the load generator saw "
    "end ok is on its session as recorded, no session carries a refused booking or a booking "
    "key the generator never sent (but under a request that got no response), no booking is "
    "there twice, and no session was both cancelled and completed by successful operations.",
}
# The session ids and request ids an over-scheduled authorization's row lists, newest first.
NEWEST_SESSIONS = 10
# A session (or a status change) the client never saw is indeterminate, not wrong, when it
# carries the request id of a request that got no response: that request may have committed.
EXCUSED_PROBLEMS = ("indeterminate_booking", "indeterminate_status_change")
PERSON_OF_RULE = {"practitioner_overlap": "practitioner", "patient_overlap": "patient"}


@dataclass
class SchedulingClient:
    """The generator's scheduling operations and unanswered scheduling requests of a run."""

    operations: list[HistoryOperation] = field(default_factory=list)
    unanswered: list[UnansweredRequest] = field(default_factory=list)
    acknowledged: int = 0  # 2xx answers in operations.csv

    def by_outcome(self) -> dict[str, int]:
        """Count the operations by outcome."""
        counts: dict[str, int] = {}
        for operation in self.operations:
            counts[operation.outcome] = counts.get(operation.outcome, 0) + 1
        return counts


def has_sessions_table(conn: psycopg.Connection[Any]) -> bool:
    """Tell whether the database has the therapy_sessions table (schema revision 0003)."""
    found = conn.execute(query("has_therapy_sessions")).fetchone()
    return bool(found and found["present"])


def load_scheduling_client(conn: psycopg.Connection[Any], client: SchedulingClient) -> None:
    """Copy the client's scheduling operations and unanswered requests into temporary tables."""
    conn.execute(query("create_session_history"))
    with conn.cursor().copy(
        "COPY session_history (idempotency_key, outcome, kind, authorization_id, units, "
        "session_id, attempts, source) FROM STDIN"
    ) as copy:
        for op in client.operations:
            copy.write_row(
                (
                    op.idempotency_key,
                    op.outcome,
                    op.kind,
                    op.authorization_id,
                    op.units,
                    op.transaction_id,
                    op.attempts,
                    op.source,
                )
            )
    conn.execute(query("create_session_unanswered"))
    with conn.cursor().copy(
        "COPY session_unanswered (request_id, authorization_id, kind, units, source) FROM STDIN"
    ) as copy:
        for request in client.unanswered:
            copy.write_row(
                (
                    request.request_id,
                    request.authorization_id,
                    request.kind,
                    request.units,
                    request.source,
                )
            )
    conn.execute("ANALYZE session_history")
    conn.execute("ANALYZE session_unanswered")


def count_sessions(conn: psycopg.Connection[Any]) -> int:
    """Return how many session rows the database holds (0 without the table)."""
    if not has_sessions_table(conn):
        return 0
    found = conn.execute(query("count_therapy_sessions")).fetchone()
    return int(found["n"]) if found else 0


def check_scheduling(
    conn: psycopg.Connection[Any], client: SchedulingClient, row_limit: int
) -> tuple[CheckResult, ...]:
    """Run every scheduling check; expects the client's tables loaded in this transaction."""
    if not has_sessions_table(conn):
        reason = f"no therapy_sessions table in database {conn.info.dbname} (schema before 0003)"
        return tuple(
            not_checked(name, SCHEDULING_DESCRIPTIONS[name], reason) for name in SCHEDULING_CHECKS
        )
    return (
        check_no_overlapping_sessions(conn, row_limit),
        check_no_over_scheduled_authorizations(conn, row_limit),
        check_sessions_reconcile_with_client(conn, client, row_limit),
    )


def check_no_overlapping_sessions(conn: psycopg.Connection[Any], row_limit: int) -> CheckResult:
    """Find every pair of live sessions of one practitioner, or one patient, that overlap."""
    rows = conn.execute(query("overlapping_sessions"), {"row_limit": row_limit}).fetchall()
    pairs = int(rows[0]["pairs"]) if rows else 0
    for row in rows:
        del row["pairs"]
        row["evidence"] = _overlap_evidence(row)
    counts = _count_by(rows, "problem")
    detail = (
        f"{pairs} overlapping pairs"
        + (f" (first {len(rows)}: " if pairs > len(rows) else " (")
        + ", ".join(f"{problem}: {n}" for problem, n in sorted(counts.items()))
        + ")"
        if pairs
        else "no two live sessions of one practitioner or one patient overlap"
    )
    return CheckResult(
        name=NO_OVERLAPPING_SESSIONS,
        description=SCHEDULING_DESCRIPTIONS[NO_OVERLAPPING_SESSIONS],
        ok=not pairs,
        violations=pairs,
        rows=tuple(plain_row(row) for row in rows),
        detail=detail,
    )


def check_no_over_scheduled_authorizations(
    conn: psycopg.Connection[Any], row_limit: int
) -> CheckResult:
    """Find authorizations whose used units plus their sessions' units exceed the total."""
    rows = conn.execute(
        query("over_scheduled_authorizations"), {"newest": NEWEST_SESSIONS}
    ).fetchall()
    return CheckResult(
        name=NO_OVER_SCHEDULED_AUTHORIZATIONS,
        description=SCHEDULING_DESCRIPTIONS[NO_OVER_SCHEDULED_AUTHORIZATIONS],
        ok=not rows,
        violations=len(rows),
        rows=tuple(plain_row(row) for row in rows[:row_limit]),
        detail=(
            f"{len(rows)} authorizations over their total by "
            f"{sum(row['units_over'] for row in rows)} units"
            if rows
            else "every authorization's booked and completed sessions fit its total"
        ),
    )


def check_sessions_reconcile_with_client(
    conn: psycopg.Connection[Any], client: SchedulingClient, row_limit: int
) -> CheckResult:
    """Hold the client's book, cancel and complete operations against the session rows.

    Expects the session_history and session_unanswered tables loaded in this transaction.
    """
    rows = conn.execute(query("session_reconciliation_problems")).fetchall()
    violations = [row for row in rows if row["problem"] not in EXCUSED_PROBLEMS]
    excused = len(rows) - len(violations)
    outcomes = client.by_outcome()
    seen = ", ".join(f"{outcome} {n}" for outcome, n in sorted(outcomes.items()))
    detail = f"{len(client.operations)} scheduling operations ({seen or 'none'}); " + (
        ", ".join(f"{problem}: {n}" for problem, n in sorted(_count_by(rows, "problem").items()))
        or "the sessions and the generator's operations agree"
    )
    if excused:
        detail += (
            f" ({excused} sessions or status changes without a client operation are excused: "
            f"each carries the request id of one of the {len(client.unanswered)} scheduling "
            "requests that got no response and may have committed)"
        )
    return CheckResult(
        name=SESSIONS_RECONCILE_WITH_CLIENT,
        description=SCHEDULING_DESCRIPTIONS[SESSIONS_RECONCILE_WITH_CLIENT],
        ok=not violations,
        violations=len(violations),
        rows=tuple(plain_row(row) for row in (violations or rows)[:row_limit]),
        detail=detail,
    )


def _overlap_evidence(row: dict[str, Any]) -> str:
    """Say in words which two sessions overlap, for whom, and when."""
    person = PERSON_OF_RULE[row["problem"]]
    person_id = row["practitioner_id"] if person == "practitioner" else row["patient_id"]
    return (
        f"sessions {row['first_session_id']} (request {row['first_request_id'] or '-'}, "
        f"{row['first_starts_at']} to {row['first_ends_at']}, {row['first_status']}) and "
        f"{row['second_session_id']} (request {row['second_request_id'] or '-'}, "
        f"{row['second_starts_at']} to {row['second_ends_at']}, {row['second_status']}) of "
        f"{person} {person_id} overlap from {row['overlap_starts_at']} "
        f"to {row['overlap_ends_at']}"
    )


def _count_by(rows: Iterable[dict[str, Any]], key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[key]] = counts.get(row[key], 0) + 1
    return counts
