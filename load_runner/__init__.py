"""Run the Molotov scenarios as subprocesses and turn their records into result files."""

from __future__ import annotations

from load_runner.profiles import SCENARIOS
from load_runner.runner import LoadRunError, ScenarioRun, run_scenario

__all__ = ["SCENARIOS", "LoadRunError", "ScenarioRun", "run_scenario"]
