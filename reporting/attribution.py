"""Say what coincided with each slow second: database waits, checkpoints, vacuum, host, service.

Pure: from a scenario's result.json (its per-second series, thresholds and latency evidence)
and samples.json (watch/attribution_sampler.py). A second is slow when its own p95 or p99
is above the scenario's threshold for it, when its median is five times the run's (and over
SLOW_MEDIAN_FLOOR_MS), or when it lies in a stall the latency evidence found. The samples
looked at for second k are those from k to k + 1 s plus that second's p99 (at most one
second more): a request that started in second k waited for whatever came after it.

The text reads like "second 2: 38 backends waiting on IO:WALSync, checkpoint in progress".
When nothing outside the service coincided, it says so: PostgreSQL was not waiting, the host
was not starved, the generator kept time, so the delay was inside the service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

SLOW_MEDIAN_FACTOR = 5.0
SLOW_MEDIAN_FLOOR_MS = 50.0
MAX_LOOKAHEAD_S = 1.0
# What counts as a coincidence worth naming.
WAITING_BACKENDS_MIN = 2
IOWAIT_PCT_MIN = 5.0
STEAL_PCT_MIN = 5.0
HOST_BUSY_PCT_MIN = 90.0
WORKER_SATURATED_PCT = 90.0
GENERATOR_LAG_MS_MIN = 20.0
SERVICE_LAG_MS_MIN = 20.0
OTHER_DATABASES_ACTIVE_MIN = 2
TOP_WAITS = 3
MAX_SECONDS_TOLD = 3  # slow seconds named in a verdict's finding (all are in the report)
# The checkpointer's wait event while it waits for the next checkpoint: anything else is work.
CHECKPOINTER_IDLE = ("", "Activity:CheckpointerMain")
LATENCY_THRESHOLD = re.compile(r"^p(\d+(?:\.\d+)?)_ms$")
SERVICE_ITSELF = "nothing outside the service coincided (PostgreSQL not waiting, host not starved)"
NO_SAMPLES = "no samples were recorded for this second"


@dataclass(frozen=True)
class SlowSecond:
    """One slow second of a scenario and what coincided with it."""

    second: int
    requests: int
    p50_ms: float | None
    p99_ms: float | None
    why_slow: str
    causes: tuple[str, ...]

    @property
    def text(self) -> str:
        return f"second {self.second}: {', '.join(self.causes)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "second": self.second,
            "requests": self.requests,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "why_slow": self.why_slow,
            "causes": list(self.causes),
            "text": self.text,
        }


def slow_seconds(result: Mapping[str, Any], samples: Mapping[str, Any] | None) -> list[SlowSecond]:
    """Return every slow second of a scenario with what coincided with it."""
    start = _epoch(result.get("started_at"))
    series = result.get("timeseries") or []
    thresholds = (result.get("config") or {}).get("thresholds") or {}
    run_p50 = (result.get("latency_ms") or {}).get("p50")
    stall_seconds = _stall_seconds(result)
    found = []
    for point in series:
        why = _why_slow(point, thresholds, run_p50, stall_seconds)
        if not why:
            continue
        second = int(point["second"])
        causes = _causes(samples, start, second, point) if start is not None else ()
        found.append(
            SlowSecond(
                second=second,
                requests=int(point.get("requests") or 0),
                p50_ms=point.get("p50_ms"),
                p99_ms=point.get("p99_ms"),
                why_slow=why,
                causes=tuple(causes) or (NO_SAMPLES,),
            )
        )
    return found


def explain_window(
    samples: Mapping[str, Any] | None, start_epoch: float, end_epoch: float
) -> list[str]:
    """Return what coincided with [start_epoch, end_epoch), most telling first."""
    if not samples:
        return []
    within = [s for s in samples.get("samples") or [] if start_epoch <= s["t"] < end_epoch]
    # The sample just before the window is the baseline for the cumulative counters.
    earlier = [s for s in samples.get("samples") or [] if s["t"] < start_epoch]
    causes: list[str] = []
    database = [s["pg"] for s in within if "pg" in s]
    if database:
        causes += _waits(database)
        causes += _checkpoint(
            database, earlier[-1]["pg"] if earlier and "pg" in earlier[-1] else None
        )
        causes += _maintenance(database)
        others = max(d.get("other_databases_active", 0) for d in database)
        if others >= OTHER_DATABASES_ACTIVE_MIN:
            causes.append(f"{others} backends active in other databases of the server")
    causes += _host([s.get("host") or {} for s in within])
    causes += _service([s.get("service") or {} for s in within])
    lags = [
        p["lag_ms"] for p in samples.get("generator_lag") or [] if start_epoch <= p["t"] < end_epoch
    ]
    if lags and max(lags) >= GENERATOR_LAG_MS_MIN:
        causes.append(f"generator event-loop lag up to {max(lags):.0f} ms")
    if not within:
        return []
    return causes or [_quiet(database, within)]


def stall_causes(
    result: Mapping[str, Any], samples: Mapping[str, Any] | None, stall: Mapping[str, Any]
) -> list[str]:
    """Return what coincided with a stall's window (seconds of the run)."""
    start = _epoch(result.get("started_at"))
    if start is None or not samples:
        return []
    return explain_window(samples, start + float(stall["start_s"]), start + float(stall["end_s"]))


# -- what makes a second slow --------------------------------------------------------------
def _why_slow(
    point: Mapping[str, Any],
    thresholds: Mapping[str, Any],
    run_p50: float | None,
    stall_seconds: set[int],
) -> str:
    reasons = []
    for name, limit in thresholds.items():
        match = LATENCY_THRESHOLD.match(name)
        value = point.get(f"p{match.group(1).removesuffix('.0')}_ms") if match else None
        if value is not None and limit is not None and value > float(limit):
            reasons.append(f"{name.removesuffix('_ms')} {value:.0f} ms > {float(limit):g} ms")
    p50 = point.get("p50_ms")
    if (
        p50 is not None
        and run_p50
        and p50 > max(SLOW_MEDIAN_FACTOR * run_p50, SLOW_MEDIAN_FLOOR_MS)
    ):
        reasons.append(f"p50 {p50:.0f} ms, {p50 / run_p50:.0f}× the run's")
    if int(point.get("second", -1)) in stall_seconds and not reasons:
        reasons.append("within a stall")
    return "; ".join(reasons)


def _stall_seconds(result: Mapping[str, Any]) -> set[int]:
    seconds: set[int] = set()
    for entry in ((result.get("latency_evidence") or {}).get("thresholds") or {}).values():
        stall = entry.get("stall") if isinstance(entry, Mapping) else None
        if stall:
            seconds.update(range(int(stall["start_s"]), int(stall["end_s"]) + 1))
    return seconds


# -- what coincided ------------------------------------------------------------------------
def _causes(
    samples: Mapping[str, Any] | None, start: float, second: int, point: Mapping[str, Any]
) -> list[str]:
    lookahead = min(float(point.get("p99_ms") or 0.0) / 1000, MAX_LOOKAHEAD_S)
    return explain_window(samples, start + second, start + second + 1 + lookahead)


def _waits(database: Sequence[Mapping[str, Any]]) -> list[str]:
    peak: dict[str, int] = {}
    for sample in database:
        for wait, count in (sample.get("waits") or {}).items():
            peak[wait] = max(peak.get(wait, 0), int(count))
    named = sorted(
        ((count, wait) for wait, count in peak.items() if count >= WAITING_BACKENDS_MIN),
        reverse=True,
    )[:TOP_WAITS]
    return [f"{count} backends waiting on {wait}" for count, wait in named]


def _checkpoint(
    database: Sequence[Mapping[str, Any]], before: Mapping[str, Any] | None
) -> list[str]:
    working = [
        (sample.get("background") or {}).get("checkpointer", "")
        for sample in database
        if (sample.get("background") or {}).get("checkpointer", "") not in CHECKPOINTER_IDLE
    ]
    first = (before or database[0]).get("bgwriter") or {}
    last = database[-1].get("bgwriter") or {}

    def grew(field: str) -> int:
        return int(last.get(field, 0)) - int(first.get(field, 0))

    causes = []
    if working or grew("checkpoints") or grew("buffers_checkpoint"):
        detail = (
            f" ({grew('buffers_checkpoint')} buffers written)" if grew("buffers_checkpoint") else ""
        )
        events = sorted(set(working))
        during = f", checkpointer on {', '.join(events)}" if events else ""
        causes.append(f"checkpoint in progress{detail}{during}")
    if grew("buffers_backend") > 0:
        causes.append(f"backends wrote {grew('buffers_backend')} buffers themselves")
    walwriter = sorted(
        {
            (sample.get("background") or {}).get("walwriter", "")
            for sample in database
            if (sample.get("background") or {}).get("walwriter", "").startswith("IO:")
        }
    )
    if walwriter:
        causes.append(f"WAL writer on {', '.join(walwriter)}")
    return causes


def _maintenance(database: Sequence[Mapping[str, Any]]) -> list[str]:
    seen = []
    for sample in database:
        for run in sample.get("maintenance") or []:
            who = "autovacuum" if run.get("by") == "autovacuum worker" else run.get("what", "")
            text = f"{who} {run.get('what')} on {run.get('relation')}".replace(
                "autovacuum vacuum", "autovacuum"
            ).replace("autovacuum analyze", "autoanalyze")
            if text not in seen:
                seen.append(text)
    return [f"{text} running" for text in seen]


def _host(hosts: Sequence[Mapping[str, Any]]) -> list[str]:
    hosts = [host for host in hosts if host]
    if not hosts:
        return []
    causes = []
    iowait = max(float(h.get("iowait", 0.0)) for h in hosts)
    steal = max(float(h.get("steal", 0.0)) for h in hosts)
    busy = max(float(h.get("busy", 0.0)) for h in hosts)
    if iowait >= IOWAIT_PCT_MIN:
        causes.append(f"host iowait up to {iowait:.0f} %")
    if steal >= STEAL_PCT_MIN:
        causes.append(f"CPU steal up to {steal:.0f} %")
    if busy >= HOST_BUSY_PCT_MIN:
        causes.append(f"host CPU {busy:.0f} % busy")
    return causes


def _service(services: Sequence[Mapping[str, Any]]) -> list[str]:
    peak = 0.0
    lags = [float(s["loop_lag_ms"]) for s in services if s.get("loop_lag_ms") is not None]
    for service in services:
        for share in (service.get("worker_cpu_pct") or {}).values():
            peak = max(peak, float(share))
    causes = []
    if lags and max(lags) >= SERVICE_LAG_MS_MIN:
        causes.append(f"service event-loop lag up to {max(lags):.0f} ms")
    if peak >= WORKER_SATURATED_PCT:
        causes.append(f"a service worker at {peak:.0f} % of a core")
    return causes


def _quiet(database: Sequence[Mapping[str, Any]], within: Sequence[Mapping[str, Any]]) -> str:
    active = max((int((d.get("states") or {}).get("active", 0)) for d in database), default=0)
    busy = max((float((s.get("host") or {}).get("busy", 0.0)) for s in within), default=0.0)
    return f"{SERVICE_ITSELF}: at most {active} backends active, host CPU at most {busy:.0f} % busy"


def _epoch(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def with_causes(verdict: Any, scenarios: Sequence[Any]) -> Any:
    """Return the verdict with each latency finding naming what coincided with its slow time.

    A finding of a threshold missed in one stall gets what coincided with the stall's
    window; any other latency finding gets its scenario's slow seconds (the first few).
    """
    by_scenario = {evidence.scenario: evidence for evidence in scenarios}
    checks = {(check.scenario, check.name): check for check in verdict.thresholds}
    findings = []
    for finding in verdict.findings:
        name = finding.reason.split(" ", 1)[0]
        check = checks.get((finding.scenario, name))
        evidence = by_scenario.get(finding.scenario)
        if check is None or evidence is None or not LATENCY_THRESHOLD.match(name):
            findings.append(finding)
            continue
        result = evidence.result or {}
        if check.stall:
            causes = stall_causes(result, evidence.samples, check.stall)
            told = f"; during the stall: {', '.join(causes)}" if causes else ""
        else:
            texts = [s.text for s in slow_seconds(result, evidence.samples)[:MAX_SECONDS_TOLD]]
            told = f"; slow seconds: {'; '.join(texts)}" if texts else ""
        findings.append(replace(finding, reason=finding.reason + told))
    return replace(verdict, findings=tuple(findings))
