"""Invoke tasks: the order of steps. Every task is a docstring and a call into a package.

Each task imports its package when it runs: importing them all costs about 2 s, which
`invoke --list` and every `db.*` task would otherwise pay.
"""

from __future__ import annotations

from collections.abc import Callable

from invoke import Collection, Context, Exit

from pipeline.cli import task  # no automatic short flags; a bad whole number is one line
from seeding.defaults import DEFAULT_BACKGROUND, DEFAULT_SCALE, DEFAULT_SEED  # imports nothing


# -- db.* ----------------------------------------------------------------------------------
@task
def up(c: Context) -> None:
    """Start the project's own PostgreSQL (unless DATABASE_URL is set) and print its URL."""
    from pipeline.db_commands import db_up

    db_up()


@task
def down(c: Context) -> None:
    """Stop the project's own PostgreSQL; a no-op when it is not running."""
    from pipeline.db_commands import db_down

    db_down()


@task
def url(c: Context) -> None:
    """Print the URL of the database the tools use."""
    from pipeline.db_commands import db_url

    db_url()


@task(help={"revision": "the Alembic revision to go up to (default head)"})
def migrate(c: Context, revision: str = "head") -> None:
    """Run the Alembic migrations up to REVISION (default head)."""
    from pipeline.db_commands import db_migrate

    db_migrate(revision)


@task(help={"revision": "the Alembic revision to go down to (default base)"})
def downgrade(c: Context, revision: str = "base") -> None:
    """Run the Alembic migrations down to REVISION (default base)."""
    from pipeline.db_commands import db_downgrade

    db_downgrade(revision)


# -- target.* ------------------------------------------------------------------------------
@task(
    help={
        "port": "the port to listen on (default 8000)",
        "workers": "Hypercorn workers the supervisor keeps serving (default 1)",
        "strategy": "serializable, for_update, atomic, constraint or unsafe (default: "
        "$TARGET_CONCURRENCY, else serializable)",
        "host": "the address to listen on (default 127.0.0.1; 0.0.0.0 in a container)",
    }
)
def serve(
    c: Context, port: int = 8000, workers: int = 1, strategy: str = "", host: str = "127.0.0.1"
) -> None:
    """Serve the reservation service (supervised Hypercorn workers) until interrupted."""
    from pipeline.serve_command import serve_forever

    serve_forever(port=port, workers=workers, strategy=strategy or None, host=host)


# -- load-test.* ---------------------------------------------------------------------------
SEED_HELP = {
    "seed": "the random seed: the same seed gives the same rows and fixtures "
    f"(default {DEFAULT_SEED})",
    "scale": "multiplies organizations' patients, practitioners and authorizations "
    f"(default {DEFAULT_SCALE})",
    "background": "closed authorizations added as realistic table volume "
    f"(default {DEFAULT_BACKGROUND})",
    "force": "seed a database that holds data and is not marked as this project's",
}


@task(help=SEED_HELP)
def seed(
    c: Context,
    seed: int = DEFAULT_SEED,
    scale: int = DEFAULT_SCALE,
    background: int = DEFAULT_BACKGROUND,
    force: bool = False,
) -> None:
    """Reset the test data and seed it deterministically; write fixtures/test-data.json."""
    from pipeline.setup import seed_command

    seed_command(seed=seed, scale=scale, background=background, force=force)


@task(help=SEED_HELP)
def setup(
    c: Context,
    seed: int = DEFAULT_SEED,
    scale: int = DEFAULT_SCALE,
    background: int = DEFAULT_BACKGROUND,
    force: bool = False,
) -> None:
    """Database up, migrations, seed: one idempotent command."""
    from pipeline.setup import setup_command

    setup_command(seed=seed, scale=scale, background=background, force=force)


SCENARIO_HELP = {
    "profile": "smoke (the default), full, open or faults (molotov_scenarios/profiles.toml)",
    "target_url": "load a service that is already running there instead of starting ours "
    "(needs DATABASE_URL pointing at its database)",
    "run_dir": "the run folder to write into (default: a new one under reports/); a "
    "shard's results go there for load-test.merge",
    "force": "let the faults profile restart a PostgreSQL behind DATABASE_URL",
    "shard": "I/N: run this host's shard I of a run spread over N hosts",
    "start_at": "UNIX_TIME every shard starts at (with --shard)",
    "clock_offset": "seconds this host's clock is ahead of the others' (with --shard)",
    "seed": "the shard's random seed (with --shard; default derived from the shard)",
    "strategy": "serializable (the default), for_update, atomic, constraint or unsafe",
    "transaction_shape": "interactive (default) or statement",
    "isolation": "serializable, repeatable_read or read_committed (default: the strategy's)",
}


def _scenario_task(number: int, scenario: str) -> Callable[..., None]:
    @task(name=f"scenario{number}", help=SCENARIO_HELP)
    def run(
        c: Context,
        profile: str = "",
        target_url: str = "",
        run_dir: str = "",
        force: bool = False,
        shard: str = "",
        start_at: str = "",
        clock_offset: str = "",
        seed: str = "",
        strategy: str = "",
        transaction_shape: str = "",
        isolation: str = "",
    ) -> None:
        if shard or start_at:
            # One shard of a run spread over several hosts (pipeline/shard.py).
            from pipeline.shard import shard_command

            shard_command(
                scenario,
                shard=shard or "(missing)",
                start_at=start_at or "(missing)",
                target_url=target_url or None,
                profile=profile,
                out=run_dir or None,
                clock_offset=clock_offset or None,
                seed=seed,
            )
            return
        from pipeline.commands import scenario_command

        scenario_command(
            scenario,
            profile=profile,
            target_url=target_url or None,
            out=run_dir or None,
            force=force,
            strategy=strategy,
            transaction_shape=transaction_shape,
            isolation=isolation,
        )

    run.__doc__ = (
        f"Run scenario {number} ({scenario}) and write its results to --run-dir; with --shard I/N "
        "--start-at UNIX_TIME, this host's shard of a run spread over N hosts."
    )
    return run


scenario1 = _scenario_task(1, "high_contention")
scenario2 = _scenario_task(2, "high_throughput")
scenario3 = _scenario_task(3, "mixed_operations")
scenario4 = _scenario_task(4, "session_scheduling")


@task(
    help={
        "run_dir": "the run folder (its last scenario) or scenario folders, comma-separated "
        "(default: the newest run's last scenario)"
    }
)
def verify(c: Context, run_dir: str = "") -> None:
    """Run the integrity checks against the database and the last scenario's results."""
    from pipeline.commands import verify_command

    verify_command(results=run_dir or None)


@task(
    help={
        "run_dir": "the run folder to report on (default: the newest under reports/)",
        "junit": "also write the verdict as JUnit XML to this path (for CI)",
    }
)
def report(c: Context, run_dir: str = "", junit: str = "") -> None:
    """Render the HTML report, summary.json and PERFORMANCE_TEST_RESULTS.md for a run."""
    from pipeline.commands import report_command

    report_command(run_dir=run_dir or None, junit=junit or None)


@task(
    name="check-history",
    help={
        "run_dir": "a run or scenario folder, or a history.jsonl (a run folder: its "
        "isolation_append scenario)",
        "require": "the consistency model the history must satisfy (default serializable; "
        "e.g. snapshot-isolation, repeatable-read, strict-serializable)",
    },
)
def check_history(c: Context, run_dir: str, require: str = "serializable") -> None:
    """Check a list-append history for isolation anomalies; exit 0 valid, 1 forbidden, 2 bad input.

    Writes anomalies.json beside the history and prints the verdict and the anomalies by kind.
    """
    from anomalies.cli import check_history_command

    code = check_history_command(run_dir, require=require)
    if code:
        raise Exit(code=code)


DIMENSION_HELP = {
    "strategy": "how a change guards its rules: serializable (no locks; the default), "
    "for_update, atomic, "
    "constraint, or unsafe (the planted control)",
    "transaction_shape": "interactive (an ORM unit of work, the default) or statement (one SQL "
    "statement per change)",
    "isolation": "serializable, repeatable_read or read_committed (default: the strategy's own)",
    "db_latency_ms": "round-trip milliseconds (a number, e.g. 0.5) a relay adds between the "
    "service and PostgreSQL (default 0: no relay)",
    "scenarios": "comma-separated scenarios to run (default: all five)",
}


@task(
    name="all",
    help={
        **DIMENSION_HELP,
        "profile": "smoke (the default), full, open or faults (molotov_scenarios/profiles.toml)",
        "reports_dir": "where run folders go (default reports/)",
        "workers": "service workers (default 0: the profile's own, else 1)",
        "force": "let the faults profile restart a PostgreSQL behind DATABASE_URL",
        "prometheus_remote_write": "stream the per-second series to this Prometheus "
        "remote-write URL while the run goes on, e.g. http://127.0.0.1:9090/api/v1/write",
        "baseline": "a run folder or latest-go to compare with afterwards",
        "regression_gate": "warn (default) or fail on a significant regression",
        "tolerance": "percent of the base value a latency or throughput change must exceed "
        "(default: [compare.margins] in profiles.toml, else 5)",
        "junit": "also write the verdict as JUnit XML to this path: a test case per threshold "
        "and per integrity check, per scenario (for CI)",
    },
)
def all_(
    c: Context,
    profile: str = "",
    strategy: str = "",
    reports_dir: str = "",
    workers: int = 0,
    force: bool = False,
    prometheus_remote_write: str = "",
    baseline: str = "",
    regression_gate: str = "",
    tolerance: str = "",
    transaction_shape: str = "",
    isolation: str = "",
    db_latency_ms: str = "0",
    scenarios: str = "",
    junit: str = "",
) -> None:
    """Run the whole load-test pipeline and exit non-zero unless the verdict is GO.

    --workers defaults to the profile's own (2 under `faults`, else 1); --force lets the faults
    profile restart and pause a PostgreSQL server behind DATABASE_URL. --baseline DIR|latest-go
    compares the run with that run afterwards: a significant regression beyond --tolerance
    (percent of the base value, default 10) makes a GO CONDITIONAL (--regression-gate warn,
    the default) or NO-GO (fail). $LOADTEST_BASELINE and $LOADTEST_REGRESSION_GATE stand in
    for the options when they are not given.
    """
    from pipeline.commands import all_command

    all_command(
        profile=profile,
        strategy=strategy,
        reports_dir=reports_dir or None,
        workers=workers or None,
        force=force,
        prometheus_remote_write=prometheus_remote_write or None,
        baseline=baseline or None,
        regression_gate=regression_gate or None,
        tolerance=tolerance or None,
        transaction_shape=transaction_shape,
        isolation=isolation,
        db_latency_ms=db_latency_ms,
        scenarios=scenarios,
        junit=junit or None,
    )


@task(
    help={
        "scenario": "the scenario whose open profile is searched (default high_throughput)",
        "strategy": DIMENSION_HELP["strategy"],
        "max_duration": "seconds the whole search may take (default 300)",
        "start_rate": "the first arrival rate, requests/s (default: the scenario's open rate)",
        "step_duration": "seconds each step's load lasts (at least 10)",
        "workers": "service workers (default 1)",
        "reports_dir": "where run folders go (default reports/)",
        "transaction_shape": DIMENSION_HELP["transaction_shape"],
        "isolation": DIMENSION_HELP["isolation"],
    }
)
def capacity(
    c: Context,
    scenario: str = "high_throughput",
    strategy: str = "",
    max_duration: int = 300,
    start_rate: str = "",
    step_duration: int = 10,
    workers: int = 1,
    reports_dir: str = "",
    transaction_shape: str = "",
    isolation: str = "",
) -> None:
    """Find the highest arrival rate the service sustains: double, then bisect (open model).

    Numbers are read by the command so that bad ones get one line and exit 2. --start-rate
    defaults to the scenario's `open` profile rate; --max-duration bounds the search itself.
    """
    from pipeline.capacity_run import capacity_command

    capacity_command(
        scenario=scenario,
        strategy=strategy,
        max_duration=max_duration,
        start_rate=start_rate or None,
        step_duration=step_duration,
        workers=workers,
        reports_dir=reports_dir or None,
        transaction_shape=transaction_shape,
        isolation=isolation,
    )


@task(
    help={
        "base": "the base run folder (or several, comma-separated: pooled repeats)",
        "new": "the new run folder (or several, comma-separated)",
        "out": "where compare.html, .json and .md go (default NEW/compare-<base>/)",
        "tolerance": "percent of the base value a latency or throughput change must exceed "
        "(default: [compare.margins] in profiles.toml, else 5)",
        "force": "compare runs of different transaction shapes or isolation levels anyway",
        "same_commit": "pool each side with the run index's other runs of its commit, profile, "
        "strategy, shape and level, so the interval covers the noise between runs",
    }
)
def compare(
    c: Context,
    base: str,
    new: str,
    out: str = "",
    tolerance: str = "",
    force: bool = False,
    same_commit: bool = False,
) -> None:
    """Compare run NEW with run BASE: every metric with a bootstrap interval and a judgement.

    Writes compare.html, compare.json and compare.md into --out (default NEW/compare-<base>/).
    Worse/better only beyond a margin ([compare.margins] in profiles.toml; --tolerance PERCENT
    replaces the latency and throughput share). --same-commit pools each side with the run
    index's runs of its commit and settings. Runs of different scenarios, transaction shapes
    or isolation levels are refused unless --force.
    """
    from pipeline.compare_command import compare_command

    compare_command(
        base,
        new,
        out=out or None,
        tolerance=tolerance or None,
        force=force,
        same_commit=same_commit,
    )


@task(
    help={
        "base": "the commit to compare against (any git revision: a branch, tag or sha)",
        "new": "the commit to test (default: the working tree)",
        "repeats": "pairs of runs, interleaved (default 3)",
        "profile": "the profile both commits run (default smoke)",
        "scenarios": "comma-separated scenarios (default: all)",
        "dirty": "NEW is the working tree with uncommitted changes: snapshot it (git stash create)",
        "reports_dir": "where the ab-<time>/ folder goes (default reports/)",
        "strategy": DIMENSION_HELP["strategy"],
        "tolerance": "percent of the base value a latency or throughput change must exceed "
        "(default: [compare.margins] in profiles.toml, else 5)",
    }
)
def ab(
    c: Context,
    base: str,
    new: str = "",
    repeats: int = 3,
    profile: str = "",
    strategy: str = "",
    scenarios: str = "",
    dirty: bool = False,
    reports_dir: str = "",
    tolerance: str = "",
) -> None:
    """Run BASE and --new (default: the working tree) in interleaved pairs; compare them.

    Each from its own git worktree with its own service, on one PostgreSQL server in
    databases of their own. A dirty working tree is refused unless --dirty. Writes
    compare.html/.json/.md into <reports>/ab-<time>/; exit 1 when something is worse.
    """
    from pipeline.ab_command import ab_command

    ab_command(
        base,
        new or None,
        repeats=repeats,
        profile=profile,
        strategy=strategy,
        scenarios=scenarios,
        dirty=dirty,
        reports_dir=reports_dir or None,
        tolerance=tolerance or None,
    )


@task(help={"reports_dir": "the folder of run folders (default reports/)"})
def runs(c: Context, reports_dir: str = "") -> None:
    """List the run index of the reports folder: run id, commit, profile, strategy, verdict."""
    from pipeline.compare_command import runs_command

    runs_command(reports_dir=reports_dir or None)


@task(
    help={
        "shards": "the shard folders, separated by spaces or commas, or a folder holding them",
        "run_dir": "the merged run folder to write (default: a new one under reports/)",
        "allow_missing": "merge what arrived even if some shards are missing (then NO-GO)",
        "fixtures": "the fixtures the shards ran with (default fixtures/test-data.json)",
    }
)
def merge(
    c: Context, shards: str, run_dir: str = "", allow_missing: bool = False, fixtures: str = ""
) -> None:
    """Merge shard result folders exactly, check integrity over all of them, write the report.

    SHARDS: shard folders (each a shard's --run-dir), separated by spaces or commas, or a folder
    holding them: `invoke load-test.merge "out/s1 out/s2" --run-dir RUN_DIR`. Exit 0 only on GO.
    """
    from pipeline.merge import merge_command

    merge_command(
        shards, out=run_dir or None, allow_missing=allow_missing, fixtures=fixtures or None
    )


@task(
    help={
        "strategies": "comma-separated strategies (default serializable,for_update,atomic)",
        "repeats": "how many times each cell runs, interleaved (default 2)",
        "profile": "smoke, full, open or faults",
        "workers": "service workers (default 0: the profile's own, else 1)",
        "reports_dir": "where run folders and the matrix folder go (default reports/)",
        "isolations": "comma-separated isolation levels to cross with the strategies",
        "transaction_shapes": "comma-separated transaction shapes to cross with them",
        "scenarios": DIMENSION_HELP["scenarios"],
    }
)
def matrix(
    c: Context,
    strategies: str = "serializable,for_update,atomic",
    repeats: int = 2,
    profile: str = "",
    workers: int = 0,
    reports_dir: str = "",
    isolations: str = "",
    transaction_shapes: str = "",
    scenarios: str = "",
) -> None:
    """Run the suite for each strategy in interleaved repeats; compare them and recommend one.

    Writes matrix.html, matrix.json and matrix.md into <reports>/matrix-<time>/; `unsafe` may be
    listed and then shows its violations. --isolations and --transaction-shapes (comma-separated)
    make each cell a strategy at a shape and level. Exit 0 when a cell met every threshold.
    """
    from pipeline.matrix_command import matrix_command

    matrix_command(
        strategies=strategies,
        repeats=repeats,
        profile=profile,
        workers=workers or None,
        reports_dir=reports_dir or None,
        isolations=isolations,
        transaction_shapes=transaction_shapes,
        scenarios=scenarios,
    )


# -- deploy.* ------------------------------------------------------------------------------
@task(
    name="render",
    help={
        "out": "the folder the rendered manifests go to, numbered in the order to apply them "
        "(default kubernetes-<run name>)",
        "shards": "the number of shard pods (the Indexed Job's completions and parallelism)",
        "start_at": "when every shard starts, a UNIX time on the service's clock (default: "
        "two minutes from now)",
        "image": "the image every container runs (default clinic-loadtest:latest)",
        "scenario": "high_contention, high_throughput (default), mixed_operations or "
        "session_scheduling",
        "profile": "the scenario's profile in molotov_scenarios/profiles.toml (default full)",
        "run_name": "the run's name: its Jobs' names and its folder on the volume (default "
        "run-<start time>)",
        "target_url": "the service the shards load (default http://reservation-service:8000)",
    },
)
def render_manifests(
    c: Context,
    out: str = "",
    shards: int = 4,
    start_at: str = "",
    image: str = "",
    scenario: str = "high_throughput",
    profile: str = "full",
    run_name: str = "",
    target_url: str = "",
) -> None:
    """Render the Kubernetes manifests of one sharded run from deploy/kubernetes/ into --out."""
    from pipeline.kubernetes import render_command

    render_command(
        out,
        shards=shards,
        start_at=start_at,
        image=image,
        scenario=scenario,
        profile=profile,
        run_name=run_name,
        target_url=target_url,
    )


db = Collection("db", up, down, url, migrate, downgrade)
target = Collection("target", serve)
load_test = Collection(
    "load_test",
    setup,
    seed,
    scenario1,
    scenario2,
    scenario3,
    scenario4,
    verify,
    report,
    all_,
    capacity,
    compare,
    ab,
    runs,
    matrix,
    merge,
    check_history,
)
deploy = Collection("deploy", render_manifests)
namespace = Collection(db, target, load_test, deploy)
