"""Render one cycle as a small HTML table: its transactions, then each edge and why it holds."""

from __future__ import annotations

from html import escape

from anomalies.checker import Anomaly, CheckResult
from anomalies.explain import describe_transaction


def smallest_cycle(result: CheckResult) -> Anomaly | None:
    """Return the shortest cycle anomaly of a result, forbidden kinds first; None without one."""
    cycles = [anomaly for kept in result.anomalies.values() for anomaly in kept if anomaly.steps]
    if not cycles:
        return None
    forbidden = set(result.forbidden_kinds)
    return min(cycles, key=lambda a: (a.kind not in forbidden, len(a.steps), a.kind))


def render_cycle_html(anomaly: Anomaly) -> str:
    """Return an HTML fragment (a table) showing one cycle and the evidence for each edge."""
    rows = [
        f'<tr><th>{escape(info["name"])}</th><td colspan="2">'
        f"{escape(describe_transaction(info).split(' = ', 1)[1])}</td></tr>"
        for info in anomaly.transactions
    ]
    rows.extend(
        f"<tr><td>{escape(step['source'])} &rarr; {escape(step['target'])}</td>"
        f"<td>{escape(step['kind'])}</td><td>{escape(step['text'])}</td></tr>"
        for step in anomaly.steps
    )
    return (
        f'<table class="anomaly-cycle"><caption>{escape(anomaly.kind)}: a cycle of '
        f"{len(anomaly.transactions)} transactions</caption>"
        "<thead><tr><th>edge</th><th>kind</th><th>why the history implies it</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
