"""Read run folders for a comparison: each scenario's per-request records, cut into blocks.

The I/O edge of reporting.compare. A folder that is not a run, or two runs that cannot be
compared (different profiles; different scenarios, transaction shapes or isolation levels
unless forced), raise CompareInputError with one line; so does a document of the wrong shape
(results/reader.py names the file and the field).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reporting.compare import Request, ScenarioSample, blocks_from_requests
from reporting.run_index import read_index
from results.collect import collect
from results.documents import ResultDocument, RunDocument, SummaryDocument
from results.files import INTEGRITY_FILE, RAW_DIR, RESULT_FILE, RUN_FILE, SUMMARY_FILE
from results.reader import DocumentError, DocumentT, read_document, read_optional_object
from results.record_format import Record, is_error

RUN_NAME_GLOB = "*T*Z-*"
# Runs from before the dimensions existed ran the one-statement shape.
STATEMENT_SHAPE = "statement"
COMPARED_DIMENSIONS = ("transaction_shape", "isolation")


class CompareInputError(ValueError):
    """A folder that is not a run, or two runs that cannot be compared."""


@dataclass(frozen=True)
class RunSample:
    """One run as the comparison sees it: who it is, and one sample per scenario."""

    run_dir: Path
    run_id: str
    profile: str | None
    strategy: str | None
    commit: str | None
    decision: str | None
    scenarios: dict[str, ScenarioSample]
    latencies_ms: dict[str, tuple[float, ...]]
    transaction_shape: str | None = STATEMENT_SHAPE
    isolation: str | None = None
    runs: int = 1  # how many runs were pooled into this side

    def describe(self) -> dict[str, Any]:
        """Return the facts compare.json records about this run."""
        return {
            "run_id": self.run_id,
            "path": str(self.run_dir),
            "profile": self.profile,
            "strategy": self.strategy,
            "commit": self.commit,
            "decision": self.decision,
            "transaction_shape": self.transaction_shape,
            "isolation": self.isolation,
            "runs": self.runs,
        }


def resolve_run_folder(path: str | Path) -> Path:
    """Return the run folder ``path`` names; a reports folder stands for its newest run."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise CompareInputError(f"{folder} is not a run folder: it does not exist")
    if _is_run(folder):
        return folder
    runs = sorted(child for child in folder.glob(RUN_NAME_GLOB) if _is_run(child))
    if runs:
        return runs[-1]
    raise CompareInputError(
        f"{folder} is not a run folder: no {RUN_FILE} and no <scenario>/{RESULT_FILE} in it"
    )


def load_run_sample(path: str | Path) -> RunSample:
    """Read a run folder's scenarios (records, thresholds, integrity) and its identity."""
    run_dir = resolve_run_folder(path)
    run = _read_optional(run_dir / RUN_FILE, RunDocument) or RunDocument()
    summary = _read_optional(run_dir / SUMMARY_FILE, SummaryDocument)
    scenario_dirs = sorted(p.parent for p in run_dir.glob(f"*/{RESULT_FILE}"))
    if not scenario_dirs:
        raise CompareInputError(f"{run_dir} is not a run folder: no <scenario>/{RESULT_FILE}")
    scenarios: dict[str, ScenarioSample] = {}
    latencies: dict[str, tuple[float, ...]] = {}
    profiles: set[str] = set()
    for folder in scenario_dirs:
        result = _read(folder / RESULT_FILE, ResultDocument)
        if result.profile:
            profiles.add(result.profile)
        records = _records(folder)
        integrity = _read_optional_object(folder / INTEGRITY_FILE)
        sample = scenario_sample(folder.name, result, integrity, records)
        scenarios[folder.name] = sample
        latencies[folder.name] = tuple(record.latency_ms for record in records)
    profile = run.profile or (sorted(profiles)[0] if len(profiles) == 1 else None)
    git = run.facts.get("git") or {}
    return RunSample(
        run_dir=run_dir,
        run_id=run.run_id or run_dir.name,
        profile=profile,
        strategy=run.strategy or (summary.strategy if summary else None),
        commit=git.get("commit") or _commit_from_name(run_dir.name),
        decision=summary.verdict.decision if summary else None,
        scenarios=scenarios,
        latencies_ms=latencies,
        transaction_shape=run.transaction_shape or STATEMENT_SHAPE,
        isolation=run.isolation,
    )


def scenario_sample(
    scenario: str,
    result: ResultDocument,
    integrity: Mapping[str, Any] | None,
    records: Sequence[Record],
) -> ScenarioSample:
    """Build one scenario's sample from its result.json, integrity.json and records."""
    config = result.config
    expected = set(config.get("expected_error_codes") or [])
    thresholds = {k: float(v) for k, v in (config.get("thresholds") or {}).items() if v is not None}
    requests = [
        Request(
            started_s=record.started_s,
            latency_ms=record.latency_ms,
            error=is_error(record.status, record.code),
            unexpected_error=is_error(record.status, record.code) and record.code not in expected,
            retry=record.attempt > 1,
        )
        for record in records
    ]
    checks = (integrity or {}).get("checks") or []
    return ScenarioSample(
        scenario=scenario,
        blocks=blocks_from_requests(requests),
        integrity_ok=None if integrity is None else bool(integrity.get("ok")),
        integrity_violations=sum(int(check.get("violations") or 0) for check in checks),
        # A band (error_rate_min too) means the scenario provokes refusals on purpose: fewer
        # is not better there, so its error rate is reported as changed, never judged.
        error_rate_capped="error_rate_max" in thresholds and "error_rate_min" not in thresholds,
        thresholds=thresholds,
    )


def load_side(spec: str | Path, *, force: bool = False) -> RunSample:
    """Read one side of a comparison: a run folder, or several separated by commas (repeats).

    Repeats are pooled into one sample whose blocks remember their run, so the bootstrap
    resamples runs first (reporting.compare) and run-to-run noise reaches the interval.
    """
    parts = [part.strip() for part in str(spec).split(",") if part.strip()]
    if not parts:
        raise CompareInputError("no run folder given")
    runs = [load_run_sample(part) for part in parts]
    for other in runs[1:]:
        check_comparable(runs[0], other, force=force)
    return runs[0] if len(runs) == 1 else pool_runs(runs)


def pool_runs(runs: Sequence[RunSample]) -> RunSample:
    """Pool repeated runs of the same profile and scenarios into one sample."""
    first = runs[0]
    common = [name for name in first.scenarios if all(name in run.scenarios for run in runs)]
    return RunSample(
        run_dir=first.run_dir,
        run_id=" + ".join(run.run_id for run in runs),
        profile=first.profile,
        strategy=_common(run.strategy for run in runs),
        commit=_common(run.commit for run in runs),
        decision=_common(run.decision for run in runs),
        scenarios={name: pooled_sample(runs, name) for name in common},
        latencies_ms={
            name: tuple(v for run in runs for v in run.latencies_ms.get(name, ()))
            for name in common
        },
        transaction_shape=_common(run.transaction_shape for run in runs),
        isolation=_common(run.isolation for run in runs),
        runs=sum(run.runs for run in runs),
    )


def pooled_sample(runs: Sequence[RunSample], scenario: str) -> ScenarioSample:
    """Pool one scenario over repeats: every run's one-second blocks, integrity of all."""
    samples = [run.scenarios[scenario] for run in runs if scenario in run.scenarios]
    first = samples[0]
    known = [s.integrity_ok for s in samples if s.integrity_ok is not None]
    return ScenarioSample(
        scenario=scenario,
        blocks=tuple(
            dataclasses.replace(block, run=index)
            for index, sample in enumerate(samples)
            for block in sample.blocks
        ),
        integrity_ok=all(known) if known else None,
        integrity_violations=sum(s.integrity_violations for s in samples),
        error_rate_capped=first.error_rate_capped,
        thresholds=first.thresholds,
    )


def _common(values: Iterable[str | None]) -> str | None:
    distinct = sorted({str(value) for value in values if value})
    return ", ".join(distinct) or None


def check_comparable(base: RunSample, new: RunSample, *, force: bool = False) -> None:
    """Raise CompareInputError unless the two runs can be compared.

    Different profiles never can. Different scenarios, transaction shapes or isolation levels
    test different things: refused unless ``force`` (the scenarios both ran are compared).
    """
    if base.profile != new.profile:
        raise CompareInputError(
            f"runs of different profiles cannot be compared: {base.run_id} is "
            f"{base.profile!r}, {new.run_id} is {new.profile!r}"
        )
    if set(base.scenarios) != set(new.scenarios):
        shared = set(base.scenarios) & set(new.scenarios)
        if not force or not shared:
            hint = "; pass --force to compare the scenarios both ran" if shared else ""
            raise CompareInputError(
                f"runs of different scenarios cannot be compared: {base.run_id} has "
                f"{', '.join(sorted(base.scenarios))}; {new.run_id} has "
                f"{', '.join(sorted(new.scenarios))}{hint}"
            )
    for name in COMPARED_DIMENSIONS:
        ours, theirs = getattr(base, name), getattr(new, name)
        if ours != theirs and not force:
            raise CompareInputError(
                f"the runs differ in {name.replace('_', ' ')} ({ours} against {theirs}): they "
                "test different things; pass --force to compare anyway"
            )


def same_commit_runs(run_dir: Path) -> list[Path]:
    """Return the runs beside ``run_dir`` of its commit, profile, strategy, shape and isolation.

    From the run index of its reports folder, oldest first, ``run_dir`` among them; capacity
    searches left out. A run of a dirty working tree, or of an unknown commit, stands alone:
    nothing says which code it ran.
    """
    me = load_identity(run_dir)
    if me["commit"] is None or me["dirty"]:
        return [run_dir]
    folders = [
        run_dir.parent / str(entry["run_id"])
        for entry in read_index(run_dir.parent)
        if entry.get("commit") == me["commit"] and not entry.get("capacity")
    ]
    matches = [folder for folder in folders if load_identity(folder) == me]
    return matches if run_dir in matches else [run_dir]


def load_identity(run_dir: Path) -> dict[str, Any]:
    """Return what makes two runs repeats of each other: commit, profile, strategy, dimensions."""
    run = _read_optional(run_dir / RUN_FILE, RunDocument) or RunDocument()
    summary = _read_optional(run_dir / SUMMARY_FILE, SummaryDocument)
    facts = run.facts or (summary.facts if summary else {})
    git = facts.get("git") or {}
    return {
        "commit": git.get("commit") or _commit_from_name(run_dir.name),
        "dirty": bool(git.get("dirty")),
        "profile": run.profile or (summary.profile if summary else None),
        "strategy": run.strategy or (summary.strategy if summary else None),
        "transaction_shape": run.transaction_shape or STATEMENT_SHAPE,
        "isolation": run.isolation,
        "scenarios": sorted(p.parent.name for p in run_dir.glob(f"*/{RESULT_FILE}")),
    }


def _records(folder: Path) -> list[Record]:
    raw = folder / RAW_DIR
    if not raw.is_dir():
        raise CompareInputError(f"{folder} has no per-request records ({RAW_DIR}/ is missing)")
    try:
        collected = collect(raw)
    except (OSError, ValueError, KeyError) as error:
        raise CompareInputError(f"{raw} holds unreadable records: {error}") from error
    return collected.records


def _is_run(folder: Path) -> bool:
    return (folder / RUN_FILE).exists() or any(folder.glob(f"*/{RESULT_FILE}"))


def _commit_from_name(name: str) -> str | None:
    parts = name.split("-")
    return parts[1] if len(parts) > 1 else None


def _read(path: Path, document_type: type[DocumentT]) -> DocumentT:
    try:
        return read_document(path, document_type)
    except DocumentError as error:
        raise CompareInputError(str(error)) from None


def _read_optional(path: Path, document_type: type[DocumentT]) -> DocumentT | None:
    return _read(path, document_type) if path.exists() else None


def _read_optional_object(path: Path) -> dict[str, Any] | None:
    try:
        return read_optional_object(path)
    except DocumentError as error:
        raise CompareInputError(str(error)) from None
