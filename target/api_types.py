"""The API's own types: request bodies and headers, response bodies, problem details.

One place for both jobs: the service decodes request bodies against these models (msgspec,
strict: `true`, `1.0` and `"5"` are not integers) and quart-schema builds the OpenAPI document
from them. msgspec rather than pydantic because it is the cheaper of the two per request;
benchmarks/README.md has the figures.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec
from quart import Response

from target.settings import CONCURRENCY_STRATEGIES

JSON_CONTENT_TYPE = "application/json"
MIN_UNITS = 1
MAX_UNITS = 1_000_000
MAX_REQUEST_ID_CHARS = 100
MAX_IDEMPOTENCY_KEY_CHARS = 255

Units = Annotated[
    int,
    msgspec.Meta(
        ge=MIN_UNITS,
        le=MAX_UNITS,
        description="A JSON integer; booleans, floats (even 1.0) and strings are refused.",
    ),
]
NonEmptyString = Annotated[str, msgspec.Meta(min_length=1)]
Concurrency = Literal[CONCURRENCY_STRATEGIES]  # type: ignore[valid-type]
AuthorizationStatus = Literal["active", "suspended", "closed"]


class UnitsRequest(msgspec.Struct, frozen=True):
    """The body of reserve, release and consume."""

    units: Units


MIN_SESSION_MINUTES = 15
MAX_SESSION_MINUTES = 480


class BookingRequest(msgspec.Struct, frozen=True):
    """The body of a booking: which authorization pays, when, for how long, how many units."""

    authorization_id: uuid.UUID
    starts_at: Annotated[
        dt.datetime, msgspec.Meta(tz=True, description="RFC 3339 with a UTC offset.")
    ]
    duration_minutes: Annotated[int, msgspec.Meta(ge=MIN_SESSION_MINUTES, le=MAX_SESSION_MINUTES)]
    units: Units


class TherapySession(msgspec.Struct, frozen=True):
    """A session: the practitioner is the caller, the patient the authorization's."""

    id: uuid.UUID
    organization_id: uuid.UUID
    authorization_id: uuid.UUID
    practitioner_id: uuid.UUID
    patient_id: uuid.UUID
    starts_at: dt.datetime
    ends_at: dt.datetime
    units: Annotated[int, msgspec.Meta(ge=1)]
    status: Literal["booked", "cancelled", "completed"]


class SessionResult(msgspec.Struct, frozen=True):
    """The session booked, cancelled or completed; `transaction_id` is its id.

    A repeat of a keyed request answers the first request's body again, changes nothing and
    carries `Idempotent-Replayed: true`.
    """

    transaction_id: uuid.UUID
    session: TherapySession


class TokenRequest(msgspec.Struct, frozen=True):
    """A practitioner's e-mail and password."""

    email: NonEmptyString
    password: Annotated[str, msgspec.Meta(min_length=1, extra_json_schema={"format": "password"})]


class TokenResponse(msgspec.Struct, frozen=True):
    """A signed HS256 JWT (claims sub, org, role, iat, exp)."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: Annotated[int, msgspec.Meta(description="Seconds.")]


class Authorization(msgspec.Struct, frozen=True):
    """One of the caller's organization's authorizations."""

    id: uuid.UUID
    organization_id: uuid.UUID
    patient_id: uuid.UUID
    service_code: Annotated[str, msgspec.Meta(examples=["97153"])]
    total_units: Annotated[int, msgspec.Meta(ge=0)]
    used_units: Annotated[int, msgspec.Meta(ge=0)]
    scheduled_units: Annotated[int, msgspec.Meta(ge=0)]
    available_units: Annotated[
        int, msgspec.Meta(description="total_units - used_units - scheduled_units")
    ]
    status: AuthorizationStatus
    start_date: dt.date
    end_date: dt.date


class UnitChangeResult(msgspec.Struct, frozen=True):
    """Units changed; the ledger row's id is `transaction_id`.

    A repeat of a keyed request answers the first request's status and body again, changes
    nothing and carries `Idempotent-Replayed: true` (refusals too).
    """

    transaction_id: uuid.UUID
    authorization: Authorization


class Health(msgspec.Struct, frozen=True, omit_defaults=True):
    """Up, and the database answers."""

    status: Literal["ok"]
    concurrency: Concurrency
    transaction_shape: Literal["interactive", "statement"]
    isolation: Literal["serializable", "repeatable_read", "read_committed"]
    warning: Annotated[
        str | None, msgspec.Meta(description="Present only when the strategy is `unsafe`.")
    ] = None


class Problem(msgspec.Struct, frozen=True):
    """RFC 9457 problem details with a stable `code`."""

    type: Annotated[str, msgspec.Meta(extra_json_schema={"format": "uri"})]
    title: str
    status: int
    detail: str
    code: str


def json_response(
    body: msgspec.Struct, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """Encode a model as a JSON response (msgspec encodes UUIDs and dates itself)."""
    return Response(
        msgspec.json.encode(body), status=status, headers=headers, content_type=JSON_CONTENT_TYPE
    )


# -- headers (documented through quart-schema; read by request_log and idempotency) ----------
RequestId = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_REQUEST_ID_CHARS,
        description=(
            "Stored on the ledger row and echoed back; one is generated when absent, longer "
            f"than {MAX_REQUEST_ID_CHARS} characters or not printable."
        ),
    ),
]
IdempotencyKey = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_CHARS,
        description=(
            "draft-ietf-httpapi-idempotency-key-header: a client-chosen key (1-255 printable "
            'ASCII characters; a structured-field string `"..."` is accepted) that makes a '
            "retry safe. Keys belong to the organization and are kept at least 24 h (this "
            "service never deletes them). The key and the answer are stored in the same "
            "transaction as the ledger row. The first request is executed; a repeat with the "
            "same request gets the stored status and body; the same key with another request "
            "gets 422 `idempotency_key_reused`; a repeat while the first is in flight gets 409 "
            "`idempotency_key_in_use`. Without a key, nothing is stored."
        ),
    ),
]


class ReadHeaders(msgspec.Struct, frozen=True):
    """Optional request headers of a read."""

    request_id: RequestId | None = msgspec.field(default=None, name="X-Request-ID")


class UnitChangeHeaders(msgspec.Struct, frozen=True):
    """Optional request headers of reserve, release and consume."""

    request_id: RequestId | None = msgspec.field(default=None, name="X-Request-ID")
    idempotency_key: IdempotencyKey | None = msgspec.field(default=None, name="Idempotency-Key")


class ReplayedHeaders(msgspec.Struct, frozen=True):
    """Response headers of a unit change."""

    idempotent_replayed: (
        Annotated[
            Literal["true"],
            msgspec.Meta(
                description="`true` when this is the stored answer to an earlier request "
                "with the same key."
            ),
        ]
        | None
    ) = msgspec.field(default=None, name="Idempotent-Replayed")


# -- list-append transactions (the isolation scenario; target/list_append.py) ----------------
MIN_LIST_OPS = 1
MAX_LIST_OPS = 8
MAX_LIST_KEY_CHARS = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

ListKey = Annotated[
    Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LIST_KEY_CHARS)]
    | Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)],
    msgspec.Meta(description='A short string or an integer; 3 and "3" are different keys.'),
]
ListElement = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]


class AppendOp(
    msgspec.Struct, frozen=True, array_like=True, tag="append", forbid_unknown_fields=True
):
    """`["append", key, value]`: add `value` at the end of the key's list."""

    key: ListKey
    value: ListElement


class ReadOp(msgspec.Struct, frozen=True, array_like=True, tag="r", forbid_unknown_fields=True):
    """`["r", key, null]`: read the key's whole list."""

    key: ListKey
    value: None = None


class ReadResultOp(msgspec.Struct, frozen=True, array_like=True, tag="r"):
    """`["r", key, [...]]`: the key's whole list as the transaction saw it, in append order."""

    key: ListKey
    value: list[ListElement]


class ListTransactionRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Micro-operations run in order in one transaction (Elle's list-append workload)."""

    ops: Annotated[
        list[AppendOp | ReadOp], msgspec.Meta(min_length=MIN_LIST_OPS, max_length=MAX_LIST_OPS)
    ]


class ListTransactionResult(msgspec.Struct, frozen=True):
    """The transaction committed: its micro-operations with every read filled in.

    The Idempotency-Key header is not honoured here: a request whose answer is lost may or may
    not have committed, and the client ends it as unknown (Jepsen's `info`) without retrying.
    """

    transaction_id: uuid.UUID
    ops: list[AppendOp | ReadResultOp]
