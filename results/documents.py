"""The shape of run.json, result.json and summary.json: what their writers promise and readers use.

msgspec structs, checked when a file is read (results/reader.py), so a document of the wrong
shape stops its reader with the file and the field named, rather than a KeyError three modules
later. The writers build plain dicts (json.dumps keeps the files byte for byte as they were);
tests/test_result_contract.py holds them to the keys declared here.

A field with a default is one a document may lack: older runs predate it, a run that crashed
left it out, or a hand-made run in the tests does without it. Fields a document carries and no
struct declares are ignored, so a newer writer does not break an older reader. A document of
another schema_version is refused. Sections whose inside is owned by one module are typed
loosely here and described where they are built (named in each comment).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# The schema every reader here reads; a document without schema_version is taken as this one.
SCHEMA_VERSION = 1


class Document(msgspec.Struct, kw_only=True, frozen=True):
    """A result file's document: its schema version, and nothing else in common."""

    schema_version: Literal[1] = SCHEMA_VERSION


class Section(msgspec.Struct, kw_only=True, frozen=True):
    """A section inside a document."""


# -- result.json ------------------------------------------------------------------------------
class Totals(Section):
    """Request counts of a scenario (results.summary.summarise_requests)."""

    requests: int
    errors: int
    error_rate: float  # a share, 0..1
    throughput_rps: float | None = None  # over measured_window_s when present, else the run
    measured_window_s: float | None = None  # first request's start to last request's end
    ok_rps: float | None = None  # a capacity step's window only (reporting.capacity)


class LatencySummary(Section):
    """Nearest-rank latency figures in ms; None when there was no request (results.latency)."""

    count: int
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None


class OpenModel(Section):
    """The open (arrival-rate) model's schedule against what was sent."""

    arrival_rate_rps: float | None
    scheduled_requests: int
    sent_requests: int


class RunOutcomeSection(Section):
    """How the load generator's run ended (load_runner.runner)."""

    exit_code: int | None
    crashed: bool
    timed_out: bool
    stderr_tail: str = ""
    reasons: list[str] = []


class ResultDocument(Document):
    """result.json: one scenario's run (load_runner.runner.build_result)."""

    scenario: str
    profile: str | None = None
    load_model: str | None = None
    target_url: str | None = None
    started_at: str | None = None  # ISO 8601, UTC
    ended_at: str | None = None
    duration_s: float | None = None  # the run's wall time, process start-up included
    config: dict[str, Any] = {}  # load_runner.profiles.ScenarioConfig.to_result(), thresholds
    open_model: OpenModel | None = None  # None under the closed (virtual users) model
    run: RunOutcomeSection | None = None
    totals: Totals | None = None
    by_operation: dict[str, dict[str, Any]] = {}  # requests, errors, by_status, by_code
    by_status: dict[str, int] = {}  # HTTP status (text) → requests
    by_code: dict[str, int] = {}  # problem `code` → requests
    latency_ms: LatencySummary | None = None
    latency_histogram: list[dict[str, float | int | None]] = []  # upper_ms (None: overflow)
    timeseries: list[dict[str, Any]] = []  # one point per second (results.timeseries)
    # Successes, expected refusals and unexpected errors apart, with the latency of each per
    # operation (results.outcomes.summarise_outcomes); absent from results written before it.
    outcomes: dict[str, Any] | None = None
    operations: dict[str, Any] | None = None  # logical operations (results.history)
    # Per organization (tenant), by name (results.organizations.OrganizationFigures); None
    # when the run's fixtures could not be read.
    by_organization: list[dict[str, Any]] | None = None
    # Confidence intervals of the percentiles and the slow seconds (results.uncertainty, stalls).
    latency_evidence: dict[str, Any] | None = None
    generator: dict[str, Any] | None = None  # the generator's self-watch (results.summary)
    shard: dict[str, Any] | None = None  # one shard of a sharded run (load_runner.sharding)
    shards: dict[str, Any] | None = None  # a merged run's shards (load_runner.merge)
    measured_window: dict[str, float] | None = None  # a capacity step (reporting.capacity)


# -- summary.json -----------------------------------------------------------------------------
class VerdictSection(Section):
    """The decision and why (reporting.verdict)."""

    decision: str  # GO, CONDITIONAL or NO-GO
    reasons: list[str] = []
    findings: list[dict[str, Any]] = []  # decision, scenario, reason
    generator_bottleneck: bool = False
    bottleneck_notes: list[str] = []


class SummaryTotals(Section):
    requests: int
    errors: int


class SummaryDocument(Document):
    """summary.json: every figure of a run's report (reporting.summary.summarise)."""

    run_id: str
    verdict: VerdictSection
    kind: str | None = None
    profile: str | None = None
    strategy: str | None = None
    transaction_shape: str | None = None
    isolation: str | None = None
    db_latency_ms: float | None = None
    workers: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    recommendation: str | None = None
    integrity_ok: bool | None = None
    totals: SummaryTotals | None = None
    scenarios: list[dict[str, Any]] = []  # one per scenario (reporting.summary)
    warnings: list[str] = []
    steps: list[dict[str, Any]] = []  # run.json's steps
    facts: dict[str, Any] = {}  # machine, versions, PostgreSQL settings, data volume, plan
    capacity: dict[str, Any] | None = None  # a capacity search's capacity.json
    comparison: dict[str, Any] | None = None  # the baseline comparison (regression gate)
    remote_write: dict[str, Any] | None = None  # the live feed's writes


# -- run.json ---------------------------------------------------------------------------------
class StepSection(Section):
    """One step of the pipeline and how it ended (pipeline.run.Step)."""

    name: str
    scenario: str | None = None
    started_at: str | None = None
    duration_s: float | None = None
    ok: bool = True
    error: str | None = None


class RunDocument(Document):
    """run.json: the run's options, its steps and the facts (pipeline.run.RunLog).

    Only what readers use is declared; the writer adds whatever the run's options were.
    """

    run_id: str | None = None
    profile: str | None = None
    strategy: str | None = None
    transaction_shape: str | None = None
    isolation: str | None = None
    db_latency_ms: float | None = None
    workers: int | None = None
    scenarios: list[str] = []
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    steps: list[StepSection] = []
    facts: dict[str, Any] = {}
    remote_write: dict[str, Any] | None = None


def declared_keys(document_type: type[msgspec.Struct]) -> frozenset[str]:
    """Return every key a document type declares, required or not."""
    return frozenset(field.encode_name for field in msgspec.structs.fields(document_type))


def required_keys(document_type: type[msgspec.Struct]) -> frozenset[str]:
    """Return the keys every document of this type carries."""
    return frozenset(
        field.encode_name for field in msgspec.structs.fields(document_type) if field.required
    )
