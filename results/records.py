"""Merge the records of every generator process, each request exactly once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from molotov_scenarios.records import Record, is_error


class DuplicateRecordError(ValueError):
    """Raised when two records carry the same request id: a request would count twice."""


def merge_records(per_process: Iterable[Iterable[Record]]) -> list[Record]:
    """Merge every process's records into one list, refusing a request recorded twice."""
    merged: list[Record] = []
    seen: set[str] = set()
    for records in per_process:
        for record in records:
            if record.request_id in seen:
                raise DuplicateRecordError(f"request {record.request_id} was recorded twice")
            seen.add(record.request_id)
            merged.append(record)
    merged.sort(key=lambda record: record.started_s)
    return merged


def successful_operations(records: Iterable[Record]) -> Iterator[tuple[str, str, str, int]]:
    """Yield (transaction_id, authorization_id, kind, units) for every 2xx the generator saw."""
    for record in records:
        if not is_error(record.status, record.code) and record.transaction_id:
            yield record.transaction_id, record.authorization_id, record.kind, record.units
