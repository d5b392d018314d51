"""Load profiles: users, duration, ramp-up, think time and thresholds per scenario, from TOML."""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import molotov_scenarios

DEFAULT_PROFILES_PATH = Path(molotov_scenarios.__file__).with_name("profiles.toml")
# Another profiles file for every command (tests use it for short runs).
PROFILES_PATH_ENV = "LOADTEST_PROFILES_PATH"
# The profile every command runs when none is named: short, for a pull request or a laptop.
DEFAULT_PROFILE = "smoke"
SCENARIOS = (
    "high_contention",
    "high_throughput",
    "mixed_operations",
    "session_scheduling",
    "isolation_append",
)
THRESHOLDS_TABLE = "thresholds"
# A profile's fault schedule (faults/nemesis.py reads and checks it).
NEMESIS_TABLE = "nemesis"
# Top-level `[service.<profile>]`: how the service is run under a profile (e.g. workers).
SERVICE_TABLE = "service"
SERVICE_KEYS = frozenset({"workers"})
# Top-level `[compare.margins]`: per metric, the change that matters (reporting/compare.py
# holds the defaults and checks the metric names).
COMPARE_TABLE = "compare"
MARGINS_TABLE = "margins"
PROFILE_KEYS = frozenset(
    {"users", "duration_s", "ramp_up_s", "think_time_s", "processes", "units_per_request",
     "arrival_rate_rps", THRESHOLDS_TABLE, NEMESIS_TABLE}
)  # fmt: skip
THRESHOLD_KEYS = (
    "p95_ms",
    "p99_ms",
    "error_rate_max",
    "error_rate_min",
    "unexpected_error_rate_max",
)
# Scenario-level key: the error codes a scenario provokes on purpose (business refusals).
EXPECTED_ERROR_CODES = "expected_error_codes"
# Scenario-level key of a list-append scenario: the consistency model its history must satisfy
# (anomalies/ checks it after the run; a forbidden anomaly is NO-GO).
REQUIRED_MODEL = "required_model"


class ProfileError(ValueError):
    """A profile is missing, unknown or malformed; the message says which and why."""


@dataclass(frozen=True)
class Thresholds:
    """What a run must meet; None means the scenario sets no such threshold."""

    p95_ms: float | None = None
    p99_ms: float | None = None
    error_rate_max: float | None = None
    error_rate_min: float | None = None
    unexpected_error_rate_max: float | None = None


@dataclass(frozen=True)
class ScenarioConfig:
    """How one scenario runs under one profile."""

    scenario: str
    profile: str
    users: int
    duration_s: float
    ramp_up_s: float
    think_time_s: tuple[float, float]
    processes: int
    units_per_request: int
    arrival_rate_rps: float | None
    thresholds: Thresholds
    expected_error_codes: tuple[str, ...] = ()
    required_model: str | None = None

    @property
    def users_per_process(self) -> int:
        return self.users // self.processes

    @property
    def load_model(self) -> str:
        return "closed" if self.arrival_rate_rps is None else "open"

    def to_result(self) -> dict[str, Any]:
        """Describe the configuration as result.json's `config` section."""
        low, high = self.think_time_s
        return {
            "users": self.users,
            "duration_s": self.duration_s,
            "ramp_up_s": self.ramp_up_s,
            "think_time_s": round((low + high) / 2, 6),
            "think_time_range_s": [low, high],
            "arrival_rate_rps": self.arrival_rate_rps,
            "processes": self.processes,
            "units_per_request": self.units_per_request,
            "thresholds": asdict(self.thresholds),
            "expected_error_codes": list(self.expected_error_codes),
            **({REQUIRED_MODEL: self.required_model} if self.required_model else {}),
        }


def profiles_path() -> Path:
    """Return $LOADTEST_PROFILES_PATH, else the profiles.toml beside the scenarios."""
    override = os.environ.get(PROFILES_PATH_ENV)
    return Path(override) if override else DEFAULT_PROFILES_PATH


def available_profiles(config_path: Path | None = None) -> list[str]:
    """List the profiles every scenario defines, sorted."""
    return read_profiles(config_path).available_profiles()


def load_scenario_config(
    scenario: str, profile: str, config_path: Path | None = None
) -> ScenarioConfig:
    """Read and check one scenario's configuration under one profile."""
    return read_profiles(config_path).scenario_config(scenario, profile)


def nemesis_table(scenario: str, profile: str, config_path: Path | None = None) -> dict[str, Any]:
    """Return the raw `[<scenario>.<profile>.nemesis]` table, empty when there is none."""
    return read_profiles(config_path).nemesis_table(scenario, profile)


def service_workers(profile: str, config_path: Path | None = None) -> int | None:
    """Return the service workers `[service.<profile>]` asks for, or None when it says nothing."""
    return read_profiles(config_path).service_workers(profile)


def compare_margins_table(config_path: Path | None = None) -> dict[str, Any]:
    """Return the raw `[compare.margins]` table, empty when the file has none."""
    return read_profiles(config_path).compare_margins_table()


def read_profiles(config_path: Path | None = None) -> ProfilesFile:
    """Read the profiles file once ($LOADTEST_PROFILES_PATH, else the one beside the scenarios)."""
    path = config_path or profiles_path()
    return ProfilesFile(path, _read(path))


@dataclass(frozen=True)
class ProfilesFile:
    """One read of profiles.toml: every question a run asks of it, checked as it is asked."""

    path: Path
    document: dict[str, Any]

    def available_profiles(self) -> list[str]:
        """List the profiles every scenario defines, sorted."""
        per_scenario = [set(_profiles_of(self.document, scenario)) for scenario in SCENARIOS]
        return sorted(set.intersection(*per_scenario))

    def scenario_config(self, scenario: str, profile: str) -> ScenarioConfig:
        """Check one scenario's configuration under one profile."""
        path, document = self.path, self.document
        if scenario not in SCENARIOS:
            raise ProfileError(
                f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}"
            )
        profiles = _profiles_of(document, scenario)
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ProfileError(f"{path}: no profile {profile!r} for {scenario} (defined: {known})")
        table = profiles[profile]
        where = f"{path}: [{scenario}.{profile}]"
        unknown = sorted(set(table) - PROFILE_KEYS)
        if unknown:
            raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)}")
        shared_thresholds = document[scenario].get(THRESHOLDS_TABLE, {})
        thresholds = _thresholds({**shared_thresholds, **table.get(THRESHOLDS_TABLE, {})}, where)
        users = _integer(table, "users", where, minimum=1)
        processes = _integer(table, "processes", where, minimum=1, default=1)
        if users % processes:
            raise ProfileError(
                f"{where}: users ({users}) must be a multiple of processes ({processes})"
            )
        duration_s = _number(table, "duration_s", where, minimum=1)
        ramp_up_s = _number(table, "ramp_up_s", where, minimum=0, default=0)
        if ramp_up_s >= duration_s:
            raise ProfileError(f"{where}: ramp_up_s must be shorter than duration_s")
        arrival_rate = table.get("arrival_rate_rps")
        return ScenarioConfig(
            scenario=scenario,
            profile=profile,
            users=users,
            duration_s=duration_s,
            ramp_up_s=ramp_up_s,
            think_time_s=_think_time(table, where),
            processes=processes,
            units_per_request=_integer(table, "units_per_request", where, minimum=1),
            arrival_rate_rps=None
            if arrival_rate is None
            else _number(table, "arrival_rate_rps", where, minimum=0.001),
            thresholds=thresholds,
            expected_error_codes=_expected_error_codes(document[scenario], f"{path}: [{scenario}]"),
            required_model=_required_model(document[scenario], f"{path}: [{scenario}]"),
        )

    def nemesis_table(self, scenario: str, profile: str) -> dict[str, Any]:
        """Return the raw `[<scenario>.<profile>.nemesis]` table, empty when there is none."""
        table = _profiles_of(self.document, scenario).get(profile, {}).get(NEMESIS_TABLE, {})
        if not isinstance(table, dict):
            raise ProfileError(f"[{scenario}.{profile}.{NEMESIS_TABLE}] must be a table")
        return table

    def service_workers(self, profile: str) -> int | None:
        """Return the workers `[service.<profile>]` asks for, or None when it says nothing."""
        table = self.document.get(SERVICE_TABLE, {}).get(profile, {})
        where = f"{self.path}: [{SERVICE_TABLE}.{profile}]"
        unknown = sorted(set(table) - SERVICE_KEYS)
        if unknown:
            raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)}")
        if "workers" not in table:
            return None
        return _integer(table, "workers", where, minimum=1)

    def compare_margins_table(self) -> dict[str, Any]:
        """Return the raw `[compare.margins]` table, empty when the file has none."""
        table = self.document.get(COMPARE_TABLE, {})
        margins = table.get(MARGINS_TABLE, {}) if isinstance(table, dict) else None
        if not isinstance(margins, dict):
            raise ProfileError(f"{self.path}: [{COMPARE_TABLE}.{MARGINS_TABLE}] must be a table")
        unknown = sorted(set(table) - {MARGINS_TABLE})
        if unknown:
            raise ProfileError(
                f"{self.path}: [{COMPARE_TABLE}]: unknown key(s) {', '.join(unknown)}"
            )
        return margins


def _expected_error_codes(table: dict[str, Any], where: str) -> tuple[str, ...]:
    codes = table.get(EXPECTED_ERROR_CODES, [])
    if not isinstance(codes, list) or not all(isinstance(c, str) and c for c in codes):
        raise ProfileError(f"{where}: {EXPECTED_ERROR_CODES} must be a list of error codes")
    return tuple(codes)


def _required_model(table: dict[str, Any], where: str) -> str | None:
    model = table.get(REQUIRED_MODEL)
    if model is None:
        return None
    # The name is checked by anomalies/ when the history is (the loader knows no models).
    if not isinstance(model, str) or not model:
        raise ProfileError(f"{where}: {REQUIRED_MODEL} must name a consistency model")
    return model


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ProfileError(f"profiles file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{path}: not valid TOML: {error}") from None


def _profiles_of(document: dict[str, Any], scenario: str) -> dict[str, dict[str, Any]]:
    tables = document.get(scenario, {})
    return {
        name: table
        for name, table in tables.items()
        if name != THRESHOLDS_TABLE and isinstance(table, dict)
    }


def _thresholds(table: dict[str, Any], where: str) -> Thresholds:
    unknown = sorted(set(table) - set(THRESHOLD_KEYS))
    if unknown:
        raise ProfileError(f"{where}: unknown threshold(s) {', '.join(unknown)}")
    values = {key: _number(table, key, where, minimum=0) for key in table}
    return Thresholds(**values)


def _number(
    table: dict[str, Any], key: str, where: str, *, minimum: float, default: float | None = None
) -> float:
    value = table.get(key, default)
    if value is None:
        raise ProfileError(f"{where}: {key} is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProfileError(f"{where}: {key} must be a number, not {value!r}")
    if value < minimum:
        raise ProfileError(f"{where}: {key} must be at least {minimum}, not {value!r}")
    return float(value)


def _integer(
    table: dict[str, Any], key: str, where: str, *, minimum: int, default: int | None = None
) -> int:
    value = table.get(key, default)
    if value is None:
        raise ProfileError(f"{where}: {key} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileError(f"{where}: {key} must be a whole number, not {value!r}")
    if value < minimum:
        raise ProfileError(f"{where}: {key} must be at least {minimum}, not {value!r}")
    return value


def _think_time(table: dict[str, Any], where: str) -> tuple[float, float]:
    value = table.get("think_time_s", [0.0, 0.0])
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, list) or len(value) != 2:
        raise ProfileError(f"{where}: think_time_s must be a number or [min, max], not {value!r}")
    low = _number({"think_time_s": value[0]}, "think_time_s", where, minimum=0)
    high = _number({"think_time_s": value[1]}, "think_time_s", where, minimum=0)
    if high < low:
        raise ProfileError(f"{where}: think_time_s [min, max] has max < min")
    return low, high
