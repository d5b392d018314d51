"""One record per request the generator sent, and how records travel between processes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

RECORD_FIELDS = (
    "request_id",
    "operation",
    "authorization_id",
    "status",
    "code",
    "latency_ms",
    "started_s",
    "transaction_id",
    "kind",
    "units",
)
NO_RESPONSE_STATUS = 0
CONNECTION_ERROR = "connection_error"
TIMEOUT = "timeout"


class Record(NamedTuple):
    """One request: what was asked, what came back, and how long it took end to end."""

    request_id: str
    operation: str
    authorization_id: str
    status: int  # 0 when no response arrived
    code: str  # problem-details `code`, `connection_error`/`timeout`, or "" for a 2xx
    latency_ms: float
    started_s: float  # seconds since the run started (intended start under the open model)
    transaction_id: str  # set for a 2xx only
    kind: str
    units: int


class DuplicateRecordError(ValueError):
    """Raised when two records carry the same request id: a request would count twice."""


def is_error(status: int, code: str = "") -> bool:
    """Tell whether a request failed: no 2xx, no response at all, or a 2xx the client rejected.

    A 2xx carries an empty code unless the scenario found its body unusable (for example no
    `transaction_id`), which it marks with a code of its own: that is an error too.
    """
    return not 200 <= status < 300 or bool(code)


def encode_record(record: Record) -> list[str]:
    """Turn a record into CSV cells."""
    return [
        record.request_id,
        record.operation,
        record.authorization_id,
        str(record.status),
        record.code,
        repr(record.latency_ms),
        repr(record.started_s),
        record.transaction_id,
        record.kind,
        str(record.units),
    ]


def decode_record(cells: Sequence[str]) -> Record:
    """Turn CSV cells back into a record; raise ValueError on a malformed row."""
    if len(cells) != len(RECORD_FIELDS):
        raise ValueError(f"expected {len(RECORD_FIELDS)} fields, got {len(cells)}: {cells!r}")
    return Record(
        request_id=cells[0],
        operation=cells[1],
        authorization_id=cells[2],
        status=int(cells[3]),
        code=cells[4],
        latency_ms=float(cells[5]),
        started_s=float(cells[6]),
        transaction_id=cells[7],
        kind=cells[8],
        units=int(cells[9]),
    )


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
