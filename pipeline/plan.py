"""A run's plan: what a command's options resolve to, once, before anything starts.

`resolve_plan` reads profiles.toml once, checks every option and combination once (a bad one is
one line and exit 2, and nothing has started), and returns a frozen `RunPlan` that the run's
steps read: the scenarios with their settings and fault schedules, the service's dimensions,
its workers, and where the results go. No step below reads the options or the profiles file
again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from faults.nemesis import RELAY_FAULTS, FaultSpec, postgres_refusal, schedule_from
from load_runner.profiles import (
    DEFAULT_PROFILE,
    SCENARIOS,
    ProfileError,
    ProfilesFile,
    ScenarioConfig,
    read_profiles,
)
from pipeline.dimensions import ServiceDimensions, parse_scenarios, resolve_dimensions
from pipeline.exits import fail
from pipeline.rundirs import resolve_reports_root
from target.settings import DEFAULT_STRATEGY

# One Hypercorn worker: on the 2-core machines this runs on, the generator needs the other.
DEFAULT_WORKERS = 1


@dataclass(frozen=True)
class ScenarioPlan:
    """One scenario of a run: its settings under the run's profile and its fault schedule."""

    config: ScenarioConfig
    faults: tuple[FaultSpec, ...] = ()

    @property
    def name(self) -> str:
        return self.config.scenario


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs to know before it starts, checked."""

    profile: str
    scenarios: tuple[ScenarioPlan, ...]
    dimensions: ServiceDimensions
    workers: int
    reports_root: Path
    run_dir: Path | None = None  # None: a new folder under reports_root
    force: bool = False  # let faults act on a PostgreSQL behind DATABASE_URL
    target_url: str | None = None  # a service already running there instead of ours
    # The one read of profiles.toml, for what is asked of it later (a comparison's margins).
    profiles: ProfilesFile | None = field(default=None, repr=False, compare=False)

    @property
    def scenario_names(self) -> tuple[str, ...]:
        return tuple(scenario.name for scenario in self.scenarios)

    @property
    def strategy(self) -> str:
        return self.dimensions.strategy

    def scenario(self, name: str) -> ScenarioPlan:
        """Return the plan of one of the run's scenarios."""
        for scenario in self.scenarios:
            if scenario.name == name:
                return scenario
        raise KeyError(f"{name} is not in this run's plan ({', '.join(self.scenario_names)})")

    @property
    def needs_db_relay(self) -> bool:
        """Tell whether the service reaches PostgreSQL through the relay.

        It does when the run adds latency to that link, or a fault schedule acts on it.
        """
        return self.dimensions.db_latency_ms > 0 or any(
            spec.kind in RELAY_FAULTS for scenario in self.scenarios for spec in scenario.faults
        )


def resolve_plan(
    *,
    profile: str = "",
    scenarios: str | Sequence[str] = "",
    strategy: str = "",
    transaction_shape: str = "",
    isolation: str = "",
    db_latency_ms: str | float = 0.0,
    workers: int | str | None = None,
    dimensions: ServiceDimensions | None = None,
    reports_root: Path | str | None = None,
    run_dir: Path | str | None = None,
    force: bool = False,
    target_url: str | None = None,
) -> RunPlan:
    """Check a command's options once and return the run's plan; exit 2 with one line if bad.

    Empty options take their defaults: the `smoke` profile, every scenario, the
    `serializable` strategy at its own level, the profile's workers (else one). ``dimensions``,
    when given, stands for strategy, shape, isolation and latency already resolved (a matrix
    cell).
    """
    profile = profile or DEFAULT_PROFILE
    profiles = _read_or_exit()
    names = _scenario_names(scenarios)
    scenario_plans = tuple(_scenario_plan(profiles, name, profile) for name in names)
    refusal = postgres_refusal(
        [scenario.faults for scenario in scenario_plans], target_url=target_url, force=force
    )
    if refusal:
        fail(refusal)
    if dimensions is None:
        dimensions = resolve_dimensions(
            strategy=strategy or DEFAULT_STRATEGY,
            transaction_shape=transaction_shape,
            isolation=isolation,
            db_latency_ms=db_latency_ms,
            scenarios=names,
        )
    return RunPlan(
        profile=profile,
        scenarios=scenario_plans,
        dimensions=dimensions,
        workers=_workers(workers, profiles, profile),
        reports_root=resolve_reports_root(Path(reports_root) if reports_root else None),
        run_dir=Path(run_dir).resolve() if run_dir else None,
        force=force,
        target_url=target_url,
        profiles=profiles,
    )


def _read_or_exit() -> ProfilesFile:
    try:
        return read_profiles()
    except ProfileError as error:
        fail(str(error))


def _scenario_names(scenarios: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(scenarios, str):
        return parse_scenarios(scenarios, SCENARIOS)
    return parse_scenarios(",".join(scenarios), SCENARIOS)


def _scenario_plan(profiles: ProfilesFile, name: str, profile: str) -> ScenarioPlan:
    try:
        return ScenarioPlan(
            config=profiles.scenario_config(name, profile),
            faults=schedule_from(profiles, name, profile),
        )
    except ProfileError as error:
        fail(str(error))


def _workers(workers: int | str | None, profiles: ProfilesFile, profile: str) -> int:
    """Return --workers as a number: 0, None or empty mean the profile's own, else one."""
    if isinstance(workers, str):
        try:
            workers = int(workers) if workers.strip() else None
        except ValueError:
            fail(f"--workers must be a whole number, not {workers!r}")
    if not workers:
        try:
            return profiles.service_workers(profile) or DEFAULT_WORKERS
        except ProfileError as error:
            fail(str(error))
    if workers < 1:
        fail(f"--workers must be at least 1, not {workers}")
    return workers
