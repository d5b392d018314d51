"""Percentile intervals by order statistics, the stall detector and the latency judgement.

Hand-picked samples with exact expected ranks and values; stalls on synthetic records.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from itertools import accumulate
from math import comb

import pytest

from reporting.latency_judgement import (
    MET,
    MET_NOT_CERTAIN,
    MISSED,
    MISSED_FAR,
    MISSED_NOT_CERTAIN,
    STALL,
    TOO_SMALL,
    judge_latency,
)
from reporting.verdict import CONDITIONAL, GO, NO_GO, evaluate_thresholds
from results.record_format import Record
from results.stalls import find_stall, latency_evidence
from results.uncertainty import (
    binomial_cdf,
    order_statistic_ranks,
    percentile_interval,
    smallest_sample_with_upper_bound,
)

# -- intervals ---------------------------------------------------------------------------


def test_median_of_ten_is_bounded_by_the_2nd_and_9th_values() -> None:
    """The textbook case: P(2 <= B <= 8) for B ~ Bin(10, 1/2) = 1 - 2 * 11/1024."""
    interval = percentile_interval([float(v) for v in range(1, 11)], 50)
    assert (interval.lower_rank, interval.upper_rank) == (2, 9)
    assert (interval.lower, interval.upper) == (2.0, 9.0)
    assert interval.estimate == 5.0
    assert interval.coverage == pytest.approx(1 - 22 / 1024)


def test_binomial_cdf_is_exact_on_a_small_case() -> None:
    # B ~ Bin(4, 1/2): P(B <= k) = 1/16, 5/16, 11/16, 15/16, 1
    assert binomial_cdf(4, 0.5) == pytest.approx([1 / 16, 5 / 16, 11 / 16, 15 / 16, 1.0])


def test_p99_of_1_to_1000() -> None:
    """Bin(1000, 0.99), in exact rational arithmetic: ranks 983 and 997.

    P(B <= 982) = 0.0138 <= 2.5 % < P(B <= 983) = 0.0264, and
    P(B <= 995) = 0.9713 < 97.5 % <= P(B <= 996) = 0.9899.
    """
    values = [float(v) for v in range(1, 1001)]
    interval = percentile_interval(values, 99)
    assert interval.estimate == 990.0
    assert (interval.lower_rank, interval.upper_rank) == (983, 997)
    assert (interval.lower, interval.upper) == (983.0, 997.0)
    exact = _exact_cdf(1000, Fraction(99, 100))
    # exact[k] = P(B <= k); rank l needs P(B <= l - 1) <= 2.5 %, rank u P(B <= u - 1) >= 97.5 %.
    assert exact[982] <= Fraction(1, 40) < exact[983]
    assert exact[995] < Fraction(39, 40) <= exact[996]
    assert interval.coverage == pytest.approx(float(exact[996] - exact[982]), abs=1e-12)


def _exact_cdf(n: int, p: Fraction) -> list[Fraction]:
    return list(accumulate(comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)))


def test_a_p99_from_too_few_requests_has_no_upper_bound() -> None:
    """0.99^n must be at most 2.5 % before even the maximum bounds the p99."""
    assert smallest_sample_with_upper_bound(99) == 368
    assert order_statistic_ranks(367, 99)[1] is None
    assert order_statistic_ranks(368, 99)[1] == 368
    interval = percentile_interval([1.0] * 100, 99)
    assert interval.upper is None
    assert interval.lower is not None


def test_tied_values_give_the_tied_value() -> None:
    interval = percentile_interval([5.0] * 400, 95)
    assert (interval.lower, interval.estimate, interval.upper) == (5.0, 5.0, 5.0)


@pytest.mark.parametrize("percent", [0, 100, -1])
def test_percent_outside_the_open_range_is_refused(percent: float) -> None:
    with pytest.raises(ValueError, match="percent must lie strictly within"):
        order_statistic_ranks(10, percent)


# -- the stall detector ------------------------------------------------------------------


def _record(started_s: float, latency_ms: float, number: int) -> Record:
    return Record(
        request_id=f"r{number}",
        operation="reserve",
        authorization_id="a",
        status=200,
        code="",
        latency_ms=latency_ms,
        started_s=started_s,
        transaction_id=f"t{number}",
        kind="reserve",
        units=1,
    )


def _steady(seconds: int, per_second: int, latency_ms: float = 10.0) -> list[Record]:
    return [
        _record(second + i / per_second, latency_ms, second * per_second + i)
        for second in range(seconds)
        for i in range(per_second)
    ]


def _with_stall(records: Iterable[Record], at_s: float, stall_s: float) -> list[Record]:
    """Every request starting within the stall waits until it ends, as the service's does."""
    stalled = []
    for record in records:
        if at_s <= record.started_s < at_s + stall_s:
            waited = (at_s + stall_s - record.started_s) * 1000
            record = record._replace(latency_ms=record.latency_ms + waited)
        stalled.append(record)
    return stalled


def test_a_stall_of_0_8_s_is_found_where_it_was() -> None:
    records = _with_stall(_steady(10, 200), at_s=3.2, stall_s=0.8)
    stall = find_stall(records, 312.5)
    assert stall is not None
    # Over 312.5 ms: the 100 requests that started within 3.200-3.695 s (every 5 ms), each
    # waiting until 4.0 s and then taking its 10 ms.
    assert stall.start_s == pytest.approx(3.2)
    assert stall.end_s == pytest.approx(3.695 + 0.315)
    assert stall.slow_requests == 100
    assert stall.slow_elsewhere == 0
    # In flight then: the 160 requests started during the stall and the few at its edges.
    assert 160 <= stall.in_flight <= 164


def test_slow_requests_spread_over_the_run_are_no_single_window() -> None:
    records = _steady(10, 100)
    slow = {i * 150 + 50 for i in range(6)}  # one slow request every 1.5 s
    records = [r._replace(latency_ms=400.0) if i in slow else r for i, r in enumerate(records)]
    stall = find_stall(records, 300.0)
    assert stall is not None
    assert stall.slow_requests == 1
    assert stall.slow_elsewhere == 5


def test_evidence_of_a_stalled_run_recomputes_the_percentile_without_it() -> None:
    records = _with_stall(_steady(10, 200), at_s=3.2, stall_s=0.8)
    evidence = latency_evidence(records, {"p99_ms": 300, "error_rate_max": 0.02})
    assert list(evidence["thresholds"]) == ["p99_ms"]
    entry = evidence["thresholds"]["p99_ms"]
    assert entry["n"] == 2000
    assert entry["estimate_ms"] > 300
    assert entry["stall"]["without"]["estimate_ms"] == 10.0
    assert 160 <= entry["stall"]["in_flight"] <= 164


# -- the judgement -----------------------------------------------------------------------


def _judge(values: list[float], limit: float, percent: int = 99) -> str:
    records = [_record(i / 100, v, i) for i, v in enumerate(values)]
    entry = latency_evidence(records, {f"p{percent}_ms": limit})["thresholds"][f"p{percent}_ms"]
    return judge_latency(entry, min_tail_requests=20, stall_max_s=2.0).status


def test_judgement_of_every_status() -> None:
    spread = [float(v) for v in range(1, 2001)]  # p99 1980, interval 1968..1992 (n = 2000)
    assert _judge(spread, 2000) == MET
    assert _judge(spread, 1985) == MET_NOT_CERTAIN
    assert _judge(spread, 1975) == MISSED_NOT_CERTAIN
    assert _judge(spread, 1500) == MISSED
    assert _judge(spread, 1000) == MISSED_FAR  # the lower bound 1968 is 97 % above 1000
    assert _judge(spread[:1000], 2000) == TOO_SMALL  # only 10 requests beyond the p99


def test_a_stall_is_judged_as_a_stall_and_stays_go() -> None:
    records = _with_stall(_steady(10, 200), at_s=3.2, stall_s=0.8)
    result = {
        "config": {"thresholds": {"p99_ms": 300}},
        "latency_evidence": latency_evidence(records, {"p99_ms": 300}),
    }
    (check,) = evaluate_thresholds("s", result)
    assert check.status == STALL
    assert check.decision == GO
    assert not check.ok
    assert "3.2-4.0 s" in check.note


def test_a_long_freeze_is_no_stall() -> None:
    """Closed-model users frozen for 5 s all started within a second: an outage, not a stall."""
    records = _steady(10, 100)
    # 80 of 1,000 requests (8 %) started within 3.0-3.8 s and waited 5 s: p95 is 5 s, and
    # its interval (ranks 936-963) lies among them.
    records = [r._replace(latency_ms=5000.0) if 3.0 <= r.started_s < 3.795 else r for r in records]
    result = {
        "config": {"thresholds": {"p95_ms": 300}},
        "latency_evidence": latency_evidence(records, {"p95_ms": 300}),
    }
    (check,) = evaluate_thresholds("s", result)
    assert check.status == MISSED_FAR
    assert check.decision == NO_GO


def test_an_uncertain_miss_is_conditional() -> None:
    spread = [float(v) for v in range(1, 2001)]
    records = [_record(i / 100, v, i) for i, v in enumerate(spread)]
    # Spread evenly, the slow requests lie in no single window: no stall excuses them.
    result = {
        "config": {"thresholds": {"p99_ms": 1975}},
        "latency_evidence": latency_evidence(records, {"p99_ms": 1975}),
    }
    (check,) = evaluate_thresholds("s", result)
    assert check.status == MISSED_NOT_CERTAIN
    assert check.decision == CONDITIONAL
