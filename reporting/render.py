"""Render the summary into report.html and PERFORMANCE_TEST_RESULTS.md with Jinja2."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, FileSystemLoader, Undefined
from markupsafe import Markup

from reporting.capacity_charts import latency_vs_rate_svg, throughput_vs_rate_svg
from reporting.charts import (
    FaultBand,
    histogram_svg,
    latency_over_time_svg,
    retries_over_time_svg,
    throughput_over_time_svg,
)
from reporting.records import RunRecord
from reporting.report_view import integrity_grid
from reporting.retry_storms import retry_series

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "report_templates"
HTML_TEMPLATE = "report.html.j2"
MARKDOWN_TEMPLATE = "PERFORMANCE_TEST_RESULTS.md.j2"
PERCENTILE_KEYS = ("p50", "p90", "p95", "p99", "max", "mean")
MISSING = "—"


def environment() -> Environment:
    """Return the Jinja2 environment: HTML escaped, Markdown left as written."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        # Optional parts of a run (facts, a scenario without result) render as blanks.
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(ms=format_ms, pct=format_pct, rate=format_rate, num=format_number)
    return env


def render_html(summary: dict[str, Any], record: RunRecord) -> str:
    """Render the self-contained HTML report (inline CSS and SVG)."""
    charts = {
        evidence.scenario: _charts(
            evidence.scenario,
            evidence.result or {},
            summary,
            fault_bands(evidence.faults),
            dict(evidence.service or {}),
        )
        for evidence in record.scenarios
    }
    return (
        environment()
        .get_template(HTML_TEMPLATE)
        .render(
            summary=summary,
            charts=charts,
            capacity_charts=_capacity_charts(summary.get("capacity")),
            percentile_keys=PERCENTILE_KEYS,
            integrity=integrity_grid(summary.get("scenarios") or []),
        )
    )


def render_markdown(summary: dict[str, Any]) -> str:
    """Render PERFORMANCE_TEST_RESULTS.md: executive summary, figures, recommendation."""
    return (
        environment()
        .get_template(MARKDOWN_TEMPLATE)
        .render(summary=summary, percentile_keys=PERCENTILE_KEYS)
    )


def format_ms(value: Any) -> str:
    """Format a latency in milliseconds, or a dash when nothing was measured."""
    if _missing(value):
        return MISSING
    return f"{float(value):,.1f} ms"


def format_pct(value: Any) -> str:
    """Format a percentage already scaled to 0-100."""
    if _missing(value):
        return MISSING
    if math.isinf(float(value)):
        return "∞ %"
    return f"{float(value):.1f} %"


def format_rate(value: Any) -> str:
    """Format a 0-1 rate as a percentage."""
    return MISSING if _missing(value) else f"{float(value) * 100:.2f} %"


def format_number(value: Any, digits: int = 0) -> str:
    """Format a count or a figure with thousands separators."""
    if _missing(value):
        return MISSING
    return f"{float(value):,.{digits}f}"


def _missing(value: Any) -> bool:
    return value is None or isinstance(value, Undefined)


def fault_bands(faults: Mapping[str, Any] | None) -> list[FaultBand]:
    """Return a chart band for each fault that was injected (skipped ones have no time)."""
    bands = []
    for fault in (faults or {}).get("faults") or []:
        if fault.get("start_s") is None or fault.get("end_s") is None:
            continue
        recovery = fault.get("recovery") or {}
        bands.append(
            FaultBand(
                start_s=float(fault["start_s"]),
                end_s=float(fault["end_s"]),
                recovered_s=recovery.get("recovery_s"),
                label=f"{fault.get('kind')} ({fault.get('outcome')}): {fault.get('target')}",
            )
        )
    return bands


def _charts(
    scenario: str,
    result: dict[str, Any],
    summary: dict[str, Any],
    bands: Sequence[FaultBand] = (),
    service: dict[str, Any] | None = None,
) -> dict[str, Markup]:
    series = result.get("timeseries") or []
    config = result.get("config") or {}
    thresholds = config.get("thresholds") or {}
    limits = [
        (name, float(thresholds[f"{name}_ms"]))
        for name in ("p95", "p99")
        if thresholds.get(f"{name}_ms") is not None
    ]
    return {
        "histogram": Markup(
            histogram_svg(
                result.get("latency_histogram") or [],
                label=f"{scenario}: latency",
                thresholds=limits,
            )
        ),
        "latency": Markup(
            latency_over_time_svg(
                series,
                threshold_ms=thresholds.get("p95_ms"),
                p99_threshold_ms=thresholds.get("p99_ms"),
                label=f"{scenario}: latency over time",
                bands=bands,
            )
        ),
        "throughput": Markup(
            throughput_over_time_svg(
                series,
                label=f"{scenario}: throughput over time",
                bands=bands,
                offered_rps=config.get("arrival_rate_rps"),
            )
        ),
        "retries": Markup(
            retries_over_time_svg(
                retry_series(result, service),
                label=f"{scenario}: serialization retries over time",
                bands=bands,
            )
        ),
    }


def _capacity_charts(capacity: dict[str, Any] | None) -> dict[str, Markup]:
    if not capacity:
        return {}
    steps = capacity.get("steps") or []
    sustainable = (capacity.get("sustainable") or {}).get("rate_rps")
    measured = [s for s in steps if s.get("latency_ms")]
    threshold = None
    if capacity.get("p95_threshold_ms") is not None:
        threshold = float(capacity["p95_threshold_ms"])
    scenario = capacity.get("scenario", "capacity")
    return {
        "latency": Markup(
            latency_vs_rate_svg(
                measured,
                sustainable_rps=sustainable,
                threshold_ms=threshold,
                label=f"{scenario}: latency against offered rate",
            )
        ),
        "throughput": Markup(
            throughput_vs_rate_svg(
                measured, sustainable_rps=sustainable, label=f"{scenario}: achieved throughput"
            )
        ),
    }
