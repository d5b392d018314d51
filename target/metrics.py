"""Prometheus metrics, correct across Hypercorn worker processes (multiprocess mode).

The launcher sets PROMETHEUS_MULTIPROC_DIR before the workers import prometheus_client; every
worker then writes its samples to files there and any worker can render the sum on /metrics.
The report reads these names: keep them stable.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Reservations take a few milliseconds: resolve that range, not just the client defaults.
DURATION_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by route, method, status and problem code ('ok' on success).",
    ["route", "method", "status", "code"],
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from request start to response, by route.",
    ["route"],
    buckets=DURATION_BUCKETS_S,
)
SERIALIZATION_RETRIES = Counter(
    "db_serialization_retries",
    "Transactions retried after SQLSTATE 40001/40P01.",
)
SERIALIZATION_CONFLICTS = Counter(
    "db_serialization_conflicts",
    "Requests answered 409 serialization_conflict after the retry budget.",
)
POOL_SIZE = Gauge(
    "db_pool_size",
    "Configured connection-pool size, summed over live workers.",
    multiprocess_mode="livesum",
)
POOL_CHECKED_OUT = Gauge(
    "db_pool_checked_out",
    "Pooled connections in use, summed over live workers.",
    multiprocess_mode="livesum",
)
POOL_WAITING = Gauge(
    "db_pool_waiting",
    "Requests waiting for a pooled connection, summed over live workers.",
    multiprocess_mode="livesum",
)
EVENT_LOOP_LAG = Gauge(
    "service_event_loop_lag_seconds",
    "Worst lateness of a 50 ms timer over the last second, the worst live worker's.",
    multiprocess_mode="livemax",
)
POOL_TIMEOUTS = Counter(
    "db_pool_timeouts",
    "Requests answered 503 because no pooled connection came within the pool timeout.",
)
# Incremented by target.supervisor, in its own process: its sample file outlives the workers.
WORKER_RESTARTS = Counter(
    "service_worker_restarts",
    "Workers the supervisor started again after one died.",
)


def is_multiprocess() -> bool:
    """Tell whether samples are shared through PROMETHEUS_MULTIPROC_DIR."""
    return bool(os.environ.get(MULTIPROC_DIR_ENV))


def render_metrics() -> tuple[bytes, str]:
    """Return the exposition text for all workers, and its content type."""
    if is_multiprocess():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def forget_this_worker() -> None:
    """Drop this worker's live gauges so the sums count only running workers."""
    if is_multiprocess():
        multiprocess.mark_process_dead(os.getpid())


def forget_worker(pid: int) -> None:
    """Drop a dead worker's live gauges: killed, it could not drop them itself."""
    if is_multiprocess():
        multiprocess.mark_process_dead(pid)
