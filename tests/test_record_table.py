"""results.record_table: records as compact columns give back exactly the records put in.

The summaries of a run read these columns, so a lossy column would be a wrong figure: every id
shape is checked to come back character for character, and the table's size per record is the
figure the shard memory benchmark (benchmarks/shard_memory.py) depends on.
"""

from __future__ import annotations

import random
import uuid

import numpy as np
import pytest

from results.record_format import Record
from results.record_table import RecordTable, RecordTableBuilder, split_id
from results.records import DuplicateRecordError, merge_records

ODD_IDS = [
    "",
    "0",
    "007",  # a leading zero: not a number that comes back the same
    "s1-12345-678",
    "s2-12345-0",
    "r-",
    "-",
    "k3-1",
    str(uuid.UUID(int=0)),
    str(uuid.UUID(int=2**128 - 1)),
    str(uuid.UUID(int=5)).upper(),  # upper-case hex: kept as text
    "s1-" + "f" * 32,
    "s1-" + "F" * 32,
    "x" * 31,
    "ünïcode-12",
    "12345678901234567890123",  # too long for a 64-bit sequence number
]


def record(request_id: str, transaction_id: str, key: str, **fields: object) -> Record:
    values: dict[str, object] = {
        "request_id": request_id, "operation": "reserve", "authorization_id": "auth-1",
        "status": 200, "code": "", "latency_ms": 12.345678901, "started_s": 0.1 + 1e-12,
        "transaction_id": transaction_id, "kind": "reserve", "units": 3,
        "idempotency_key": key, "attempt": 1, "worker": "s1-100-0", "outcome": "ok",
    }  # fmt: skip
    values.update(fields)
    return Record(**values)  # type: ignore[arg-type]


def test_every_id_shape_comes_back_character_for_character() -> None:
    rng = random.Random(3)
    records = [
        record(
            request_id=rng.choice(ODD_IDS) + str(n),
            transaction_id=rng.choice(ODD_IDS),
            key=rng.choice(ODD_IDS),
            status=rng.choice((0, 200, 409, 503)),
            code=rng.choice(("", "timeout", "insufficient_units")),
            worker=f"s{n % 3}-{n % 7}",
            attempt=n % 5 + 1,
            units=n * 1000,
        )
        for n in range(2_000)
    ]
    table = RecordTable.from_records(records)
    assert list(table) == records
    assert table[17] == records[17]
    assert table[-1] == records[-1]
    assert list(table.take(np.array([5, 3]))) == [records[5], records[3]]


def test_a_uuid_and_a_key_become_a_number_and_back() -> None:
    key = "s1-" + "0123456789abcdef" * 2
    assert split_id(key) == ("h:s1-", int("0123456789abcdef" * 2, 16))
    assert split_id("s1-9-42") == ("d:s1-9-", 42)
    assert split_id("007") is None
    assert split_id("A" * 32) is None


def test_more_labels_than_a_byte_can_code_widen_the_column() -> None:
    builder = RecordTableBuilder(capacity=10)  # fewer rows than will come: the columns grow
    records = [record(f"r-{n}", "", "", authorization_id=f"auth-{n}") for n in range(70_000)]
    for item in records:
        builder.add(item)
    table = builder.build()
    assert table.authorization_id.codes.dtype.itemsize == 4
    assert list(table)[::9_999] == records[::9_999]


def test_a_million_records_take_well_under_a_hundred_megabytes() -> None:
    # Measured on 100,000 realistic records; the shard memory benchmark runs the million.
    rng = random.Random(1)
    builder = RecordTableBuilder(capacity=100_000)
    for n in range(100_000):
        builder.add(
            record(
                f"s1-4242-{n}",
                str(uuid.UUID(int=rng.getrandbits(128), version=4)) if n % 10 else "",
                f"s1-{rng.getrandbits(128):032x}",
                authorization_id=f"auth-{n % 55}",
                latency_ms=rng.uniform(1, 50),
                started_s=n / 1000,
            )
        )
    table = builder.build()
    bytes_per_record = sum(
        array.nbytes
        for array in _arrays(table)
        if array.strides != (0,)  # a broadcast of zeros takes no memory
    ) / len(table)
    assert bytes_per_record <= 80


def test_a_request_recorded_twice_is_refused() -> None:
    first = record("s1-1-1", "", "s1-" + "a" * 32)
    with pytest.raises(DuplicateRecordError, match="request s1-1-1 was recorded twice"):
        merge_records([[first], [first._replace(attempt=2)]])
    with pytest.raises(DuplicateRecordError, match=r"attempt 1 of operation s1-a+ was recorded"):
        merge_records([[first], [first._replace(request_id="s1-1-2")]])
    later = first._replace(request_id="s1-1-3", idempotency_key="s1-" + "b" * 32, started_s=0.5)
    merged = merge_records([[first._replace(started_s=2.0)], [later]])
    assert [r.started_s for r in merged] == [0.5, 2.0]


def _arrays(table: RecordTable) -> list[np.ndarray]:
    arrays: list[np.ndarray] = []
    for name in ("request_id", "transaction_id", "idempotency_key"):
        ids = getattr(table, name)
        arrays += [ids.forms.codes, ids.high, ids.low]
    for name in ("operation", "authorization_id", "code", "kind", "worker", "outcome"):
        arrays.append(getattr(table, name).codes)
    for name in ("status", "latency_ms", "started_s", "units", "attempt"):
        arrays.append(getattr(table, name))
    return arrays
