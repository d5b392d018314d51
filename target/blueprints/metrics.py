"""GET /metrics: Prometheus text format, summed over all worker processes."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import tag_blueprint

from target.metrics import render_metrics
from target.openapi import other_response

blueprint = Blueprint("metrics", __name__)
tag_blueprint(blueprint, ["operations"])


@blueprint.get("/metrics")
@other_response(
    "Text exposition format: http_requests_total, http_request_duration_seconds, "
    "db_serialization_retries_total, db_serialization_conflicts_total, db_pool_size, "
    "db_pool_checked_out, db_pool_waiting, db_pool_timeouts_total.",
    "text/plain",
    {"type": "string"},
)
async def get_metrics() -> Response:
    """Prometheus metrics, summed over all worker processes."""
    body, content_type = render_metrics()
    return Response(body, status=200, content_type=content_type)
