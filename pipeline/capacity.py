"""Find the highest sustainable arrival rate: double until a step fails, then bisect.

Pure search logic: the step itself (run the scenario at a rate, judge it) is a function passed
in, and so is the clock, so every sequence of rates can be checked with a fake judge.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

GROWTH_FACTOR = 2.0  # the doubling phase
# Bisecting stops once the last good and the first bad rate are this close (relative to the
# good one): run-to-run noise on a shared 2-core machine is of that order.
RESOLUTION = 0.10
MIN_RATE_RPS = 1.0  # halving below this (every step failed) says nothing useful
RATE_DECIMALS = 1  # rates are offered to 0.1 request/s
# A step costs more than its warm-up and measurement: Molotov's start-up, the reset to the
# baseline, the integrity checks. First guess; afterwards the longest step so far is used.
STEP_OVERHEAD_GUESS_S = 6.0

CONVERGED = "converged"
FATAL = "fatal"
NOTHING_SUSTAINABLE = "nothing_sustainable"
OUT_OF_TIME = "max_duration"


@dataclass(frozen=True)
class StepOutcome:
    """One step of the search: the rate offered and whether the service sustained it."""

    rate_rps: float
    passed: bool
    # Something that makes further steps meaningless: integrity violated, service crashed.
    fatal: bool = False
    reasons: tuple[str, ...] = ()
    wall_s: float = 0.0  # what the step cost, overhead included (set by the search)


@dataclass(frozen=True)
class SearchPlan:
    """The search's inputs: where to start and how much time each step and the whole may take."""

    start_rate_rps: float
    max_duration_s: float
    step_s: float
    warmup_s: float
    overhead_guess_s: float = STEP_OVERHEAD_GUESS_S
    resolution: float = RESOLUTION
    min_rate_rps: float = MIN_RATE_RPS

    def nominal_step_s(self) -> float:
        """Return what a step should cost before any was measured."""
        return self.warmup_s + self.step_s + self.overhead_guess_s

    def expected_step_s(self, steps: Sequence[StepOutcome]) -> float:
        """Return what the next step is planned to cost: the longest so far, or the guess."""
        return max([self.nominal_step_s(), *(step.wall_s for step in steps)])


@dataclass(frozen=True)
class SearchResult:
    """Every step run, why the search stopped, and what it found."""

    steps: tuple[StepOutcome, ...]
    stop_reason: str
    stop_detail: str

    @property
    def sustainable_rate_rps(self) -> float | None:
        return bracket(self.steps)[0]

    @property
    def first_failed_rate_rps(self) -> float | None:
        return bracket(self.steps)[1]


def bracket(steps: Sequence[StepOutcome]) -> tuple[float | None, float | None]:
    """Return (highest passed rate below the lowest failed one, lowest failed rate).

    A pass above a failure (noise) is not counted as sustainable: a lower rate already broke.
    """
    failed = [step.rate_rps for step in steps if not step.passed]
    lowest_failed = min(failed) if failed else None
    passed = [
        step.rate_rps
        for step in steps
        if step.passed and (lowest_failed is None or step.rate_rps < lowest_failed)
    ]
    return (max(passed) if passed else None), lowest_failed


def next_rate(
    steps: Sequence[StepOutcome],
    *,
    start_rate_rps: float,
    resolution: float = RESOLUTION,
    min_rate_rps: float = MIN_RATE_RPS,
) -> float | None:
    """Return the rate of the next step, or None when the search is over.

    Doubling from the start rate while every step passes; after the first failure, the midpoint
    between the last good and the first bad rate until they are within ``resolution``; when no
    step has passed yet, half the lowest failed rate. A fatal step ends the search.
    """
    if not steps:
        return start_rate_rps
    if steps[-1].fatal:
        return None
    good, bad = bracket(steps)
    if bad is None:
        return _rounded(max(step.rate_rps for step in steps) * GROWTH_FACTOR)
    if good is None:
        lower = _rounded(bad / GROWTH_FACTOR)
        return lower if lower >= min_rate_rps else None
    if bad - good <= resolution * good + 1e-9:
        return None
    middle = _rounded((good + bad) / 2)
    return middle if good < middle < bad else None


def search(
    run_step: Callable[[float], StepOutcome],
    plan: SearchPlan,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> SearchResult:
    """Run steps until the bracket is tight, a step is fatal, or the next would overrun the time.

    Each step is planned against the time left: one that would not fit is not started, so the
    search ends within ``plan.max_duration_s`` as long as no step runs far over its estimate.
    """
    started = clock()
    steps: list[StepOutcome] = []
    while True:
        rate = next_rate(
            steps,
            start_rate_rps=plan.start_rate_rps,
            resolution=plan.resolution,
            min_rate_rps=plan.min_rate_rps,
        )
        if rate is None:
            reason, detail = _why_stopped(steps, plan)
            return SearchResult(tuple(steps), reason, detail)
        left_s = plan.max_duration_s - (clock() - started)
        needed_s = plan.expected_step_s(steps)
        if needed_s > left_s:
            detail = (
                f"the next step ({rate:g} req/s, about {needed_s:.0f} s) would not fit in the "
                f"{max(left_s, 0):.0f} s left of --max-duration {plan.max_duration_s:g} s"
            )
            return SearchResult(tuple(steps), OUT_OF_TIME, detail)
        step_started = clock()
        outcome = run_step(rate)
        steps.append(replace(outcome, rate_rps=rate, wall_s=round(clock() - step_started, 3)))


def _why_stopped(steps: Sequence[StepOutcome], plan: SearchPlan) -> tuple[str, str]:
    if steps and steps[-1].fatal:
        reasons = "; ".join(steps[-1].reasons) or "no reason recorded"
        return FATAL, f"the step at {steps[-1].rate_rps:g} req/s cannot be followed: {reasons}"
    good, bad = bracket(steps)
    if good is None:
        return NOTHING_SUSTAINABLE, (
            f"every step failed, down to {bad:g} req/s (halving stops below "
            f"{plan.min_rate_rps:g} req/s)"
        )
    return CONVERGED, (
        f"{good:g} req/s held and {bad:g} req/s did not: within {plan.resolution:.0%} of each other"
    )


def _rounded(rate: float) -> float:
    return math.floor(rate * 10**RATE_DECIMALS + 0.5) / 10**RATE_DECIMALS
