"""Read a Jepsen-shaped list-append history (history.jsonl) into paired, interned transactions.

Every line is one event: an `invoke`, then the same process's `ok`, `fail` or `info`. Only
events with `"f": "txn"` are transactions; others (a nemesis, a reservation scenario) are passed
over. Keys are interned to small ints. A read is not kept as its list: every read of a key that
agrees with the others is a prefix of the longest, so a read is kept as (path, length) into a
few shared lists per key, which keeps memory linear in the number of appends.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from results.files import HISTORY_FILE

TXN_FUNCTION = "txn"
COMPLETIONS = ("ok", "fail", "info")
EVENT_TYPES = ("invoke", *COMPLETIONS)
# The scenario whose folder a run folder is searched for first.
ISOLATION_SCENARIO = "isolation_append"
# Lines looked at when deciding whether a scenario's history holds transactions at all.
SNIFF_LINES = 200


class HistoryInputError(ValueError):
    """A history the checker cannot read: a missing file, a malformed line, no transactions."""


class Append(NamedTuple):
    """An append of `value` to the key numbered `key`."""

    key: int
    value: int


class Read(NamedTuple):
    """A read of the key numbered `key`: the first `length` elements of one of its paths.

    `path` is -1 when the value is unknown (a read of a transaction that did not complete ok).
    """

    key: int
    path: int
    length: int


MicroOp = Append | Read


@dataclass(slots=True)
class Transaction:
    """One invoke with its completion; an invoke never completed is `info`."""

    id: int
    process: int | str
    outcome: str
    invoke_index: int
    complete_index: int | None
    invoke_time: int | None
    complete_time: int | None
    request_id: str | None
    mops: tuple[MicroOp, ...]


@dataclass(slots=True)
class KeyReads:
    """The lists read from one key: `paths[longest]` is the longest; a read is (path, length).

    While every read is a prefix of one list there is one path. A read that disagrees starts
    a path of its own and marks the key's order incompatible.
    """

    paths: list[list[int]] = field(default_factory=lambda: [[]])
    longest: int = 0
    conflict: tuple[tuple[int, int], tuple[int, int]] | None = None

    def observe(self, values: list[int]) -> tuple[int, int]:
        """Record one read and return its (path, length)."""
        length = len(values)
        found = self._place(self.longest, values)
        if found is not None:
            return found
        for path_number in range(len(self.paths)):
            if path_number != self.longest:
                found = self._place(path_number, values)
                if found is not None:
                    return found
        self.paths.append(list(values))
        new_path = len(self.paths) - 1
        if self.conflict is None:
            self.conflict = ((self.longest, len(self.paths[self.longest])), (new_path, length))
        if length > len(self.paths[self.longest]):
            self.longest = new_path
        return new_path, length

    def _place(self, path_number: int, values: list[int]) -> tuple[int, int] | None:
        path = self.paths[path_number]
        length, known = len(values), len(path)
        if length <= known:
            return (path_number, length) if path[:length] == values else None
        if values[:known] != path:
            return None
        path.extend(values[known:])
        if length > len(self.paths[self.longest]):
            self.longest = path_number
        return path_number, length

    def values(self, path: int, length: int) -> list[int]:
        """Return the list a read saw."""
        return self.paths[path][:length]

    def last(self, path: int, length: int) -> int | None:
        """Return the last element a read saw; None for the empty list."""
        return self.paths[path][length - 1] if length else None


@dataclass
class ParsedHistory:
    """The transactions of a history, their keys and reads, and the order of their events."""

    source: str
    transactions: list[Transaction]
    key_names: list[str | int]
    key_reads: list[KeyReads]
    # Event order: +(id + 1) for an invoke, -(id + 1) for a completion.
    events: array
    # Read values exactly as seen by ok transactions, checked while reading (see checker).
    internal_cases: list[tuple[int, int, list[int], list[Any]]]
    future_read_cases: list[tuple[int, int, int]]
    duplicate_cases: list[tuple[int, int, dict[int, int]]]

    def key_name(self, key: int) -> str | int:
        """Return a key as the history spelled it."""
        return self.key_names[key]

    def read_values(self, read: Read) -> list[int]:
        """Return the list a read saw."""
        return self.key_reads[read.key].values(read.path, read.length)

    def read_last(self, read: Read) -> int | None:
        """Return the last element a read saw; None for the empty list."""
        return self.key_reads[read.key].last(read.path, read.length)


def find_history_file(path: str | Path) -> Path:
    """Return the history file a path names: the file itself or one inside a run folder.

    A folder is searched for history.jsonl, then isolation_append/history.jsonl, then any
    scenario's history.jsonl that holds transactions.
    """
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    if not candidate.is_dir():
        raise HistoryInputError(f"{candidate}: no such file or folder")
    for direct in (candidate / HISTORY_FILE, candidate / ISOLATION_SCENARIO / HISTORY_FILE):
        if direct.is_file():
            return direct
    scenario_histories = sorted(candidate.glob(f"*/{HISTORY_FILE}"))
    for scenario_history in scenario_histories:
        if _has_transactions(scenario_history):
            return scenario_history
    if scenario_histories:
        raise HistoryInputError(
            f"{candidate}: no scenario's {HISTORY_FILE} holds a list-append transaction "
            f'(an event with "f": "{TXN_FUNCTION}")'
        )
    raise HistoryInputError(f"{candidate}: no {HISTORY_FILE} in the folder or its scenarios")


def _has_transactions(path: Path) -> bool:
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle):
            if line_number >= SNIFF_LINES:
                return False
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("f") == TXN_FUNCTION:
                return True
    return False


@dataclass(slots=True)
class _OpenInvoke:
    id: int
    process: int | str
    line: int
    index: int
    time: int | None
    value: list[Any]


class _Reader:
    """The state of one pass over a history file."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.transactions: list[Transaction | None] = []
        self.key_ids: dict[tuple[type, str | int], int] = {}
        self.key_names: list[str | int] = []
        self.key_reads: list[KeyReads] = []
        self.events = array("i")
        self.open_invokes: dict[int | str, _OpenInvoke] = {}
        self.appended_by: dict[tuple[int, int], int] = {}
        self.internal_cases: list[tuple[int, int, list[int], list[Any]]] = []
        self.future_read_cases: list[tuple[int, int, int]] = []
        self.duplicate_cases: list[tuple[int, int, dict[int, int]]] = []

    def fail(self, line: int, message: str) -> HistoryInputError:
        return HistoryInputError(f"{self.source}, line {line}: {message}")

    def key_id(self, line: int, key: object) -> int:
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise self.fail(line, f"a key must be a string or an integer, not {key!r}")
        interned = (type(key), key)
        number = self.key_ids.get(interned)
        if number is None:
            number = len(self.key_names)
            self.key_ids[interned] = number
            self.key_names.append(key)
            self.key_reads.append(KeyReads())
        return number

    def read_event(self, line: int, event: object) -> None:
        if not isinstance(event, dict):
            raise self.fail(line, "not a JSON object")
        if event.get("f") != TXN_FUNCTION:
            return
        kind = event.get("type")
        if kind not in EVENT_TYPES:
            raise self.fail(line, f'"type" must be one of {", ".join(EVENT_TYPES)}, not {kind!r}')
        process = event.get("process")
        if isinstance(process, bool) or not isinstance(process, int | str):
            raise self.fail(line, f'"process" must be an integer, not {process!r}')
        index = event.get("index", line - 1)
        if isinstance(index, bool) or not isinstance(index, int):
            raise self.fail(line, f'"index" must be an integer, not {index!r}')
        time = event.get("time")
        if time is not None and (isinstance(time, bool) or not isinstance(time, int | float)):
            raise self.fail(line, f'"time" must be a number of nanoseconds, not {time!r}')
        time = None if time is None else int(time)
        value = event.get("value")
        if not isinstance(value, list) or not value:
            raise self.fail(line, '"value" must be a non-empty list of micro-operations')
        if kind == "invoke":
            self.invoke(line, process, index, time, value)
        else:
            request_id = event.get("request_id")
            self.complete(
                line,
                kind,
                process,
                index,
                time,
                value,
                None if request_id is None else str(request_id),
            )

    def invoke(
        self, line: int, process: int | str, index: int, time: int | None, value: list[Any]
    ) -> None:
        if process in self.open_invokes:
            earlier = self.open_invokes[process].line
            raise self.fail(
                line,
                f"process {process} invoked again before completing its invoke on line {earlier}",
            )
        number = len(self.transactions)
        for mop in value:
            function, key, element = self.micro_op(line, mop, invoke=True)
            if function == "append":
                key_number = self.key_id(line, key)
                earlier_txn = self.appended_by.setdefault((key_number, element), number)
                if earlier_txn != number:
                    raise self.fail(
                        line,
                        f"value {element} appended to key {key!r} a second time "
                        "(appended values must be unique per key)",
                    )
        opened = _OpenInvoke(number, process, line, index, time, value)
        self.open_invokes[process] = opened
        self.transactions.append(None)  # filled in on completion
        self.events.append(number + 1)

    def micro_op(self, line: int, mop: object, invoke: bool) -> tuple[str, object, Any]:
        if not isinstance(mop, list) or len(mop) not in (2, 3) or mop[0] not in ("append", "r"):
            raise self.fail(
                line,
                f'a micro-operation must be ["append", key, int] or ["r", key, list], not {mop!r}',
            )
        function, key = mop[0], mop[1]
        element = mop[2] if len(mop) == 3 else None
        if function == "append":
            if isinstance(element, bool) or not isinstance(element, int):
                raise self.fail(line, f"an appended value must be an integer, not {element!r}")
        elif element is not None and not invoke and not _is_int_list(element):
            raise self.fail(line, f"a read must hold a list of integers, not {element!r}")
        return function, key, element

    def complete(
        self,
        line: int,
        kind: str,
        process: int | str,
        index: int,
        time: int | None,
        value: list[Any],
        request_id: str | None,
    ) -> None:
        opened = self.open_invokes.pop(process, None)
        if opened is None:
            raise self.fail(
                line, f"an {kind!r} completion for process {process} with no open invoke"
            )
        if len(value) != len(opened.value):
            raise self.fail(
                line,
                f"the completion has {len(value)} micro-operations but its invoke on line "
                f"{opened.line} has {len(opened.value)}",
            )
        mops: list[MicroOp] = []
        for position, (mop, invoked) in enumerate(zip(value, opened.value, strict=True)):
            function, key, element = self.micro_op(line, mop, invoke=kind != "ok")
            if (
                function != invoked[0]
                or key != invoked[1]
                or (function == "append" and element != invoked[2])
            ):
                raise self.fail(
                    line,
                    f"micro-operation {position} {mop!r} differs from its invoke's {invoked!r} "
                    f"on line {opened.line}",
                )
            key_number = self.key_id(line, key)
            if function == "append":
                mops.append(Append(key_number, element))
            elif kind == "ok":
                read = list(element) if element is not None else []
                path, length = self.key_reads[key_number].observe(read)
                mops.append(Read(key_number, path, length))
            else:
                mops.append(Read(key_number, -1, 0))
        if kind == "ok":
            self.check_internal(opened.id, value)
        self.transactions[opened.id] = Transaction(
            id=opened.id,
            process=process,
            outcome=kind,
            invoke_index=opened.index,
            complete_index=index,
            invoke_time=opened.time,
            complete_time=time,
            request_id=request_id,
            mops=tuple(mops),
        )
        self.events.append(-(opened.id + 1))

    def check_internal(self, txn: int, value: list[Any]) -> None:
        """Note reads that disagree with the transaction's own earlier reads and appends.

        As Elle's INT check: after an append the transaction knows its read ends with what it
        appended; after a read it knows the whole list. Also a read holding an element the
        same transaction appends later (a future read) and a read with duplicate elements.
        """
        expected: dict[tuple[type, object], tuple[bool, list[int]]] = {}
        appends_at: dict[tuple[type, object], list[tuple[int, int]]] = {}
        for position, mop in enumerate(value):
            if mop[0] == "append":
                appends_at.setdefault((type(mop[1]), mop[1]), []).append((position, mop[2]))
        reported_internal = reported_future = False
        for position, mop in enumerate(value):
            key_ref = (type(mop[1]), mop[1])
            if mop[0] == "append":
                prefix_known, state = expected.get(key_ref, (False, []))
                expected[key_ref] = (prefix_known, [*state, mop[2]])
                continue
            read = mop[2] if mop[2] is not None else []
            if len(set(read)) != len(read):
                counts: dict[int, int] = {}
                for element in read:
                    counts[element] = counts.get(element, 0) + 1
                duplicates = {element: n for element, n in counts.items() if n > 1}
                self.duplicate_cases.append((txn, position, duplicates))
            later = [v for at, v in appends_at.get(key_ref, ()) if at > position]
            if later and not reported_future:
                seen = set(read)
                element = next((v for v in later if v in seen), None)
                if element is not None:
                    self.future_read_cases.append((txn, position, element))
                    reported_future = True
            known = expected.get(key_ref)
            if known is not None and not reported_internal:
                prefix_known, state = known
                if prefix_known:
                    disagrees = state != read
                else:
                    start = len(read) - len(state)
                    disagrees = start < 0 or read[start:] != state
                if disagrees:
                    shown: list[Any] = state if prefix_known else ["...", *state]
                    self.internal_cases.append((txn, position, list(read), shown))
                    reported_internal = True
            expected[key_ref] = (True, list(read))

    def finish(self) -> ParsedHistory:
        for opened in self.open_invokes.values():
            # An invoke never completed may or may not have happened: Jepsen's info.
            self.complete_never(opened)
        if not self.transactions:
            raise HistoryInputError(
                f'{self.source}: not a list-append history (no events with "f": "{TXN_FUNCTION}")'
            )
        return ParsedHistory(
            source=self.source,
            transactions=[txn for txn in self.transactions if txn is not None],
            key_names=self.key_names,
            key_reads=self.key_reads,
            events=self.events,
            internal_cases=self.internal_cases,
            future_read_cases=self.future_read_cases,
            duplicate_cases=self.duplicate_cases,
        )

    def complete_never(self, opened: _OpenInvoke) -> None:
        mops: list[MicroOp] = []
        for mop in opened.value:
            key_number = self.key_id(opened.line, mop[1])
            if mop[0] == "append":
                mops.append(Append(key_number, mop[2]))
            else:
                mops.append(Read(key_number, -1, 0))
        self.transactions[opened.id] = Transaction(
            id=opened.id,
            process=opened.process,
            outcome="info",
            invoke_index=opened.index,
            complete_index=None,
            invoke_time=opened.time,
            complete_time=None,
            request_id=None,
            mops=tuple(mops),
        )


_ONLY_INT = {int}


def _is_int_list(element: object) -> bool:
    # map(type) and set() run in C: a third of the reading time went to a per-item isinstance.
    # type(True) is bool, so booleans are refused as well.
    return isinstance(element, list) and (not element or set(map(type, element)) == _ONLY_INT)


def read_history(path: str | Path) -> ParsedHistory:
    """Read and validate a history file or run folder; raise HistoryInputError when malformed."""
    history_file = find_history_file(path)
    reader = _Reader(str(history_file))
    try:
        handle = history_file.open(encoding="utf-8")
    except OSError as error:
        raise HistoryInputError(f"{history_file}: {error.strerror}") from None
    with handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as error:
                raise reader.fail(line_number, f"not valid JSON ({error.msg})") from None
            reader.read_event(line_number, event)
    return reader.finish()


def read_events(lines: Iterator[str] | list[str], source: str = "<history>") -> ParsedHistory:
    """Read a history from JSON lines in memory (tests and generated histories)."""
    reader = _Reader(source)
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as error:
            raise reader.fail(line_number, f"not valid JSON ({error.msg})") from None
        reader.read_event(line_number, event)
    return reader.finish()
