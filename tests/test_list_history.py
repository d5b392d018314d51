"""The list-append scenario's history: records and side files in, Elle's txn events out.

Hand-made records and txns-<pid>.jsonl lines for a few transactions, one of them an append
whose answer never came (info); the history must carry Elle's list-append values, retire the
process after the info, and be judged by the checker as the rules say. Then what the
verdict and the report make of anomalies.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from anomalies import check_history, read_events
from molotov_scenarios.transactions import TransactionLog
from reporting.isolation import isolation_reasons, isolation_summary, verdict_line
from results.history import history_lines
from results.list_history import read_transaction_values
from results.record_format import Record

USERS = 2


def txn_record(
    key: str, worker: str, started_s: float, ended_s: float, status: int, outcome: str
) -> Record:
    return Record(
        request_id=f"{worker}-{key}",
        operation="txn",
        authorization_id="a1",
        status=status,
        code="" if status == 200 else "timeout",
        latency_ms=(ended_s - started_s) * 1000,
        started_s=started_s,
        transaction_id=f"t-{key}" if status == 200 else "",
        kind="txn",
        units=1,
        idempotency_key=key,
        attempt=1,
        worker=worker,
        outcome=outcome,
    )


def answer(ops: list[list[Any]]) -> bytes:
    return json.dumps({"transaction_id": "t", "ops": ops}).encode()


def write_run(raw: Path, read_by_a: list[int]) -> list[Record]:
    """Four transactions of two users; user A's second append (2) got no answer (info)."""
    log = TransactionLog(raw, 101)
    log.write("k1", [["append", "x", 1]], answer([["append", "x", 1]]))
    log.write("k2", [["append", "x", 2]], None)
    log.write("k3", [["r", "x", None]], answer([["r", "x", read_by_a]]))
    log.write("k4", [["r", "x", None]], answer([["r", "x", [1]]]))
    return [
        txn_record("k1", "101-1", 0.0, 0.1, 200, "ok"),
        txn_record("k2", "101-1", 0.2, 5.2, 0, "info"),
        txn_record("k3", "101-1", 5.3, 5.4, 200, "ok"),
        txn_record("k4", "101-2", 0.15, 0.18, 200, "ok"),
    ]


def history(tmp_path: Path, read_by_a: list[int]) -> list[dict[str, Any]]:
    records = write_run(tmp_path / "raw", read_by_a)
    lines = history_lines(records, read_transaction_values(tmp_path / "raw"))
    return [json.loads(line) for line in lines]


def test_an_unanswered_append_is_info_and_its_process_retires(tmp_path: Path) -> None:
    events = history(tmp_path, [1, 2])
    info = next(e for e in events if e["type"] == "info")
    assert info["f"] == "txn"
    assert info["value"] == [["append", "x", 2]]
    assert info["request_id"] == "101-1-k2"
    assert info["error"] == "timeout"
    invokes = [e for e in events if e["type"] == "invoke"]
    assert [e["value"] for e in invokes] == [
        [["append", "x", 1]],
        [["r", "x", None]],
        [["append", "x", 2]],
        [["r", "x", None]],
    ]
    # After the info, user A goes on as a new process (Jepsen's rule).
    processes = [e["process"] for e in invokes]
    assert processes == [0, 1, 0, 0 + USERS]
    last_ok = events[-1]
    assert last_ok["type"] == "ok"
    assert last_ok["value"] == [["r", "x", [1, 2]]]


def test_the_checker_lets_an_info_append_have_committed_or_not(tmp_path: Path) -> None:
    committed = check_history(read_events([json.dumps(e) for e in history(tmp_path, [1, 2])]))
    assert committed.valid, committed.summary()
    assert committed.transactions == {"ok": 3, "fail": 0, "info": 1}
    not_committed = check_history(
        read_events([json.dumps(e) for e in history(tmp_path / "b", [1])])
    )
    assert not_committed.valid, not_committed.summary()


def test_reads_in_contradicting_orders_are_an_anomaly(tmp_path: Path) -> None:
    # The same history with user A reading [2, 1] while user B read [1]: no version order fits.
    result = check_history(read_events([json.dumps(e) for e in history(tmp_path, [2, 1])]))
    assert not result.valid
    assert "incompatible-order" in result.anomaly_counts


ANOMALIES = {
    "valid": False,
    "required_model": "serializable",
    "anomaly_counts": {"G2-item": 3},
    "forbidden_kinds": ["G2-item"],
    "consistent_with": ["snapshot-isolation"],
    "transactions": {"ok": 10, "fail": 1, "info": 0},
    "anomalies": {
        "G2-item": [
            {
                "kind": "G2-item",
                "text": "T1 < T2 < T1",
                "transactions": [
                    {
                        "name": "T1",
                        "process": 1,
                        "outcome": "ok",
                        "invoke_index": 0,
                        "complete_index": 3,
                        "request_id": "1-1",
                        "invoke_time_s": 0.1,
                        "complete_time_s": 0.2,
                        "operations": ["r 1 []", "append 2 5"],
                    },
                    {
                        "name": "T2",
                        "process": 2,
                        "outcome": "ok",
                        "invoke_index": 1,
                        "complete_index": 2,
                        "request_id": "1-2",
                        "invoke_time_s": 0.1,
                        "complete_time_s": 0.2,
                        "operations": ["r 2 []", "append 1 6"],
                    },
                ],
                "steps": [
                    {
                        "source": "T1",
                        "target": "T2",
                        "kind": "rw",
                        "key": 1,
                        "value": None,
                        "next_value": 6,
                        "text": "T1 read key 1 as [] before T2 appended 6",
                    },
                    {
                        "source": "T2",
                        "target": "T1",
                        "kind": "rw",
                        "key": 2,
                        "value": None,
                        "next_value": 5,
                        "text": "T2 read key 2 as [] before T1 appended 5",
                    },
                ],
                "details": {},
            }
        ]
    },
}
RESULT = {"config": {"required_model": "serializable"}}


def test_a_forbidden_anomaly_is_no_go_with_the_verdict_line() -> None:
    assert verdict_line(ANOMALIES) == (
        "not serializable (G2-item); consistent with snapshot-isolation"
    )
    ((blocks, reason),) = isolation_reasons(RESULT, ANOMALIES)
    assert blocks
    assert reason.endswith("G2-item x3")
    summary = isolation_summary(ANOMALIES)
    assert summary is not None
    assert summary["anomaly_counts"] == {"G2-item": 3}
    assert "T1 read key 1 as [] before T2 appended 6" in summary["cycle_html"]


def test_allowed_anomalies_are_told_and_a_missing_check_is_no_go() -> None:
    allowed = {
        **ANOMALIES,
        "valid": True,
        "required_model": "snapshot-isolation",
        "forbidden_kinds": [],
    }
    ((blocks, reason),) = isolation_reasons(RESULT, allowed)
    assert not blocks
    assert "G2-item x3" in reason
    ((blocks, reason),) = isolation_reasons(RESULT, None)
    assert blocks
    assert reason == "the history was not checked against serializable"
    assert isolation_reasons({"config": {}}, None) == []
    unreadable = {"valid": False, "required_model": "serializable", "error": "line 3: not JSON"}
    ((blocks, reason),) = isolation_reasons(RESULT, unreadable)
    assert blocks
    assert "line 3: not JSON" in reason
