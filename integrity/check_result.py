"""What a check returns, shared by the counter checks and the scheduling checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NOT_CHECKED = "NOT CHECKED"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ok, how many violations, and the first offending rows."""

    name: str
    description: str
    ok: bool
    violations: int
    rows: tuple[dict[str, Any], ...] = ()
    detail: str = ""
    # False when the check could not run on these inputs (said in `detail`): not a pass.
    checked: bool = True


def not_checked(name: str, description: str, reason: str) -> CheckResult:
    """Return the result of a check that could not run, saying why."""
    return CheckResult(
        name, description, ok=True, violations=0, detail=f"{NOT_CHECKED}: {reason}", checked=False
    )


def plain_row(row: dict[str, Any]) -> dict[str, Any]:
    """Make a row JSON-ready: None, bool, int and str stay; anything else becomes text."""
    return {
        key: value if value is None or isinstance(value, bool | int | str) else str(value)
        for key, value in row.items()
    }
