"""The whole pipeline as one call: database, service, scenarios, checks, report."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from faults.nemesis import RELAY_FAULTS, load_schedule, nemesis_for
from faults.relay import DbRelay
from integrity import format_report, run_checks, write_integrity_json
from load_runner import SCENARIOS, run_scenario
from local_postgres import LocalCluster
from pipeline.dimensions import ServiceDimensions
from pipeline.exclusive import exclusive_database
from pipeline.exits import described
from pipeline.facts import collect_facts
from pipeline.isolation_check import check_isolation
from pipeline.metrics_stream import MetricsStream, watched_counters
from pipeline.rundirs import git_state, new_run_dir, resolve_reports_root
from pipeline.service_process import ServiceProcess, start_service
from pipeline.setup import bring_up_database, setup_database
from reporting.live_metrics import run_labels
from reporting.report import write_report
from results.files import ERRORS_LOG, FIXTURES_FILE, RAW_DIR, RESULT_FILE, RUN_FILE, SERVICE_LOG
from seeding import reset_to_baseline
from watch.attribution_sampler import AttributionSampler
from watch.quiet_database import autovacuum_paused, prepare_measured_window
from watch.scenario_cost import cost_watch, write_scenario_cost
from watch.service_watch import ServiceWatch

DEFAULT_PROFILE = "smoke"
DEFAULT_STRATEGY = "serializable"
# One Hypercorn worker: on the 2-core machines this runs on, the generator needs the other.
DEFAULT_WORKERS = 1
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RunOutcome:
    """What a pipeline run decided and where its report is."""

    run_dir: Path
    decision: str
    reasons: tuple[str, ...]
    report_path: Path
    summary_path: Path
    duration_s: float


@dataclass
class Step:
    """One step of the run as run.json records it."""

    name: str
    scenario: str | None = None
    started_at: str = ""
    duration_s: float = 0.0
    ok: bool = True
    error: str | None = None
    _started: float = field(default=0.0, repr=False)


class RunLog:
    """Record each step's outcome in run.json as the run goes, so a crash still leaves a trace."""

    def __init__(self, run_dir: Path, **meta: Any) -> None:
        self.run_dir = run_dir
        self.meta = meta
        self.steps: list[Step] = []
        self.facts: dict[str, Any] = {}
        self.started_at = _now()
        self._started = time.perf_counter()
        self.ended_at: str | None = None
        self.write()

    def step(self, name: str, scenario: str | None = None) -> StepContext:
        """Return a context that times a step and records, rather than raises, its error."""
        return StepContext(self, Step(name, scenario))

    def fail(self, name: str, error: str, scenario: str | None = None) -> None:
        """Record a step that could not even start."""
        self.steps.append(Step(name, scenario, _now(), 0.0, False, error))
        self.write()

    def finish(self) -> float:
        """Stamp the end of the run and write run.json one last time."""
        self.ended_at = _now()
        duration = time.perf_counter() - self._started
        self.meta["duration_s"] = round(duration, 3)
        self.write()
        return duration

    def write(self) -> None:
        document = {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_dir.name,
            **self.meta,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "steps": [
                {key: value for key, value in vars(step).items() if not key.startswith("_")}
                for step in self.steps
            ],
            "facts": self.facts,
        }
        (self.run_dir / RUN_FILE).write_text(json.dumps(document, indent=2) + "\n")


class StepContext:
    """Times one step; an Exception becomes a failed step (the run carries on to its report)."""

    def __init__(self, log: RunLog, step: Step) -> None:
        self.log = log
        self.step = step

    @property
    def ok(self) -> bool:
        return self.step.ok

    def __enter__(self) -> StepContext:
        self.step.started_at = _now()
        self.step._started = time.perf_counter()
        _say(f"[{self.step.name}] started")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.step.duration_s = round(time.perf_counter() - self.step._started, 3)
        if exc is not None:
            self.step.ok = False
            self.step.error = described(exc)
            with (self.log.run_dir / ERRORS_LOG).open("a") as errors:
                errors.write(f"--- {self.step.name} at {_now()}\n")
                errors.write("".join(traceback.format_exception(exc_type, exc, tb)))
        self.log.steps.append(self.step)
        self.log.write()
        state = "ok" if self.step.ok else f"FAILED: {self.step.error}"
        _say(f"[{self.step.name}] {state} ({self.step.duration_s:.1f} s)")
        # Swallow ordinary errors so the report is still written; let Ctrl-C through.
        return exc is None or isinstance(exc, Exception)


def run_all(
    *,
    profile: str = DEFAULT_PROFILE,
    strategy: str = DEFAULT_STRATEGY,
    reports_root: Path | None = None,
    workers: int = DEFAULT_WORKERS,
    scenarios: Sequence[str] | None = None,
    progress: bool = True,
    force: bool = False,
    dimensions: ServiceDimensions | None = None,
    metrics_stream: MetricsStream | None = None,
) -> RunOutcome:
    """Set up, serve, run each scenario with its checks, stop, report; the report always.

    ``dimensions`` (shape, isolation, database latency) default to ``strategy``'s own.
    ``metrics_stream`` feeds each scenario's series to Prometheus as it runs; the caller
    sends the verdict once it is final.
    """
    chosen = tuple(scenarios or SCENARIOS)
    dimensions = dimensions or ServiceDimensions(strategy=strategy)
    run_dir = new_run_dir(resolve_reports_root(reports_root))
    log = RunLog(
        run_dir,
        profile=profile,
        **dimensions.facts(),
        workers=workers,
        scenarios=list(chosen),
        unsafe_delay_ms=os.environ.get("TARGET_UNSAFE_DELAY_MS"),
        database="DATABASE_URL" if os.environ.get("DATABASE_URL") else "local cluster",
    )
    _say(f"run folder: {run_dir}")
    database_url: str | None = None
    # Ours to stop only if this run started it: decided by what up() did, not by a look
    # beforehand, since a run that starts alongside (and loses the lock) must leave it running.
    started_cluster = False
    service = None
    relay: DbRelay | None = None
    held = ExitStack()
    if metrics_stream is not None:
        metrics_stream.labels = run_labels(run_dir.name, git_state()[0], log.meta)
    try:
        if metrics_stream is not None:
            held.enter_context(metrics_stream)
        with log.step("setup") as step:
            url, started_cluster = bring_up_database()
            database_url = _setup(url, run_dir / FIXTURES_FILE, held)
        if step.ok and database_url:
            with log.step("start_service") as step:
                needs_relay = dimensions.db_latency_ms > 0 or needs_db_relay(profile, chosen)
                relay = _relay(database_url, dimensions, held) if needs_relay else None
                service = _start(database_url, relay, run_dir, dimensions, workers)
        if service is not None and database_url:
            for scenario in chosen:
                if not service.is_alive():
                    log.fail(scenario, "the service was not running", scenario=scenario)
                    continue
                with log.step(scenario, scenario=scenario):
                    run_scenario_with_checks(
                        scenario,
                        database_url=database_url,
                        service=service,
                        profile=profile,
                        fixtures_path=run_dir / FIXTURES_FILE,
                        out_dir=run_dir,
                        progress=progress,
                        force=force,
                        relay=relay,
                        metrics_stream=metrics_stream,
                    )
        else:
            for scenario in chosen:
                log.fail(scenario, "not run: an earlier step failed", scenario=scenario)
        with log.step("collect_facts"):
            log.facts = collect_facts(database_url)
    finally:
        if service is not None:
            with log.step("stop_service"):
                exit_code = service.stop()
                log.meta["service_exit_code"] = exit_code
        held.close()
        if started_cluster:
            with log.step("stop_database"):
                LocalCluster().down()
        if metrics_stream is not None:
            log.meta["remote_write"] = metrics_stream.evidence()
        duration = log.finish()
        files = write_report(run_dir)
    _say(f"[report] {files.html_path}")
    return RunOutcome(
        run_dir=run_dir,
        decision=files.decision,
        reasons=tuple(files.summary["verdict"]["reasons"]),
        report_path=files.html_path,
        summary_path=files.summary_path,
        duration_s=duration,
    )


def run_scenario_with_checks(
    scenario: str,
    *,
    database_url: str,
    service: Any,
    profile: str,
    fixtures_path: Path,
    out_dir: Path,
    progress: bool = True,
    force: bool = False,
    relay: DbRelay | None = None,
    metrics_stream: MetricsStream | None = None,
) -> Path:
    """Run one scenario from the baseline under watch, then check integrity; return its folder."""
    result_dir, completed = run_watched_scenario(
        scenario,
        database_url=database_url,
        service=service,
        profile=profile,
        fixtures_path=fixtures_path,
        out_dir=out_dir,
        progress=progress,
        force=force,
        relay=relay,
        metrics_stream=metrics_stream,
    )
    report = run_checks(database_url, [result_dir], fixtures_path=fixtures_path)
    write_integrity_json(report, result_dir)
    _say(format_report(report))
    # A list-append scenario's history against its profile's model: anomalies.json.
    isolation = check_isolation(result_dir)
    if isolation is not None:
        _say(isolation)
    if not completed:
        raise ScenarioIncomplete(f"{scenario} did not complete (see {result_dir / RESULT_FILE})")
    return result_dir


def run_watched_scenario(
    scenario: str,
    *,
    database_url: str,
    service: Any,
    profile: str,
    fixtures_path: Path,
    out_dir: Path,
    progress: bool = True,
    force: bool = False,
    relay: DbRelay | None = None,
    metrics_stream: MetricsStream | None = None,
) -> tuple[Path, bool]:
    """Reset to the baseline and run one scenario while watching the service.

    Under a profile with a fault schedule a nemesis injects the faults meanwhile (PostgreSQL
    faults on a server behind DATABASE_URL only with ``force``). Returns the result folder and
    whether the run completed; service.json (and faults.json) are written even when the
    runner raises.
    """
    reset_to_baseline(database_url)
    # VACUUM, ANALYZE and CHECKPOINT finish before the measured window, not inside it.
    hygiene: dict[str, Any] = {"before_window": prepare_measured_window(database_url)}
    result_dir = out_dir / scenario
    watch = ServiceWatch(service)
    sampler = AttributionSampler(
        database_url,
        _service_workers(service),
        metrics_url=f"{service.base_url}/metrics",
    )
    nemesis = nemesis_for(
        scenario,
        profile=profile,
        service=service,
        out_dir=out_dir,
        database_url=database_url,
        force=force,
        relay=relay,
    )
    cpu = cost_watch(database_url, getattr(service, "pid", None))
    feed = (
        metrics_stream.follow(scenario, result_dir / RAW_DIR, watched_counters(watch))
        if metrics_stream is not None
        else nullcontext()
    )
    started = time.time()
    try:
        with autovacuum_paused(database_url) as paused, watch, sampler, nemesis, cpu, feed:
            hygiene["autovacuum_paused"] = paused
            run = run_scenario(
                scenario,
                profile=profile,
                target_url=service.base_url,
                fixtures_path=fixtures_path,
                out_dir=out_dir,
                progress=progress,
            )
        result_dir = Path(run.result_dir)
    finally:
        result_dir.mkdir(parents=True, exist_ok=True)
        watch.write(result_dir)
        nemesis.write(result_dir)
        sampler.write(result_dir, measurement_hygiene=hygiene)
        write_scenario_cost(result_dir, cpu, started)
    return result_dir, bool(run.completed)


def _service_workers(service: Any) -> Callable[[], Sequence[int]]:
    """Return how to list the service's worker pids (none for a service we did not start)."""
    if getattr(service, "pid", None) is None or not hasattr(service, "worker_pids"):
        return list
    return service.worker_pids  # type: ignore[no-any-return]


class ScenarioIncomplete(RuntimeError):
    """The load generator crashed or timed out; its partial results were still checked."""


def _setup(database_url: str, fixtures_path: Path, held: ExitStack) -> str:
    """Take the database for this run (one load test at a time), then migrate and seed it."""
    held.enter_context(exclusive_database(database_url))
    return setup_database(fixtures_path=fixtures_path)


def needs_db_relay(profile: str, scenarios: Sequence[str]) -> bool:
    """Tell whether a scenario's fault schedule acts on the link to PostgreSQL (the relay)."""
    return any(
        spec.kind in RELAY_FAULTS
        for scenario in scenarios
        for spec in load_schedule(scenario, profile)
    )


def _relay(database_url: str, dimensions: ServiceDimensions, held: ExitStack) -> DbRelay:
    """Start the relay the service reaches PostgreSQL through, for the whole run."""
    return held.enter_context(DbRelay.for_url(database_url, added_rtt_ms=dimensions.db_latency_ms))


def _start(
    database_url: str,
    relay: DbRelay | None,
    run_dir: Path,
    dimensions: ServiceDimensions,
    workers: int,
) -> ServiceProcess:
    """Start the service with the run's dimensions, through the relay when there is one.

    The service inherits our environment, so TARGET_UNSAFE_DELAY_MS reaches it as set.
    """
    return start_service(
        relay.url_for(database_url) if relay is not None else database_url,
        strategy=dimensions.strategy,
        workers=workers,
        log_path=run_dir / SERVICE_LOG,
        env=dimensions.service_environment(),
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
