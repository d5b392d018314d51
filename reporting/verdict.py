"""Decide GO, CONDITIONAL or NO-GO from the results, the integrity checks and the service's health.

Pure functions over the documents the pipeline wrote (result.json, integrity.json,
service.json): no I/O here, so every boundary can be tested with hand-made inputs.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reporting.isolation import isolation_reasons
from reporting.latency_judgement import (
    MET,
    MET_NOT_CERTAIN,
    MISSED,
    MISSED_FAR,
    MISSED_NOT_CERTAIN,
    STALL,
    TOO_SMALL,
    judge_latency,
)
from results.stalls import STALL_MAX_S
from results.uncertainty import MIN_TAIL_REQUESTS

GO = "GO"
CONDITIONAL = "CONDITIONAL"
NO_GO = "NO-GO"
DECISION_ORDER = (GO, CONDITIONAL, NO_GO)
# A miss of at least this (relative to the threshold) is told as a multiple of the limit.
MULTIPLE_FROM_PCT = 100.0
# A threshold missed by more than this (relative to the threshold) cannot ship as is.
NO_GO_MISS_PCT = 50.0
# Float noise must not push a miss of exactly 50 % over the line.
TOLERANCE = 1e-9
LATENCY_THRESHOLD = re.compile(r"^p(\d+(?:\.\d+)?)_ms$")
ERROR_RATE_MAX = "error_rate_max"
ERROR_RATE_MIN = "error_rate_min"
# Errors whose code the scenario does not provoke on purpose (its `expected_error_codes`):
# auth failures, validation errors, 5xx, timeouts. Far above its limit, the run did not test
# what it claims to, so like latency it can make NO-GO on its own.
UNEXPECTED_ERROR_RATE_MAX = "unexpected_error_rate_max"
GRADED_THRESHOLDS = (UNEXPECTED_ERROR_RATE_MAX,)
# Under the open model, a share of scheduled requests never sent above this is reported:
# those would have been the slowest ones.
UNSENT_SHARE_TOLERATED = 0.01
POOL_EXHAUSTION_CODE = "unavailable"
POOL_TIMEOUTS_METRIC = "db_pool_timeouts_total"
# faults.json (faults/nemesis.py): what happened to each planned fault.
FAULT_DONE, FAULT_SKIPPED, FAULT_FAILED = "done", "skipped", "failed"
# A latency threshold judged with its interval. Only a certain miss of more than 50 % is
# NO-GO on its own; a miss the interval cannot confirm is CONDITIONAL; one short stall is
# named beside a GO, never folded into NO-GO (README, "How a threshold is judged").
LATENCY_DECISIONS = {
    MET: GO,
    MET_NOT_CERTAIN: GO,
    STALL: GO,
    MISSED_NOT_CERTAIN: CONDITIONAL,
    MISSED: CONDITIONAL,
    MISSED_FAR: NO_GO,
}


@dataclass(frozen=True)
class ScenarioEvidence:
    """Everything recorded about one scenario: its results, integrity and the service's health."""

    scenario: str
    result: Mapping[str, Any] | None = None
    integrity: Mapping[str, Any] | None = None
    service: Mapping[str, Any] | None = None
    failure: str | None = None
    # faults.json when a nemesis ran: the faults, their recovery, and the figures outside them.
    faults: Mapping[str, Any] | None = None
    # samples.json (watch/attribution_sampler.py): what the database, host and service
    # were doing, every 100 ms; reporting/attribution.py reads it.
    samples: Mapping[str, Any] | None = None
    # anomalies.json when the profile requires a consistency model (isolation_append).
    anomalies: Mapping[str, Any] | None = None
    # cost.json (watch/scenario_cost.py): CPU and retries per committed operation.
    cost: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class StepFailure:
    """A pipeline step that raised instead of finishing."""

    step: str
    message: str


@dataclass(frozen=True)
class ThresholdCheck:
    """One configured threshold against its measurement."""

    scenario: str
    name: str
    limit: float
    measured: float | None
    ok: bool
    missed_by_pct: float | None  # 0 when met; None when nothing was measured
    decision: str  # GO when met, else CONDITIONAL or NO-GO
    # Latency thresholds judged with their uncertainty (reporting/latency_judgement.py): the
    # status, the percentile's interval and its stall; empty without latency_evidence.
    status: str = ""
    interval_ms: tuple[float | None, float | None] | None = None
    note: str = ""
    stall: Mapping[str, Any] | None = None

    @property
    def comparison(self) -> str:
        """Say which way the threshold points: at most or at least."""
        return "at least" if self.name == ERROR_RATE_MIN else "at most"


@dataclass(frozen=True)
class Finding:
    """One reason the verdict is not GO."""

    decision: str
    scenario: str | None
    reason: str


@dataclass(frozen=True)
class Verdict:
    """The decision, every reason for it, and the generator's caveat shown next to it."""

    decision: str
    findings: tuple[Finding, ...]
    thresholds: tuple[ThresholdCheck, ...]
    generator_bottleneck: bool = False
    bottleneck_notes: tuple[str, ...] = field(default=())

    @property
    def reasons(self) -> tuple[str, ...]:
        """Return the reasons that set the decision, worst first."""
        worst = [f for f in self.findings if f.decision == self.decision]
        return tuple(_label(f) for f in worst)


def evaluate_thresholds(scenario: str, result: Mapping[str, Any]) -> list[ThresholdCheck]:
    """Evaluate every threshold in ``result["config"]["thresholds"]`` against the result."""
    thresholds = (result.get("config") or {}).get("thresholds") or {}
    evidence = result.get("latency_evidence") or {}
    checks = []
    for name, limit in thresholds.items():
        if limit is None:
            continue
        entry = (evidence.get("thresholds") or {}).get(name)
        if entry is not None:
            checks.append(_judge_latency(scenario, name, float(limit), entry, evidence))
            continue
        measured = _measurement(name, result)
        checks.append(_judge(scenario, name, float(limit), measured))
    return checks


def decide(
    scenarios: Sequence[ScenarioEvidence],
    *,
    failures: Sequence[StepFailure] = (),
    expected_scenarios: Sequence[str] = (),
) -> Verdict:
    """Return the verdict of a run from its scenarios' evidence and its failed steps."""
    findings = [Finding(NO_GO, None, f"step {f.step} failed: {f.message}") for f in failures]
    seen = {evidence.scenario for evidence in scenarios}
    findings += [
        Finding(NO_GO, name, "scenario did not run")
        for name in expected_scenarios
        if name not in seen
    ]
    if not scenarios:
        findings.append(Finding(NO_GO, None, "no scenario ran"))
    thresholds: list[ThresholdCheck] = []
    notes: list[str] = []
    for evidence in scenarios:
        scenario_thresholds, scenario_findings = judge_scenario(evidence)
        thresholds += scenario_thresholds
        findings += scenario_findings
        generator = (evidence.result or {}).get("generator") or {}
        if generator.get("bottleneck"):
            reasons = "; ".join(generator.get("reasons") or []) or "no reason given"
            notes.append(f"{evidence.scenario}: the load generator was the bottleneck ({reasons})")
    decision = max((f.decision for f in findings), key=DECISION_ORDER.index, default=GO)
    return Verdict(
        decision=decision,
        findings=tuple(sorted(findings, key=lambda f: -DECISION_ORDER.index(f.decision))),
        thresholds=tuple(thresholds),
        generator_bottleneck=bool(notes),
        bottleneck_notes=tuple(notes),
    )


def judge_scenario(evidence: ScenarioEvidence) -> tuple[list[ThresholdCheck], list[Finding]]:
    """Return one scenario's threshold checks and the findings that keep it from GO."""
    name = evidence.scenario
    findings = []
    if evidence.failure:
        findings.append(Finding(NO_GO, name, f"the scenario failed: {evidence.failure}"))
    result = evidence.result
    if result is None:
        findings.append(Finding(NO_GO, name, "no result was recorded"))
        return [], findings + _integrity_findings(evidence) + _service_findings(evidence)
    findings += _run_findings(name, result)
    # Under injected faults the thresholds hold outside the faults' windows; what the faults
    # cost is judged by recovery (below) and reported per fault.
    judged = steady_state_result(result, evidence.faults)
    thresholds = evaluate_thresholds(name, judged)
    # A threshold too small to judge is said even when its estimate met it.
    findings += [
        Finding(check.decision, name, _threshold_reason(check))
        for check in thresholds
        if not check.ok or check.status == TOO_SMALL
    ]
    findings += _integrity_findings(evidence)
    findings += _service_findings(evidence)
    findings += _server_error_findings(name, judged)
    findings += fault_findings(name, evidence.faults)
    findings += [
        Finding(NO_GO if blocks else GO, name, reason)
        for blocks, reason in isolation_reasons(result, evidence.anomalies)
    ]
    return thresholds, findings


def steady_state_result(
    result: Mapping[str, Any], faults: Mapping[str, Any] | None
) -> Mapping[str, Any]:
    """Return ``result`` with its figures taken from outside the fault windows, if faults ran."""
    steady = (faults or {}).get("steady_state")
    if not steady:
        return result
    return {
        **result,
        "totals": {
            **(result.get("totals") or {}),
            "requests": steady.get("requests"),
            "errors": steady.get("errors"),
            "error_rate": steady.get("error_rate"),
        },
        "latency_ms": steady.get("latency_ms") or {},
        # The intervals and stalls were of every request, not of those outside the faults.
        "latency_evidence": None,
        "by_status": steady.get("by_status") or {},
        "by_code": steady.get("by_code") or {},
        "outcomes": None,  # of every request: the counts by code above are the window's
    }


def fault_findings(name: str, faults: Mapping[str, Any] | None) -> list[Finding]:
    """Judge the injected faults: an injected fault is no finding, a slow recovery is NO-GO."""
    findings = []
    for fault in (faults or {}).get("faults") or []:
        at_s = fault.get("start_s")
        at_s = fault.get("planned_at_s") if at_s is None else at_s
        what = f"{fault.get('kind')} at {_seconds(at_s)}"
        outcome = fault.get("outcome")
        if outcome == FAULT_SKIPPED:
            findings.append(Finding(GO, name, f"{what} was skipped: {fault.get('reason')}"))
            continue
        if outcome == FAULT_FAILED:
            findings.append(
                Finding(CONDITIONAL, name, f"{what} could not be injected: {fault.get('reason')}")
            )
            continue
        recovery = fault.get("recovery") or {}
        if recovery.get("recovered"):
            continue
        limit = recovery.get("limit_s", 10)
        healthz = recovery.get("healthz_back_after_s")
        throughput = recovery.get("throughput_back_after_s")
        observed = recovery.get("observed_until_s") or 0.0
        if healthz is not None and throughput is None and observed < limit + 1:
            findings.append(
                Finding(
                    CONDITIONAL,
                    name,
                    f"{what}: recovery not observed, the run ended {observed:.1f} s after it",
                )
            )
            continue
        findings.append(
            Finding(
                NO_GO,
                name,
                f"{what}: the service did not recover within {limit:g} s of the fault's end "
                f"(/healthz {_back(healthz)}; throughput {_back(throughput)}, needed "
                f"{recovery.get('required_share', 0.8) * 100:.0f} % of "
                f"{recovery.get('baseline_rps') or 0:.1f} req/s)",
            )
        )
    return findings


def excused_by_faults(at: str | None, faults: Mapping[str, Any] | None) -> bool:
    """Tell whether a service event's time lies within a fault's window (fault + recovery)."""
    moment = _parse_time(at)
    if moment is None:
        return False
    for fault in (faults or {}).get("faults") or []:
        start = _parse_time(fault.get("excused_from"))
        until = _parse_time(fault.get("excused_until"))
        if start is not None and until is not None and start <= moment <= until:
            return True
    return False


def _parse_time(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _seconds(value: Any) -> str:
    return "?" if value is None else f"{float(value):.1f} s"


def _back(after_s: Any) -> str:
    return "not back" if after_s is None else f"back after {float(after_s):.1f} s"


def _measurement(name: str, result: Mapping[str, Any]) -> float | None:
    totals = result.get("totals") or {}
    if name in (ERROR_RATE_MAX, ERROR_RATE_MIN):
        return _number(totals.get("error_rate")) if totals.get("requests") else None
    if name == UNEXPECTED_ERROR_RATE_MAX:
        return unexpected_error_rate(result) if totals.get("requests") else None
    match = LATENCY_THRESHOLD.match(name)
    if match is None:
        raise ValueError(
            f"unknown threshold {name!r}: expected pNN_ms, error_rate_max/min "
            "or unexpected_error_rate_max"
        )
    percent = match.group(1).removesuffix(".0")
    return _number((result.get("latency_ms") or {}).get(f"p{percent}"))


def _judge(scenario: str, name: str, limit: float, measured: float | None) -> ThresholdCheck:
    if measured is None:
        return ThresholdCheck(scenario, name, limit, None, False, None, NO_GO)
    # A minimum error rate proves contention happened: falling short is the miss.
    shortfall = limit - measured if name == ERROR_RATE_MIN else measured - limit
    if shortfall <= 0:
        return ThresholdCheck(scenario, name, limit, measured, True, 0.0, GO)
    missed_by_pct = shortfall / limit * 100 if limit > 0 else math.inf
    # The rule: only a latency threshold missed by more than 50 % is NO-GO on its own;
    # an error rate outside its band is CONDITIONAL (crashes and pool exhaustion are NO-GO
    # through their own findings).
    far_off = missed_by_pct > NO_GO_MISS_PCT + TOLERANCE
    graded = LATENCY_THRESHOLD.match(name) or name in GRADED_THRESHOLDS
    decision = NO_GO if far_off and graded else CONDITIONAL
    return ThresholdCheck(scenario, name, limit, measured, False, missed_by_pct, decision)


def _judge_latency(
    scenario: str,
    name: str,
    limit: float,
    entry: Mapping[str, Any],
    evidence: Mapping[str, Any],
) -> ThresholdCheck:
    """Judge a latency threshold by its interval: NO-GO needs a certain miss of over 50 %."""
    judgement = judge_latency(
        {**entry, "limit_ms": limit},
        min_tail_requests=float(evidence.get("min_tail_requests") or MIN_TAIL_REQUESTS),
        stall_max_s=float(evidence.get("stall_max_s") or STALL_MAX_S),
    )
    measured = judgement.estimate_ms
    if judgement.status == TOO_SMALL:
        decision = GO if judgement.met else CONDITIONAL
    else:
        decision = LATENCY_DECISIONS[judgement.status]
    missed_by_pct = None if measured is None else max(measured - limit, 0.0) / limit * 100
    return ThresholdCheck(
        scenario,
        name,
        limit,
        measured,
        judgement.met,
        missed_by_pct,
        decision,
        status=judgement.status,
        interval_ms=(judgement.lower_ms, judgement.upper_ms),
        note=judgement.note,
        stall=judgement.stall,
    )


def _miss_text(check: ThresholdCheck) -> str:
    """Say how far a threshold was missed: a percentage, or a multiple once it is over 2×.

    "missed by 3322.8 %" of a 1 % error-rate limit reads as a percentage of requests; "34.2×
    the limit" does not.
    """
    assert check.missed_by_pct is not None
    if check.comparison == "at most" and check.missed_by_pct >= MULTIPLE_FROM_PCT:
        return f", {1 + check.missed_by_pct / 100:.1f}× the limit"
    return f", missed by {check.missed_by_pct:.1f} %"


def _threshold_reason(check: ThresholdCheck) -> str:
    if check.status and check.measured is not None:
        return (
            f"{check.name} {_format(check.name, check.measured)} against {check.comparison} "
            f"{_format(check.name, check.limit)}: {check.status} ({check.note})"
        )
    if check.measured is None:
        return f"{check.name}: nothing was measured (threshold {_format(check.name, check.limit)})"
    by = "" if check.missed_by_pct is None or math.isinf(check.missed_by_pct) else _miss_text(check)
    return (
        f"{check.name} {_format(check.name, check.measured)} against {check.comparison} "
        f"{_format(check.name, check.limit)}{by}"
    )


def _run_findings(name: str, result: Mapping[str, Any]) -> list[Finding]:
    run = result.get("run") or {}
    findings = []
    # A timeout also marks the run crashed: one finding, the more precise one.
    if run.get("timed_out"):
        findings.append(Finding(NO_GO, name, "the load generator timed out"))
    elif run.get("crashed"):
        tail = (run.get("stderr_tail") or "").strip().splitlines()
        findings.append(
            Finding(NO_GO, name, "the load generator crashed" + (f": {tail[-1]}" if tail else ""))
        )
    elif run.get("exit_code") not in (0, None):
        findings.append(
            Finding(NO_GO, name, f"the load generator exited with code {run['exit_code']}")
        )
    if not (result.get("totals") or {}).get("requests"):
        findings.append(Finding(NO_GO, name, "no request was measured"))
    findings += _open_model_findings(name, result)
    return findings


def _open_model_findings(name: str, result: Mapping[str, Any]) -> list[Finding]:
    """Flag an open-model run that fell behind its schedule: the unsent were the slowest."""
    open_model = result.get("open_model") or {}
    scheduled = open_model.get("scheduled_requests") or 0
    sent = open_model.get("sent_requests") or 0
    unsent = scheduled - sent
    if scheduled <= 0 or unsent <= UNSENT_SHARE_TOLERATED * scheduled:
        return []
    return [
        Finding(
            CONDITIONAL,
            name,
            f"the open model sent {sent:,} of {scheduled:,} scheduled requests: the generator "
            f"fell behind, and the {unsent:,} never sent (the slowest tail) are not measured",
        )
    ]


def unexpected_error_rate(result: Mapping[str, Any]) -> float:
    """Return the share of requests that failed other than with a refusal the scenario expects.

    From result.json's `outcomes`, which count a failure answered without a code too (a bare
    502); results written before them: from the counts by code.
    """
    requests = (result.get("totals") or {}).get("requests") or 0
    outcomes = result.get("outcomes")
    if outcomes and outcomes.get("requests") == requests:
        unexpected = int(outcomes.get("unexpected_errors") or 0)
        return unexpected / requests if requests else 0.0
    expected = set((result.get("config") or {}).get("expected_error_codes") or ())
    by_code = result.get("by_code") or {}
    unexpected = sum(count for code, count in by_code.items() if code and code not in expected)
    return unexpected / requests if requests else 0.0


def _integrity_findings(evidence: ScenarioEvidence) -> list[Finding]:
    integrity = evidence.integrity
    if integrity is None:
        return [Finding(NO_GO, evidence.scenario, "integrity was not verified")]
    failed = [check for check in integrity.get("checks") or [] if not check.get("ok")]
    findings = [
        Finding(
            NO_GO,
            evidence.scenario,
            f"integrity check {check.get('name')} failed with {check.get('violations')} "
            f"violations{_first_row(check.get('rows') or [])}",
        )
        for check in failed
    ]
    if not integrity.get("ok") and not failed:
        findings.append(Finding(NO_GO, evidence.scenario, "integrity did not hold"))
    # A check that could not run proves nothing: it must not pass as if it held.
    findings += [
        Finding(
            CONDITIONAL,
            evidence.scenario,
            f"integrity check {check.get('name')} was not checked: "
            f"{str(check.get('detail') or '').removeprefix('NOT CHECKED: ')}",
        )
        for check in integrity.get("checks") or []
        if check.get("ok") and check.get("checked") is False
    ]
    return findings


def _first_row(rows: Sequence[Mapping[str, Any]]) -> str:
    """Name the first offending row, so the banner says what went wrong and where."""
    if not rows:
        return ""
    row = rows[0]
    where = row.get("authorization_id") or row.get("transaction_id")
    if not row.get("problem") or not where:
        return ""
    return f" (first: {row['problem']} on {where})"


def _service_findings(evidence: ScenarioEvidence) -> list[Finding]:
    service = evidence.service
    name = evidence.scenario
    if service is None:
        return [Finding(CONDITIONAL, name, "the service's health was not observed")]
    findings = []
    all_events = service.get("events") or []
    # Under injected faults, what the service went through within a fault's window (a
    # killed worker replaced, health checks failing while PostgreSQL was down) is the fault's.
    events = [e for e in all_events if not excused_by_faults(e.get("at"), evidence.faults)]
    for event in events:
        kind, at = event.get("kind"), event.get("at", "?")
        if kind == "crash":
            findings.append(Finding(NO_GO, name, f"the service crashed at {at}"))
        elif kind == "restart":
            findings.append(Finding(NO_GO, name, f"a service worker restarted at {at}"))
        elif kind == "worker_exit":
            findings.append(Finding(NO_GO, name, f"a service worker exited at {at}"))
        elif kind == "pool_exhaustion":
            findings.append(Finding(NO_GO, name, f"the connection pool was exhausted at {at}"))
    if "before" in service and service["before"] is None:
        # No /metrics baseline: the counters' deltas (pool timeouts, retries) are unknown.
        findings.append(
            Finding(CONDITIONAL, name, "pool timeouts during the run are unknown (no /metrics)")
        )
    timeouts = (service.get("delta") or {}).get(POOL_TIMEOUTS_METRIC) or 0
    if timeouts and not any(event.get("kind") == "pool_exhaustion" for event in all_events):
        findings.append(
            Finding(NO_GO, name, f"{timeouts:g} requests timed out waiting for the pool")
        )
    failed_probes = int((service.get("healthz") or {}).get("failures") or 0)
    if evidence.faults and not any(e.get("kind") == "healthz_failed" for e in events):
        failed_probes = 0  # every failing stretch began within a fault's window
    if failed_probes and not any(f.decision == NO_GO for f in findings):
        findings.append(
            Finding(CONDITIONAL, name, f"{failed_probes} health checks failed during the run")
        )
    return findings


def _server_error_findings(name: str, result: Mapping[str, Any]) -> list[Finding]:
    by_status = result.get("by_status") or {}
    by_code = result.get("by_code") or {}
    findings = []
    exhausted = int(by_code.get(POOL_EXHAUSTION_CODE) or 0)
    if exhausted:
        findings.append(
            Finding(NO_GO, name, f"{exhausted} responses were 503 {POOL_EXHAUSTION_CODE}")
        )
    server_errors = sum(int(n) for status, n in by_status.items() if str(status).startswith("5"))
    other = server_errors - exhausted
    if other > 0:
        findings.append(Finding(CONDITIONAL, name, f"{other} other server errors (5xx)"))
    return findings


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _format(name: str, value: float) -> str:
    if "error_rate" in name:
        return f"{value * 100:.2f} %"
    return f"{value:.1f} ms"


def _label(finding: Finding) -> str:
    return f"{finding.scenario}: {finding.reason}" if finding.scenario else finding.reason
