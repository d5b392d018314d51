"""GET /openapi.json: the hand-written OpenAPI 3.1 document of this API."""

from __future__ import annotations

from quart import Blueprint
from quart.typing import ResponseReturnValue

from target.openapi import OPENAPI_DOCUMENT

blueprint = Blueprint("openapi", __name__)


@blueprint.get("/openapi.json")
async def get_openapi() -> ResponseReturnValue:
    """Return the OpenAPI document."""
    return OPENAPI_DOCUMENT
