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
**and** the difference exceeds the metric's margin of practical significance, max(absolute,
relative × base) (DEFAULT_MARGINS; `[compare.margins]` in profiles.toml overrides them per
metric). A move the interval is sure of but smaller than the margin is *within margin*; one
whose interval holds zero is *no significant change*. Every judgement carries its margin and
how many runs each side had: with one run a side the noise between runs is not covered.
"""

from __future__ import annotations

import dataclasses
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
BETTER, WORSE, SAME, CHANGED = "better", "worse", "no significant change", "changed"
WITHIN_MARGIN = "within margin"
NOT_COMPARABLE = "not comparable"
LOWER_IS_BETTER, HIGHER_IS_BETTER, NEITHER = "lower", "higher", "neither"
LATENCY_PERCENTILES = (50, 95, 99)
MARGIN_KEYS = ("absolute", "relative")
NOISE_COVERED = "covered"
NOISE_PARTLY = "covered on one side only"
NOISE_NOT_COVERED = "not covered"


@dataclass(frozen=True)
class Margin:
    """The smallest change that matters: max(absolute, relative × |base|), in the metric's unit."""

    absolute: float = 0.0
    relative: float = 0.0

    def of(self, base: float | None) -> float:
        """Return the margin for a base value."""
        return max(self.absolute, self.relative * abs(base or 0.0))

    def describe(self, unit: str) -> str:
        """Say the rule in words: "max(1 ms, 5 %)", "5 %", "0.5 percentage points"."""
        parts = []
        if self.absolute:
            if unit == "rate":
                parts.append(f"{self.absolute * 100:g} percentage points")
            else:
                parts.append(f"{self.absolute:g} {'/s' if unit == 'rps' else unit}".strip())
        if self.relative:
            parts.append(f"{self.relative * 100:g} %")
        if not parts:
            return "none"
        return parts[0] if len(parts) == 1 else f"max({', '.join(parts)})"


# The one home of the defaults: a latency percentile must move by more than 1 ms and 5 %,
# throughput by more than 5 %, a rate by more than half a percentage point.
LATENCY_MARGIN = Margin(absolute=1.0, relative=0.05)
THROUGHPUT_MARGIN = Margin(relative=0.05)
RATE_MARGIN = Margin(absolute=0.005)
DEFAULT_MARGINS: Mapping[str, Margin] = {
    **{f"p{q}_ms": LATENCY_MARGIN for q in LATENCY_PERCENTILES},
    "throughput_rps": THROUGHPUT_MARGIN,
    "error_rate": RATE_MARGIN,
    "unexpected_error_rate": RATE_MARGIN,
    "retry_rate": RATE_MARGIN,
}
NO_MARGINS: Mapping[str, Margin] = {name: Margin() for name in DEFAULT_MARGINS}


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
    margin: float | None  # the absolute difference that must be exceeded to be judged
    margin_rule: str | None  # how the margin was made, e.g. "max(1 ms, 5 %)"
    judgement: str
    base_runs: int = 1
    new_runs: int = 1
    between_runs: str = NOISE_NOT_COVERED  # is the noise between runs in the interval?


@dataclass(frozen=True)
class ScenarioComparison:
    """Every metric of one scenario, and the data for its percentile spectrum."""

    scenario: str
    metrics: tuple[MetricComparison, ...]
    base_requests: int
    new_requests: int
    base_runs: int = 1
    new_runs: int = 1


METRICS = (
    *(Metric(f"p{q}_ms", f"p{q}", "ms", LOWER_IS_BETTER) for q in LATENCY_PERCENTILES),
    Metric("throughput_rps", "throughput", "rps", HIGHER_IS_BETTER),
    Metric("error_rate", "error rate", "rate", LOWER_IS_BETTER),
    Metric("unexpected_error_rate", "unexpected error rate", "rate", LOWER_IS_BETTER),
    Metric("retry_rate", "retried attempts", "rate", LOWER_IS_BETTER),
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
    margin: float,
    direction: str,
) -> str:
    """Judge a difference: beyond zero with 95 % confidence, and beyond the margin.

    An interval that holds zero is *no significant change*; one that excludes it around a
    difference no larger than the margin is *within margin*: real, too small to matter.
    """
    if low <= 0 <= high:
        return SAME
    up = low > 0 and difference > margin
    down = high < 0 and difference < -margin
    if not (up or down):
        return WITHIN_MARGIN
    if direction == NEITHER:
        return CHANGED
    return WORSE if up == (direction == LOWER_IS_BETTER) else BETTER


def margins_from_table(
    table: Mapping[str, Any], defaults: Mapping[str, Margin] = DEFAULT_MARGINS
) -> dict[str, Margin]:
    """Return the defaults with a `[compare.margins]` table's per-metric overrides applied.

    ``table`` maps a metric (p95_ms, throughput_rps, error_rate...) to {absolute, relative};
    a key left out keeps its default. Raise ValueError, one line, on anything else.
    """
    margins = dict(defaults)
    for name, entry in table.items():
        if name not in margins:
            raise ValueError(
                f"[compare.margins]: unknown metric {name!r}; choose of {', '.join(margins)}"
            )
        if not isinstance(entry, Mapping) or not set(entry) <= set(MARGIN_KEYS):
            raise ValueError(
                f"[compare.margins] {name} must be a table of {' and '.join(MARGIN_KEYS)}, "
                f"e.g. {{ absolute = 1.0, relative = 0.05 }}, not {entry!r}"
            )
        values = {}
        for key, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(
                    f"[compare.margins] {name}.{key} must be a number of at least 0, not {value!r}"
                )
            values[key] = float(value)
        margins[name] = dataclasses.replace(margins[name], **values)
    return margins


def with_relative(margins: Mapping[str, Margin], share: float) -> dict[str, Margin]:
    """Return ``margins`` with every relative part (latency, throughput) set to ``share``."""
    return {
        name: dataclasses.replace(margin, relative=share) if margin.relative else margin
        for name, margin in margins.items()
    }


def between_runs_noise(base_runs: int, new_runs: int) -> str:
    """Say whether the interval holds the noise between runs: it does with several a side."""
    if base_runs > 1 and new_runs > 1:
        return NOISE_COVERED
    if base_runs > 1 or new_runs > 1:
        return NOISE_PARTLY
    return NOISE_NOT_COVERED


def runs_of(blocks: Sequence[Block]) -> int:
    """Return how many runs a side's blocks came from."""
    return len({block.run for block in blocks}) or 1


def compare_scenario(
    base: ScenarioSample,
    new: ScenarioSample,
    *,
    margins: Mapping[str, Margin] = DEFAULT_MARGINS,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> ScenarioComparison:
    """Compare one scenario of two sides (one run each, or pooled repeats): metrics, integrity."""
    base_values = metric_values(base.blocks)
    new_values = metric_values(new.blocks)
    drawn = bootstrap_differences(base.blocks, new.blocks, resamples=resamples, seed=seed)
    runs = (runs_of(base.blocks), runs_of(new.blocks))
    comparisons = []
    for metric in METRICS:
        direction = metric.direction
        if metric.name == "error_rate" and not (base.error_rate_capped and new.error_rate_capped):
            direction = NEITHER
        comparison = _compare_metric(
            base.scenario,
            metric,
            direction,
            base_values[metric.name],
            new_values[metric.name],
            drawn[metric.name],
            margins[metric.name],
        )
        comparisons.append(
            dataclasses.replace(
                comparison,
                base_runs=runs[0],
                new_runs=runs[1],
                between_runs=between_runs_noise(*runs),
            )
        )
    comparisons.append(_compare_integrity(base, new))
    return ScenarioComparison(
        scenario=base.scenario,
        metrics=tuple(comparisons),
        base_requests=sum(block.requests for block in base.blocks),
        new_requests=sum(block.requests for block in new.blocks),
        base_runs=runs[0],
        new_runs=runs[1],
    )


def _compare_metric(
    scenario: str,
    metric: Metric,
    direction: str,
    base: float | None,
    new: float | None,
    drawn: Sequence[float],
    margin: Margin,
) -> MetricComparison:
    rule = margin.describe(metric.unit)
    if base is None or new is None or not drawn:
        return MetricComparison(
            scenario, metric.name, metric.label, metric.unit, direction, base, new,
            None, None, None, None, None, rule, NOT_COMPARABLE,
        )  # fmt: skip
    difference = new - base
    low, high = interval(drawn)
    absolute = margin.of(base)
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
        margin=absolute,
        margin_rule=rule,
        judgement=judge(
            difference=difference, low=low, high=high, margin=absolute, direction=direction
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
        margin=None,
        margin_rule="pass/fail",
        judgement=judgement,
        base_runs=runs_of(base.blocks),
        new_runs=runs_of(new.blocks),
        between_runs=between_runs_noise(runs_of(base.blocks), runs_of(new.blocks)),
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
    scenarios: Sequence[ScenarioComparison],
    meta: Mapping[str, Any],
    *,
    margins: Mapping[str, Margin] = DEFAULT_MARGINS,
) -> dict[str, Any]:
    """Return compare.json: the runs compared, the method, every metric and the overall call."""
    rows = [vars(metric) for comparison in scenarios for metric in comparison.metrics]
    worse = [row for row in rows if row["judgement"] == WORSE]
    better = [row for row in rows if row["judgement"] == BETTER]
    base_runs = max((comparison.base_runs for comparison in scenarios), default=1)
    new_runs = max((comparison.new_runs for comparison in scenarios), default=1)
    return {
        "schema_version": 2,
        "kind": "clinic-loadtest-comparison",
        **meta,
        "method": method_description(margins, base_runs=base_runs, new_runs=new_runs),
        "outcome": WORSE if worse else BETTER if better else SAME,
        "worse": [f"{row['scenario']} {row['label']}" for row in worse],
        "better": [f"{row['scenario']} {row['label']}" for row in better],
        "within_margin": [
            f"{row['scenario']} {row['label']}" for row in rows if row["judgement"] == WITHIN_MARGIN
        ],
        "scenarios": [
            {
                "scenario": comparison.scenario,
                "base_requests": comparison.base_requests,
                "new_requests": comparison.new_requests,
                "base_runs": comparison.base_runs,
                "new_runs": comparison.new_runs,
                "metrics": [vars(metric) for metric in comparison.metrics],
            }
            for comparison in scenarios
        ],
    }


def method_description(
    margins: Mapping[str, Margin], *, base_runs: int = 1, new_runs: int = 1
) -> dict[str, Any]:
    """Say, machine-readably, how the intervals and judgements were made."""
    repeats = base_runs > 1 or new_runs > 1
    drawn = (
        "hierarchical: the runs of a side drawn with replacement, then 1-second blocks of "
        "requests within each drawn run"
        if repeats
        else "non-overlapping 1-second blocks of requests drawn with replacement, each run "
        "independently"
    )
    noise = between_runs_noise(base_runs, new_runs)
    return {
        "bootstrap": f"percentile; {drawn}",
        "repeats": repeats,
        "base_runs": base_runs,
        "new_runs": new_runs,
        "between_runs": noise,
        "between_runs_note": _noise_note(noise, base_runs, new_runs),
        "resamples": RESAMPLES,
        "seed": SEED,
        "confidence": CONFIDENCE,
        "margins": {
            name: {**dataclasses.asdict(margin), "rule": margin.describe(metric.unit)}
            for metric in METRICS
            for name, margin in margins.items()
            if name == metric.name
        },
        "rule": "worse/better only when the whole interval is on one side of zero and the "
        "difference exceeds the metric's margin, max(absolute, relative × base); within margin "
        "when the interval excludes zero but the difference does not exceed it; integrity is "
        "pass/fail, not resampled",
    }


def _noise_note(noise: str, base_runs: int, new_runs: int) -> str:
    sides = f"{base_runs} run{'s' if base_runs > 1 else ''} against {new_runs}"
    if noise == NOISE_COVERED:
        return f"{sides}: the intervals include the noise between runs (runs resampled first)"
    if noise == NOISE_PARTLY:
        return (
            f"{sides}: the noise between runs is in the interval for the side with several "
            "runs only; give both sides several runs (or use load-test.ab --repeats) to cover it"
        )
    return (
        f"{sides}: one run a side, so machine noise between runs (another job slowing a whole "
        "run) is NOT covered by these intervals; compare several runs a side (BASE1,BASE2 "
        "against NEW1,NEW2, or load-test.ab --repeats 3) before trusting a small change"
    )
