"""Find and classify cycles in each strongly connected component, most severe kind first.

As Elle's elle.txn: within one SCC, look for a G0 cycle (ww edges only), then G1c (ww and
wr, at least one wr), G-single (exactly one rw), G-nonadjacent (two or more rw, none next to
another), G2-item (two or more rw, two of them adjacent), then the same with process order
edges (-process) and with realtime edges (-realtime). A kind implied by one already found in
the SCC is not searched for. Each search starts from an edge of the rarest kind the cycle
needs (an rw edge, a wr edge...) and looks breadth-first for the shortest way back.

An edge carrying several kinds counts as the first of ww, wr, rw, process, realtime that the
search allows, as Elle's explainers try them in that order.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import networkx as nx

from anomalies.graph import PROCESS, REALTIME, RW, WR, WW, DependencyGraph
from anomalies.models import implied_anomalies

ALL_KINDS = WW | WR | RW | PROCESS | REALTIME
# Time one SCC may take before the search settles for what it found (Elle: 1 s).
SCC_SEARCH_SECONDS = 2.0
# Once a cycle is found, more starting edges are tried for a shorter one, but only this many.
EXTRA_SEEDS_AFTER_FIND = 16
SHORTEST_POSSIBLE = 2

_LAST_RW = 1
_MORE_RW = 2
_ADJACENT = 4
_REQUIRED_SHIFT = 3


@dataclass(frozen=True)
class CycleSpec:
    """What a cycle of one anomaly kind may and must contain.

    `rw_rule`: "none" (no rw edge), "single" (exactly one), "nonadjacent" (two or more, never
    two in a row) or "adjacent" (two or more, two of them in a row).
    """

    name: str
    allowed: int
    rw_rule: str
    required: tuple[int, ...] = ()


BASE_SPECS = (
    CycleSpec("G0", WW, "none"),
    CycleSpec("G1c", WW | WR, "none", (WR,)),
    CycleSpec("G-single", WW | WR | RW, "single"),
    CycleSpec("G-nonadjacent", WW | WR | RW, "nonadjacent"),
    CycleSpec("G2-item", WW | WR | RW, "adjacent"),
)


def cycle_specs(order_edges: str | None) -> list[CycleSpec]:
    """Return the kinds to search for, in Elle's order of severity."""
    specs = list(BASE_SPECS)
    for variant, kind in (("process", PROCESS), ("realtime", REALTIME)):
        if order_edges == variant:
            specs.extend(
                CycleSpec(
                    f"{spec.name}-{variant}",
                    spec.allowed | kind,
                    spec.rw_rule,
                    (*spec.required, kind),
                )
                for spec in BASE_SPECS
            )
    return specs


@dataclass(frozen=True)
class FoundCycle:
    """A cycle: `kinds[i]` is the kind of the edge from `nodes[i]` to the next node."""

    anomaly: str
    nodes: tuple[int, ...]
    kinds: tuple[int, ...]


def effective_kind(kinds: int, allowed: int) -> int:
    """Return the kind an edge counts as under a search: the first allowed one it carries."""
    usable = kinds & allowed
    return usable & -usable


def classify(kinds: tuple[int, ...]) -> str:
    """Name a cycle from its edge kinds, as Elle's cycle explainer does."""
    rw = kinds.count(RW)
    if rw == 1:
        data = "G-single"
    elif rw > 1:
        rotated = (*kinds[1:], kinds[0])
        adjacent = any(a == RW and b == RW for a, b in zip(kinds, rotated, strict=True))
        data = "G2-item" if adjacent else "G-nonadjacent"
    elif WR in kinds:
        data = "G1c"
    else:
        data = "G0"
    if REALTIME in kinds:
        return f"{data}-realtime"
    if PROCESS in kinds:
        return f"{data}-process"
    return data


@dataclass(frozen=True)
class SccSearch:
    """What one SCC showed: its cycles, and whether the search ran out of time."""

    size: int
    cycles: tuple[FoundCycle, ...]
    timed_out: bool


def search_component(
    graph: DependencyGraph, component: list[int], seconds: float = SCC_SEARCH_SECONDS
) -> SccSearch:
    """Search one SCC for each kind of cycle, most severe first, skipping implied kinds."""
    deadline = time.monotonic() + seconds
    members = set(component)
    local: dict[int, list[tuple[int, int]]] = {}
    for source in component:
        targets = graph.successors.get(source, {})
        local[source] = [(t, kinds) for t, kinds in targets.items() if t in members]
    found: list[FoundCycle] = []
    redundant: set[str] = set()
    timed_out = False
    for spec in cycle_specs(graph.order_edges):
        if spec.name in redundant:
            continue
        if time.monotonic() > deadline:
            timed_out = True
            break
        cycle, timed_out = _search_spec(local, spec, deadline)
        if cycle is not None:
            found.append(cycle)
            redundant |= implied_anomalies([spec.name])
        if timed_out:
            break
    if not found:
        found.append(_any_cycle(local))
    return SccSearch(size=len(component), cycles=tuple(found), timed_out=timed_out)


def _search_spec(
    local: dict[int, list[tuple[int, int]]], spec: CycleSpec, deadline: float
) -> tuple[FoundCycle | None, bool]:
    adjacency: dict[int, list[tuple[int, int]]] = {}
    for source, targets in local.items():
        usable = [(t, effective_kind(k, spec.allowed)) for t, k in targets if k & spec.allowed]
        if usable:
            adjacency[source] = usable
    component_of = _components(adjacency)
    if not component_of:
        return None, False
    seeds = _seeds(adjacency, component_of, spec)
    best: FoundCycle | None = None
    tries_left = EXTRA_SEEDS_AFTER_FIND
    for source, target, kind in seeds:
        if time.monotonic() > deadline:
            return best, True
        limit = len(best.nodes) if best else None
        cycle = _shortest_closing_walk(adjacency, component_of, spec, source, target, kind, limit)
        if cycle is not None and (best is None or len(cycle.nodes) < len(best.nodes)):
            best = cycle
        if best is not None:
            tries_left -= 1
            if len(best.nodes) <= SHORTEST_POSSIBLE or tries_left <= 0:
                break
    return best, False


def _components(adjacency: dict[int, list[tuple[int, int]]]) -> dict[int, int]:
    digraph = nx.DiGraph()
    digraph.add_edges_from((s, t) for s, targets in adjacency.items() for t, _ in targets)
    component_of: dict[int, int] = {}
    for number, component in enumerate(nx.strongly_connected_components(digraph)):
        if len(component) > 1:
            for node in component:
                component_of[node] = number
    return component_of


def _seeds(
    adjacency: dict[int, list[tuple[int, int]]], component_of: dict[int, int], spec: CycleSpec
) -> list[tuple[int, int, int]]:
    if spec.rw_rule != "none":
        wanted = RW
    elif spec.required:
        wanted = spec.required[0]
    else:
        wanted = ALL_KINDS
    seeds = [
        (source, target, kind)
        for source, targets in adjacency.items()
        if source in component_of
        for target, kind in targets
        if kind & wanted and component_of.get(target) == component_of[source]
    ]
    if wanted == ALL_KINDS and seeds:
        # With nothing required every edge inside a component closes some cycle: one is enough.
        seeds = seeds[:1]
    return seeds


def _initial_flags(spec: CycleSpec, kind: int) -> int:
    flags = _LAST_RW if kind == RW else 0
    for number, required in enumerate(spec.required):
        if kind & required:
            flags |= 1 << (_REQUIRED_SHIFT + number)
    return flags


def _step(spec: CycleSpec, flags: int, kind: int) -> int | None:
    if kind == RW:
        if spec.rw_rule == "single":
            return None
        if spec.rw_rule == "nonadjacent" and flags & _LAST_RW:
            return None
        if flags & _LAST_RW:
            flags |= _ADJACENT
        flags |= _LAST_RW | _MORE_RW
    else:
        flags &= ~_LAST_RW
    for number, required in enumerate(spec.required):
        if kind & required:
            flags |= 1 << (_REQUIRED_SHIFT + number)
    return flags


def _closes(spec: CycleSpec, flags: int, seed_kind: int) -> bool:
    for number in range(len(spec.required)):
        if not flags & (1 << (_REQUIRED_SHIFT + number)):
            return False
    closing_pair = bool(flags & _LAST_RW) and seed_kind == RW
    if spec.rw_rule == "nonadjacent":
        return bool(flags & _MORE_RW) and not closing_pair
    if spec.rw_rule == "adjacent":
        return bool(flags & _MORE_RW) and (bool(flags & _ADJACENT) or closing_pair)
    return True


def _shortest_closing_walk(
    adjacency: dict[int, list[tuple[int, int]]],
    component_of: dict[int, int],
    spec: CycleSpec,
    source: int,
    target: int,
    seed_kind: int,
    limit: int | None,
) -> FoundCycle | None:
    """Find the shortest walk target ->* source closing the seed edge into a cycle of the spec."""
    component = component_of[source]
    start = (target, _initial_flags(spec, seed_kind))
    parent: dict[tuple[int, int], tuple[tuple[int, int], int] | None] = {start: None}
    frontier = deque([(start, 1)])
    while frontier:
        state, length = frontier.popleft()
        if limit is not None and length + 1 >= limit:
            return None
        node, flags = state
        for successor, kind in adjacency.get(node, ()):
            if component_of.get(successor) != component:
                continue
            next_flags = _step(spec, flags, kind)
            if next_flags is None:
                continue
            next_state = (successor, next_flags)
            if next_state in parent:
                continue
            parent[next_state] = (state, kind)
            if successor == source:
                if _closes(spec, next_flags, seed_kind):
                    cycle = _unwind(parent, next_state, seed_kind)
                    simple = _simple_cycle_of_kind(cycle, spec.name)
                    if simple is not None:
                        return simple
                continue
            frontier.append((next_state, length + 1))
    return None


def _unwind(
    parent: dict[tuple[int, int], tuple[tuple[int, int], int] | None],
    end: tuple[int, int],
    seed_kind: int,
) -> tuple[list[int], list[int]]:
    nodes: list[int] = []
    kinds: list[int] = []
    state = end
    while True:
        link = parent[state]
        if link is None:
            break
        previous, kind = link
        nodes.append(previous[0])
        kinds.append(kind)
        state = previous
    nodes.reverse()
    kinds.reverse()
    # The walk runs target ->* source; the seed edge source -> target closes it.
    return [end[0], *nodes], [seed_kind, *kinds]


def _simple_cycle_of_kind(cycle: tuple[list[int], list[int]], wanted: str) -> FoundCycle | None:
    nodes, kinds = cycle
    if len(set(nodes)) == len(nodes):
        found = FoundCycle(wanted, tuple(nodes), tuple(kinds))
        return found if classify(found.kinds) == wanted else None
    # A walk through a node twice: one of the simple cycles it is made of may still qualify.
    for simple_nodes, simple_kinds in _split_closed_walk(nodes, kinds):
        if classify(tuple(simple_kinds)) == wanted:
            return FoundCycle(wanted, tuple(simple_nodes), tuple(simple_kinds))
    return None


def _split_closed_walk(nodes: list[int], kinds: list[int]) -> list[tuple[list[int], list[int]]]:
    pieces: list[tuple[list[int], list[int]]] = []
    stack_nodes: list[int] = []
    stack_kinds: list[int] = []
    where: dict[int, int] = {}
    for node, kind in zip([*nodes, nodes[0]], [*kinds, 0], strict=True):
        if node in where:
            at = where[node]
            pieces.append((stack_nodes[at:], stack_kinds[at:]))
            for removed in stack_nodes[at:]:
                del where[removed]
            del stack_nodes[at:]
            del stack_kinds[at:]
        where[node] = len(stack_nodes)
        stack_nodes.append(node)
        stack_kinds.append(kind)
    return pieces


def _any_cycle(local: dict[int, list[tuple[int, int]]]) -> FoundCycle:
    """Return some cycle of the SCC, classified, when the search found none in time."""
    digraph = nx.DiGraph()
    digraph.add_edges_from((s, t, {"kinds": k}) for s, targets in local.items() for t, k in targets)
    edges = nx.find_cycle(digraph)
    nodes = tuple(source for source, _ in edges)
    kinds = tuple(effective_kind(digraph[s][t]["kinds"], ALL_KINDS) for s, t in edges)
    return FoundCycle(classify(kinds), nodes, kinds)
