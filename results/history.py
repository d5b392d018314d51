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

import heapq
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

from results.latency import latency_summary
from results.list_history import LIST_APPEND_F, TransactionValues, list_append_value
from results.record_format import NO_RESPONSE_STATUS, Record
from results.record_table import RecordTable

OK, FAIL, INFO = "ok", "fail", "info"
OUTCOMES = (OK, FAIL, INFO)
_CHUNK = 8_192  # operations (or events) turned into Python values at a time
_COMPLETION, _INVOKE = 0, 1  # at one instant a completion comes first
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


class OperationTable(Sequence[LogicalOperation]):
    """Every logical operation of a run as columns over the records' table.

    One row per operation, ordered by when it was invoked: the rows of its first
    and last attempts, how many attempts it took, when it was invoked and completed, and its
    outcome. Iterating gives LogicalOperations, made one at a time.
    """

    def __init__(self, records: Iterable[Record]) -> None:
        table = self.records = RecordTable.from_records(records)
        keys = table.idempotency_key
        # Rows by key, then attempt (the unkeyed ones form groups too: split apart below).
        by_key = np.lexsort((table.attempt, *keys.sort_keys()))
        changed = np.zeros(max(len(by_key) - 1, 0), dtype=bool)
        for column in keys.sort_keys():
            ordered = column[by_key]
            changed |= ordered[1:] != ordered[:-1]
        del ordered
        unkeyed = ~keys.present()[by_key]
        # A group starts where the key changes; an unkeyed row is an operation of its own.
        starts = np.flatnonzero(np.r_[True, changed | unkeyed[1:]]) if len(by_key) else by_key
        del changed
        ends = np.r_[starts[1:], len(by_key)] if len(starts) else starts
        first_row = by_key[starts].astype(np.int32)
        last_row = by_key[ends - 1].astype(np.int32)
        attempts = (ends - starts).astype(np.int16)
        del ends
        completed = table.completed_s[by_key]
        completed_s = np.maximum.reduceat(completed, starts) if len(starts) else completed
        del completed, by_key
        # A keyed operation's outcome is its last attempt's; one whose last attempt carries none
        # was cut short (the process stopped mid-operation): it may or may not have happened.
        outcome_codes = np.array([OUTCOMES.index(o) if o in OUTCOMES else OUTCOMES.index(INFO)
                                  for o in table.outcome.labels], dtype=np.int8)  # fmt: skip
        outcome = outcome_codes[table.outcome.codes[last_row]] if len(outcome_codes) else starts
        legacy = ~keys.present()[first_row]
        outcome[legacy] = _legacy_outcomes(table, first_row[legacy])
        # By invocation, then (equal times) by the row of the first attempt.
        order = np.lexsort((first_row, table.started_s[first_row]))
        self.first_row, self.last_row = first_row[order], last_row[order]
        self.attempts = attempts[order]
        self.completed_s = completed_s[order]
        self.outcome = outcome[order].astype(np.int8)  # index into OUTCOMES

    @property
    def invoked_s(self) -> np.ndarray:
        """Return when each operation was invoked: its first attempt's (intended) start."""
        return self.records.started_s[self.first_row]

    def __len__(self) -> int:
        return len(self.first_row)

    @overload
    def __getitem__(self, index: int) -> LogicalOperation: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[LogicalOperation]: ...
    def __getitem__(self, index: int | slice) -> LogicalOperation | Sequence[LogicalOperation]:
        if isinstance(index, slice):
            return [self[position] for position in range(len(self))[index]]
        return self._operation(range(len(self))[index])

    def latency_ms(self) -> np.ndarray:
        """Return each operation's latency: first (intended) start to last end, pauses included."""
        return (self.completed_s - self.invoked_s) * 1000

    def _operation(self, position: int) -> LogicalOperation:
        first = self.records[int(self.first_row[position])]
        last = self.records[int(self.last_row[position])]
        outcome = OUTCOMES[self.outcome[position]]
        members = np.array([self.first_row[position]])
        if first.idempotency_key:  # every attempt sent under the key, in order
            keys = self.records.idempotency_key
            same = np.ones(len(keys), dtype=bool)
            for column in keys.sort_keys():
                same &= column == column[self.first_row[position]]
            members = np.flatnonzero(same)
            members = members[np.argsort(self.records.attempt[members], kind="stable")]
        return LogicalOperation(
            idempotency_key=first.idempotency_key,
            f=first.operation,
            authorization_id=first.authorization_id,
            units=first.units,
            worker=first.worker,
            invoked_s=first.started_s,
            completed_s=float(self.completed_s[position]),
            outcome=outcome,
            attempts=int(self.attempts[position]),
            transaction_id=last.transaction_id if outcome == OK else "",
            code="" if outcome == OK else last.code,
            request_ids=tuple(self.records.request_id.texts(members)),
        )


def logical_operations(records: Iterable[Record]) -> OperationTable:
    """Group attempts by Idempotency-Key into operations, ordered by when they were invoked."""
    return OperationTable(records)


def history_events(operations: OperationTable) -> list[dict[str, object]]:
    """Return the history: one invoke and one completion per operation, in time order."""
    return list(iter_history_events(operations))


def iter_history_events(
    operations: OperationTable, transactions: Mapping[str, TransactionValues] | None = None
) -> Iterator[dict[str, object]]:
    """Yield the history's events in time order, a chunk at a time (a run's million
    operations never become two million dicts at once).

    ``transactions``: the list-append scenario's micro-operations by key; its `txn` events
    then carry them as Elle's list-append value, and its completions the last request id.
    """
    table = operations.records
    worker = table.worker.codes[operations.first_row]
    invoked = operations.invoked_s
    labels = table.worker.labels
    named = np.array([bool(label) for label in labels], dtype=bool)
    named_ops = named[worker]
    # Each user is a process, numbered by when it first invoked anything (then by name).
    first_invoked = np.full(len(labels), np.inf)
    np.minimum.at(first_invoked, worker[named_ops], invoked[named_ops])
    users = [code for code in range(len(labels)) if named[code]]
    users.sort(key=lambda code: (first_invoked[code], labels[code]))
    process_of = {code: number for number, code in enumerate(users)}
    concurrency = max(len(users), 1)
    unkeyed = len(users)  # an old record's operation gets a process of its own
    # Walk each user's operations in order (the unnamed ones first, as "" sorts first).
    name_rank = np.argsort(np.argsort(np.array(labels, dtype=object)))
    walk = np.lexsort((invoked, name_rank[worker])).astype(np.int32)
    process = np.empty(len(operations), dtype=np.int32)
    invoke_at = np.empty(len(operations), dtype=np.float64)
    free_from: dict[int, float] = {}
    info = OUTCOMES.index(INFO)
    for begin in range(0, len(walk), _CHUNK):
        rows = walk[begin : begin + _CHUNK]
        chunk = zip(rows.tolist(), worker[rows].tolist(), named_ops[rows].tolist(),
                    invoked[rows].tolist(), operations.completed_s[rows].tolist(),
                    operations.outcome[rows].tolist(), strict=True)  # fmt: skip
        for row, user, is_named, invoked_s, completed_s, outcome in chunk:
            if is_named:
                number = process_of[user]
                # Under the open model a slot can be due before the user's previous call
                # ended; a process is single-threaded, so its invoke waits for that end.
                invoked_s = max(invoked_s, free_from.get(user, -1e18))
                free_from[user] = completed_s
                if outcome == info:
                    process_of[user] = number + concurrency
            else:
                number, unkeyed = unkeyed, unkeyed + 1
            process[row], invoke_at[row] = number, invoked_s
    # Two events per operation, in time order; at one instant a completion goes before an
    # invoke (the process is free again), and otherwise the walk's order holds. Each kind is
    # sorted on its own (stably: in walk order at equal times) and the two merged as written.
    del worker, named_ops, invoked
    invoke_at = invoke_at[walk]
    completion_at = np.maximum(operations.completed_s[walk], invoke_at)
    by_completion = np.argsort(completion_at, kind="stable").astype(np.int32)
    by_invoke = np.argsort(invoke_at, kind="stable").astype(np.int32)
    events = heapq.merge(
        _timed(completion_at, by_completion, _COMPLETION), _timed(invoke_at, by_invoke, _INVOKE)
    )
    index = 0
    while batch := list(itertools.islice(events, _CHUNK)):
        ops = walk[np.array([position for _, _, position in batch], dtype=np.int64)]
        first, last = operations.first_row[ops], operations.last_row[ops]
        chunk = zip(batch, process[ops].tolist(), operations.outcome[ops].tolist(),
                    operations.attempts[ops].tolist(), table.operation.texts(first),
                    table.authorization_id.texts(first), table.units[first].tolist(),
                    table.idempotency_key.texts(first), table.transaction_id.texts(last),
                    table.code.texts(last), strict=True)  # fmt: skip
        last_request = table.request_id.texts(last) if transactions else None
        for position, ((at_s, kind, _), number, outcome, attempts, f, *about) in enumerate(chunk):
            authorization, units, key, transaction_id, code = about
            value: dict[str, object] = {"authorization": authorization, "units": units,
                                        "key": key or None}  # fmt: skip
            head = {"index": index, "time": round(at_s * NANOSECONDS_PER_SECOND),
                    "process": number}  # fmt: skip
            index += 1
            if transactions is not None and last_request is not None and f == LIST_APPEND_F:
                yield _list_append_event(head, kind, OUTCOMES[outcome], attempts, code, value,
                                         transactions, last_request[position])  # fmt: skip
                continue
            if kind == _INVOKE:
                yield {**head, "type": INVOKE, "f": f, "value": value}
                continue
            ended = OUTCOMES[outcome]
            completion: dict[str, object] = {
                **head,
                "type": ended,
                "f": f,
                "value": {**value, "transaction_id": (transaction_id or None)
                          if ended == OK else None},
                "attempts": attempts,
            }  # fmt: skip
            if ended != OK:
                completion["error"] = code or None
            yield completion


def _list_append_event(
    head: dict[str, object],
    kind: int,
    ended: str,
    attempts: int,
    code: str,
    value: dict[str, object],
    transactions: Mapping[str, TransactionValues],
    request_id: str,
) -> dict[str, object]:
    """Return a `txn` event with Elle's list-append value (reads null unless it ended ok)."""
    found = list_append_value(transactions, str(value["key"] or ""), None if kind == _INVOKE
                              else ended)  # fmt: skip
    # Not in the side files: the generic value, which the checker refuses as bad input.
    ops: object = value if found is None else found[0]
    if kind == _INVOKE:
        return {**head, "type": INVOKE, "f": LIST_APPEND_F, "value": ops}
    if found is not None and found[1] is not None:
        ended, code = found[1], code or "unrecorded_answer"
    completion = {**head, "type": ended, "f": LIST_APPEND_F, "value": ops, "attempts": attempts,
                  "request_id": request_id}  # fmt: skip
    if ended != OK:
        completion["error"] = code or None
    return completion


def _timed(times: np.ndarray, order: np.ndarray, kind: int) -> Iterator[tuple[float, int, int]]:
    """Yield (time, kind, walk position) in ``order``, a chunk of Python values at a time."""
    for begin in range(0, len(order), _CHUNK):
        positions = order[begin : begin + _CHUNK].tolist()
        for at_s, position in zip(times[positions].tolist(), positions, strict=True):
            yield at_s, kind, position


def history_lines(
    records: Iterable[Record], transactions: Mapping[str, TransactionValues] | None = None
) -> Iterator[str]:
    """Yield the history as JSON Lines, one event per line (no trailing newline)."""
    for event in iter_history_events(logical_operations(records), transactions):
        yield json.dumps(event, separators=(",", ":"))


def summarise_operations(operations: OperationTable) -> dict[str, object]:
    """Count operations by outcome and retries, and time them from first start to last end."""
    keyed = operations.records.idempotency_key.present()[operations.first_row]
    counts = np.bincount(operations.outcome, minlength=len(OUTCOMES)).tolist()
    return {
        "operations": len(operations),
        "keyed": int(keyed.sum()),
        "by_outcome": {outcome: counts[OUTCOMES.index(outcome)] for outcome in (OK, FAIL, INFO)},
        "retried": int((operations.attempts > 1).sum()),
        "attempts": int(operations.attempts.sum()),
        "max_attempts": int(operations.attempts.max()) if len(operations) else 0,
        "latency_ms": latency_summary(operations.latency_ms()),
    }


def _legacy_outcomes(table: RecordTable, rows: np.ndarray) -> np.ndarray:
    """Judge keyless records as the retrying client would judge their single attempt."""
    status = table.status[rows]
    ok = ~table.error[rows]
    unknown = (status == NO_RESPONSE_STATUS) | (status >= 500) | ((status >= 200) & (status < 300))
    return np.where(ok, OUTCOMES.index(OK), np.where(unknown, OUTCOMES.index(INFO),
                    OUTCOMES.index(FAIL))).astype(np.int8)  # fmt: skip
