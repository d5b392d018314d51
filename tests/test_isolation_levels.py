"""The same interactive code at a weaker isolation level breaks the counter rules: NO-GO.

No planted delay: READ COMMITTED lets two reserves read the same counters, decide in Python
and both write (a lost update), and the pipeline's verdict must say so, overbooking listed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support_profiles import high_contention_profile

from load_runner.profiles import PROFILES_PATH_ENV
from pipeline.dimensions import ServiceDimensions
from pipeline.run import run_all

SCENARIO = "high_contention"


def test_read_committed_loses_updates_and_the_verdict_lists_the_overbooking(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("LOADTEST_FIXTURES_PATH", str(tmp_path / "test-data.json"))
    monkeypatch.setenv(
        PROFILES_PATH_ENV,
        str(high_contention_profile(tmp_path / "profiles.toml", users=30, duration_s=5)),
    )
    monkeypatch.delenv("TARGET_UNSAFE_DELAY_MS", raising=False)
    outcome = run_all(
        profile="smoke",
        scenarios=[SCENARIO],
        reports_root=tmp_path / "reports",
        progress=False,
        dimensions=ServiceDimensions("serializable", "interactive", "read_committed"),
    )
    summary = json.loads(outcome.summary_path.read_text())
    run = json.loads((outcome.run_dir / "run.json").read_text())
    assert (run["transaction_shape"], run["isolation"]) == ("interactive", "read_committed")
    assert summary["verdict"]["decision"] == "NO-GO"
    (scenario,) = summary["scenarios"]
    failed = {c["name"]: c for c in scenario["integrity"]["checks"] if not c["ok"]}
    assert "no_overbooking" in failed
    overbooked = failed["no_overbooking"]["rows"]
    assert overbooked
    # Lost updates: the counters can look fine while the ledger holds more than the total.
    assert all(row["units_over"] > 0 for row in overbooked)
    assert any(row["booked_by_ledger"] > row["booked_by_counters"] for row in overbooked)
    assert any("no_overbooking" in reason for reason in summary["verdict"]["reasons"])
