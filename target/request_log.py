"""Per-request bookkeeping: request id, one structured log line, and the HTTP metrics."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from quart import Quart, Response, g, request

from target import metrics
from target.payloads import request_id_from_header

ACCESS_LOGGER = "target.access"
REQUEST_ID_HEADER = "X-Request-ID"
OK_CODE = "ok"
# Paths no route matched would otherwise give every random URL its own metric series.
UNMATCHED_ROUTE = "<unmatched>"

access_log = logging.getLogger(ACCESS_LOGGER)


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
    metrics.HTTP_REQUESTS.labels(route, request.method, str(response.status_code), code).inc()
    metrics.HTTP_REQUEST_DURATION.labels(route).observe(duration_s)
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


def install_request_hooks(app: Quart) -> None:
    """Register the before/after hooks on ``app``."""
    app.before_request(start_request)
    app.after_request(finish_request)
