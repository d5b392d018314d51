"""Run one scenario: Molotov as a bounded subprocess, then merge, summarise and write results."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import importlib.util
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import molotov_scenarios
from load_runner.profiles import SCENARIOS, ProfileError, ScenarioConfig, load_scenario_config
from load_runner.progress import ProgressDisplay
from molotov_scenarios.environment import ENVIRONMENT_VARIABLE, ScenarioEnvironment
from molotov_scenarios.fixtures import FixturesError, load_fixtures
from results.collect import Collected, collect, read_progress
from results.documents import SCHEMA_VERSION  # the version the reader checks
from results.files import HISTORY_FILE, OPERATIONS_FILE, RAW_DIR, RESULT_FILE, UNANSWERED_FILE
from results.history import history_lines, logical_operations, summarise_operations
from results.list_history import read_transaction_values
from results.organizations import (
    OrganizationIndex,
    read_organization_index,
    summarise_by_organization,
)
from results.record_format import unanswered_requests
from results.record_table import RecordTable
from results.records import successful_operations
from results.stalls import latency_evidence
from results.summary import in_flight_window_s, summarise_generator, summarise_requests
from target.settings import keep_alive_s

OPERATIONS_HEADER = ("transaction_id", "authorization_id", "kind", "units")
UNANSWERED_HEADER = ("request_id", "authorization_id", "kind", "units")
SCENARIO_DIR = Path(molotov_scenarios.__file__).parent
MOLOTOV_MAIN = "import sys; from molotov.run import main; sys.exit(main())"
REACHABILITY_TIMEOUT_S = 5.0
# Molotov's own per-worker limit (-d) is only a backstop: the scenarios stop at the deadline.
MOLOTOV_DURATION_BACKSTOP_S = 5
# Startup (imports, fork), the last calls in flight and the files written at the end.
TIMEOUT_MARGIN_S = 60.0
TIMEOUT_FACTOR = 1.1
POLL_INTERVAL_S = 0.5
UVLOOP = importlib.util.find_spec("uvloop") is not None
STOP_GRACE_S = 5.0
STDERR_TAIL_CHARS = 2000


class LoadRunError(ValueError):
    """Bad input to a run (unknown scenario or profile, missing fixtures, unreachable target)."""


@dataclass(frozen=True)
class ScenarioRun:
    """A finished (or failed) scenario run and where its results are."""

    scenario: str
    result_dir: Path
    result: dict[str, Any]
    completed: bool


@dataclass(frozen=True)
class MolotovOutcome:
    """How the Molotov subprocess ended."""

    exit_code: int | None
    timed_out: bool
    wall_s: float
    cpu_seconds: float
    stderr_tail: str


def run_scenario(
    scenario: str,
    *,
    profile: str,
    target_url: str,
    fixtures_path: Path,
    out_dir: Path,
    config_path: Path | None = None,
    progress: bool = True,
    arrival_rate: float | None = None,
) -> ScenarioRun:
    """Run a scenario against `target_url` and write `<out_dir>/<scenario>/` results.

    Bad input raises LoadRunError before anything is written. A run that crashes or times out
    still writes its results, marked as such in `run`, and comes back with completed=False.
    """
    config = _checked_config(scenario, profile, config_path, arrival_rate)
    return launch(
        config,
        target_url=target_url,
        fixtures_path=fixtures_path,
        out_dir=out_dir,
        progress=progress,
    )


def launch(
    config: ScenarioConfig,
    *,
    target_url: str,
    fixtures_path: Path,
    out_dir: Path,
    progress: bool = True,
    sharding: Mapping[str, Any] | None = None,
    starts_in_s: float = 0.0,
) -> ScenarioRun:
    """Check the fixtures and the target, then run a checked configuration: the one way in.

    A whole run and a shard (``sharding``, with its start ``starts_in_s`` from now) both start
    here. Bad input raises LoadRunError before anything is written.
    """
    try:
        # Expired tokens (or tokens expiring mid-run) would make every request a 401.
        load_fixtures(fixtures_path, valid_for_s=config.duration_s + max(starts_in_s, 0.0))
    except FixturesError as error:
        raise LoadRunError(str(error)) from None
    return execute(
        config,
        scenario_module=SCENARIO_DIR / f"{config.scenario}.py",
        target_url=check_target(target_url),
        fixtures_path=fixtures_path,
        out_dir=out_dir,
        progress=progress,
        sharding=sharding,
    )


def execute(
    config: ScenarioConfig,
    *,
    scenario_module: Path,
    target_url: str,
    fixtures_path: Path,
    out_dir: Path,
    progress: bool = True,
    sharding: Mapping[str, Any] | None = None,
) -> ScenarioRun:
    """Run a checked configuration through Molotov and write its results.

    ``sharding``: the ScenarioEnvironment's shard fields (load_runner/sharding.py), and a
    `shard` section for result.json under the key "result"; None on a single host.
    """
    sharding = dict(sharding or {})
    shard_section = sharding.pop("result", None)
    result_dir = out_dir / config.scenario
    raw_dir = result_dir / RAW_DIR
    # Records left by an earlier run in the same place would be merged into this one.
    shutil.rmtree(raw_dir, ignore_errors=True)
    raw_dir.mkdir(parents=True)
    environment = ScenarioEnvironment(
        scenario=config.scenario,
        target_url=target_url,
        fixtures_path=str(fixtures_path.resolve()),
        record_dir=str(raw_dir.resolve()),
        duration_s=config.duration_s,
        think_time_s=config.think_time_s,
        units_per_request=config.units_per_request,
        users=config.users,
        arrival_rate_rps=config.arrival_rate_rps,
        # The service reads the same setting from the same environment (target.settings).
        server_keep_alive_s=keep_alive_s(os.environ),
        **sharding,
    )
    started_at = time.time()
    outcome = _run_molotov(config, scenario_module, environment, raw_dir, progress)
    collected = collect(raw_dir)
    result = build_result(
        config,
        target_url,
        outcome,
        collected,
        started_at,
        organizations=read_organization_index(fixtures_path),
    )
    if shard_section is not None:
        result["shard"] = {**shard_section, "cpu_count": os.cpu_count() or 1}
    write_results(result_dir, result, collected)
    completed = not (result["run"]["crashed"] or result["run"]["timed_out"])
    return ScenarioRun(config.scenario, result_dir, result, completed)


def molotov_command(
    config: ScenarioConfig, scenario_module: Path, *, wait_s: float = 0.0
) -> list[str]:
    """Return the Molotov command line for a configuration.

    ``wait_s``: how long the workers wait for a shared start time before their first call
    (Molotov's duration counts it).
    """
    return [
        sys.executable,
        "-c",
        MOLOTOV_MAIN,
        str(scenario_module),
        "--workers",
        str(config.users_per_process),
        "--processes",
        str(config.processes),
        "--duration",
        str(math.ceil(config.duration_s + wait_s) + MOLOTOV_DURATION_BACKSTOP_S),
        "--ramp-up",
        str(config.ramp_up_s),
        # Quiet: the runner draws its own progress line; and no -x: a failed request must not
        # stop the run, the scenarios record it.
        "--quiet",
        # uvloop's event loop: about a third less CPU per request in the generator.
        *(["--uvloop"] if UVLOOP else []),
    ]


def build_result(
    config: ScenarioConfig,
    target_url: str,
    outcome: MolotovOutcome,
    collected: Collected,
    launched_at: float,
    organizations: OrganizationIndex | None = None,
) -> dict[str, Any]:
    """Assemble result.json (results.documents.ResultDocument) from the configuration, the
    process outcome and the records.

    ``organizations``: who owns each authorization (the run's fixtures), for the figures per
    organization; without it `by_organization` is null.
    """
    records = RecordTable.from_records(collected.records)
    start = collected.run_start_epoch or launched_at
    ended = float(records.completed_s.max()) if len(records) else None
    end = launched_at + outcome.wall_s if ended is None else start + ended
    duration_s = max(end - start, 0.0)
    reasons = _crash_reasons(config, outcome, collected)
    # Throughput over the time requests were in flight: the run's wall time also counts
    # Molotov forking its processes, which on a 5 s smoke run is a large share.
    summary = summarise_requests(
        records,
        elapsed_s=duration_s,
        window_s=in_flight_window_s(records),
        expected_codes=config.expected_error_codes,
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "scenario": config.scenario,
        "profile": config.profile,
        "load_model": config.load_model,
        "target_url": target_url,
        "started_at": _iso(start),
        "ended_at": _iso(end),
        "duration_s": round(duration_s, 3),
        "config": config.to_result(),
        "open_model": None
        if config.arrival_rate_rps is None
        else {
            "arrival_rate_rps": config.arrival_rate_rps,
            "scheduled_requests": collected.scheduled_requests,
            "sent_requests": len(records),
        },
        "run": {
            "exit_code": outcome.exit_code,
            "crashed": bool(reasons),
            "timed_out": outcome.timed_out,
            "stderr_tail": outcome.stderr_tail,
            "reasons": reasons,
        },
        **summary,
        "operations": summarise_operations(logical_operations(records)),
        "by_organization": None
        if organizations is None
        else summarise_by_organization(records, organizations),
        # Each latency threshold's percentile with its interval, and the stall behind a breach.
        "latency_evidence": latency_evidence(records, config.to_result()["thresholds"]),
        "generator": summarise_generator(
            collected.processes,
            cpu_seconds=outcome.cpu_seconds,
            duration_s=duration_s or outcome.wall_s,
            cpu_count=os.cpu_count() or 1,
        ),
    }


def _crash_reasons(
    config: ScenarioConfig, outcome: MolotovOutcome, collected: Collected
) -> list[str]:
    reasons: list[str] = []
    if outcome.timed_out:
        reasons.append(f"Molotov did not finish within its time limit ({outcome.wall_s:.0f} s)")
    elif outcome.exit_code != 0:
        reasons.append(f"Molotov exited with code {outcome.exit_code}")
    if len(collected.processes) < config.processes:
        reasons.append(
            f"{config.processes - len(collected.processes)} of {config.processes} generator "
            "processes wrote no results"
        )
    if collected.exceptions:
        first_line = collected.first_exception.splitlines()[-1] if collected.first_exception else ""
        reasons.append(f"the scenario raised {collected.exceptions} time(s): {first_line}")
    reasons.extend(collected.problems)
    if not collected.records and not reasons:
        reasons.append("no request was sent")
    return reasons


def _run_molotov(
    config: ScenarioConfig,
    scenario_module: Path,
    environment: ScenarioEnvironment,
    raw_dir: Path,
    progress: bool,
) -> MolotovOutcome:
    """Run Molotov in its own process group, bounded by a timeout, drawing progress meanwhile."""
    wait_s = max((environment.start_at_epoch or 0.0) - time.time(), 0.0)
    timeout_s = (config.duration_s + wait_s) * TIMEOUT_FACTOR + TIMEOUT_MARGIN_S
    child_env = {**os.environ, ENVIRONMENT_VARIABLE: environment.to_json()}
    stdout_path, stderr_path = raw_dir / "molotov.stdout", raw_dir / "molotov.stderr"
    display = ProgressDisplay(config.scenario, config.duration_s) if progress else None
    cpu_before = _children_cpu_seconds()
    started = time.monotonic()
    timed_out = False
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            molotov_command(config, scenario_module, wait_s=wait_s),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=child_env,
            start_new_session=True,  # its own process group: a timeout kills every fork
        )
        try:
            while process.poll() is None:
                elapsed = time.monotonic() - started
                if elapsed > timeout_s:
                    timed_out = True
                    _stop_group(process)
                    break
                if display is not None:
                    display.update(min(elapsed, config.duration_s), read_progress(raw_dir))
                time.sleep(POLL_INTERVAL_S)
        finally:
            if process.poll() is None:
                _stop_group(process)
            _kill_leftovers(process)
            if display is not None:
                elapsed = time.monotonic() - started
                display.update(min(elapsed, config.duration_s), read_progress(raw_dir), final=True)
                display.finish()
    wall_s = time.monotonic() - started
    return MolotovOutcome(
        exit_code=process.returncode,
        timed_out=timed_out,
        wall_s=wall_s,
        cpu_seconds=_children_cpu_seconds() - cpu_before,
        stderr_tail=stderr_path.read_text(errors="replace")[-STDERR_TAIL_CHARS:],
    )


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Terminate the whole process group, then kill whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE_S)
    _kill_leftovers(process)
    process.wait()


def _kill_leftovers(process: subprocess.Popen[bytes]) -> None:
    # Forked workers or Molotov's manager processes may outlive its main process.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def write_results(result_dir: Path, result: dict[str, Any], collected: Collected) -> None:
    """Write result.json and its side files (operations, unanswered, history) from the records."""
    result_dir.mkdir(parents=True, exist_ok=True)
    operations = result_dir / OPERATIONS_FILE
    with operations.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(OPERATIONS_HEADER)
        writer.writerows(successful_operations(collected.records))
    with (result_dir / UNANSWERED_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(UNANSWERED_HEADER)
        writer.writerows(unanswered_requests(collected.records))
    # The list-append scenario's micro-operations, from its side files (none elsewhere).
    transactions = read_transaction_values(result_dir / RAW_DIR)
    with (result_dir / HISTORY_FILE).open("w") as handle:
        handle.writelines(line + "\n" for line in history_lines(collected.records, transactions))
    (result_dir / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")


def _checked_config(
    scenario: str, profile: str, config_path: Path | None, arrival_rate: float | None
) -> ScenarioConfig:
    if scenario not in SCENARIOS:
        raise LoadRunError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    try:
        config = load_scenario_config(scenario, profile, config_path)
    except ProfileError as error:
        raise LoadRunError(str(error)) from None
    if arrival_rate is None:
        return config
    if isinstance(arrival_rate, bool) or not math.isfinite(arrival_rate) or arrival_rate <= 0:
        raise LoadRunError(
            f"arrival rate must be a positive number of requests/s, not {arrival_rate!r}"
        )
    return ScenarioConfig(**{**config.__dict__, "arrival_rate_rps": float(arrival_rate)})


def check_target(target_url: str) -> str:
    """Return the target's base URL once it answers /healthz; raise LoadRunError if not."""
    parsed = urllib.parse.urlsplit(target_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise LoadRunError(f"target URL must look like http://host:port, not {target_url!r}")
    base = target_url.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=REACHABILITY_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        pass  # it answered: reachable, even if unhealthy (the run will show what that means)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise LoadRunError(f"target {base} is unreachable: {reason}") from None
    return base


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat(timespec="milliseconds")
