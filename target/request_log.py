"""Per-request bookkeeping: request id, one structured log line, and the HTTP metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from functools import lru_cache

from prometheus_client import Counter, Histogram
from quart import Quart, Response, g, request

from target import metrics
from target.payloads import request_id_from_header

ACCESS_LOGGER = "target.access"
REQUEST_ID_HEADER = "X-Request-ID"
OK_CODE = "ok"
# Paths no route matched would otherwise give every random URL its own metric series.
UNMATCHED_ROUTE = "<unmatched>"

BUFFER_BYTES = 256 * 1024
FLUSH_INTERVAL_S = 0.2

access_log = logging.getLogger(ACCESS_LOGGER)


class BufferedLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Write log lines to a buffer of our own; `flush_request_log` empties it.

    The service runs with unbuffered stderr (PYTHONUNBUFFERED), so a plain handler costs a
    write system call per request; the request log instead reaches stderr every
    FLUSH_INTERVAL_S, and at shutdown. A worker killed with SIGKILL loses at most that much.
    """

    def __init__(self) -> None:
        stream = open(  # noqa: SIM115 -- lives as long as the worker; closing it would close stderr
            sys.stderr.fileno(), "w", buffering=BUFFER_BYTES, closefd=False, encoding="utf-8"
        )
        super().__init__(stream)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)


def configure_logging() -> None:
    """Send the service's logs to stderr, one line each (idempotent)."""
    service_log = logging.getLogger("target")
    if not any(getattr(h, "clinic_target", False) for h in service_log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.clinic_target = True  # type: ignore[attr-defined]
        service_log.addHandler(handler)
    service_log.setLevel(logging.INFO)
    service_log.propagate = False
    if not any(isinstance(h, BufferedLineHandler) for h in access_log.handlers):
        buffered = BufferedLineHandler()
        buffered.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(buffered)
    access_log.propagate = False


def flush_request_log() -> None:
    """Write the buffered request-log lines out now."""
    for handler in access_log.handlers:
        handler.flush()


async def flush_request_log_periodically() -> None:
    """Flush the request log every FLUSH_INTERVAL_S until cancelled, then once more."""
    try:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            flush_request_log()
    finally:
        flush_request_log()


async def start_request() -> None:
    """Stamp the request with its start time and id."""
    g.started = time.perf_counter()
    g.request_id = request_id_from_header(request.headers.get(REQUEST_ID_HEADER))


async def finish_request(response: Response) -> Response:
    """Log one line and count the request under its route, status and code."""
    duration_s = time.perf_counter() - g.get("started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
    code = g.get("problem_code", OK_CODE if response.status_code < 400 else "http_error")
    retry_count = g.get("retry_count")
    retries = retry_count.retries if retry_count is not None else 0
    request_id = g.get("request_id", "")
    response.headers[REQUEST_ID_HEADER] = request_id
    request_counter(route, request.method, response.status_code, code).inc()
    duration_histogram(route).observe(duration_s)
    access_log.info(
        json.dumps(
            {
                "event": "request",
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "code": code,
                "duration_ms": round(duration_s * 1000, 3),
                "retries": retries,
                "request_id": request_id,
                "pid": os.getpid(),
            }
        )
    )
    return response


@lru_cache(maxsize=1024)
def request_counter(route: str, method: str, status: int, code: str) -> Counter:
    """Return the request counter's child for these labels (labels() validates every call)."""
    return metrics.HTTP_REQUESTS.labels(route, method, str(status), code)


@lru_cache(maxsize=256)
def duration_histogram(route: str) -> Histogram:
    """Return the duration histogram's child for a route."""
    return metrics.HTTP_REQUEST_DURATION.labels(route)


def install_request_hooks(app: Quart) -> None:
    """Register the before/after hooks on ``app``."""
    app.before_request(start_request)
    app.after_request(finish_request)
