"""A minimal in-memory stand-in for the service, to calibrate the generator without a database.

It answers reserve/release/consume with the service's shapes and rules (409
insufficient_units, problem details) from counters held in memory, so the generator's own
ceiling and plumbing can be measured where the target is never the bottleneck. It is not the
service: correctness under concurrency is only ever judged against the real one.

    python -m load_runner.calibration_target --port 0 --total-units 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import uuid

from aiohttp import web

OPERATIONS = ("reserve", "release", "consume")
PROBLEM_TYPE = "application/problem+json"


def create_app(total_units: int, delay_ms: float = 0.0) -> web.Application:
    """Build the stand-in app: every authorization starts with `total_units` available.

    `delay_ms` holds every answer back that long, as a slow server would.
    """
    scheduled: dict[str, int] = {}
    used: dict[str, int] = {}

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "concurrency": "in-memory"})

    async def change_units(request: web.Request) -> web.Response:
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        authorization_id = request.match_info["authorization_id"]
        operation = request.match_info["operation"]
        if operation not in OPERATIONS:
            return _problem(404, "not_found", "no such operation")
        try:
            units = (await request.json())["units"]
        except (ValueError, KeyError, TypeError):
            return _problem(422, "invalid_request", 'body must be {"units": n}')
        held = scheduled.get(authorization_id, 0)
        spent = used.get(authorization_id, 0)
        # One event loop, no await between check and write: the check and the change are atomic.
        if operation == "reserve":
            if spent + held + units > total_units:
                return _problem(409, "insufficient_units", "not enough available units")
            scheduled[authorization_id] = held + units
        else:
            if held < units:
                return _problem(409, "insufficient_units", "not enough scheduled units")
            scheduled[authorization_id] = held - units
            if operation == "consume":
                used[authorization_id] = spent + units
        return web.json_response(
            {
                "transaction_id": str(uuid.uuid4()),
                "authorization": {
                    "id": authorization_id,
                    "total_units": total_units,
                    "used_units": used.get(authorization_id, 0),
                    "scheduled_units": scheduled[authorization_id],
                },
            }
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/api/authorizations/{authorization_id}/{operation}", change_units)
    return app


def _problem(status: int, code: str, detail: str) -> web.Response:
    body = {"type": "about:blank", "title": code, "status": status, "detail": detail, "code": code}
    return web.json_response(body, status=status, content_type=PROBLEM_TYPE)


async def serve(port: int, total_units: int, delay_ms: float = 0.0) -> None:
    """Serve on 127.0.0.1:`port` (0: any free port), print the base URL, run until killed."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    runner = web.AppRunner(create_app(total_units, delay_ms), access_log=None)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    print(f"http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description="In-memory stand-in for the service.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--total-units", type=int, default=1_000_000)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.total_units, args.delay_ms))


if __name__ == "__main__":
    main()
