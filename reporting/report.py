"""Build every report file of a run folder: summary.json, report.html, the Markdown results."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reporting.junit import junit_xml
from reporting.records import load_run
from reporting.regression_gate import apply_regression_gate
from reporting.render import render_html, render_markdown
from reporting.run_index import record_run
from reporting.summary import summarise
from results.files import (
    CAPACITY_FILE,
    COMPARE_FILE,
    COMPARISON_DIR,
    HTML_FILE,
    MARKDOWN_FILE,
    SUMMARY_FILE,
)
from results.reader import UnreadableDocumentError, read_optional_object


@dataclass(frozen=True)
class ReportFiles:
    """Where a run's report went, and its summary."""

    summary: dict[str, Any]
    summary_path: Path
    html_path: Path
    markdown_path: Path

    @property
    def decision(self) -> str:
        return str(self.summary["verdict"]["decision"])


def write_report(run_dir: Path, *, junit_path: Path | None = None) -> ReportFiles:
    """Read ``run_dir``, decide the verdict and write the three report files into it.

    With ``junit_path``, the verdict's JUnit XML goes there too (reporting/junit.py).
    """
    run_dir = Path(run_dir)
    record = load_run(run_dir)
    summary = summarise(record)
    capacity = _read_capacity(run_dir)
    if capacity is not None:
        summary["capacity"] = capacity
    comparison = _read_comparison(run_dir)
    if comparison is not None:
        # Written by `load-test.all --baseline`: a regression against it gates the verdict.
        summary = apply_regression_gate(summary, comparison)
    summary_path = run_dir / SUMMARY_FILE
    html_path = run_dir / HTML_FILE
    markdown_path = run_dir / MARKDOWN_FILE
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    html_path.write_text(render_html(summary, record), encoding="utf-8")
    markdown_path.write_text(render_markdown(summary), encoding="utf-8")
    record_run(run_dir, summary)
    if junit_path is not None:
        write_junit(summary, junit_path)
    return ReportFiles(summary, summary_path, html_path, markdown_path)


def write_junit(summary: Mapping[str, Any], path: Path) -> Path:
    """Write a run's JUnit XML to ``path`` (its folder made if need be) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(summary), encoding="utf-8")
    return path


def _read_capacity(run_dir: Path) -> dict[str, Any] | None:
    """Return the capacity search's capacity.json, if this run was one (None otherwise)."""
    return _read_optional_document(run_dir / CAPACITY_FILE)


def _read_comparison(run_dir: Path) -> dict[str, Any] | None:
    """Return the comparison with the run's baseline, if it was compared (None otherwise)."""
    return _read_optional_document(run_dir / COMPARISON_DIR / COMPARE_FILE)


def _read_optional_document(path: Path) -> dict[str, Any] | None:
    """Return the JSON object at ``path``; None when it is missing or unreadable."""
    try:
        return read_optional_object(path)
    except UnreadableDocumentError:
        return None
