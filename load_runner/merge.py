"""Merge shard result folders into one scenario result, exactly, as if one host had run it all.

Every shard's records are read back from its raw/ folder and put together (a request id or an
operation's attempt seen twice is refused: the shards' id prefixes make that impossible unless
a folder was given twice). Their times already count from the shared start, on the service's
clock (load_runner/sharding.py), so percentiles, histogram and per-second series are recomputed
from all of them by the same code a single-host run uses (runner.build_result), and the files
the integrity checks read (operations.csv, unanswered.csv, history.jsonl) hold the union.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load_runner.profiles import ScenarioConfig, Thresholds
from load_runner.runner import (
    MolotovOutcome,
    build_result,
    write_results,
)
from results.collect import collect
from results.files import RAW_DIR, RESULT_FILE, SERVICE_FILE
from results.merge import (
    ShardMergeError,
    check_shards,
    merged_config,
    merged_generator,
    merged_run,
    shards_section,
)
from results.organizations import read_organization_index


@dataclass(frozen=True)
class MergedRun:
    """The merged scenario folder, its result, and the shards that were missing."""

    scenario: str
    profile: str
    result_dir: Path
    result: dict[str, Any]
    missing: tuple[str, ...]


def find_shard_results(paths: list[Path]) -> list[Path]:
    """Return the shard result folders under ``paths``: each a shard's --run-dir, its scenario
    folder, or a folder holding several shards' --run-dir (one or two levels down)."""
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise ShardMergeError(f"shard folder {path} does not exist")
        candidates = [
            result.parent
            for pattern in (RESULT_FILE, f"*/{RESULT_FILE}", f"*/*/{RESULT_FILE}")
            for result in sorted(path.glob(pattern))
            if _is_shard_result(result)
        ]
        # The nearest level wins: a shard's own folder also holds deeper files of its own.
        if not candidates:
            raise ShardMergeError(f"no shard results (*/{RESULT_FILE} with a shard) in {path}")
        depth = min(len(c.relative_to(path).parts) for c in candidates)
        found += [c for c in candidates if len(c.relative_to(path).parts) == depth]
    return found


def merge_shards(
    paths: list[Path],
    out_dir: Path,
    *,
    allow_missing: bool = False,
    fixtures_path: Path | None = None,
) -> MergedRun:
    """Merge the shards under ``paths`` into ``out_dir``/<scenario>/; raise ShardMergeError on
    shards that do not belong together, before anything is written.

    ``fixtures_path``: the run's fixtures, for the figures per organization (null without).
    """
    folders = find_shard_results(paths)
    results = [(str(folder), read_shard_result(folder)) for folder in folders]
    missing = check_shards(results, allow_missing=allow_missing)
    results.sort(key=lambda pair: int(pair[1]["shard"]["index"]))
    documents = [result for _, result in results]
    # Every shard's records into one compact table (results/collect.py), read once.
    collected = collect([Path(folder) / RAW_DIR for folder, _ in results])
    if collected.duplicate:
        raise ShardMergeError(f"the shards overlap: {collected.duplicate}")
    first = documents[0]
    start_at = float(first["shard"]["start_at"])
    # Every shard's records count from the shared start (service clock).
    merged = dataclasses.replace(collected, run_start_epoch=start_at, problems=[])
    config = _config_from_result(first["scenario"], first["profile"], merged_config(documents))
    outcome = MolotovOutcome(
        exit_code=0,
        timed_out=False,
        wall_s=max(float(r["duration_s"]) for r in documents),
        cpu_seconds=sum(float(r["generator"]["cpu_seconds"]) for r in documents),
        stderr_tail="",
    )
    organizations = read_organization_index(fixtures_path) if fixtures_path else None
    result = build_result(config, first["target_url"], outcome, merged, start_at, organizations)
    count = int(first["shard"]["count"])
    result["run"] = merged_run(documents, missing=missing, count=count)
    result["generator"] = merged_generator(
        documents,
        loop_lag_ms=[lag for process in collected.processes for lag in process.loop_lag_ms],
        duration_s=float(result["duration_s"]),
    )
    result["shards"] = shards_section(results, missing=missing)
    result_dir = out_dir / config.scenario
    if result_dir.exists():
        shutil.rmtree(result_dir)
    write_results(result_dir, result, merged)
    _copy_service_watch(results, result_dir)
    return MergedRun(
        scenario=config.scenario,
        profile=config.profile,
        result_dir=result_dir,
        result=result,
        missing=tuple(result["shards"]["missing"]),
    )


def _config_from_result(scenario: str, profile: str, config: dict[str, Any]) -> ScenarioConfig:
    low, high = config["think_time_range_s"]
    return ScenarioConfig(
        scenario=scenario,
        profile=profile,
        users=int(config["users"]),
        duration_s=float(config["duration_s"]),
        ramp_up_s=float(config["ramp_up_s"]),
        think_time_s=(float(low), float(high)),
        processes=int(config["processes"]),
        units_per_request=int(config["units_per_request"]),
        arrival_rate_rps=config.get("arrival_rate_rps"),
        thresholds=Thresholds(**config["thresholds"]),
        expected_error_codes=tuple(config.get("expected_error_codes") or ()),
    )


def _copy_service_watch(results: list[tuple[str, dict[str, Any]]], result_dir: Path) -> None:
    for folder, result in results:
        source = Path(folder) / SERVICE_FILE
        if result["shard"].get("watched_service") and source.exists():
            shutil.copyfile(source, result_dir / SERVICE_FILE)
            return


def _is_shard_result(path: Path) -> bool:
    try:
        return "shard" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def read_shard_result(folder: Path) -> dict[str, Any]:
    try:
        document = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ShardMergeError(f"{folder / RESULT_FILE} is unreadable: {error}") from None
    if not isinstance(document, dict):
        raise ShardMergeError(f"{folder / RESULT_FILE} does not hold a JSON object")
    return document
