"""Infer the dependency graph of a list-append history, as Elle does, and split it into SCCs.

Each key's version order is its longest read. From it, for every append of v to k by T2
whose previous version is u:
  - ww: T1 appended u, T2 appended v (T1 -> T2);
  - rw: T1 read k ending in u (or read k empty when v is the first version), T2 appended v;
and for every read of k ending in v, wr from the transaction that appended v. An append
no read observed came after every observed one. Process and realtime order edges are added
only when the model asked for needs them.

Edges are kept as one dict per source transaction, `successors[a][b] = kinds` (a bit set),
which is small enough for 100,000 transactions; networkx is given only the edges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import networkx as nx

from anomalies.history import Append, ParsedHistory

WW = 1
WR = 2
RW = 4
PROCESS = 8
REALTIME = 16
DATA_KINDS = WW | WR | RW
KIND_NAMES = {WW: "ww", WR: "wr", RW: "rw", PROCESS: "process", REALTIME: "realtime"}
POSSIBLE_OUTCOMES = ("ok", "info")

LinkEdge = Callable[[int, int, int], None]


def kind_name(kind: int) -> str:
    """Return an edge kind's name (ww, wr, rw, process, realtime)."""
    return KIND_NAMES[kind]


@dataclass
class VersionOrder:
    """The version order of every key and who appended and who read each version."""

    # order[key]: the distinct elements of the longest read, in order.
    order: list[list[int]]
    position: list[dict[int, int]]
    # writer[key][value]: the ok or info transaction that appended it.
    writer: list[dict[int, int]]
    # readers[key][last element or None for the empty list]: ok transactions that read it.
    readers: list[dict[int | None, list[int]]]

    def previous(self, key: int, value: int) -> int | None:
        """Return the version just before an append; an unobserved one follows all observed."""
        order = self.order[key]
        at = self.position[key].get(value)
        if at is None:
            return order[-1] if order else None
        return order[at - 1] if at else None


@dataclass
class DependencyGraph:
    """Transactions as ints, `successors[a][b]` the bit set of edge kinds from a to b."""

    successors: dict[int, dict[int, int]]
    versions: VersionOrder
    order_edges: str | None
    nodes: int

    def kinds(self, source: int, target: int) -> int:
        """Return the bit set of edge kinds from source to target (0 when none)."""
        return self.successors.get(source, {}).get(target, 0)

    def edge_count(self) -> int:
        """Return the number of (source, target) pairs with at least one edge."""
        return sum(len(targets) for targets in self.successors.values())


def infer_versions(history: ParsedHistory) -> VersionOrder:
    """Build each key's version order from its longest read, and the writer and reader maps."""
    keys = len(history.key_names)
    order = [list(dict.fromkeys(reads.paths[reads.longest])) for reads in history.key_reads]
    position = [{value: at for at, value in enumerate(values)} for values in order]
    writer: list[dict[int, int]] = [{} for _ in range(keys)]
    readers: list[dict[int | None, list[int]]] = [{} for _ in range(keys)]
    for txn in history.transactions:
        if txn.outcome not in POSSIBLE_OUTCOMES:
            continue
        for mop in txn.mops:
            if type(mop) is Append:
                writer[mop.key][mop.value] = txn.id
            elif txn.outcome == "ok":
                last = history.read_last(mop)
                readers[mop.key].setdefault(last, []).append(txn.id)
    return VersionOrder(order=order, position=position, writer=writer, readers=readers)


def observed(history: ParsedHistory, versions: VersionOrder, txn_id: int) -> bool:
    """Return whether a transaction belongs in the graph: ok, or info with an observed append.

    An info transaction no read observed has no outgoing edge, so it cannot be in a cycle.
    """
    txn = history.transactions[txn_id]
    if txn.outcome == "ok":
        return True
    if txn.outcome != "info":
        return False
    return any(type(mop) is Append and mop.value in versions.position[mop.key] for mop in txn.mops)


def build_graph(history: ParsedHistory, order_edges: str | None = None) -> DependencyGraph:
    """Infer ww, wr and rw edges, plus process or realtime order edges when asked."""
    versions = infer_versions(history)
    successors: dict[int, dict[int, int]] = {}

    def link(source: int, target: int, kind: int) -> None:
        targets = successors.get(source)
        if targets is None:
            successors[source] = {target: kind}
        else:
            targets[target] = targets.get(target, 0) | kind

    in_graph = [observed(history, versions, txn.id) for txn in history.transactions]
    for txn in history.transactions:
        if not in_graph[txn.id]:
            continue
        this = txn.id
        for mop in txn.mops:
            if type(mop) is Append:
                previous = versions.previous(mop.key, mop.value)
                if previous is not None:
                    writer = versions.writer[mop.key].get(previous)
                    if writer is not None and writer != this:
                        link(writer, this, WW)
                for reader in versions.readers[mop.key].get(previous, ()):
                    if reader != this:
                        link(reader, this, RW)
            elif txn.outcome == "ok" and mop.length:
                last = history.read_last(mop)
                writer = versions.writer[mop.key].get(last)  # type: ignore[arg-type]
                if writer is not None and writer != this:
                    link(writer, this, WR)
    if order_edges == "process":
        _link_process_order(history, link)
    elif order_edges == "realtime":
        _link_realtime_order(history, in_graph, link)
    return DependencyGraph(
        successors=successors,
        versions=versions,
        order_edges=order_edges,
        nodes=len(history.transactions),
    )


def _link_process_order(history: ParsedHistory, link: LinkEdge) -> None:
    # As Elle: each ok transaction follows the process's previous ok one.
    last_ok: dict[int | str, int] = {}
    for event in history.events:
        if event < 0:
            txn = history.transactions[-event - 1]
            if txn.outcome == "ok":
                previous = last_ok.get(txn.process)
                if previous is not None:
                    link(previous, txn.id, PROCESS)
                last_ok[txn.process] = txn.id


def _link_realtime_order(history: ParsedHistory, in_graph: list[bool], link: LinkEdge) -> None:
    # Elle's transitive reduction: an invoke is linked from every completed ok transaction
    # not already followed by another completed before this invoke; a completion removes
    # from the frontier every transaction that was linked to it.
    frontier: set[int] = set()
    linked_from: dict[int, list[int]] = {}
    for event in history.events:
        if event > 0:
            txn_id = event - 1
            if in_graph[txn_id] and frontier:
                for source in frontier:
                    link(source, txn_id, REALTIME)
                if history.transactions[txn_id].outcome == "ok":
                    linked_from[txn_id] = list(frontier)
        else:
            txn_id = -event - 1
            if history.transactions[txn_id].outcome == "ok":
                frontier.difference_update(linked_from.pop(txn_id, ()))
                frontier.add(txn_id)


_NO_ATTRIBUTES: dict[str, object] = {}


class _BareDiGraph(nx.DiGraph):
    """A DiGraph whose edges all share one empty attribute dict (never written to).

    networkx gives every edge a dict of its own, 64 bytes; with 1.7 million edges (100,000
    transactions with realtime order) that alone was about 100 MB.
    """

    @staticmethod
    def edge_attr_dict_factory() -> dict[str, object]:
        return _NO_ATTRIBUTES


def strongly_connected_components(
    edges: Iterable[tuple[int, int]], backend: str = "networkx"
) -> list[list[int]]:
    """Return the components with two or more transactions, largest first.

    A single transaction never has an edge to itself here, so one-node components are
    never cycles.
    """
    if backend == "rustworkx":
        import rustworkx

        edge_list = list(edges)
        node_count = 1 + max((max(a, b) for a, b in edge_list), default=-1)
        graph = rustworkx.PyDiGraph(multigraph=False)
        graph.add_nodes_from(range(node_count))
        graph.extend_from_edge_list(edge_list)
        components = [list(c) for c in rustworkx.strongly_connected_components(graph)]
    else:
        digraph = _BareDiGraph()
        digraph.add_edges_from(edges)
        components = [list(c) for c in nx.strongly_connected_components(digraph)]
        del digraph
    nontrivial = [sorted(c) for c in components if len(c) > 1]
    nontrivial.sort(key=len, reverse=True)
    return nontrivial


def graph_edges(graph: DependencyGraph, mask: int = -1) -> Iterable[tuple[int, int]]:
    """Yield the (source, target) pairs with an edge of a kind in `mask`."""
    for source, targets in graph.successors.items():
        for target, kinds in targets.items():
            if kinds & mask:
                yield source, target
