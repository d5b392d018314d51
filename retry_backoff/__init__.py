"""Capped exponential backoff with full jitter: the one pause formula every retry loop uses.

Retries are counted from 1: the pause before the n-th retry is drawn from
``uniform(0, min(cap, base * 2^(n-1)))``, so the first retry waits up to ``base``, each later
one up to twice the last, never more than ``cap`` ("full jitter", as in the AWS Architecture
Blog's "Exponential Backoff And Jitter": many clients retrying at once spread out).

A neutral package on purpose: the service (`target/`) and the load scenarios
(`molotov_scenarios/`) both import it, and neither imports the other.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# 2.0 ** 1024 overflows a float; long before that any base has passed any cap.
_MAX_EXPONENT = 1023


def capped_exponential_s(retry: int, *, base_s: float, cap_s: float) -> float:
    """Return the longest pause before retry number ``retry`` (1-based): min(cap, base * 2^(n-1)).

    Raises ValueError when ``retry`` is below 1.
    """
    if retry < 1:
        raise ValueError(f"retries are counted from 1, got {retry}")
    return min(cap_s, base_s * 2.0 ** min(retry - 1, _MAX_EXPONENT))


def full_jitter_delay_s(
    retry: int,
    *,
    base_s: float,
    cap_s: float,
    random: Callable[[], float] = random.random,
) -> float:
    """Return the pause before retry number ``retry`` (1-based): uniform(0, its capped ceiling).

    ``random``: a source of floats in [0, 1), such as a seeded ``random.Random(...).random``.
    Raises ValueError when ``retry`` is below 1.
    """
    return random() * capped_exponential_s(retry, base_s=base_s, cap_s=cap_s)
