"""The shared backoff: exact pauses for hand-picked draws, the cap, 1-based retries; and the
pauses of the service, the client and the supervisor, the same as before they shared it."""

from __future__ import annotations

import random

import pytest

from molotov_scenarios.retries import RetryPolicy
from retry_backoff import capped_exponential_s, full_jitter_delay_s
from target.reservations import backoff_s
from target.supervisor import restart_delay_s

BASE_S = 0.25
CAP_S = 1.5


@pytest.mark.parametrize(
    ("retry", "ceiling_s"),
    [(1, 0.25), (2, 0.5), (3, 1.0), (4, 1.5), (5, 1.5), (2000, 1.5)],
)
def test_ceiling_doubles_per_retry_up_to_the_cap(retry: int, ceiling_s: float) -> None:
    assert capped_exponential_s(retry, base_s=BASE_S, cap_s=CAP_S) == ceiling_s


@pytest.mark.parametrize(
    ("retry", "draw", "pause_s"),
    [
        (1, 0.0, 0.0),
        (1, 0.5, 0.125),
        (1, 1.0, 0.25),
        (3, 0.0, 0.0),
        (3, 0.5, 0.5),
        (3, 1.0, 1.0),
        (4, 0.5, 0.75),  # 0.25 * 2^3 = 2.0 is past the cap: half of 1.5
        (4, 1.0, 1.5),
        (9, 1.0, 1.5),
    ],
)
def test_pause_is_the_draw_times_the_capped_ceiling(
    retry: int, draw: float, pause_s: float
) -> None:
    pause = full_jitter_delay_s(retry, base_s=BASE_S, cap_s=CAP_S, random=lambda: draw)
    assert pause == pause_s


@pytest.mark.parametrize("retry", [0, -1])
def test_retries_are_counted_from_one(retry: int) -> None:
    with pytest.raises(ValueError, match="counted from 1"):
        full_jitter_delay_s(retry, base_s=BASE_S, cap_s=CAP_S, random=lambda: 0.5)
    with pytest.raises(ValueError, match="counted from 1"):
        capped_exponential_s(retry, base_s=BASE_S, cap_s=CAP_S)


@pytest.mark.parametrize("retry", [1, 2, 5, 6, 12])
def test_the_service_pauses_as_before_the_shared_formula(retry: int) -> None:
    # It used uniform(0, min(100 ms, 2 ms * 2^n)); now base 4 ms with 2^(n-1): the same pauses.
    random.seed(retry)
    before = random.uniform(0, min(0.100, 0.002 * 2**retry))
    random.seed(retry)
    assert backoff_s(retry) == before


@pytest.mark.parametrize("retry", [1, 2, 5, 6, 12])
def test_the_client_pauses_as_before_the_shared_formula(retry: int) -> None:
    before = random.Random(retry).uniform(0.0, min(1.0, 0.05 * 2 ** (retry - 1)))
    assert RetryPolicy().backoff_s(retry, random.Random(retry)) == before


def test_the_supervisor_restarts_on_the_ceiling_without_jitter() -> None:
    delays = [restart_delay_s(crashes) for crashes in range(1, 9)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
