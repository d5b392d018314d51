"""The OpenAPI 3.1 document, built by quart-schema from the routes and `target.api_types`.

What quart-schema does not know is declared here: which problem `code` values each route
answers with which status (`ProblemResponse`, attached with `@problems(...)`), the path
parameter's format, and the document's description. `ApiDocument` renders those, puts
response headers where OpenAPI wants them and keeps the handlers' names as operation ids.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from quart import Quart
from quart_schema import QuartSchema
from quart_schema.openapi import OpenAPIProvider
from quart_schema.validation import DataSource
from werkzeug.routing.converters import BaseConverter

from target.api_types import (
    MAX_SESSION_MINUTES,
    MAX_UNITS,
    MIN_SESSION_MINUTES,
    MIN_UNITS,
    Problem,
)
from target.problems import (
    AUTHORIZATION_INACTIVE,
    IDEMPOTENCY_KEY_IN_USE,
    IDEMPOTENCY_KEY_REUSED,
    INSUFFICIENT_UNITS,
    INVALID_IDEMPOTENCY_KEY,
    INVALID_REQUEST,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PATIENT_BUSY,
    PAYLOAD_TOO_LARGE,
    PRACTITIONER_BUSY,
    PROBLEM_CONTENT_TYPE,
    SERIALIZATION_CONFLICT,
    SESSION_NOT_BOOKED,
    UNAUTHORIZED,
    UNAVAILABLE,
)
from target.settings import CONCURRENCY_STRATEGIES

API_VERSION = "1.0.0"
BEARER_AUTH = "bearerAuth"
BEARER_SECURITY = [{BEARER_AUTH: []}]
PROBLEMS_ATTRIBUTE = "_target_problem_responses"
OTHER_RESPONSES_ATTRIBUTE = "_target_other_responses"
SCHEMA_REF_TEMPLATE = "#/components/schemas/{name}"
PROBLEM_SCHEMA_REF = SCHEMA_REF_TEMPLATE.format(name="Problem")
PATH_PARAMETERS = {
    "authorization_id": {
        "description": "Authorization id (a UUID; anything else answers 404).",
        "schema": {"type": "string", "format": "uuid"},
    }
}
TAGS = [
    {"name": "authorizations"},
    {"name": "auth"},
    {"name": "lists", "description": "List-append transactions: the isolation checks' workload."},
    {"name": "operations", "description": "Health, metrics and this document."},
]
DESCRIPTION = (
    "Reserve, release and consume the units of insurance authorizations without ever "
    "overbooking. Errors are RFC 9457 problem details with an extra `code` member. "
    f"Concurrency strategy (TARGET_CONCURRENCY): one of {', '.join(CONCURRENCY_STRATEGIES)}."
)

Handler = TypeVar("Handler", bound=Callable[..., Any])


@dataclass(frozen=True)
class ProblemResponse:
    """An error status a route answers, the `code` values it carries, and why."""

    status: int
    description: str
    codes: tuple[str, ...]
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def merged_with(self, other: ProblemResponse) -> ProblemResponse:
        """Join two declarations of the same status (descriptions, codes and headers)."""
        return ProblemResponse(
            self.status,
            f"{self.description} {other.description}",
            tuple(dict.fromkeys(self.codes + other.codes)),
            self.headers | other.headers,
        )


RETRY_AFTER = {"Retry-After": {"description": "Seconds.", "schema": {"type": "string"}}}

REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` when this refusal is the stored answer to an earlier request "
        "with the same key.",
        "schema": {"enum": ["true"]},
    }
}

UNAUTHORIZED_RESPONSE = ProblemResponse(
    401,
    "Token missing, malformed, badly signed, expired, unsigned (alg none), without the sub, "
    "org or exp claim, or naming a practitioner that does not exist. Carries "
    "`WWW-Authenticate: Bearer`.",
    (UNAUTHORIZED,),
    {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}},
)
WRONG_CREDENTIALS_RESPONSE = ProblemResponse(401, "Wrong e-mail or password.", (UNAUTHORIZED,))
NOT_FOUND_RESPONSE = ProblemResponse(
    404,
    "Authorization unknown, id not a UUID, or belonging to another organization (the same "
    "answer for all three).",
    (NOT_FOUND,),
)
METHOD_RESPONSE = ProblemResponse(405, "Method not allowed on this path.", (METHOD_NOT_ALLOWED,))
TOO_LARGE_RESPONSE = ProblemResponse(413, "Request body larger than 64 KiB.", (PAYLOAD_TOO_LARGE,))
UNAVAILABLE_RESPONSE = ProblemResponse(
    503,
    "Database unreachable, or no pooled connection free within the pool timeout.",
    (UNAVAILABLE,),
    RETRY_AFTER,
)
READ_CONFLICT_RESPONSE = ProblemResponse(
    409, "Serialization failures still after the retry budget.", (SERIALIZATION_CONFLICT,)
)
UNIT_CHANGE_CONFLICT_RESPONSE = ProblemResponse(
    409,
    "Not enough available (reserve) or scheduled (release, consume) units; authorization not "
    "active or (reserve) outside its date range; serialization failures still after the "
    "retry budget; `idempotency_key_in_use`: a request with the same Idempotency-Key is still "
    "being processed (carries `Retry-After`; retry with the same key).",
    (INSUFFICIENT_UNITS, AUTHORIZATION_INACTIVE, SERIALIZATION_CONFLICT, IDEMPOTENCY_KEY_IN_USE),
    RETRY_AFTER | REPLAYED,
)
INVALID_UNITS_RESPONSE = ProblemResponse(
    422,
    "Body not JSON or not an object; `units` missing, not an integer (booleans, floats and "
    f"strings are not), below {MIN_UNITS} or above {MAX_UNITS}. `invalid_idempotency_key`: "
    "the key is empty, longer than 255 characters or not printable ASCII. "
    "`idempotency_key_reused`: the key was used before for a different request (another "
    "operation, authorization or units).",
    (INVALID_REQUEST, INVALID_IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_REUSED),
)
BOOKING_CONFLICT_RESPONSE = ProblemResponse(
    409,
    "`practitioner_busy`: the caller has a booked or completed session overlapping the slot; "
    "`patient_busy`: so has the authorization's patient; `insufficient_units`: the units of "
    "the authorization's booked and completed sessions plus its used units would exceed its "
    "total; authorization not active today; serialization failures still after the retry "
    "budget.",
    (
        PRACTITIONER_BUSY,
        PATIENT_BUSY,
        INSUFFICIENT_UNITS,
        AUTHORIZATION_INACTIVE,
        SERIALIZATION_CONFLICT,
    ),
)
SESSION_CHANGE_CONFLICT_RESPONSE = ProblemResponse(
    409,
    "`session_not_booked`: only a booked session can be cancelled or completed; "
    "serialization failures still after the retry budget.",
    (SESSION_NOT_BOOKED, SERIALIZATION_CONFLICT),
)
SESSION_NOT_FOUND_RESPONSE = ProblemResponse(
    404,
    "Session (or, for a booking, authorization) unknown, id not a UUID, or belonging to "
    "another organization (the same answer for all three).",
    (NOT_FOUND,),
)
INVALID_BOOKING_RESPONSE = ProblemResponse(
    422,
    "Body not a JSON object with `authorization_id` (UUID), `starts_at` (RFC 3339 with an "
    f"offset), `duration_minutes` ({MIN_SESSION_MINUTES}-{MAX_SESSION_MINUTES}) and `units`; "
    "`invalid_idempotency_key`; `idempotency_key_reused`: the key was used before for a "
    "different booking.",
    (INVALID_REQUEST, INVALID_IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_REUSED),
)
LIST_TRANSACTION_CONFLICT_RESPONSE = ProblemResponse(
    409,
    "Serialization failures or deadlocks still after the retry budget: the transaction did not "
    "commit.",
    (SERIALIZATION_CONFLICT,),
)
INVALID_LIST_TRANSACTION_RESPONSE = ProblemResponse(
    422,
    'Body not a JSON object with `ops`: 1 to 8 micro-operations, each `["append", key, '
    'integer]` or `["r", key, null]`, a key a string of 1-64 characters or an integer; '
    "nothing was changed.",
    (INVALID_REQUEST,),
)
INVALID_TOKEN_REQUEST_RESPONSE = ProblemResponse(
    422,
    "Body not a JSON object with non-empty string `email` and `password`.",
    (INVALID_REQUEST,),
)


def problems(*responses: ProblemResponse) -> Callable[[Handler], Handler]:
    """Declare the problem responses a route answers (the document lists exactly these)."""

    def declare(handler: Handler) -> Handler:
        setattr(handler, PROBLEMS_ATTRIBUTE, responses)
        return handler

    return declare


def other_response(
    description: str, content_type: str, schema: dict[str, Any], status: int = 200
) -> Callable[[Handler], Handler]:
    """Declare a response no model describes (Prometheus text, this document itself)."""
    rendered = {"description": description, "content": {content_type: {"schema": schema}}}

    def declare(handler: Handler) -> Handler:
        setattr(handler, OTHER_RESPONSES_ATTRIBUTE, {str(status): rendered})
        return handler

    return declare


def problem_response_object(response: ProblemResponse) -> dict[str, Any]:
    """Render a problem response: the Problem schema with `code` narrowed to its values."""
    schema = {"allOf": [{"$ref": PROBLEM_SCHEMA_REF}, {"properties": {"code": {"enum": []}}}]}
    schema["allOf"][1]["properties"]["code"]["enum"] = list(response.codes)
    rendered: dict[str, Any] = {
        "description": response.description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": schema}},
    }
    if response.headers:
        rendered["headers"] = response.headers
    return rendered


def model_components(model: type) -> tuple[dict[str, str], dict[str, Any]]:
    """Return a reference to the model's schema and every schema it needs, by name.

    quart-schema keeps only the model's own msgspec schema, losing the structs it nests.
    """
    (reference,), components = msgspec.json.schema_components(
        [model], ref_template=SCHEMA_REF_TEMPLATE
    )
    return reference, components


def header_object(schema: dict[str, Any], required: bool) -> dict[str, Any]:
    """Turn a header model's property (`X | None`) into an OpenAPI header or parameter body."""
    options = [option for option in schema.get("anyOf", [schema]) if option.get("type") != "null"]
    (value_schema,) = options
    value_schema = dict(value_schema)
    description = value_schema.pop("description", schema.get("description"))
    rendered: dict[str, Any] = {"required": required, "schema": value_schema}
    if description:
        rendered["description"] = description
    return rendered


class ApiDocument(OpenAPIProvider):
    """quart-schema's provider, adjusted to this API's conventions."""

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        document["info"]["description"] = DESCRIPTION
        document["servers"] = [{"url": "/"}]
        document["components"]["schemas"].update(model_components(Problem)[1])
        return document

    def build_paths(self, rule: Any) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        handler = self._app.view_functions[rule.endpoint]
        for operation in next(iter(paths.values())).values():
            operation["description"] = operation.get("description", "").strip()
            if not operation["description"]:
                del operation["description"]
            declared: dict[int, ProblemResponse] = {}
            for response in getattr(handler, PROBLEMS_ATTRIBUTE, ()):
                earlier = declared.get(response.status)
                declared[response.status] = (
                    response if earlier is None else earlier.merged_with(response)
                )
            operation["responses"].update(getattr(handler, OTHER_RESPONSES_ATTRIBUTE, {}))
            for status, response in sorted(declared.items()):
                operation["responses"][str(status)] = problem_response_object(response)
            operation["responses"] = {
                str(status): body for status, body in operation["responses"].items()
            }
        return paths, components

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        return super().build_path_parameter(name, converter) | PATH_PARAMETERS.get(name, {})

    def build_headers_parameters(self, model: type) -> tuple[list[dict[str, Any]], dict]:
        parameters, components = super().build_headers_parameters(model)
        return [
            {"name": parameter["name"], "in": "header"}
            | header_object(parameter["schema"], parameter.get("required", False))
            for parameter in parameters
        ], components

    def build_request_body(self, model: type, source: DataSource) -> tuple[dict, dict]:
        reference, components = model_components(model)
        return {"required": True, "content": {"application/json": {"schema": reference}}}, (
            components
        )

    def build_response_object(
        self, model: type, headers_model: type | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        reference, components = model_components(model)
        response: dict[str, Any] = {
            "description": inspect.cleandoc(model.__doc__ or "").replace("\n", " "),
            "content": {"application/json": {"schema": reference}},
        }
        if headers_model is not None:
            parameters, _ = self.build_headers_parameters(headers_model)
            response["headers"] = {
                parameter.pop("name"): {
                    key: value for key, value in parameter.items() if key != "in"
                }
                for parameter in parameters
            }
        return response, components

    def operation_id(self, method: str, path: str, func: Callable[..., Any]) -> str | None:
        return func.__name__

    def generate_rules(self) -> Iterable[Any]:
        rules = (rule for rule in super().generate_rules() if rule.endpoint != "static")
        return sorted(rules, key=lambda rule: rule.rule)


def install_openapi(app: Quart) -> QuartSchema:
    """Let quart-schema build the document; the openapi blueprint serves it at /openapi.json.

    The document only: requests are validated by decoding into the models (target.payloads),
    and responses are encoded from them (target.api_types.json_response).

    quart-schema's own routes (the document, and UIs loading scripts from CDNs) stay off, so
    the document is served like any other route (request log, metrics, problem details).
    """
    extension = QuartSchema(
        app,
        openapi_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        info={"title": "Clinic unit-reservation service", "version": API_VERSION},
        tags=TAGS,
        security_schemes={
            BEARER_AUTH: {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}
        },
        conversion_preference="msgspec",
        openapi_provider_class=ApiDocument,
    )
    # quart-schema wraps make_response to turn returned models into JSON; that costs 11 µs a
    # response (benchmarks/README.md). Handlers encode their models with msgspec instead.
    del app.make_response
    return extension


def openapi_document(app: Quart) -> dict[str, Any]:
    """Return the app's document, built once."""
    extension: QuartSchema = app.extensions["QUART_SCHEMA"]
    cached = getattr(extension, "_target_document", None)
    if cached is None:
        cached = extension.openapi_provider.schema()
        extension._target_document = cached  # type: ignore[attr-defined]
    return cached
