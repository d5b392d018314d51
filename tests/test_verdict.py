"""The verdict on hand-made results: exact decisions at every boundary."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reporting.verdict import (
    CONDITIONAL,
    GO,
    NO_GO,
    ScenarioEvidence,
    StepFailure,
    decide,
    evaluate_thresholds,
)

CLEAN_INTEGRITY = {
    "schema_version": 1,
    "ok": True,
    "checks": [{"name": "no_overbooking", "ok": True, "violations": 0, "rows": []}],
}
HEALTHY_SERVICE = {"events": [], "healthz": {"checks": 10, "failures": 0}, "delta": {}}


def make_result(
    *,
    p95: float = 100.0,
    p99: float = 200.0,
    error_rate: float = 0.0,
    thresholds: dict[str, float | None] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "schema_version": 1,
        "scenario": "high_throughput",
        "config": {
            "thresholds": thresholds
            if thresholds is not None
            else {"p95_ms": 200, "p99_ms": 500, "error_rate_max": 0.01, "error_rate_min": None}
        },
        "run": {"exit_code": 0, "crashed": False, "timed_out": False, "stderr_tail": ""},
        "totals": {"requests": 1000, "errors": round(1000 * error_rate), "error_rate": error_rate},
        "by_status": {"200": 1000},
        "by_code": {},
        "latency_ms": {"count": 1000, "p50": 50.0, "p95": p95, "p99": p99},
        "generator": {"bottleneck": False, "reasons": []},
    }
    for key, value in overrides.items():
        result[key] = value
    return result


def evidence(result: dict[str, Any] | None = None, **kwargs: Any) -> ScenarioEvidence:
    values: dict[str, Any] = {
        "scenario": "high_throughput",
        "result": make_result() if result is None else result,
        "integrity": CLEAN_INTEGRITY,
        "service": HEALTHY_SERVICE,
    }
    values.update(kwargs)
    return ScenarioEvidence(**values)


def test_everything_met_is_go() -> None:
    verdict = decide([evidence()])
    assert verdict.decision == GO
    assert verdict.findings == ()
    assert [(c.name, c.ok) for c in verdict.thresholds] == [
        ("p95_ms", True),
        ("p99_ms", True),
        ("error_rate_max", True),
    ]


@pytest.mark.parametrize(
    ("p95", "decision"),
    [
        (200.0, GO),  # exactly at the threshold meets it
        (200.001, CONDITIONAL),  # the smallest miss
        (300.0, CONDITIONAL),  # missed by exactly 50 %
        (300.001, NO_GO),  # missed by just over 50 %
    ],
)
def test_latency_boundaries(p95: float, decision: str) -> None:
    assert decide([evidence(make_result(p95=p95))]).decision == decision


def test_missed_by_is_relative_to_the_threshold() -> None:
    (p95, p99, _) = evaluate_thresholds("s", make_result(p95=250.0, p99=1000.0))
    assert (p95.ok, p95.missed_by_pct, p95.decision) == (False, 25.0, CONDITIONAL)
    assert (p99.ok, p99.missed_by_pct, p99.decision) == (False, 100.0, NO_GO)


def test_conditional_says_why() -> None:
    verdict = decide([evidence(make_result(p95=250.0))])
    assert verdict.decision == CONDITIONAL
    assert verdict.reasons == (
        "high_throughput: p95_ms 250.0 ms against at most 200.0 ms, missed by 25.0 %",
    )


@pytest.mark.parametrize(
    ("error_rate", "decision"),
    [(0.01, GO), (0.015, CONDITIONAL), (0.5, CONDITIONAL)],
)
def test_error_rate_max_boundaries(error_rate: float, decision: str) -> None:
    assert decide([evidence(make_result(error_rate=error_rate))]).decision == decision


@pytest.mark.parametrize(
    ("error_rate", "decision"),
    [(0.5, GO), (0.9, GO), (0.25, CONDITIONAL), (0.0, CONDITIONAL)],
)
def test_error_rate_min_proves_contention(error_rate: float, decision: str) -> None:
    result = make_result(error_rate=error_rate, thresholds={"p95_ms": 200, "error_rate_min": 0.5})
    assert decide([evidence(result)]).decision == decision


def test_zero_error_budget_is_missed_by_any_error() -> None:
    result = make_result(error_rate=0.001, thresholds={"error_rate_max": 0.0})
    (check,) = evaluate_thresholds("s", result)
    assert (check.ok, check.decision) == (False, CONDITIONAL)


def test_only_latency_misses_over_half_are_no_go_on_their_own() -> None:
    """The issue's rule: error rates far outside their band stay CONDITIONAL."""
    result = make_result(p95=301.0, error_rate=0.5)
    checks = {c.name: c.decision for c in evaluate_thresholds("s", result)}
    assert checks["p95_ms"] == NO_GO
    assert checks["error_rate_max"] == CONDITIONAL


def test_null_thresholds_are_not_evaluated() -> None:
    result = make_result(thresholds={"p95_ms": None, "p99_ms": 500})
    assert [c.name for c in evaluate_thresholds("s", result)] == ["p99_ms"]


def test_unknown_threshold_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown threshold 'latency'"):
        evaluate_thresholds("s", make_result(thresholds={"latency": 3}))


def test_no_requests_is_no_go() -> None:
    result = make_result()
    result["totals"] = {"requests": 0, "errors": 0, "error_rate": 0.0}
    result["latency_ms"] = {"count": 0, "p50": None, "p95": None, "p99": None}
    verdict = decide([evidence(result)])
    assert verdict.decision == NO_GO
    assert "high_throughput: no request was measured" in verdict.reasons


def test_any_integrity_violation_is_no_go_even_when_fast() -> None:
    integrity = copy.deepcopy(CLEAN_INTEGRITY)
    integrity["ok"] = False
    integrity["checks"].append(
        {
            "name": "ledger_consistency",
            "ok": False,
            "violations": 3,
            "rows": [{"authorization_id": "a-1", "problem": "counter_drift"}],
        }
    )
    verdict = decide([evidence(integrity=integrity)])
    assert verdict.decision == NO_GO
    assert verdict.reasons == (
        "high_throughput: integrity check ledger_consistency failed with 3 violations "
        "(first: counter_drift on a-1)",
    )


def test_a_check_that_could_not_run_is_conditional_not_a_pass() -> None:
    integrity = copy.deepcopy(CLEAN_INTEGRITY)
    integrity["checks"].append(
        {
            "name": "one_row_per_idempotency_key",
            "ok": True,
            "checked": False,
            "violations": 0,
            "detail": "NOT CHECKED: no ledger row carries an Idempotency-Key",
        }
    )
    verdict = decide([evidence(integrity=integrity)])
    assert verdict.decision == CONDITIONAL
    assert verdict.reasons == (
        "high_throughput: integrity check one_row_per_idempotency_key was not checked: "
        "no ledger row carries an Idempotency-Key",
    )


def test_unverified_integrity_is_no_go() -> None:
    assert decide([evidence(integrity=None)]).decision == NO_GO


@pytest.mark.parametrize("kind", ["crash", "restart", "worker_exit", "pool_exhaustion"])
def test_service_events_are_no_go(kind: str) -> None:
    service = {**HEALTHY_SERVICE, "events": [{"kind": kind, "at": "2026-11-26T21:00:03+00:00"}]}
    verdict = decide([evidence(service=service)])
    assert verdict.decision == NO_GO
    assert "2026-11-26T21:00:03+00:00" in verdict.reasons[0]


def test_pool_timeouts_in_the_metrics_are_no_go() -> None:
    service = {**HEALTHY_SERVICE, "delta": {"db_pool_timeouts_total": 2.0}}
    verdict = decide([evidence(service=service)])
    assert verdict.reasons == ("high_throughput: 2 requests timed out waiting for the pool",)


def test_503_unavailable_responses_are_no_go() -> None:
    result = make_result(by_status={"200": 990, "503": 10}, by_code={"unavailable": 10})
    verdict = decide([evidence(result)])
    assert verdict.decision == NO_GO
    assert verdict.reasons == ("high_throughput: 10 responses were 503 unavailable",)


def test_other_server_errors_are_conditional() -> None:
    result = make_result(by_status={"200": 999, "500": 1}, by_code={"internal_error": 1})
    verdict = decide([evidence(result)])
    assert verdict.decision == CONDITIONAL
    assert verdict.reasons == ("high_throughput: 1 other server errors (5xx)",)


def test_failed_health_checks_are_conditional() -> None:
    service = {**HEALTHY_SERVICE, "healthz": {"checks": 10, "failures": 2}}
    assert decide([evidence(service=service)]).decision == CONDITIONAL


def test_unobserved_service_is_conditional() -> None:
    assert decide([evidence(service=None)]).decision == CONDITIONAL


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        (
            {"exit_code": 1, "crashed": True, "timed_out": False, "stderr_tail": "boom\nKeyError"},
            "the load generator crashed: KeyError",
        ),
        (
            {"exit_code": 0, "crashed": False, "timed_out": True, "stderr_tail": ""},
            "the load generator timed out",
        ),
        (
            {"exit_code": 3, "crashed": False, "timed_out": False, "stderr_tail": ""},
            "the load generator exited with code 3",
        ),
    ],
)
def test_generator_failures_are_no_go(run: dict[str, Any], reason: str) -> None:
    verdict = decide([evidence(make_result(run=run))])
    assert verdict.decision == NO_GO
    assert f"high_throughput: {reason}" in verdict.reasons


def test_failed_step_and_missing_scenarios_are_no_go() -> None:
    verdict = decide(
        [evidence()],
        failures=[StepFailure("start_service", "port in use")],
        expected_scenarios=["high_contention", "high_throughput"],
    )
    assert verdict.decision == NO_GO
    assert set(verdict.reasons) == {
        "step start_service failed: port in use",
        "high_contention: scenario did not run",
    }


def test_no_scenarios_at_all_is_no_go() -> None:
    assert decide([]).decision == NO_GO


def test_scenario_without_result_is_no_go() -> None:
    verdict = decide([ScenarioEvidence("high_contention", failure="runner raised OSError")])
    assert verdict.decision == NO_GO
    assert "high_contention: no result was recorded" in verdict.reasons


def test_worst_finding_wins_and_comes_first() -> None:
    slow = evidence(make_result(p95=250.0))
    broken = evidence(make_result(p99=5000.0), scenario="mixed_operations")
    verdict = decide([slow, broken])
    assert verdict.decision == NO_GO
    assert [f.decision for f in verdict.findings] == [NO_GO, CONDITIONAL]


def test_generator_bottleneck_is_reported_beside_the_verdict() -> None:
    result = make_result(
        generator={"bottleneck": True, "reasons": ["event-loop lag p99 80 ms > 50 ms"]}
    )
    verdict = decide([evidence(result)])
    assert verdict.decision == GO  # a caveat, not a failure
    assert verdict.generator_bottleneck
    assert verdict.bottleneck_notes == (
        "high_throughput: the load generator was the bottleneck (event-loop lag p99 80 ms > 50 ms)",
    )


def test_a_timed_out_run_is_one_finding_not_two() -> None:
    run = {"exit_code": -9, "crashed": True, "timed_out": True, "stderr_tail": "killed"}
    verdict = decide([evidence(make_result(run=run))])
    assert verdict.decision == NO_GO
    assert [f.reason for f in verdict.findings] == ["the load generator timed out"]


def expecting(codes: list[str], by_code: dict[str, int], *, requests: int = 1000) -> dict[str, Any]:
    errors = sum(by_code.values())
    result = make_result(
        error_rate=errors / requests,
        thresholds={"p95_ms": 200, "unexpected_error_rate_max": 0.01},
        by_code=by_code,
    )
    result["config"]["expected_error_codes"] = codes
    return result


@pytest.mark.parametrize(
    ("by_code", "decision"),
    [
        ({"insufficient_units": 950}, GO),  # the refusals the scenario provokes on purpose
        ({"insufficient_units": 900, "serialization_conflict": 10}, GO),  # 1.0 %: at the limit
        ({"insufficient_units": 900, "serialization_conflict": 15}, CONDITIONAL),  # 1.5 %
        ({"insufficient_units": 900, "serialization_conflict": 16}, NO_GO),  # 1.6 %
        ({"unauthorized": 1000}, NO_GO),  # every token refused: nothing was tested
        ({"insufficient_units": 800, "timeout": 150}, NO_GO),
    ],
)
def test_unexpected_error_codes_are_judged_apart_from_expected_refusals(
    by_code: dict[str, int], decision: str
) -> None:
    result = expecting(["insufficient_units"], by_code)
    assert decide([evidence(result)]).decision == decision


def test_without_expected_codes_every_error_is_unexpected() -> None:
    (check, unexpected) = evaluate_thresholds("s", expecting([], {"insufficient_units": 5}))
    assert (check.name, check.ok) == ("p95_ms", True)
    assert (unexpected.name, unexpected.measured) == ("unexpected_error_rate_max", 0.005)


@pytest.mark.parametrize(
    ("scheduled", "sent", "decision"),
    [(1000, 1000, GO), (1000, 990, GO), (1000, 989, CONDITIONAL), (1000, 400, CONDITIONAL)],
)
def test_an_open_model_run_that_fell_behind_its_schedule_is_reported(
    scheduled: int, sent: int, decision: str
) -> None:
    result = make_result(
        open_model={"arrival_rate_rps": 100.0, "scheduled_requests": scheduled,
                    "sent_requests": sent}
    )  # fmt: skip
    verdict = decide([evidence(result)])
    assert verdict.decision == decision
    if decision != GO:
        assert f"sent {sent:,} of {scheduled:,} scheduled requests" in verdict.reasons[0]


def test_unknown_pool_timeouts_are_not_taken_for_none() -> None:
    """Without a /metrics baseline the deltas are null: say so rather than assume zero."""
    service = {**HEALTHY_SERVICE, "before": None, "delta": {"db_pool_timeouts_total": None}}
    verdict = decide([evidence(service=service)])
    assert verdict.decision == CONDITIONAL
    assert verdict.reasons == (
        "high_throughput: pool timeouts during the run are unknown (no /metrics)",
    )
