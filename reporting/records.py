"""Read one run folder into memory: run.json and each scenario's result, integrity and health.

This is the I/O edge of reporting; everything after it works on the returned record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reporting.verdict import ScenarioEvidence, StepFailure
from results.documents import Document, ResultDocument, RunDocument
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
from results.reader import (
    DocumentError,
    DocumentT,
    UnreadableDocumentError,
    checked,
    read_object,
)

# A scenario's files, with the document each must be (None: a JSON object, owned elsewhere).
SCENARIO_FILES: dict[str, type[Document] | None] = {
    RESULT_FILE: ResultDocument,
    INTEGRITY_FILE: None,
    SERVICE_FILE: None,
}


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
    """Read ``run_dir``; a missing or unreadable scenario file becomes a recorded failure.

    A file that reads but is not the document it should be (a field of the wrong type or
    missing, another schema version) raises ReportInputError naming the file and the field:
    the report will not guess at figures it cannot read.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportInputError(f"run folder {run_dir} does not exist")
    run_path = run_dir / RUN_FILE
    run: dict[str, Any] = {}
    failures: list[StepFailure] = []
    if run_path.exists():
        loaded, problem = _read(run_path)
        if problem:
            failures.append(StepFailure("report", problem))
        run = loaded or {}
    document = _checked(run, RunDocument, run_path)
    expected = list(document.scenarios)
    found = sorted(
        path.name
        for path in run_dir.iterdir()
        if path.is_dir() and any((path / name).exists() for name in SCENARIO_FILES)
    )
    names = expected + [name for name in found if name not in expected]
    if not names and not run:
        raise ReportInputError(f"{run_dir} holds neither {RUN_FILE} nor any scenario results")
    step_errors = {
        step.scenario: step.error for step in document.steps if step.scenario and not step.ok
    }
    failures += [
        StepFailure(step.name, str(step.error))
        for step in document.steps
        if not step.scenario and not step.ok
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
    for file_name, document_type in SCENARIO_FILES.items():
        path = folder / file_name
        if not path.exists():
            documents[file_name] = None
            continue
        documents[file_name], problem = _read(path, document_type)
        if problem:
            problems.append(problem)
    faults = None
    if (folder / FAULTS_FILE).exists():
        faults, problem = _read(folder / FAULTS_FILE)
        if problem:
            problems.append(problem)
    cost = None
    if (folder / COST_FILE).exists():
        cost, _ = _read(folder / COST_FILE)
    samples = None
    anomalies = None
    if (folder / ANOMALIES_FILE).exists():
        anomalies, problem = _read(folder / ANOMALIES_FILE)
        if problem:
            problems.append(problem)
    if (folder / SAMPLES_FILE).exists():
        # Unreadable samples cost the slow seconds their causes, not the scenario its verdict.
        samples, _ = _read(folder / SAMPLES_FILE)
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


def _read(
    path: Path, document_type: type[Document] | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """Return the JSON object in ``path`` (checked as a ``document_type``), or why it is not.

    Unreadable is a problem to record; the wrong shape raises ReportInputError.
    """
    try:
        document = read_object(path)
    except UnreadableDocumentError as error:
        return None, f"{error.path.name} {error.reason}"
    if document_type is not None:
        _checked(document, document_type, path)
    return document, None


def _checked(document: dict[str, Any], document_type: type[DocumentT], path: Path) -> DocumentT:
    try:
        return checked(document, document_type, path)
    except DocumentError as error:
        raise ReportInputError(str(error)) from None
