"""Report rendering on hand-made run folders: figures, verdict, offending rows, charts."""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from reporting.charts import (
    histogram_svg,
    latency_over_time_svg,
    retries_over_time_svg,
    throughput_over_time_svg,
)
from reporting.records import ReportInputError, load_run
from reporting.report import write_report
from reporting.report_view import settings_in_words
from reporting.retry_storms import retry_series
from reporting.summary import SEQ_SCAN_WARNING, UNSAFE_NOTE
from reporting.svg import nice_ticks
from results.record_format import Record
from results.summary import summarise_requests

CLEAN_CHECKS = [
    {"name": n, "description": f"{n} holds", "ok": True, "violations": 0, "rows": [], "detail": ""}
    for n in ("no_overbooking", "ledger_consistency", "client_reconciliation")
]


def scenario_result(name: str, *, requests: int, p95: float, errors: int = 0) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "scenario": name,
        "profile": "smoke",
        "load_model": "closed",
        "started_at": "2026-11-26T21:00:00+00:00",
        "ended_at": "2026-11-26T21:00:05+00:00",
        "duration_s": 5.0,
        "config": {
            "users": 10,
            "duration_s": 5,
            "units_per_request": 10,
            "thresholds": {"p95_ms": 200, "p99_ms": 500, "error_rate_max": 0.05},
        },
        "run": {"exit_code": 0, "crashed": False, "timed_out": False, "stderr_tail": ""},
        "totals": {
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests,
            "throughput_rps": requests / 5,
        },
        "by_operation": {
            "reserve": {"requests": requests, "errors": errors, "by_status": {"200": requests}}
        },
        "by_status": {"200": requests - errors, **({"409": errors} if errors else {})},
        "by_code": {"insufficient_units": errors} if errors else {},
        "latency_ms": {
            "count": requests,
            "mean": 40.0,
            "p50": 30.0,
            "p90": 80.0,
            "p95": p95,
            "p99": 300.0,
            "max": 420.0,
        },
        "latency_histogram": [
            {"upper_ms": 10, "count": 0},
            {"upper_ms": 50, "count": requests - 20},
            {"upper_ms": 200, "count": 15},
            {"upper_ms": 500, "count": 5},
            {"upper_ms": 1000, "count": 0},
        ],
        "timeseries": [
            {
                "second": s,
                "requests": requests // 5,
                "errors": 0,
                "p50_ms": 30.0,
                "p95_ms": p95,
                "p99_ms": 300.0,
            }
            for s in range(5)
        ],
        "generator": {
            "processes": 2,
            "cpu_seconds": 1.5,
            "cpu_share_of_machine": 0.15,
            "loop_lag_p99_ms": 2.0,
            "loop_lag_max_ms": 4.0,
            "bottleneck": False,
            "reasons": [],
        },
    }


def make_run(
    tmp_path: Path,
    *,
    integrity_ok: bool = True,
    p95: float = 120.5,
    facts: dict[str, Any] | None = None,
    skip_result: str | None = None,
) -> Path:
    run_dir = tmp_path / "20261126T210000Z-abc1234"
    run_dir.mkdir()
    run = {
        "schema_version": 1,
        "run_id": run_dir.name,
        "profile": "smoke",
        "strategy": "serializable",
        "workers": 1,
        "started_at": "2026-11-26T20:59:00+00:00",
        "ended_at": "2026-11-26T21:01:00+00:00",
        "duration_s": 120.0,
        "scenarios": ["high_contention", "high_throughput"],
        "steps": [
            {
                "name": "setup",
                "started_at": "2026-11-26T20:59:00+00:00",
                "duration_s": 20.0,
                "ok": True,
                "error": None,
            }
        ],
        "facts": facts or {},
    }
    (run_dir / "run.json").write_text(json.dumps(run))
    for name, requests, errors in (("high_contention", 500, 480), ("high_throughput", 2000, 0)):
        folder = run_dir / name
        folder.mkdir()
        if name != skip_result:
            result = scenario_result(name, requests=requests, p95=p95, errors=errors)
            if name == "high_contention":
                result["config"]["thresholds"] = {"p95_ms": 200, "error_rate_min": 0.5}
            (folder / "result.json").write_text(json.dumps(result))
        checks = [dict(c) for c in CLEAN_CHECKS]
        if not integrity_ok and name == "high_contention":
            checks[1] = {
                "name": "ledger_consistency",
                "description": "counters match the ledger",
                "ok": False,
                "violations": 2,
                "detail": "",
                "rows": [
                    {
                        "authorization_id": "a-1",
                        "scheduled_units": 50,
                        "expected_scheduled_units": 5000,
                        "problem": "counter_drift",
                    }
                ],
            }
        integrity = {
            "schema_version": 1,
            "ok": all(c["ok"] for c in checks),
            "checks": checks,
            "client_operations": requests - errors,
            "ledger_rows": requests - errors,
        }
        (folder / "integrity.json").write_text(json.dumps(integrity))
        service = {
            "alive": True,
            "events": [],
            "healthz": {"checks": 5, "failures": 0},
            "delta": {"db_serialization_retries_total": 12.0},
        }
        (folder / "service.json").write_text(json.dumps(service))
    return run_dir


class TextAndTags(HTMLParser):
    """Collect the visible text and the tags of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> TextAndTags:
    parser = TextAndTags()
    parser.feed(html)
    return parser


def test_clean_run_is_go_and_figures_match_the_results(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    files = write_report(run_dir)
    summary = json.loads(files.summary_path.read_text())
    assert summary["schema_version"] == 1
    assert summary["verdict"]["decision"] == files.decision == "GO"
    assert summary["totals"] == {"requests": 2500, "errors": 480}
    assert [s["scenario"] for s in summary["scenarios"]] == ["high_contention", "high_throughput"]
    hc = summary["scenarios"][0]
    assert (hc["error_rate"], hc["latency_ms"]["p95"]) == (0.96, 120.5)
    assert [(t["name"], t["ok"]) for t in hc["thresholds"]] == [
        ("p95_ms", True),
        ("error_rate_min", True),
    ]
    page = parse(files.html_path.read_text())
    text = " ".join(page.text)
    assert "GO" in text
    assert "120.5 ms" in text
    assert text.count("holds") >= 2


def test_report_is_self_contained(tmp_path: Path) -> None:
    html = write_report(make_run(tmp_path)).html_path.read_text()
    page = parse(html)
    tag_names = {tag for tag, _ in page.tags}
    assert "script" not in tag_names
    assert "link" not in tag_names
    assert "img" not in tag_names
    assert sum(tag == "svg" for tag, _ in page.tags) == 8  # four charts per scenario
    external = [
        a
        for _, attrs in page.tags
        for k, a in attrs.items()
        if k in ("src", "href") and a and not a.startswith("#")
    ]
    assert external == []


def test_integrity_violation_is_no_go_with_the_offending_rows(tmp_path: Path) -> None:
    files = write_report(make_run(tmp_path, integrity_ok=False))
    assert files.decision == "NO-GO"
    assert files.summary["verdict"]["reasons"] == [
        "high_contention: integrity check ledger_consistency failed with 2 violations "
        "(first: counter_drift on a-1)"
    ]
    text = " ".join(parse(files.html_path.read_text()).text)
    assert "a-1" in text
    assert "5000" in text
    assert "offending rows" in text
    assert "1 shown of 2" in re.sub(r"\s+", " ", text)
    markdown = files.markdown_path.read_text()
    assert markdown.startswith("# Performance test results: NO-GO")
    assert "Do not go ahead" in markdown


def test_threshold_miss_shows_by_how_much(tmp_path: Path) -> None:
    files = write_report(make_run(tmp_path, p95=250.0))
    assert files.decision == "CONDITIONAL"
    text = " ".join(parse(files.html_path.read_text()).text)
    assert "25.0 %" in text
    assert "missed by 25.0 %" in files.markdown_path.read_text()


def test_missing_result_still_gives_a_no_go_report(tmp_path: Path) -> None:
    files = write_report(make_run(tmp_path, skip_result="high_throughput"))
    assert files.decision == "NO-GO"
    assert "high_throughput: no result was recorded" in files.summary["verdict"]["reasons"]
    assert files.html_path.exists()
    assert files.markdown_path.exists()


def test_failed_step_in_run_json_is_no_go(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    run["steps"].append(
        {
            "name": "stop_service",
            "ok": False,
            "error": "exit code -9",
            "started_at": "x",
            "duration_s": 0.1,
        }
    )
    (run_dir / "run.json").write_text(json.dumps(run))
    files = write_report(run_dir)
    assert files.summary["verdict"]["reasons"] == ["step stop_service failed: exit code -9"]


def test_seq_scan_under_serializable_is_a_warning(tmp_path: Path) -> None:
    facts = {
        "lookup_plan": {
            "query": "SELECT ... WHERE id = $1",
            "seq_scan": True,
            "plan": "Seq Scan on authorizations",
        },
        "postgres_settings": {"default_transaction_isolation": "read committed"},
    }
    files = write_report(make_run(tmp_path, facts=facts))
    assert files.summary["warnings"] == [SEQ_SCAN_WARNING]
    assert "Seq Scan on authorizations" in files.html_path.read_text()


def test_index_scan_raises_no_warning(tmp_path: Path) -> None:
    facts = {"lookup_plan": {"query": "q", "seq_scan": False, "plan": "Index Scan"}}
    assert write_report(make_run(tmp_path, facts=facts)).summary["warnings"] == []


def test_missing_run_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReportInputError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportInputError, match=r"neither run\.json nor any scenario"):
        load_run(tmp_path / "empty")


@pytest.mark.parametrize(
    ("top", "ticks"),
    [
        (95.0, [0, 20, 40, 60, 80, 100]),
        (4.0, [0, 1, 2, 3, 4]),
        (0.0, [0, 1]),
        (1234.0, [0, 250, 500, 750, 1000, 1250]),
    ],
)
def test_nice_ticks(top: float, ticks: list[float]) -> None:
    assert nice_ticks(top) == ticks


def test_histogram_trims_empty_ends_and_keeps_every_count() -> None:
    svg = histogram_svg(
        [
            {"upper_ms": 1, "count": 0},
            {"upper_ms": 2, "count": 3},
            {"upper_ms": 5, "count": 0},
            {"upper_ms": 10, "count": 7},
            {"upper_ms": 20, "count": 0},
        ],
        label="h",
    )
    titles = re.findall(r"<rect [^>]*><title>([^<]*)</title>", svg)
    assert titles == ["≤2 ms: 3 requests", "≤5 ms: 0 requests", "≤10 ms: 7 requests"]


def test_idle_second_breaks_the_latency_line() -> None:
    series = [
        {"second": s, "p50_ms": None if s == 2 else 10.0, "p95_ms": None, "p99_ms": None}
        for s in range(5)
    ]
    svg = latency_over_time_svg(series, threshold_ms=None, label="l")
    assert svg.count("<polyline") == 2


def test_empty_charts_say_so() -> None:
    assert "no data recorded" in histogram_svg([], label="h")
    assert "no data recorded" in throughput_over_time_svg([], label="t")


def test_unsafe_control_run_says_so(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    run["strategy"] = "unsafe"
    (run_dir / "run.json").write_text(json.dumps(run))
    files = write_report(run_dir)
    assert files.summary["warnings"] == [UNSAFE_NOTE]
    assert "This is a control run" in files.html_path.read_text()


def test_an_error_rate_threshold_reads_as_a_percentage(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    result_path = run_dir / "high_throughput" / "result.json"
    result = json.loads(result_path.read_text())
    result["config"]["thresholds"]["unexpected_error_rate_max"] = 0.01
    result_path.write_text(json.dumps(result))
    files = write_report(run_dir)
    text = " ".join(parse(files.html_path.read_text()).text)
    row = text[text.index("unexpected_error_rate_max") :][:80]
    assert "%" in row
    assert "ms" not in row


def test_figures_per_organization_reach_summary_and_report(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    result_path = run_dir / "high_throughput" / "result.json"
    result = json.loads(result_path.read_text())
    result["by_organization"] = [
        {
            "organization_id": "9b1c",
            "name": "OrgB",
            "requests": 40,
            "errors": 2,
            "error_rate": 0.05,
            "p50_ms": 12.5,
            "p95_ms": 480.25,
            "p99_ms": 900.0,
            "by_code": {"insufficient_units": 2},
        }
    ]
    result_path.write_text(json.dumps(result))
    files = write_report(run_dir)
    (scenario,) = [s for s in files.summary["scenarios"] if s["scenario"] == "high_throughput"]
    assert scenario["by_organization"] == result["by_organization"]
    text = " ".join(parse(files.html_path.read_text()).text)
    section = text[text.index("By organization") :]
    row = section[section.index("OrgB") :][:120]
    assert "40" in row
    assert "5.00 %" in row
    assert "480.2 ms" in row or "480.3 ms" in row
    assert "insufficient_units" in row


def test_a_large_miss_reads_as_a_multiple_of_the_limit(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, p95=700.0)
    files = write_report(run_dir)
    reasons = " ".join(files.summary["verdict"]["reasons"])
    assert "3.5× the limit" in reasons
    assert "missed by 250.0 %" not in reasons


def test_retry_series_puts_the_service_s_retries_on_the_run_s_seconds() -> None:
    result = {
        "started_at": "2026-12-05T04:00:00+00:00",
        "timeseries": [
            {"second": 0, "requests": 10, "errors": 6},
            {"second": 1, "requests": 10, "errors": 10},
            {"second": 2, "requests": 8, "errors": 0},
        ],
    }
    start = dt.datetime(2026, 12, 5, 4, tzinfo=dt.UTC).timestamp()
    service = {
        "series": [
            {"t": start + 0.1, "retries": 0.0},
            {"t": start + 0.9, "retries": 8.0},  # 8 retries in second 0
            {"t": start + 1.9, "retries": 8.0},
            {"t": start + 2.5, "retries": 12.0},  # 4 in second 2
        ]
    }
    series = retry_series(result, service)
    assert [p["retries"] for p in series] == [8.0, 0.0, 4.0]
    assert [p["committed"] for p in series] == [4, 0, 8]
    assert [p["retries_per_committed"] for p in series] == [2.0, None, 0.5]
    svg = retries_over_time_svg(series, label="r")
    assert svg.count("<polyline") == 0  # no two neighbouring seconds with commits: points only
    assert svg.count("<circle") == 2
    assert "no data recorded" in retries_over_time_svg([], label="r")


# -- what a reader must find: errors apart, n/a, settings in words, one grid, the limits -------
def _rewrite_result(run_dir: Path, scenario: str, **changes: Any) -> dict[str, Any]:
    path = run_dir / scenario / "result.json"
    result = json.loads(path.read_text())
    result.update(changes)
    path.write_text(json.dumps(result))
    return result


def _cell(html: str, scenario: str, metric: str) -> str:
    """Return the text of a glance-table cell (data-metric) in the row of ``scenario``."""
    row = html[html.index(f'<a href="#scenario-{scenario}">') :]
    cell = row[row.index(f'data-metric="{metric}"') :]
    inner = re.sub(r"<[^>]+>", "", cell[cell.index(">") + 1 : cell.index("</td>")])
    return re.sub(r"\s+", " ", inner).strip()


def test_expected_refusals_and_unexpected_errors_are_apart(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    config = scenario_result("high_contention", requests=500, p95=120.5)["config"]
    config["thresholds"] = {"p95_ms": 200, "error_rate_min": 0.5}
    config["expected_error_codes"] = ["insufficient_units"]
    _rewrite_result(
        run_dir,
        "high_contention",
        config=config,
        by_code={"insufficient_units": 470, "internal_error": 10},
        by_status={"200": 20, "409": 470, "500": 10},
    )
    files = write_report(run_dir)
    hc = files.summary["scenarios"][0]
    assert (hc["succeeded"], hc["expected_errors"], hc["unexpected_errors"]) == (20, 470, 10)
    assert (hc["expected_error_rate"], hc["unexpected_error_rate"]) == (0.94, 0.02)
    assert hc["expected_by_code"] == {"insufficient_units": 470}
    assert hc["unexpected_by_code"] == {"internal_error": 10}
    html = files.html_path.read_text()
    assert _cell(html, "high_contention", "expected") == "470 (94.00 %)"
    assert _cell(html, "high_contention", "unexpected") == "10 (2.00 %)"
    assert "Error rate" not in html  # no figure mixes the two any more
    markdown = files.markdown_path.read_text()
    assert "| high_contention | CONDITIONAL | 500 | 470 (94.00 %) | 10 (2.00 %) |" in markdown


def test_latency_per_operation_and_outcome_reaches_the_report(tmp_path: Path) -> None:
    records = [
        Record(f"ok{i}", "reserve", "a", 200, "", float(i), 0.1, f"t{i}", "reserve", 1)
        for i in range(1, 11)
    ]
    records += [
        Record(f"no{i}", "reserve", "a", 409, "insufficient_units", 2.0, 0.2, "", "", 1)
        for i in range(5)
    ]
    records += [
        Record("x", "release", "a", 500, "internal_error", 900.0, 0.3, "", "", 1),
        Record("r", "release", "a", 200, "", 40.0, 0.3, "t-r", "release", 1),
    ]
    figures = summarise_requests(records, elapsed_s=1.0, expected_codes=["insufficient_units"])
    run_dir = make_run(tmp_path)
    config = scenario_result("high_contention", requests=17, p95=1.0)["config"]
    config["expected_error_codes"] = ["insufficient_units"]
    _rewrite_result(run_dir, "high_contention", config=config, **figures)
    files = write_report(run_dir)
    hc = files.summary["scenarios"][0]
    rows = [(r["operation"], r["label"], r["count"], r["p95"]) for r in hc["latency_by_outcome"]]
    assert rows == [
        ("release", "success", 1, 40.0),
        ("release", "unexpected error", 1, 900.0),
        ("reserve", "success", 10, 10.0),
        ("reserve", "refused: insufficient units", 5, 2.0),
        ("all", "success", 11, 40.0),
        ("all", "refused: insufficient units", 5, 2.0),
        ("all", "unexpected error", 1, 900.0),
    ]
    assert hc["by_operation"]["release"]["unexpected_errors"] == 1
    assert hc["by_operation"]["reserve"]["expected_errors"] == 5
    text = re.sub(r"\s+", " ", " ".join(parse(files.html_path.read_text()).text))
    section = text[text.index("Latency by operation and outcome") :]
    assert "refused: insufficient units 5 2.0 ms 2.0 ms 2.0 ms 2.0 ms" in section
    assert "17 requests (" in text
    assert "11 succeeded" in text
    assert "5 expected refusals (insufficient units 5)" in text
    assert "1 unexpected error (internal error 1)" in text


def test_a_not_applicable_check_reads_n_a_not_holds(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    path = run_dir / "high_throughput" / "integrity.json"
    integrity = json.loads(path.read_text())
    integrity["checks"].append(
        {
            "name": "contention_expectation",
            "description": "exhausted authorizations hold what fits",
            "ok": True,
            "violations": 0,
            "rows": [],
            "detail": "not applicable: no high_contention scenario among the results",
        }
    )
    path.write_text(json.dumps(integrity))
    files = write_report(run_dir)
    (ht,) = [s for s in files.summary["scenarios"] if s["scenario"] == "high_throughput"]
    assert [c["status"] for c in ht["integrity"]["checks"]] == ["ok", "ok", "ok", "n/a"]
    html = files.html_path.read_text()
    row = html[html.index('<code title="exhausted authorizations hold what fits">') :]
    row = row[: row.index("</tr>")]
    # high_contention did not run the check at all; high_throughput found nothing to check.
    assert re.findall(r'data-status="([^"]+)"', row) == ["not checked", "n/a"]
    assert '<span class="na">n/a</span>' in row
    assert "holds" not in row
    assert ">ok<" not in row
    assert "contention_expectation n/a" in files.markdown_path.read_text()


def test_the_navigation_bar_leads_to_every_section(tmp_path: Path) -> None:
    page = parse(write_report(make_run(tmp_path)).html_path.read_text())
    nav_links: list[str] = []
    in_nav = False
    for tag, attrs in page.tags:
        if tag == "nav":
            in_nav = True
        elif in_nav and tag == "a":
            nav_links.append(str(attrs["href"]))
        elif in_nav and tag in ("h1", "section"):
            break
    assert nav_links == ["#verdict", "#scenarios", "#integrity", "#isolation", "#environment"]
    ids = {attrs.get("id") for _, attrs in page.tags}
    assert {link[1:] for link in nav_links} <= ids
    links = {attrs["href"] for tag, attrs in page.tags if tag == "a" and attrs.get("href")}
    assert {link[1:] for link in links if link and link.startswith("#")} <= ids  # none dangles


def test_settings_read_as_words(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    config = scenario_result("high_contention", requests=500, p95=120.5)["config"]
    config.update(
        users=30,
        duration_s=15.0,
        think_time_range_s=[0.1, 0.3],
        expected_error_codes=["insufficient_units"],
    )
    _rewrite_result(run_dir, "high_contention", config=config)
    files = write_report(run_dir)
    hc = files.summary["scenarios"][0]
    assert hc["settings"] == (
        "30 users for 15 s, 0.1–0.3 s think time, 10 units a request, "
        "expected refusals: insufficient units"
    )
    text = " ".join(parse(files.html_path.read_text()).text)
    assert "30 users for 15 s, 0.1–0.3 s think time" in text
    assert "['" not in text
    assert "expected_error_codes =" not in text
    open_model = {"users": 30, "duration_s": 10, "arrival_rate_rps": 150.0, "processes": 2,
                  "units_per_request": 1, "expected_error_codes": []}  # fmt: skip
    assert settings_in_words(open_model, "open") == (
        "150 requests/s offered from 30 users for 10 s (open model), 2 generator processes, "
        "1 unit a request, no refusal expected"
    )


def test_the_integrity_grid_appears_once_with_details_only_for_failures(tmp_path: Path) -> None:
    files = write_report(make_run(tmp_path, integrity_ok=False))
    html = files.html_path.read_text()
    assert html.count('<table class="integrity-grid">') == 1
    # One row per check, one cell per scenario.
    grid = html[html.index('<table class="integrity-grid">') :]
    grid = grid[: grid.index("</table>")]
    assert re.findall(r"<code title=\"[^\"]*\">(\w+)</code>", grid) == [
        "no_overbooking", "ledger_consistency", "client_reconciliation",
    ]  # fmt: skip
    assert grid.count('data-status="ok"') == 5
    assert (
        '<a class="fail" href="#integrity-high_contention-ledger_consistency">2 violations' in grid
    )
    # The details: only the failing check, under the anchor the cell links to.
    assert html.count('id="integrity-') == 1
    assert 'id="integrity-high_contention-ledger_consistency"' in html
    # Each check's description once, whatever the number of scenarios.
    text = " ".join(parse(html).text)
    assert text.count("no_overbooking holds") == 1
    assert text.count("counters match the ledger") == 1


def test_the_latency_charts_draw_both_limits_in_their_legends(tmp_path: Path) -> None:
    buckets = [
        {"upper_ms": 50, "count": 900},
        {"upper_ms": 200, "count": 90},
        {"upper_ms": 1000, "count": 9},
        {"upper_ms": None, "count": 1},
    ]
    svg = histogram_svg(buckets, label="h", thresholds=[("p95", 200.0), ("p99", 500.0)])
    legend = svg[svg.index('<g class="legend">') :]
    assert re.findall(r"<text[^>]*>([^<]*)</text>", legend) == [
        "requests", "p95 limit 200 ms", "p99 limit 500 ms",
    ]  # fmt: skip
    assert svg.count('class="threshold"') == 2
    # A single request in the overflow bucket still gets a bar of some height.
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert len(heights) == 5  # four bars, then the legend's box
    assert min(heights[:4]) > 10
    latency = latency_over_time_svg(
        [{"second": 0, "p50_ms": 10.0, "p95_ms": 20.0, "p99_ms": 30.0}],
        threshold_ms=200.0,
        p99_threshold_ms=500.0,
        label="l",
    )
    assert "p95 limit 200 ms" in latency
    assert "p99 limit 500 ms" in latency
    assert latency.count('class="threshold"') == 2
    html = write_report(make_run(tmp_path)).html_path.read_text()
    ht = html[html.index('id="scenario-high_throughput"') :]
    assert "p95 limit 200 ms" in ht
    assert "p99 limit 500 ms" in ht


def test_the_throughput_chart_shows_offered_and_achieved_rate() -> None:
    series = [
        {"second": s, "requests": 100, "answered": 90, "errors": 12, "expected_errors": 10,
         "unexpected_errors": 2}
        for s in range(5)
    ]  # fmt: skip
    svg = throughput_over_time_svg(series, label="t", offered_rps=100.0)
    legend = svg[svg.index('<g class="legend">') :]
    assert re.findall(r"<text[^>]*>([^<]*)</text>", legend) == [
        "offered 100/s", "answered", "expected refusals", "unexpected errors",
    ]  # fmt: skip
    assert svg.count('class="offered"') == 1
    closed = throughput_over_time_svg(series, label="t")
    assert 'class="offered"' not in closed
    assert "answered" in closed
