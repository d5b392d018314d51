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
    settings = current_settings()
    warning = UNSAFE_WARNING if settings.concurrency == "unsafe" else None
    health = Health(
        status="ok",
        concurrency=settings.concurrency,
        transaction_shape=settings.transaction_shape,  # type: ignore[arg-type]
        isolation=settings.isolation_level,  # type: ignore[arg-type]
        warning=warning,
    )
    return json_response(health)
