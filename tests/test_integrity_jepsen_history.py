"""history.jsonl: attempts become Jepsen operations (results.history) and read back (integrity).

Hand-picked attempts with exact expected events: ordering, nanosecond times, Jepsen's process
rule (a fresh process after an `info`), and the reader's pairing of invokes and completions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integrity.history import IntegrityInputError, read_history
from results.files import HISTORY_FILE
from results.history import history_events, history_lines, logical_operations
from results.record_format import Record


def attempt(
    key: str,
    number: int,
    status: int,
    started_s: float,
    *,
    worker: str = "100-0",
    outcome: str = "",
    transaction_id: str = "",
    code: str = "",
) -> Record:
    return Record(
        request_id=f"{key}-{number}", operation="reserve", authorization_id="auth-1",
        status=status, code=code, latency_ms=100.0, started_s=started_s,
        transaction_id=transaction_id, kind="reserve", units=10, idempotency_key=key,
        attempt=number, worker=worker, outcome=outcome,
    )  # fmt: skip


RECORDS = [
    # User A: an operation unknown after two attempts, then one done at the first try.
    attempt("k1", 1, 0, 1.0, code="timeout"),
    attempt("k1", 2, 503, 1.2, code="unavailable", outcome="info"),
    attempt("k2", 1, 200, 2.0, outcome="ok", transaction_id="t2"),
    # User B: refused for good, its answer on a retry.
    attempt("k3", 1, 503, 1.05, worker="101-0", code="unavailable"),
    attempt("k3", 2, 409, 1.5, worker="101-0", code="insufficient_units", outcome="fail"),
]


def test_attempts_group_into_operations_with_their_outcome_and_latency() -> None:
    operations = {op.idempotency_key: op for op in logical_operations(RECORDS)}
    assert {key: (op.outcome, op.attempts) for key, op in operations.items()} == {
        "k1": ("info", 2),
        "k2": ("ok", 1),
        "k3": ("fail", 2),
    }
    # First (intended) start to last end, the pause between the attempts included.
    assert operations["k1"].latency_ms == pytest.approx(300.0)
    assert operations["k3"].request_ids == ("k3-1", "k3-2")
    assert operations["k2"].transaction_id == "t2"


def test_history_is_in_time_order_with_a_fresh_process_after_info() -> None:
    events = history_events(logical_operations(RECORDS))
    assert [
        (e["index"], e["time"], e["process"], e["type"], e["value"]["key"]) for e in events
    ] == [
        (0, 1_000_000_000, 0, "invoke", "k1"),
        (1, 1_050_000_000, 1, "invoke", "k3"),
        (2, 1_300_000_000, 0, "info", "k1"),
        (3, 1_600_000_000, 1, "fail", "k3"),
        (4, 2_000_000_000, 2, "invoke", "k2"),  # user A after an info: process 0 + 2 users
        (5, 2_100_000_000, 2, "ok", "k2"),
    ]
    assert events[2]["error"] == "unavailable"
    assert events[5]["value"]["transaction_id"] == "t2"
    assert "error" not in events[5]
    assert events[5]["attempts"] == 1


def test_an_open_model_slot_due_early_waits_for_the_previous_completion() -> None:
    late = [
        attempt("a", 1, 200, 1.0, outcome="ok", transaction_id="t1"),  # ends at 1.1
        attempt("b", 1, 200, 1.05, outcome="ok", transaction_id="t2"),  # intended start 1.05
    ]
    events = history_events(logical_operations(late))
    assert [(e["type"], e["time"]) for e in events] == [
        ("invoke", 1_000_000_000),
        ("ok", 1_100_000_000),
        ("invoke", 1_100_000_000),
        ("ok", 1_150_000_000),
    ]


def test_integrity_reads_back_what_the_runner_writes(tmp_path: Path) -> None:
    (tmp_path / HISTORY_FILE).write_text("".join(line + "\n" for line in history_lines(RECORDS)))
    operations = read_history(tmp_path, "mixed_operations")
    assert operations is not None
    assert sorted((op.idempotency_key, op.outcome, op.attempts) for op in operations) == [
        ("k1", "info", 2),
        ("k2", "ok", 1),
        ("k3", "fail", 2),
    ]


def test_an_invoke_never_completed_reads_as_info(tmp_path: Path) -> None:
    invoke = {"index": 0, "time": 5, "process": 4, "type": "invoke", "f": "reserve",
              "value": {"authorization": "auth-1", "units": 10, "key": "k9"}}  # fmt: skip
    (tmp_path / HISTORY_FILE).write_text(json.dumps(invoke) + "\n")
    (operation,) = read_history(tmp_path, "s") or []
    assert (operation.idempotency_key, operation.outcome) == ("k9", "info")


def test_a_folder_without_history_is_none_and_a_bad_line_is_one_clear_error(
    tmp_path: Path,
) -> None:
    assert read_history(tmp_path, "s") is None
    (tmp_path / HISTORY_FILE).write_text('{"process": "x"}\n')
    with pytest.raises(IntegrityInputError, match=f"{HISTORY_FILE}:1: malformed"):
        read_history(tmp_path, "s")
