"""GET /metrics: Prometheus text format, summed over all worker processes."""

from __future__ import annotations

from quart import Blueprint, Response

from target.metrics import render_metrics

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
async def get_metrics() -> Response:
    """Render every worker's samples."""
    body, content_type = render_metrics()
    return Response(body, status=200, content_type=content_type)
