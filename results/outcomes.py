"""Split requests by outcome: success, each refusal the scenario expects, unexpected errors.

A scenario provokes some refusals on purpose (its `expected_error_codes`: high_contention's
`insufficient_units`); any other failure (401, 422, 5xx, a timeout, no response, a 2xx the
client rejected) is unexpected. Mixing the two hides both: a 97 % "error rate" beside a GO, a
p95 that is mostly the latency of quick refusals. Every figure here keeps them apart, and the
latency is given per operation and per outcome (Gatling's OK and KO).

Pure functions over the compact columns of results.record_table: one sort of the whole run,
then one nearest-rank percentile per group, so a million records stay cheap.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from results.latency import percentile
from results.record_table import RecordTable

OUTCOME_PERCENTILES = (50, 95, 99)
SUCCESS = "success"
UNEXPECTED = "unexpected"
ALL_OPERATIONS = "all"
NO_CODE = "(no code)"  # a failure answered without a problem code, e.g. a bare 502


def outcome_codes(
    table: RecordTable, expected_codes: Iterable[str]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Return each row's outcome as a small integer and the outcome names it indexes.

    Names: "success", then each expected code in the scenario's order, then "unexpected".
    """
    expected = list(dict.fromkeys(code for code in expected_codes if code))
    names = (SUCCESS, *expected, UNEXPECTED)
    unexpected = len(names) - 1
    # The outcome of a failed row, by its code's label: its place among the expected, or not.
    by_label = np.array(
        [expected.index(label) + 1 if label in expected else unexpected
         for label in table.code.labels] or [unexpected],
        dtype=np.int16,
    )  # fmt: skip
    failed = by_label[table.code.codes] if len(table) else np.zeros(0, dtype=np.int16)
    return np.where(table.error, failed, 0).astype(np.int16), names


def summarise_outcomes(table: RecordTable, expected_codes: Iterable[str]) -> dict[str, object]:
    """Return result.json's `outcomes`: counts and latency split by outcome and operation.

    `latency_ms` has a row per (operation, outcome) with requests, then one per outcome over
    every operation (operation "all"); each row: count, p50, p95, p99 and max.
    """
    expected = list(dict.fromkeys(code for code in expected_codes if code))
    outcome, names = outcome_codes(table, expected)
    counts = np.bincount(outcome, minlength=len(names)).tolist()
    unexpected = outcome == len(names) - 1
    requests = len(table)
    return {
        "expected_error_codes": expected,
        "requests": requests,
        "succeeded": counts[0],
        "expected_errors": sum(counts[1:-1]),
        "unexpected_errors": counts[-1],
        "expected_error_rate": _rate(sum(counts[1:-1]), requests),
        "unexpected_error_rate": _rate(counts[-1], requests),
        "expected_by_code": {
            name: n for name, n in zip(names[1:-1], counts[1:-1], strict=True) if n
        },
        "unexpected_by_code": _unexpected_codes(table, unexpected),
        "latency_ms": _latency_groups(table, outcome, names),
    }


def _unexpected_codes(table: RecordTable, rows: np.ndarray) -> dict[str, int]:
    counts = np.bincount(table.code.codes[rows], minlength=len(table.code.labels)).tolist()
    found = {label or NO_CODE: n for label, n in zip(table.code.labels, counts, strict=True) if n}
    return {code: found[code] for code in sorted(found)}


def _latency_groups(
    table: RecordTable, outcome: np.ndarray, names: tuple[str, ...]
) -> list[dict[str, object]]:
    """Return the latency of each (operation, outcome), then of each outcome overall."""
    operations = table.operation
    order = sorted(range(len(operations.labels)), key=lambda code: operations.labels[code])
    rows: list[dict[str, object]] = []
    for code in order:
        mask = operations.codes == code
        if mask.any():
            rows += _groups(operations.labels[code], table.latency_ms[mask], outcome[mask], names)
    if len(order) > 1:
        rows += _groups(ALL_OPERATIONS, table.latency_ms, outcome, names)
    return rows


def _groups(
    operation: str, latency_ms: np.ndarray, outcome: np.ndarray, names: tuple[str, ...]
) -> list[dict[str, object]]:
    # Sorted by outcome, then latency: each outcome's latencies are one sorted slice.
    ordering = np.lexsort((latency_ms, outcome))
    ordered, groups = latency_ms[ordering], outcome[ordering]
    bounds = np.searchsorted(groups, np.arange(len(names) + 1), side="left")
    rows = []
    for index, name in enumerate(names):
        values = ordered[bounds[index] : bounds[index + 1]]
        if not len(values):
            continue
        row: dict[str, object] = {"operation": operation, "outcome": name, "count": len(values)}
        for percent in OUTCOME_PERCENTILES:
            row[f"p{percent}"] = round(float(percentile(values, percent) or 0.0), 3)
        row["max"] = round(float(values[-1]), 3)
        rows.append(row)
    return rows


def _rate(count: int, requests: int) -> float:
    return round(count / requests, 6) if requests else 0.0
