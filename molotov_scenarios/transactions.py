"""The list-append scenario's side file: what each transaction asked and what it read.

The records (one CSV row per attempt) say how an operation ended; they have no room for a
transaction's micro-operations. Each Molotov process appends one JSON line per transaction to
`raw/txns-<pid>.jsonl` as it ends, keyed by the operation's Idempotency-Key:

    {"key": "hex", "ops": [["append", 3, 7], ["r", 5, null]], "completed": [...] | null}

`completed` is the service's answer (reads filled in) for an ok transaction, null otherwise.
Written line by line (nothing kept in memory); results/list_history.py reads the files back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from results.files import TRANSACTIONS_PREFIX, TRANSACTIONS_SUFFIX


def transactions_path(record_dir: Path, pid: int) -> Path:
    """Return where the process ``pid`` writes its transactions."""
    return record_dir / f"{TRANSACTIONS_PREFIX}{pid}{TRANSACTIONS_SUFFIX}"


def completed_ops(body: bytes) -> list[Any] | None:
    """Return the micro-operations of an ok answer's body; None when it holds none."""
    try:
        ops = json.loads(body).get("ops")
    except (ValueError, AttributeError):
        return None
    return ops if isinstance(ops, list) and ops else None


class TransactionLog:
    """One process's txns-<pid>.jsonl, appended a line per transaction."""

    def __init__(self, record_dir: Path, pid: int) -> None:
        record_dir.mkdir(parents=True, exist_ok=True)
        # Line-buffered: each line reaches the file as it is written, so a process that is
        # stopped hard (Molotov ends its children without a teardown) loses none.
        self._handle: TextIO = transactions_path(record_dir, pid).open("a", buffering=1)

    def write(self, key: str, ops: list[Any], body: bytes | None) -> None:
        """Append one transaction: its ops and, when ``body`` is an ok answer, what it read."""
        completed = None if body is None else completed_ops(body)
        line = {"key": key, "ops": ops, "completed": completed}
        self._handle.write(json.dumps(line, separators=(",", ":")) + "\n")
