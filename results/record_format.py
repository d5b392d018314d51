"""The record format: one CSV row per request (attempt), its status constants, live buckets.

The contract between the writers and the readers of raw/records-<pid>.csv: the scenarios
(molotov_scenarios/recorder.py) write it, load_runner/ and results/ read it. This module says
what a record is; results/records.py merges the records of every process.

A logical operation (one reserve, release or consume the user meant to make once) is sent
with one Idempotency-Key and may take several attempts: one record each, all carrying that
key, the last one carrying the operation's final outcome.
"""

from __future__ import annotations

import math
from collections import Counter
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
    "idempotency_key",
    "attempt",
    "worker",
    "outcome",
)
# Records written before operations had keys: the first ten fields only.
LEGACY_RECORD_FIELDS = RECORD_FIELDS[:10]
NO_RESPONSE_STATUS = 0
CONNECTION_ERROR = "connection_error"
TIMEOUT = "timeout"
# Live progress keeps log-spaced buckets 2 % wide: its p95 is within 2 % of the exact value.
LIVE_BUCKET_GROWTH = 1.02
LIVE_BUCKET_FLOOR_MS = 0.01
_LOG_GROWTH = math.log(LIVE_BUCKET_GROWTH)


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
    # The Idempotency-Key of the logical operation this attempt belongs to ("" in old records).
    idempotency_key: str = ""
    attempt: int = 1  # 1 for the first attempt of an operation, 2 for its first retry...
    worker: str = ""  # "<pid>-<molotov worker id>": the virtual user that sent it
    # On the attempt that ended its operation: ok, fail (a definite refusal) or info (outcome
    # still unknown); "" on an attempt that was retried.
    outcome: str = ""


def is_error(status: int, code: str = "") -> bool:
    """Tell whether a request failed: no 2xx, no response at all, or a 2xx the client rejected.

    A 2xx carries an empty code unless the scenario found its body unusable (for example no
    `transaction_id`), which it marks with a code of its own: that is an error too.
    """
    return not 200 <= status < 300 or bool(code)


def unanswered_requests(records: Iterable[Record]) -> Iterator[tuple[str, str, str, int]]:
    """Yield (request_id, authorization_id, kind, units) for every request that got no response.

    Such a request may still have committed on the server: the integrity check excuses a
    ledger row the client never saw only when it carries one of these request ids.
    """
    for record in records:
        if record.status == NO_RESPONSE_STATUS:
            yield record.request_id, record.authorization_id, record.kind, record.units


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
        record.idempotency_key,
        str(record.attempt),
        record.worker,
        record.outcome,
    ]


def decode_record(cells: Sequence[str]) -> Record:
    """Turn CSV cells back into a record; raise ValueError on a malformed row.

    A row of the ten legacy fields (no keys) reads as a one-attempt operation without a key.
    """
    if len(cells) not in (len(RECORD_FIELDS), len(LEGACY_RECORD_FIELDS)):
        raise ValueError(
            f"expected {len(LEGACY_RECORD_FIELDS)} fields (a record without keys) or "
            f"{len(RECORD_FIELDS)}, got {len(cells)}: {cells!r}"
        )
    keyed = len(cells) == len(RECORD_FIELDS)
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
        idempotency_key=cells[10] if keyed else "",
        attempt=int(cells[11]) if keyed else 1,
        worker=cells[12] if keyed else "",
        outcome=cells[13] if keyed else "",
    )


def live_bucket(latency_ms: float) -> int:
    """Return the live-progress bucket of a latency: bucket i holds (floor·g^(i-1), floor·g^i]."""
    if latency_ms <= LIVE_BUCKET_FLOOR_MS:
        return 0
    return math.ceil(math.log(latency_ms / LIVE_BUCKET_FLOOR_MS) / _LOG_GROWTH - 1e-9)


def live_bucket_upper_ms(bucket: int) -> float:
    """Return the upper bound (ms) of a live-progress bucket."""
    return LIVE_BUCKET_FLOOR_MS * LIVE_BUCKET_GROWTH**bucket


def add_to_live_buckets(buckets: Counter[int], latencies_ms: Iterable[float]) -> None:
    """Add latencies to live-progress bucket counts."""
    buckets.update(live_bucket(latency) for latency in latencies_ms)
