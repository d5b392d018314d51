"""Reading a run's documents: a malformed or older one is one error naming the file and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_report import make_run, scenario_result
from test_result_contract import a_result

from reporting.compare_inputs import CompareInputError, load_run_sample
from reporting.records import ReportInputError, load_run
from results.reader import (
    DocumentError,
    UnreadableDocumentError,
    read_result,
    read_run,
    read_summary,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "high_contention"


def write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def a_summary() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "run_id": "20261201T000000Z-abc1234",
        "profile": "smoke",
        "verdict": {"decision": "GO", "reasons": [], "findings": []},
        "totals": {"requests": 10, "errors": 1},
    }


def test_the_runners_result_json_reads_back_with_its_figures(tmp_path: Path) -> None:
    result = read_result(write(tmp_path / "result.json", a_result()))
    assert (result.scenario, result.profile, result.load_model) == (SCENARIO, "smoke", "closed")
    assert result.totals is not None
    assert (result.totals.requests, result.totals.errors, result.totals.error_rate) == (10, 1, 0.1)
    assert result.latency_ms is not None
    assert result.latency_ms.count == 10
    assert result.run is not None
    # The hand-made collection has no process files: the runner says so, and so does the reader.
    assert result.run.reasons == ["1 of 1 generator processes wrote no results"]


def test_a_summary_reads_back_with_its_verdict(tmp_path: Path) -> None:
    summary = read_summary(write(tmp_path / "summary.json", a_summary()))
    assert (summary.run_id, summary.verdict.decision, summary.profile) == (
        "20261201T000000Z-abc1234",
        "GO",
        "smoke",
    )
    assert summary.totals is not None
    assert summary.totals.errors == 1
    assert summary.strategy is None  # a field the document lacks is None, not a KeyError


def test_a_field_of_the_wrong_type_names_the_file_and_the_field(tmp_path: Path) -> None:
    document = a_result()
    document["latency_ms"]["p95"] = "slow"  # type: ignore[index]
    path = write(tmp_path / "result.json", document)
    with pytest.raises(DocumentError) as raised:
        read_result(path)
    assert (
        str(raised.value) == f"{path}: Expected `float | null`, got `str` - at `$.latency_ms.p95`"
    )


def test_a_missing_required_field_is_named(tmp_path: Path) -> None:
    document = a_result()
    del document["scenario"]
    path = write(tmp_path / "result.json", document)
    with pytest.raises(
        DocumentError, match=r"result\.json: Object missing required field `scenario`$"
    ):
        read_result(path)
    summary = a_summary()
    del summary["verdict"]["decision"]
    path = write(tmp_path / "summary.json", summary)
    with pytest.raises(DocumentError) as raised:
        read_summary(path)
    assert str(raised.value) == f"{path}: Object missing required field `decision` - at `$.verdict`"


def test_a_step_of_the_wrong_shape_in_run_json_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path / "run.json", {"schema_version": 1, "steps": [{"name": "setup", "ok": "yes"}]}
    )
    with pytest.raises(DocumentError) as raised:
        read_run(path)
    assert str(raised.value) == f"{path}: Expected `bool`, got `str` - at `$.steps[0].ok`"


def test_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "result.json", {**a_result(), "schema_version": 0})
    with pytest.raises(DocumentError) as raised:
        read_result(path)
    assert str(raised.value) == f"{path}: Invalid enum value 0 - at `$.schema_version`"


def test_invalid_json_is_unreadable_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text('{"scenario": "high_contention", "totals": {', encoding="utf-8")
    with pytest.raises(UnreadableDocumentError) as raised:
        read_result(path)
    assert str(raised.value).startswith(f"{path}: unreadable: Expecting property name")
    write(path, [1, 2])
    with pytest.raises(UnreadableDocumentError, match="does not hold a JSON object"):
        read_result(path)


def test_fields_a_newer_writer_adds_are_ignored(tmp_path: Path) -> None:
    result = read_result(write(tmp_path / "result.json", {**a_result(), "written_by": "later"}))
    assert result.scenario == SCENARIO


def test_the_report_refuses_a_result_of_the_wrong_shape(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    document = scenario_result(SCENARIO, requests=500, p95=120.5)
    document["totals"]["requests"] = "500"
    path = write(run_dir / SCENARIO / "result.json", document)
    with pytest.raises(ReportInputError) as raised:
        load_run(run_dir)
    assert str(raised.value) == f"{path}: Expected `int`, got `str` - at `$.totals.requests`"


def test_a_result_cut_short_is_still_a_recorded_failure(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    (run_dir / SCENARIO / "result.json").write_text('{"scenario": ', encoding="utf-8")
    (evidence,) = [e for e in load_run(run_dir).scenarios if e.scenario == SCENARIO]
    assert evidence.result is None
    assert evidence.failure is not None
    assert evidence.failure.startswith("result.json unreadable: Expecting value")


def test_the_comparison_refuses_a_run_json_of_the_wrong_shape(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    path = write(run_dir / "run.json", {**run, "scenarios": "high_contention"})
    with pytest.raises(CompareInputError) as raised:
        load_run_sample(run_dir)
    assert str(raised.value) == f"{path}: Expected `array`, got `str` - at `$.scenarios`"


def test_the_report_command_says_which_file_and_field_in_one_line(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    document = scenario_result(SCENARIO, requests=500, p95=120.5)
    document["latency_ms"]["p95"] = "slow"
    path = write(run_dir / SCENARIO / "result.json", document)
    completed = subprocess.run(
        [sys.executable, "-m", "invoke", "load-test.report", "--run-dir", str(run_dir)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr == (
        f"error: {path}: Expected `float | null`, got `str` - at `$.latency_ms.p95`\n"
    )
    assert not (run_dir / "summary.json").exists()
