"""Consistency models, the anomalies each forbids, and what a set of anomalies rules out.

The relations follow Elle's consistency_model.clj (Adya; Bailis et al.; Cerone et al.; Daudjee
and Salem), restricted to transactional models and to anomalies a list-append history can show.
One difference in names: Elle calls the item (non-predicate) cycles of list-append
G-single-item and G-nonadjacent-item; with no predicates in this workload they are reported
here as G-single and G-nonadjacent, and given the item variants' implications (G-single
implies G-nonadjacent, which implies G2-item).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

DEFAULT_MODEL = "serializable"

# a -> [b, ...]: a history satisfying model a also satisfies every b.
MODEL_IMPLIES: Mapping[str, tuple[str, ...]] = {
    "strict-serializable": (
        "serializable",
        "snapshot-isolation",
        "strong-snapshot-isolation",
        "strong-session-serializable",
    ),
    "strong-session-serializable": ("serializable", "strong-session-snapshot-isolation"),
    "strong-snapshot-isolation": ("strong-session-snapshot-isolation", "strong-read-committed"),
    "strong-session-snapshot-isolation": ("snapshot-isolation", "strong-session-read-committed"),
    "serializable": ("repeatable-read", "snapshot-isolation", "update-serializable"),
    "update-serializable": ("forward-consistent-view",),
    "snapshot-isolation": (
        "forward-consistent-view",
        "monotonic-atomic-view",
        "monotonic-snapshot-read",
        "parallel-snapshot-isolation",
        "prefix",
    ),
    "forward-consistent-view": ("consistent-view",),
    "consistent-view": ("cursor-stability", "monotonic-view"),
    "repeatable-read": ("cursor-stability", "monotonic-atomic-view"),
    "cursor-stability": ("read-committed",),
    "monotonic-atomic-view": ("read-committed",),
    "monotonic-view": ("read-committed",),
    "monotonic-snapshot-read": ("read-committed",),
    "parallel-snapshot-isolation": ("causal-cerone", "update-atomic"),
    "prefix": ("causal-cerone",),
    "causal-cerone": ("read-atomic",),
    "update-atomic": ("read-atomic",),
    "read-atomic": ("monotonic-atomic-view",),
    "read-committed": ("read-uncommitted",),
    "strong-read-committed": ("strong-session-read-committed", "strong-read-uncommitted"),
    "strong-session-read-committed": ("read-committed", "strong-session-read-uncommitted"),
    "strong-read-uncommitted": ("strong-session-read-uncommitted",),
    "strong-session-read-uncommitted": ("read-uncommitted",),
    "read-uncommitted": (),
}

# Anomalies each model forbids directly; weaker models it implies add theirs.
MODEL_FORBIDS: Mapping[str, tuple[str, ...]] = {
    "causal-cerone": ("internal", "G1a"),
    "cursor-stability": ("G1", "lost-update"),
    "monotonic-view": ("G1",),
    "monotonic-snapshot-read": ("G1",),
    "consistent-view": ("G1", "G-single"),
    "forward-consistent-view": ("G1",),
    "parallel-snapshot-isolation": ("internal", "G1a"),
    "serializable": ("G1", "G2", "internal"),
    "read-committed": ("G1",),
    "read-uncommitted": ("G0", "duplicate-elements"),
    "prefix": ("internal", "G1a"),
    "snapshot-isolation": ("internal", "G1", "G-nonadjacent"),
    "read-atomic": ("internal", "G1a", "future-read"),
    "repeatable-read": ("G1", "G2-item", "lost-update"),
    "update-atomic": ("lost-update",),
    "strict-serializable": ("G1", "G1c-realtime", "G2-realtime"),
    "strong-session-read-uncommitted": ("G0-process",),
    "strong-session-read-committed": ("G1c-process",),
    "strong-read-uncommitted": ("G0-realtime",),
    "strong-read-committed": ("G1c-realtime",),
    "strong-session-snapshot-isolation": ("internal", "G1-process", "G-nonadjacent-process"),
    "strong-snapshot-isolation": ("internal", "G1-realtime", "G-nonadjacent-realtime"),
    "strong-session-serializable": ("G1-process", "G2-process"),
    "update-serializable": ("G1",),
}

# a -> [b, ...]: a history showing anomaly a also shows every b.
ANOMALY_IMPLIES: Mapping[str, tuple[str, ...]] = {
    "G0": ("G1c", "G0-process"),
    "G0-process": ("G1c-process", "G0-realtime"),
    "G0-realtime": ("G1c-realtime",),
    "G1a": ("G1",),
    "G1b": ("G1",),
    "G1c": ("G1", "G1c-process"),
    "G1c-process": ("G1c-realtime", "G1-process"),
    "G1c-realtime": ("G1-realtime",),
    "G1": ("G1-process",),
    "G1-process": ("G1-realtime",),
    "G-single": ("G-nonadjacent", "G-single-process"),
    "G-single-process": ("G-nonadjacent-process", "G-single-realtime"),
    "G-single-realtime": ("G-nonadjacent-realtime",),
    "G-nonadjacent": ("G2-item", "G-nonadjacent-process"),
    "G-nonadjacent-process": ("G2-item-process", "G-nonadjacent-realtime"),
    "G-nonadjacent-realtime": ("G2-item-realtime",),
    "G2-item": ("G2", "G2-item-process"),
    "G2-item-process": ("G2-process", "G2-item-realtime"),
    "G2-item-realtime": ("G2-realtime",),
    "G2": ("G2-process",),
    "G2-process": ("G2-realtime",),
    # Two reads no single order of appends explains: some read saw a state that never was.
    "incompatible-order": ("G1a",),
    # A read of the transaction's own later append: a trivial wr cycle from a txn to itself.
    "future-read": ("G1c",),
    "dirty-update": ("G1a",),
    # Two transactions read the same version and both appended after it: rw-rw on one key.
    "lost-update": ("G2-item",),
}

MODELS: tuple[str, ...] = tuple(sorted(MODEL_IMPLIES))


def _closure(start: Iterable[str], edges: Mapping[str, Iterable[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(start)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(edges.get(node, ()))
    return seen


def _reverse(edges: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    reverse: dict[str, list[str]] = {}
    for source, targets in edges.items():
        for target in targets:
            reverse.setdefault(target, []).append(source)
    return reverse


_MODEL_IMPLIED_BY = _reverse(MODEL_IMPLIES)
_ANOMALY_IMPLIED_BY = _reverse(ANOMALY_IMPLIES)


def normalise_model(name: str) -> str:
    """Return a model's canonical name; raise ValueError for an unknown one."""
    canonical = name.strip().lower().replace("_", "-").replace(" ", "-")
    if canonical not in MODEL_IMPLIES:
        raise ValueError(f"unknown consistency model {name!r}; known models: {', '.join(MODELS)}")
    return canonical


def implied_anomalies(anomalies: Iterable[str]) -> set[str]:
    """Return the anomalies given and every anomaly they imply."""
    return _closure(anomalies, ANOMALY_IMPLIES)


def forbidden_anomalies(model: str) -> set[str]:
    """Return every anomaly a model forbids, with those of the weaker models it implies."""
    direct = {
        anomaly
        for implied_model in _closure([model], MODEL_IMPLIES)
        for anomaly in MODEL_FORBIDS.get(implied_model, ())
    }
    # Anything that implies a forbidden anomaly is forbidden too.
    return _closure(direct, _ANOMALY_IMPLIED_BY)


def impossible_models(anomalies: Iterable[str]) -> set[str]:
    """Return the models a set of anomalies rules out, and every stronger model."""
    shown = implied_anomalies(anomalies)
    direct = {model for model, forbids in MODEL_FORBIDS.items() if shown.intersection(forbids)}
    return _closure(direct, _MODEL_IMPLIED_BY)


def weakest(models: Iterable[str]) -> list[str]:
    """Return the models no other model of the set is weaker than (Elle's `not`)."""
    chosen = set(models)
    return sorted(
        model
        for model in chosen
        if not (_closure(MODEL_IMPLIES.get(model, ()), MODEL_IMPLIES) & chosen)
    )


def strongest(models: Iterable[str]) -> list[str]:
    """Return the models no other model of the set is stronger than."""
    chosen = set(models)
    return sorted(
        model
        for model in chosen
        if not (_closure(_MODEL_IMPLIED_BY.get(model, ()), _MODEL_IMPLIED_BY) & chosen)
    )


def boundary(anomalies: Iterable[str]) -> tuple[list[str], list[str]]:
    """Return (not, also_not): the weakest models ruled out, then the other ruled-out models."""
    ruled_out = impossible_models(anomalies)
    weakest_out = weakest(ruled_out)
    return weakest_out, sorted(ruled_out - set(weakest_out))


def order_edges_needed(model: str) -> str | None:
    """Return which order edges checking a model needs: "realtime", "process" or None.

    Realtime order covers process order (a process runs one transaction at a time), so a model
    forbidding a realtime cycle needs only realtime edges, as in Elle.
    """
    forbidden = forbidden_anomalies(model)
    if any(anomaly.endswith("-realtime") for anomaly in forbidden):
        return "realtime"
    if any(anomaly.endswith("-process") for anomaly in forbidden):
        return "process"
    return None


def checkable_models(order_edges: str | None) -> set[str]:
    """Return the models whose forbidden cycles a graph with these order edges can show."""
    return {model for model in MODELS if order_edges_needed(model) in (None, order_edges)}
