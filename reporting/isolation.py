"""What a list-append scenario's isolation check (anomalies.json) means for the verdict and report.

Pure functions over the documents: an anomaly the required model forbids is NO-GO, with the
checker's own words as evidence; anomalies the model allows are told beside the verdict; a
scenario whose profile requires a model but whose history was not checked is NO-GO too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anomalies import Anomaly, render_cycle_html


def required_model(result: Mapping[str, Any] | None) -> str | None:
    """Return the model the scenario's profile requires (result.json config), or None."""
    model = ((result or {}).get("config") or {}).get("required_model")
    return str(model) if model else None


def verdict_line(anomalies: Mapping[str, Any]) -> str:
    """Say in one line what the history is: e.g. "not serializable (G2-item); consistent with
    snapshot-isolation"."""
    model = anomalies.get("required_model")
    if anomalies.get("error"):
        return f"not checked: {anomalies['error']}"
    consistent = ", ".join(anomalies.get("consistent_with") or []) or "none of the models checked"
    if anomalies.get("valid"):
        return f"{model}: no anomaly it forbids; consistent with {consistent}"
    forbidden = ", ".join(anomalies.get("forbidden_kinds") or [])
    return f"not {model} ({forbidden}); consistent with {consistent}"


def isolation_reasons(
    result: Mapping[str, Any] | None, anomalies: Mapping[str, Any] | None
) -> list[tuple[bool, str]]:
    """Return the verdict's reasons from a scenario's isolation check: (blocks GO, reason)."""
    model = required_model(result)
    if anomalies is None:
        if model is None:
            return []
        return [(True, f"the history was not checked against {model}")]
    if anomalies.get("error"):
        return [(True, f"isolation {verdict_line(anomalies)}")]
    counts: Mapping[str, int] = anomalies.get("anomaly_counts") or {}
    forbidden = set(anomalies.get("forbidden_kinds") or [])
    told = ", ".join(f"{kind} x{n}" for kind, n in counts.items())
    if not anomalies.get("valid"):
        return [(True, f"isolation: {verdict_line(anomalies)}: {told}")]
    allowed = {kind: n for kind, n in counts.items() if kind not in forbidden}
    if not allowed:
        return []
    listed = ", ".join(f"{kind} x{n}" for kind, n in allowed.items())
    model = anomalies.get("required_model")
    return [(False, f"isolation: {model} allows what was found ({listed})")]


def isolation_summary(anomalies: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return the report's isolation section: verdict line, counts by kind, one smallest cycle."""
    if anomalies is None:
        return None
    cycle = smallest_cycle_json(anomalies)
    return {
        "required_model": anomalies.get("required_model"),
        "valid": bool(anomalies.get("valid")),
        "verdict": verdict_line(anomalies),
        "anomaly_counts": dict(anomalies.get("anomaly_counts") or {}),
        "forbidden_kinds": list(anomalies.get("forbidden_kinds") or []),
        "transactions": dict(anomalies.get("transactions") or {}),
        "error": anomalies.get("error"),
        "cycle_text": None if cycle is None else cycle.text,
        "cycle_html": None if cycle is None else render_cycle_html(cycle),
    }


def smallest_cycle_json(anomalies: Mapping[str, Any]) -> Anomaly | None:
    """Return the shortest cycle kept in anomalies.json, forbidden kinds first (as
    anomalies.render.smallest_cycle picks from a result in memory)."""
    forbidden = set(anomalies.get("forbidden_kinds") or [])
    cycles = [
        Anomaly(
            kind=str(kept.get("kind")),
            text=str(kept.get("text") or ""),
            transactions=tuple(kept.get("transactions") or ()),
            steps=tuple(kept.get("steps") or ()),
            details=dict(kept.get("details") or {}),
        )
        for kind_kept in (anomalies.get("anomalies") or {}).values()
        for kept in kind_kept
        if kept.get("steps")
    ]
    if not cycles:
        return None
    return min(cycles, key=lambda a: (a.kind not in forbidden, len(a.steps), a.kind))
