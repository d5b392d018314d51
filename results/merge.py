"""Merge the result.json documents of a sharded run: what is checked, summed or kept per shard.

The request figures (percentiles, histogram, per-second series, counts) are never merged from
the shards' summaries: load_runner/merge.py recomputes them from every shard's records. This
module holds the rest: whether the shards belong together, which are missing, and the parts
that are summed (configuration, generator CPU) or kept for each shard (generator health, run
outcome, clock offset).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from results.latency import percentile

RUN_FIELDS = ("scenario", "profile", "start_at", "count")


class ShardMergeError(ValueError):
    """Shards that cannot be merged; the message is the one line the user sees."""


def shard_of(result: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """Return a result's `shard` section; refuse a result that is not a shard's."""
    shard = result.get("shard")
    if not isinstance(shard, Mapping):
        raise ShardMergeError(f"{where} is not a shard's result (no `shard` section)")
    return shard


def check_shards(
    results: Sequence[tuple[str, Mapping[str, Any]]], *, allow_missing: bool
) -> list[int]:
    """Check that (folder, result) pairs are shards of one run; return the missing indexes.

    Refuses shards of different scenarios, profiles, start times or shard counts, a shard given
    twice, and (unless ``allow_missing``) a missing shard.
    """
    if not results:
        raise ShardMergeError("no shard results to merge")
    first_where, first = results[0]
    reference = _run_identity(first, first_where)
    seen: dict[int, str] = {}
    for where, result in results:
        identity = _run_identity(result, where)
        for field, value in identity.items():
            if value != reference[field]:
                raise ShardMergeError(
                    f"shards of different runs: {first_where} has {field} {reference[field]!r}, "
                    f"{where} has {value!r}"
                )
        index = int(shard_of(result, where)["index"])
        if index in seen:
            raise ShardMergeError(f"shard {index}/{reference['count']} given twice: {seen[index]} "
                                  f"and {where}")  # fmt: skip
        seen[index] = where
    count = int(reference["count"])
    missing = [index for index in range(1, count + 1) if index not in seen]
    if missing and not allow_missing:
        raise ShardMergeError(
            f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing; "
            "--allow-missing merges the others and the report says what is missing"
        )
    return missing


def _run_identity(result: Mapping[str, Any], where: str) -> dict[str, Any]:
    shard = shard_of(result, where)
    return {
        "scenario": result.get("scenario"),
        "profile": result.get("profile"),
        "start_at": shard.get("start_at"),
        "count": shard.get("count"),
    }


def merged_config(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the whole run's configuration: the shards' users, processes and rates summed."""
    config = dict(results[0]["config"])
    config["users"] = sum(int(r["config"]["users"]) for r in results)
    config["processes"] = sum(int(r["config"]["processes"]) for r in results)
    rates = [r["config"].get("arrival_rate_rps") for r in results]
    config["arrival_rate_rps"] = None if rates[0] is None else round(sum(rates), 9)
    return config


def merged_generator(
    results: Sequence[Mapping[str, Any]],
    *,
    loop_lag_ms: Sequence[float],
    duration_s: float,
) -> dict[str, Any]:
    """Sum the generator's CPU over the shards and keep each shard's own health section.

    The run's generator was a bottleneck when any shard's was; its reasons name the shard.
    The event-loop lag percentiles are recomputed from every process's samples.
    """
    lags = sorted(loop_lag_ms)
    cpu_seconds = sum(float(r["generator"]["cpu_seconds"]) for r in results)
    cpus = sum(int(r["shard"].get("cpu_count") or 1) for r in results)
    reasons = [
        f"shard {_label(r)}: {reason}" for r in results for reason in r["generator"]["reasons"]
    ]
    capacity = duration_s * cpus
    return {
        "processes": sum(int(r["generator"]["processes"]) for r in results),
        "cpu_seconds": round(cpu_seconds, 3),
        "cpu_share_of_machine": round(cpu_seconds / capacity, 4) if capacity > 0 else 0.0,
        "loop_lag_p99_ms": round(percentile(lags, 99) or 0.0, 3),
        "loop_lag_max_ms": round(lags[-1] if lags else 0.0, 3),
        "bottleneck": any(r["generator"]["bottleneck"] for r in results),
        "reasons": reasons,
        "shards": [{"shard": _label(r), **r["generator"]} for r in results],
    }


def merged_run(
    results: Sequence[Mapping[str, Any]], *, missing: Sequence[int], count: int
) -> dict[str, Any]:
    """Combine the shards' run outcomes: crashed if any shard crashed or a shard is missing."""
    reasons = [f"shard {_label(r)}: {reason}" for r in results for reason in r["run"]["reasons"]]
    if missing:
        listed = ", ".join(f"{index}/{count}" for index in missing)
        reasons.append(
            f"shard(s) {listed} missing: merged without them (--allow-missing), so the run "
            f"carried {count - len(missing)} of {count} shards' load"
        )
    codes = [r["run"].get("exit_code") for r in results]
    exit_code = next((code for code in codes if code != 0), 0)
    tails = [f"[shard {_label(r)}] {r['run']['stderr_tail']}" for r in results
             if r["run"].get("stderr_tail")]  # fmt: skip
    # The verdict quotes the last line of the tail: make it the first reason.
    tail = "\n".join([*tails, *reasons[:1]])
    return {
        "exit_code": exit_code,
        "crashed": bool(reasons),
        "timed_out": any(r["run"].get("timed_out") for r in results),
        "stderr_tail": tail[-2000:],
        "reasons": reasons,
        "shards": {_label(r): r["run"] for r in results},
    }


def shards_section(
    results: Sequence[tuple[str, Mapping[str, Any]]], *, missing: Sequence[int]
) -> dict[str, Any]:
    """Describe the shards merged: where each came from, its clock offset and its share."""
    first = results[0][1]["shard"]
    return {
        "count": int(first["count"]),
        "start_at": first["start_at"],
        "run_key": first.get("run_key"),
        "merged": [
            {
                "shard": _label(result),
                "folder": folder,
                "requests": result["totals"]["requests"],
                "users": result["config"]["users"],
                "arrival_rate_rps": result["config"].get("arrival_rate_rps"),
                "clock": result["shard"].get("clock"),
                "cpu_count": result["shard"].get("cpu_count"),
            }
            for folder, result in results
        ],
        "missing": [f"{index}/{first['count']}" for index in missing],
    }


def _label(result: Mapping[str, Any]) -> str:
    return f"{result['shard']['index']}/{result['shard']['count']}"
