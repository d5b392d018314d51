"""Metric functions checked against hand-picked samples with exact expected values."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from results.latency import (
    HISTOGRAM_BOUNDS_MS,
    histogram,
    latency_summary,
    live_percentile,
    merge_live_buckets,
    percentile,
)
from results.record_format import (
    LIVE_BUCKET_GROWTH,
    Record,
    add_to_live_buckets,
    decode_record,
    encode_record,
    is_error,
    live_bucket,
    live_bucket_upper_ms,
)
from results.records import DuplicateRecordError, merge_records, successful_operations
from results.summary import ProcessReport, summarise_generator, summarise_requests
from results.timeseries import per_second

ONE_TO_HUNDRED = [float(value) for value in range(1, 101)]


def _record(
    request_id: str,
    *,
    status: int = 200,
    code: str = "",
    latency_ms: float = 10.0,
    started_s: float = 0.0,
    operation: str = "reserve",
) -> Record:
    ok = 200 <= status < 300 and not code
    return Record(
        request_id=request_id,
        operation=operation,
        authorization_id="auth-1",
        status=status,
        code=code,
        latency_ms=latency_ms,
        started_s=started_s,
        transaction_id=f"tx-{request_id}" if ok else "",
        kind=operation if ok else "",
        units=10 if ok else 0,
    )


@pytest.mark.parametrize(
    ("percent", "expected"), [(50, 50.0), (90, 90.0), (95, 95.0), (99, 99.0), (100, 100.0)]
)
def test_percentile_of_one_to_hundred_is_the_rank(percent: float, expected: float) -> None:
    assert percentile(ONE_TO_HUNDRED, percent) == expected


def test_percentile_of_nothing_is_none_and_of_one_value_is_that_value() -> None:
    assert percentile([], 95) is None
    assert percentile([7.5], 50) == 7.5
    assert percentile([7.5], 99) == 7.5
    assert percentile([7.5], 0) == 7.5


def test_percentile_rank_is_exact_where_floats_would_round_up() -> None:
    # 0.07 * 100 is 7.000000000000001 in floats: a naive ceil would answer 8.
    assert percentile(ONE_TO_HUNDRED, 7) == 7.0
    assert percentile(list(map(float, range(1, 1001))), 99.9) == 999.0


def test_percentile_nearest_rank_on_small_sets() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 51) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0


def test_percentile_refuses_an_out_of_range_percent() -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile(ONE_TO_HUNDRED, 101)


def test_latency_summary_of_a_shuffled_distribution() -> None:
    shuffled = ONE_TO_HUNDRED[:]
    random.Random(4).shuffle(shuffled)
    assert latency_summary(shuffled) == {
        "count": 100, "mean": 50.5, "p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0,
        "max": 100.0,
    }  # fmt: skip


def test_latency_summary_of_nothing_says_so_rather_than_zero() -> None:
    assert latency_summary([]) == {
        "count": 0, "mean": None, "p50": None, "p90": None, "p95": None, "p99": None, "max": None,
    }  # fmt: skip


def test_histogram_puts_each_value_in_the_first_bucket_at_or_above_it() -> None:
    buckets = histogram([0.2, 1.0, 1.01, 150.0, 150.5, 99_999.0], bounds_ms=(1.0, 150.0, 200.0))
    assert buckets == [
        {"upper_ms": 1.0, "count": 2},
        {"upper_ms": 150.0, "count": 2},
        {"upper_ms": 200.0, "count": 1},
        {"upper_ms": None, "count": 1},
    ]


def test_histogram_counts_add_up_with_default_bounds() -> None:
    buckets = histogram(ONE_TO_HUNDRED)
    assert len(buckets) == len(HISTOGRAM_BOUNDS_MS) + 1
    assert sum(bucket["count"] for bucket in buckets) == 100
    assert next(b["count"] for b in buckets if b["upper_ms"] == 100) == 25  # 76..100


def test_live_buckets_stay_within_their_growth_factor() -> None:
    for latency in (0.013, 0.5, 1.0, 17.3, 150.0, 4321.0):
        upper = live_bucket_upper_ms(live_bucket(latency))
        assert latency <= upper * (1 + 1e-9)
        assert upper < latency * LIVE_BUCKET_GROWTH * (1 + 1e-9)


def test_live_percentile_merges_processes_and_stays_within_two_percent() -> None:
    first: Counter[int] = Counter()
    second: Counter[int] = Counter()
    add_to_live_buckets(first, ONE_TO_HUNDRED[:50])
    add_to_live_buckets(second, ONE_TO_HUNDRED[50:])
    merged = merge_live_buckets([first, second])
    assert sum(merged.values()) == 100
    p95 = live_percentile(merged, 95)
    assert p95 is not None
    assert 95.0 <= p95 < 95.0 * LIVE_BUCKET_GROWTH
    assert live_percentile(Counter(), 95) is None


def test_per_second_series_counts_errors_and_keeps_idle_seconds() -> None:
    records = [
        _record("a", started_s=0.1, latency_ms=10),
        _record("b", started_s=0.9, latency_ms=130),  # answered in second 1
        _record("c", started_s=0.95, status=409, code="insufficient_units", latency_ms=20),
        _record("d", started_s=2.5, status=0, code="timeout", latency_ms=5000),  # never answered
    ]
    series = per_second(records, seconds=4, expected_codes=("insufficient_units",))
    assert series == [
        {"second": 0, "requests": 3, "errors": 1, "expected_errors": 1, "unexpected_errors": 0,
         "answered": 2, "p50_ms": 20.0, "p95_ms": 130.0, "p99_ms": 130.0},
        {"second": 1, "requests": 0, "errors": 0, "expected_errors": 0, "unexpected_errors": 0,
         "answered": 1, "p50_ms": None, "p95_ms": None, "p99_ms": None},
        {"second": 2, "requests": 1, "errors": 1, "expected_errors": 0, "unexpected_errors": 1,
         "answered": 0, "p50_ms": 5000.0, "p95_ms": 5000.0, "p99_ms": 5000.0},
        {"second": 3, "requests": 0, "errors": 0, "expected_errors": 0, "unexpected_errors": 0,
         "answered": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None},
    ]  # fmt: skip
    # Without the scenario's expected codes every error is unexpected.
    assert [p["unexpected_errors"] for p in per_second(records, seconds=4)] == [1, 0, 1, 0]


def test_errors_are_non_2xx_no_response_or_a_rejected_2xx() -> None:
    assert not is_error(200)
    assert not is_error(204)
    assert is_error(409)
    assert is_error(500)
    assert is_error(0)
    assert is_error(200, "invalid_response")


def test_record_survives_the_csv_round_trip() -> None:
    record = _record("p1-7", latency_ms=12.345678901, started_s=3.25)
    assert decode_record(encode_record(record)) == record
    with pytest.raises(ValueError, match="expected 10 fields"):
        decode_record(["too", "short"])


def test_merge_counts_every_request_once_across_processes() -> None:
    first = [_record(f"p1-{i}", started_s=i * 0.1) for i in range(30)]
    second = [_record(f"p2-{i}", status=409, code="insufficient_units") for i in range(12)]
    merged = merge_records([first, second, []])
    assert len(merged) == 42
    assert Counter(record.request_id[:2] for record in merged) == {"p1": 30, "p2": 12}
    with pytest.raises(DuplicateRecordError, match="p1-3"):
        merge_records([first, [first[3]]])


def test_summary_counts_add_up_exactly() -> None:
    records = [_record(f"r{i}", latency_ms=float(i + 1), started_s=i / 25) for i in range(95)]
    records += [
        _record(f"c{i}", status=409, code="insufficient_units", started_s=1.0) for i in range(4)
    ]
    records.append(_record("x", status=500, code="internal_error", operation="release"))
    summary = summarise_requests(records, elapsed_s=4.0)
    assert summary["totals"] == {
        "requests": 100, "errors": 5, "error_rate": 0.05, "throughput_rps": 25.0,
    }  # fmt: skip
    assert summary["by_status"] == {"200": 95, "409": 4, "500": 1}
    assert summary["by_code"] == {"insufficient_units": 4, "internal_error": 1}
    assert summary["by_operation"]["release"] == {
        "requests": 1, "errors": 1, "by_status": {"500": 1}, "by_code": {"internal_error": 1},
    }  # fmt: skip
    assert summary["by_operation"]["reserve"]["requests"] == 99
    assert summary["latency_ms"]["count"] == 100
    assert sum(point["requests"] for point in summary["timeseries"]) == 100
    assert sum(point["errors"] for point in summary["timeseries"]) == 5
    assert sum(bucket["count"] for bucket in summary["latency_histogram"]) == 100
    assert len(list(successful_operations(records))) == 95


def test_outcomes_keep_expected_refusals_apart_from_unexpected_errors() -> None:
    records = [_record(f"ok{i}", latency_ms=float(i)) for i in range(1, 11)]
    records += [
        _record(f"no{i}", status=409, code="insufficient_units", latency_ms=100.0 * i)
        for i in range(1, 5)
    ]
    records += [
        _record("rel-ok", operation="release", latency_ms=7.0),
        _record("rel-500", operation="release", status=500, code="internal_error", latency_ms=50),
        _record("timeout", status=0, code="timeout", latency_ms=5000.0),
        _record("bare-502", status=502, latency_ms=60.0),  # an error without a problem code
    ]
    summary = summarise_requests(
        records, elapsed_s=1.0, expected_codes=("insufficient_units", "serialization_conflict")
    )
    outcomes = summary["outcomes"]
    assert {k: v for k, v in outcomes.items() if k != "latency_ms"} == {
        "expected_error_codes": ["insufficient_units", "serialization_conflict"],
        "requests": 18,
        "succeeded": 11,
        "expected_errors": 4,
        "unexpected_errors": 3,
        "expected_error_rate": round(4 / 18, 6),
        "unexpected_error_rate": round(3 / 18, 6),
        "expected_by_code": {"insufficient_units": 4},
        "unexpected_by_code": {"(no code)": 1, "internal_error": 1, "timeout": 1},
    }
    rows = [
        (r["operation"], r["outcome"], r["count"], r["p50"], r["p95"], r["p99"], r["max"])
        for r in outcomes["latency_ms"]
    ]
    assert rows == [
        ("release", "success", 1, 7.0, 7.0, 7.0, 7.0),
        ("release", "unexpected", 1, 50.0, 50.0, 50.0, 50.0),
        ("reserve", "success", 10, 5.0, 10.0, 10.0, 10.0),
        ("reserve", "insufficient_units", 4, 200.0, 400.0, 400.0, 400.0),
        ("reserve", "unexpected", 2, 60.0, 5000.0, 5000.0, 5000.0),
        ("all", "success", 11, 6.0, 10.0, 10.0, 10.0),
        ("all", "insufficient_units", 4, 200.0, 400.0, 400.0, 400.0),
        ("all", "unexpected", 3, 60.0, 5000.0, 5000.0, 5000.0),
    ]
    assert sum(point["expected_errors"] for point in summary["timeseries"]) == 4
    assert sum(point["unexpected_errors"] for point in summary["timeseries"]) == 3


def test_summary_of_an_empty_run_has_no_percentiles_and_no_rate() -> None:
    summary = summarise_requests([], elapsed_s=0.0)
    assert summary["totals"] == {
        "requests": 0, "errors": 0, "error_rate": 0.0, "throughput_rps": 0.0,
    }  # fmt: skip
    assert summary["latency_ms"]["p95"] is None
    assert summary["timeseries"] == []


def test_generator_is_flagged_when_its_loop_lags_or_a_core_saturates() -> None:
    calm = ProcessReport(pid=1, requests=10, cpu_seconds=1.0, wall_seconds=10.0,
                         loop_lag_ms=(1.0,) * 99 + (40.0,))  # fmt: skip
    verdict = summarise_generator([calm], cpu_seconds=1.2, duration_s=10.0, cpu_count=2)
    assert verdict["bottleneck"] is False
    assert verdict["reasons"] == []
    assert verdict["cpu_share_of_machine"] == 0.06
    assert verdict["loop_lag_p99_ms"] == 1.0
    assert verdict["loop_lag_max_ms"] == 40.0

    lagging = ProcessReport(pid=2, requests=10, cpu_seconds=9.0, wall_seconds=10.0,
                            loop_lag_ms=(1.0,) * 90 + (80.0,) * 10)  # fmt: skip
    verdict = summarise_generator([calm, lagging], cpu_seconds=10.0, duration_s=10.0, cpu_count=2)
    assert verdict["bottleneck"] is True
    assert verdict["processes"] == 2
    assert len(verdict["reasons"]) == 2
    assert "loop lag p99 80.0 ms" in verdict["reasons"][0]
    assert "process 2 used 90%" in verdict["reasons"][1]
