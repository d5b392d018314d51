"""Write and print an integrity report: integrity.json and the offending rows as text."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from integrity.checks import IntegrityReport
from results.files import INTEGRITY_FILE

SCHEMA_VERSION = 1
PRINTED_ROWS = 10


def report_to_dict(report: IntegrityReport) -> dict[str, Any]:
    """Return the report in the integrity.json shape of docs/design.md."""
    document = asdict(report)
    document["checks"] = [{**check, "rows": list(check["rows"])} for check in document["checks"]]
    return {"schema_version": SCHEMA_VERSION, **document}


def write_integrity_json(report: IntegrityReport, path: Path) -> Path:
    """Write the report to ``path`` (a file, or a folder that gets integrity.json)."""
    target = Path(path)
    if target.is_dir():
        target = target / INTEGRITY_FILE
    target.write_text(json.dumps(report_to_dict(report), indent=2) + "\n", encoding="utf-8")
    return target


def read_integrity_json(path: Path) -> dict[str, Any]:
    """Read an integrity.json written by ``write_integrity_json``."""
    target = Path(path)
    if target.is_dir():
        target = target / INTEGRITY_FILE
    return json.loads(target.read_text(encoding="utf-8"))


def format_report(report: IntegrityReport, printed_rows: int = PRINTED_ROWS) -> str:
    """Render the report as text: one line per check, then its first offending rows."""
    failed = [check for check in report.checks if not check.ok]
    verdict = "OK" if report.ok else f"VIOLATED ({len(failed)} of {len(report.checks)} checks)"
    lines = [
        f"integrity: {verdict} on database {report.database}, "
        f"{report.client_operations} client operations, {report.ledger_rows} ledger rows"
        + (
            f", {report.scheduling_operations} scheduling operations, "
            f"{report.session_rows} sessions"
            if report.scheduling_operations or report.session_rows
            else ""
        )
    ]
    for check in report.checks:
        if not check.checked:
            state = "NOT CHECKED"
        else:
            state = "ok" if check.ok else f"FAILED, {check.violations} violations"
        detail = check.detail.removeprefix("NOT CHECKED: ") if not check.checked else check.detail
        lines.append(f"  {check.name}: {state}" + (f" ({detail})" if detail else ""))
        if not check.ok:
            lines.extend(f"      {_format_row(row)}" for row in check.rows[:printed_rows])
            hidden = check.violations - min(len(check.rows), printed_rows)
            if hidden > 0:
                lines.append(f"      ... {hidden} more (see integrity.json)")
    return "\n".join(lines)


def _format_row(row: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in row.items() if value is not None)
