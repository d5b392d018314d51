"""CI: a pull request's baseline is a GO run of main of the same profile, strategy and shape;
the job summary carries the verdict line, the JUnit checks and the comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.ci_baseline import pick_baseline
from reporting.job_summary import job_summary
from reporting.junit import junit_xml
from reporting.run_index import latest_go, read_index, record_run
from results.files import INDEX_FILE, SUMMARY_FILE

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "load-test.yml"
SMOKE = {"profile": "smoke", "strategy": "serializable", "transaction_shape": "interactive"}


def make_reports(
    root: Path, run_id: str, *, verdict: str = "GO", indexed: bool = True, **dimensions: str
) -> Path:
    """Write a reports folder holding one run: its summary.json and its index line."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    summary: dict[str, Any] = {
        **SMOKE,
        **dimensions,
        "run_id": run_id,
        "verdict": {"decision": verdict, "reasons": [], "findings": []},
        "scenarios": [],
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary), encoding="utf-8")
    if indexed:
        record_run(run_dir, summary)
    return run_dir


def test_latest_go_keeps_to_the_transaction_shape(tmp_path: Path) -> None:
    make_reports(tmp_path, "20261101T000000Z-aaaaaaa")
    make_reports(tmp_path, "20261102T000000Z-bbbbbbb", transaction_shape="statement")
    entries = read_index(tmp_path)
    chosen = latest_go(entries, profile="smoke", strategy="serializable", transaction_shape=None)
    assert chosen is not None
    assert chosen["run_id"] == "20261102T000000Z-bbbbbbb"
    interactive = latest_go(
        entries, profile="smoke", strategy="serializable", transaction_shape="interactive"
    )
    assert interactive is not None
    assert interactive["run_id"] == "20261101T000000Z-aaaaaaa"


def test_an_index_line_older_than_the_shape_takes_it_from_the_summary(tmp_path: Path) -> None:
    run_dir = make_reports(tmp_path, "20261101T000000Z-aaaaaaa", indexed=False)
    old_line = {"run_id": run_dir.name, "profile": "smoke", "strategy": "serializable",
                "verdict": "GO"}  # fmt: skip
    (tmp_path / INDEX_FILE).write_text(json.dumps(old_line) + "\n", encoding="utf-8")
    (entry,) = read_index(tmp_path)
    assert entry["transaction_shape"] == "interactive"


def test_pick_baseline_takes_the_newest_go_run_of_the_same_dimensions(tmp_path: Path) -> None:
    folders = [
        tmp_path / "4",  # newest: NO-GO
        tmp_path / "3",  # GO, another shape
        tmp_path / "2",  # GO, another strategy
        tmp_path / "1",  # GO, the same: the baseline
        tmp_path / "0",  # GO, the same, older
    ]
    make_reports(folders[0], "20261105T000000Z-eeeeeee", verdict="NO-GO")
    make_reports(folders[1], "20261104T000000Z-ddddddd", transaction_shape="statement")
    make_reports(folders[2], "20261103T000000Z-ccccccc", strategy="for_update")
    make_reports(folders[3], "20261102T000000Z-bbbbbbb")
    make_reports(folders[4], "20261101T000000Z-aaaaaaa")
    assert pick_baseline(folders, **SMOKE) == folders[3] / "20261102T000000Z-bbbbbbb"
    assert pick_baseline(folders[:3], **SMOKE) is None


def test_the_workflow_step_never_takes_a_no_go_run_of_main(tmp_path: Path) -> None:
    """Run the download step's script as GitHub would, with a `gh` that serves artifacts."""
    artifacts = tmp_path / "artifacts"
    make_reports(artifacts / "30", "20261105T000000Z-eeeeeee", verdict="NO-GO")
    make_reports(artifacts / "20", "20261104T000000Z-ddddddd", transaction_shape="statement")
    make_reports(artifacts / "10", "20261103T000000Z-ccccccc")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "run list" ]; then printf "30\\n20\\n15\\n10\\n"; exit 0; fi\n'
        # gh run download ID --repo R --name N --dir D; run 15's artifact has expired
        f'[ -d "{artifacts}/$3" ] || exit 1\n'
        f'mkdir -p "$9" && cp -R "{artifacts}/$3/." "$9"\n'
    )
    gh.chmod(0o755)
    (bin_dir / "python3").symlink_to(sys.executable)
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["smoke"]
    (step,) = [s for s in job["steps"] if s.get("id") == "baseline"]
    work = tmp_path / "work"
    work.mkdir()
    output = tmp_path / "github_output"
    output.touch()
    completed = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=work,
        env={
            **job["env"],
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "PYTHONPATH": str(PROJECT_ROOT),
            "GITHUB_OUTPUT": str(output),
            "GITHUB_REPOSITORY": "clinic/loadtest",
            "HOME": os.environ.get("HOME", "/tmp"),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    chosen = work / "baseline" / "10" / "20261103T000000Z-ccccccc"
    assert output.read_text().splitlines() == [f"dir={chosen}"]
    assert not (work / "baseline" / "15").exists()


def summary_with(decision: str, reasons: list[str]) -> dict[str, Any]:
    """A one-scenario summary whose verdict gives ``reasons`` for high_contention."""
    return {
        **SMOKE,
        "run_id": "20261126T210000Z-abc1234",
        "verdict": {
            "decision": decision,
            "reasons": [f"high_contention: {r}" for r in reasons],
            "findings": [{"decision": decision, "scenario": "high_contention", "reason": r}
                         for r in reasons],
        },
        "scenarios": [
            {
                "scenario": "high_contention",
                "thresholds": [
                    {"name": "p95_ms", "comparison": "at most", "limit": 200.0,
                     "measured": 250.0, "ok": decision == "GO", "decision": decision},
                ],
                "integrity": {"ok": True, "checks": []},
            }
        ],
    }  # fmt: skip


def test_the_job_summary_starts_with_the_verdict_line_and_lists_what_failed() -> None:
    reason = "p95_ms 250.0 ms against at most 200.0 ms, missed by 25.0 %"
    summary = summary_with("CONDITIONAL", [reason])
    text = job_summary(summary, junit_xml(summary), "| metric | change |\n| --- | --- |\n")
    lines = text.splitlines()
    assert lines[0] == "## Load test: CONDITIONAL"
    assert lines[2] == (
        "**CONDITIONAL** for run `20261126T210000Z-abc1234`: profile smoke, strategy "
        "serializable, transaction shape interactive."
    )
    assert f"- high_contention: {reason}" in lines
    assert "| high_contention | 0 | 1 | 0 |" in lines
    assert "| verdict | 0 | 1 | 0 |" in lines
    assert f"- **high_contention.threshold p95_ms**: {reason}" in lines
    assert not [line for line in lines if line.startswith("- **verdict")]  # said above already
    assert lines[lines.index("### Comparison with main") + 2] == "| metric | change |"


def test_the_job_summary_of_a_run_without_report_says_so(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "reporting.job_summary", str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.startswith("## Load test: no report")
