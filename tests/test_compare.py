"""Run comparison: the statistics on hand-made requests with known answers, the files, bad input.

The runs here are written by hand in the layout the load runner uses (result.json, raw records
of each process), so the comparison is checked through the same reader a real run goes through.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.compare_command import resolve_margins
from reporting.compare import (
    BETTER,
    CHANGED,
    DEFAULT_MARGINS,
    NO_MARGINS,
    SAME,
    WITHIN_MARGIN,
    WORSE,
    Block,
    Margin,
    Request,
    ScenarioSample,
    blocks_from_requests,
    compare_scenario,
    judge,
    margins_from_table,
    metric_values,
    spectrum,
)
from reporting.compare_inputs import CompareInputError, RunSample, pool_runs
from reporting.compare_report import compare_runs
from reporting.regression_gate import apply_regression_gate
from reporting.run_index import format_index, latest_go, read_index, record_run
from results.record_format import Record, encode_record

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "high_throughput"
THRESHOLDS = {"p95_ms": 150, "p99_ms": 300, "error_rate_max": 0.02}


def requests(
    seconds: int = 10, per_second: int = 80, shift_ms: float = 0.0, seed: int = 1
) -> list[Request]:
    """Latencies of 10-30 ms (plus ``shift_ms``), spread evenly over ``seconds``."""
    rng = random.Random(seed)
    made = []
    for second in range(seconds):
        for i in range(per_second):
            made.append(
                Request(
                    started_s=second + i / per_second,
                    latency_ms=rng.uniform(10, 30) + shift_ms,
                    error=False,
                    unexpected_error=False,
                    retry=False,
                )
            )
    return made


def sample(
    made: list[Request], *, integrity_ok: bool | None = True, capped: bool = True
) -> ScenarioSample:
    return ScenarioSample(
        scenario=SCENARIO,
        blocks=blocks_from_requests(made),
        integrity_ok=integrity_ok,
        integrity_violations=0 if integrity_ok in (True, None) else 3,
        error_rate_capped=capped,
    )


def by_metric(comparison: Any) -> dict[str, Any]:
    return {metric.metric: metric for metric in comparison.metrics}


# -- statistics ---------------------------------------------------------------------------
def test_blocks_are_seconds_and_throughput_is_requests_over_the_window() -> None:
    # 100 requests, one every 0.1 s from 0.0 to 9.9, each 100 ms: the window is exactly 10 s.
    made = [Request(i / 10, 100.0, i % 10 == 0, False, i % 20 == 0) for i in range(100)]
    blocks = blocks_from_requests(made)
    assert [block.requests for block in blocks] == [10] * 10
    assert blocks[-1].seconds == pytest.approx(1.0)
    values = metric_values(blocks)
    assert values["throughput_rps"] == pytest.approx(10.0)
    assert values["error_rate"] == pytest.approx(0.10)
    assert values["retry_rate"] == pytest.approx(0.05)
    assert values["p50_ms"] == 100.0


def test_percentiles_are_nearest_rank_over_every_block() -> None:
    blocks = (
        Block(tuple(float(v) for v in range(1, 51)), 0, 0, 0, 1.0),
        Block(tuple(float(v) for v in range(51, 101)), 0, 0, 0, 1.0),
    )
    values = metric_values(blocks)
    assert (values["p50_ms"], values["p95_ms"], values["p99_ms"]) == (50.0, 95.0, 99.0)


def test_a_run_against_itself_is_no_change_with_a_zero_interval() -> None:
    run = sample(requests())
    metrics = by_metric(compare_scenario(run, run))
    for name in ("p50_ms", "p95_ms", "p99_ms", "throughput_rps", "error_rate"):
        assert metrics[name].difference == 0
        assert metrics[name].judgement == SAME
    assert metrics["integrity"].judgement == SAME


def test_two_draws_of_the_same_distribution_are_no_change() -> None:
    metrics = by_metric(compare_scenario(sample(requests(seed=1)), sample(requests(seed=2))))
    assert {metrics[name].judgement for name in metrics} == {SAME}
    # The interval is honest about the noise: it holds zero, it is not a point.
    assert metrics["p50_ms"].low < 0 < metrics["p50_ms"].high


def test_a_five_millisecond_shift_is_worse_and_its_interval_holds_five() -> None:
    base = sample(requests(seed=1))
    new = sample(requests(seed=1, shift_ms=5.0))
    metrics = by_metric(compare_scenario(base, new))
    p50 = metrics["p50_ms"]
    assert p50.difference == pytest.approx(5.0)
    assert p50.low <= 5.0 <= p50.high
    assert p50.low > 0
    assert p50.judgement == WORSE
    assert metrics["throughput_rps"].judgement == SAME


def test_the_other_way_round_is_better() -> None:
    metrics = by_metric(compare_scenario(sample(requests(shift_ms=5.0)), sample(requests())))
    assert metrics["p50_ms"].judgement == BETTER


def test_a_sure_move_smaller_than_the_margin_is_within_margin() -> None:
    # +0.8 ms on a ~15 ms median: certain (no noise between the twins), below max(1 ms, 5 %),
    # which is the 1 ms floor here (5 % of 15 ms is 0.75 ms).
    base, new = sample(requests(shift_ms=-5.0)), sample(requests(shift_ms=-4.2))
    p50 = by_metric(compare_scenario(base, new))["p50_ms"]
    assert p50.low > 0
    assert p50.margin == pytest.approx(1.0)
    assert p50.margin_rule == "max(1 ms, 5 %)"
    assert p50.judgement == WITHIN_MARGIN
    # Without margins the same move is worse.
    bare = compare_scenario(base, new, margins=NO_MARGINS)
    assert by_metric(bare)["p50_ms"].judgement == WORSE


def test_the_margin_is_the_larger_of_its_floor_and_its_share() -> None:
    # A 40 ms median: 5 % is 2 ms, above the 1 ms floor; +1.5 ms is sure but within margin,
    # +3 ms is worse.
    base = sample(requests(shift_ms=20.0))
    within = by_metric(compare_scenario(base, sample(requests(shift_ms=21.5))))["p50_ms"]
    worse = by_metric(compare_scenario(base, sample(requests(shift_ms=23.0))))["p50_ms"]
    assert within.margin == pytest.approx(0.05 * within.base)
    assert (within.judgement, worse.judgement) == (WITHIN_MARGIN, WORSE)


@pytest.mark.parametrize(
    ("difference", "low", "high", "margin", "direction", "expected"),
    [
        (10, -1, 20, 1, "lower", SAME),  # the interval holds zero
        (10, 2, 20, 1, "lower", WORSE),
        (10, 2, 20, 1, "higher", BETTER),
        (10, 2, 20, 11, "lower", WITHIN_MARGIN),  # sure, but smaller than the margin
        (-10, -20, -2, 11, "lower", WITHIN_MARGIN),
        (-10, -20, -2, 1, "lower", BETTER),
        (-10, -20, -2, 1, "neither", CHANGED),
        (0, 0, 0, 0, "lower", SAME),
    ],
)
def test_judge_needs_the_interval_off_zero_and_the_difference_past_the_margin(
    difference: float, low: float, high: float, margin: float, direction: str, expected: str
) -> None:
    judged = judge(difference=difference, low=low, high=high, margin=margin, direction=direction)
    assert judged == expected


def test_margins_default_in_one_place_and_a_table_overrides_one_metric() -> None:
    assert DEFAULT_MARGINS["p95_ms"] == Margin(absolute=1.0, relative=0.05)
    assert DEFAULT_MARGINS["throughput_rps"] == Margin(relative=0.05)
    assert DEFAULT_MARGINS["error_rate"] == Margin(absolute=0.005)
    assert DEFAULT_MARGINS["p95_ms"].of(10.0) == 1.0  # 5 % of 10 ms is 0.5: the 1 ms floor
    assert DEFAULT_MARGINS["p95_ms"].of(100.0) == pytest.approx(5.0)
    assert DEFAULT_MARGINS["error_rate"].describe("rate") == "0.5 percentage points"
    margins = margins_from_table({"p95_ms": {"relative": 0.10}})
    assert margins["p95_ms"] == Margin(absolute=1.0, relative=0.10)
    assert margins["p50_ms"] == DEFAULT_MARGINS["p50_ms"]
    with pytest.raises(ValueError, match="unknown metric 'p90_ms'"):
        margins_from_table({"p90_ms": {"relative": 0.1}})
    with pytest.raises(ValueError, match="at least 0"):
        margins_from_table({"p95_ms": {"relative": -1}})


def test_profiles_toml_margins_reach_the_comparison(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text("[compare.margins]\np50_ms = { absolute = 10.0 }\n")
    monkeypatch.setenv("LOADTEST_PROFILES_PATH", str(profiles))
    margins = resolve_margins()
    assert margins["p50_ms"] == Margin(absolute=10.0, relative=0.05)
    assert resolve_margins(0.2)["throughput_rps"] == Margin(relative=0.2)  # --tolerance 20
    profiles.write_text("[compare.margins]\np50 = { absolute = 10.0 }\n")
    with pytest.raises(CompareInputError, match="unknown metric 'p50'"):
        resolve_margins()


def test_an_error_rate_provoked_on_purpose_is_changed_not_worse() -> None:
    base = requests()
    new = [Request(r.started_s, r.latency_ms, i % 2 == 0, False, False) for i, r in enumerate(base)]
    capped = by_metric(compare_scenario(sample(base), sample(new)))
    provoked = by_metric(compare_scenario(sample(base, capped=False), sample(new, capped=False)))
    assert capped["error_rate"].judgement == WORSE
    assert provoked["error_rate"].judgement == CHANGED


def test_integrity_is_pass_fail_and_a_violation_is_worse() -> None:
    clean, broken = sample(requests(), integrity_ok=True), sample(requests(), integrity_ok=False)
    assert by_metric(compare_scenario(clean, broken))["integrity"].judgement == WORSE
    assert by_metric(compare_scenario(broken, clean))["integrity"].judgement == BETTER
    assert by_metric(compare_scenario(broken, broken))["integrity"].judgement == WORSE
    assert by_metric(compare_scenario(clean, broken))["integrity"].new == 3


def test_spectrum_walks_the_percentiles_up_to_the_slowest_request() -> None:
    points = spectrum([float(v) for v in range(1, 101)])
    assert points[0] == (0.0, 1.0)
    assert points[-1] == (100.0, 100.0)
    assert any(q == pytest.approx(90.0) and v == 90.0 for q, v in points)
    assert [v for _, v in points] == sorted(v for _, v in points)


# -- run folders, the command, the index ---------------------------------------------------
def write_run(
    root: Path,
    name: str,
    *,
    profile: str = "smoke",
    scenarios: tuple[str, ...] = (SCENARIO,),
    shift_ms: float = 0.0,
    decision: str = "GO",
) -> Path:
    """Write a run folder by hand: run.json, summary.json and per scenario its records."""
    run_dir = root / name
    for scenario in scenarios:
        raw = run_dir / scenario / "raw"
        raw.mkdir(parents=True)
        made = requests(shift_ms=shift_ms)
        records = [
            Record(
                f"1-{i}", "reserve", "a", 200, "", r.latency_ms, r.started_s, f"t{i}", "reserve", 2
            )
            for i, r in enumerate(made)
        ]
        (raw / "records-1.csv").write_text(
            "".join(",".join(encode_record(record)) + "\n" for record in records)
        )
        (raw / "process-1.json").write_text(
            json.dumps(
                {
                    "pid": 1,
                    "requests": len(records),
                    "cpu_seconds": 1.0,
                    "wall_seconds": 10.0,
                    "loop_lag_ms": [],
                    "run_start_epoch": 0.0,
                    "exceptions": 0,
                    "scheduled_requests": 0,
                    "first_exception": "",
                }
            )
        )
        (run_dir / scenario / "result.json").write_text(
            json.dumps(
                {
                    "scenario": scenario,
                    "profile": profile,
                    "config": {"thresholds": THRESHOLDS, "expected_error_codes": []},
                }
            )
        )
        (run_dir / scenario / "integrity.json").write_text(json.dumps({"ok": True, "checks": []}))
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "run_id": name,
                "profile": profile,
                "strategy": "serializable",
                "scenarios": list(scenarios),
            }
        )
    )
    summary = {
        "run_id": name,
        "profile": profile,
        "strategy": "serializable",
        "verdict": {"decision": decision},
        "facts": {"git": {"commit": name[-7:]}},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def invoke(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compare_command_writes_the_three_files_and_finds_the_shift(tmp_path: Path) -> None:
    base = write_run(tmp_path, "20261201T100000Z-aaaaaaa")
    new = write_run(tmp_path, "20261201T110000Z-bbbbbbb", shift_ms=5.0)
    completed = invoke("load-test.compare", str(base), str(new), "--out", str(tmp_path / "cmp"))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith(f"worse: {SCENARIO} p50")
    document = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert document["outcome"] == WORSE
    assert document["base"]["run_id"] == base.name
    (scenario,) = document["scenarios"]
    p50 = next(m for m in scenario["metrics"] if m["metric"] == "p50_ms")
    assert p50["low"] <= 5.0 <= p50["high"]
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert "percentile spectrum" in html
    assert "<svg" in html
    assert "<script" not in html
    assert "| p50 |" in (tmp_path / "cmp" / "compare.md").read_text()


@pytest.mark.parametrize(
    ("make_new", "expected"),
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: root, "is not a run folder"),  # a folder with neither run nor results
        (
            lambda root: write_run(root, "20261201T120000Z-ccccccc", profile="full"),
            "different profiles",
        ),
        (
            lambda root: write_run(
                root, "20261201T120000Z-ddddddd", scenarios=("high_contention",)
            ),
            "different scenarios",
        ),
    ],
)
def test_compare_command_refuses_bad_input_in_one_line(
    tmp_path: Path, make_new: Any, expected: str
) -> None:
    base = write_run(tmp_path / "runs", "20261201T100000Z-aaaaaaa")
    empty = tmp_path / "empty"
    empty.mkdir()
    new = make_new(empty)
    completed = invoke("load-test.compare", str(base), str(new), "--out", str(tmp_path / "cmp"))
    assert completed.returncode == 2
    assert expected in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cmp").exists()


def test_compare_reads_a_reports_folder_as_its_newest_run(tmp_path: Path) -> None:
    write_run(tmp_path, "20261201T100000Z-aaaaaaa", shift_ms=5.0)
    newest = write_run(tmp_path, "20261201T110000Z-bbbbbbb")
    document, _ = compare_runs(tmp_path, newest)
    assert document["base"]["run_id"] == newest.name
    assert document["outcome"] == SAME


def test_run_index_lists_runs_and_finds_the_latest_go(tmp_path: Path) -> None:
    old = write_run(tmp_path, "20261201T100000Z-aaaaaaa")  # before the index: read from summary
    go = write_run(tmp_path, "20261201T110000Z-bbbbbbb")
    record_run(go, json.loads((go / "summary.json").read_text()))
    failed = write_run(tmp_path, "20261201T120000Z-ccccccc", decision="NO-GO")
    record_run(failed, json.loads((failed / "summary.json").read_text()))
    entries = read_index(tmp_path)
    assert [entry["run_id"] for entry in entries] == [old.name, go.name, failed.name]
    assert latest_go(entries, profile="smoke")["run_id"] == go.name
    assert latest_go(entries, profile="smoke", exclude=go.name)["run_id"] == old.name
    assert latest_go(entries, profile="full") is None
    table = format_index(entries)
    assert "NO-GO" in table
    assert "bbbbbbb" in table
    listed = invoke("load-test.runs", "--reports-dir", str(tmp_path))
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[-1].startswith(failed.name)


# -- the regression gate -------------------------------------------------------------------
def gated_summary(
    decision: str, gate: str, tmp_path: Path, shift_ms: float, runs_a_side: int = 1
) -> dict[str, Any]:
    base = [write_run(tmp_path, f"20261201T10000{i}Z-aaaaaaa") for i in range(runs_a_side)]
    new = [
        write_run(tmp_path, f"20261201T11000{i}Z-bbbbbbb", shift_ms=shift_ms)
        for i in range(runs_a_side)
    ]
    document, _ = compare_runs(",".join(map(str, base)), ",".join(map(str, new)))
    document["gate"] = gate
    summary = {
        "verdict": {"decision": decision, "reasons": [], "findings": []},
        "recommendation": "",
    }
    return apply_regression_gate(summary, document)


@pytest.mark.parametrize(
    ("gate", "runs_a_side", "before", "after"),
    [
        ("warn", 1, "GO", "CONDITIONAL"),
        ("warn", 2, "GO", "CONDITIONAL"),
        ("fail", 2, "GO", "NO-GO"),
        # One run a side cannot see the machine's noise: `fail` warns instead of failing.
        ("fail", 1, "GO", "CONDITIONAL"),
        ("warn", 1, "NO-GO", "NO-GO"),
    ],
)
def test_a_regression_gates_the_verdict(
    tmp_path: Path, gate: str, runs_a_side: int, before: str, after: str
) -> None:
    gated = gated_summary(before, gate, tmp_path, shift_ms=5.0, runs_a_side=runs_a_side)
    assert gated["verdict"]["decision"] == after
    assert gated["comparison"]["worse"][0] == f"{SCENARIO} p50"
    regressions = [
        f for f in gated["verdict"]["findings"] if "regression against baseline" in f["reason"]
    ]
    assert regressions
    fails = gate == "fail" and runs_a_side > 1
    assert {f["decision"] for f in regressions} == {"NO-GO" if fails else "CONDITIONAL"}
    softened = [f for f in regressions if "one run a side cannot tell" in f["reason"]]
    assert bool(softened) == (gate == "fail" and runs_a_side == 1)


def test_no_regression_leaves_go_alone(tmp_path: Path) -> None:
    gated = gated_summary("GO", "fail", tmp_path, shift_ms=0.0)
    assert gated["verdict"]["decision"] == "GO"
    assert gated["comparison"]["regressions"] == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--baseline", "latest-go"], "no GO run of profile 'smoke'"),
        (["--baseline", "/nonexistent/run"], "does not exist"),
        (["--baseline", "latest-go", "--regression-gate", "maybe"], "--regression-gate"),
    ],
)
def test_all_refuses_a_bad_baseline_before_starting(
    tmp_path: Path, options: list[str], expected: str
) -> None:
    completed = invoke("load-test.all", "--reports-dir", str(tmp_path), *options)
    assert completed.returncode == 2
    assert expected in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_all_takes_the_baseline_from_the_environment_as_ci_does(tmp_path: Path) -> None:
    completed = invoke(
        "load-test.all", "--reports-dir", str(tmp_path), LOADTEST_BASELINE="/nonexistent/run"
    )
    assert completed.returncode == 2
    assert "/nonexistent/run is not a run folder" in completed.stderr
    assert list(tmp_path.iterdir()) == []


# -- repeats: several runs a side ----------------------------------------------------------
def test_repeats_pooled_carry_run_to_run_noise_into_the_interval() -> None:
    quick, slow = sample(requests(seed=1)), sample(requests(seed=2, shift_ms=10.0))
    runs = [
        RunSample(Path(name), name, "smoke", None, None, None, {SCENARIO: s}, {SCENARIO: ()})
        for name, s in (("quick", quick), ("slow", slow))
    ]
    two_stage = pool_runs(runs).scenarios[SCENARIO]
    # The same blocks as if they came from one run: only the within-run noise is left.
    one_run = dataclasses.replace(
        two_stage, blocks=tuple(dataclasses.replace(b, run=0) for b in two_stage.blocks)
    )
    new = sample(requests(seed=3, shift_ms=5.0))
    wide = by_metric(compare_scenario(two_stage, new))["p50_ms"]
    narrow = by_metric(compare_scenario(one_run, new))["p50_ms"]
    assert wide.difference == narrow.difference
    assert wide.high - wide.low > 1.5 * (narrow.high - narrow.low)


def test_compare_command_pools_comma_separated_repeats(tmp_path: Path) -> None:
    bases = [write_run(tmp_path, f"20261201T10000{i}Z-aaaaaaa") for i in range(2)]
    news = [write_run(tmp_path, f"20261201T11000{i}Z-bbbbbbb", shift_ms=5.0) for i in range(2)]
    out = tmp_path / "cmp"
    completed = invoke(
        "load-test.compare", ",".join(map(str, bases)), ",".join(map(str, news)), "--out", str(out)
    )
    assert completed.returncode == 0, completed.stderr
    document = json.loads((out / "compare.json").read_text())
    assert document["base"]["run_id"] == " + ".join(b.name for b in bases)
    assert document["method"]["repeats"] is True
    (scenario,) = document["scenarios"]
    assert scenario["base_requests"] == 2 * 800
    p50 = next(m for m in scenario["metrics"] if m["metric"] == "p50_ms")
    assert p50["low"] <= 5.0 <= p50["high"]
    assert p50["judgement"] == WORSE


def test_every_judgement_says_how_many_runs_each_side_had() -> None:
    quick, slow = sample(requests(seed=1)), sample(requests(seed=2, shift_ms=10.0))
    runs = [
        RunSample(Path(name), name, "smoke", None, None, None, {SCENARIO: s}, {SCENARIO: ()})
        for name, s in (("quick", quick), ("slow", slow))
    ]
    pooled = pool_runs(runs)
    assert pooled.runs == 2
    one = sample(requests(seed=3))
    both = by_metric(compare_scenario(pooled.scenarios[SCENARIO], pooled.scenarios[SCENARIO]))
    partly = by_metric(compare_scenario(pooled.scenarios[SCENARIO], one))
    single = by_metric(compare_scenario(one, one))
    assert (both["p50_ms"].base_runs, both["p50_ms"].new_runs) == (2, 2)
    assert both["p50_ms"].between_runs == "covered"
    assert (partly["p95_ms"].base_runs, partly["p95_ms"].new_runs) == (2, 1)
    assert partly["p95_ms"].between_runs == "covered on one side only"
    assert single["integrity"].between_runs == "not covered"


def test_one_run_a_side_says_plainly_that_noise_between_runs_is_not_covered(
    tmp_path: Path,
) -> None:
    base = write_run(tmp_path, "20261201T100000Z-aaaaaaa")
    new = write_run(tmp_path, "20261201T110000Z-bbbbbbb", shift_ms=0.8)
    completed = invoke("load-test.compare", str(base), str(new), "--out", str(tmp_path / "cmp"))
    assert completed.returncode == 0, completed.stderr
    assert "1 run(s) against 1, noise between runs not covered" in completed.stdout
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert "noise between runs (another job slowing a whole run) is NOT covered" in markdown
    # p50 moved +0.8 ms for sure (the twins' requests are the same but for the shift).
    assert "| ±1.0 ms (max(1 ms, 5 %)) | within margin (1 v 1 runs) |" in markdown
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert "<th>margin</th>" in html


def test_runs_of_another_isolation_level_are_refused_unless_forced(tmp_path: Path) -> None:
    base = write_run(tmp_path, "20261201T100000Z-aaaaaaa")
    new = write_run(tmp_path, "20261201T110000Z-bbbbbbb")
    run = json.loads((new / "run.json").read_text())
    (new / "run.json").write_text(json.dumps({**run, "isolation": "read_committed"}))
    out = tmp_path / "cmp"
    refused = invoke("load-test.compare", str(base), str(new), "--out", str(out))
    assert refused.returncode == 2
    assert "differ in isolation" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    forced = invoke("load-test.compare", str(base), str(new), "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr


def test_same_commit_pools_the_index_runs_of_each_side(tmp_path: Path) -> None:
    bases = [write_run(tmp_path, f"20261201T10000{i}Z-aaaaaaa") for i in range(3)]
    new = write_run(tmp_path, "20261201T110000Z-bbbbbbb", shift_ms=5.0)
    for folder in (*bases, new):
        record_run(folder, json.loads((folder / "summary.json").read_text()))
    out = tmp_path / "cmp"
    completed = invoke(
        "load-test.compare", str(bases[-1]), str(new), "--out", str(out), "--same-commit"
    )
    assert completed.returncode == 0, completed.stderr
    document = json.loads((out / "compare.json").read_text())
    assert (document["method"]["base_runs"], document["method"]["new_runs"]) == (3, 1)
    assert document["base"]["runs"] == 3
