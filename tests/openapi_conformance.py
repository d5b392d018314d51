"""Check HTTP responses against the service's own OpenAPI document.

No tests live here: tests/conftest.py wraps every httpx client of the test suite with
`ResponseChecker`, and tests/test_service_openapi.py shows that the checker can fail.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from target.app import create_app
from target.openapi import openapi_document
from target.problems import METHOD_NOT_ALLOWED, NOT_FOUND, PROBLEM_CONTENT_TYPE
from target.settings import Settings

# The document does not depend on the database; the app is built only to read its routes.
UNREACHABLE_URL = "postgresql://nobody@127.0.0.1:9/nowhere"
JSON_MEDIA_TYPES = ("application/json", PROBLEM_CONTENT_TYPE)
# What any path answers for a route or method it does not have; no operation can declare it.
ROUTING_PROBLEMS = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED}


@functools.cache
def service_document() -> dict[str, Any]:
    """Return the document the service serves at /openapi.json."""
    return openapi_document(create_app(Settings(database_url=UNREACHABLE_URL)))


def path_pattern(template: str) -> re.Pattern[str]:
    """Turn `/api/authorizations/{authorization_id}` into a regular expression."""
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile(
        "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
    )


@dataclass
class ResponseChecker:
    """Say what in a response the document does not declare."""

    document: dict[str, Any]
    checked: int = 0
    failures: list[str] = field(default_factory=list)
    _validators: dict[str, Draft202012Validator] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._paths = [
            (path_pattern(template), template) for template in sorted(self.document["paths"])
        ]

    def check(self, response: httpx.Response) -> list[str]:
        """Return the problems of one response (and remember them in ``failures``)."""
        request = response.request
        where = f"{request.method} {request.url.path} -> {response.status_code}"
        problems = [f"{where}: {problem}" for problem in self.problems_of(response)]
        self.checked += 1
        self.failures.extend(problems)
        return problems

    def problems_of(self, response: httpx.Response) -> list[str]:
        operation = self.operation_for(response.request.method, response.request.url.path)
        status = response.status_code
        if operation is None:
            if status not in ROUTING_PROBLEMS:
                return ["no operation in the document for this method and path"]
            return self.routing_problem_problems(response, ROUTING_PROBLEMS[status])
        declared = operation["responses"].get(str(status))
        if declared is None:
            return [f"status {status} is not declared (declared: {sorted(operation['responses'])})"]
        return self.body_problems(response, declared) + self.header_problems(response, declared)

    def operation_for(self, method: str, path: str) -> dict[str, Any] | None:
        for pattern, template in self._paths:
            if pattern.fullmatch(path):
                return self.document["paths"][template].get(method.lower())
        return None

    def routing_problem_problems(self, response: httpx.Response, code: str) -> list[str]:
        problem_schema = {
            "allOf": [
                {"$ref": "#/components/schemas/Problem"},
                {"properties": {"code": {"const": code}}},
            ]
        }
        return self.body_problems(
            response, {"content": {PROBLEM_CONTENT_TYPE: {"schema": problem_schema}}}
        )

    def body_problems(self, response: httpx.Response, declared: dict[str, Any]) -> list[str]:
        content = declared.get("content", {})
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if media_type not in content:
            return [f"content type {media_type!r} is not declared (declared: {sorted(content)})"]
        if media_type not in JSON_MEDIA_TYPES:
            return []
        try:
            body = json.loads(response.content)
        except ValueError:
            return [f"body is not JSON: {response.content[:200]!r}"]
        validator = self.validator(content[media_type]["schema"])
        return [f"body {error.json_path}: {error.message}" for error in validator.iter_errors(body)]

    def header_problems(self, response: httpx.Response, declared: dict[str, Any]) -> list[str]:
        problems = []
        for name, header in declared.get("headers", {}).items():
            value = response.headers.get(name)
            if value is None:
                if header.get("required"):
                    problems.append(f"required header {name} is missing")
                continue
            problems.extend(
                f"header {name}: {error.message}"
                for error in self.validator(header["schema"]).iter_errors(value)
            )
        return problems

    def validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        """Return a validator for a schema whose `$ref`s point into the document."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self._validators:
            rooted = schema | {"components": self.document["components"]}
            self._validators[key] = Draft202012Validator(
                rooted, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
        return self._validators[key]
