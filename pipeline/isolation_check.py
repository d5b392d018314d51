"""Check a list-append scenario's history for isolation anomalies; write anomalies.json.

Runs after a scenario whose profile names a `required_model` (isolation_append): the history
the runner wrote goes to anomalies/ (Elle's inference, no JVM), judged against that model.
A history the checker cannot read is written down as such, so the verdict can say why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from anomalies import HistoryInputError, check_history
from results.files import ANOMALIES_FILE, HISTORY_FILE, RESULT_FILE
from results.reader import UnreadableDocumentError, read_result


def required_model(result_dir: Path) -> str | None:
    """Return the consistency model the scenario's profile requires, None when it names none."""
    try:
        result = read_result(result_dir / RESULT_FILE)
    except UnreadableDocumentError:
        return None
    model = result.config.get("required_model")
    return str(model) if model else None


def check_isolation(result_dir: Path, require: str | None = None) -> str | None:
    """Check ``result_dir``'s history against ``require`` (default: its profile's model).

    Writes anomalies.json and returns the checker's summary; None when there is nothing to
    check (no model required).
    """
    model = require or required_model(result_dir)
    if model is None:
        return None
    document: dict[str, Any]
    try:
        checked = check_history(result_dir / HISTORY_FILE, require=model)
    except (HistoryInputError, ValueError) as error:
        document = {"valid": False, "required_model": model, "error": str(error)}
        summary = f"isolation NOT CHECKED: {error}"
    else:
        document, summary = checked.to_json(), checked.summary()
    (result_dir / ANOMALIES_FILE).write_text(json.dumps(document, indent=2) + "\n")
    return summary
