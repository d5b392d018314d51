"""The shape of result.json and summary.json: what their writers promise and their readers use.

TypedDicts rather than dataclasses because the documents are read back from JSON by several
packages (integrity, reporting, the compare and capacity commands) as plain dicts; the types
name every key and its meaning in one place. Sections whose inside is owned by one module are
typed loosely here and described where they are built (named in each comment).
"""

# No `from __future__ import annotations` here: on Python 3.11 TypedDict only tells
# NotRequired keys apart when the annotations are evaluated (declared_keys relies on it).
from typing import Any, NotRequired, TypedDict

from results.organizations import OrganizationFigures


class Totals(TypedDict):
    """Request counts of a scenario (results.summary.summarise_requests)."""

    requests: int
    errors: int
    error_rate: float  # a share, 0..1
    throughput_rps: float  # over measured_window_s when present, else over the run
    measured_window_s: NotRequired[float]  # first request's start to last request's end
    ok_rps: NotRequired[float]  # a capacity step's window only (reporting.capacity)


class LatencySummary(TypedDict):
    """Nearest-rank latency figures in ms; None when there was no request (results.latency)."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None


class OpenModel(TypedDict):
    """The open (arrival-rate) model's schedule against what was sent."""

    arrival_rate_rps: float | None
    scheduled_requests: int
    sent_requests: int


class RunOutcomeSection(TypedDict):
    """How the load generator's run ended (load_runner.runner)."""

    exit_code: int | None
    crashed: bool
    timed_out: bool
    stderr_tail: str
    reasons: list[str]


class ResultDocument(TypedDict):
    """result.json: one scenario's run (load_runner.runner.build_result)."""

    schema_version: int
    scenario: str
    profile: str
    load_model: str
    target_url: str
    started_at: str  # ISO 8601, UTC
    ended_at: str
    duration_s: float  # the run's wall time, process start-up included
    config: dict[str, Any]  # load_runner.profiles.ScenarioConfig.to_result(), thresholds too
    open_model: OpenModel | None  # None under the closed (virtual users) model
    run: RunOutcomeSection
    totals: Totals
    by_operation: dict[str, dict[str, Any]]  # requests, errors, by_status, by_code
    by_status: dict[str, int]  # HTTP status (text) → requests
    by_code: dict[str, int]  # problem `code` → requests
    latency_ms: LatencySummary
    latency_histogram: list[dict[str, float | int | None]]  # upper_ms (None: overflow), count
    timeseries: list[dict[str, Any]]  # one point per second (results.timeseries.per_second)
    # Successes, expected refusals and unexpected errors apart, with the latency of each per
    # operation (results.outcomes.summarise_outcomes); absent from results written before it.
    outcomes: NotRequired[dict[str, Any]]
    operations: dict[str, Any]  # logical operations (results.history.summarise_operations)
    # Per organization (tenant), by name; None when the run's fixtures could not be read.
    by_organization: list[OrganizationFigures] | None
    latency_evidence: list[dict[str, Any]]  # per latency threshold (results.stalls)
    generator: dict[str, Any]  # the generator's self-watch (results.summary.summarise_generator)
    shard: NotRequired[dict[str, Any]]  # one shard of a sharded run (load_runner.sharding)
    shards: NotRequired[dict[str, Any]]  # a merged run's shards (load_runner.merge)
    measured_window: NotRequired[dict[str, float]]  # a capacity step (reporting.capacity)


class VerdictSection(TypedDict):
    """The decision and why (reporting.verdict)."""

    decision: str  # GO, CONDITIONAL or NO-GO
    reasons: list[str]
    findings: list[dict[str, Any]]  # decision, scenario, reason
    generator_bottleneck: bool
    bottleneck_notes: list[str]


class SummaryTotals(TypedDict):
    requests: int
    errors: int


class SummaryDocument(TypedDict):
    """summary.json: every figure of a run's report (reporting.summary.summarise)."""

    schema_version: int
    kind: str
    run_id: str
    profile: str | None
    strategy: str | None
    transaction_shape: str
    isolation: str | None
    db_latency_ms: float
    workers: int | None
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    verdict: VerdictSection
    recommendation: str
    integrity_ok: bool
    totals: SummaryTotals
    scenarios: list[dict[str, Any]]  # one per scenario (reporting.summary._scenario_summary)
    warnings: list[str]
    steps: list[dict[str, Any]]  # run.json's steps
    facts: dict[str, Any]  # machine, versions, PostgreSQL settings, data volume, plan
    capacity: NotRequired[dict[str, Any]]  # a capacity search's capacity.json
    comparison: NotRequired[dict[str, Any]]  # the baseline comparison (regression gate)
    remote_write: NotRequired[dict[str, Any]]  # the live feed's writes (--prometheus-remote-write)


def declared_keys(document_type: type) -> frozenset[str]:
    """Return every key a document type declares, required or not."""
    required: frozenset[str] = getattr(document_type, "__required_keys__", frozenset())
    optional: frozenset[str] = getattr(document_type, "__optional_keys__", frozenset())
    return required | optional


def required_keys(document_type: type) -> frozenset[str]:
    """Return the keys every document of this type carries."""
    return frozenset(getattr(document_type, "__required_keys__", frozenset()))
