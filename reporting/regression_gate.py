"""The regression gate: a run judged worse than its baseline loses its GO.

Pure: takes the summary and the comparison document (compare.json, written into the run folder
by `load-test.all --baseline`), returns the summary with the comparison and the gate's
findings folded into the verdict. `warn` makes a GO at most CONDITIONAL; `fail` makes it NO-GO.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from reporting.compare import NOISE_COVERED
from reporting.summary import RECOMMENDATIONS
from reporting.verdict import CONDITIONAL, DECISION_ORDER, NO_GO
from results.files import COMPARE_HTML_FILE, COMPARISON_DIR

GATE_WARN = "warn"
GATE_FAIL = "fail"
GATES = (GATE_WARN, GATE_FAIL)
GATE_DECISIONS = {GATE_WARN: CONDITIONAL, GATE_FAIL: NO_GO}
WORSE = "worse"


# Why `fail` needs several runs a side before it fails a build: between two runs of the same
# code, one run a side, 7.6 % of the judgements came out "worse" on a quiet machine, and none
# of 70 at three runs a side (docs/comparing.md). A gate that fails one pull request in a few
# for nothing is switched off; so a call that cannot see the machine's noise only warns.
NOT_COVERED_NOTE = (
    "; at most CONDITIONAL: one run a side cannot tell the machine from the code "
    "(compare several runs a side, e.g. load-test.ab --repeats 3)"
)


def regression_findings(comparison: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return one verdict finding per metric the comparison judged worse.

    Under the `fail` gate a worse metric is NO-GO only when the noise between runs is in its
    interval (several runs on both sides); otherwise it is CONDITIONAL, as under `warn`.
    """
    gate = comparison.get("gate") or GATE_WARN
    decision = GATE_DECISIONS.get(gate, CONDITIONAL)
    base = (comparison.get("base") or {}).get("run_id")
    findings = []
    for scenario in comparison.get("scenarios") or []:
        for metric in scenario.get("metrics") or []:
            if metric.get("judgement") != WORSE:
                continue
            reason = f"regression against baseline {base}: {describe(metric)}"
            softened = decision == NO_GO and not _noise_covered(metric)
            findings.append(
                {
                    "decision": CONDITIONAL if softened else decision,
                    "scenario": scenario.get("scenario"),
                    "reason": reason + (NOT_COVERED_NOTE if softened else ""),
                }
            )
    return findings


def _noise_covered(metric: Mapping[str, Any]) -> bool:
    """Tell whether a judgement's interval holds the noise between runs.

    Integrity is pass or fail, not an interval: a violation the baseline did not have is
    worse however many runs there are.
    """
    if metric.get("metric") == "integrity" or metric.get("low") is None:
        return True
    return metric.get("between_runs") == NOISE_COVERED


def apply_regression_gate(
    summary: Mapping[str, Any], comparison: Mapping[str, Any]
) -> dict[str, Any]:
    """Return a copy of ``summary`` with the comparison attached and its regressions judged."""
    gated = copy.deepcopy(dict(summary))
    findings = regression_findings(comparison)
    gated["comparison"] = {
        "base": comparison.get("base"),
        "gate": comparison.get("gate") or GATE_WARN,
        "margins": margins_text(comparison),
        "runs_note": (comparison.get("method") or {}).get("between_runs_note"),
        "outcome": comparison.get("outcome"),
        "worse": list(comparison.get("worse") or []),
        "better": list(comparison.get("better") or []),
        "regressions": [f"{f['scenario']}: {f['reason']}" for f in findings],
        "html": f"{COMPARISON_DIR}/{COMPARE_HTML_FILE}",
    }
    if not findings:
        return gated
    verdict = gated["verdict"]
    verdict["findings"] = sorted(
        [*verdict.get("findings", []), *findings],
        key=lambda f: -DECISION_ORDER.index(f["decision"]),
    )
    decision = max(
        [verdict["decision"], *(f["decision"] for f in verdict["findings"])],
        key=DECISION_ORDER.index,
    )
    verdict["decision"] = decision
    verdict["reasons"] = [
        f"{f['scenario']}: {f['reason']}" if f.get("scenario") else f["reason"]
        for f in verdict["findings"]
        if f["decision"] == decision
    ]
    gated["recommendation"] = RECOMMENDATIONS[decision]
    return gated


def describe(metric: Mapping[str, Any]) -> str:
    """Say in words how a metric moved: values, difference, interval, margin, runs a side."""
    label = metric.get("label")
    if metric.get("metric") == "integrity" or metric.get("low") is None:
        return f"{label} {_fmt(metric, 'base')} → {_fmt(metric, 'new')}"
    relative = metric.get("relative")
    share = "" if relative is None else f", {relative * 100:+.1f} %"
    runs = f"{metric.get('base_runs', 1)} run(s) against {metric.get('new_runs', 1)}"
    if metric.get("between_runs") != "covered":
        runs += f", noise between runs {metric.get('between_runs', 'not covered')}"
    return (
        f"{label} {_fmt(metric, 'base')} → {_fmt(metric, 'new')} "
        f"({_fmt(metric, 'difference', signed=True)}{share}; 95 % interval "
        f"{_fmt(metric, 'low', signed=True)} to {_fmt(metric, 'high', signed=True)}; margin "
        f"±{_fmt(metric, 'margin')}, {metric.get('margin_rule')}; {runs})"
    )


def margins_text(comparison: Mapping[str, Any]) -> str | None:
    """Say the comparison's margins in one line: "p50 max(1 ms, 5 %), throughput 5 %, ..."."""
    margins = (comparison.get("method") or {}).get("margins") or {}
    return ", ".join(f"{name} {m['rule']}" for name, m in margins.items()) or None


def _fmt(metric: Mapping[str, Any], key: str, *, signed: bool = False) -> str:
    value = metric.get(key)
    if value is None:
        return "—"
    sign = "+" if signed else ""
    unit = metric.get("unit")
    if unit == "ms":
        return f"{value:{sign}.1f} ms"
    if unit == "rps":
        return f"{value:{sign}.1f}/s"
    if unit == "rate":
        return f"{value * 100:{sign}.2f} %"
    return f"{value:{sign}.0f}"
