"""Read what the load generator saw: result.json, operations.csv, unanswered.csv and the
Jepsen-shaped history.jsonl (one invoke and one completion per logical operation) of a run."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from results.files import HISTORY_FILE, OPERATIONS_FILE, RESULT_FILE, UNANSWERED_FILE

OPERATIONS_HEADER = ("transaction_id", "authorization_id", "kind", "units")
UNANSWERED_HEADER = ("request_id", "authorization_id", "kind", "units")
HISTORY_COMPLETIONS = ("ok", "fail", "info")
HIGH_CONTENTION_SCENARIO = "high_contention"
HIGH_CONTENTION_POOL = "high_contention"
# The session_scheduling scenario's operations: its checks read these and the counter checks
# (the ledger, the exactly-once checks) every other kind, so neither mistakes the other's.
SCHEDULING_KINDS = frozenset({"book", "cancel", "complete"})
# The isolation_append scenario's list-append transactions: they touch no ledger row and no
# session; anomalies/ checks them (anomalies.json). Here they are counted and passed over.
LIST_APPEND_KIND = "txn"
# A request that got no response (status 0) may or may not have taken effect on the server.
NO_RESPONSE_STATUS = "0"


class IntegrityInputError(ValueError):
    """An input the checks cannot read (a missing file, a malformed row)."""


@dataclass(frozen=True)
class ClientOperation:
    """One successful operation the generator recorded."""

    transaction_id: str
    authorization_id: str
    kind: str
    units: int
    source: str


@dataclass(frozen=True)
class UnansweredRequest:
    """One request that got no response: it may or may not have committed on the server."""

    request_id: str
    authorization_id: str
    kind: str
    units: int
    source: str


@dataclass(frozen=True)
class HistoryOperation:
    """One logical operation of the history: what was asked under which key, and its outcome."""

    idempotency_key: str
    outcome: str  # ok, fail or info; an invoke never completed counts as info
    kind: str
    authorization_id: str
    units: int
    transaction_id: str
    attempts: int
    process: int
    source: str


@dataclass(frozen=True)
class ScenarioRecord:
    """The facts of one scenario run the checks need."""

    result_dir: Path
    scenario: str
    units_per_request: int | None
    unanswered_requests: int


def read_scenario(result_dir: Path) -> ScenarioRecord:
    """Read the scenario name, request size and unanswered requests from result.json."""
    path = Path(result_dir) / RESULT_FILE
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IntegrityInputError(f"no {RESULT_FILE} in {result_dir}") from None
    except json.JSONDecodeError as error:
        raise IntegrityInputError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(result, dict):
        raise IntegrityInputError(f"{path} does not hold a JSON object")
    config = result.get("config") or {}
    units = config.get("units_per_request")
    return ScenarioRecord(
        result_dir=Path(result_dir),
        scenario=str(result.get("scenario") or Path(result_dir).name),
        units_per_request=int(units) if units else None,
        unanswered_requests=int((result.get("by_status") or {}).get(NO_RESPONSE_STATUS, 0)),
    )


def read_operations(result_dir: Path, source: str) -> Iterator[ClientOperation]:
    """Yield the successful operations recorded in ``result_dir``/operations.csv."""
    path = Path(result_dir) / OPERATIONS_FILE
    if not path.exists():
        raise IntegrityInputError(f"no {OPERATIONS_FILE} in {result_dir}")
    for row in _csv_rows(path, OPERATIONS_HEADER):
        yield ClientOperation(row[0], row[1], row[2], int(row[3]), source)


def read_unanswered(result_dir: Path, source: str, expected: int) -> Iterator[UnansweredRequest]:
    """Yield the requests without a response listed in ``result_dir``/unanswered.csv.

    A folder without the file (written by an older runner) is accepted only when result.json
    counts no such request; either way the file must list exactly ``expected`` requests.
    """
    path = Path(result_dir) / UNANSWERED_FILE
    if not path.exists():
        if expected:
            raise IntegrityInputError(
                f"{result_dir}: {RESULT_FILE} counts {expected} requests without a response "
                f"but there is no {UNANSWERED_FILE} naming them"
            )
        return
    listed = 0
    for row in _csv_rows(path, UNANSWERED_HEADER, require_first=True):
        listed += 1
        yield UnansweredRequest(row[0], row[1], row[2], int(row[3]), source)
    if listed != expected:
        raise IntegrityInputError(
            f"{path} lists {listed} requests without a response but {RESULT_FILE} counts {expected}"
        )


def read_history(result_dir: Path, source: str) -> list[HistoryOperation] | None:
    """Return the logical operations of ``result_dir``/history.jsonl; None without the file.

    Each invoke is paired with the next completion of the same process (a Jepsen process runs
    one operation at a time); an invoke left open at the end is an `info` operation.
    Operations without a key (records written before keys) are left out.
    """
    path = Path(result_dir) / HISTORY_FILE
    if not path.exists():
        return None
    open_invokes: dict[int, dict[str, object]] = {}
    operations: list[HistoryOperation] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            event = _history_event(path, line_number, line)
            process = event["process"]
            if event["type"] == "invoke":
                if process in open_invokes:
                    raise IntegrityInputError(
                        f"{path}:{line_number}: process {process} invoked twice without a "
                        "completion"
                    )
                open_invokes[process] = event
                continue
            invoke = open_invokes.pop(process, None)
            if invoke is None:
                raise IntegrityInputError(
                    f"{path}:{line_number}: a completion of process {process} without an invoke"
                )
            operations.append(_history_operation(path, line_number, event, source))
    operations.extend(
        _history_operation(path, 0, {**invoke, "type": "info"}, source)
        for invoke in open_invokes.values()
    )
    return [
        operation
        for operation in operations
        if operation.idempotency_key or operation.kind == LIST_APPEND_KIND
    ]


def _history_event(path: Path, line_number: int, line: str) -> dict[str, object]:
    try:
        event = json.loads(line)
    except json.JSONDecodeError as error:
        raise IntegrityInputError(f"{path}:{line_number}: not JSON: {error}") from None
    valid = (
        isinstance(event, dict)
        and isinstance(event.get("process"), int)
        and event.get("type") in ("invoke", *HISTORY_COMPLETIONS)
        and isinstance(event.get("f"), str)
        and (isinstance(event.get("value"), dict) or event.get("f") == LIST_APPEND_KIND)
    )
    if not valid:
        raise IntegrityInputError(f"{path}:{line_number}: malformed history event {line.strip()!r}")
    return event


def _history_operation(
    path: Path, line_number: int, event: dict[str, object], source: str
) -> HistoryOperation:
    attempts = event.get("attempts")
    if event["f"] == LIST_APPEND_KIND:
        # Its value is the micro-operations; the checks only count it.
        return HistoryOperation("", str(event["type"]), LIST_APPEND_KIND, "", 0, "",
                                attempts if isinstance(attempts, int) else 0,
                                int(event["process"]), source)  # type: ignore[call-overload]  # fmt: skip
    value = event["value"]
    assert isinstance(value, dict)
    key, units = value.get("key"), value.get("units")
    if not isinstance(units, int) or not isinstance(value.get("authorization"), str):
        raise IntegrityInputError(
            f"{path}:{line_number}: history value needs authorization and units: {value!r}"
        )
    return HistoryOperation(
        idempotency_key=key if isinstance(key, str) else "",
        outcome=str(event["type"]),
        kind=str(event["f"]),
        authorization_id=str(value["authorization"]),
        units=units,
        transaction_id=str(value.get("transaction_id") or ""),
        attempts=attempts if isinstance(attempts, int) else 0,
        process=int(event["process"]),  # type: ignore[call-overload]
        source=source,
    )


def _csv_rows(
    path: Path, header: tuple[str, ...], *, require_first: bool = False
) -> Iterator[list[str]]:
    """Yield the rows of a result CSV whose header and columns (…, units) are as expected."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        found = tuple(next(reader, ()))
        if found != header:
            raise IntegrityInputError(
                f"{path}: header must be {','.join(header)}, not {','.join(found)}"
            )
        for line_number, row in enumerate(reader, start=2):
            malformed = len(row) != len(header) or not row[3].strip().isdigit()
            if malformed or (require_first and not row[0]):
                raise IntegrityInputError(f"{path}:{line_number}: malformed row {row!r}")
            yield row


def read_high_contention_ids(fixtures_path: Path) -> list[str]:
    """Return the ids of the high-contention authorizations listed in the fixtures."""
    try:
        fixtures = json.loads(Path(fixtures_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IntegrityInputError(
            f"fixtures file {fixtures_path} not found: run `invoke load-test.setup`"
        ) from None
    except json.JSONDecodeError as error:
        raise IntegrityInputError(f"{fixtures_path} is not valid JSON: {error}") from None
    try:
        pool = fixtures["pools"][HIGH_CONTENTION_POOL]
        return [str(entry["id"]) for entry in pool]
    except (KeyError, TypeError):
        raise IntegrityInputError(
            f"{fixtures_path} has no pools.{HIGH_CONTENTION_POOL} list of authorizations"
        ) from None
