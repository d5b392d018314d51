"""Merge the records of every generator process, each request (attempt) exactly once.

What a record is, and how it is written, is results/record_format.py; this module merges them.

A record is one attempt; the attempts of one logical operation share its Idempotency-Key
(results.history groups them). Only a 2xx ends an operation as ok, so an operation yields at
most one successful record, and a replayed answer carries the original transaction id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from results.record_format import Record, is_error
from results.record_table import RecordTable


class DuplicateRecordError(ValueError):
    """Raised when two records carry the same request id: a request would count twice."""


def merge_records(per_process: Iterable[Iterable[Record]]) -> RecordTable:
    """Merge every process's records into one table ordered by start, refusing a request
    recorded twice."""
    table = RecordTable.from_records(record for records in per_process for record in records)
    check_each_request_once(table)
    sort_by_start(table)
    return table


def check_each_request_once(table: RecordTable) -> None:
    """Raise DuplicateRecordError when a request id, or an operation's attempt, appears twice."""
    requests = table.request_id
    order = np.lexsort(requests.sort_keys())
    twice = _first_repeat(order, *requests.sort_keys())
    if twice is not None:
        raise DuplicateRecordError(f"request {requests.texts(slice(twice, twice + 1))[0]} "
                                   "was recorded twice")  # fmt: skip
    keys = table.idempotency_key
    keyed = np.flatnonzero(keys.present())
    sort_keys = (table.attempt[keyed], *(column[keyed] for column in keys.sort_keys()))
    twice = _first_repeat(np.lexsort(sort_keys), *sort_keys)
    if twice is not None:
        row = keyed[twice]
        raise DuplicateRecordError(
            f"attempt {table.attempt[row]} of operation "
            f"{keys.texts(slice(row, row + 1))[0]} was recorded twice"
        )


def _first_repeat(order: np.ndarray, *columns: np.ndarray) -> int | None:
    """Return the position of a row equal in every column to the one before it in ``order``."""
    if len(order) < 2:
        return None
    same = np.ones(len(order) - 1, dtype=bool)
    for column in columns:
        ordered = column[order]
        same &= ordered[1:] == ordered[:-1]
    repeats = np.flatnonzero(same)
    return int(order[repeats[0] + 1]) if len(repeats) else None


def sort_by_start(table: RecordTable) -> None:
    """Order the records by when they started (ties keep their order)."""
    table.reorder(np.argsort(table.started_s, kind="stable"))


def successful_operations(records: Iterable[Record]) -> Iterator[tuple[str, str, str, int]]:
    """Yield (transaction_id, authorization_id, kind, units) for every 2xx the generator saw."""
    for record in records:
        if not is_error(record.status, record.code) and record.transaction_id:
            yield record.transaction_id, record.authorization_id, record.kind, record.units
