"""The OpenAPI document from the service's types, and the check of every response against it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from openapi_conformance import UNREACHABLE_URL, ResponseChecker, service_document
from quart_schema import validate_request

from target.api_types import UnitsRequest
from target.app import create_app
from target.settings import Settings

RESERVE_PATH = f"/api/authorizations/{uuid.uuid4()}/reserve"
AUTHORIZATION = {
    "id": str(uuid.uuid4()),
    "organization_id": str(uuid.uuid4()),
    "patient_id": str(uuid.uuid4()),
    "service_code": "97153",
    "total_units": 10,
    "used_units": 0,
    "scheduled_units": 5,
    "available_units": 5,
    "status": "active",
    "start_date": "2026-01-01",
    "end_date": "2026-12-31",
}


def response(
    method: str,
    path: str,
    status: int,
    body: dict[str, Any],
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.Response(
        status,
        json=body,
        headers={"Content-Type": content_type} | (headers or {}),
        request=httpx.Request(method, f"http://127.0.0.1{path}"),
    )


def problem_body(status: int, code: str) -> dict[str, Any]:
    return {
        "type": f"https://clinic-loadtest.invalid/problems/{code}",
        "title": "Title",
        "status": status,
        "detail": "detail",
        "code": code,
    }


def problem(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = problem_body(status, code)
    return response("POST", RESERVE_PATH, status, body, "application/problem+json", headers)


@pytest.fixture(name="checker")
def _checker() -> ResponseChecker:
    return ResponseChecker(service_document())


def test_documented_answers_pass(checker: ResponseChecker) -> None:
    accepted = response(
        "POST",
        RESERVE_PATH,
        200,
        {"transaction_id": str(uuid.uuid4()), "authorization": AUTHORIZATION},
        headers={"Idempotent-Replayed": "true"},
    )
    assert checker.check(accepted) == []
    assert checker.check(problem(409, "insufficient_units")) == []
    assert checker.check(problem(401, "unauthorized", {"WWW-Authenticate": "Bearer"})) == []


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        (problem(418, "invalid_request"), "status 418 is not declared"),
        (problem(409, "invalid_request"), "body $.code"),
        (problem(401, "unauthorized"), "required header WWW-Authenticate is missing"),
        (
            response("POST", RESERVE_PATH, 409, problem_body(409, "insufficient_units")),
            "content type 'application/json' is not declared",
        ),
        (
            response("POST", RESERVE_PATH, 200, {"authorization": AUTHORIZATION}),
            "'transaction_id' is a required property",
        ),
        (
            response(
                "POST",
                RESERVE_PATH,
                200,
                {"transaction_id": "not-a-uuid", "authorization": AUTHORIZATION},
            ),
            "is not a 'uuid'",
        ),
        (response("GET", "/api/auth/token", 200, {}), "no operation in the document"),
    ],
    ids=[
        "undeclared-status",
        "code-not-declared-for-status",
        "missing-required-header",
        "wrong-content-type",
        "missing-field",
        "bad-uuid",
        "undocumented-method",
    ],
)
def test_undeclared_answers_fail(
    checker: ResponseChecker, answer: httpx.Response, complaint: str
) -> None:
    problems = checker.check(answer)
    assert any(complaint in found for found in problems), problems
    assert checker.failures == problems


def test_routing_problems_on_unknown_paths_pass(checker: ResponseChecker) -> None:
    unknown = response("GET", "/nowhere", 404, {}, "application/problem+json")
    assert checker.check(unknown) != []  # an empty body is not a problem document
    missing = problem(404, "not_found")
    missing.request = httpx.Request("GET", "http://127.0.0.1/nowhere")
    assert checker.check(missing) == []


async def test_every_httpx_response_of_a_test_is_checked(
    responses_match_the_openapi_document: list[ResponseChecker],
) -> None:
    app = create_app(Settings(database_url=UNREACHABLE_URL))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        served = await http.get("/openapi.json")
    assert served.status_code == 200
    (checker,) = responses_match_the_openapi_document
    assert checker.checked == 1
    assert checker.failures == []


async def test_a_quart_schema_validation_error_is_a_422_problem() -> None:
    app = create_app(Settings(database_url=UNREACHABLE_URL))

    @app.post("/validated")
    @validate_request(UnitsRequest)
    async def validated(data: UnitsRequest) -> dict[str, int]:
        return {"units": data.units}

    async with app.test_app():
        refused = await app.test_client().post("/validated", json={"units": 0})
        body = await refused.get_json()
    assert refused.status_code == 422
    assert refused.content_type.startswith("application/problem+json")
    assert body["code"] == "invalid_request"
    assert "units" in body["detail"]


def test_the_document_declares_the_idempotency_contract() -> None:
    document = service_document()
    reserve = document["paths"]["/api/authorizations/{authorization_id}/reserve"]["post"]
    parameters = {parameter["name"]: parameter for parameter in reserve["parameters"]}
    assert set(parameters) == {"authorization_id", "X-Request-ID", "Idempotency-Key"}
    assert parameters["Idempotency-Key"]["schema"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
    }
    assert "Idempotent-Replayed" in reserve["responses"]["200"]["headers"]
    assert reserve["security"] == [{"bearerAuth": []}]
    codes_409 = reserve["responses"]["409"]["content"]["application/problem+json"]["schema"]
    assert "idempotency_key_in_use" in codes_409["allOf"][1]["properties"]["code"]["enum"]
    codes_422 = reserve["responses"]["422"]["content"]["application/problem+json"]["schema"]
    assert set(codes_422["allOf"][1]["properties"]["code"]["enum"]) == {
        "invalid_request",
        "invalid_idempotency_key",
        "idempotency_key_reused",
    }
    units = document["components"]["schemas"]["UnitsRequest"]["properties"]["units"]
    assert (units["type"], units["minimum"], units["maximum"]) == ("integer", 1, 1_000_000)
