"""Shared scenario helpers: fixtures, pickers, tokens, timed calls, think time and pacing.

Imported by a scenario module inside a Molotov process started by load_runner; it reads the
run's environment and the fixtures once, before Molotov forks, and registers the worker
fixtures that count workers in and out for the recorder.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp
import molotov
from molotov.api import get_scenarios
from molotov.util import stop as stop_molotov

from molotov_scenarios.environment import (
    ScenarioEnvironment,
    run_start_epoch,
    start_delay_s,
    worker_seed,
)
from molotov_scenarios.fixtures import (
    HIGH_CONTENTION,
    HIGH_THROUGHPUT,
    Authorization,
    load_fixtures,
)
from molotov_scenarios.http_client import HttpClient
from molotov_scenarios.recorder import Recorder
from molotov_scenarios.retries import OK, RetryPolicy, new_idempotency_key, send_operation
from molotov_scenarios.transactions import TransactionLog
from results.record_format import Record

CONTENTION_SLICE_MIN_S = 0.5  # each contended authorization gets at least this long
SHARED_SHARE = 0.2  # mixed operations: share of calls on the one shared authorization
SHARED_POOL = HIGH_CONTENTION  # ... a small one (50 units), so that it fills up and contends
SPREAD_POOL = HIGH_THROUGHPUT  # ... the other calls spread over these (1000 units each)

ENVIRONMENT = ScenarioEnvironment.from_process()
FIXTURES = load_fixtures(Path(ENVIRONMENT.fixtures_path))
OPEN_MODEL = ENVIRONMENT.arrival_rate_rps is not None
# Each worker's share of the arrival rate: one request every `users / rate` seconds.
ARRIVAL_INTERVAL_S = ENVIRONMENT.users / ENVIRONMENT.arrival_rate_rps if OPEN_MODEL else 0.0


class Outcome(NamedTuple):
    """How one logical operation ended: its last answer and its outcome (ok, fail or info)."""

    status: int
    code: str
    transaction_id: str
    result: str
    key: str = ""  # the operation's Idempotency-Key: its name in the records
    body: bytes = b""  # the last answer's body, on a 2xx

    @property
    def ok(self) -> bool:
        # An unknown outcome (info) counts as not done: the user does not hold those units.
        return self.result == OK


@dataclass
class Worker:
    """One virtual user: its random stream, its schedule and the units it holds."""

    worker_id: int
    rng: random.Random
    first_start: float | None = None  # open model: perf_counter time of the first intended start
    next_start: float | None = None  # ... and of the next one
    bookings: dict[str, int] = field(default_factory=dict)  # authorization id → units held
    # session_scheduling: the sessions this user booked and has not settled (id, authorization)
    sessions: list[tuple[str, Authorization]] = field(default_factory=list)


@dataclass
class _Process:
    """This process's recorder and workers (a fresh one after Molotov forks)."""

    pid: int = 0
    recorder: Recorder | None = None
    workers: dict[int, Worker] = field(default_factory=dict)
    connector: aiohttp.TCPConnector | None = None  # Molotov's sessions' pool: sends nothing
    http: HttpClient | None = None  # the lean client every worker sends through
    sessions: int = 0  # workers whose session is open
    transactions: TransactionLog | None = None  # isolation_append: txns-<pid>.jsonl


_PROCESS = _Process()
# Idempotency-Keys: 128 random bits from a generator seeded by the OS once per process (after
# the fork), not an os.urandom call per key; never from a user's seeded stream, which repeats
# from run to run while the service keeps every key it has seen.
_KEY_RANDOM = random.Random()
_RUN_START_EPOCH: list[float] = []  # set once in Molotov's parent, inherited by its children


def recorder() -> Recorder:
    """Return this process's recorder, creating it on first use after a fork."""
    # _forget_parent_state resets it in a forked child: no getpid() on every call.
    if _PROCESS.recorder is None:
        _PROCESS.pid = os.getpid()
        _PROCESS.workers = {}
        start = _RUN_START_EPOCH[0] if _RUN_START_EPOCH else time.time()
        _PROCESS.recorder = Recorder(ENVIRONMENT.records_dir, start, ENVIRONMENT.id_prefix)
    return _PROCESS.recorder


def _forget_parent_state() -> None:
    _KEY_RANDOM.seed()
    _PROCESS.pid, _PROCESS.recorder, _PROCESS.workers = 0, None, {}
    _PROCESS.connector, _PROCESS.http, _PROCESS.sessions = None, None, 0
    _PROCESS.transactions = None


os.register_at_fork(after_in_child=_forget_parent_state)


def worker_of(session: aiohttp.ClientSession) -> Worker:
    return _PROCESS.workers[molotov.get_context(session).worker_id]


def process_connector() -> aiohttp.TCPConnector:
    """Return the pool the workers' Molotov sessions share (made on first use, in the loop)."""
    if _PROCESS.connector is None:
        _PROCESS.connector = aiohttp.TCPConnector(limit=None, ttl_dns_cache=None)
    return _PROCESS.connector


def http_client() -> HttpClient:
    """Return the process's one lean HTTP client (made on first use, inside the event loop)."""
    if _PROCESS.http is None:
        _PROCESS.http = HttpClient(
            ENVIRONMENT.target_url, server_keep_alive_s=ENVIRONMENT.server_keep_alive_s
        )
    return _PROCESS.http


def _weighted_scenarios() -> tuple[list[str], list[int]]:
    # Read once Molotov has imported the scenario module (its decorators ran by then).
    scenarios = get_scenarios()
    return [s["name"] for s in scenarios], [s["weight"] for s in scenarios]


_SCENARIO_NAMES: list[str] = []
_SCENARIO_WEIGHTS: list[int] = []


# -- Molotov fixtures -----------------------------------------------------------------------
@molotov.global_setup()
def _mark_run_start(args: Any) -> None:
    # Runs in Molotov's parent once, just before it forks: every process counts from here
    # (a shard: from the shared start time, on this host's clock; see run_start_epoch).
    launched = time.time()
    _RUN_START_EPOCH.extend((run_start_epoch(ENVIRONMENT, launched), launched))
    names, weights = _weighted_scenarios()
    _SCENARIO_NAMES.extend(names)
    _SCENARIO_WEIGHTS.extend(weights)


@molotov.setup()
async def _start_worker(worker_id: int, args: Any) -> dict[str, Any]:
    record = recorder()
    rng = random.Random(worker_seed(ENVIRONMENT, record.process_slot, worker_id))
    _PROCESS.workers[worker_id] = Worker(worker_id=worker_id, rng=rng)
    record.worker_started()
    # A shard waits for the shared start time (shifting Molotov's ramp-up, not squeezing it).
    await asyncio.sleep(start_delay_s(*_RUN_START_EPOCH))
    # Molotov's own session only carries the worker's context: it shares one pool (which it
    # must not close) and sends nothing.
    return {"connector": process_connector(), "connector_owner": False}


@molotov.setup_session()
async def _open_lean_session(worker_id: int, session: aiohttp.ClientSession) -> None:
    # Molotov's session carries trace hooks (a TraceConfig firing an event per response and
    # a request class firing one per request) for its verbose output and statsd, neither of
    # which this project uses, and aiohttp's request machinery costs more CPU than all the
    # rest of the generator. The workers keep Molotov's session for its context (the worker
    # id) and send through one lean client per process (molotov_scenarios.http_client).
    http_client()
    _PROCESS.sessions += 1


@molotov.teardown_session()
async def _close_lean_session(worker_id: int, session: aiohttp.ClientSession) -> None:
    _PROCESS.sessions -= 1
    if _PROCESS.sessions > 0:
        return
    if _PROCESS.http is not None:
        _PROCESS.http.close()
        _PROCESS.http = None
    if _PROCESS.connector is not None:
        await _PROCESS.connector.close()
        _PROCESS.connector = None


@molotov.scenario_picker()
def _pick_scenario(worker_id: int, step_id: int) -> str:
    # Molotov's own picker draws from the process-wide `random`; this one draws from the
    # worker's seeded stream, so a shard's picks are fixed by its seed, shard and worker.
    worker = _PROCESS.workers[worker_id]
    return worker.rng.choices(_SCENARIO_NAMES, weights=_SCENARIO_WEIGHTS)[0]


@molotov.teardown()
def _stop_worker(worker_id: int) -> None:
    record = recorder()
    worker = _PROCESS.workers.get(worker_id)
    if worker is not None:
        record.scheduled_requests += scheduled_requests(worker)
    record.worker_stopped()


def scheduled_requests(worker: Worker) -> int:
    """Count the open-model slots of a worker that fell within the run (0 under the closed one)."""
    if worker.first_start is None:
        return 0
    first_s = recorder().seconds_since_start(worker.first_start)
    if first_s >= ENVIRONMENT.duration_s:
        return 0
    return math.ceil((ENVIRONMENT.duration_s - first_s) / ARRIVAL_INTERVAL_S)


def guarded(
    scenario: Callable[[Worker], Awaitable[None]],
) -> Callable[[aiohttp.ClientSession], Awaitable[None]]:
    """Run a scenario as its Molotov worker's virtual user; stop the run on its first bug.

    Molotov 2.6 hands every scenario an aiohttp session of its own making (it has no hook to
    leave it out); the scenarios send nothing through it (they send through the process's
    lean client) and use it only to find their worker. So the scenario gets that worker, and
    the session stays here. A bug's traceback is kept for the result.
    """

    @functools.wraps(scenario)
    async def run(session: aiohttp.ClientSession) -> None:
        try:
            await scenario(worker_of(session))
        except Exception as error:
            recorder().record_exception(error)
            stop_molotov()

    return run


# -- Pickers and tokens -----------------------------------------------------------------------
def token_for(authorization: Authorization, worker: Worker) -> str:
    """Pick a practitioner token of the authorization's own organization (others get 404)."""
    tokens = FIXTURES.tokens[authorization.organization_id]
    return tokens[worker.worker_id % len(tokens)]


def any_authorization(worker: Worker) -> Authorization:
    """Pick one of every active authorization, uniformly."""
    return worker.rng.choice(FIXTURES.authorizations)


def contention_slice_s() -> float:
    """Return how long all users stay on one contended authorization before moving on."""
    pool = FIXTURES.pools[HIGH_CONTENTION]
    return max(ENVIRONMENT.duration_s / len(pool), CONTENTION_SLICE_MIN_S)


def contended_authorization(now_s: float) -> Authorization:
    """Pick the contended authorization every user is on at `now_s` seconds into the run."""
    pool = FIXTURES.pools[HIGH_CONTENTION]
    return pool[min(max(int(now_s // contention_slice_s()), 0), len(pool) - 1)]


def next_contention_switch_s(now_s: float) -> float:
    """Return when (seconds into the run) the users move on to the next contended authorization."""
    length = contention_slice_s()
    return (math.floor(now_s / length) + 1) * length


def shared_authorization() -> Authorization:
    """Return the one authorization every user of the mixed scenario shares."""
    return FIXTURES.pools[SHARED_POOL][0]


def mixed_authorization(worker: Worker) -> Authorization:
    """Pick the shared authorization 20 % of the time, otherwise one of the others at random."""
    shared = shared_authorization()
    if worker.rng.random() < SHARED_SHARE:
        return shared
    while True:
        authorization = worker.rng.choice(FIXTURES.pools[SPREAD_POOL])
        if authorization != shared:
            return authorization


def own_booking(worker: Worker, chosen: Authorization, units: int) -> Authorization:
    """Pick where to release or consume: the chosen authorization if this user booked units
    there, else the authorization where it holds the most, else the chosen one all the same.

    A practitioner cancels or delivers sessions they booked; only a user holding nothing
    at all sends the call blind (and may get 409 insufficient_units).
    """
    if worker.bookings.get(chosen.id, 0) >= units:
        return chosen
    held = [(units_held, id_) for id_, units_held in worker.bookings.items() if units_held >= units]
    if not held:
        return chosen
    return FIXTURES.by_id[max(held)[1]]


# -- Time ---------------------------------------------------------------------------------------
def now_s() -> float:
    """Return seconds since the run started (shared by every process)."""
    return recorder().seconds_since_start(time.perf_counter())


def _run_over(at_s: float) -> bool:
    if at_s < ENVIRONMENT.duration_s:
        return False
    stop_molotov()
    return True


async def think(worker: Worker, *, until_s: float | None = None) -> bool:
    """Pause as a person would between calls (never past `until_s`); False once the run is over.

    Under the open model the schedule replaces think time: the next call waits for its slot.
    """
    if not OPEN_MODEL:
        low, high = ENVIRONMENT.think_time_s
        pause = worker.rng.uniform(low, high)
        limit = min(ENVIRONMENT.duration_s, math.inf if until_s is None else until_s)
        pause = min(pause, limit - now_s())
        if pause > 0:  # no think time, no pause: a sleep(0) would cost a loop round per call
            await asyncio.sleep(pause)
    return not _run_over(now_s())


async def _intended_start(worker: Worker) -> float | None:
    """Wait for this worker's next slot on the fixed schedule and return its intended start.

    As wrk2 does: a call that starts late still counts from its intended start, so the time a
    request spent queued behind a stalled server is not hidden (coordinated omission).
    """
    if worker.next_start is None:
        # Stagger the workers over one interval so that arrivals are evenly spread.
        worker.first_start = time.perf_counter() + worker.rng.uniform(0, ARRIVAL_INTERVAL_S)
        worker.next_start = worker.first_start
    intended = worker.next_start
    worker.next_start += ARRIVAL_INTERVAL_S
    record = recorder()
    # The run ends on the clock, not on the schedule: slots the worker never reached are
    # counted as scheduled but unsent, which shows the shortfall.
    if _run_over(record.seconds_since_start(max(intended, time.perf_counter()))):
        return None
    delay = intended - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    return intended


# -- Calls --------------------------------------------------------------------------------------
async def reserve(worker: Worker, authorization: Authorization, units: int) -> Outcome | None:
    """Reserve units; remember them as this worker's booking when it succeeds."""
    outcome = await _call(worker, "reserve", authorization, units)
    if outcome is not None and outcome.ok:
        bookings = worker.bookings
        bookings[authorization.id] = bookings.get(authorization.id, 0) + units
    return outcome


async def release(worker: Worker, authorization: Authorization, units: int) -> Outcome | None:
    """Release units."""
    outcome = await _call(worker, "release", authorization, units)
    _settle(worker, authorization, units, outcome)
    return outcome


async def consume(worker: Worker, authorization: Authorization, units: int) -> Outcome | None:
    """Consume scheduled units."""
    outcome = await _call(worker, "consume", authorization, units)
    _settle(worker, authorization, units, outcome)
    return outcome


def held_units(worker: Worker, authorization: Authorization) -> int:
    """Return the units this worker reserved on an authorization and still holds."""
    return worker.bookings.get(authorization.id, 0)


def _settle(
    worker: Worker,
    authorization: Authorization,
    units: int,
    outcome: Outcome | None,
) -> None:
    if outcome is None or not outcome.ok:
        return
    bookings = worker.bookings
    left = bookings.get(authorization.id, 0) - units
    if left > 0:
        bookings[authorization.id] = left
    else:
        bookings.pop(authorization.id, None)


async def _call(
    worker: Worker,
    operation: str,
    authorization: Authorization,
    units: int,
    *,
    path: bytes | None = None,
    body: bytes | None = None,
    policy: RetryPolicy | None = None,
) -> Outcome | None:
    """Send one logical operation, retried under one key, and record every attempt.

    The path and body default to the authorization's unit change (`operation` on it, with
    `units`). None when the run is over before it starts; once started, an operation is seen
    through (within its deadline) even past the end of the run, so that its outcome is known.
    """
    record = recorder()
    if OPEN_MODEL:
        intended = await _intended_start(worker)
        if intended is None:
            return None
    else:
        intended = None
        if _run_over(record.seconds_since_start(time.perf_counter())):
            return None
    key = ENVIRONMENT.id_prefix + new_idempotency_key(_KEY_RANDOM)
    record.in_flight += 1  # the live feed's in-flight gauge: retries and back-off included
    try:
        attempts = await send_operation(
            http_client(),
            path or _operation_path(authorization.id, operation),
            body=_units_body(units) if body is None else body,
            headers=_token_headers(token_for(authorization, worker)),
            idempotency_key=key,
            next_request_id=record.next_request_id,
            rng=worker.rng,
            first_start=intended,
            **({} if policy is None else {"policy": policy}),
        )
    finally:
        record.in_flight -= 1
    worker_name = f"{ENVIRONMENT.id_prefix}{record.pid}-{worker.worker_id}"
    for attempt in attempts:
        record.record(
            Record(
                request_id=attempt.request_id,
                operation=operation,
                authorization_id=authorization.id,
                status=attempt.status,
                code=attempt.code,
                latency_ms=(attempt.ended - attempt.started) * 1000,
                started_s=record.seconds_since_start(attempt.started),
                transaction_id=attempt.transaction_id,
                kind=operation,
                units=units,
                idempotency_key=key,
                attempt=attempt.attempt,
                worker=worker_name,
                outcome=attempt.outcome,
            )
        )
    last = attempts[-1]
    return Outcome(last.status, last.code, last.transaction_id, last.outcome, key, last.body)


async def book_session(
    worker: Worker,
    authorization: Authorization,
    starts_at: str,
    duration_minutes: int,
    units: int,
) -> Outcome | None:
    """Book a therapy session; remember it as this user's when it succeeds."""
    body = json.dumps(
        {
            "authorization_id": authorization.id,
            "starts_at": starts_at,
            "duration_minutes": duration_minutes,
            "units": units,
        }
    ).encode()
    path = f"{_BASE_PATH}/api/sessions".encode()
    outcome = await _call(worker, "book", authorization, units, path=path, body=body)
    if outcome is not None and outcome.ok:
        worker.sessions.append((outcome.transaction_id, authorization))
    return outcome


async def settle_session(
    worker: Worker, operation: str, session_id: str, authorization: Authorization
) -> Outcome | None:
    """Cancel or complete one of this user's sessions (``operation``: cancel or complete)."""
    path = f"{_BASE_PATH}/api/sessions/{session_id}/{operation}".encode()
    units = ENVIRONMENT.units_per_request
    return await _call(worker, operation, authorization, units, path=path, body=b"")


# A list-append transaction is sent once: the service does not honour Idempotency-Key there,
# so an answer that is lost leaves the transaction unknown (info), and a second send would
# append the same values again. The key still names the operation in the records.
LIST_POLICY = RetryPolicy(max_attempts=1)


def process_slot() -> int:
    """Return this process's slot (0, 1, ...): unique within a shard's run."""
    return recorder().process_slot


async def list_transaction(
    worker: Worker, authorization: Authorization, ops: list[list[object]]
) -> Outcome | None:
    """Run micro-operations in one transaction of the authorization's organization.

    The ops sent and, on an ok answer, the completed ops (reads filled in) go to this
    process's txns-<pid>.jsonl under the operation's key; results/ puts them in the history.
    """
    path = f"{_BASE_PATH}/api/lists/transactions".encode()
    body = json.dumps({"ops": ops}, separators=(",", ":")).encode()
    outcome = await _call(
        worker, "txn", authorization, len(ops), path=path, body=body, policy=LIST_POLICY
    )
    if outcome is None:
        return None
    if _PROCESS.transactions is None:
        _PROCESS.transactions = TransactionLog(ENVIRONMENT.records_dir, recorder().pid)
    _PROCESS.transactions.write(outcome.key, ops, outcome.body if outcome.ok else None)
    return outcome


# The target URL's own path, if any (a service behind a path prefix), before /api/...
_BASE_PATH = urlsplit(ENVIRONMENT.target_url).path.rstrip("/")


@functools.cache
def _operation_path(authorization_id: str, operation: str) -> bytes:
    # Encoded once per authorization and operation, not per request.
    return f"{_BASE_PATH}/api/authorizations/{authorization_id}/{operation}".encode()


@functools.cache
def _token_headers(token: str) -> tuple[tuple[bytes, bytes], ...]:
    # The same few tokens on every request: their header lines are encoded once.
    return ((b"Authorization", f"Bearer {token}".encode()), (b"Content-Type", b"application/json"))


@functools.cache
def _units_body(units: int) -> bytes:
    # Encoded once per size: a JSON payload object per request costs the generator CPU.
    return json.dumps({"units": units}).encode()
