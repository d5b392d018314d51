"""result.json and summary.json carry exactly the keys results/documents.py declares.

A key added to a writer without the contract (or declared and never written) fails here, so the
TypedDicts cannot drift from the files the pipeline leaves behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from load_runner.profiles import load_scenario_config
from load_runner.runner import MolotovOutcome, build_result
from pipeline.run import RunLog
from reporting.report import write_report
from results.collect import Collected
from results.documents import ResultDocument, SummaryDocument, declared_keys, required_keys
from results.files import HTML_FILE, MARKDOWN_FILE, RESULT_FILE, RUN_FILE, SUMMARY_FILE
from results.record_format import Record

SCENARIO = "high_contention"


def a_result() -> dict[str, object]:
    """Build result.json for 10 hand-picked requests, one refused, as the runner does."""
    records = [
        Record(f"r{i}", "reserve", "a", 200, "", 100.0, 3.0 + i / 10, f"t{i}", "reserve", 1)
        for i in range(9)
    ]
    records.append(Record("r9", "reserve", "a", 409, "insufficient_units", 50.0, 3.9, "", "", 1))
    collected = Collected(records, [], 1000.0, 0, "", 0, [])
    outcome = MolotovOutcome(0, False, wall_s=6.0, cpu_seconds=1.0, stderr_tail="")
    config = load_scenario_config(SCENARIO, "smoke")
    return dict(build_result(config, "http://127.0.0.1:1", outcome, collected, 999.0))


def test_result_json_has_every_required_key_and_no_undeclared_one() -> None:
    result = a_result()
    assert required_keys(ResultDocument) <= set(result) <= declared_keys(ResultDocument)
    assert set(result["totals"]) == {  # type: ignore[call-overload]
        "requests", "errors", "error_rate", "throughput_rps", "measured_window_s",
    }  # fmt: skip


def test_summary_json_has_every_required_key_and_no_undeclared_one(tmp_path: Path) -> None:
    run_dir = tmp_path / "20261201T000000Z-abc1234"
    (run_dir / SCENARIO).mkdir(parents=True)
    log = RunLog(run_dir, profile="smoke", strategy="serializable", scenarios=[SCENARIO])
    log.finish()
    (run_dir / SCENARIO / RESULT_FILE).write_text(json.dumps(a_result()))
    files = write_report(run_dir)
    assert files.summary_path == run_dir / SUMMARY_FILE
    assert files.html_path == run_dir / HTML_FILE
    assert (run_dir / MARKDOWN_FILE).exists()
    assert (run_dir / RUN_FILE).exists()
    summary = json.loads(files.summary_path.read_text())
    assert required_keys(SummaryDocument) <= set(summary) <= declared_keys(SummaryDocument)
    assert summary["totals"] == {"requests": 10, "errors": 1}
