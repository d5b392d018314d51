"""Command-line entry points behind `invoke load-test.*`: one clear line, and the exit code.

Exit codes: 0 success (and, for `all`, a GO verdict); 1 the checks or the verdict failed;
2 bad input or an environment the tools cannot work in (nothing was changed).
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path

import psycopg

from integrity import IntegrityInputError, format_report, run_checks, write_integrity_json
from local_postgres import database_url
from molotov_scenarios.fixtures import FixturesError, load_fixtures
from pipeline.baseline import gate_against_baseline, resolve_baseline
from pipeline.compare_command import comparison_margins
from pipeline.exclusive import exclusive_database
from pipeline.exits import EXIT_FAILED, cleanly, fail
from pipeline.metrics_stream import finish_stream, stream_for
from pipeline.plan import RunPlan, ScenarioPlan, resolve_plan
from pipeline.run import RunLog, StartedRun, run_plan, run_watched_scenario
from pipeline.rundirs import (
    RunDirError,
    latest_result_dir,
    latest_run_dir,
    new_run_dir,
    resolve_reports_root,
)
from pipeline.service_process import RemoteService, ServiceProcess, check_reachable, start_service
from pipeline.setup import resolve_fixtures_path, setup_database
from reporting.compare_inputs import CompareInputError
from reporting.records import ReportInputError
from reporting.report import write_junit, write_report
from results.documents import SummaryDocument, Totals
from results.files import FIXTURES_FILE, RESULT_FILE, SERVICE_LOG
from results.reader import read_checked_object, read_result

GO = "GO"
BASELINE_ENV = "LOADTEST_BASELINE"  # --baseline when the option is not given
REGRESSION_GATE_ENV = "LOADTEST_REGRESSION_GATE"  # --regression-gate likewise (default warn)
JUNIT_ENV = "LOADTEST_JUNIT"  # --junit likewise
TARGET_NEEDS_DATABASE = (
    "--target-url needs DATABASE_URL pointing at that service's database, "
    "so the checks read the right one"
)


def all_command(
    *,
    profile: str = "",
    strategy: str = "",
    reports_dir: str | None = None,
    workers: int | str | None = None,
    force: bool = False,
    prometheus_remote_write: str | None = None,
    baseline: str | None = None,
    regression_gate: str | None = None,
    tolerance: str | float | None = None,
    transaction_shape: str = "",
    isolation: str = "",
    db_latency_ms: str | float = 0.0,
    scenarios: str = "",
    junit: str | None = None,
) -> None:
    """Run the whole pipeline; print the verdict and the report's path; exit 0 only on GO.

    The options resolve into the run's plan first (pipeline/plan.py: one line and exit 2 for a
    bad one). ``workers`` defaults to the profile's `[service.<profile>] workers`, else one.
    With ``baseline`` (a run folder or `latest-go`) the run is compared with it afterwards and
    a regression gates the verdict (pipeline/baseline.py).
    """
    plan = resolve_plan(
        profile=profile,
        scenarios=scenarios,
        strategy=strategy,
        transaction_shape=transaction_shape,
        isolation=isolation,
        db_latency_ms=db_latency_ms,
        workers=workers,
        reports_root=reports_dir,
        force=force,
    )
    # CI passes them by environment, so its step runs the README's command unchanged.
    baseline = baseline or os.environ.get(BASELINE_ENV) or None
    regression_gate = regression_gate or os.environ.get(REGRESSION_GATE_ENV) or "warn"
    junit = junit or os.environ.get(JUNIT_ENV) or None
    baseline_dir = _baseline_or_exit(baseline, plan, regression_gate) if baseline else None
    margins = comparison_margins(tolerance, plan.profiles) if baseline else None
    stream = stream_for(prometheus_remote_write)
    outcome = run_plan(plan, metrics_stream=stream)
    if baseline_dir is not None and margins is not None:
        outcome = gate_against_baseline(
            outcome, baseline_dir, gate=regression_gate, margins=margins
        )
    if junit:
        # After the baseline's gate: the XML tells the final verdict.
        summary = read_checked_object(outcome.summary_path, SummaryDocument)
        print(f"[junit] {write_junit(summary, Path(junit))}")
    if stream is not None:  # after the baseline's gate: the final verdict
        print(finish_stream(stream, outcome.decision, outcome.run_dir), file=sys.stderr)
    for reason in outcome.reasons:
        print(f"  - {reason}", file=sys.stderr)
    print(f"{outcome.decision}: report at {outcome.report_path} ({outcome.duration_s:.0f} s)")
    raise SystemExit(0 if outcome.decision == GO else EXIT_FAILED)


def _baseline_or_exit(baseline: str, plan: RunPlan, gate: str) -> Path:
    """Resolve --baseline before anything starts: bad input gets one line and exit 2."""
    try:
        return resolve_baseline(
            baseline,
            reports_root=plan.reports_root,
            profile=plan.profile,
            strategy=plan.strategy,
            gate=gate,
            transaction_shape=plan.dimensions.transaction_shape,
        )
    except CompareInputError as error:
        fail(str(error))


def scenario_command(
    scenario: str,
    *,
    profile: str = "",
    target_url: str | None = None,
    out: str | None = None,
    force: bool = False,
    strategy: str = "",
    transaction_shape: str = "",
    isolation: str = "",
) -> None:
    """Run one scenario from the seeded baseline against our own service (or ``target_url``)."""
    plan = resolve_plan(
        profile=profile,
        scenarios=[scenario],
        strategy=strategy,
        transaction_shape=transaction_shape,
        isolation=isolation,
        run_dir=out,
        force=force,
        target_url=target_url,
    )
    scenario_plan = plan.scenario(scenario)
    if plan.target_url:
        # Before touching the database: bad input changes nothing. The reset and the checks
        # must reach the target's own database, never our local one.
        if not os.environ.get("DATABASE_URL"):
            fail(TARGET_NEEDS_DATABASE)
        cleanly(lambda: check_reachable(plan.target_url))
    url = cleanly(database_url)
    with ExitStack() as held:
        cleanly(lambda: held.enter_context(exclusive_database(url)))
        fixtures_path = default_fixtures_path()
        if not cleanly(lambda: is_seeded(url, fixtures_path)):
            print("the database is not seeded yet: setting it up first", file=sys.stderr)
            url = cleanly(lambda: setup_database(fixtures_path=fixtures_path))
        # Before the reset and the service: stale tokens would make the whole run 401s.
        _check_fixtures_fresh(fixtures_path, scenario_plan)
        out_dir = plan.run_dir or new_run_dir(plan.reports_root)
        out_dir.mkdir(parents=True, exist_ok=True)
        service = (
            RemoteService(plan.target_url)
            if plan.target_url
            else cleanly(lambda: _start(url, out_dir, plan))
        )
        log = RunLog(
            out_dir, profile=plan.profile, scenarios=[scenario], target_url=service.base_url
        )
        started = StartedRun(
            database_url=url, service=service, fixtures_path=fixtures_path, out_dir=out_dir
        )
        try:
            with log.step(scenario, scenario=scenario):
                result_dir, completed = run_watched_scenario(scenario_plan, plan, started)
        finally:
            if not plan.target_url:
                service.stop()
            log.finish()
    if not log.steps[-1].ok:
        fail(f"{scenario} failed: {log.steps[-1].error}", EXIT_FAILED)
    print(_result_line(result_dir))
    if not completed:
        fail(f"{scenario} did not complete: see {result_dir / RESULT_FILE}", EXIT_FAILED)


def verify_command(*, results: str | None = None) -> None:
    """Check the database against the last scenario's results; exit 1 on any violation."""
    result_dirs = cleanly(lambda: resolve_result_dirs(results))
    fixtures_path = fixtures_for(result_dirs[0])
    url = cleanly(database_url)
    try:
        report = cleanly(lambda: run_checks(url, result_dirs, fixtures_path=fixtures_path))
    except IntegrityInputError as error:
        fail(str(error))
    for result_dir in result_dirs:
        write_integrity_json(report, result_dir)
    print(format_report(report))
    if not report.ok:
        raise SystemExit(EXIT_FAILED)


def report_command(*, run_dir: str | None = None, junit: str | None = None) -> None:
    """Write report.html, summary.json and PERFORMANCE_TEST_RESULTS.md for a run folder.

    With ``junit``, its JUnit XML goes to that path too.
    """
    folder = Path(run_dir) if run_dir else cleanly(lambda: latest_run_dir(resolve_reports_root()))
    try:
        files = write_report(folder, junit_path=Path(junit) if junit else None)
    except ReportInputError as error:
        fail(str(error))
    print(f"{files.decision}: report at {files.html_path}")


def resolve_result_dirs(results: str | None) -> list[Path]:
    """Turn --run-dir (comma-separated folders, or a run folder, or nothing) into result folders."""
    if not results:
        return [latest_result_dir(latest_run_dir(resolve_reports_root()))]
    folders = []
    for part in filter(None, (p.strip() for p in results.split(","))):
        path = Path(part).resolve()
        if not path.is_dir():
            raise RunDirError(f"results folder {path} does not exist")
        # A run folder: the database holds the ledger of its last scenario only.
        folders.append(path if (path / RESULT_FILE).exists() else latest_result_dir(path))
    if not folders:
        raise RunDirError("--run-dir names no folder")
    return folders


def fixtures_for(result_dir: Path) -> Path:
    """Return the fixtures a result was produced with: its run folder's copy, else the default."""
    own = result_dir.parent / FIXTURES_FILE
    return own if own.exists() else default_fixtures_path()


def default_fixtures_path() -> Path:
    """Return $LOADTEST_FIXTURES_PATH, else the fixtures file seeding writes by default."""
    # The seed and setup commands resolve it the same way, so they write what we read here.
    return resolve_fixtures_path()


def is_seeded(database_url: str, fixtures_path: Path) -> bool:
    """Tell whether the database holds the seed that ``fixtures_path`` describes."""
    try:
        fixtures = json.loads(fixtures_path.read_text(encoding="utf-8"))
        sample = fixtures["pools"]["high_contention"][0]["id"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        if conn.execute("SELECT to_regclass('seed_baseline')").fetchone()[0] is None:
            return False
        row = conn.execute(
            "SELECT 1 FROM seed_baseline WHERE authorization_id = %s", (sample,)
        ).fetchone()
    return row is not None


def _check_fixtures_fresh(fixtures_path: Path, scenario: ScenarioPlan) -> None:
    """Exit 2 with one line unless the fixtures' tokens outlast the scenario's run."""
    try:
        load_fixtures(fixtures_path, valid_for_s=scenario.config.duration_s)
    except FixturesError as error:
        fail(str(error))


def _start(database_url: str, out_dir: Path, plan: RunPlan) -> ServiceProcess:
    return start_service(
        database_url,
        strategy=plan.strategy,
        log_path=out_dir / SERVICE_LOG,
        env=plan.dimensions.service_environment(),
    )


def _result_line(result_dir: Path) -> str:
    result = read_result(result_dir / RESULT_FILE)
    totals = result.totals or Totals(requests=0, errors=0, error_rate=0.0)
    p95 = result.latency_ms.p95 if result.latency_ms else None
    p95_text = "n/a" if p95 is None else f"{p95:.1f} ms"
    return (
        f"{result.scenario}: {totals.requests} requests, "
        f"error rate {100 * totals.error_rate:.2f} %, p95 {p95_text} → {result_dir}"
    )
