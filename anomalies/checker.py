"""Check a list-append history for isolation anomalies and judge it against a consistency model.

The non-cycle anomalies (G1a, G1b, internal, future-read, duplicate-elements,
incompatible-order, lost-update) come straight from the reads; the cycles (G0 ... G2-item
and their -process and -realtime variants) from the dependency graph's SCCs. Every kind is
counted in full; only the first few of each kind are kept with their explanation.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anomalies.cycles import SCC_SEARCH_SECONDS, FoundCycle, search_component
from anomalies.explain import (
    EdgeInfo,
    TransactionInfo,
    describe_transaction,
    explain_edge,
    format_list,
    render_cycle,
    transaction_info,
)
from anomalies.graph import (
    DependencyGraph,
    build_graph,
    graph_edges,
    strongly_connected_components,
)
from anomalies.history import Append, ParsedHistory, Read, read_history
from anomalies.models import (
    DEFAULT_MODEL,
    boundary,
    checkable_models,
    forbidden_anomalies,
    impossible_models,
    normalise_model,
    order_edges_needed,
    strongest,
)

# Anomalies of one kind kept with their explanation; all are counted.
KEPT_PER_KIND = 10


@dataclass(frozen=True)
class Anomaly:
    """One anomaly with the transactions involved, the edges of its cycle and its explanation."""

    kind: str
    text: str
    transactions: tuple[TransactionInfo, ...]
    steps: tuple[EdgeInfo, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the anomaly as JSON-ready data."""
        return {
            "kind": self.kind,
            "text": self.text,
            "transactions": [dict(t) for t in self.transactions],
            "steps": [dict(s) for s in self.steps],
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one history against one consistency model, with its evidence."""

    source: str
    valid: bool
    required_model: str
    anomaly_counts: Mapping[str, int]
    forbidden_kinds: tuple[str, ...]
    anomalies: Mapping[str, tuple[Anomaly, ...]]
    not_models: tuple[str, ...]
    also_not_models: tuple[str, ...]
    consistent_with: tuple[str, ...]
    transactions: Mapping[str, int]
    order_edges: str | None
    edges: int
    cyclic_components: int
    timed_out_components: int
    timing_s: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON-ready data (anomalies.json)."""
        return {
            "source": self.source,
            "valid": self.valid,
            "required_model": self.required_model,
            "anomaly_counts": dict(self.anomaly_counts),
            "forbidden_kinds": list(self.forbidden_kinds),
            "not": list(self.not_models),
            "also_not": list(self.also_not_models),
            "consistent_with": list(self.consistent_with),
            "transactions": dict(self.transactions),
            "order_edges": self.order_edges,
            "edges": self.edges,
            "cyclic_components": self.cyclic_components,
            "timed_out_components": self.timed_out_components,
            "timing_s": dict(self.timing_s),
            "anomalies": {
                kind: [anomaly.to_json() for anomaly in kept]
                for kind, kept in self.anomalies.items()
            },
        }

    def summary(self) -> str:
        """Return a few lines a person reads first: verdict, anomalies, models."""
        counts = ", ".join(f"{kind} x{n}" for kind, n in self.anomaly_counts.items()) or "none"
        outcome = ", ".join(f"{n} {name}" for name, n in self.transactions.items())
        lines = [f"{self.source}: {outcome} transactions", f"anomalies: {counts}"]
        if self.valid:
            lines.append(f"VALID: consistent with {self.required_model}")
        else:
            lines.append(f"INVALID: not {self.required_model} ({', '.join(self.forbidden_kinds)})")
        if self.not_models:
            stronger = len(self.also_not_models)
            lines.append(f"rules out: {', '.join(self.not_models)} (and {stronger} stronger)")
        if self.consistent_with:
            lines.append(f"consistent with: {', '.join(self.consistent_with)}")
        if self.timed_out_components:
            lines.append(
                f"note: the cycle search ran out of time in {self.timed_out_components} "
                "component(s); a less severe kind may have been reported there"
            )
        return "\n".join(lines)


class _Collector:
    """Counts every anomaly by kind and keeps the first few built with their explanation."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.counts: dict[str, int] = {}
        self.kept: dict[str, list[Anomaly]] = {}

    def wants(self, kind: str) -> bool:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return len(self.kept.get(kind, ())) < self.keep

    def add(self, anomaly: Anomaly) -> None:
        self.kept.setdefault(anomaly.kind, []).append(anomaly)


def check_history(
    history: ParsedHistory | str | Path,
    require: str = DEFAULT_MODEL,
    keep_per_kind: int = KEPT_PER_KIND,
    backend: str = "networkx",
    scc_seconds: float = SCC_SEARCH_SECONDS,
) -> CheckResult:
    """Check a history (parsed, or a file or run folder) against a consistency model.

    Raises ValueError for an unknown model and HistoryInputError for a malformed history.
    """
    # The check allocates millions of small objects and frees nothing until the end, so the
    # cyclic collector's passes over the growing heap only cost time (a third of it at
    # 100,000 transactions); nothing here builds reference cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _check(history, require, keep_per_kind, backend, scc_seconds)
    finally:
        if collecting:
            gc.enable()


def _check(
    history: ParsedHistory | str | Path,
    require: str,
    keep_per_kind: int,
    backend: str,
    scc_seconds: float,
) -> CheckResult:
    started = time.perf_counter()
    model = normalise_model(require)
    if not isinstance(history, ParsedHistory):
        history = read_history(history)
    read_done = time.perf_counter()
    order_edges = order_edges_needed(model)
    graph = build_graph(history, order_edges)
    graph_done = time.perf_counter()
    collector = _Collector(keep_per_kind)
    _direct_anomalies(history, graph, collector)
    direct_done = time.perf_counter()
    components = strongly_connected_components(graph_edges(graph), backend=backend)
    scc_done = time.perf_counter()
    timed_out = 0
    found: list[FoundCycle] = []
    for component in components:
        search = search_component(graph, component, scc_seconds)
        timed_out += search.timed_out
        found.extend(search.cycles)
    # Keep the shortest cycles of each kind: they are the easiest to follow.
    for cycle in sorted(found, key=lambda c: len(c.nodes)):
        if collector.wants(cycle.anomaly):
            collector.add(_cycle_anomaly(history, graph, cycle))
    cycles_done = time.perf_counter()

    kinds = list(collector.counts)
    forbidden = forbidden_anomalies(model)
    forbidden_found = tuple(sorted(kind for kind in kinds if kind in forbidden))
    not_models, also_not = boundary(kinds)
    still_possible = checkable_models(order_edges) - impossible_models(kinds)
    outcomes = {"ok": 0, "fail": 0, "info": 0}
    for txn in history.transactions:
        outcomes[txn.outcome] += 1
    finished = time.perf_counter()
    return CheckResult(
        source=history.source,
        valid=not forbidden_found,
        required_model=model,
        anomaly_counts=dict(sorted(collector.counts.items())),
        forbidden_kinds=forbidden_found,
        anomalies={kind: tuple(collector.kept.get(kind, ())) for kind in sorted(collector.counts)},
        not_models=tuple(not_models),
        also_not_models=tuple(also_not),
        consistent_with=tuple(strongest(still_possible)),
        transactions=outcomes,
        order_edges=order_edges,
        edges=graph.edge_count(),
        cyclic_components=len(components),
        timed_out_components=timed_out,
        timing_s={
            "read": round(read_done - started, 4),
            "graph": round(graph_done - read_done, 4),
            "direct_anomalies": round(direct_done - graph_done, 4),
            "scc": round(scc_done - direct_done, 4),
            "cycles": round(cycles_done - scc_done, 4),
            "total": round(finished - started, 4),
        },
    )


def _cycle_anomaly(history: ParsedHistory, graph: DependencyGraph, cycle: FoundCycle) -> Anomaly:
    names = {node: f"T{number}" for number, node in enumerate(cycle.nodes, start=1)}
    transactions = [
        transaction_info(history, history.transactions[node], names[node]) for node in cycle.nodes
    ]
    steps = [
        explain_edge(history, graph, node, cycle.nodes[(at + 1) % len(cycle.nodes)], kind, names)
        for at, (node, kind) in enumerate(zip(cycle.nodes, cycle.kinds, strict=True))
    ]
    return Anomaly(
        kind=cycle.anomaly,
        text=render_cycle(cycle.anomaly, transactions, steps),
        transactions=tuple(transactions),
        steps=tuple(steps),
        details={"cycle_length": len(cycle.nodes)},
    )


def _single(
    history: ParsedHistory, kind: str, text: str, named: list[tuple[int, str]], **details: Any
) -> Anomaly:
    infos = tuple(transaction_info(history, history.transactions[t], name) for t, name in named)
    lines = [f"{kind}: {text}", *(f"  {describe_transaction(info)}" for info in infos)]
    return Anomaly(kind=kind, text="\n".join(lines), transactions=infos, details=details)


def _direct_anomalies(history: ParsedHistory, graph: DependencyGraph, out: _Collector) -> None:
    """Find the anomalies shown by single reads and single transactions, not by cycles."""
    _incompatible_orders(history, out)
    _internal(history, out)
    _aborted_and_intermediate_reads(history, graph, out)
    _lost_updates(history, out)


def _incompatible_orders(history: ParsedHistory, out: _Collector) -> None:
    for key, reads in enumerate(history.key_reads):
        if reads.conflict is None or not out.wants("incompatible-order"):
            continue
        (path_a, length_a), (path_b, length_b) = reads.conflict
        readers = []
        for wanted in ((path_a, length_a), (path_b, length_b)):
            reader = next(
                txn.id
                for txn in history.transactions
                if txn.outcome == "ok"
                and any(
                    type(m) is Read and m.key == key and (m.path, m.length) == wanted
                    for m in txn.mops
                )
            )
            readers.append(reader)
        first = format_list(reads.values(path_a, length_a))
        second = format_list(reads.values(path_b, length_b))
        name = history.key_name(key)
        out.add(
            _single(
                history,
                "incompatible-order",
                f"key {name} was read as {first} by T1 and as {second} by T2: neither is a "
                "prefix of the other, so no single order of appends explains both",
                [(readers[0], "T1"), (readers[1], "T2")],
                key=name,
                values=[reads.values(path_a, length_a), reads.values(path_b, length_b)],
            )
        )


def _internal(history: ParsedHistory, out: _Collector) -> None:
    for txn_id, position, read, expected in history.internal_cases:
        if out.wants("internal"):
            mop = history.transactions[txn_id].mops[position]
            name = history.key_name(mop.key)
            shown = "[" + ", ".join(str(v) for v in expected) + "]"
            out.add(
                _single(
                    history,
                    "internal",
                    f"T1 read key {name} as {format_list(read)} (micro-op {position}), but its "
                    f"own earlier reads and appends imply {shown}",
                    [(txn_id, "T1")],
                    key=name,
                    read=read,
                    expected=expected,
                )
            )
    for txn_id, position, element in history.future_read_cases:
        if out.wants("future-read"):
            mop = history.transactions[txn_id].mops[position]
            name = history.key_name(mop.key)
            out.add(
                _single(
                    history,
                    "future-read",
                    f"T1 read key {name} holding {element} (micro-op {position}), a value T1 "
                    "itself appends only later",
                    [(txn_id, "T1")],
                    key=name,
                    element=element,
                )
            )
    for txn_id, position, duplicates in history.duplicate_cases:
        if out.wants("duplicate-elements"):
            mop = history.transactions[txn_id].mops[position]
            name = history.key_name(mop.key)
            twice = ", ".join(f"{value} x{count}" for value, count in duplicates.items())
            out.add(
                _single(
                    history,
                    "duplicate-elements",
                    f"T1 read key {name} with an element more than once ({twice}), though every "
                    "value is appended once",
                    [(txn_id, "T1")],
                    key=name,
                    duplicates={str(v): c for v, c in duplicates.items()},
                )
            )


def _aborted_and_intermediate_reads(
    history: ParsedHistory, graph: DependencyGraph, out: _Collector
) -> None:
    failed: dict[tuple[int, int], int] = {}
    intermediate: dict[tuple[int, int], tuple[int, int]] = {}
    for txn in history.transactions:
        last_append: dict[int, int] = {}
        for mop in txn.mops:
            if type(mop) is Append:
                if txn.outcome == "fail":
                    failed[(mop.key, mop.value)] = txn.id
                earlier = last_append.get(mop.key)
                if earlier is not None:
                    intermediate[(mop.key, earlier)] = (txn.id, mop.value)
                last_append[mop.key] = mop.value
    # Only keys where some read holds a failed append need their reads looked through.
    failed_by_key: dict[int, set[int]] = {}
    for key, value in failed:
        failed_by_key.setdefault(key, set()).add(value)
    observed_failed: dict[int, set[int]] = {}
    for key, values in failed_by_key.items():
        seen: set[int] = set()
        for path in history.key_reads[key].paths:
            seen |= values.intersection(path)
        if seen:
            observed_failed[key] = seen
    for txn in history.transactions:
        if txn.outcome != "ok":
            continue
        for mop in txn.mops:
            if type(mop) is not Read or not mop.length:
                continue
            if mop.key in observed_failed:
                values = history.read_values(mop)
                for element in values:
                    if element in observed_failed[mop.key] and out.wants("G1a"):
                        writer = failed[(mop.key, element)]
                        name = history.key_name(mop.key)
                        out.add(
                            _single(
                                history,
                                "G1a",
                                f"T1 read key {name} as {format_list(values)}, holding "
                                f"{element}, which T2 appended in a transaction that failed "
                                "(an aborted read)",
                                [(txn.id, "T1"), (writer, "T2")],
                                key=name,
                                element=element,
                            )
                        )
            last = history.read_last(mop)
            writer_and_next = intermediate.get((mop.key, last))  # type: ignore[arg-type]
            if writer_and_next is not None and writer_and_next[0] != txn.id and out.wants("G1b"):
                writer, next_value = writer_and_next
                name = history.key_name(mop.key)
                out.add(
                    _single(
                        history,
                        "G1b",
                        f"T1 read key {name} as {format_list(history.read_values(mop))}, ending "
                        f"in {last}, which T2 appended but then appended {next_value} to the "
                        "same key: an intermediate state",
                        [(txn.id, "T1"), (writer, "T2")],
                        key=name,
                        element=last,
                    )
                )


def _lost_updates(history: ParsedHistory, out: _Collector) -> None:
    # As Elle: ok transactions that read a key (their first read of it) and then append to it,
    # grouped by what they read; two in one group both built on the same version.
    groups: dict[tuple[int, int, int | None], list[tuple[int, Read]]] = {}
    for txn in history.transactions:
        if txn.outcome != "ok":
            continue
        first_read: dict[int, Read] = {}
        written: set[int] = set()
        for mop in txn.mops:
            if type(mop) is Read:
                first_read.setdefault(mop.key, mop)
            elif mop.key in first_read and mop.key not in written:
                written.add(mop.key)
                read = first_read[mop.key]
                groups.setdefault((mop.key, read.length, history.read_last(read)), []).append(
                    (txn.id, read)
                )
    for (key, _, _), members in groups.items():
        if len(members) < 2:
            continue
        by_content: dict[tuple[int, ...], list[int]] = {}
        for txn_id, read in members:
            by_content.setdefault(tuple(history.read_values(read)), []).append(txn_id)
        for content, txn_ids in by_content.items():
            if len(txn_ids) < 2 or not out.wants("lost-update"):
                continue
            name = history.key_name(key)
            named = [(t, f"T{n}") for n, t in enumerate(txn_ids, start=1)]
            out.add(
                _single(
                    history,
                    "lost-update",
                    f"{len(txn_ids)} transactions read key {name} as {format_list(list(content))} "
                    "and then appended to it: each built on the same version, so all but one "
                    "update is lost",
                    named,
                    key=name,
                    value=list(content),
                )
            )
