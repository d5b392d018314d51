"""Summarise a run record into summary.json: the verdict, figures per scenario, run facts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from reporting.attribution import slow_seconds, with_causes
from reporting.isolation import isolation_summary
from reporting.records import RunRecord
from reporting.report_view import (
    check_status,
    error_split,
    latency_by_outcome,
    operation_outcomes,
    settings_in_words,
)
from reporting.verdict import (
    CONDITIONAL,
    DECISION_ORDER,
    GO,
    NO_GO,
    ScenarioEvidence,
    ThresholdCheck,
    Verdict,
    decide,
)
from results.documents import SCHEMA_VERSION  # the version the reader checks

SUMMARY_KIND = "clinic-loadtest-summary"
SERIALIZABLE = "serializable"
UNSAFE = "unsafe"
UNSAFE_NOTE = (
    "This is a control run: the unsafe strategy updates counters without any lock on purpose. "
    "NO-GO with overbooking is the expected outcome; anything else means the checks are blind."
)
RECOMMENDATIONS = {
    GO: "Go ahead with the next phase: every scenario met its thresholds, no overbooking, "
    "lost or phantom operation was found, and the service stayed up under load.",
    CONDITIONAL: "Go ahead only if the shortfalls below are acceptable for the next phase; "
    "otherwise optimize first. Correctness held, but not every target was met.",
    NO_GO: "Do not go ahead: fix the problems below first, then run the pipeline again.",
}
SEQ_SCAN_WARNING = (
    "PostgreSQL reads the authorization by id with a sequential scan under SERIALIZABLE: "
    "the scan takes a predicate lock on the whole table, so every reservation conflicts "
    "with every other one and retries or fails."
)
# Every key the report reads from the run facts, present even when a run collected none.
EMPTY_FACTS: dict[str, Any] = {
    "git": {},
    "machine": {},
    "versions": {},
    "postgres_settings": {},
    "data_volume": {},
    "lookup_plan": {},
    "errors": [],
}
SEQ_SCAN_NOTE = "PostgreSQL reads the authorization by id with a sequential scan."


def summarise(record: RunRecord) -> dict[str, Any]:
    """Return the summary.json document (results.documents.SummaryDocument) of a run: pure."""
    verdict = decide(
        record.scenarios,
        failures=record.failures,
        expected_scenarios=record.expected_scenarios,
    )
    verdict = with_causes(verdict, record.scenarios)  # latency findings name their slow seconds
    run = record.run
    facts = {**EMPTY_FACTS, **(run.get("facts") or {})}
    strategy = run.get("strategy") or _first(record, "strategy")
    scenarios = [_scenario_summary(evidence, verdict) for evidence in record.scenarios]
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": SUMMARY_KIND,
        "run_id": run.get("run_id") or record.run_dir.name,
        "profile": run.get("profile") or _first(record, "profile"),
        "strategy": strategy,
        # Older runs predate the dimensions: they ran the one-statement shape.
        "transaction_shape": run.get("transaction_shape") or "statement",
        "isolation": run.get("isolation"),
        "db_latency_ms": run.get("db_latency_ms") or 0.0,
        "workers": run.get("workers"),
        "started_at": run.get("started_at") or _earliest(scenarios, "started_at"),
        "ended_at": run.get("ended_at") or _latest(scenarios, "ended_at"),
        "duration_s": run.get("duration_s"),
        "verdict": _verdict_summary(verdict),
        "recommendation": RECOMMENDATIONS[verdict.decision],
        "integrity_ok": bool(scenarios)
        and all(s["integrity"] is not None and s["integrity"]["ok"] for s in scenarios),
        "totals": {
            "requests": sum(s["requests"] for s in scenarios),
            "errors": sum(s["errors"] for s in scenarios),
        },
        "scenarios": scenarios,
        "warnings": warnings(facts, strategy),
        "steps": list(run.get("steps") or []),
        "facts": facts,
        # --prometheus-remote-write: how its writes went (pipeline/metrics_stream.py).
        **({"remote_write": run["remote_write"]} if run.get("remote_write") else {}),
    }


def warnings(facts: Mapping[str, Any], strategy: str | None) -> list[str]:
    """Return the warnings a run calls for: a control run, a sequential scan of the lookup."""
    plan = facts.get("lookup_plan") or {}
    found: list[str] = [UNSAFE_NOTE] if strategy == UNSAFE else []
    if plan.get("seq_scan"):
        isolation = str((facts.get("postgres_settings") or {}).get("default_transaction_isolation"))
        under_serializable = strategy == SERIALIZABLE or isolation == SERIALIZABLE
        found.append(SEQ_SCAN_WARNING if under_serializable else SEQ_SCAN_NOTE)
    return found


def _verdict_summary(verdict: Verdict) -> dict[str, Any]:
    return {
        "decision": verdict.decision,
        "reasons": list(verdict.reasons),
        "findings": [
            {"decision": f.decision, "scenario": f.scenario, "reason": f.reason}
            for f in verdict.findings
        ],
        "generator_bottleneck": verdict.generator_bottleneck,
        "bottleneck_notes": list(verdict.bottleneck_notes),
    }


def _scenario_summary(evidence: ScenarioEvidence, verdict: Verdict) -> dict[str, Any]:
    result = evidence.result or {}
    totals = result.get("totals") or {}
    own = [f for f in verdict.findings if f.scenario == evidence.scenario]
    decision = max((f.decision for f in own), key=DECISION_ORDER.index, default=GO)
    config = result.get("config") or {}
    expected_codes = [str(code) for code in config.get("expected_error_codes") or []]
    requests, errors = int(totals.get("requests") or 0), int(totals.get("errors") or 0)
    outcomes = result.get("outcomes")
    if outcomes and outcomes.get("requests") != requests:
        outcomes = None  # not this document's requests (a hand-edited or trimmed result)
    by_code = dict(result.get("by_code") or {})
    return {
        "scenario": evidence.scenario,
        "decision": decision,
        "reasons": [f.reason for f in own],
        "failure": evidence.failure,
        "has_result": evidence.result is not None,
        "load_model": result.get("load_model"),
        "started_at": result.get("started_at"),
        "ended_at": result.get("ended_at"),
        "duration_s": result.get("duration_s"),
        "config": {k: v for k, v in config.items() if k != "thresholds"},
        "settings": settings_in_words(config, result.get("load_model")) if result else None,
        "requests": requests,
        "errors": errors,
        "error_rate": float(totals.get("error_rate") or 0.0),
        # The errors apart: refusals the scenario provokes on purpose, and every other failure.
        "expected_error_codes": expected_codes,
        **error_split(requests, errors, by_code, expected_codes, outcomes),
        "throughput_rps": float(totals.get("throughput_rps") or 0.0),
        "latency_ms": dict(result.get("latency_ms") or {}),
        # Latency per operation and outcome (success, each expected refusal, unexpected).
        "latency_by_outcome": latency_by_outcome(outcomes),
        "by_status": dict(result.get("by_status") or {}),
        "by_code": by_code,
        "by_operation": {
            name: {
                **operation,
                **error_split(
                    int(operation.get("requests") or 0),
                    int(operation.get("errors") or 0),
                    operation.get("by_code") or {},
                    expected_codes,
                    operation_outcomes(outcomes, name),
                ),
            }
            for name, operation in (result.get("by_operation") or {}).items()
        },
        # Tenant isolation: each organization's requests, errors and latency.
        "by_organization": list(result.get("by_organization") or []),
        # What the scenario cost: retries and CPU per committed operation (cost.json).
        "cost": dict(evidence.cost) if evidence.cost else None,
        "thresholds": [
            _threshold_summary(check)
            for check in verdict.thresholds
            if check.scenario == evidence.scenario
        ],
        "integrity": _integrity_summary(evidence.integrity),
        "service": _service_summary(evidence.service),
        "faults": _faults_summary(evidence.faults),
        # A list-append scenario's isolation check (anomalies.json), None for the others.
        "isolation": isolation_summary(evidence.anomalies),
        "generator": dict(result.get("generator") or {}),
        # Each latency threshold's interval and stall, every slow second with what coincided
        # with it, and the maintenance done before the measured window.
        "latency_evidence": result.get("latency_evidence"),
        "slow_seconds": [s.to_json() for s in slow_seconds(result, evidence.samples)],
        "measurement_hygiene": (evidence.samples or {}).get("measurement_hygiene"),
        "sampler_errors": list((evidence.samples or {}).get("errors") or []),
        "run": dict(result.get("run") or {}),
    }


def _threshold_summary(check: ThresholdCheck) -> dict[str, Any]:
    return {
        "name": check.name,
        "comparison": check.comparison,
        "limit": check.limit,
        "measured": check.measured,
        "ok": check.ok,
        # JSON has no infinity: a miss of a zero limit has no relative size.
        "missed_by_pct": None
        if check.missed_by_pct is None or math.isinf(check.missed_by_pct)
        else round(check.missed_by_pct, 3),
        "decision": check.decision,
        # Latency thresholds: met / missed (for certain or not) / too small to judge / stall.
        "status": check.status or None,
        "interval": None
        if check.interval_ms is None
        else {"lower": check.interval_ms[0], "upper": check.interval_ms[1]},
        "note": check.note or None,
        "stall": dict(check.stall) if check.stall else None,
    }


def _integrity_summary(integrity: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if integrity is None:
        return None
    return {
        "ok": bool(integrity.get("ok")),
        "client_operations": integrity.get("client_operations"),
        "ledger_rows": integrity.get("ledger_rows"),
        "checks": [
            {
                "name": check.get("name"),
                "description": check.get("description"),
                "ok": bool(check.get("ok")),
                "checked": check.get("checked", True) is not False,
                "violations": int(check.get("violations") or 0),
                # ok, n/a (nothing to check here), not checked, or violated
                "status": check_status(check),
                "detail": check.get("detail", ""),
                "rows": list(check.get("rows") or []),
            }
            for check in integrity.get("checks") or []
        ],
    }


def _service_summary(service: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if service is None:
        return None
    return {
        "alive": service.get("alive"),
        "events": list(service.get("events") or []),
        "healthz": dict(service.get("healthz") or {}),
        "delta": dict(service.get("delta") or {}),
        "before": dict(service.get("before") or {}),
        "after": dict(service.get("after") or {}),
    }


def _faults_summary(faults: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return each injected fault with its times, recovery and cost; None without a nemesis."""
    if faults is None:
        return None
    return {
        "anchor": faults.get("anchor"),
        "recovery_limit_s": faults.get("recovery_limit_s"),
        "faults": [
            {
                "kind": fault.get("kind"),
                "target": fault.get("target"),
                "outcome": fault.get("outcome"),
                "reason": fault.get("reason"),
                "planned_at_s": fault.get("planned_at_s"),
                "started_at": fault.get("started_at"),
                "ended_at": fault.get("ended_at"),
                "start_s": fault.get("start_s"),
                "end_s": fault.get("end_s"),
                "duration_s": fault.get("duration_s"),
                "recovery": fault.get("recovery"),
                "cost": fault.get("cost"),
            }
            for fault in faults.get("faults") or []
        ],
        # The figures the thresholds were judged on: attempts in flight during no fault window.
        "steady_state": faults.get("steady_state"),
    }


def _first(record: RunRecord, key: str) -> Any:
    for evidence in record.scenarios:
        if evidence.result and evidence.result.get(key):
            return evidence.result[key]
    return None


def _earliest(scenarios: list[dict[str, Any]], key: str) -> str | None:
    values = [s[key] for s in scenarios if s.get(key)]
    return min(values) if values else None


def _latest(scenarios: list[dict[str, Any]], key: str) -> str | None:
    values = [s[key] for s in scenarios if s.get(key)]
    return max(values) if values else None


__all__ = ["CONDITIONAL", "GO", "NO_GO", "summarise", "warnings"]
