"""The CPU cost of validating a reserve body: by hand, through quart-schema, or from the model.

Two measurements, the same for every variant:

- *validation alone*: turn the bytes ``{"units": 5}`` into a checked unit count N times;
- *whole request*: a tiny Quart app per variant with one POST route that validates the body
  and answers a small JSON document, driven in-process over ASGI (no socket, no server), so
  what differs between variants is the validation and whatever quart-schema adds to every
  response (it wraps ``make_response`` and the JSON provider once installed).

Figures are CPU seconds (``time.process_time``) per request, the median of ROUNDS rounds.
Run: ``.nox/tests/bin/python benchmarks/request_validation.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
import pydantic
from quart import Quart, Response, request
from quart_schema import QuartSchema, document_request, validate_request
from quart_schema.conversion import convert_response_return_value

from target.api_types import UnitsRequest, json_response
from target.openapi import install_openapi
from target.payloads import UNITS_REQUEST, decode_body

BODY = b'{"units": 5}'
ROUNDS = 7
UNITS_RANGE = {"ge": 1, "le": 1_000_000}


MsgspecUnits = UnitsRequest


class PydanticUnits(pydantic.BaseModel):
    units: Annotated[int, pydantic.Field(strict=True, **UNITS_RANGE)]


def by_hand(raw: bytes) -> int:
    """The service before quart-schema: json.loads, then type and range checks in Python."""
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("request body must be a JSON object")
    if "units" not in body:
        raise ValueError("'units' is required")
    units = body["units"]
    if type(units) is not int:
        raise ValueError("'units' must be an integer")
    if not 1 <= units <= 1_000_000:
        raise ValueError("'units' must be between 1 and 1000000")
    return units


def msgspec_model(raw: bytes) -> int:
    """Decode and check in one pass against the msgspec model (what the service now does)."""
    return UNITS_REQUEST.decode(raw).units


def pydantic_model(raw: bytes) -> int:
    """Decode and check in one pass against the pydantic model."""
    return PydanticUnits.model_validate_json(raw).units


def quart_schema_msgspec(raw: bytes) -> int:
    """What quart-schema's validate_request does with msgspec: json, then msgspec.convert."""
    return msgspec.convert(json.loads(raw), MsgspecUnits, strict=False).units


def quart_schema_pydantic(raw: bytes) -> int:
    """What quart-schema's validate_request does with pydantic: json, then a TypeAdapter."""
    return pydantic.TypeAdapter(PydanticUnits).validate_python(json.loads(raw)).units


VALIDATORS: dict[str, Callable[[bytes], int]] = {
    "by hand (before)": by_hand,
    "msgspec model, decode bytes (the service now)": msgspec_model,
    "pydantic model, validate_json": pydantic_model,
    "quart-schema path, msgspec": quart_schema_msgspec,
    "quart-schema path, pydantic": quart_schema_pydantic,
}


def time_validator(validate: Callable[[bytes], int], count: int) -> float:
    """Return the median CPU seconds per validation over ROUNDS rounds."""
    rounds = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(count):
            validate(BODY)
        rounds.append((time.process_time() - started) / count)
    return statistics.median(rounds)


# -- whole requests through a tiny app -------------------------------------------------------
def answer(units: int) -> dict[str, Any]:
    return {"transaction_id": "00000000-0000-0000-0000-000000000000", "units": units}


def app_by_hand() -> Quart:
    app = Quart(__name__)

    @app.post("/reserve")
    async def reserve() -> dict[str, Any]:
        return answer(by_hand(await request.get_data()))

    return app


def app_with_quart_schema_validation(preference: str, model: type) -> Quart:
    app = Quart(__name__)
    QuartSchema(app, conversion_preference=preference)

    @app.post("/reserve")
    @validate_request(model)
    async def reserve(data: Any) -> dict[str, Any]:
        return answer(data.units)

    return app


def app_documented_and_decoded(preference: str, model: type) -> Quart:
    """quart-schema documents the model; the handler decodes the raw bytes against it."""
    app = Quart(__name__)
    QuartSchema(app, conversion_preference=preference)
    decode = msgspec_model if model is MsgspecUnits else pydantic_model

    @app.post("/reserve")
    @document_request(model)
    async def reserve() -> dict[str, Any]:
        return answer(decode(await request.get_data()))

    return app


class Answer(msgspec.Struct, frozen=True):
    transaction_id: str
    units: int


def app_as_the_service_now() -> Quart:
    """quart-schema for the document only (its response wrapper removed), msgspec both ways."""
    app = Quart(__name__)
    install_openapi(app)

    @app.post("/reserve")
    @document_request(UnitsRequest)
    async def reserve() -> Response:
        units = decode_body(await request.get_data(), UNITS_REQUEST).units
        return json_response(Answer(**answer(units)))

    return app


APPS: dict[str, Callable[[], Quart]] = {
    "by hand (before), no quart-schema": app_by_hand,
    "quart-schema validate_request, msgspec": lambda: app_with_quart_schema_validation(
        "msgspec", MsgspecUnits
    ),
    "quart-schema validate_request, pydantic": lambda: app_with_quart_schema_validation(
        "pydantic", PydanticUnits
    ),
    "quart-schema document_request + msgspec decode": lambda: app_documented_and_decoded(
        "msgspec", MsgspecUnits
    ),
    "quart-schema document_request + pydantic validate_json": lambda: app_documented_and_decoded(
        "pydantic", PydanticUnits
    ),
    "the service now: document only, msgspec in and out": app_as_the_service_now,
}


@dataclass
class OneRequest:
    """An ASGI conversation for one POST /reserve with BODY."""

    status: int = 0
    body_sent: bool = False
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive(self) -> dict[str, Any]:
        # Quart keeps reading until the client disconnects: hang up once the answer is out.
        if not self.body_sent:
            self.body_sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await self.answered.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.answered.set()


SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/reserve",
    "raw_path": b"/reserve",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"bench"), (b"content-type", b"application/json")],
    "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 80),
    "extensions": {},
}


async def time_app_round(app: Quart, count: int) -> float:
    """Return the CPU seconds per request of ``count`` requests in a row."""

    async def one() -> None:
        conversation = OneRequest()
        await app(dict(SCOPE), conversation.receive, conversation.send)
        if conversation.status != 200:
            raise RuntimeError(f"the benchmark app answered {conversation.status}")

    await one()
    gc.collect()
    started = time.process_time()
    for _ in range(count):
        await one()
    return (time.process_time() - started) / count


async def time_apps(count: int) -> dict[str, float]:
    """Return each app's median CPU seconds per request; rounds interleave the apps.

    Interleaving spreads the machine's drift (other work, frequency) over every variant.
    """
    apps = {name: build() for name, build in APPS.items()}
    rounds: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(ROUNDS):
        for name, app in apps.items():
            rounds[name].append(await time_app_round(app, count))
    return {name: statistics.median(values) for name, values in rounds.items()}


def time_response_conversion(preference: str, count: int) -> float:
    """Return the CPU seconds quart-schema's make_response wrapper adds to one dict answer."""
    app = Quart(__name__)
    QuartSchema(app, conversion_preference=preference)
    body = answer(5)

    async def rounds() -> list[float]:
        results = []
        async with app.app_context():
            for _ in range(ROUNDS):
                started = time.process_time()
                for _ in range(count):
                    convert_response_return_value(body)
                results.append((time.process_time() - started) / count)
        return results

    return statistics.median(asyncio.run(rounds()))


def run(count: int) -> None:
    """Print the three tables in microseconds."""
    print(f"validation alone, {count * 10} x {BODY.decode()}, median of {ROUNDS} rounds (µs CPU)")
    for name, validate in VALIDATORS.items():
        print(f"  {name:<55} {time_validator(validate, count * 10) * 1e6:8.2f}")
    print(f"\nquart-schema's response wrapper alone, {count * 10} dict answers (µs CPU)")
    for preference in ("msgspec", "pydantic"):
        seconds = time_response_conversion(preference, count * 10)
        print(f"  {'conversion_preference=' + preference:<55} {seconds * 1e6:8.2f}")
    print(f"\nwhole request over ASGI, {count} requests a round, median of {ROUNDS} (µs CPU)")
    for name, seconds in asyncio.run(time_apps(count)).items():
        print(f"  {name:<55} {seconds * 1e6:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5_000, help="requests per round")
    run(parser.parse_args().requests)


if __name__ == "__main__":
    main()
