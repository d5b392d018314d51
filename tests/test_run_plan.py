"""A run's plan: resolved once from the command's options, checked once, read by every step."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import load_runner.profiles as profiles_module
from load_runner.profiles import DEFAULT_PROFILE, SCENARIOS
from pipeline.compare_command import comparison_margins
from pipeline.plan import DEFAULT_WORKERS, RunPlan, resolve_plan
from target.settings import DEFAULT_STRATEGY, DEFAULT_TRANSACTION_SHAPE


def test_empty_options_take_the_defaults_each_defined_once(tmp_path: Path) -> None:
    plan = resolve_plan(reports_root=tmp_path)
    assert plan.profile == DEFAULT_PROFILE == "smoke"
    assert plan.scenario_names == SCENARIOS
    assert plan.strategy == DEFAULT_STRATEGY == "serializable"
    assert plan.dimensions.transaction_shape == DEFAULT_TRANSACTION_SHAPE == "interactive"
    assert plan.workers == DEFAULT_WORKERS == 1
    assert plan.reports_root == tmp_path
    assert plan.run_dir is None


def test_each_scenario_carries_its_profile_settings_and_fault_schedule(tmp_path: Path) -> None:
    plan = resolve_plan(profile="faults", reports_root=tmp_path)
    for scenario in plan.scenarios:
        assert scenario.config.scenario == scenario.name
        assert scenario.config.profile == "faults"
        assert scenario.faults, f"the faults profile schedules faults for {scenario.name}"
    # [service.faults] asks for two workers; the relay carries the link faults.
    assert plan.workers == 2
    assert plan.needs_db_relay
    assert not resolve_plan(reports_root=tmp_path).needs_db_relay
    assert resolve_plan(reports_root=tmp_path, db_latency_ms="0.5").needs_db_relay


def test_the_profiles_file_is_read_once_per_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    real_read = profiles_module._read

    def counted(path: Path) -> dict[str, Any]:
        reads.append(path)
        return real_read(path)

    monkeypatch.setattr(profiles_module, "_read", counted)
    plan = resolve_plan(profile="faults", reports_root=tmp_path)
    assert len(reads) == 1
    # A comparison with a baseline takes its margins from the same read.
    assert comparison_margins("5", plan.profiles)["p95_ms"].relative == 0.05
    assert len(reads) == 1


def test_the_plan_cannot_be_changed_once_resolved(tmp_path: Path) -> None:
    plan = resolve_plan(reports_root=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.workers = 3  # type: ignore[misc]
    assert isinstance(plan, RunPlan)


def test_an_explicit_worker_count_wins_over_the_profiles(tmp_path: Path) -> None:
    assert resolve_plan(profile="faults", workers="3", reports_root=tmp_path).workers == 3
    assert resolve_plan(profile="faults", workers=0, reports_root=tmp_path).workers == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"profile": "weekend"}, "no profile 'weekend' for high_contention"),
        ({"scenarios": "high_contention,bogus"}, "--scenarios: unknown scenario 'bogus'"),
        ({"strategy": "optimistic"}, "--strategy must be one of serializable"),
        ({"workers": "two"}, "--workers must be a whole number, not 'two'"),
        ({"workers": -1}, "--workers must be at least 1, not -1"),
        (
            {"transaction_shape": "statement", "scenarios": "session_scheduling"},
            "session_scheduling has no statement shape",
        ),
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(
    options: dict[str, Any], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        resolve_plan(reports_root=tmp_path, **options)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert message in error
    assert list(tmp_path.iterdir()) == []  # nothing was made


def test_postgres_faults_on_a_server_not_ours_are_refused_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone@db.example/clinic")
    with pytest.raises(SystemExit) as exited:
        resolve_plan(profile="faults", reports_root=tmp_path)
    assert exited.value.code == 2
    assert "DATABASE_URL" in capsys.readouterr().err
    assert resolve_plan(profile="faults", reports_root=tmp_path, force=True).force
