"""Integrity checks: read the database with our own SQL and the generator's result files."""

from __future__ import annotations

from integrity.checks import (
    CHECK_NAMES,
    ROW_LIMIT,
    CheckResult,
    IntegrityInputError,
    IntegrityReport,
    run_checks,
)
from integrity.output import format_report, read_integrity_json, write_integrity_json

__all__ = [
    "CHECK_NAMES",
    "ROW_LIMIT",
    "CheckResult",
    "IntegrityInputError",
    "IntegrityReport",
    "format_report",
    "read_integrity_json",
    "run_checks",
    "write_integrity_json",
]
