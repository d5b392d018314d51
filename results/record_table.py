"""Every record of a run as compact numpy columns, so that summarising a run costs little memory.

A Record as Python objects (a 14-field tuple, its strings and floats) takes about 1 KB; a
million of them, one shard's long run, about a gigabyte. Here the same records take about
77 bytes each: times and counts as numbers, the few distinct values of a field (operation,
authorization, code, worker, outcome) as small integer codes into a table of labels, and the
ids (request, transaction, Idempotency-Key) as a form, a prefix and a 128-bit number (Ids).
The summaries (results.summary, results.history, results.stalls, results.organizations) read
the columns directly; anything else still sees a sequence of Records, made on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, overload

import numpy as np

from results.record_format import Record, decode_record

CHUNK_ROWS = 10_000  # rows buffered as Python values before they become numpy columns
ITERATION_CHUNK = 4_096  # records made at a time while iterating


@dataclass
class Labels:
    """A column of few distinct strings: an integer code per row into a table of labels."""

    codes: np.ndarray
    labels: tuple[str, ...]

    def take(self, indexes: np.ndarray | slice) -> Labels:
        return Labels(self.codes[indexes], self.labels)

    def code_of(self, label: str) -> int:
        """Return the code of ``label``, or -1 when no row holds it."""
        return self.labels.index(label) if label in self.labels else -1

    def texts(self, rows: slice | np.ndarray) -> list[str]:
        """Return the labels of ``rows``."""
        labels = self.labels
        return [labels[code] for code in self.codes[rows].tolist()]

    def equals(self, label: str) -> np.ndarray:
        """Return a mask of the rows holding ``label``."""
        return self.codes == self.code_of(label)


_EMPTY, _UUID, _HEX, _DECIMAL, _OTHER = "", "u:", "h:", "d:", "x:"
_HEX_DIGITS = frozenset("0123456789abcdef")
_MASK_64 = 2**64 - 1


@dataclass
class Ids:
    """A column of ids, each kept as its form and prefix (a label) and a 128-bit number.

    The ids a run records are a prefix and a number: a transaction id is a uuid, an
    Idempotency-Key a shard prefix and 32 hex digits, a request id "<shard><pid>-<sequence>".
    Each is kept exactly (the text comes back character for character); one of another shape
    keeps its text in `others`. Two ids are equal exactly when (form, high, low) are.
    """

    forms: Labels  # "" for an empty id, else the form ("u:", "h:", "d:", "x:") and the prefix
    high: np.ndarray  # uint64: the number's upper 64 bits
    low: np.ndarray  # uint64: its lower 64 bits (for "x:", the index of the text in `others`)
    others: tuple[str, ...]

    def take(self, indexes: np.ndarray | slice) -> Ids:
        low = self.low[indexes]
        high = _zeros(len(low)) if self.high.strides == (0,) else self.high[indexes]
        return Ids(self.forms.take(indexes), high, low, self.others)

    def __len__(self) -> int:
        return len(self.low)

    def present(self) -> np.ndarray:
        """Return a mask of the rows whose id is not empty."""
        return ~self.forms.equals(_EMPTY)

    def sort_keys(self) -> tuple[np.ndarray, ...]:
        """Return the columns to np.lexsort by (least significant first) to group equal ids."""
        if self.high.strides == (0,):  # every number below 2**64
            return self.low, self.forms.codes
        return self.low, self.high, self.forms.codes

    def texts(self, rows: slice | np.ndarray) -> list[str]:
        """Return the ids of ``rows`` as text."""
        forms = self.forms.labels
        chunk = zip(self.forms.codes[rows].tolist(), self.high[rows].tolist(),
                    self.low[rows].tolist(), strict=True)  # fmt: skip
        return [self._text(forms[form], high, low) for form, high, low in chunk]

    def _text(self, form: str, high: int, low: int) -> str:
        kind, prefix = form[:2], form[2:]
        if kind == _HEX:
            return f"{prefix}{high:016x}{low:016x}"
        if kind == _UUID:
            digits = f"{high:016x}{low:016x}"
            return (
                f"{prefix}{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
            )
        if kind == _DECIMAL:
            return f"{prefix}{low}"
        if kind == _OTHER:
            return self.others[low]
        return ""


def _zeros(rows: int) -> np.ndarray:
    """Return ``rows`` zeros that take no memory (a read-only broadcast of one)."""
    return np.broadcast_to(np.uint64(0), (rows,))


def split_id(value: str) -> tuple[str, int] | None:
    """Return (form and prefix, number) of an id of a known shape; None for any other shape.

    Only shapes that turn back into the very same text qualify: lowercase hex digits, a
    canonical uuid, a decimal number without leading zeros.
    """
    if not value:
        return _EMPTY, 0
    tail = value[-36:]
    if len(tail) == 36 and tail[8] == tail[13] == tail[18] == tail[23] == "-":
        digits = tail.replace("-", "")
        if len(digits) == 32 and _HEX_DIGITS.issuperset(digits):
            return _UUID + value[:-36], int(digits, 16)
    tail = value[-32:]
    if len(tail) == 32 and _HEX_DIGITS.issuperset(tail):
        return _HEX + value[:-32], int(tail, 16)
    prefix, dash, number = value.rpartition("-")
    if number.isascii() and number.isdigit() and len(number) <= 18 and str(int(number)) == number:
        return _DECIMAL + prefix + dash, int(number)
    return None


@dataclass
class RecordTable(Sequence[Record]):
    """The records of a run, column by column (one row per request attempt)."""

    request_id: Ids
    operation: Labels
    authorization_id: Labels
    status: np.ndarray  # int16; 0 when no response arrived
    code: Labels
    latency_ms: np.ndarray  # float64
    started_s: np.ndarray  # float64
    transaction_id: Ids
    kind: Labels
    units: np.ndarray  # int32
    idempotency_key: Ids
    attempt: np.ndarray  # int16
    worker: Labels
    outcome: Labels
    _error: np.ndarray | None = field(default=None, repr=False)

    # -- Building --------------------------------------------------------------------------
    @classmethod
    def from_records(cls, records: Iterable[Record]) -> RecordTable:
        """Build a table from Records (a list, another table, any iterable)."""
        if isinstance(records, RecordTable):
            return records
        builder = RecordTableBuilder()
        for record in records:
            builder.add(record)
        return builder.build()

    @classmethod
    def empty(cls) -> RecordTable:
        return RecordTableBuilder().build()

    # -- Columns the summaries share ---------------------------------------------------------
    @property
    def completed_s(self) -> np.ndarray:
        """Return when each attempt ended, in seconds of the run."""
        return self.started_s + self.latency_ms / 1000

    @property
    def error(self) -> np.ndarray:
        """Return a mask of the failed requests (results.record_format.is_error)."""
        if self._error is None:
            answered_ok = (self.status >= 200) & (self.status < 300)
            self._error = ~answered_ok | ~self.code.equals("")
        return self._error

    def touching(self, start_s: float, until_s: float) -> np.ndarray:
        """Return a mask of the attempts in flight at some moment of [start_s, until_s)."""
        return (self.started_s < until_s) & (self.completed_s > start_s)

    # -- Reordering ------------------------------------------------------------------------
    def take(self, indexes: np.ndarray) -> RecordTable:
        """Return the rows at ``indexes``, in that order, as a new table."""
        return RecordTable(**{name: _take(getattr(self, name), indexes) for name in _COLUMNS})

    def reorder(self, indexes: np.ndarray) -> None:
        """Put the rows in the order of ``indexes``, one column at a time (little extra memory)."""
        for name in _COLUMNS:
            setattr(self, name, _take(getattr(self, name), indexes))
        self._error = None

    # -- Sequence[Record] ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.latency_ms)

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Record]: ...
    def __getitem__(self, index: int | slice) -> Record | Sequence[Record]:
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        position = range(len(self))[index]  # IndexError and negative indexes as a list has them
        return next(self._records(slice(position, position + 1)))

    def __iter__(self) -> Iterator[Record]:
        for begin in range(0, len(self), ITERATION_CHUNK):
            yield from self._records(slice(begin, begin + ITERATION_CHUNK))

    def _records(self, rows: slice) -> Iterator[Record]:
        columns = (
            self.request_id.texts(rows),
            self.operation.texts(rows),
            self.authorization_id.texts(rows),
            self.status[rows].tolist(),
            self.code.texts(rows),
            self.latency_ms[rows].tolist(),
            self.started_s[rows].tolist(),
            self.transaction_id.texts(rows),
            self.kind.texts(rows),
            self.units[rows].tolist(),
            self.idempotency_key.texts(rows),
            self.attempt[rows].tolist(),
            self.worker.texts(rows),
            self.outcome.texts(rows),
        )
        for values in zip(*columns, strict=True):
            yield Record._make(values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordTable | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


_COLUMNS = tuple(f.name for f in fields(RecordTable) if not f.name.startswith("_"))


def _take(column: np.ndarray | Labels | Ids, indexes: np.ndarray) -> np.ndarray | Labels | Ids:
    return column[indexes] if isinstance(column, np.ndarray) else column.take(indexes)


# -- The builder ----------------------------------------------------------------------------
_ID, _LABEL, _INT16, _INT32, _FLOAT = "id", "label", "int16", "int32", "float"
# Each Record field and how it is kept, in Record's field order.
_KINDS = {
    "request_id": _ID,
    "operation": _LABEL,
    "authorization_id": _LABEL,
    "status": _INT16,
    "code": _LABEL,
    "latency_ms": _FLOAT,
    "started_s": _FLOAT,
    "transaction_id": _ID,
    "kind": _LABEL,
    "units": _INT32,
    "idempotency_key": _ID,
    "attempt": _INT16,
    "worker": _LABEL,
    "outcome": _LABEL,
}
assert tuple(_KINDS) == Record._fields == _COLUMNS
_DTYPES = {_INT16: np.int16, _INT32: np.int32, _FLOAT: np.float64}


class _Column:
    """One numpy array filled a chunk at a time, grown (doubled) when rows outnumber its room."""

    def __init__(self, dtype: Any, capacity: int) -> None:
        self.array = np.zeros(capacity, dtype=dtype)

    def write(self, at: int, values: Sequence[Any], dtype: Any = None) -> None:
        if dtype is not None and np.dtype(dtype).itemsize > self.array.dtype.itemsize:
            self.array = self.array.astype(dtype)  # more labels than the codes could name
        end = at + len(values)
        if end > len(self.array):
            grown = np.zeros(max(2 * len(self.array), end), dtype=self.array.dtype)
            grown[:at] = self.array[:at]
            self.array = grown
        self.array[at:end] = values

    def finish(self, rows: int) -> np.ndarray:
        return self.array[:rows]


class RecordTableBuilder:
    """Gather records row by row into columns, a chunk of rows at a time.

    ``capacity``: the rows expected (the processes say how many they wrote). The columns are
    made that long at once, so that building costs no copy: more rows still fit, by growing.
    """

    def __init__(self, capacity: int = CHUNK_ROWS) -> None:
        self._pending: list[list[Any]] = [[] for _ in _KINDS]
        self._codes: list[dict[str, int]] = [{} for _ in _KINDS]
        self._others: list[dict[str, int]] = [{} for _ in _KINDS]  # ids of no known shape
        self._converters = [self._converter(i, kind) for i, kind in enumerate(_KINDS.values())]
        room = max(capacity, 1)
        self._columns: list[_Column] = []
        self._low: dict[int, _Column] = {}  # the ids' numbers, lower 64 bits...
        self._high: dict[int, _Column] = {}  # ... and upper ones, once one is not zero
        for position, kind in enumerate(_KINDS.values()):
            code_kind = kind in (_ID, _LABEL)
            self._columns.append(_Column(np.uint8 if code_kind else _DTYPES[kind], room))
            if kind == _ID:
                self._low[position] = _Column(np.uint64, room)
        self._written = 0
        self.rows = 0

    def _converter(self, position: int, kind: str) -> Callable[[Any], Any]:
        if kind not in (_ID, _LABEL):
            return lambda value: value
        codes, others = self._codes[position], self._others[position]

        def code_of(label: str) -> int:
            code = codes.get(label)
            if code is None:
                code = codes[label] = len(codes)
            return code

        def split(value: str) -> tuple[int, int]:
            shape = split_id(value)
            if shape is None:
                shape = _OTHER, others.setdefault(value, len(others))
            return code_of(shape[0]), shape[1]

        return split if kind == _ID else code_of

    def add(self, record: Record) -> None:
        """Add one record."""
        for pending, convert, value in zip(self._pending, self._converters, record, strict=True):
            pending.append(convert(value))
        self.rows += 1
        if len(self._pending[0]) >= CHUNK_ROWS:
            self._flush()

    def add_rows(self, rows: Iterable[Sequence[str]]) -> int:
        """Add CSV rows (results.record_format.encode_record); return how many were added."""
        before = self.rows
        for cells in rows:
            self.add(decode_record(cells))
        return self.rows - before

    def _flush(self) -> None:
        at = self._written
        for position, kind in enumerate(_KINDS.values()):
            values, self._pending[position] = self._pending[position], []
            column = self._columns[position]
            if kind == _LABEL:
                column.write(at, values, _code_dtype(len(self._codes[position])))
                continue
            if kind != _ID:
                column.write(at, values)
                continue
            column.write(at, [form for form, _ in values], _code_dtype(len(self._codes[position])))
            self._low[position].write(at, [number & _MASK_64 for _, number in values])
            high = [number >> 64 for _, number in values]
            if position in self._high or any(high):
                capacity = len(self._low[position].array)
                self._high.setdefault(position, _Column(np.uint64, capacity)).write(at, high)
        self._written = self.rows

    def build(self) -> RecordTable:
        """Return the table of every record added (the builder is spent afterwards)."""
        self._flush()
        rows = self.rows
        columns: dict[str, np.ndarray | Labels | Ids] = {}
        for position, (name, kind) in enumerate(_KINDS.items()):
            column = self._columns[position].finish(rows)
            if kind == _LABEL:
                columns[name] = Labels(column, tuple(self._codes[position]))
            elif kind == _ID:
                high = self._high.get(position)
                columns[name] = Ids(
                    Labels(column, tuple(self._codes[position])),
                    # Numbers below 2**64 (request ids) need no memory for their zeros.
                    _zeros(rows) if high is None else high.finish(rows),
                    self._low[position].finish(rows),
                    tuple(self._others[position]),
                )
            else:
                columns[name] = column
        # The table holds the only references now: reordering it can free each old column.
        self._columns, self._low, self._high = [], {}, {}
        return RecordTable(**columns)


def _code_dtype(distinct: int) -> type[np.integer[Any]]:
    return np.uint8 if distinct <= 2**8 else np.uint16 if distinct <= 2**16 else np.int32
