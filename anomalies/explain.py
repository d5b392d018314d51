"""Say in words a person can check why each edge of a cycle holds, as Elle's explainers do."""

from __future__ import annotations

from typing import TypedDict

from anomalies.graph import PROCESS, REALTIME, RW, WR, WW, DependencyGraph, kind_name
from anomalies.history import Append, ParsedHistory, Read, Transaction

# A read longer than this is shown by its last elements and its length.
SHOWN_ELEMENTS = 8
NANOS_PER_SECOND = 1e9


class TransactionInfo(TypedDict):
    """One transaction of an anomaly, as the history recorded it."""

    name: str
    process: int | str
    outcome: str
    invoke_index: int
    complete_index: int | None
    request_id: str | None
    invoke_time_s: float | None
    complete_time_s: float | None
    operations: list[str]


class EdgeInfo(TypedDict):
    """One edge of a cycle: source < target, of a kind, and why the history implies it."""

    source: str
    target: str
    kind: str
    key: str | int | None
    value: int | None
    next_value: int | None
    text: str


def seconds(nanos: int | None) -> float | None:
    """Return nanoseconds as seconds, None when unknown."""
    return None if nanos is None else nanos / NANOS_PER_SECOND


def format_list(values: list[int]) -> str:
    """Show a read's list, its tail only when long."""
    if len(values) <= SHOWN_ELEMENTS:
        return "[" + ", ".join(str(v) for v in values) + "]"
    tail = ", ".join(str(v) for v in values[-SHOWN_ELEMENTS:])
    return f"[..., {tail}] ({len(values)} elements)"


def format_operations(history: ParsedHistory, txn: Transaction) -> list[str]:
    """Show a transaction's micro-operations: `append k3 7`, `r k5 [1, 2]`."""
    shown = []
    for mop in txn.mops:
        key = history.key_name(mop.key)
        if type(mop) is Append:
            shown.append(f"append {key} {mop.value}")
        elif mop.path < 0:
            shown.append(f"r {key} (unknown)")
        else:
            shown.append(f"r {key} {format_list(history.read_values(mop))}")
    return shown


def transaction_info(history: ParsedHistory, txn: Transaction, name: str) -> TransactionInfo:
    """Describe one transaction for an explanation."""
    return TransactionInfo(
        name=name,
        process=txn.process,
        outcome=txn.outcome,
        invoke_index=txn.invoke_index,
        complete_index=txn.complete_index,
        request_id=txn.request_id,
        invoke_time_s=seconds(txn.invoke_time),
        complete_time_s=seconds(txn.complete_time),
        operations=format_operations(history, txn),
    )


def describe_transaction(info: TransactionInfo) -> str:
    """Render a transaction on one line: process, indexes, request id, times, operations."""
    complete = "never completed" if info["complete_index"] is None else str(info["complete_index"])
    parts = [f"process {info['process']}", f"index {info['invoke_index']} -> {complete}"]
    if info["request_id"]:
        parts.append(f"request {info['request_id']}")
    if info["invoke_time_s"] is not None:
        parts.append(f"invoked {info['invoke_time_s']:.6f} s")
    if info["complete_time_s"] is not None:
        parts.append(f"completed {info['complete_time_s']:.6f} s")
    return f"{info['name']} = {info['outcome']}, {', '.join(parts)}: " + "; ".join(
        info["operations"]
    )


def explain_edge(
    history: ParsedHistory,
    graph: DependencyGraph,
    source: int,
    target: int,
    kind: int,
    names: dict[int, str],
) -> EdgeInfo:
    """Explain why `source` precedes `target` by an edge of `kind`."""
    a, b = names[source], names[target]
    versions = graph.versions
    a_txn, b_txn = history.transactions[source], history.transactions[target]
    key_name = None
    value = next_value = None
    text = f"{a} precedes {b} ({kind_name(kind)})"
    if kind == WW:
        for mop in b_txn.mops:
            if type(mop) is Append:
                previous = versions.previous(mop.key, mop.value)
                if previous is not None and versions.writer[mop.key].get(previous) == source:
                    key_name, value, next_value = history.key_name(mop.key), previous, mop.value
                    text = (
                        f"{b} appended {mop.value} to key {key_name} right after {a}'s append "
                        f"of {previous}, the version before it (ww)"
                    )
                    break
    elif kind == WR:
        for mop in b_txn.mops:
            if type(mop) is Read and mop.length:
                last = history.read_last(mop)
                if versions.writer[mop.key].get(last) == source:  # type: ignore[arg-type]
                    key_name, value = history.key_name(mop.key), last
                    shown = format_list(history.read_values(mop))
                    text = f"{b} read {a}'s append {last} to key {key_name}: {shown} (wr)"
                    break
    elif kind == RW:
        for mop in b_txn.mops:
            if type(mop) is not Append:
                continue
            previous = versions.previous(mop.key, mop.value)
            if source not in versions.readers[mop.key].get(previous, ()):
                continue
            key_name, value, next_value = history.key_name(mop.key), previous, mop.value
            read = next(
                r
                for r in a_txn.mops
                if type(r) is Read
                and r.key == mop.key
                and r.path >= 0
                and history.read_last(r) == previous
            )
            shown = format_list(history.read_values(read))
            if previous is None:
                text = (
                    f"{a} read key {key_name} as {shown} (empty) before {b} appended "
                    f"{mop.value}, the first version (rw)"
                )
            elif mop.value in versions.position[mop.key]:
                text = (
                    f"{a} read key {key_name} as {shown} before {b} appended {mop.value}, "
                    "the next version (rw)"
                )
            else:
                text = (
                    f"{a} read key {key_name} as {shown} and did not see {b}'s append of "
                    f"{mop.value}, which no read observed and so came after {previous} (rw)"
                )
            break
    elif kind == PROCESS:
        text = (
            f"{a} and {b} ran on process {a_txn.process}, {a} completing (index "
            f"{a_txn.complete_index}) before {b} was invoked (index {b_txn.invoke_index}) (process)"
        )
    elif kind == REALTIME:
        times = ""
        if a_txn.complete_time is not None and b_txn.invoke_time is not None:
            times = f", {seconds(a_txn.complete_time):.6f} s < {seconds(b_txn.invoke_time):.6f} s"
        text = (
            f"{a} completed (index {a_txn.complete_index}) before {b} was invoked "
            f"(index {b_txn.invoke_index}{times}) (realtime)"
        )
    return EdgeInfo(
        source=a,
        target=b,
        kind=kind_name(kind),
        key=key_name,
        value=value,
        next_value=next_value,
        text=text,
    )


def render_cycle(anomaly: str, transactions: list[TransactionInfo], steps: list[EdgeInfo]) -> str:
    """Render a cycle as Elle does: let T1..Tn be, then each edge, then the contradiction."""
    lines = [f"{anomaly}: a cycle of {len(transactions)} transactions", "Let:"]
    lines.extend(f"  {describe_transaction(info)}" for info in transactions)
    lines.append("Then:")
    for number, step in enumerate(steps):
        because = f"{step['source']} < {step['target']}, because {step['text']}"
        if number == len(steps) - 1:
            lines.append(f"  - However, {because}: a contradiction!")
        else:
            lines.append(f"  - {because}.")
    return "\n".join(lines)
