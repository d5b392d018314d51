"""The strategy matrix: pool each strategy's repeated runs, compare them, recommend one.

Pure functions over loaded runs (reporting.compare_inputs) and their summary.json documents.
A strategy *meets every threshold* when, in every repeat, every threshold of every scenario
passed and every integrity check held. Its *headroom* is the smallest margin left to any
threshold in any repeat, as a share of the limit ((limit - measured) / limit; for a minimum,
(measured - limit) / limit). The recommendation is the strategy that meets every threshold
with the largest headroom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reporting.compare import (
    DEFAULT_MARGINS,
    Margin,
    compare_scenario,
    metric_values,
)
from reporting.compare_inputs import RunSample, pooled_sample

ERROR_RATE_MIN = "error_rate_min"
MATRIX_KIND = "clinic-loadtest-matrix"


@dataclass(frozen=True)
class StrategyRuns:
    """One strategy's repeated runs: the loaded records and each run's summary.json."""

    strategy: str
    runs: tuple[RunSample, ...]
    summaries: tuple[Mapping[str, Any], ...]


def headroom(summaries: Sequence[Mapping[str, Any]]) -> tuple[float | None, str | None]:
    """Return the smallest margin to any threshold over the runs, and which threshold it was."""
    smallest: tuple[float | None, str | None] = (None, None)
    for summary in summaries:
        for scenario in summary.get("scenarios") or []:
            for check in scenario.get("thresholds") or []:
                limit, measured = check.get("limit"), check.get("measured")
                if measured is None or not limit:
                    margin = -1.0  # nothing measured: no margin at all
                elif check.get("name") == ERROR_RATE_MIN:
                    margin = (measured - limit) / limit
                else:
                    margin = (limit - measured) / limit
                if smallest[0] is None or margin < smallest[0]:
                    smallest = (margin, f"{scenario.get('scenario')} {check.get('name')}")
    return smallest


def meets_every_threshold(summaries: Sequence[Mapping[str, Any]]) -> bool:
    """Tell whether every threshold passed and integrity held in every run."""
    return bool(summaries) and all(
        scenario.get("integrity") is not None
        and scenario["integrity"].get("ok")
        and all(check.get("ok") for check in scenario.get("thresholds") or [])
        for summary in summaries
        for scenario in summary.get("scenarios") or []
    )


def integrity_violations(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Return one line per integrity check that failed, with its run and violation count."""
    lines = []
    for summary in summaries:
        for scenario in summary.get("scenarios") or []:
            for check in (scenario.get("integrity") or {}).get("checks") or []:
                if not check.get("ok"):
                    lines.append(
                        f"{summary.get('run_id')} {scenario.get('scenario')}: {check.get('name')} "
                        f"({check.get('violations')} violation(s))"
                    )
    return lines


def cell_figures(summaries: Sequence[Mapping[str, Any]], scenario: str) -> dict[str, Any]:
    """Return one cell's figures for one scenario, over its repeats.

    Anomalies are the integrity checks that failed, by rule, and the history's isolation
    anomalies its required model forbids, by kind, summed over the repeats; the costs
    (retries, service and PostgreSQL CPU per committed operation, committed operations per
    second) and p95/p99 are the repeats' medians.
    """
    anomalies: dict[str, int] = {}
    costs: dict[str, list[float]] = {}
    for summary in summaries:
        for entry in summary.get("scenarios") or []:
            if entry.get("scenario") != scenario:
                continue
            for check in (entry.get("integrity") or {}).get("checks") or []:
                if not check.get("ok"):
                    name = str(check.get("name"))
                    anomalies[name] = anomalies.get(name, 0) + int(check.get("violations") or 0)
            # The history's isolation anomalies the required model forbids (anomalies.json).
            isolation = entry.get("isolation") or {}
            counts = isolation.get("anomaly_counts") or {}
            for kind in isolation.get("forbidden_kinds") or []:
                anomalies[str(kind)] = anomalies.get(str(kind), 0) + int(counts.get(kind) or 0)
            figures = {**(entry.get("cost") or {}), **(entry.get("latency_ms") or {})}
            for key in CELL_FIGURES:
                if figures.get(key) is not None:
                    costs.setdefault(key, []).append(float(figures[key]))
    medians = {key: _median(costs.get(key, [])) for key in CELL_FIGURES}
    service, database = (
        medians["service_cpu_ms_per_committed"],
        medians["postgres_cpu_ms_per_committed"],
    )
    return {
        "anomalies": anomalies,
        **medians,
        "cpu_ms_per_committed": None if service is None else service + (database or 0.0),
    }


CELL_FIGURES = (
    "committed_per_s",
    "retries_per_committed",
    "service_cpu_ms_per_committed",
    "postgres_cpu_ms_per_committed",
    "p95",
    "p99",
)


def cheapest_without_anomaly(cells: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Name the cell with no anomaly that spent the least CPU per committed operation."""
    clean = {
        name: figures
        for name, figures in cells.items()
        if not figures["anomalies"] and figures.get("cpu_ms_per_committed") is not None
    }
    if not clean:
        return None
    return min(clean, key=lambda name: clean[name]["cpu_ms_per_committed"])


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    value = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return round(value, 3)


def matrix_document(
    strategies: Sequence[StrategyRuns],
    *,
    profile: str,
    repeats: int,
    margins: Mapping[str, Margin] = DEFAULT_MARGINS,
) -> dict[str, Any]:
    """Return matrix.json: per strategy its pooled figures, verdicts, headroom, violations;
    per scenario each strategy against the first with bootstrap intervals, judged with the
    comparison's margins (reporting.compare); the recommendation.
    """
    loaded = [entry for entry in strategies if entry.runs]
    if not loaded:
        raise ValueError("no strategy has a run with records to compare")
    reference = loaded[0]
    scenarios = sorted(reference.runs[0].scenarios)
    rows = []
    for entry in strategies:
        margin, tightest = headroom(entry.summaries)
        rows.append(
            {
                "strategy": entry.strategy,
                "runs": [run.run_id for run in entry.runs],
                "verdicts": [
                    (summary.get("verdict") or {}).get("decision") for summary in entry.summaries
                ],
                "meets_every_threshold": meets_every_threshold(entry.summaries),
                "headroom": margin,
                "tightest_threshold": tightest,
                "integrity_violations": integrity_violations(entry.summaries),
                "scenarios": {
                    name: {
                        **metric_values(pooled_sample(entry.runs, name).blocks),
                        "integrity_ok": pooled_sample(entry.runs, name).integrity_ok,
                    }
                    for name in scenarios
                    if entry.runs
                },
            }
        )
    against_reference = {
        entry.strategy: {
            name: [
                vars(metric)
                for metric in compare_scenario(
                    pooled_sample(reference.runs, name),
                    pooled_sample(entry.runs, name),
                    margins=margins,
                ).metrics
            ]
            for name in scenarios
        }
        for entry in loaded[1:]
    }
    cells = {
        name: {entry.strategy: cell_figures(entry.summaries, name) for entry in strategies}
        for name in scenarios
    }
    eligible = [row for row in rows if row["meets_every_threshold"]]
    best = max(eligible, key=lambda row: row["headroom"] or 0.0) if eligible else None
    return {
        "schema_version": 1,
        "kind": MATRIX_KIND,
        "profile": profile,
        "repeats": repeats,
        "order": "interleaved: each repeat runs every strategy once, in the order given",
        "reference": reference.strategy,
        "scenarios": scenarios,
        "strategies": rows,
        "against_reference": against_reference,
        "recommendation": None if best is None else best["strategy"],
        "recommendation_reason": _reason(best, rows),
        # Per scenario: each cell's anomalies and costs, and the cheapest cell with no anomaly.
        "cells": cells,
        "cheapest_without_anomaly": {
            name: cheapest_without_anomaly(by_cell) for name, by_cell in cells.items()
        },
    }


def _reason(best: Mapping[str, Any] | None, rows: Sequence[Mapping[str, Any]]) -> str:
    if best is None:
        closest = max(
            rows, key=lambda row: row["headroom"] if row["headroom"] is not None else -1e9
        )
        return (
            "no strategy met every threshold with integrity intact in every repeat; closest: "
            f"{closest['strategy']} ({closest['tightest_threshold']})"
        )
    others = [row["strategy"] for row in rows if row is not best and row["meets_every_threshold"]]
    margin = best["headroom"]
    text = (
        f"{best['strategy']} met every threshold with integrity intact in every repeat, "
        f"with {margin * 100:.0f} % headroom at its tightest ({best['tightest_threshold']})"
    )
    return text + (f"; more than {', '.join(others)}" if others else "; the only one that did")
