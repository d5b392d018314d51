"""Turn attempts into logical operations and a Jepsen-shaped history (JSON Lines).

A logical operation is every attempt sent under one Idempotency-Key; its outcome is the one
its last attempt carries: `ok`, `fail` (a definite refusal) or `info` (still unknown). The
history holds one `invoke` and one completion per operation, as Jepsen, Knossos and Elle read
them: `index`, `time` (nanoseconds since the run started), `process`, `type`, `f`, `value`.

Processes follow Jepsen's rule: each virtual user is one single-threaded process, and after an
`info` (its operation may still be running somewhere) it continues as a fresh process, number
plus the count of users, so no process ever has two operations open.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from molotov_scenarios.records import NO_RESPONSE_STATUS, Record, is_error
from results.latency import latency_summary

OK, FAIL, INFO = "ok", "fail", "info"
INVOKE = "invoke"
NANOSECONDS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True)
class LogicalOperation:
    """One change the user meant to make once, and how its attempts ended."""

    idempotency_key: str  # "" for a record written before operations had keys
    f: str  # reserve, release or consume
    authorization_id: str
    units: int
    worker: str
    invoked_s: float  # the first attempt's (intended) start, seconds since the run started
    completed_s: float  # the last attempt's end
    outcome: str  # ok, fail or info
    attempts: int
    transaction_id: str  # the ledger id of an ok operation, "" otherwise
    code: str  # the last attempt's error code, "" for ok
    request_ids: tuple[str, ...]

    @property
    def latency_ms(self) -> float:
        """Return the operation's latency: first (intended) start to last end, pauses included."""
        return (self.completed_s - self.invoked_s) * 1000


def logical_operations(records: Iterable[Record]) -> list[LogicalOperation]:
    """Group attempts by Idempotency-Key into operations, ordered by when they were invoked."""
    grouped: dict[str, list[Record]] = {}
    operations: list[LogicalOperation] = []
    for record in records:
        if record.idempotency_key:
            grouped.setdefault(record.idempotency_key, []).append(record)
        else:
            operations.append(_operation([record], _legacy_outcome(record)))
    for attempts in grouped.values():
        attempts.sort(key=lambda record: record.attempt)
        # An operation whose last attempt carries no outcome was cut short (the process
        # stopped mid-operation): it may or may not have happened.
        operations.append(_operation(attempts, attempts[-1].outcome or INFO))
    operations.sort(key=lambda operation: (operation.invoked_s, operation.idempotency_key))
    return operations


def history_events(operations: Sequence[LogicalOperation]) -> list[dict[str, object]]:
    """Return the history: one invoke and one completion per operation, in time order."""
    workers = sorted(
        {operation.worker for operation in operations if operation.worker},
        key=lambda worker: min(op.invoked_s for op in operations if op.worker == worker),
    )
    base = {worker: number for number, worker in enumerate(workers)}
    concurrency = max(len(workers), 1)
    process_of = dict(base)
    free_from: dict[str, float] = {}
    unkeyed = len(workers)  # an old record's operation gets a process of its own
    events: list[tuple[float, int, dict[str, object]]] = []
    for operation in sorted(operations, key=lambda op: (op.worker, op.invoked_s)):
        if operation.worker:
            process = process_of[operation.worker]
            # Under the open model a slot can be due before the user's previous call ended;
            # a process is single-threaded, so its invoke waits for that end.
            invoked_s = max(operation.invoked_s, free_from.get(operation.worker, -1e18))
            free_from[operation.worker] = operation.completed_s
            if operation.outcome == INFO:
                process_of[operation.worker] = process + concurrency
        else:
            process, unkeyed = unkeyed, unkeyed + 1
            invoked_s = operation.invoked_s
        value: dict[str, object] = {
            "authorization": operation.authorization_id,
            "units": operation.units,
            "key": operation.idempotency_key or None,
        }
        invoke = {"process": process, "type": INVOKE, "f": operation.f, "value": value}
        completion: dict[str, object] = {
            "process": process,
            "type": operation.outcome,
            "f": operation.f,
            "value": {**value, "transaction_id": operation.transaction_id or None},
            "attempts": operation.attempts,
        }
        if operation.outcome != OK:
            completion["error"] = operation.code or None
        # At one instant a completion goes before an invoke: the process is free again.
        events.append((invoked_s, 1, invoke))
        events.append((max(operation.completed_s, invoked_s), 0, completion))
    events.sort(key=lambda event: (event[0], event[1]))
    return [
        {"index": index, "time": round(at_s * NANOSECONDS_PER_SECOND), **event}
        for index, (at_s, _, event) in enumerate(events)
    ]


def history_lines(records: Iterable[Record]) -> Iterator[str]:
    """Yield the history as JSON Lines, one event per line (no trailing newline)."""
    for event in history_events(logical_operations(records)):
        yield json.dumps(event, separators=(",", ":"))


def summarise_operations(operations: Sequence[LogicalOperation]) -> dict[str, object]:
    """Count operations by outcome and retries, and time them from first start to last end."""
    return {
        "operations": len(operations),
        "keyed": sum(1 for operation in operations if operation.idempotency_key),
        "by_outcome": {
            outcome: sum(1 for operation in operations if operation.outcome == outcome)
            for outcome in (OK, FAIL, INFO)
        },
        "retried": sum(1 for operation in operations if operation.attempts > 1),
        "attempts": sum(operation.attempts for operation in operations),
        "max_attempts": max((operation.attempts for operation in operations), default=0),
        "latency_ms": latency_summary(operation.latency_ms for operation in operations),
    }


def _operation(attempts: Sequence[Record], outcome: str) -> LogicalOperation:
    first, last = attempts[0], attempts[-1]
    return LogicalOperation(
        idempotency_key=first.idempotency_key,
        f=first.operation,
        authorization_id=first.authorization_id,
        units=first.units,
        worker=first.worker,
        invoked_s=first.started_s,
        completed_s=max(a.started_s + a.latency_ms / 1000 for a in attempts),
        outcome=outcome,
        attempts=len(attempts),
        transaction_id=last.transaction_id if outcome == OK else "",
        code="" if outcome == OK else last.code,
        request_ids=tuple(a.request_id for a in attempts),
    )


def _legacy_outcome(record: Record) -> str:
    """Judge a keyless record as the retrying client would judge its single attempt."""
    if not is_error(record.status, record.code):
        return OK
    if record.status == NO_RESPONSE_STATUS or record.status >= 500 or 200 <= record.status < 300:
        return INFO
    return FAIL
