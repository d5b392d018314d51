"""Run folders, run facts and the pipeline's failure path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from support_integrity import seed_by_hand

from pipeline.facts import collect_facts
from pipeline.rundirs import (
    REPORTS_DIR_ENV,
    RunDirError,
    latest_result_dir,
    latest_run_dir,
    new_run_dir,
    resolve_reports_root,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4,}$")


def test_run_ids_are_utc_time_and_commit_and_never_collide(tmp_path: Path) -> None:
    first, second = new_run_dir(tmp_path), new_run_dir(tmp_path)
    assert RUN_ID.match(first.name)
    assert first != second
    assert second.is_dir()
    assert latest_run_dir(tmp_path) in (first, second)


def test_latest_run_is_the_newest_by_name(tmp_path: Path) -> None:
    for name in ("20261126T090000Z-aaaaaaa", "20261126T100000Z-bbbbbbb", "notes"):
        (tmp_path / name).mkdir()
    assert latest_run_dir(tmp_path).name == "20261126T100000Z-bbbbbbb"
    with pytest.raises(RunDirError, match="no run under"):
        latest_run_dir(tmp_path / "empty")


def test_latest_result_is_the_scenario_that_ended_last(tmp_path: Path) -> None:
    for name, ended in (("b", "2026-11-26T10:00:05+00:00"), ("a", "2026-11-26T10:00:09+00:00")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps({"ended_at": ended}))
    assert latest_result_dir(tmp_path).name == "a"
    with pytest.raises(RunDirError, match="no scenario results"):
        latest_result_dir(tmp_path / "a")


def test_reports_root_prefers_the_argument_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REPORTS_DIR_ENV, str(tmp_path / "from-env"))
    assert resolve_reports_root(tmp_path / "given") == tmp_path / "given"
    assert resolve_reports_root() == tmp_path / "from-env"
    monkeypatch.delenv(REPORTS_DIR_ENV)
    assert resolve_reports_root() == PROJECT_ROOT / "reports"


def test_facts_count_rows_and_find_the_index_scan(database_url: str, tmp_path: Path) -> None:
    seed_by_hand(database_url, tmp_path)
    facts = collect_facts(database_url)
    assert facts["errors"] == []
    assert facts["data_volume"]["authorizations"] == 4
    assert facts["data_volume"]["seed_baseline"] == 4
    assert facts["postgres_settings"]["fsync"] == "on"
    assert set(facts["postgres_settings"]) >= {
        "default_transaction_isolation",
        "max_connections",
        "shared_buffers",
        "synchronous_commit",
    }
    assert facts["versions"]["postgresql"].startswith("15")
    assert facts["lookup_plan"]["seq_scan"] is False
    assert "authorizations_pkey" in facts["lookup_plan"]["plan"]


def test_facts_flag_a_sequential_scan(database_url: str, tmp_path: Path) -> None:
    seed_by_hand(database_url, tmp_path)
    with psycopg.connect(database_url) as conn:
        conn.execute("ALTER TABLE authorizations DROP CONSTRAINT authorizations_pkey CASCADE")
        conn.execute("DROP INDEX ix_authorizations_organization_id")
    facts = collect_facts(database_url)
    assert facts["lookup_plan"]["seq_scan"] is True
    assert "Seq Scan on authorizations" in facts["lookup_plan"]["plan"]


def test_unreachable_database_is_named_not_raised() -> None:
    facts = collect_facts("postgresql://nobody@127.0.0.1:9/nowhere")
    assert facts["errors"][0].startswith("PostgreSQL facts:")
    assert facts["git"]["commit"]


def test_failed_setup_still_writes_a_no_go_report(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TARGET_")}
    env["DATABASE_URL"] = "postgresql://nobody@127.0.0.1:9/nowhere"
    completed = subprocess.run(
        [sys.executable, "-m", "invoke", "load-test.all", "--reports-dir", str(tmp_path)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 1
    (run_dir,) = [path for path in tmp_path.iterdir() if path.is_dir()]  # index.jsonl beside it
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"]["decision"] == "NO-GO"
    assert summary["verdict"]["reasons"][0].startswith("step setup failed:")
    assert {
        "scenario": "high_contention",
        "decision": "NO-GO",
        "reason": "the scenario failed: not run: an earlier step failed",
    } in summary["verdict"]["findings"]
    assert (run_dir / "report.html").exists()
    assert "Traceback" in (run_dir / "errors.log").read_text()
    assert completed.stdout.strip().startswith("NO-GO: report at")
