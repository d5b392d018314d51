"""Send one logical operation safely: one Idempotency-Key, retried until its outcome is known.

A change (reserve, release, consume) is sent with an `Idempotency-Key` that names the
operation, not the attempt. When an attempt's outcome is unknown (no answer, or an answer that
says "try again") the same request is sent again with the same key, after a capped exponential
backoff with full jitter, until a definite answer comes back, the attempts run out or the
operation's deadline passes. The service runs a key at most once, so a retry can never book
twice; without that guarantee (TARGET_IDEMPOTENCY=off) the integrity checks see the double.

Each attempt is reported back, the last one with the operation's outcome, in Jepsen's terms:
`ok` (done), `fail` (definitely not done) or `info` (unknown even after the last attempt).
This module knows nothing of Molotov, so the retry rules can be tested on their own.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from molotov_scenarios.http_client import HttpClient
from results.record_format import CONNECTION_ERROR, NO_RESPONSE_STATUS, TIMEOUT
from retry_backoff import full_jitter_delay_s

OK, FAIL, INFO = "ok", "fail", "info"
OUTCOMES = (OK, FAIL, INFO)
IDEMPOTENCY_KEY_HEADER = b"Idempotency-Key"
REQUEST_ID_HEADER = b"X-Request-ID"
KEY_IN_USE = "idempotency_key_in_use"  # 409: the first attempt is still running on the server
INVALID_RESPONSE = "invalid_response"  # a 2xx without a transaction id: the client rejects it
# Answers that say "not decided, ask again": a gateway or an overloaded service (the work may or
# may not have happened: a 503 can come after a commit whose acknowledgement was lost).
RETRIED_STATUSES = frozenset({502, 503, 504})
# A 500 is a bug in the service, not a transient fault: it is not retried (the same request
# would most likely hit the same bug, and the error count already flags it). Nor is it a
# definite refusal: the service may have failed after its commit. So it ends the operation
# as `info`, never as `fail`, and "no ledger row for a failed operation" never blames it.
UNKNOWN_FINAL_STATUSES = frozenset({500})

MAX_ATTEMPTS = 5
ATTEMPT_TIMEOUT_S = 5.0  # an attempt still unanswered after this is recorded as `timeout`
# Attempts and the pauses between them together; a hung first attempt leaves time for a retry.
OPERATION_DEADLINE_S = 10.0
# The n-th retry waits uniform(0, min(cap, base * 2^(n-1))): retry_backoff.full_jitter_delay_s.
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0
MIN_ATTEMPT_S = 0.2  # no attempt starts with less than this left before the deadline


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one logical operation."""

    max_attempts: int = MAX_ATTEMPTS
    attempt_timeout_s: float = ATTEMPT_TIMEOUT_S
    deadline_s: float = OPERATION_DEADLINE_S
    backoff_base_s: float = BACKOFF_BASE_S
    backoff_cap_s: float = BACKOFF_CAP_S

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """Return the pause before retry number ``retry`` (1 for the first retry): full jitter."""
        return full_jitter_delay_s(
            retry, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s, random=rng.random
        )


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt of a logical operation."""

    request_id: str
    attempt: int
    status: int  # 0 when no response arrived
    code: str  # problem `code`, `timeout`/`connection_error`, or "" for a usable 2xx
    transaction_id: str
    started: float  # perf_counter; the first attempt may give the intended start instead
    ended: float
    outcome: str  # ok, fail or info on the attempt that ended the operation; "" if retried
    body: bytes = b""  # the answer's body on a 2xx (the list-append scenario reads it)


def new_idempotency_key(source: random.Random | None = None) -> str:
    """Return a key for one logical operation, unique across runs and processes.

    ``source``: a generator seeded from the OS (cheaper than a uuid4 per key); by default uuid4.
    """
    if source is None:
        return uuid.uuid4().hex
    return f"{source.getrandbits(128):032x}"


def judge(status: int, code: str) -> str:
    """Tell what one answer means: ok, fail, info (unknown, final) or "" (unknown, retry)."""
    if 200 <= status < 300:
        return INFO if code else OK  # a 2xx the client cannot read: done, but which row?
    if status == NO_RESPONSE_STATUS or status in RETRIED_STATUSES:
        return ""
    if status == 409 and code == KEY_IN_USE:
        return ""
    if status in UNKNOWN_FINAL_STATUSES or status >= 500:
        return INFO
    return FAIL


async def send_operation(
    client: HttpClient,
    path: str | bytes,
    *,
    body: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    idempotency_key: str,
    next_request_id: Callable[[], str],
    rng: random.Random,
    policy: RetryPolicy = RetryPolicy(),
    first_start: float | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> list[Attempt]:
    """POST ``body`` to ``path`` under one Idempotency-Key until the outcome is known.

    ``headers``: (name, value) pairs, encoded, sent with every attempt besides the key and
    the request id. ``first_start`` (perf_counter) is the operation's intended start under
    the open model: the first attempt's latency counts from it. Returns every attempt, in
    order; the last one carries the outcome.
    """
    pause = sleep or asyncio.sleep
    sent = time.perf_counter()
    began = sent if first_start is None else first_start
    # From the first send, not the intended start: a late open-model slot still gets its tries.
    deadline = sent + policy.deadline_s
    attempts: list[Attempt] = []
    operation_headers = (*headers, (IDEMPOTENCY_KEY_HEADER, idempotency_key.encode()))
    while True:
        number = len(attempts) + 1
        request_id = next_request_id()
        started = began if number == 1 else time.perf_counter()
        timeout_s = min(policy.attempt_timeout_s, max(deadline - time.perf_counter(), 0.0))
        status, code, transaction_id, answer = await _post_once(
            client,
            path,
            body,
            (*operation_headers, (REQUEST_ID_HEADER, request_id.encode())),
            timeout_s,
            # An operation that may be sent again may also be sent again on a fresh connection
            # when a reused one closes under it unanswered, within one attempt.
            replayable=policy.max_attempts > 1,
        )
        ended = time.perf_counter()
        verdict = judge(status, code)
        last = bool(verdict) or number >= policy.max_attempts
        wait_s = 0.0 if last else policy.backoff_s(number, rng)
        if not last and ended + wait_s + MIN_ATTEMPT_S > deadline:
            last = True  # no time left for another useful attempt
        attempts.append(
            Attempt(
                request_id=request_id,
                attempt=number,
                status=status,
                code=code,
                transaction_id=transaction_id,
                started=started,
                ended=ended,
                outcome=(verdict or INFO) if last else "",
                body=answer,
            )
        )
        if last:
            return attempts
        await pause(wait_s)


async def _post_once(
    client: HttpClient,
    path: str | bytes,
    body: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    timeout_s: float,
    *,
    replayable: bool,
) -> tuple[int, str, str, bytes]:
    """Send one attempt; return (status, code, transaction id) as the records want them, and
    the body of a 2xx (empty otherwise)."""
    status, code, payload = NO_RESPONSE_STATUS, "", b""
    # The clock runs around the whole call: connect (when no connection is idle), send,
    # headers and body.
    try:
        status, payload = await client.post(path, body, headers, timeout_s, replayable=replayable)
    except TimeoutError:
        code = TIMEOUT
    except OSError:  # refused, reset, closed before a full answer, malformed answer
        code = CONNECTION_ERROR
    if 200 <= status < 300:
        transaction_id = _transaction_id(payload)
        return status, "" if transaction_id else INVALID_RESPONSE, transaction_id, payload
    if status != NO_RESPONSE_STATUS:
        code = _problem_code(payload, status)
    return status, code, "", b""


def _transaction_id(body: bytes) -> str:
    try:
        value = json.loads(body).get("transaction_id")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) and value else ""


def _problem_code(body: bytes, status: int) -> str:
    try:
        value = json.loads(body).get("code")
    except (ValueError, AttributeError):
        value = None
    return value if isinstance(value, str) and value else f"http_{status}"
