"""Merge the records of every generator process, each request (attempt) exactly once.

A record is one attempt; the attempts of one logical operation share its Idempotency-Key
(results.history groups them). Only a 2xx ends an operation as ok, so an operation yields at
most one successful record, and a replayed answer carries the original transaction id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from molotov_scenarios.records import Record, is_error


class DuplicateRecordError(ValueError):
    """Raised when two records carry the same request id: a request would count twice."""


def merge_records(per_process: Iterable[Iterable[Record]]) -> list[Record]:
    """Merge every process's records into one list, refusing a request recorded twice."""
    merged: list[Record] = []
    seen: set[str] = set()
    attempts: set[tuple[str, int]] = set()
    for records in per_process:
        for record in records:
            if record.request_id in seen:
                raise DuplicateRecordError(f"request {record.request_id} was recorded twice")
            seen.add(record.request_id)
            if record.idempotency_key:
                attempt = (record.idempotency_key, record.attempt)
                if attempt in attempts:
                    raise DuplicateRecordError(
                        f"attempt {record.attempt} of operation {record.idempotency_key} "
                        "was recorded twice"
                    )
                attempts.add(attempt)
            merged.append(record)
    merged.sort(key=lambda record: record.started_s)
    return merged


def successful_operations(records: Iterable[Record]) -> Iterator[tuple[str, str, str, int]]:
    """Yield (transaction_id, authorization_id, kind, units) for every 2xx the generator saw."""
    for record in records:
        if not is_error(record.status, record.code) and record.transaction_id:
            yield record.transaction_id, record.authorization_id, record.kind, record.units
