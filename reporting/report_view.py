"""What the report shows beyond the raw figures: settings in words, outcomes, the integrity grid.

Pure functions from result.json / summary.json sections to plain values the templates print.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from results.outcomes import ALL_OPERATIONS, NO_CODE, SUCCESS, UNEXPECTED

# An integrity check's state in one scenario, as the grid prints it.
CHECK_OK = "ok"
CHECK_NOT_APPLICABLE = "n/a"
CHECK_NOT_CHECKED = "not checked"
CHECK_VIOLATED = "violated"
CHECK_MISSING = "not verified"  # the scenario has no integrity.json
NOT_APPLICABLE_PREFIX = "not applicable"


def words(code: str) -> str:
    """Return a problem code as words: `insufficient_units` → `insufficient units`."""
    return code.replace("_", " ")


def _count(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def settings_in_words(config: Mapping[str, Any], load_model: str | None = None) -> str:
    """Describe a scenario's settings as a sentence.

    E.g. "30 users for 15 s, 0.1–0.3 s think time, 10 units a request, expected refusals:
    insufficient units".
    """
    users = config.get("users")
    duration = config.get("duration_s")
    rate = config.get("arrival_rate_rps")
    parts: list[str] = []
    span = f" for {_count(float(duration))} s" if duration is not None else ""
    if rate is not None or load_model == "open":
        who = f" from {_count(users)} users" if users is not None else ""
        offered = f"{_count(float(rate))} requests/s" if rate is not None else "an arrival rate"
        parts.append(f"{offered} offered{who}{span} (open model)")
    elif users is not None:
        parts.append(f"{_count(users)} {'user' if users == 1 else 'users'}{span}")
    ramp = config.get("ramp_up_s")
    if ramp:
        parts.append(f"started over {_count(float(ramp))} s")
    think = config.get("think_time_range_s")
    if think and len(think) == 2 and any(think):
        low, high = (float(t) for t in think)
        span_text = f"{low:g}–{high:g} s" if low != high else f"{low:g} s"
        parts.append(f"{span_text} think time")
    elif think is None and config.get("think_time_s"):
        parts.append(f"{float(config['think_time_s']):g} s think time")
    processes = config.get("processes")
    if processes and processes > 1:
        parts.append(f"{processes} generator processes")
    units = config.get("units_per_request")
    if units is not None:
        parts.append(f"{_count(units)} {'unit' if units == 1 else 'units'} a request")
    expected = [words(str(code)) for code in config.get("expected_error_codes") or []]
    parts.append(f"expected refusals: {', '.join(expected)}" if expected else "no refusal expected")
    if config.get("required_model"):
        parts.append(f"required isolation: {words(str(config['required_model']))}")
    return ", ".join(parts)


def error_split(
    requests: int,
    errors: int,
    by_code: Mapping[str, int],
    expected_codes: Sequence[str],
    outcomes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Split a scenario's (or an operation's) errors into expected refusals and unexpected ones.

    From result.json's `outcomes` when it has them; else (results written before) from the
    counts by code: an expected refusal carries one of ``expected_codes``, every other error is
    unexpected, a failure without a code too.
    """
    if outcomes:
        expected = int(outcomes.get("expected_errors") or 0)
        unexpected = int(outcomes.get("unexpected_errors") or 0)
        expected_by_code = dict(outcomes.get("expected_by_code") or {})
        unexpected_by_code = dict(outcomes.get("unexpected_by_code") or {})
        if "unexpected_by_code" not in outcomes:  # an operation's: its unexpected codes
            unexpected_by_code = {
                c: int(n) for c, n in by_code.items() if c not in expected_by_code and n
            }
    else:
        codes = set(expected_codes)
        expected_by_code = {c: int(n) for c, n in by_code.items() if c in codes and n}
        unexpected_by_code = {c: int(n) for c, n in by_code.items() if c not in codes and n}
        expected = sum(expected_by_code.values())
        unexpected = max(errors - expected, 0)
        uncoded = unexpected - sum(unexpected_by_code.values())
        if uncoded > 0:
            unexpected_by_code[NO_CODE] = uncoded
    return {
        "succeeded": max(requests - expected - unexpected, 0),
        "expected_errors": expected,
        "unexpected_errors": unexpected,
        "expected_error_rate": expected / requests if requests else 0.0,
        "unexpected_error_rate": unexpected / requests if requests else 0.0,
        "expected_by_code": expected_by_code,
        "unexpected_by_code": unexpected_by_code,
    }


def latency_by_outcome(outcomes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Return the rows of the latency table: per operation and outcome, with a readable label."""
    rows = []
    for row in (outcomes or {}).get("latency_ms") or []:
        outcome = str(row.get("outcome"))
        kind = outcome if outcome in (SUCCESS, UNEXPECTED) else "expected"
        label = {SUCCESS: "success", UNEXPECTED: "unexpected error"}.get(outcome)
        rows.append(
            {
                **row,
                "all": row.get("operation") == ALL_OPERATIONS,
                "kind": kind,
                "label": label or f"refused: {words(outcome)}",
            }
        )
    return rows


def operation_outcomes(outcomes: Mapping[str, Any] | None, operation: str) -> dict[str, Any]:
    """Return one operation's counts by outcome from `outcomes` (empty without them)."""
    rows = [r for r in (outcomes or {}).get("latency_ms") or [] if r.get("operation") == operation]
    if not rows:
        return {}
    counts = {str(r["outcome"]): int(r["count"]) for r in rows}
    expected = {k: n for k, n in counts.items() if k not in (SUCCESS, UNEXPECTED)}
    return {
        "requests": sum(counts.values()),
        "expected_errors": sum(expected.values()),
        "unexpected_errors": counts.get(UNEXPECTED, 0),
        "expected_by_code": expected,
    }


def check_status(check: Mapping[str, Any]) -> str:
    """Return an integrity check's state: ok, n/a, not checked or violated."""
    if not check.get("ok"):
        return CHECK_VIOLATED
    if check.get("checked", True) is False:
        return CHECK_NOT_CHECKED
    if str(check.get("detail") or "").startswith(NOT_APPLICABLE_PREFIX):
        return CHECK_NOT_APPLICABLE
    return CHECK_OK


def integrity_grid(scenarios: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the integrity checks as one grid: a row per check, a cell per scenario.

    Each cell: the check's state there, its violations, its detail (shown on hover) and the
    anchor of its details when it did not simply hold. The grid lists every check any scenario
    ran, in the order they ran.
    """
    names: list[str] = []
    descriptions: dict[str, str] = {}
    for scenario in scenarios:
        for check in (scenario.get("integrity") or {}).get("checks") or []:
            name = str(check.get("name"))
            if name not in descriptions:
                names.append(name)
                descriptions[name] = str(check.get("description") or "")
    rows = []
    for name in names:
        cells = []
        for scenario in scenarios:
            integrity = scenario.get("integrity")
            checks = {c.get("name"): c for c in (integrity or {}).get("checks") or []}
            check = checks.get(name)
            if integrity is None or check is None:
                state = CHECK_MISSING if integrity is None else CHECK_NOT_CHECKED
                cells.append({"status": state, "violations": 0, "detail": "", "anchor": None})
                continue
            state = check_status(check)
            failing = state in (CHECK_VIOLATED, CHECK_NOT_CHECKED)
            cells.append(
                {
                    "status": state,
                    "violations": int(check.get("violations") or 0),
                    "detail": str(check.get("detail") or ""),
                    "anchor": f"integrity-{scenario.get('scenario')}-{name}" if failing else None,
                }
            )
        rows.append({"name": name, "description": descriptions[name], "cells": cells})
    details = [
        {"scenario": scenario.get("scenario"), "check": check, "status": check_status(check)}
        for scenario in scenarios
        for check in (scenario.get("integrity") or {}).get("checks") or []
        if check_status(check) in (CHECK_VIOLATED, CHECK_NOT_CHECKED)
    ]
    return {
        "scenarios": [s.get("scenario") for s in scenarios],
        "rows": rows,
        "details": details,
        "missing": [s.get("scenario") for s in scenarios if s.get("integrity") is None],
    }
