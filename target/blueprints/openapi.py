"""GET /openapi.json: the OpenAPI 3.1 document quart-schema builds from the routes and types."""

from __future__ import annotations

from quart import Blueprint, current_app
from quart.typing import ResponseReturnValue
from quart_schema import tag_blueprint

from target.openapi import openapi_document, other_response

blueprint = Blueprint("openapi", __name__)
tag_blueprint(blueprint, ["operations"])


@blueprint.get("/openapi.json")
@other_response("OpenAPI 3.1 document.", "application/json", {"type": "object"})
async def get_openapi() -> ResponseReturnValue:
    """This document."""
    return openapi_document(current_app)
