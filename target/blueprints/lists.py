"""List-append transactions: appends and reads of an organization's keys, in one transaction."""

from __future__ import annotations

import uuid

import msgspec
from quart import Blueprint
from quart.typing import ResponseReturnValue
from quart_schema import (
    document_headers,
    document_request,
    document_response,
    security_scheme_blueprint,
    tag_blueprint,
)

from target.api_types import (
    ListTransactionRequest,
    ListTransactionResult,
    ReadHeaders,
    json_response,
)
from target.blueprints.authorizations import authenticate, retry_count
from target.list_append import ListTransaction, run_list_transaction
from target.openapi import (
    BEARER_SECURITY,
    INVALID_LIST_TRANSACTION_RESPONSE,
    LIST_TRANSACTION_CONFLICT_RESPONSE,
    METHOD_RESPONSE,
    TOO_LARGE_RESPONSE,
    UNAUTHORIZED_RESPONSE,
    UNAVAILABLE_RESPONSE,
    problems,
)
from target.payloads import decode_body, read_body
from target.state import current_database, current_settings

blueprint = Blueprint("lists", __name__, url_prefix="/api/lists")
tag_blueprint(blueprint, ["lists"])
security_scheme_blueprint(blueprint, BEARER_SECURITY)

LIST_TRANSACTION_REQUEST = msgspec.json.Decoder(ListTransactionRequest)


@blueprint.post("/transactions")
@document_request(ListTransactionRequest)
@document_headers(ReadHeaders)
@document_response(ListTransactionResult, 200)
@problems(
    UNAUTHORIZED_RESPONSE,
    METHOD_RESPONSE,
    LIST_TRANSACTION_CONFLICT_RESPONSE,
    TOO_LARGE_RESPONSE,
    INVALID_LIST_TRANSACTION_RESPONSE,
    UNAVAILABLE_RESPONSE,
)
async def run_list_transaction_route() -> ResponseReturnValue:
    """Run appends and reads of the caller's organization's lists, in order, in one transaction.

    The transaction runs at the service's isolation level (TARGET_ISOLATION) and, on a
    serialization failure or deadlock, runs again whole. A read returns the key's whole list
    in append order (empty for a key never appended to). The Idempotency-Key header is not
    honoured: a client that lost the answer cannot tell whether it committed.
    """
    principal = authenticate()
    body = decode_body(await read_body(current_settings().max_body_bytes), LIST_TRANSACTION_REQUEST)
    transaction = ListTransaction(
        organization_id=principal.organization_id, ops=body.ops, transaction_id=uuid.uuid4()
    )
    outcome = await run_list_transaction(current_database(), transaction, retry_count())
    return json_response(ListTransactionResult(outcome.transaction_id, outcome.ops))
