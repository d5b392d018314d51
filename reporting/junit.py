"""JUnit XML of a run, for CI systems: one test case per threshold and per integrity check.

Pure: a summary.json document in, an XML string out. The layout is the common one CI systems
read (Jenkins, GitLab, GitHub test-report actions): `<testsuites>` holding one `<testsuite>`
for the verdict and one per scenario; each `<testcase>` passes, or holds one `<failure>` with
its reason, or one `<skipped>` with why it proves nothing here.

- The verdict: one case, failing unless the run is GO, with the verdict's reasons. The JUnit
  view then never looks green when the run is not (a crash or an isolation anomaly has no
  threshold of its own).
- A threshold fails when it was missed, with the verdict's own reason text.
- An integrity check fails with its violation count, its detail and its first offending rows;
  one that was not applicable or could not run is skipped, with the reason.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

GO = "GO"
SUITES_NAME = "clinic-loadtest"
VERDICT_SUITE = "verdict"
VERDICT_CASE = "decision"
THRESHOLD_CLASS = "threshold"
INTEGRITY_CLASS = "integrity"
NOT_APPLICABLE = "not applicable"
NOT_CHECKED_PREFIX = "NOT CHECKED: "
ROWS_SHOWN = 10  # offending rows written into a failing check's text; the count says the rest
COUNTED = ("tests", "failures", "errors", "skipped")


def junit_xml(summary: Mapping[str, Any]) -> str:
    """Return the JUnit XML of a run's summary.json document."""
    suites = [_verdict_suite(summary)] + [
        _scenario_suite(scenario, summary.get("verdict") or {})
        for scenario in summary.get("scenarios") or []
    ]
    name = f"{SUITES_NAME} {summary.get('run_id') or ''}".strip()
    root = ET.Element("testsuites", {"name": name})
    _set_counts(root, suites)
    if summary.get("duration_s") is not None:
        root.set("time", _seconds(summary["duration_s"]))
    root.extend(suites)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _verdict_suite(summary: Mapping[str, Any]) -> ET.Element:
    verdict = summary.get("verdict") or {}
    decision = str(verdict.get("decision") or "unknown")
    case = _case(VERDICT_SUITE, VERDICT_CASE)
    if decision != GO:
        reasons = [str(reason) for reason in verdict.get("reasons") or []]
        message = f"{decision}: " + ("; ".join(reasons) or "no reason recorded")
        _child(case, "failure", message, decision, "\n".join(reasons))
    suite = ET.Element("testsuite", {"name": VERDICT_SUITE})
    return _with_cases(suite, [case])


def _scenario_suite(scenario: Mapping[str, Any], verdict: Mapping[str, Any]) -> ET.Element:
    name = str(scenario.get("scenario"))
    reasons = [
        str(finding.get("reason") or "")
        for finding in verdict.get("findings") or []
        if finding.get("scenario") == name
    ]
    cases = [_threshold_case(name, check, reasons) for check in scenario.get("thresholds") or []]
    cases += _integrity_cases(name, scenario.get("integrity"))
    suite = ET.Element("testsuite", {"name": name})
    if scenario.get("started_at"):
        suite.set("timestamp", str(scenario["started_at"]))
    if scenario.get("duration_s") is not None:
        suite.set("time", _seconds(scenario["duration_s"]))
    return _with_cases(suite, cases)


def _threshold_case(scenario: str, check: Mapping[str, Any], reasons: Sequence[str]) -> ET.Element:
    name = str(check.get("name"))
    case = _case(f"{scenario}.{THRESHOLD_CLASS}", name)
    if check.get("ok"):
        return case
    # The verdict's finding for this threshold starts with its name: "p95_ms 250.0 ms against".
    reason = next(
        (r for r in reasons if r.startswith((f"{name} ", f"{name}:"))), _threshold_text(check)
    )
    _child(case, "failure", reason, str(check.get("decision") or "failed"), reason)
    return case


def _threshold_text(check: Mapping[str, Any]) -> str:
    """Say what a missed threshold measured, when the verdict gave no reason of its own."""
    measured = check.get("measured")
    seen = "nothing was measured" if measured is None else f"measured {measured}"
    return f"{check.get('name')}: {seen} against {check.get('comparison')} {check.get('limit')}"


def _integrity_cases(scenario: str, integrity: Mapping[str, Any] | None) -> list[ET.Element]:
    classname = f"{scenario}.{INTEGRITY_CLASS}"
    if integrity is None:
        case = _case(classname, INTEGRITY_CLASS)
        message = "integrity was not verified"
        _child(case, "failure", message, "NO-GO", message)
        return [case]
    return [_integrity_case(classname, check) for check in integrity.get("checks") or []]


def _integrity_case(classname: str, check: Mapping[str, Any]) -> ET.Element:
    case = _case(classname, str(check.get("name")))
    detail = str(check.get("detail") or "")
    if not check.get("ok"):
        violations = int(check.get("violations") or 0)
        message = f"{violations} violations" + (f": {detail}" if detail else "")
        _child(case, "failure", message, "NO-GO", _violation_text(check, message))
    elif check.get("checked") is False:
        _child(case, "skipped", "not checked: " + detail.removeprefix(NOT_CHECKED_PREFIX))
    elif detail.startswith(NOT_APPLICABLE):
        _child(case, "skipped", detail)
    return case


def _violation_text(check: Mapping[str, Any], message: str) -> str:
    """Return a failing check's evidence: what it checks, the count, the first offending rows."""
    rows = list(check.get("rows") or [])
    lines = [str(check.get("description") or ""), message]
    lines += [json.dumps(row, sort_keys=True, default=str) for row in rows[:ROWS_SHOWN]]
    if len(rows) > ROWS_SHOWN:
        lines.append(f"... and {len(rows) - ROWS_SHOWN} more rows")
    return "\n".join(line for line in lines if line)


def _case(classname: str, name: str) -> ET.Element:
    return ET.Element("testcase", {"classname": classname, "name": name})


def _child(
    case: ET.Element, tag: str, message: str, kind: str | None = None, text: str = ""
) -> None:
    child = ET.SubElement(case, tag, {"message": message})
    if kind is not None:
        child.set("type", kind)
    if text:
        child.text = text


def _with_cases(suite: ET.Element, cases: Sequence[ET.Element]) -> ET.Element:
    """Set a suite's counts from its cases, then add them."""
    counts = _case_counts(cases)
    for key in COUNTED:
        suite.set(key, str(counts[key]))
    suite.extend(cases)
    return suite


def _case_counts(cases: Sequence[ET.Element]) -> dict[str, int]:
    return {
        "tests": len(cases),
        "failures": sum(case.find("failure") is not None for case in cases),
        "errors": sum(case.find("error") is not None for case in cases),
        "skipped": sum(case.find("skipped") is not None for case in cases),
    }


def _set_counts(root: ET.Element, suites: Sequence[ET.Element]) -> None:
    for key in COUNTED:
        root.set(key, str(sum(int(suite.get(key) or 0) for suite in suites)))


def _seconds(value: Any) -> str:
    return f"{float(value):.3f}"
