"""Read one run folder into memory: run.json and each scenario's result, integrity and health.

This is the I/O edge of reporting; everything after it works on the returned record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reporting.verdict import ScenarioEvidence, StepFailure
from results.files import (
    ANOMALIES_FILE,
    COST_FILE,
    FAULTS_FILE,
    INTEGRITY_FILE,
    RESULT_FILE,
    RUN_FILE,
    SAMPLES_FILE,
    SERVICE_FILE,
)

SCENARIO_FILES = (RESULT_FILE, INTEGRITY_FILE, SERVICE_FILE)


class ReportInputError(ValueError):
    """A run folder the report cannot be built from."""


@dataclass(frozen=True)
class RunRecord:
    """What one run left on disk."""

    run_dir: Path
    run: dict[str, Any]
    scenarios: tuple[ScenarioEvidence, ...]
    failures: tuple[StepFailure, ...]
    expected_scenarios: tuple[str, ...]


def load_run(run_dir: Path) -> RunRecord:
    """Read ``run_dir``; a missing or unreadable scenario file becomes a recorded failure."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportInputError(f"run folder {run_dir} does not exist")
    run_path = run_dir / RUN_FILE
    run: dict[str, Any] = {}
    failures: list[StepFailure] = []
    if run_path.exists():
        loaded, problem = _read_json(run_path)
        if problem:
            failures.append(StepFailure("report", problem))
        run = loaded or {}
    expected = [str(name) for name in run.get("scenarios") or []]
    found = sorted(
        path.name
        for path in run_dir.iterdir()
        if path.is_dir() and any((path / name).exists() for name in SCENARIO_FILES)
    )
    names = expected + [name for name in found if name not in expected]
    if not names and not run:
        raise ReportInputError(f"{run_dir} holds neither {RUN_FILE} nor any scenario results")
    step_errors = {
        step.get("scenario"): step.get("error")
        for step in run.get("steps") or []
        if step.get("scenario") and not step.get("ok", True)
    }
    failures += [
        StepFailure(str(step.get("name")), str(step.get("error")))
        for step in run.get("steps") or []
        if not step.get("scenario") and not step.get("ok", True)
    ]
    scenarios = [
        _load_scenario(run_dir / name, name, step_errors.get(name))
        for name in names
        if (run_dir / name).is_dir() or name in step_errors
    ]
    return RunRecord(run_dir, run, tuple(scenarios), tuple(failures), tuple(expected))


def _load_scenario(folder: Path, name: str, step_error: str | None) -> ScenarioEvidence:
    documents: dict[str, dict[str, Any] | None] = {}
    problems = [step_error] if step_error else []
    for file_name in SCENARIO_FILES:
        path = folder / file_name
        if not path.exists():
            documents[file_name] = None
            continue
        documents[file_name], problem = _read_json(path)
        if problem:
            problems.append(problem)
    faults = None
    if (folder / FAULTS_FILE).exists():
        faults, problem = _read_json(folder / FAULTS_FILE)
        if problem:
            problems.append(problem)
    cost = None
    if (folder / COST_FILE).exists():
        cost, _ = _read_json(folder / COST_FILE)
    samples = None
    anomalies = None
    if (folder / ANOMALIES_FILE).exists():
        anomalies, problem = _read_json(folder / ANOMALIES_FILE)
        if problem:
            problems.append(problem)
    if (folder / SAMPLES_FILE).exists():
        # Unreadable samples cost the slow seconds their causes, not the scenario its verdict.
        samples, _ = _read_json(folder / SAMPLES_FILE)
    return ScenarioEvidence(
        scenario=name,
        result=documents[RESULT_FILE],
        integrity=documents[INTEGRITY_FILE],
        service=documents[SERVICE_FILE],
        failure="; ".join(problems) or None,
        faults=faults,
        samples=samples,
        cost=cost,
        anomalies=anomalies,
    )


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return None, f"{path.name} unreadable: {error}"
    if not isinstance(document, dict):
        return None, f"{path.name} does not hold a JSON object"
    return document, None
