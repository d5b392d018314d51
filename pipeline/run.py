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

from faults.nemesis import nemesis_for
from faults.relay import DbRelay
from integrity import format_report, run_checks, write_integrity_json
from load_runner.runner import launch
from local_postgres import LocalCluster
from pipeline.dimensions import ServiceDimensions
from pipeline.exclusive import exclusive_database
from pipeline.exits import described
from pipeline.facts import collect_facts
from pipeline.isolation_check import check_isolation
from pipeline.metrics_stream import MetricsStream, watched_counters
from pipeline.plan import RunPlan, ScenarioPlan, resolve_plan
from pipeline.rundirs import git_state, new_run_dir
from pipeline.service_process import ServiceProcess, start_service
from pipeline.setup import bring_up_database, setup_database
from reporting.live_metrics import run_labels
from reporting.report import write_report
from results.documents import SCHEMA_VERSION  # the version the reader checks
from results.files import ERRORS_LOG, FIXTURES_FILE, RAW_DIR, RESULT_FILE, RUN_FILE, SERVICE_LOG
from seeding import reset_to_baseline
from watch.attribution_sampler import AttributionSampler
from watch.quiet_database import autovacuum_paused, prepare_measured_window
from watch.scenario_cost import cost_watch, write_scenario_cost
from watch.service_watch import ServiceWatch


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
    profile: str = "",
    strategy: str = "",
    reports_root: Path | None = None,
    workers: int | None = None,
    scenarios: Sequence[str] | None = None,
    progress: bool = True,
    force: bool = False,
    dimensions: ServiceDimensions | None = None,
    metrics_stream: MetricsStream | None = None,
) -> RunOutcome:
    """Resolve these options into a plan and run it: the Python API of `load-test.all`.

    Empty options take the plan's defaults (pipeline/plan.py); ``dimensions`` default to
    ``strategy``'s own.
    """
    plan = resolve_plan(
        profile=profile,
        scenarios=tuple(scenarios or ()),
        strategy=strategy,
        workers=workers,
        dimensions=dimensions,
        reports_root=reports_root,
        force=force,
    )
    return run_plan(plan, progress=progress, metrics_stream=metrics_stream)


def run_plan(
    plan: RunPlan, *, progress: bool = True, metrics_stream: MetricsStream | None = None
) -> RunOutcome:
    """Set up, serve, run each scenario with its checks, stop, report; the report always.

    ``metrics_stream`` feeds each scenario's series to Prometheus as it runs; the caller
    sends the verdict once it is final.
    """
    run_dir = plan.run_dir or new_run_dir(plan.reports_root)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(
        run_dir,
        profile=plan.profile,
        **plan.dimensions.facts(),
        workers=plan.workers,
        scenarios=list(plan.scenario_names),
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
                relay = _relay(database_url, plan.dimensions, held) if plan.needs_db_relay else None
                service = _start(database_url, relay, run_dir, plan)
        if service is not None and database_url:
            started = StartedRun(
                database_url=database_url,
                service=service,
                fixtures_path=run_dir / FIXTURES_FILE,
                out_dir=run_dir,
                relay=relay,
                progress=progress,
                metrics_stream=metrics_stream,
            )
            for scenario in plan.scenarios:
                if not service.is_alive():
                    log.fail(scenario.name, "the service was not running", scenario=scenario.name)
                    continue
                with log.step(scenario.name, scenario=scenario.name):
                    run_scenario_with_checks(scenario, plan, started)
        else:
            for name in plan.scenario_names:
                log.fail(name, "not run: an earlier step failed", scenario=name)
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


@dataclass(frozen=True)
class StartedRun:
    """What a run has started for its scenarios: the database, the service, the relay."""

    database_url: str
    service: Any  # ServiceProcess, or a RemoteService we did not start
    fixtures_path: Path
    out_dir: Path
    relay: DbRelay | None = None
    progress: bool = True
    metrics_stream: MetricsStream | None = None


def run_scenario_with_checks(scenario: ScenarioPlan, plan: RunPlan, started: StartedRun) -> Path:
    """Run one scenario from the baseline under watch, then check integrity; return its folder."""
    result_dir, completed = run_watched_scenario(scenario, plan, started)
    report = run_checks(started.database_url, [result_dir], fixtures_path=started.fixtures_path)
    write_integrity_json(report, result_dir)
    _say(format_report(report))
    # A list-append scenario's history against its profile's model: anomalies.json.
    isolation = check_isolation(result_dir)
    if isolation is not None:
        _say(isolation)
    if not completed:
        raise ScenarioIncomplete(
            f"{scenario.name} did not complete (see {result_dir / RESULT_FILE})"
        )
    return result_dir


def run_watched_scenario(
    scenario: ScenarioPlan, plan: RunPlan, started: StartedRun
) -> tuple[Path, bool]:
    """Reset to the baseline and run one scenario while watching the service.

    Under a profile with a fault schedule a nemesis injects the faults meanwhile (PostgreSQL
    faults on a server behind DATABASE_URL only with the plan's ``force``). Returns the result
    folder and whether the run completed; service.json (and faults.json) are written even when
    the runner raises.
    """
    database_url, service, out_dir = started.database_url, started.service, started.out_dir
    reset_to_baseline(database_url)
    # VACUUM, ANALYZE and CHECKPOINT finish before the measured window, not inside it.
    hygiene: dict[str, Any] = {"before_window": prepare_measured_window(database_url)}
    result_dir = out_dir / scenario.name
    watch = ServiceWatch(service)
    sampler = AttributionSampler(
        database_url,
        _service_workers(service),
        metrics_url=f"{service.base_url}/metrics",
    )
    nemesis = nemesis_for(
        scenario.name,
        plan.profile,
        service=service,
        out_dir=out_dir,
        database_url=database_url,
        force=plan.force,
        relay=started.relay,
        schedule=scenario.faults,
    )
    cpu = cost_watch(database_url, getattr(service, "pid", None))
    stream = started.metrics_stream
    feed = (
        stream.follow(scenario.name, result_dir / RAW_DIR, watched_counters(watch))
        if stream is not None
        else nullcontext()
    )
    started_at = time.time()
    try:
        with autovacuum_paused(database_url) as paused, watch, sampler, nemesis, cpu, feed:
            hygiene["autovacuum_paused"] = paused
            run = launch(
                scenario.config,
                target_url=service.base_url,
                fixtures_path=started.fixtures_path,
                out_dir=out_dir,
                progress=started.progress,
            )
        result_dir = Path(run.result_dir)
    finally:
        result_dir.mkdir(parents=True, exist_ok=True)
        watch.write(result_dir)
        nemesis.write(result_dir)
        sampler.write(result_dir, measurement_hygiene=hygiene)
        write_scenario_cost(result_dir, cpu, started_at)
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


def _relay(database_url: str, dimensions: ServiceDimensions, held: ExitStack) -> DbRelay:
    """Start the relay the service reaches PostgreSQL through, for the whole run."""
    return held.enter_context(DbRelay.for_url(database_url, added_rtt_ms=dimensions.db_latency_ms))


def _start(
    database_url: str, relay: DbRelay | None, run_dir: Path, plan: RunPlan
) -> ServiceProcess:
    """Start the service with the run's dimensions, through the relay when there is one.

    The service inherits our environment, so TARGET_UNSAFE_DELAY_MS reaches it as set.
    """
    return start_service(
        relay.url_for(database_url) if relay is not None else database_url,
        strategy=plan.strategy,
        workers=plan.workers,
        log_path=run_dir / SERVICE_LOG,
        env=plan.dimensions.service_environment(),
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
