"""An Elle-style isolation checker for Jepsen-shaped list-append histories (no JVM).

Reads history.jsonl, infers each key's version order and the ww/wr/rw dependency graph the
way Elle does, finds and explains cycles (G0, G1c, G-single, G-nonadjacent, G2-item and
their -process/-realtime variants) and the direct anomalies (G1a, G1b, internal, ...), and
judges them against a consistency model. Imports nothing from the service it checks.
"""

from __future__ import annotations

from anomalies.checker import Anomaly, CheckResult, check_history
from anomalies.history import HistoryInputError, ParsedHistory, read_events, read_history
from anomalies.models import DEFAULT_MODEL, MODELS
from anomalies.render import render_cycle_html, smallest_cycle

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "Anomaly",
    "CheckResult",
    "HistoryInputError",
    "ParsedHistory",
    "check_history",
    "read_events",
    "read_history",
    "render_cycle_html",
    "smallest_cycle",
]
