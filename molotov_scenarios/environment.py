"""What the runner hands each Molotov process: one JSON document in one environment variable."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

ENVIRONMENT_VARIABLE = "LOADTEST_SCENARIO"
RECORDS_PREFIX = "records-"  # records-<pid>.csv: one row per request
PROCESS_PREFIX = "process-"  # process-<pid>.json: counts and self-watch, written with records
PROGRESS_PREFIX = "progress-"  # progress-<pid>.json: rewritten about every second


@dataclass(frozen=True)
class ScenarioEnvironment:
    """Everything a scenario process needs to know about the run it belongs to."""

    scenario: str
    target_url: str
    fixtures_path: str
    record_dir: str
    duration_s: float
    think_time_s: tuple[float, float]
    units_per_request: int
    users: int  # across all processes
    arrival_rate_rps: float | None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ScenarioEnvironment:
        values = json.loads(text)
        values["think_time_s"] = tuple(values["think_time_s"])
        return cls(**values)

    @classmethod
    def from_process(cls) -> ScenarioEnvironment:
        """Read the environment the runner set; fail loudly when a scenario is run by hand."""
        text = os.environ.get(ENVIRONMENT_VARIABLE)
        if not text:
            raise RuntimeError(
                f"{ENVIRONMENT_VARIABLE} is not set: run scenarios through load_runner "
                "(invoke load-test.scenario1), not with molotov directly"
            )
        return cls.from_json(text)

    @property
    def records_dir(self) -> Path:
        return Path(self.record_dir)
