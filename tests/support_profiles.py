"""Shorter copies of the shipped load profiles, for tests that run the pipeline end to end.

Such a test checks the plumbing (every step ran, the figures agree across files, the verdict
follows from them), not the service's speed: a few seconds of load per scenario show all of
it. The copy keeps everything else as shipped: users, think times, thresholds, codes.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from load_runner.profiles import DEFAULT_PROFILES_PATH


def shortened_profiles(path: Path, profile: str, duration_s: int) -> Path:
    """Write the shipped profiles, each ``[<scenario>.<profile>]`` run lasting ``duration_s``."""
    shipped = DEFAULT_PROFILES_PATH.read_text()
    lines, table = [], ""
    for line in shipped.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and "=" not in stripped:
            table = stripped.split("]", 1)[0].lstrip("[")
        elif is_run_table(table, profile) and stripped.startswith("duration_s"):
            line = f"duration_s = {duration_s}"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    written = tomllib.loads(path.read_text())
    check_only_durations_changed(tomllib.loads(shipped), written, profile, duration_s)
    return path


def is_run_table(table: str, profile: str) -> bool:
    """Tell whether ``table`` is a scenario's run settings for ``profile`` (not its thresholds)."""
    parts = table.split(".")
    return len(parts) == 2 and parts[1] == profile


def check_only_durations_changed(
    shipped: dict[str, Any], written: dict[str, Any], profile: str, duration_s: int
) -> None:
    """Raise AssertionError unless ``written`` is ``shipped`` with only the durations cut."""
    runs = [name for name, tables in shipped.items() if profile in tables]
    assert runs, f"no scenario has a {profile!r} profile"
    for name in runs:
        assert written[name][profile].pop("duration_s") == duration_s, name
        shipped[name][profile].pop("duration_s")
    assert written == shipped, "shortening the profiles changed more than the durations"


def high_contention_profile(path: Path, *, users: int, duration_s: int) -> Path:
    """Write a profiles file of high_contention alone: its real codes and thresholds, and a
    short smoke run of ``users`` users for ``duration_s`` seconds (one process, 10 units)."""
    scenario = "high_contention"
    shared = tomllib.loads(DEFAULT_PROFILES_PATH.read_text())[scenario]
    codes = ", ".join(json.dumps(code) for code in shared["expected_error_codes"])
    thresholds = "\n".join(f"{key} = {value}" for key, value in shared["thresholds"].items())
    path.write_text(
        f"[{scenario}]\nexpected_error_codes = [{codes}]\n\n[{scenario}.thresholds]\n"
        f"{thresholds}\n\n[{scenario}.smoke]\nusers = {users}\nduration_s = {duration_s}\n"
        "ramp_up_s = 0\nthink_time_s = [0.1, 0.3]\nprocesses = 1\nunits_per_request = 10\n"
    )
    return path
