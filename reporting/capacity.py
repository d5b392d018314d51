"""Judge one capacity step and describe the search: pure functions over what a step recorded.

A step is the scenario run under the open model at one arrival rate. Its figures are taken
over the measured window only (the warm-up excluded), and it is judged by the verdict's own
scenario rules: a step holds exactly when that window, its integrity checks and the service's
health would make a GO, and the generator did not flag itself as the bottleneck.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reporting.verdict import ScenarioEvidence, judge_scenario, unexpected_error_rate
from results.record_format import NO_RESPONSE_STATUS, Record
from results.summary import summarise_requests

CAPACITY_SCHEMA_VERSION = 1
CAPACITY_KIND = "clinic-loadtest-capacity"
# Share of its cores a party may keep busy before it is named as (one of) the limit(s).
SATURATED_SHARE = 0.85
FATAL_SERVICE_EVENTS = ("crash",)
POOL_TIMEOUTS = "db_pool_timeouts_total"
SERIALIZATION_RETRIES = "db_serialization_retries_total"
SERIALIZATION_CONFLICTS = "db_serialization_conflicts_total"
POOL_WAITING = "db_pool_waiting"
POOL_CHECKED_OUT = "db_pool_checked_out"
POOL_SIZE = "db_pool_size"
PARTIES = ("service", "postgres", "generator")  # CPU groups charged per request
MACHINE = "machine"  # every core's busy time, other tenants included


@dataclass(frozen=True)
class StepJudgement:
    """Whether a step held, whether the search may go on, and why not."""

    passed: bool
    fatal: bool
    reasons: tuple[str, ...]


def measured_window(
    result: Mapping[str, Any],
    records: Sequence[Record],
    *,
    warmup_s: float,
    step_s: float,
) -> dict[str, Any]:
    """Return result.json's shape over the requests whose (intended) start is after the warm-up.

    Throughput counts the answers that arrived inside the window. Under the open model, the
    slots the generator never reached are charged to this window: they are the run's last ones.
    """
    start, end = warmup_s, warmup_s + step_s
    inside = [record for record in records if start <= record.started_s < end]
    expected_codes = (result.get("config") or {}).get("expected_error_codes") or ()
    summary = summarise_requests(inside, elapsed_s=end, expected_codes=expected_codes)
    answered = [r for r in records if r.status != NO_RESPONSE_STATUS and start <= _ended(r) < end]
    succeeded = [r for r in answered if 200 <= r.status < 300 and not r.code]
    totals = dict(summary["totals"])  # type: ignore[call-overload]
    totals.update(
        throughput_rps=round(len(answered) / step_s, 3),
        ok_rps=round(len(succeeded) / step_s, 3),
        measured_window_s=step_s,
    )
    whole = result.get("open_model") or {}
    scheduled, sent = whole.get("scheduled_requests") or 0, whole.get("sent_requests") or 0
    unsent = max(int(scheduled) - int(sent), 0)
    kept = ("schema_version", "scenario", "profile", "load_model", "target_url", "config", "run")
    return {
        **{key: result.get(key) for key in kept},
        "started_at": result.get("started_at"),
        "ended_at": result.get("ended_at"),
        "duration_s": step_s,
        "measured_window": {"from_s": start, "to_s": end, "warmup_s": warmup_s},
        "open_model": {
            "arrival_rate_rps": whole.get("arrival_rate_rps"),
            "scheduled_requests": len(inside) + unsent,
            "sent_requests": len(inside),
        },
        **summary,
        "totals": totals,
        "generator": dict(result.get("generator") or {}),
    }


def judge_step(evidence: ScenarioEvidence) -> StepJudgement:
    """Judge a step by the verdict's scenario rules; fatal when going on would mean nothing."""
    _, findings = judge_scenario(evidence)
    reasons = [finding.reason for finding in findings]
    generator = (evidence.result or {}).get("generator") or {}
    if generator.get("bottleneck"):
        causes = "; ".join(generator.get("reasons") or []) or "no reason given"
        reasons.append(f"the load generator was the bottleneck ({causes})")
    return StepJudgement(passed=not reasons, fatal=_is_fatal(evidence), reasons=tuple(reasons))


def step_resources(
    cores: Mapping[str, float | None],
    service: Mapping[str, Any] | None,
    *,
    achieved_rps: float,
    requests: int,
) -> dict[str, float | None]:
    """Return what each party used at a step: busy cores, CPU per request, pool and retries.

    ``cores`` is over the measured window; the /metrics deltas cover the whole step, so they
    are divided by the whole step's ``requests``.
    """
    delta = (service or {}).get("delta") or {}
    peaks = (service or {}).get("peaks") or {}
    figures: dict[str, float | None] = {}
    figures["machine_cpu_cores"] = cores.get(MACHINE)
    for group in PARTIES:
        busy = cores.get(group)
        figures[f"{group}_cpu_cores"] = busy
        figures[f"{group}_cpu_ms_per_request"] = (
            None if busy is None or achieved_rps <= 0 else round(busy / achieved_rps * 1000, 3)
        )
    parties = [cores.get(group) for group in PARTIES]
    machine = cores.get(MACHINE)
    # What else kept the cores busy (other tenants of a shared machine): a capacity found
    # while this is high understates what the service can do on a machine of its own.
    figures["other_cpu_cores"] = (
        None
        if machine is None or any(busy is None for busy in parties)
        else round(max(machine - sum(busy or 0.0 for busy in parties), 0.0), 4)
    )
    for name, metric in (
        ("pool_timeouts_per_request", POOL_TIMEOUTS),
        ("serialization_retries_per_request", SERIALIZATION_RETRIES),
        ("serialization_conflicts_per_request", SERIALIZATION_CONFLICTS),
    ):
        value = delta.get(metric)
        figures[name] = None if value is None or not requests else round(value / requests, 5)
    figures["pool_waiting_peak"] = peaks.get(POOL_WAITING)
    figures["pool_checked_out_peak"] = peaks.get(POOL_CHECKED_OUT)
    figures["pool_size"] = peaks.get(POOL_SIZE)
    return figures


def limit_observations(
    resources: Mapping[str, float | None],
    *,
    service_workers: int,
    cpu_count: int,
    generator_bottleneck: bool,
) -> list[str]:
    """Name what ran out at a step, most specific first; empty when nothing obviously did."""
    found = []
    if generator_bottleneck:
        found.append("the load generator (it flagged itself: its timings include its own delay)")
    timeouts = resources.get("pool_timeouts_per_request")
    if timeouts:
        found.append(f"the service's connection pool ({timeouts:.2%} of requests timed out on it)")
    size, peak = resources.get("pool_size"), resources.get("pool_checked_out_peak")
    if size and peak is not None and peak >= size and resources.get("pool_waiting_peak"):
        found.append(
            f"every pooled connection was in use, {resources['pool_waiting_peak']:g} requests "
            "waiting at the peak"
        )
    service = resources.get("service_cpu_cores")
    if service is not None and service >= SATURATED_SHARE * service_workers:
        found.append(
            f"service worker CPU ({service:.2f} cores busy for {service_workers} worker"
            f"{'s' if service_workers > 1 else ''})"
        )
    machine = resources.get("machine_cpu_cores")
    if machine is not None and machine >= SATURATED_SHARE * cpu_count:
        parts = ", ".join(
            f"{group} {resources.get(f'{group}_cpu_cores') or 0:.2f}" for group in PARTIES
        )
        found.append(
            f"the machine's {cpu_count} cores ({machine:.2f} busy: {parts}; the rest is other "
            "load on the machine)"
        )
    retries = resources.get("serialization_retries_per_request")
    if retries and retries >= 0.1:
        found.append(f"serialization retries ({retries:.2f} per request)")
    return found


def step_record(
    *,
    index: int,
    rate_rps: float,
    users: int,
    judgement: StepJudgement,
    window: Mapping[str, Any],
    integrity: Mapping[str, Any] | None,
    resources: Mapping[str, float | None],
    result_dir: str,
) -> dict[str, Any]:
    """Return one step as capacity.json lists it."""
    totals = window.get("totals") or {}
    latency = window.get("latency_ms") or {}
    generator = window.get("generator") or {}
    return {
        "index": index,
        "rate_rps": rate_rps,
        "users": users,
        "passed": judgement.passed,
        "fatal": judgement.fatal,
        "reasons": list(judgement.reasons),
        "requests": totals.get("requests"),
        "achieved_rps": totals.get("throughput_rps"),
        "ok_rps": totals.get("ok_rps"),
        "error_rate": totals.get("error_rate"),
        "unexpected_error_rate": round(unexpected_error_rate(window), 6),
        "latency_ms": {key: latency.get(key) for key in ("p50", "p90", "p95", "p99", "max")},
        "open_model": dict(window.get("open_model") or {}),
        "generator": {
            key: generator.get(key)
            for key in ("cpu_share_of_machine", "loop_lag_p99_ms", "bottleneck", "reasons")
        },
        "integrity_ok": bool(integrity and integrity.get("ok")),
        "resources": dict(resources),
        "result_dir": result_dir,
    }


def _is_fatal(evidence: ScenarioEvidence) -> bool:
    """Integrity broken, the service down or the generator crashed: the next step means nothing."""
    if evidence.failure or evidence.integrity is None or not evidence.integrity.get("ok"):
        return True
    service = evidence.service or {}
    if service and not service.get("alive", True):
        return True
    if any(event.get("kind") in FATAL_SERVICE_EVENTS for event in service.get("events") or []):
        return True
    run = (evidence.result or {}).get("run") or {}
    return bool(run.get("crashed") or run.get("timed_out"))


def _ended(record: Record) -> float:
    return record.started_s + record.latency_ms / 1000
