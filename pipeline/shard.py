"""`invoke load-test.scenarioN --shard I/N --start-at T --target-url URL --run-dir DIR`: one shard.

A shard is only a load generator: it does not reset or check the database (the run's set-up
did that once, before any shard started; the merge checks it once, after all of them), and so
takes no database lock. Shard 1 also watches the service over HTTP (/healthz, /metrics), as
a single-host run with --target-url does, so that the merged report has the service's health.

Exit codes: 0 the shard ran; 1 it crashed or timed out (its results are written all the same);
2 bad input (one line, nothing run).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from load_runner.runner import LoadRunError, ScenarioRun, check_target, launch
from load_runner.sharding import (
    LAUNCH_LEAD_S,
    ClockOffset,
    Shard,
    ShardError,
    estimate_clock_offset,
    parse_clock_offset,
    parse_shard,
    parse_start_at,
    run_key,
    shard_config,
)
from molotov_scenarios.fixtures import FixturesError, load_fixtures
from pipeline.commands import default_fixtures_path
from pipeline.exits import EXIT_FAILED, fail
from pipeline.plan import ScenarioPlan, resolve_plan
from pipeline.service_process import RemoteService
from results.files import RESULT_FILE
from watch.service_watch import ServiceWatch

WATCHING_SHARD = 1  # the shard that writes service.json


def shard_command(
    scenario: str,
    *,
    shard: str,
    start_at: str,
    target_url: str | None,
    profile: str = "",
    out: str | None = None,
    clock_offset: str | None = None,
    seed: str = "",
    progress: bool = True,
) -> None:
    """Run this host's shard of a scenario from the shared start time; write DIR/<scenario>/."""
    try:
        spec = parse_shard(shard)
        start = parse_start_at(start_at)
        given_offset = parse_clock_offset(clock_offset) if clock_offset else None
    except ShardError as error:
        fail(str(error))
    if not target_url:
        fail("--shard needs --target-url: a shard drives a service that runs elsewhere")
    if not out:
        fail("--shard needs --run-dir: the folder this shard's results go to (the merge reads it)")
    plan = resolve_plan(profile=profile, scenarios=[scenario], target_url=target_url)
    try:
        run = run_shard(
            plan.scenario(scenario),
            shard=spec,
            start_at=start,
            target_url=target_url,
            out_dir=Path(out).resolve(),
            clock_offset=given_offset,
            seed=seed,
            progress=progress,
        )
    except (ShardError, LoadRunError) as error:
        fail(str(error))
    totals = run.result["totals"]
    print(
        f"{scenario} shard {spec}: {totals['requests']} requests, error rate "
        f"{100 * totals['error_rate']:.2f} % → {run.result_dir}"
    )
    if not run.completed:
        fail(f"shard {spec} did not complete: see {run.result_dir / RESULT_FILE}", EXIT_FAILED)


def run_shard(
    scenario: ScenarioPlan,
    *,
    shard: Shard,
    start_at: float,
    target_url: str,
    out_dir: Path,
    clock_offset: ClockOffset | None = None,
    seed: str = "",
    progress: bool = True,
    fixtures_path: Path | None = None,
) -> ScenarioRun:
    """Check the input, wait for the start, run the shard (watching the service on shard 1).

    Raises ShardError or LoadRunError on bad input, before anything is run or written.
    """
    name, profile = scenario.name, scenario.config.profile
    config = shard_config(scenario.config, shard)
    if scenario.faults:
        raise ShardError(
            f"profile {profile!r} injects faults: a shard cannot (it runs no service); "
            "run the faults profile on one host"
        )
    fixtures = fixtures_path or default_fixtures_path()
    starts_in_s = max(start_at - time.time(), 0)
    try:  # now, not after the wait: bad input changes nothing
        load_fixtures(fixtures, valid_for_s=config.duration_s + starts_in_s)
    except FixturesError as error:
        raise LoadRunError(str(error)) from None
    base_url = check_target(target_url)
    offset = clock_offset or estimate_clock_offset(base_url)
    if offset.too_large:
        print(f"warning: shard {shard}: {offset.warning()}", file=sys.stderr)
    # The start time is on the service's clock; this host reaches it `offset` later.
    local_start = start_at + offset.offset_s
    parse_start_at(start_at)  # the estimate took a moment: still not too late?
    _sleep_until(local_start - LAUNCH_LEAD_S)
    key = run_key(name, profile, start_at, shard.count)
    sharding = {
        "shard_index": shard.index,
        "shard_count": shard.count,
        "start_at_epoch": local_start,
        "id_prefix": shard.id_prefix,
        "seed": f"{seed or 'loadtest'}/{key}",
        "result": {
            "index": shard.index,
            "count": shard.count,
            "run_key": key,
            "start_at": start_at,
            "local_start_at": local_start,
            "clock": offset.to_result(),
            "watched_service": shard.index == WATCHING_SHARD,
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    result_dir = out_dir / name

    def run_it() -> ScenarioRun:
        return launch(
            config,
            target_url=base_url,
            fixtures_path=fixtures,
            out_dir=out_dir,
            progress=progress,
            sharding=sharding,
            starts_in_s=local_start - time.time(),
        )

    if shard.index != WATCHING_SHARD:
        return run_it()
    watch = ServiceWatch(RemoteService(base_url))
    try:
        with watch:
            run = run_it()
    finally:
        result_dir.mkdir(parents=True, exist_ok=True)
        watch.write(result_dir)
    return run


def _sleep_until(epoch: float) -> None:
    while (left := epoch - time.time()) > 0:
        time.sleep(min(left, 1.0))
