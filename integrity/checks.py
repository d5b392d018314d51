"""The integrity checks, run in one snapshot of the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from integrity.check_result import CheckResult, not_checked, plain_row
from integrity.history import (
    HIGH_CONTENTION_SCENARIO,
    LIST_APPEND_KIND,
    SCHEDULING_KINDS,
    IntegrityInputError,
    ScenarioRecord,
    read_high_contention_ids,
    read_history,
    read_operations,
    read_scenario,
    read_unanswered,
)
from integrity.queries import query
from integrity.scheduling import (
    SCHEDULING_CHECKS,
    SCHEDULING_DESCRIPTIONS,
    SESSIONS_RECONCILE_WITH_CLIENT,
    SchedulingClient,
    check_scheduling,
    count_sessions,
    load_scheduling_client,
)
from results.files import HISTORY_FILE

ROW_LIMIT = 50
DEFAULT_FIXTURES_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "test-data.json"
NO_OVERBOOKING = "no_overbooking"
LEDGER_CONSISTENCY = "ledger_consistency"
CLIENT_RECONCILIATION = "client_reconciliation"
CONTENTION_EXPECTATION = "contention_expectation"
NO_OVERBOOKING_IN_HISTORY = "no_overbooking_in_history"
# Exactly once per logical operation (one Idempotency-Key each), from history.jsonl.
ONE_ROW_PER_KEY = "one_row_per_idempotency_key"
OK_OPERATIONS_IN_LEDGER = "ok_operations_in_ledger"
NO_ROW_FOR_FAILED_OPERATIONS = "no_row_for_failed_operations"
INFO_OPERATIONS_AT_MOST_ONCE = "info_operations_at_most_once"
EXACTLY_ONCE_CHECKS = (
    ONE_ROW_PER_KEY,
    OK_OPERATIONS_IN_LEDGER,
    NO_ROW_FOR_FAILED_OPERATIONS,
    INFO_OPERATIONS_AT_MOST_ONCE,
)
CHECK_NAMES = (
    NO_OVERBOOKING,
    NO_OVERBOOKING_IN_HISTORY,
    LEDGER_CONSISTENCY,
    CLIENT_RECONCILIATION,
    CONTENTION_EXPECTATION,
    *EXACTLY_ONCE_CHECKS,
    *SCHEDULING_CHECKS,
)
DESCRIPTIONS = {
    NO_OVERBOOKING: "No authorization has more units booked (used + scheduled) than its "
    "total, whether counted by its counters or by its ledger, and no counter is negative.",
    NO_OVERBOOKING_IN_HISTORY: "Replaying each authorization's ledger in commit order from "
    "its seeded counters, booked units never exceeded the total at any moment (an overbooking "
    "later released leaves a clean end state).",
    LEDGER_CONSISTENCY: "Every authorization's counters equal its seeded counters plus the "
    "ledger's sums by kind (reserve +scheduled, release -scheduled, consume -scheduled +used).",
    CLIENT_RECONCILIATION: "Every successful operation the load generator recorded is in the "
    "ledger with the same id, authorization, kind and units, and the ledger holds nothing the "
    "generator never saw but under the request id of a request that got no response: no lost, "
    "altered, phantom, duplicated or doubled operation.",
    CONTENTION_EXPECTATION: "Every exhausted high-contention authorization holds exactly "
    "floor(available units / units per request) reservations.",
    ONE_ROW_PER_KEY: "The ledger holds at most one row per Idempotency-Key within an "
    "organization: no logical operation was applied twice, however often it was retried.",
    OK_OPERATIONS_IN_LEDGER: "Every operation the generator saw end ok is in the ledger under "
    "its Idempotency-Key, with its transaction id, authorization, kind and units.",
    NO_ROW_FOR_FAILED_OPERATIONS: "No ledger row carries the Idempotency-Key of an operation "
    "the service definitely refused (fail).",
    INFO_OPERATIONS_AT_MOST_ONCE: "An operation whose outcome stayed unknown (info) after its "
    "last attempt is in the ledger at most once, and then as asked.",
    **SCHEDULING_DESCRIPTIONS,
}
SEED_BASELINE_TABLE = "seed_baseline"
# Why the counter exactly-once checks pass with nothing to hold against the ledger.
ONLY_SCHEDULING = (
    f"the {HISTORY_FILE} holds only scheduling operations (book, cancel, complete), which the "
    f"{SESSIONS_RECONCILE_WITH_CLIENT} check holds against the sessions"
)
# ... and when the histories hold list-append transactions only (or with scheduling ones).
ONLY_LIST_APPEND = (
    f"the {HISTORY_FILE} holds list-append transactions, which change no ledger row; "
    "anomalies.json holds their isolation check"
)
# A ledger row whose request id is one of the requests that got no response is indeterminate,
# not wrong: that request may have committed after the client gave up on it (Jepsen's "info"
# ops). verify.sql marks such rows; every other row the generator never saw is a phantom.
INDETERMINATE = "indeterminate"


@dataclass(frozen=True)
class IntegrityReport:
    """The outcome of every check on one database state and the results that led to it."""

    ok: bool
    checks: tuple[CheckResult, ...]
    checked_at: str
    database: str
    result_dirs: tuple[str, ...]
    client_operations: int  # the counter operations (reserve, release, consume) acknowledged
    ledger_rows: int
    scenarios: tuple[str, ...] = field(default=())
    scheduling_operations: int = 0  # the book, cancel and complete operations acknowledged
    session_rows: int = 0

    def check(self, name: str) -> CheckResult:
        """Return the result of the check called ``name``."""
        return next(check for check in self.checks if check.name == name)


def run_checks(
    database_url: str,
    result_dirs: Sequence[Path],
    *,
    fixtures_path: Path | None = None,
    row_limit: int = ROW_LIMIT,
) -> IntegrityReport:
    """Run every check against the database and the generator's results in ``result_dirs``."""
    scenarios = [read_scenario(Path(result_dir)) for result_dir in result_dirs]
    high_contention = [s for s in scenarios if s.scenario == HIGH_CONTENTION_SCENARIO]
    hc_ids = (
        read_high_contention_ids(fixtures_path or DEFAULT_FIXTURES_PATH) if high_contention else []
    )
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        # One snapshot for every check; roll back so the temporary table is all we ever write.
        with conn.transaction(force_rollback=True):
            _require_seed_baseline(conn)
            # Each check reads its own scenario's operations: the counter checks every kind
            # but book, cancel and complete (tables client_*), the scheduling checks only
            # those (tables session_*). A session id is no ledger id, and the reverse.
            scheduling = SchedulingClient()
            client_operations = _load_client_operations(conn, scenarios, scheduling)
            _load_unanswered_requests(conn, scenarios, scheduling)
            keyed = _load_client_history(conn, scenarios, scheduling)
            counter_unanswered = sum(s.unanswered_requests for s in scenarios) - len(
                scheduling.unanswered
            )
            load_scheduling_client(conn, scheduling)
            has_key_column = _create_ledger_keys(conn)
            ledger_rows = conn.execute("SELECT count(*) AS n FROM unit_transactions").fetchone()
            session_rows = count_sessions(conn)
            checks = (
                check_no_overbooking(conn, row_limit),
                check_no_overbooking_in_history(conn, row_limit),
                check_ledger_consistency(conn, row_limit),
                check_client_reconciliation(conn, counter_unanswered, row_limit),
                check_contention_expectation(conn, high_contention, hc_ids, row_limit),
                *check_exactly_once(conn, keyed, has_key_column, row_limit),
                *check_scheduling(conn, scheduling, row_limit),
            )
            database = conn.info.dbname
    return IntegrityReport(
        ok=all(check.ok for check in checks),
        checks=checks,
        checked_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        database=database,
        result_dirs=tuple(str(s.result_dir) for s in scenarios),
        client_operations=client_operations,
        ledger_rows=int(ledger_rows["n"]) if ledger_rows else 0,
        scenarios=tuple(s.scenario for s in scenarios),
        scheduling_operations=scheduling.acknowledged,
        session_rows=session_rows,
    )


def check_no_overbooking(conn: psycopg.Connection[Any], row_limit: int) -> CheckResult:
    """Find authorizations booked beyond their total, or with a negative counter."""
    rows = conn.execute(query("overbooked_authorizations")).fetchall()
    return _result(NO_OVERBOOKING, rows, row_limit)


def check_no_overbooking_in_history(conn: psycopg.Connection[Any], row_limit: int) -> CheckResult:
    """Replay the ledger in commit order and find any moment booked beyond the total."""
    tracked = conn.execute("SELECT current_setting('track_commit_timestamp') AS on").fetchone()
    if not tracked or tracked["on"] != "on":
        # Said in the detail and the report: on our own cluster the setting is always on.
        return _not_checked(
            NO_OVERBOOKING_IN_HISTORY, "track_commit_timestamp is off on this server"
        )
    untimed = conn.execute(query("ledger_rows_without_commit_time")).fetchone()
    rows = conn.execute(query("overbooked_in_history")).fetchall()
    detail = (
        f"{untimed['n']} ledger rows have no commit time (written before the setting was on) "
        "and were replayed last"
        if untimed and untimed["n"]
        else "ledger replayed in commit order"
    )
    return _result(NO_OVERBOOKING_IN_HISTORY, rows, row_limit, detail=detail)


def check_ledger_consistency(conn: psycopg.Connection[Any], row_limit: int) -> CheckResult:
    """Find authorizations whose counters differ from the seed baseline plus the ledger."""
    rows = conn.execute(query("ledger_drift")).fetchall()
    return _result(LEDGER_CONSISTENCY, rows, row_limit)


def check_client_reconciliation(
    conn: psycopg.Connection[Any], unanswered_requests: int, row_limit: int
) -> CheckResult:
    """Compare the generator's successful operations with the ledger, row by row.

    Expects the client_operations and client_unanswered tables loaded in this transaction.
    """
    rows = conn.execute(query("reconciliation_problems")).fetchall()
    excused = sum(1 for row in rows if row["problem"] == INDETERMINATE)
    violations = [row for row in rows if row["problem"] != INDETERMINATE]
    counts = _count_by(rows, "problem")
    detail = ", ".join(f"{problem}: {n}" for problem, n in sorted(counts.items()))
    if excused:
        detail += (
            f" ({excused} ledger rows without a client record are excused: each carries the "
            f"request id of one of the {unanswered_requests} requests that got no response "
            "and may have committed)"
        )
    return CheckResult(
        name=CLIENT_RECONCILIATION,
        description=DESCRIPTIONS[CLIENT_RECONCILIATION],
        ok=not violations,
        violations=len(violations),
        rows=tuple(plain_row(row) for row in (violations or rows)[:row_limit]),
        detail=detail or "the generator's operations and the ledger match one for one",
    )


def check_contention_expectation(
    conn: psycopg.Connection[Any],
    high_contention: list[ScenarioRecord],
    hc_ids: list[str],
    row_limit: int,
) -> CheckResult:
    """Check that each exhausted high-contention authorization holds exactly what fits."""
    sizes = {s.units_per_request for s in high_contention}
    if not high_contention:
        return CheckResult(
            CONTENTION_EXPECTATION,
            DESCRIPTIONS[CONTENTION_EXPECTATION],
            ok=True,
            violations=0,
            detail="not applicable: no high_contention scenario among the results",
        )
    if None in sizes or len(sizes) != 1:
        raise IntegrityInputError(
            "the high_contention result must give one config.units_per_request, "
            f"found {sorted(map(str, sizes))}"
        )
    units_per_request = int(next(iter(sizes)))  # type: ignore[arg-type]
    outcomes = conn.execute(
        query("high_contention_outcomes"),
        {"authorization_ids": hc_ids, "units_per_request": units_per_request},
    ).fetchall()
    offending, exhausted, mixed = [], 0, 0
    for row in outcomes:
        # Both flags only steer the check; the offending rows need not carry them.
        missing = bool(row.pop("missing")) | bool(row.pop("missing_baseline"))
        if missing:
            row["problem"] = "missing"
            offending.append(row)
            continue
        if row["other_rows"]:
            mixed += 1  # releases or other sizes: the simple expectation does not apply
            continue
        expected = row["available_at_baseline"] // units_per_request
        room_left = row["total_units"] - row["used_units"] - row["scheduled_units"]
        if row["reservations"] < expected and room_left >= units_per_request:
            continue  # not exhausted: the run was too short to use it up
        exhausted += 1
        row["expected_reservations"] = expected
        if row["reservations"] != expected:
            row["problem"] = "over_reserved" if row["reservations"] > expected else "under_reserved"
            offending.append(row)
    if outcomes and not exhausted and not offending and mixed < len(outcomes):
        # The scenario exists to exhaust these: none exhausted means the contention never
        # happened (every request refused as unauthorized, say), not that all is well.
        offending.append(
            {
                "problem": "none_exhausted",
                "authorizations": len(outcomes),
                "units_per_request": units_per_request,
            }
        )
    detail = (
        f"{exhausted} of {len(outcomes)} high-contention authorizations exhausted "
        f"at {units_per_request} units per request"
        + (f"; {mixed} skipped (ledger holds other operations)" if mixed else "")
    )
    return _result(CONTENTION_EXPECTATION, offending, row_limit, detail=detail)


def check_exactly_once(
    conn: psycopg.Connection[Any], keyed: KeyedHistory, has_key_column: bool, row_limit: int
) -> tuple[CheckResult, ...]:
    """Check each logical operation took effect exactly as often as its outcome allows.

    Expects the client_history table and the ledger_keys view of this transaction.
    """
    if not has_key_column:
        reason = "the ledger (unit_transactions) has no idempotency_key column"
        return tuple(_not_checked(name, reason) for name in EXACTLY_ONCE_CHECKS)
    ledger_keyed = conn.execute(query("keyed_ledger_rows")).fetchone()
    keyed_rows = int(ledger_keyed["n"]) if ledger_keyed else 0
    if keyed_rows or keyed.operations:
        duplicates = conn.execute(query("keys_with_several_rows")).fetchall()
        one_row = _result(
            ONE_ROW_PER_KEY,
            duplicates,
            row_limit,
            detail=f"{keyed_rows} ledger rows carry a key; "
            f"{len(duplicates)} keys have more than one",
        )
    elif keyed.only_scheduling():
        one_row = _not_applicable(
            ONE_ROW_PER_KEY,
            f"{keyed.why_not_applicable()}, and no ledger row carries an Idempotency-Key",
        )
    else:
        one_row = _not_checked(ONE_ROW_PER_KEY, "no ledger row carries an Idempotency-Key")
    if keyed.only_scheduling():
        return (
            one_row,
            *(
                _not_applicable(name, keyed.why_not_applicable())
                for name in EXACTLY_ONCE_CHECKS[1:]
            ),
        )
    if not keyed.operations:
        reason = keyed.why_none()
        return (one_row, *(_not_checked(name, reason) for name in EXACTLY_ONCE_CHECKS[1:]))
    return (
        one_row,
        _check_operations(conn, OK_OPERATIONS_IN_LEDGER, "ok", keyed, row_limit),
        _check_operations(conn, NO_ROW_FOR_FAILED_OPERATIONS, "fail", keyed, row_limit),
        _check_operations(conn, INFO_OPERATIONS_AT_MOST_ONCE, "info", keyed, row_limit),
    )


def _check_operations(
    conn: psycopg.Connection[Any], name: str, outcome: str, keyed: KeyedHistory, row_limit: int
) -> CheckResult:
    """Hold the client's operations of one outcome against the ledger rows under their keys."""
    rows = conn.execute(query("client_operations_against_ledger"), {"outcome": outcome}).fetchall()
    offending = []
    for row in rows:
        problem = _exactly_once_problem(outcome, row)
        if problem:
            offending.append({"problem": problem, **row})
    counted = keyed.by_outcome.get(outcome, 0)
    applied = sum(1 for row in rows if row["ledger_rows"])
    detail = f"{counted} {outcome} operations, {applied} of them in the ledger"
    return _result(name, offending, row_limit, detail=detail)


def _exactly_once_problem(outcome: str, row: dict[str, Any]) -> str:
    """Name what is wrong with one client operation and its ledger rows, or return ""."""
    rows, match = row["ledger_rows"], row["rows_match"]
    if outcome == "ok":
        if rows == 0:
            return "ok_not_in_ledger"
        if not match or not row["has_client_transaction"]:
            return "ok_mismatch"
        return "ok_applied_twice" if rows > 1 else ""
    if outcome == "fail":
        return "failed_but_in_ledger" if rows else ""
    if rows > 1:
        return "info_applied_twice"
    return "info_mismatch" if rows and not match else ""


def _require_seed_baseline(conn: psycopg.Connection[Any]) -> None:
    found = conn.execute("SELECT to_regclass(%s) AS t", (SEED_BASELINE_TABLE,)).fetchone()
    if not found or found["t"] is None:
        raise IntegrityInputError(
            f"table {SEED_BASELINE_TABLE} not found in database {conn.info.dbname}: "
            "seed it first (`invoke load-test.setup`)"
        )


def _load_client_operations(
    conn: psycopg.Connection[Any], scenarios: list[ScenarioRecord], scheduling: SchedulingClient
) -> int:
    """Copy the acknowledged counter operations; count the scheduling ones in ``scheduling``."""
    conn.execute(query("create_client_operations"))
    count = 0
    with conn.cursor().copy(
        "COPY client_operations (transaction_id, authorization_id, kind, units, source) FROM STDIN"
    ) as copy:
        for scenario in scenarios:
            for op in read_operations(scenario.result_dir, scenario.scenario):
                if op.kind == LIST_APPEND_KIND:
                    continue  # no ledger row: anomalies/ checks these
                if op.kind in SCHEDULING_KINDS:
                    # Its ok history operation carries the same session id, and its key.
                    scheduling.acknowledged += 1
                    continue
                copy.write_row(
                    (op.transaction_id, op.authorization_id, op.kind, op.units, op.source)
                )
                count += 1
    conn.execute("ANALYZE client_operations")
    return count


def _load_unanswered_requests(
    conn: psycopg.Connection[Any], scenarios: list[ScenarioRecord], scheduling: SchedulingClient
) -> None:
    """Copy the counter requests that got no response; keep the scheduling ones aside."""
    conn.execute(query("create_client_unanswered"))
    with conn.cursor().copy(
        "COPY client_unanswered (request_id, authorization_id, kind, units, source) FROM STDIN"
    ) as copy:
        for scenario in scenarios:
            for request in read_unanswered(
                scenario.result_dir, scenario.scenario, scenario.unanswered_requests
            ):
                if request.kind in SCHEDULING_KINDS:
                    scheduling.unanswered.append(request)
                    continue
                copy.write_row(
                    (
                        request.request_id,
                        request.authorization_id,
                        request.kind,
                        request.units,
                        request.source,
                    )
                )
    conn.execute("ANALYZE client_unanswered")


@dataclass
class KeyedHistory:
    """What the generator's histories hold: keyed operations by outcome, and what was missing."""

    operations: int = 0  # counter operations (reserve, release, consume)
    by_outcome: dict[str, int] = field(default_factory=dict)
    without_history: list[str] = field(default_factory=list)  # result folders with no file
    scheduling_operations: int = 0  # book, cancel, complete: the scheduling checks read them
    list_transactions: int = 0  # isolation_append's transactions: anomalies/ checks them

    def only_scheduling(self) -> bool:
        """Tell whether every history was read and held scheduling or list-append ones only."""
        others = self.scheduling_operations + self.list_transactions
        return not self.operations and not self.without_history and others > 0

    def why_not_applicable(self) -> str:
        return ONLY_SCHEDULING if self.scheduling_operations else ONLY_LIST_APPEND

    def why_none(self) -> str:
        if self.without_history:
            return (
                f"no {HISTORY_FILE} in {', '.join(self.without_history)} "
                "(results written before operations had Idempotency-Keys)"
            )
        return f"the {HISTORY_FILE} holds no operation with an Idempotency-Key"


def _load_client_history(
    conn: psycopg.Connection[Any], scenarios: list[ScenarioRecord], scheduling: SchedulingClient
) -> KeyedHistory:
    """Copy the keyed counter operations of every history; keep the scheduling ones aside."""
    conn.execute(query("create_client_history"))
    keyed = KeyedHistory()
    with conn.cursor().copy(
        "COPY client_history (idempotency_key, outcome, kind, authorization_id, units, "
        "transaction_id, attempts, process, source) FROM STDIN"
    ) as copy:
        for scenario in scenarios:
            operations = read_history(scenario.result_dir, scenario.scenario)
            if operations is None:
                keyed.without_history.append(str(scenario.result_dir))
                continue
            for op in operations:
                if op.kind == LIST_APPEND_KIND:
                    keyed.list_transactions += 1
                    continue
                if op.kind in SCHEDULING_KINDS:
                    scheduling.operations.append(op)
                    keyed.scheduling_operations += 1
                    continue
                copy.write_row(
                    (
                        op.idempotency_key,
                        op.outcome,
                        op.kind,
                        op.authorization_id,
                        op.units,
                        op.transaction_id,
                        op.attempts,
                        op.process,
                        op.source,
                    )
                )
                keyed.operations += 1
                keyed.by_outcome[op.outcome] = keyed.by_outcome.get(op.outcome, 0) + 1
    conn.execute("ANALYZE client_history")
    return keyed


def _create_ledger_keys(conn: psycopg.Connection[Any]) -> bool:
    """Create the ledger_keys view; return whether the ledger has an idempotency_key column."""
    found = conn.execute(query("has_idempotency_key_column")).fetchone()
    present = bool(found and found["present"])
    conn.execute(query("create_ledger_keys" if present else "create_ledger_keys_without_column"))
    return present


def _not_checked(name: str, reason: str) -> CheckResult:
    return not_checked(name, DESCRIPTIONS[name], reason)


def _not_applicable(name: str, reason: str) -> CheckResult:
    """Return a pass that held nothing to check, saying why (unlike NOT CHECKED, no doubt)."""
    return CheckResult(
        name, DESCRIPTIONS[name], ok=True, violations=0, detail=f"not applicable: {reason}"
    )


def _result(
    name: str, rows: list[dict[str, Any]], row_limit: int, *, detail: str = ""
) -> CheckResult:
    return CheckResult(
        name=name,
        description=DESCRIPTIONS[name],
        ok=not rows,
        violations=len(rows),
        rows=tuple(plain_row(row) for row in rows[:row_limit]),
        detail=detail,
    )


def _count_by(rows: Iterable[dict[str, Any]], key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[key]] = counts.get(row[key], 0) + 1
    return counts
