"""`load-test.all --baseline`: find the baseline before the run, compare and gate after it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.run import RunOutcome
from reporting.compare import DEFAULT_MARGINS, Margin
from reporting.compare_inputs import CompareInputError, resolve_run_folder
from reporting.compare_report import compare_runs, write_comparison
from reporting.regression_gate import GATE_WARN, GATES
from reporting.report import write_report
from reporting.run_index import latest_go, read_index
from results.files import COMPARISON_DIR, RUN_FILE, SUMMARY_FILE

LATEST_GO = "latest-go"


def resolve_baseline(
    baseline: str,
    *,
    reports_root: Path,
    profile: str,
    strategy: str,
    gate: str,
    transaction_shape: str | None = None,
) -> Path:
    """Return the baseline's run folder; raise CompareInputError (one line) when there is none.

    ``latest-go`` is the newest GO run of the same profile, strategy and transaction shape in
    the run index.
    A folder must be a run of the same profile (its scenarios are checked after the run).
    """
    if gate not in GATES:
        raise CompareInputError(
            f"--regression-gate must be one of {', '.join(GATES)}, not {gate!r}"
        )
    if baseline == LATEST_GO:
        entry = latest_go(
            read_index(reports_root),
            profile=profile,
            strategy=strategy,
            transaction_shape=transaction_shape,
        )
        if entry is None:
            shape = f" and transaction shape {transaction_shape!r}" if transaction_shape else ""
            raise CompareInputError(
                f"--baseline latest-go: no GO run of profile {profile!r}, strategy "
                f"{strategy!r}{shape} in {reports_root} (`invoke load-test.runs` lists them)"
            )
        return reports_root / str(entry["run_id"])
    folder = resolve_run_folder(baseline)
    base_profile = _profile_of(folder)
    if base_profile is not None and base_profile != profile:
        raise CompareInputError(
            f"--baseline {folder.name} is a {base_profile!r} run; this run is {profile!r}: "
            "runs of different profiles cannot be compared"
        )
    return folder


def gate_against_baseline(
    outcome: RunOutcome,
    baseline_dir: Path,
    *,
    gate: str = GATE_WARN,
    margins: Mapping[str, Margin] = DEFAULT_MARGINS,
) -> RunOutcome:
    """Compare the finished run with its baseline, rewrite its report, return the new outcome.

    A run that cannot be compared (a scenario without records, say) keeps its verdict, with
    the reason added; such a run is not GO anyway.
    """
    try:
        document, spectra = compare_runs(baseline_dir, outcome.run_dir, margins=margins)
    except CompareInputError as error:
        return dataclasses.replace(
            outcome, reasons=(*outcome.reasons, f"not compared with the baseline: {error}")
        )
    document["gate"] = gate
    write_comparison(document, spectra, outcome.run_dir / COMPARISON_DIR)
    files = write_report(outcome.run_dir)
    return dataclasses.replace(
        outcome,
        decision=files.decision,
        reasons=tuple(files.summary["verdict"]["reasons"]),
    )


def _profile_of(folder: Path) -> str | None:
    for name in (RUN_FILE, SUMMARY_FILE):
        try:
            document: dict[str, Any] = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if document.get("profile"):
            return str(document["profile"])
    return None
