"""The run's dimensions (strategy, transaction shape, isolation, database latency): bad input.

One line and exit 2 for an unknown shape or level, a negative latency or a combination that
is not supported, before anything starts: no run folder is made.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.commands import all_command
from pipeline.dimensions import ServiceDimensions, resolve_dimensions

ALL_SCENARIOS = ("high_contention", "session_scheduling")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"transaction_shape": "orm"}, "--transaction-shape must be one of interactive, statement"),
        ({"isolation": "snapshot"}, "--isolation must be one of serializable, repeatable_read"),
        ({"db_latency_ms": "-1"}, "--db-latency-ms must be between 0 and 1000"),
        ({"db_latency_ms": "fast"}, "--db-latency-ms must be a number of milliseconds"),
        ({"transaction_shape": "statement"}, "session_scheduling has no statement shape"),
        ({"strategy": "optimistic"}, "--strategy must be one of serializable"),
    ],
)
def test_a_bad_dimension_is_one_line_and_exit_2(
    options: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        resolve_dimensions(scenarios=ALL_SCENARIOS, **options)  # type: ignore[arg-type]
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert message in error


def test_the_pipeline_starts_nothing_on_a_bad_dimension(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        all_command(reports_dir=str(tmp_path), isolation="chaos")
    assert exited.value.code == 2
    assert "--isolation" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_dimensions_resolve_the_strategy_s_level_and_set_the_service() -> None:
    dimensions = resolve_dimensions(strategy="for_update", scenarios=ALL_SCENARIOS)
    assert dimensions == ServiceDimensions("for_update", "interactive", "", 0.0)
    assert dimensions.isolation_level == "read_committed"
    assert dimensions.service_environment() == {
        "TARGET_CONCURRENCY": "for_update",
        "TARGET_TRANSACTION_SHAPE": "interactive",
        "TARGET_ISOLATION": "read_committed",
    }
    statement = resolve_dimensions(
        transaction_shape="statement", isolation="repeatable_read", db_latency_ms="0.5"
    )
    assert statement.facts() == {
        "strategy": "serializable",
        "transaction_shape": "statement",
        "isolation": "repeatable_read",
        "db_latency_ms": 0.5,
    }
