"""GET /healthz: is the service up and can it reach its database?"""

from __future__ import annotations

import psycopg
from quart import Blueprint
from quart.typing import ResponseReturnValue
from quart_schema import document_response, tag_blueprint

from target.api_types import Health, json_response
from target.openapi import UNAVAILABLE_RESPONSE, problems
from target.problems import unavailable
from target.state import current_database, current_settings

UNSAFE_WARNING = (
    "TARGET_CONCURRENCY=unsafe: this service can overbook authorizations on purpose; "
    "use it only to show that the integrity checks catch it"
)

blueprint = Blueprint("health", __name__)
tag_blueprint(blueprint, ["operations"])


@blueprint.get("/healthz")
@document_response(Health)
@problems(UNAVAILABLE_RESPONSE)
async def get_health() -> ResponseReturnValue:
    """Liveness and database reachability.

    200 with the concurrency strategy in use when the database answers, else 503.
    """
    try:
        async with current_database().connect() as connection:
            await connection.execute("SELECT 1")
    except (psycopg.Error, OSError) as error:
        raise unavailable("database unreachable") from error
    concurrency = current_settings().concurrency
    warning = UNSAFE_WARNING if concurrency == "unsafe" else None
    return json_response(Health(status="ok", concurrency=concurrency, warning=warning))
