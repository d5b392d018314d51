"""The list-append scenario's transactions, read back for the history (Elle's list-append shape).

Each Molotov process wrote `raw/txns-<pid>.jsonl` (molotov_scenarios/transactions.py): per
transaction its Idempotency-Key, the micro-operations sent and, when it ended ok, the service's
answer with the reads filled in. The history writer (results/history.py) looks each `txn`
operation up by its key: the invoke carries the ops as sent (reads null), an ok completion the
ops as answered, a fail or info completion the ops as sent.

Kept as compact JSON text per key (a few hundred bytes a transaction), not as Python lists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from results.files import TRANSACTIONS_PREFIX, TRANSACTIONS_SUFFIX

LIST_APPEND_F = "txn"


class TransactionValues(NamedTuple):
    """One transaction's micro-operations as JSON text: as sent, and as answered (or None)."""

    sent: str
    completed: str | None

    def invoke_value(self) -> list[Any]:
        return json.loads(self.sent)  # type: ignore[no-any-return]

    def completed_value(self) -> list[Any] | None:
        return None if self.completed is None else json.loads(self.completed)


class TransactionFileError(ValueError):
    """A txns-<pid>.jsonl line that is not a transaction."""


def read_transaction_values(raw_dir: Path) -> dict[str, TransactionValues]:
    """Return every transaction of a run's raw folder by its key ({} when there are none)."""
    values: dict[str, TransactionValues] = {}
    for path in sorted(Path(raw_dir).glob(f"{TRANSACTIONS_PREFIX}*{TRANSACTIONS_SUFFIX}")):
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    key, ops, completed = entry["key"], entry["ops"], entry["completed"]
                except (ValueError, KeyError, TypeError):
                    # A process stopped mid-line leaves its last line cut short.
                    raise TransactionFileError(
                        f"{path}, line {line_number}: not a transaction"
                    ) from None
                values[key] = TransactionValues(
                    json.dumps(ops, separators=(",", ":")),
                    None if completed is None else json.dumps(completed, separators=(",", ":")),
                )
    return values


def list_append_value(
    values: Mapping[str, TransactionValues], key: str, outcome: str | None
) -> tuple[list[Any], str | None] | None:
    """Return a txn event's value and, for an ok without reads, the outcome it must take.

    ``outcome`` None asks for the invoke's value. An ok transaction whose answer was not
    recorded cannot say what it read: it becomes info (done, but unknown what it saw).
    None when the transaction is not in the side files.
    """
    found = values.get(key)
    if found is None:
        return None
    if outcome == "ok":
        completed = found.completed_value()
        if completed is not None:
            return completed, None
        return found.invoke_value(), "info"
    return found.invoke_value(), None
