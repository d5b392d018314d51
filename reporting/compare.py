"""Compare two runs metric by metric, with a bootstrap interval of each difference.

Pure functions: the run folders are read by reporting.compare_inputs; everything here works on
the per-second blocks of requests it builds, so the statistics can be checked on hand-made
samples with known answers.

The resampling, in one place so the report can say it:

- *Moving unit: one second of requests.* Requests of one run are not independent: a pause of
  the machine or a burst of retries slows every request of that second together. Resampling
  single requests would treat 800 correlated latencies as 800 independent ones and call
  ordinary run-to-run noise significant. Each run is cut into blocks by the second its
  requests started (counted from its first request) and the blocks are resampled with
  replacement (a non-overlapping block bootstrap, Künsch 1989 / Carlstein 1986).
- *Percentile bootstrap, B = 2000, fixed seed.* Each round draws, independently for the base
  and the new side, as many blocks as that side has, recomputes the metric on the pooled
  requests of the drawn blocks, and keeps new minus base. The interval is the 2.5th and 97.5th
  percentile of those differences (95 %).
- *Throughput* is requests over the seconds the drawn blocks cover (the last, partial second
  counts for its length); error, unexpected-error and retry rates are their counts over the
  drawn requests; latency percentiles are nearest-rank over the drawn requests, as in
  result.json.
- *Repeats* (the strategy matrix pools several runs per side): each round first draws runs
  with replacement, then blocks within each drawn run (a two-stage bootstrap), so the
  run-to-run noise is in the interval too. A single run per side cannot show that noise.
- *Integrity* is not resampled: it is pass/fail from integrity.json.

The judgement: *worse* (or *better*) only when the whole interval lies on that side of zero
**and** the difference exceeds the metric's tolerance (a share of the base value, with a small
absolute floor), so a move that is statistically real but too small to matter is *no
significant change*.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from results.latency import percentile

RESAMPLES = 2000
SEED = 20261201
CONFIDENCE = 0.95
DEFAULT_TOLERANCE = 0.10  # a difference must exceed 10 % of the base value to be judged
BETTER, WORSE, SAME, CHANGED = "better", "worse", "no significant change", "changed"
NOT_COMPARABLE = "not comparable"
LOWER_IS_BETTER, HIGHER_IS_BETTER, NEITHER = "lower", "higher", "neither"
LATENCY_PERCENTILES = (50, 95, 99)
# Below these absolute differences nothing is judged, whatever the share: half a millisecond
# of latency, half a percentage point of a rate, one request per second.
LATENCY_FLOOR_MS = 0.5
RATE_FLOOR = 0.005
THROUGHPUT_FLOOR_RPS = 1.0


@dataclass(frozen=True)
class Block:
    """The requests of one second of a run: latencies sorted, and their counts."""

    latencies_ms: tuple[float, ...]
    errors: int
    unexpected_errors: int
    retries: int
    seconds: float  # 1.0, or the length of the run's last, partial second
    run: int = 0  # which run of a side it came from, when repeats are pooled

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)


@dataclass(frozen=True)
class Request:
    """What the comparison needs of one recorded request (attempt)."""

    started_s: float
    latency_ms: float
    error: bool
    unexpected_error: bool
    retry: bool


@dataclass(frozen=True)
class ScenarioSample:
    """One side of one scenario: its blocks and the facts that are not resampled."""

    scenario: str
    blocks: tuple[Block, ...]
    integrity_ok: bool | None  # None: no integrity.json
    integrity_violations: int = 0
    # Judge error_rate as lower-is-better only when the scenario caps it (error_rate_max and
    # no error_rate_min); a scenario that provokes refusals on purpose moves it either way.
    error_rate_capped: bool = True
    thresholds: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    """How one metric is read from blocks and which way is better."""

    name: str
    label: str
    unit: str  # "ms", "rps" or "rate"
    direction: str
    floor: float


@dataclass(frozen=True)
class MetricComparison:
    """One metric of one scenario: base, new, difference, its interval and the judgement."""

    scenario: str
    metric: str
    label: str
    unit: str
    direction: str
    base: float | None
    new: float | None
    difference: float | None
    relative: float | None  # difference / base; None when base is 0 or missing
    low: float | None  # the interval of the difference
    high: float | None
    tolerance: float | None  # the absolute difference that must be exceeded to be judged
    judgement: str


@dataclass(frozen=True)
class ScenarioComparison:
    """Every metric of one scenario, and the data for its percentile spectrum."""

    scenario: str
    metrics: tuple[MetricComparison, ...]
    base_requests: int
    new_requests: int


METRICS = (
    *(
        Metric(f"p{q}_ms", f"p{q}", "ms", LOWER_IS_BETTER, LATENCY_FLOOR_MS)
        for q in LATENCY_PERCENTILES
    ),
    Metric("throughput_rps", "throughput", "rps", HIGHER_IS_BETTER, THROUGHPUT_FLOOR_RPS),
    Metric("error_rate", "error rate", "rate", LOWER_IS_BETTER, RATE_FLOOR),
    Metric("unexpected_error_rate", "unexpected error rate", "rate", LOWER_IS_BETTER, RATE_FLOOR),
    Metric("retry_rate", "retried attempts", "rate", LOWER_IS_BETTER, RATE_FLOOR),
)
INTEGRITY_METRIC = "integrity"


def blocks_from_requests(requests: Iterable[Request]) -> tuple[Block, ...]:
    """Cut a run's requests into one block per second since its first request's start.

    The last block lasts until the last request ended (at most a second): throughput over all
    blocks is then requests over the measured window, as result.json counts it.
    """
    ordered = sorted(requests, key=lambda request: request.started_s)
    if not ordered:
        return ()
    first = ordered[0].started_s
    end = max(request.started_s + request.latency_ms / 1000 for request in ordered) - first
    count = max(math.floor(ordered[-1].started_s - first) + 1, 1)
    grouped: list[list[Request]] = [[] for _ in range(count)]
    for request in ordered:
        grouped[min(math.floor(request.started_s - first), count - 1)].append(request)
    blocks = []
    for index, group in enumerate(grouped):
        last = index == count - 1
        seconds = min(max(end - index, 1e-3), 1.0) if last else 1.0
        blocks.append(
            Block(
                latencies_ms=tuple(sorted(r.latency_ms for r in group)),
                errors=sum(r.error for r in group),
                unexpected_errors=sum(r.unexpected_error for r in group),
                retries=sum(r.retry for r in group),
                seconds=seconds,
            )
        )
    return tuple(blocks)


def metric_values(blocks: Sequence[Block]) -> dict[str, float | None]:
    """Return every metric of ``blocks`` pooled: percentiles, throughput and rates."""
    latencies = sorted(chain.from_iterable(block.latencies_ms for block in blocks))
    requests = len(latencies)
    seconds = sum(block.seconds for block in blocks)
    values: dict[str, float | None] = {
        f"p{q}_ms": percentile(latencies, q) for q in LATENCY_PERCENTILES
    }
    values["throughput_rps"] = requests / seconds if seconds > 0 else None
    for name, count in (
        ("error_rate", sum(block.errors for block in blocks)),
        ("unexpected_error_rate", sum(block.unexpected_errors for block in blocks)),
        ("retry_rate", sum(block.retries for block in blocks)),
    ):
        values[name] = count / requests if requests else None
    return values


def bootstrap_differences(
    base: Sequence[Block],
    new: Sequence[Block],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, list[float]]:
    """Return, per metric, the new-minus-base differences of ``resamples`` block resamples."""
    rng = random.Random(seed)
    differences: dict[str, list[float]] = {metric.name: [] for metric in METRICS}
    if not base or not new:
        return differences
    base_runs, new_runs = _by_run(base), _by_run(new)
    for _ in range(resamples):
        drawn_base = metric_values(_draw(rng, base_runs))
        drawn_new = metric_values(_draw(rng, new_runs))
        for name, values in differences.items():
            before, after = drawn_base[name], drawn_new[name]
            if before is not None and after is not None:
                values.append(after - before)
    return differences


def _by_run(blocks: Sequence[Block]) -> list[list[Block]]:
    runs: dict[int, list[Block]] = {}
    for block in blocks:
        runs.setdefault(block.run, []).append(block)
    return list(runs.values())


def _draw(rng: random.Random, runs: Sequence[Sequence[Block]]) -> list[Block]:
    """Draw one resample: runs with replacement (when repeats were pooled), then blocks in each.

    Drawing whole runs first carries the run-to-run noise (another job on the machine slows a
    whole run) into the interval; with one run per side only the within-run noise is there.
    """
    chosen = rng.choices(runs, k=len(runs)) if len(runs) > 1 else runs
    return [block for run in chosen for block in rng.choices(run, k=len(run))]


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Return the percentile interval holding ``confidence`` of ``values`` (nearest rank)."""
    ordered = sorted(values)
    tail = (1 - confidence) / 2 * 100
    low = percentile(ordered, tail)
    high = percentile(ordered, 100 - tail)
    if low is None or high is None:
        raise ValueError("no values to take an interval of")
    return low, high


def judge(
    *,
    difference: float,
    low: float,
    high: float,
    tolerance: float,
    direction: str,
) -> str:
    """Judge a difference: beyond zero with 95 % confidence and beyond the tolerance."""
    up = low > 0 and difference > tolerance
    down = high < 0 and difference < -tolerance
    if not (up or down):
        return SAME
    if direction == NEITHER:
        return CHANGED
    return WORSE if up == (direction == LOWER_IS_BETTER) else BETTER


def tolerance_for(metric: Metric, base: float | None, share: float) -> float:
    """Return the absolute difference that must be exceeded: a share of base, at least the floor."""
    return max(abs(base or 0.0) * share, metric.floor)


def compare_scenario(
    base: ScenarioSample,
    new: ScenarioSample,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> ScenarioComparison:
    """Compare one scenario of two runs: every metric, then integrity."""
    base_values = metric_values(base.blocks)
    new_values = metric_values(new.blocks)
    drawn = bootstrap_differences(base.blocks, new.blocks, resamples=resamples, seed=seed)
    comparisons = []
    for metric in METRICS:
        direction = metric.direction
        if metric.name == "error_rate" and not (base.error_rate_capped and new.error_rate_capped):
            direction = NEITHER
        comparisons.append(
            _compare_metric(
                base.scenario,
                metric,
                direction,
                base_values[metric.name],
                new_values[metric.name],
                drawn[metric.name],
                tolerance,
            )
        )
    comparisons.append(_compare_integrity(base, new))
    return ScenarioComparison(
        scenario=base.scenario,
        metrics=tuple(comparisons),
        base_requests=sum(block.requests for block in base.blocks),
        new_requests=sum(block.requests for block in new.blocks),
    )


def _compare_metric(
    scenario: str,
    metric: Metric,
    direction: str,
    base: float | None,
    new: float | None,
    drawn: Sequence[float],
    share: float,
) -> MetricComparison:
    if base is None or new is None or not drawn:
        return MetricComparison(
            scenario, metric.name, metric.label, metric.unit, direction, base, new,
            None, None, None, None, None, NOT_COMPARABLE,
        )  # fmt: skip
    difference = new - base
    low, high = interval(drawn)
    tolerance = tolerance_for(metric, base, share)
    return MetricComparison(
        scenario=scenario,
        metric=metric.name,
        label=metric.label,
        unit=metric.unit,
        direction=direction,
        base=base,
        new=new,
        difference=difference,
        relative=difference / base if base else None,
        low=low,
        high=high,
        tolerance=tolerance,
        judgement=judge(
            difference=difference, low=low, high=high, tolerance=tolerance, direction=direction
        ),
    )


def _compare_integrity(base: ScenarioSample, new: ScenarioSample) -> MetricComparison:
    """Pass/fail, not resampled: a violation in the new run is worse, whatever the base did."""
    if base.integrity_ok is None or new.integrity_ok is None:
        judgement = NOT_COMPARABLE
    elif new.integrity_ok == base.integrity_ok:
        judgement = SAME if new.integrity_ok else WORSE  # failing twice is still failing
    else:
        judgement = BETTER if new.integrity_ok else WORSE
    return MetricComparison(
        scenario=base.scenario,
        metric=INTEGRITY_METRIC,
        label="integrity violations",
        unit="count",
        direction=LOWER_IS_BETTER,
        base=None if base.integrity_ok is None else float(base.integrity_violations),
        new=None if new.integrity_ok is None else float(new.integrity_violations),
        difference=None,
        relative=None,
        low=None,
        high=None,
        tolerance=None,
        judgement=judgement,
    )


def spectrum(latencies_ms: Sequence[float], points: int = 200) -> list[tuple[float, float]]:
    """Return (percentile, latency) pairs spaced evenly on HdrHistogram's 1/(1-q) log axis."""
    ordered = sorted(latencies_ms)
    if not ordered:
        return []
    # The highest percentile with meaning is the one the slowest request stands for.
    top = 1 - 1 / len(ordered) if len(ordered) > 1 else 0.5
    span = math.log10(1 / (1 - top))
    pairs = []
    for step in range(points + 1):
        q = 1 - 10 ** (-span * step / points)
        value = percentile(ordered, min(q * 100, 100.0))
        if value is not None:
            pairs.append((q * 100, value))
    pairs.append((100.0, ordered[-1]))
    return pairs


def comparison_document(
    scenarios: Sequence[ScenarioComparison], meta: Mapping[str, Any], *, repeats: bool = False
) -> dict[str, Any]:
    """Return compare.json: the runs compared, the method, every metric and the overall call."""
    rows = [vars(metric) for comparison in scenarios for metric in comparison.metrics]
    worse = [row for row in rows if row["judgement"] == WORSE]
    better = [row for row in rows if row["judgement"] == BETTER]
    return {
        "schema_version": 1,
        "kind": "clinic-loadtest-comparison",
        **meta,
        "method": method_description(meta.get("tolerance", DEFAULT_TOLERANCE), repeats=repeats),
        "outcome": WORSE if worse else BETTER if better else SAME,
        "worse": [f"{row['scenario']} {row['label']}" for row in worse],
        "better": [f"{row['scenario']} {row['label']}" for row in better],
        "scenarios": [
            {
                "scenario": comparison.scenario,
                "base_requests": comparison.base_requests,
                "new_requests": comparison.new_requests,
                "metrics": [vars(metric) for metric in comparison.metrics],
            }
            for comparison in scenarios
        ],
    }


def method_description(tolerance: float, *, repeats: bool = False) -> dict[str, Any]:
    """Say, machine-readably, how the intervals and judgements were made."""
    drawn = (
        "two-stage: the runs of a side drawn with replacement, then 1-second blocks of "
        "requests within each drawn run"
        if repeats
        else "non-overlapping 1-second blocks of requests drawn with replacement, each run "
        "independently"
    )
    return {
        "bootstrap": f"percentile; {drawn}",
        "repeats": repeats,
        "resamples": RESAMPLES,
        "seed": SEED,
        "confidence": CONFIDENCE,
        "tolerance": tolerance,
        "floors": {"ms": LATENCY_FLOOR_MS, "rate": RATE_FLOOR, "rps": THROUGHPUT_FLOOR_RPS},
        "rule": "worse/better only when the whole interval is on one side of zero and the "
        "difference exceeds max(tolerance × base, floor); integrity is pass/fail, not resampled",
    }
