"""The shared backoff: exact pauses for hand-picked draws, the cap, 1-based retries."""

from __future__ import annotations

import pytest

from retry_backoff import capped_exponential_s, full_jitter_delay_s

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
