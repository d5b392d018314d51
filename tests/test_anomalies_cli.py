"""The check-history command: exit codes, its one-line errors, where anomalies.json goes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from anomalies.cli import EXIT_ANOMALIES, EXIT_BAD_INPUT, EXIT_VALID, check_history_command


def txn_events(process: int, value: list[list[Any]], outcome: str = "ok") -> list[dict[str, Any]]:
    invoked = [[f, k, None if f == "r" else v] for f, k, v in value]
    return [
        {"process": process, "type": "invoke", "f": "txn", "value": invoked},
        {"process": process, "type": outcome, "f": "txn", "value": value},
    ]


WRITE_SKEW = [
    *txn_events(0, [["append", "x", 1], ["r", "y", []]]),
    *txn_events(1, [["append", "y", 1], ["r", "x", []]]),
]
SERIAL = [
    *txn_events(0, [["append", "x", 1]]),
    *txn_events(1, [["r", "x", [1]], ["append", "y", 1]]),
]


def write_history(path: Path, events: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"index": i, "time": i * 1000, **e}) for i, e in enumerate(events)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_valid_history_exits_0_and_writes_anomalies_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = write_history(tmp_path / "history.jsonl", SERIAL)
    assert check_history_command(str(history)) == EXIT_VALID
    written = json.loads((tmp_path / "anomalies.json").read_text(encoding="utf-8"))
    assert written["valid"] is True
    assert written["transactions"] == {"ok": 2, "fail": 0, "info": 0}
    assert "VALID: consistent with serializable" in capsys.readouterr().out


def test_forbidden_anomaly_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = write_history(tmp_path / "history.jsonl", WRITE_SKEW)
    assert check_history_command(str(history)) == EXIT_ANOMALIES
    out = capsys.readouterr().out
    assert "INVALID: not serializable (G2-item)" in out
    assert "consistent with: snapshot-isolation" in out
    # Snapshot isolation allows a write skew.
    assert check_history_command(str(history), require="snapshot-isolation") == EXIT_VALID


def test_run_folder_prefers_the_isolation_append_scenario(tmp_path: Path) -> None:
    write_history(tmp_path / "isolation_append" / "history.jsonl", WRITE_SKEW)
    reservations = [{"process": 0, "type": "invoke", "f": "reserve", "value": {"units": 1}}]
    write_history(tmp_path / "a_reservations" / "history.jsonl", reservations)
    out = tmp_path / "elsewhere"
    assert check_history_command(str(tmp_path), out=str(out)) == EXIT_ANOMALIES
    assert json.loads((out / "anomalies.json").read_text(encoding="utf-8"))["anomaly_counts"] == {
        "G2-item": 1
    }
    assert not (tmp_path / "isolation_append" / "anomalies.json").exists()


def test_malformed_line_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = write_history(tmp_path / "history.jsonl", SERIAL)
    with history.open("a", encoding="utf-8") as handle:
        handle.write('{"process": 3, "type": "invoke", "f": "txn", "value": [["append", "x"\n')
    assert check_history_command(str(history)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("check-history: ")
    assert "line 5: not valid JSON" in err


def test_bad_micro_operation_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = [{"process": 0, "type": "invoke", "f": "txn", "value": [["write", "x", 1]]}]
    history = write_history(tmp_path / "history.jsonl", events)
    assert check_history_command(str(history)) == EXIT_BAD_INPUT
    assert "line 1: a micro-operation must be" in capsys.readouterr().err


def test_reservation_history_is_not_a_list_append_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [
        {"process": 0, "type": "invoke", "f": "reserve", "value": {"units": 2}},
        {"process": 0, "type": "ok", "f": "reserve", "value": {"units": 2}},
    ]
    history = write_history(tmp_path / "history.jsonl", events)
    assert check_history_command(str(history)) == EXIT_BAD_INPUT
    assert "not a list-append history" in capsys.readouterr().err


def test_unknown_model_and_missing_path_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = write_history(tmp_path / "history.jsonl", SERIAL)
    assert check_history_command(str(history), require="snapshot") == EXIT_BAD_INPUT
    assert "unknown consistency model 'snapshot'" in capsys.readouterr().err
    assert check_history_command(str(tmp_path / "nowhere")) == EXIT_BAD_INPUT
    assert "no such file or folder" in capsys.readouterr().err


def test_python_dash_m(tmp_path: Path) -> None:
    history = write_history(tmp_path / "history.jsonl", WRITE_SKEW)
    done = subprocess.run(
        [sys.executable, "-m", "anomalies", str(history), "--require", "repeatable-read"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == EXIT_ANOMALIES
    assert "INVALID: not repeatable-read (G2-item)" in done.stdout
