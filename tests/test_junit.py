"""JUnit XML from summary.json: a test case per threshold and per integrity check, per scenario."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from test_report import make_run

from reporting.junit import junit_xml
from reporting.report import write_report

PROJECT_ROOT = Path(__file__).resolve().parent.parent
P95_MISS = "p95_ms 250.0 ms against at most 200.0 ms, missed by 25.0 %"
OVERBOOKING_ROW = {"problem": "overbooked", "authorization_id": "a-17", "units_over": 10}
NOT_APPLICABLE = "not applicable: no high_contention scenario among the results"
# What the common JUnit schema (Jenkins' junit-10.xsd, read by GitLab and GitHub reporters)
# allows: attributes each element may carry, and the outcome elements of a test case.
SUITES_ATTRIBUTES = {"name", "tests", "failures", "errors", "skipped", "time"}
SUITE_ATTRIBUTES = {"name", "tests", "failures", "errors", "skipped", "time", "timestamp"}
CASE_ATTRIBUTES = {"name", "classname", "time"}
OUTCOMES = {"failure", "error", "skipped"}
CASE_CHILDREN = OUTCOMES | {"system-out", "system-err"}


def threshold(name: str, limit: float, measured: float, *, ok: bool) -> dict[str, Any]:
    return {
        "name": name,
        "comparison": "at most",
        "limit": limit,
        "measured": measured,
        "ok": ok,
        "missed_by_pct": 0.0 if ok else (measured - limit) / limit * 100,
        "decision": "GO" if ok else "CONDITIONAL",
        "status": None,
        "interval": None,
        "note": None,
        "stall": None,
    }


def check(name: str, *, violations: int = 0, detail: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"{name} holds",
        "ok": violations == 0,
        "checked": True,
        "violations": violations,
        "detail": detail,
        "rows": [],
        **extra,
    }


def summary_document() -> dict[str, Any]:
    """A CONDITIONAL-and-NO-GO run: one scenario misses p95 and overbooks; one is clean."""
    return {
        "run_id": "20261126T210000Z-abc1234",
        "duration_s": 120.0,
        "verdict": {
            "decision": "NO-GO",
            "reasons": ["high_contention: integrity check no_overbooking failed with 2 violations"],
            "findings": [
                {
                    "decision": "NO-GO",
                    "scenario": "high_contention",
                    "reason": "integrity check no_overbooking failed with 2 violations",
                },
                {"decision": "CONDITIONAL", "scenario": "high_contention", "reason": P95_MISS},
            ],
        },
        "scenarios": [
            {
                "scenario": "high_contention",
                "started_at": "2026-11-26T21:00:00+00:00",
                "duration_s": 5.0,
                "thresholds": [
                    threshold("p95_ms", 200.0, 250.0, ok=False),
                    threshold("p99_ms", 500.0, 300.0, ok=True),
                ],
                "integrity": {
                    "ok": False,
                    "checks": [
                        check(
                            "no_overbooking",
                            violations=2,
                            detail="counted by counters and by ledger",
                            rows=[OVERBOOKING_ROW, {"problem": "overbooked"}],
                        ),
                        check("ledger_consistency"),
                    ],
                },
            },
            {
                "scenario": "high_throughput",
                "duration_s": 6.0,
                "thresholds": [threshold("p95_ms", 200.0, 120.5, ok=True)],
                "integrity": {
                    "ok": True,
                    "checks": [
                        check("contention_expectation", detail=NOT_APPLICABLE),
                        {**check("client_reconciliation", detail="NOT CHECKED: no records"),
                         "checked": False},
                    ],
                },
            },
        ],
    }  # fmt: skip


@pytest.fixture(name="suites")
def _suites() -> ET.Element:
    return ET.fromstring(junit_xml(summary_document()))


def case(suites: ET.Element, classname: str, name: str) -> ET.Element:
    (found,) = [
        c
        for c in suites.iter("testcase")
        if (c.get("classname"), c.get("name")) == (classname, name)
    ]
    return found


def assert_valid_junit(root: ET.Element) -> None:
    """Check the common JUnit structure: element names, attributes, outcomes and counts."""
    assert root.tag == "testsuites"
    assert set(root.attrib) <= SUITES_ATTRIBUTES
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for suite in root:
        assert suite.tag == "testsuite"
        assert set(suite.attrib) <= SUITE_ATTRIBUTES
        assert suite.get("name")
        counts = dict.fromkeys(totals, 0)
        for testcase in suite:
            assert testcase.tag == "testcase"
            assert set(testcase.attrib) <= CASE_ATTRIBUTES
            assert testcase.get("name")
            assert testcase.get("classname")
            children = [child.tag for child in testcase]
            assert set(children) <= CASE_CHILDREN
            outcomes = [tag for tag in children if tag in OUTCOMES]
            assert len(outcomes) <= 1  # a case passes, fails, errs or is skipped: one of them
            counts["tests"] += 1
            for tag in outcomes:
                counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[tag]] += 1
                assert testcase.find(tag).get("message")  # type: ignore[union-attr]
        for key, value in counts.items():
            assert int(suite.get(key, "-1")) == value, (suite.get("name"), key)
            totals[key] += value
    for key, value in totals.items():
        assert int(root.get(key, "-1")) == value, key


def test_the_xml_parses_and_has_the_common_junit_structure(suites: ET.Element) -> None:
    assert_valid_junit(suites)
    assert [s.get("name") for s in suites] == ["verdict", "high_contention", "high_throughput"]
    assert suites.attrib == {
        "name": "clinic-loadtest 20261126T210000Z-abc1234",
        "tests": "8",
        "failures": "3",
        "errors": "0",
        "skipped": "2",
        "time": "120.000",
    }


def test_a_met_threshold_is_a_passing_case(suites: ET.Element) -> None:
    met = case(suites, "high_contention.threshold", "p99_ms")
    assert met.attrib == {"classname": "high_contention.threshold", "name": "p99_ms"}
    assert list(met) == []


def test_a_missed_threshold_fails_with_the_verdicts_reason(suites: ET.Element) -> None:
    missed = case(suites, "high_contention.threshold", "p95_ms")
    (failure,) = list(missed)
    assert failure.tag == "failure"
    assert failure.attrib == {"message": P95_MISS, "type": "CONDITIONAL"}
    assert failure.text == P95_MISS


def test_a_failing_integrity_check_fails_with_its_violations_and_rows(suites: ET.Element) -> None:
    overbooking = case(suites, "high_contention.integrity", "no_overbooking")
    (failure,) = list(overbooking)
    assert failure.tag == "failure"
    assert failure.attrib == {
        "message": "2 violations: counted by counters and by ledger",
        "type": "NO-GO",
    }
    assert failure.text == "\n".join(
        [
            "no_overbooking holds",
            "2 violations: counted by counters and by ledger",
            json.dumps(OVERBOOKING_ROW, sort_keys=True),
            json.dumps({"problem": "overbooked"}),
        ]
    )
    assert list(case(suites, "high_contention.integrity", "ledger_consistency")) == []


def test_a_not_applicable_or_not_checked_check_is_skipped_with_why(suites: ET.Element) -> None:
    (skipped,) = list(case(suites, "high_throughput.integrity", "contention_expectation"))
    assert skipped.tag == "skipped"
    assert skipped.attrib == {"message": NOT_APPLICABLE}
    (unchecked,) = list(case(suites, "high_throughput.integrity", "client_reconciliation"))
    assert unchecked.tag == "skipped"
    assert unchecked.attrib == {"message": "not checked: no records"}


def test_the_verdict_case_fails_unless_go(suites: ET.Element) -> None:
    (failure,) = list(case(suites, "verdict", "decision"))
    assert failure.attrib == {
        "message": "NO-GO: high_contention: integrity check no_overbooking failed with 2 "
        "violations",
        "type": "NO-GO",
    }
    document = summary_document()
    document["verdict"] = {"decision": "GO", "reasons": [], "findings": []}
    go = ET.fromstring(junit_xml(document))
    assert list(case(go, "verdict", "decision")) == []
    assert_valid_junit(go)


def test_a_scenario_never_verified_fails_its_integrity_case() -> None:
    document = summary_document()
    document["scenarios"][1]["integrity"] = None
    root = ET.fromstring(junit_xml(document))
    assert_valid_junit(root)
    (failure,) = list(case(root, "high_throughput.integrity", "integrity"))
    assert failure.get("message") == "integrity was not verified"


def test_write_report_writes_the_junit_of_a_run_folder(tmp_path: Path) -> None:
    junit_path = tmp_path / "out" / "junit.xml"
    files = write_report(make_run(tmp_path, p95=250.0), junit_path=junit_path)
    root = ET.parse(junit_path).getroot()
    assert_valid_junit(root)
    scenarios = {s["scenario"]: s for s in files.summary["scenarios"]}
    expected_cases = 1 + sum(
        len(s["thresholds"]) + len(s["integrity"]["checks"]) for s in scenarios.values()
    )
    assert int(root.get("tests", "0")) == expected_cases
    (failure,) = list(case(root, "high_contention.threshold", "p95_ms"))
    assert failure.get("message", "").startswith("p95_ms 250.0 ms against at most 200.0 ms")


def test_load_test_report_takes_junit(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    junit_path = tmp_path / "junit.xml"
    completed = subprocess.run(
        [sys.executable, "-m", "invoke", "load-test.report", "--run-dir", str(run_dir),
         "--junit", str(junit_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert_valid_junit(ET.parse(junit_path).getroot())
