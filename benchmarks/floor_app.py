"""The framework floor: the service's reserve route with nothing behind it.

A minimal Quart app, served by the same supervisor, Hypercorn settings and worker class as
the service: it parses the JSON body and answers a JSON document of the same shape, with no
token check, no database, no metrics and no request log. What the service costs above this
is the service's own code.
"""

from __future__ import annotations

import json
import uuid

from quart import Quart, Response, request


def create_app() -> Quart:
    """Build the floor app (`benchmarks.floor_app:create_app()`)."""
    app = Quart(__name__)

    @app.get("/healthz")
    async def get_health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/authorizations/<authorization_id>/reserve")
    async def reserve_units(authorization_id: str) -> Response:
        body = json.loads(await request.get_data())
        answer = {
            "transaction_id": str(uuid.uuid4()),
            "authorization": {"id": authorization_id, "units": body["units"]},
        }
        return Response(json.dumps(answer), content_type="application/json")

    return app
