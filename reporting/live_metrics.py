"""The live feed's series: what a run sends to Prometheus each second, from its live progress.

Pure functions (pipeline/metrics_stream.py reads the progress files and sends the samples).
Counters are running totals since the scenario started, so a write that is lost costs a
dashboard one point of resolution, never a request: the next write carries the totals.
Latency percentiles are of the requests that ended since the previous sample (about a second),
from the processes' live buckets (within 2 % of the exact value, see results/record_format.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from reporting.remote_write import Sample, labelled
from results.collect import LiveProgress
from results.latency import live_percentile

REQUESTS = "loadtest_requests_total"  # attempts, as result.json's totals.requests counts them
ERRORS = "loadtest_errors_total"  # attempts without a usable 2xx, as result.json's errors
LATENCY = "loadtest_latency_seconds"  # {quantile}: of the requests ended since the last sample
IN_FLIGHT = "loadtest_operations_in_flight"  # logical operations sent and not yet ended
RETRIES = "loadtest_db_serialization_retries_total"  # the service's 40001/40P01 retries
CONFLICTS = "loadtest_db_serialization_conflicts_total"  # ...and those it gave up on
VERDICT = "loadtest_verdict"  # {decision}: 1 for the run's decision, 0 for the others
QUANTILES = (50, 95, 99)
DECISIONS = ("GO", "CONDITIONAL", "NO-GO")
JOB = "clinic-loadtest"
# run.json's keys that label every series (the run id and commit are added beside them).
RUN_LABELS = ("profile", "strategy", "transaction_shape", "isolation")
# The service counters the watch keeps every second (watch/service_watch.SERIES_COUNTERS).
SERVICE_COUNTERS = {RETRIES: "retries", CONFLICTS: "conflicts"}


class RemoteWriteUrlError(ValueError):
    """A --prometheus-remote-write value that is not an http(s) URL."""


def check_remote_write_url(url: str) -> str:
    """Return ``url`` if it is an http(s) URL with a host; raise RemoteWriteUrlError if not."""
    parts = urlsplit(url)
    try:
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise RemoteWriteUrlError(
            f"--prometheus-remote-write must be an http(s) URL such as "
            f"http://127.0.0.1:9090/api/v1/write, not {url!r}"
        )
    return url


def run_labels(run_id: str, commit: str, meta: Mapping[str, object]) -> dict[str, str]:
    """Return the labels of every series of a run: job, run id, commit, profile, strategy..."""
    labels = {"job": JOB, "run_id": run_id, "commit": commit}
    labels.update({key: str(meta[key]) for key in RUN_LABELS if meta.get(key) is not None})
    return labels


@dataclass
class ScenarioFeed:
    """One scenario's feed: the last totals sent, so counters never go back and percentiles
    cover only what is new."""

    scenario: str
    labels: Mapping[str, str]
    sent: dict[tuple[str, str], float] = field(default_factory=dict)
    buckets: dict[str, dict[int, int]] = field(default_factory=dict)

    def samples(
        self,
        progress: LiveProgress,
        timestamp_ms: int,
        service: Mapping[str, float] | None = None,
    ) -> list[Sample]:
        """Return this second's samples from the progress so far and the service's counters.

        ``service``: the watch's retries and conflicts since the scenario started (None when
        the service's /metrics could not be read).
        """
        scenario = {**self.labels, "scenario": self.scenario}
        out: list[Sample] = []
        for operation, figures in progress.operations.items():
            labels = {**scenario, "operation": operation}
            out.append(self._counter(REQUESTS, operation, figures.requests, timestamp_ms, labels))
            out.append(self._counter(ERRORS, operation, figures.errors, timestamp_ms, labels))
            out += self._latency(operation, figures.buckets, timestamp_ms, labels)
        # The scenario as a whole: its percentiles cannot be added up from the operations'.
        out += self._latency("", progress.buckets, timestamp_ms, scenario)
        out.append(labelled(IN_FLIGHT, progress.in_flight, timestamp_ms, scenario))
        for name, key in SERVICE_COUNTERS.items():
            if service is not None and key in service:
                out.append(self._counter(name, "", service[key], timestamp_ms, scenario))
        return out

    def _counter(
        self, name: str, operation: str, total: float, timestamp_ms: int, labels: dict[str, str]
    ) -> Sample:
        # A progress file skipped mid-rewrite must not read as a counter reset.
        value = max(total, self.sent.get((name, operation), 0.0))
        self.sent[(name, operation)] = value
        return labelled(name, value, timestamp_ms, labels)

    def _latency(
        self, operation: str, buckets: Mapping[int, int], timestamp_ms: int, labels: dict[str, str]
    ) -> list[Sample]:
        before = self.buckets.get(operation, {})
        fresh = {
            bucket: count - before.get(bucket, 0)
            for bucket, count in buckets.items()
            if count > before.get(bucket, 0)
        }
        self.buckets[operation] = {**before, **{b: before.get(b, 0) + n for b, n in fresh.items()}}
        samples = []
        for percent in QUANTILES:
            value_ms = live_percentile(fresh, percent)
            if value_ms is not None:
                quantile = {**labels, "quantile": str(percent / 100)}
                samples.append(labelled(LATENCY, value_ms / 1000, timestamp_ms, quantile))
        return samples


def verdict_samples(decision: str, labels: Mapping[str, str], timestamp_ms: int) -> list[Sample]:
    """Return the verdict as one series per decision: 1 for the run's, 0 for the others."""
    return [
        labelled(
            VERDICT, 1.0 if known == decision else 0.0, timestamp_ms, {**labels, "decision": known}
        )
        for known in (*DECISIONS, *(() if decision in DECISIONS else (decision,)))
    ]


def remote_write_line(evidence: Mapping[str, object]) -> str:
    """Return the report's line on the feed: how many writes failed, and that the run went on."""
    failed, writes = evidence.get("failed", 0), evidence.get("writes", 0)
    line = f"{failed} of {writes} writes to {evidence.get('url')} failed; the run was not affected"
    first_error = evidence.get("first_error")
    return f"{line} (first: {first_error})." if failed and first_error else f"{line}."
