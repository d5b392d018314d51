"""The hand-written OpenAPI 3.1 document served at /openapi.json."""

from __future__ import annotations

from typing import Any

from target.payloads import MAX_UNITS, MIN_UNITS
from target.problems import (
    AUTHORIZATION_INACTIVE,
    IDEMPOTENCY_KEY_IN_USE,
    IDEMPOTENCY_KEY_REUSED,
    INSUFFICIENT_UNITS,
    INVALID_IDEMPOTENCY_KEY,
    INVALID_REQUEST,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    PROBLEM_CONTENT_TYPE,
    SERIALIZATION_CONFLICT,
    UNAUTHORIZED,
    UNAVAILABLE,
)
from target.settings import CONCURRENCY_STRATEGIES

API_VERSION = "1.0.0"
UUID_STRING = {"type": "string", "format": "uuid"}


REPLAYED_HEADER_SCHEMA = {
    "description": "`true` when this is the stored answer to an earlier request with the key.",
    "schema": {"type": "string", "const": "true"},
}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _problem(description: str, *codes: str) -> dict[str, Any]:
    """Describe an error response and the ``code`` values it can carry."""
    schema = {
        "allOf": [_ref("schemas", "Problem"), {"properties": {"code": {"enum": list(codes)}}}]
    }
    return {"description": description, "content": {PROBLEM_CONTENT_TYPE: {"schema": schema}}}


UNAUTHORIZED_RESPONSE = _problem(
    "Token missing, malformed, badly signed, expired, unsigned (alg none), without the sub, "
    "org or exp claim, or naming a practitioner that does not exist. Carries "
    "`WWW-Authenticate: Bearer`.",
    UNAUTHORIZED,
) | {"headers": {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}}}
NOT_FOUND_RESPONSE = _problem(
    "Authorization unknown, id not a UUID, or belonging to another organization (the same "
    "answer for all three).",
    NOT_FOUND,
)
INVALID_RESPONSE = _problem(
    "Body not JSON or not an object; `units` missing, not an integer (booleans, floats and "
    f"strings are not), below {MIN_UNITS} or above {MAX_UNITS}.",
    INVALID_REQUEST,
)
TOO_LARGE_RESPONSE = _problem("Request body larger than 64 KiB.", PAYLOAD_TOO_LARGE)
UNAVAILABLE_RESPONSE = _problem(
    "Database unreachable, or no pooled connection free within the pool timeout.", UNAVAILABLE
)
METHOD_RESPONSE = _problem("Method not allowed on this path.", METHOD_NOT_ALLOWED)

OPERATION_TEXT = {
    "reserve": (
        "Reserve units",
        "scheduled_units += units, only if used + scheduled + units <= total, the authorization "
        "is active and today is within start_date..end_date.",
    ),
    "release": (
        "Release reserved units",
        "scheduled_units -= units, only if scheduled_units >= units and the authorization is "
        "active.",
    ),
    "consume": (
        "Consume reserved units",
        "scheduled_units -= units and used_units += units, only if scheduled_units >= units and "
        "the authorization is active.",
    ),
}


def _authorization_id_parameter() -> dict[str, Any]:
    return {
        "name": "authorization_id",
        "in": "path",
        "required": True,
        "description": "Authorization id (a UUID; anything else answers 404).",
        "schema": UUID_STRING,
    }


def _unit_operation(operation: str) -> dict[str, Any]:
    summary, description = OPERATION_TEXT[operation]
    return {
        "post": {
            "operationId": f"{operation}_units",
            "summary": summary,
            "description": description
            + " The counter change and its ledger row are written in one transaction; any "
            "error leaves the database as it was.",
            "tags": ["authorizations"],
            "security": [{"bearerAuth": []}],
            "parameters": [
                _authorization_id_parameter(),
                _ref("parameters", "RequestId"),
                _ref("parameters", "IdempotencyKey"),
            ],
            "requestBody": {"required": True, "content": _json(_ref("schemas", "UnitsRequest"))},
            "responses": {
                "200": {
                    "description": "Units changed; the ledger row's id is `transaction_id`. A "
                    "repeat of a keyed request answers the first request's status and body again, "
                    "changes nothing and carries `Idempotent-Replayed: true` (refusals too).",
                    "content": _json(_ref("schemas", "UnitChangeResult")),
                    "headers": {"Idempotent-Replayed": REPLAYED_HEADER_SCHEMA},
                },
                "401": UNAUTHORIZED_RESPONSE,
                "404": NOT_FOUND_RESPONSE,
                "405": METHOD_RESPONSE,
                "409": _problem(
                    "Not enough available (reserve) or scheduled (release, consume) units; "
                    "authorization not active or (reserve) outside its date range; "
                    "serialization failures still after the retry budget; "
                    "`idempotency_key_in_use`: a request with the same Idempotency-Key is still "
                    "being processed (carries `Retry-After`; retry with the same key).",
                    INSUFFICIENT_UNITS,
                    AUTHORIZATION_INACTIVE,
                    SERIALIZATION_CONFLICT,
                    IDEMPOTENCY_KEY_IN_USE,
                ),
                "413": TOO_LARGE_RESPONSE,
                "422": _problem(
                    INVALID_RESPONSE["description"]
                    + " `invalid_idempotency_key`: the key is empty, longer than 255 characters "
                    "or not printable ASCII. `idempotency_key_reused`: the key was used before "
                    "for a different request (another operation, authorization or units).",
                    INVALID_REQUEST,
                    INVALID_IDEMPOTENCY_KEY,
                    IDEMPOTENCY_KEY_REUSED,
                ),
                "503": UNAVAILABLE_RESPONSE,
            },
        }
    }


AUTHORIZATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "id", "organization_id", "patient_id", "service_code", "total_units", "used_units",
        "scheduled_units", "available_units", "status", "start_date", "end_date",
    ],
    "properties": {
        "id": UUID_STRING,
        "organization_id": UUID_STRING,
        "patient_id": UUID_STRING,
        "service_code": {"type": "string", "examples": ["97153"]},
        "total_units": {"type": "integer", "minimum": 0},
        "used_units": {"type": "integer", "minimum": 0},
        "scheduled_units": {"type": "integer", "minimum": 0},
        "available_units": {
            "type": "integer",
            "description": "total_units - used_units - scheduled_units",
        },
        "status": {"type": "string", "enum": ["active", "suspended", "closed"]},
        "start_date": {"type": "string", "format": "date"},
        "end_date": {"type": "string", "format": "date"},
    },
}  # fmt: skip

OPENAPI_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Clinic unit-reservation service",
        "version": API_VERSION,
        "description": (
            "Reserve, release and consume the units of insurance authorizations without ever "
            "overbooking. Errors are RFC 9457 problem details with an extra `code` member. "
            "Concurrency strategy (TARGET_CONCURRENCY): one of "
            f"{', '.join(CONCURRENCY_STRATEGIES)}."
        ),
    },
    "servers": [{"url": "/"}],
    "tags": [
        {"name": "authorizations"},
        {"name": "auth"},
        {"name": "operations", "description": "Health, metrics and this document."},
    ],
    "paths": {
        "/healthz": {
            "get": {
                "operationId": "get_health",
                "summary": "Liveness and database reachability",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "Up, and the database answers.",
                        "content": _json(_ref("schemas", "Health")),
                    },
                    "503": UNAVAILABLE_RESPONSE,
                },
            }
        },
        "/api/auth/token": {
            "post": {
                "operationId": "create_token",
                "summary": "Trade a practitioner's e-mail and password for a bearer token",
                "tags": ["auth"],
                "requestBody": {
                    "required": True,
                    "content": _json(_ref("schemas", "TokenRequest")),
                },
                "responses": {
                    "200": {
                        "description": "A signed HS256 JWT (claims sub, org, role, iat, exp).",
                        "content": _json(_ref("schemas", "TokenResponse")),
                    },
                    "401": _problem("Wrong e-mail or password.", UNAUTHORIZED),
                    "405": METHOD_RESPONSE,
                    "413": TOO_LARGE_RESPONSE,
                    "422": _problem(
                        "Body not a JSON object with non-empty string `email` and `password`.",
                        INVALID_REQUEST,
                    ),
                    "503": UNAVAILABLE_RESPONSE,
                },
            }
        },
        "/api/authorizations/{authorization_id}": {
            "get": {
                "operationId": "get_authorization",
                "summary": "Read one of the caller's organization's authorizations",
                "tags": ["authorizations"],
                "security": [{"bearerAuth": []}],
                "parameters": [_authorization_id_parameter(), _ref("parameters", "RequestId")],
                "responses": {
                    "200": {
                        "description": "The authorization.",
                        "content": _json(_ref("schemas", "Authorization")),
                    },
                    "401": UNAUTHORIZED_RESPONSE,
                    "404": NOT_FOUND_RESPONSE,
                    "409": _problem(
                        "Serialization failures still after the retry budget.",
                        SERIALIZATION_CONFLICT,
                    ),
                    "503": UNAVAILABLE_RESPONSE,
                },
            }
        },
        "/api/authorizations/{authorization_id}/reserve": _unit_operation("reserve"),
        "/api/authorizations/{authorization_id}/release": _unit_operation("release"),
        "/api/authorizations/{authorization_id}/consume": _unit_operation("consume"),
        "/metrics": {
            "get": {
                "operationId": "get_metrics",
                "summary": "Prometheus metrics, summed over all worker processes",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": (
                            "Text exposition format: http_requests_total, "
                            "http_request_duration_seconds, db_serialization_retries_total, "
                            "db_serialization_conflicts_total, db_pool_size, "
                            "db_pool_checked_out, db_pool_waiting, db_pool_timeouts_total."
                        ),
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "get_openapi",
                "summary": "This document",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1 document.",
                        "content": _json({"type": "object"}),
                    }
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        },
        "parameters": {
            "RequestId": {
                "name": "X-Request-ID",
                "in": "header",
                "required": False,
                "description": (
                    "Stored on the ledger row and echoed back; one is generated when absent, "
                    "longer than 100 characters or not printable."
                ),
                "schema": {"type": "string", "maxLength": 100},
            },
            "IdempotencyKey": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": (
                    "draft-ietf-httpapi-idempotency-key-header: a client-chosen key (1-255 "
                    'printable ASCII characters; a structured-field string `"..."` is '
                    "accepted) that makes a retry safe. Keys belong to the organization and "
                    "are kept at least 24 h (this service never deletes them). The key and the "
                    "answer are stored in the same transaction as the ledger row. The first "
                    "request is executed; a repeat with the same request gets the stored "
                    "status and body; the same key with another request gets 422 "
                    "`idempotency_key_reused`; a repeat while the first is in flight gets 409 "
                    "`idempotency_key_in_use`. Without a key, nothing is stored."
                ),
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            },
        },
        "schemas": {
            "Authorization": AUTHORIZATION_SCHEMA,
            "UnitsRequest": {
                "type": "object",
                "required": ["units"],
                "properties": {
                    "units": {"type": "integer", "minimum": MIN_UNITS, "maximum": MAX_UNITS}
                },
            },
            "UnitChangeResult": {
                "type": "object",
                "required": ["transaction_id", "authorization"],
                "properties": {
                    "transaction_id": UUID_STRING,
                    "authorization": _ref("schemas", "Authorization"),
                },
            },
            "TokenRequest": {
                "type": "object",
                "required": ["email", "password"],
                "properties": {
                    "email": {"type": "string", "minLength": 1},
                    "password": {"type": "string", "minLength": 1, "format": "password"},
                },
            },
            "TokenResponse": {
                "type": "object",
                "required": ["access_token", "token_type", "expires_in"],
                "properties": {
                    "access_token": {"type": "string"},
                    "token_type": {"type": "string", "const": "Bearer"},
                    "expires_in": {"type": "integer", "description": "Seconds."},
                },
            },
            "Health": {
                "type": "object",
                "required": ["status", "concurrency"],
                "properties": {
                    "status": {"type": "string", "const": "ok"},
                    "concurrency": {"type": "string", "enum": list(CONCURRENCY_STRATEGIES)},
                    "warning": {
                        "type": "string",
                        "description": "Present only when the strategy is `unsafe`.",
                    },
                },
            },
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details with a stable `code`.",
                "required": ["type", "title", "status", "detail", "code"],
                "properties": {
                    "type": {"type": "string", "format": "uri"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "code": {"type": "string"},
                },
            },
        },
    },
}
