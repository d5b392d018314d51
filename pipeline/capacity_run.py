"""`invoke load-test.capacity`: find the highest arrival rate the service sustains, for real.

Seeds and serves as the pipeline does, then runs the capacity search (pipeline.capacity): each
step resets the data to the seeded baseline (a fresh budget of units), runs the scenario under
the open model at one rate while watching the service and sampling CPU, checks integrity, and
is judged over its measured window. The run folder gets capacity.json, one folder per step
under capacity/, and the usual report, whose scenario section is the step at the highest
sustainable rate.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from integrity import run_checks, write_integrity_json
from load_runner import SCENARIOS
from load_runner.profiles import ProfileError, ScenarioConfig, load_scenario_config
from load_runner.runner import launch
from local_postgres import LocalCluster
from pipeline.capacity import SearchPlan, SearchResult, StepOutcome, bracket, search
from pipeline.dimensions import ServiceDimensions, resolve_dimensions
from pipeline.exclusive import exclusive_database
from pipeline.exits import EXIT_FAILED, cleanly, described, fail
from pipeline.facts import collect_facts
from pipeline.plan import DEFAULT_WORKERS
from pipeline.run import RunLog
from pipeline.rundirs import new_run_dir, resolve_reports_root
from pipeline.service_process import start_service
from pipeline.setup import bring_up_database, setup_database
from reporting.capacity import (
    CAPACITY_KIND,
    CAPACITY_SCHEMA_VERSION,
    judge_step,
    limit_observations,
    measured_window,
    step_record,
    step_resources,
)
from reporting.report import write_report
from reporting.verdict import ScenarioEvidence
from results.collect import collect
from results.files import (
    CAPACITY_FILE,
    CAPACITY_STEPS_DIR,
    FIXTURES_FILE,
    INTEGRITY_FILE,
    MEASURED_FILE,
    OPERATIONS_FILE,
    RAW_DIR,
    RESULT_FILE,
    SERVICE_FILE,
    SERVICE_LOG,
    UNANSWERED_FILE,
)
from seeding import reset_to_baseline
from target.settings import DEFAULT_STRATEGY, DEFAULT_TRANSACTION_SHAPE
from watch.cpu_watch import (
    GENERATOR,
    POSTGRES,
    SERVICE,
    CpuWatch,
    own_children_except,
    postgres_finder,
    process_tree,
)
from watch.service_watch import ServiceWatch

# Reserve-then-release never runs an authorization dry, and every step starts from the seeded
# baseline anyway: the default scenario measures throughput, not a shrinking budget.
DEFAULT_SCENARIO = "high_throughput"
BASE_PROFILE = "open"  # the open-model profile: its processes, units, thresholds and start rate
DEFAULT_MAX_DURATION_S = 300.0
MIN_STEP_S = 10.0  # the issue: each step lasts at least 10 s after its warm-up
DEFAULT_WARMUP_S = 3.0
# Files of the published step copied beside the report (its result.json is the window's).
PUBLISHED_FILES = (INTEGRITY_FILE, SERVICE_FILE, OPERATIONS_FILE, UNANSWERED_FILE)
# Virtual users per step: enough to keep this many seconds of requests in flight (Little's
# law), so a slow answer does not hold back the schedule before the latency limit is broken.
IN_FLIGHT_FALLBACK_S = 0.5
MAX_USERS = 2000


@dataclass(frozen=True)
class CapacitySettings:
    """What the capacity run searches, and within what time."""

    scenario: str = DEFAULT_SCENARIO
    strategy: str = DEFAULT_STRATEGY
    workers: int = DEFAULT_WORKERS
    transaction_shape: str = DEFAULT_TRANSACTION_SHAPE
    isolation: str = ""  # empty: the strategy's own level
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    start_rate_rps: float | None = None  # None: the scenario's open profile rate
    step_s: float = MIN_STEP_S
    warmup_s: float = DEFAULT_WARMUP_S


@dataclass(frozen=True)
class CapacityOutcome:
    """Where the capacity run's files went and what it found."""

    run_dir: Path
    capacity: dict[str, Any]
    decision: str
    report_path: Path
    duration_s: float

    @property
    def found(self) -> bool:
        """Tell whether a sustainable rate was found with every integrity check holding."""
        return bool(
            self.capacity.get("sustainable")
            and self.capacity.get("integrity_ok")
            and self.capacity.get("stop_reason") != "fatal"
        )


# -- the command ---------------------------------------------------------------------------
def capacity_command(
    *,
    scenario: str = DEFAULT_SCENARIO,
    strategy: str = DEFAULT_STRATEGY,
    max_duration: str | float = DEFAULT_MAX_DURATION_S,
    start_rate: str | float | None = None,
    step_duration: str | float = MIN_STEP_S,
    workers: str | int = DEFAULT_WORKERS,
    reports_dir: str | None = None,
    transaction_shape: str = "",
    isolation: str = "",
) -> None:
    """Check the options, take the database, run the search; exit 0 when a rate was found."""
    strategy = strategy or DEFAULT_STRATEGY
    if scenario not in SCENARIOS:
        fail(f"--scenario must be one of {', '.join(SCENARIOS)}, not {scenario!r}")
    dimensions = resolve_dimensions(
        strategy=strategy,
        transaction_shape=transaction_shape,
        isolation=isolation,
        scenarios=[scenario],
    )
    settings = checked_settings(
        scenario=scenario,
        strategy=strategy,
        max_duration=max_duration,
        start_rate=start_rate,
        step_duration=step_duration,
        workers=workers,
    )
    settings = replace(
        settings, transaction_shape=dimensions.transaction_shape, isolation=dimensions.isolation
    )
    url, started_cluster = cleanly(bring_up_database)
    try:
        with ExitStack() as held:
            cleanly(lambda: held.enter_context(exclusive_database(url)))
            outcome = run_capacity(
                settings, database_url=url, reports_root=resolve_reports_root(reports_dir)
            )
    finally:
        if started_cluster:
            LocalCluster().down()
    print(outcome_line(outcome))
    raise SystemExit(0 if outcome.found else EXIT_FAILED)


def checked_settings(
    *,
    scenario: str,
    strategy: str,
    max_duration: str | float,
    start_rate: str | float | None,
    step_duration: str | float,
    workers: str | int,
) -> CapacitySettings:
    """Turn the command's options into settings, or exit 2 with one line saying what is wrong.

    The scenario and the strategy were checked with the other dimensions before.
    """
    worker_count = positive_number("--workers", workers)
    if worker_count != int(worker_count):
        fail(f"--workers must be a whole number, not {workers!r}")
    rate = None if start_rate in (None, "") else positive_number("--start-rate", start_rate)
    step_s = positive_number("--step-duration", step_duration)
    if step_s < MIN_STEP_S:
        fail(f"--step-duration must be at least {MIN_STEP_S:g} s, not {step_s:g}")
    duration_s = positive_number("--max-duration", max_duration)
    settings = CapacitySettings(
        scenario=scenario,
        strategy=strategy,
        workers=int(worker_count),
        max_duration_s=duration_s,
        start_rate_rps=rate,
        step_s=step_s,
    )
    one_step_s = plan_for(settings, start_rate_rps=1.0).nominal_step_s()
    if duration_s < one_step_s:
        fail(
            f"--max-duration {duration_s:g} s leaves no room for one step (about {one_step_s:g} s)"
        )
    try:
        base = load_scenario_config(scenario, BASE_PROFILE)
    except ProfileError as error:
        fail(str(error))
    if rate is None and base.arrival_rate_rps is None:
        fail(
            f"{scenario} has no arrival_rate_rps in its {BASE_PROFILE!r} profile: give --start-rate"
        )
    return settings


def positive_number(option: str, value: str | float | int) -> float:
    """Return ``value`` as a finite positive number, or exit 2 naming the option."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        fail(f"{option} must be a positive number, not {value!r}")
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        fail(f"{option} must be a positive number, not {value!r}")
    return number


def outcome_line(outcome: CapacityOutcome) -> str:
    """Return the one line the command prints: the rate found, its percentiles, the report."""
    capacity = outcome.capacity
    where = f"report at {outcome.report_path} ({outcome.duration_s:.0f} s)"
    context = f"{capacity['scenario']}, {capacity['strategy']}, {capacity['workers']} worker(s)"
    sustainable, failure = capacity.get("sustainable"), capacity.get("first_failure")
    broke = "; no step failed: the limit lies higher (give more --max-duration)"
    if failure:
        first = (failure.get("reasons") or ["?"])[0]
        broke = f"; first failure at {failure['rate_rps']:g} req/s ({first})"
    if not sustainable:
        return f"capacity: no sustainable rate found ({context}){broke}; {where}"
    latency = sustainable["latency_ms"]
    return (
        f"capacity: {sustainable['rate_rps']:g} req/s sustainable ({context}): "
        f"achieved {sustainable['achieved_rps']:g} req/s, p95 {_ms(latency.get('p95'))}, "
        f"p99 {_ms(latency.get('p99'))}{broke}; {where}"
    )


# -- the run -------------------------------------------------------------------------------
def run_capacity(
    settings: CapacitySettings,
    *,
    database_url: str,
    reports_root: Path | None = None,
    progress: bool = True,
) -> CapacityOutcome:
    """Seed, serve, search, check, report; the report and capacity.json are written in any case.

    The caller holds the database (pipeline.exclusive) for as long as this runs.
    """
    base = load_scenario_config(settings.scenario, BASE_PROFILE)
    start_rate = settings.start_rate_rps or base.arrival_rate_rps or 1.0
    plan = plan_for(settings, start_rate_rps=start_rate)
    run_dir = new_run_dir(resolve_reports_root(reports_root))
    log = RunLog(
        run_dir,
        kind="capacity",
        profile=BASE_PROFILE,
        **ServiceDimensions(
            settings.strategy, settings.transaction_shape, settings.isolation
        ).facts(),
        workers=settings.workers,
        scenarios=[settings.scenario],
        capacity={**asdict(settings), "start_rate_rps": start_rate},
        database="DATABASE_URL" if os.environ.get("DATABASE_URL") else "local cluster",
    )
    _say(f"run folder: {run_dir}")
    fixtures_path = run_dir / FIXTURES_FILE
    service = None
    stepper: CapacityStepper | None = None
    result: SearchResult | None = None
    started_at = _now()
    search_started = time.monotonic()
    try:
        with log.step("setup") as step:
            setup_database(fixtures_path=fixtures_path)
        if step.ok:
            with log.step("start_service") as step:
                dimensions = ServiceDimensions(
                    settings.strategy, settings.transaction_shape, settings.isolation
                )
                service = start_service(
                    database_url,
                    strategy=settings.strategy,
                    workers=settings.workers,
                    log_path=run_dir / SERVICE_LOG,
                    env=dimensions.service_environment(),
                )
        if service is None:
            log.fail(settings.scenario, "not run: an earlier step failed", settings.scenario)
        else:
            running = service

            def service_pids() -> set[int]:
                return process_tree(running.pid)

            database_pids = postgres_finder(database_url)
            groups = {
                SERVICE: service_pids,
                POSTGRES: database_pids,
                GENERATOR: own_children_except(service_pids, database_pids),
            }
            search_started = time.monotonic()
            with CpuWatch(groups) as cpu, log.step("capacity_search"):
                stepper = CapacityStepper(
                    settings=settings,
                    base=base,
                    database_url=database_url,
                    service=service,
                    fixtures_path=fixtures_path,
                    run_dir=run_dir,
                    cpu=cpu,
                    log=log,
                    progress=progress,
                )
                result = search(stepper.run, plan)
            publish_step(run_dir, settings.scenario, stepper.records, result)
        with log.step("collect_facts"):
            log.facts = collect_facts(database_url)
    finally:
        if service is not None:
            with log.step("stop_service"):
                log.meta["service_exit_code"] = service.stop()
        search_s = time.monotonic() - search_started
        document = capacity_document(
            settings,
            plan=plan,
            result=result,
            records=stepper.records if stepper else [],
            thresholds=asdict(base.thresholds),
            started_at=started_at,
            search_s=search_s,
        )
        (run_dir / CAPACITY_FILE).write_text(json.dumps(document, indent=2) + "\n")
        duration = log.finish()
        files = write_report(run_dir)
    _say(f"[report] {files.html_path}")
    return CapacityOutcome(run_dir, document, files.decision, files.html_path, duration)


def plan_for(settings: CapacitySettings, *, start_rate_rps: float) -> SearchPlan:
    """Return the search plan of a capacity run."""
    return SearchPlan(
        start_rate_rps=start_rate_rps,
        max_duration_s=settings.max_duration_s,
        step_s=settings.step_s,
        warmup_s=settings.warmup_s,
    )


def users_for(rate_rps: float, base: ScenarioConfig) -> int:
    """Return the virtual users a step needs: enough for the latency limit's worth in flight."""
    limit_ms = base.thresholds.p99_ms or base.thresholds.p95_ms
    in_flight_s = limit_ms / 1000 if limit_ms else IN_FLIGHT_FALLBACK_S
    wanted = min(max(base.users, math.ceil(rate_rps * in_flight_s)), MAX_USERS)
    return math.ceil(wanted / base.processes) * base.processes


@dataclass
class CapacityStepper:
    """Run one step of the search: reset, run watched, check, judge; keep what it recorded."""

    settings: CapacitySettings
    base: ScenarioConfig
    database_url: str
    service: Any
    fixtures_path: Path
    run_dir: Path
    cpu: CpuWatch
    log: RunLog
    progress: bool = True

    def __post_init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def run(self, rate_rps: float) -> StepOutcome:
        """Run the scenario at ``rate_rps``; an error in the step is a fatal failure."""
        index = len(self.records) + 1
        name = f"step-{index:02d}-{rate_rps:g}rps"
        users = users_for(rate_rps, self.base)
        _say(f"[capacity] step {index}: {rate_rps:g} req/s offered, {users} virtual users")
        try:
            record = self._measure(index, name, rate_rps, users)
        except Exception as error:
            message = described(error)
            record = {
                "index": index,
                "rate_rps": rate_rps,
                "users": users,
                "passed": False,
                "fatal": True,
                "reasons": [f"the step failed: {message}"],
                "result_dir": f"{CAPACITY_STEPS_DIR}/{name}",
            }
        self.records.append(record)
        if record["fatal"]:
            self.log.fail(f"capacity {name}", "; ".join(record["reasons"]))
        _say(step_line(record))
        return StepOutcome(
            rate_rps, bool(record["passed"]), bool(record["fatal"]), tuple(record["reasons"])
        )

    def _measure(self, index: int, name: str, rate_rps: float, users: int) -> dict[str, Any]:
        settings = self.settings
        config = replace(
            self.base,
            arrival_rate_rps=rate_rps,
            users=users,
            duration_s=settings.warmup_s + settings.step_s,
            ramp_up_s=0.0,
        )
        out_dir = self.run_dir / CAPACITY_STEPS_DIR / name
        result_dir = out_dir / settings.scenario
        # A fresh budget of units: every step starts from the seeded counters, ledger empty.
        reset_to_baseline(self.database_url)
        watch = ServiceWatch(self.service)
        try:
            with watch:
                run = launch(
                    config,
                    target_url=self.service.base_url,
                    fixtures_path=self.fixtures_path,
                    out_dir=out_dir,
                    progress=self.progress,
                )
        finally:
            result_dir.mkdir(parents=True, exist_ok=True)
            watch.write(result_dir)
        # Before the next step's reset empties the ledger: the checks need it as it is now.
        report = run_checks(self.database_url, [result_dir], fixtures_path=self.fixtures_path)
        write_integrity_json(report, result_dir)
        integrity = json.loads((result_dir / INTEGRITY_FILE).read_text())
        collected = collect(result_dir / RAW_DIR)
        window = measured_window(
            run.result, collected.records, warmup_s=settings.warmup_s, step_s=settings.step_s
        )
        (result_dir / MEASURED_FILE).write_text(json.dumps(window, indent=2) + "\n")
        started = collected.run_start_epoch or time.time()
        measured_from = started + settings.warmup_s
        cores = self.cpu.cores_used(measured_from, measured_from + settings.step_s)
        service = watch.evidence()
        judgement = judge_step(
            ScenarioEvidence(settings.scenario, result=window, integrity=integrity, service=service)
        )
        resources = step_resources(
            cores,
            service,
            achieved_rps=float(window["totals"]["throughput_rps"]),
            requests=int((run.result.get("totals") or {}).get("requests") or 0),
        )
        return step_record(
            index=index,
            rate_rps=rate_rps,
            users=users,
            judgement=judgement,
            window=window,
            integrity=integrity,
            resources=resources,
            result_dir=str(result_dir.relative_to(self.run_dir)),
        )


def publish_step(
    run_dir: Path, scenario: str, records: list[dict[str, Any]], result: SearchResult | None
) -> dict[str, Any] | None:
    """Copy the step the report shows beside it: the sustainable one, else the lowest tried.

    Its result.json is the measured window, so the report judges what the search judged.
    """
    if not records or result is None:
        return None
    good, _ = bracket(result.steps)
    measured = [record for record in records if (run_dir / record["result_dir"]).is_dir()]
    if not measured:
        return None
    chosen = next(
        (record for record in measured if record["rate_rps"] == good),
        min(measured, key=lambda record: record["rate_rps"]),
    )
    source, target = run_dir / chosen["result_dir"], run_dir / scenario
    target.mkdir(exist_ok=True)
    for name in PUBLISHED_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
    if (source / MEASURED_FILE).exists():
        shutil.copy2(source / MEASURED_FILE, target / RESULT_FILE)
    return chosen


def capacity_document(
    settings: CapacitySettings,
    *,
    plan: SearchPlan,
    result: SearchResult | None,
    records: list[dict[str, Any]],
    thresholds: dict[str, float | None],
    started_at: str,
    search_s: float,
) -> dict[str, Any]:
    """Return capacity.json: the settings, every step, the rate found and what limited it."""
    cpu_count = os.cpu_count() or 1
    good, bad = bracket(result.steps) if result else (None, None)
    sustainable = next((r for r in records if r["rate_rps"] == good and r["passed"]), None)
    failure = next((r for r in records if r["rate_rps"] == bad and not r["passed"]), None)

    def observations(record: dict[str, Any] | None) -> list[str]:
        if record is None or "resources" not in record:
            return []
        return limit_observations(
            record["resources"],
            service_workers=settings.workers,
            cpu_count=cpu_count,
            generator_bottleneck=bool((record.get("generator") or {}).get("bottleneck")),
        )

    return {
        "schema_version": CAPACITY_SCHEMA_VERSION,
        "kind": CAPACITY_KIND,
        "scenario": settings.scenario,
        "strategy": settings.strategy,
        "workers": settings.workers,
        "profile": BASE_PROFILE,
        "cpu_count": cpu_count,
        "settings": {
            "start_rate_rps": plan.start_rate_rps,
            "max_duration_s": plan.max_duration_s,
            "step_s": plan.step_s,
            "warmup_s": plan.warmup_s,
            "resolution": plan.resolution,
        },
        "thresholds": thresholds,
        "p95_threshold_ms": thresholds.get("p95_ms"),
        "started_at": started_at,
        "search_duration_s": round(search_s, 3),
        "stop_reason": result.stop_reason if result else "not_run",
        "stop_detail": result.stop_detail if result else "the search did not start",
        "sustainable": sustainable,
        "first_failure": failure,
        "limit": {
            "at_first_failure": observations(failure),
            "at_sustainable": observations(sustainable),
        },
        "integrity_ok": bool(records) and all(r.get("integrity_ok") for r in records),
        "steps": records,
    }


def step_line(record: dict[str, Any]) -> str:
    """Return the one line printed after each step."""
    state = "held" if record["passed"] else ("FATAL" if record["fatal"] else "failed")
    head = f"[capacity] step {record['index']}: {record['rate_rps']:g} req/s {state}"
    if "latency_ms" not in record:
        return f"{head}: {'; '.join(record['reasons'])}"
    latency, resources = record["latency_ms"], record["resources"]
    figures = (
        f"achieved {record['achieved_rps']:g} req/s, p95 {_ms(latency.get('p95'))}, "
        f"p99 {_ms(latency.get('p99'))}, service CPU {_cores(resources.get('service_cpu_cores'))}, "
        f"PostgreSQL {_cores(resources.get('postgres_cpu_cores'))}"
    )
    why = f" ({record['reasons'][0]})" if record["reasons"] else ""
    return f"{head}: {figures}{why}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _cores(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} cores"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


__all__ = [
    "CAPACITY_FILE",
    "CapacityOutcome",
    "CapacitySettings",
    "capacity_command",
    "run_capacity",
]
