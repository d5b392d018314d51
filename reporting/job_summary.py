"""The CI job summary of a run: its verdict line, its JUnit cases by scenario, the comparison.

What a reviewer reads first in a pull request's checks. Pure `job_summary()` (documents in,
Markdown out); `main()` reads the newest run of a reports folder. Standard library only, like
pipeline/ci_baseline.py: CI may run it with the runner's Python.

    python3 -m reporting.job_summary reports --junit junit.xml >> "$GITHUB_STEP_SUMMARY"
"""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reporting.run_index import RUN_NAME_GLOB
from results.files import COMPARE_MARKDOWN_FILE, COMPARISON_DIR, SUMMARY_FILE

NO_REPORT = "## Load test: no report\n\nThe pipeline stopped before it wrote a summary.json.\n"
OUTCOMES = ("failure", "error", "skipped")


def job_summary(
    summary: Mapping[str, Any] | None, junit: str | None = None, comparison: str | None = None
) -> str:
    """Return the job summary in Markdown: the verdict and its reasons, checks, comparison."""
    if summary is None:
        return NO_REPORT
    verdict = summary.get("verdict") or {}
    decision = verdict.get("decision") or "unknown"
    lines = [
        f"## Load test: {decision}",
        "",
        f"**{decision}** for run `{summary.get('run_id')}`: profile {summary.get('profile')}, "
        f"strategy {summary.get('strategy')}, transaction shape "
        f"{summary.get('transaction_shape')}.",
        "",
    ]
    lines += [f"- {_cell(reason)}" for reason in verdict.get("reasons") or []]
    if junit:
        lines += ["", *_junit_lines(ET.fromstring(junit))]
    if comparison:
        lines += ["", "### Comparison with main", "", comparison.strip()]
    return "\n".join(lines).rstrip() + "\n"


def _junit_lines(root: ET.Element) -> list[str]:
    lines = [
        "### Checks (JUnit)",
        "",
        "| Suite | Passed | Failed | Skipped |",
        "| --- | ---: | ---: | ---: |",
    ]
    problems = []
    for suite in root.iter("testsuite"):
        tests, failed, skipped = (
            int(suite.get(key) or 0) for key in ("tests", "failures", "skipped")
        )
        failed += int(suite.get("errors") or 0)
        lines.append(f"| {suite.get('name')} | {tests - failed - skipped} | {failed} | {skipped} |")
        for case in suite.iter("testcase"):
            outcome = next((case.find(tag) for tag in OUTCOMES if case.find(tag) is not None), None)
            # The verdict's own case repeats the reasons listed above the table.
            if outcome is not None and outcome.tag != "skipped" and suite.get("name") != "verdict":
                name = f"{case.get('classname')} {case.get('name')}"
                problems.append(f"- **{name}**: {_cell(outcome.get('message') or '')}")
    return lines + (["", "Failed:", "", *problems] if problems else [])


def _cell(text: str) -> str:
    """Keep a message on one Markdown line."""
    return " ".join(str(text).split()).replace("|", "\\|")


def newest_run(reports_root: Path) -> Path | None:
    """Return the newest run folder with a summary.json under ``reports_root``."""
    runs = sorted(p for p in reports_root.glob(RUN_NAME_GLOB) if (p / SUMMARY_FILE).is_file())
    return runs[-1] if runs else None


def main(argv: list[str] | None = None) -> int:
    """Print the job summary of the newest run in a reports folder; return 0."""
    parser = argparse.ArgumentParser(prog="python3 -m reporting.job_summary", description=__doc__)
    parser.add_argument("reports_root", type=Path)
    parser.add_argument("--junit", type=Path, help="the run's JUnit XML (load-test.all --junit)")
    options = parser.parse_args(argv)
    run_dir = newest_run(options.reports_root)
    summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8")) if run_dir else None
    junit = (
        options.junit.read_text(encoding="utf-8")
        if options.junit and options.junit.is_file()
        else None
    )
    compare_md = run_dir / COMPARISON_DIR / COMPARE_MARKDOWN_FILE if run_dir else None
    comparison = (
        compare_md.read_text(encoding="utf-8") if compare_md and compare_md.is_file() else None
    )
    print(job_summary(summary, junit, comparison), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
