"""List-append transactions against a real Hypercorn server and PostgreSQL, checked as Elle does.

The answers and the refusals of POST /api/lists/transactions, under both shapes; then many
concurrent read-read-append transactions on a few keys, written down as a Jepsen history and
given to the checker: valid at SERIALIZABLE, a G2-item (write skew) at REPEATABLE READ.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from typing import Any

import httpx
import psycopg
import pytest
from support_service import (
    Clinic,
    ServiceOptions,
    Services,
    assert_problem,
    bearer,
    client,
    mint_token,
)

from anomalies import check_history, read_events
from pipeline.service_process import ServiceProcess

PATH = "/api/lists/transactions"
SKEW_KEYS = 4
SKEW_TRANSACTIONS = 240
SKEW_CONCURRENCY = 24
# Each test appends values of its own: the module's lists keep earlier tests' appends.
_VALUES = itertools.count(1)


def stored_lists(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT organization_id, key, value FROM append_lists ORDER BY organization_id, key"
        ).fetchall()


async def transact(http: httpx.AsyncClient, token: str, ops: list[list[Any]]) -> httpx.Response:
    return await http.post(PATH, json={"ops": ops}, headers=bearer(token))


@pytest.mark.parametrize("shape", ["interactive", "statement"])
async def test_appends_and_reads_run_in_order_in_one_transaction(
    serve: Services, clinic: Clinic, shape: str
) -> None:
    token, stranger = mint_token(clinic.home), mint_token(clinic.other)
    key = f"k-{shape}"
    first, second = next(_VALUES), next(_VALUES)
    service = serve(ServiceOptions(env={"TARGET_TRANSACTION_SHAPE": shape}))
    async with client(service.base_url) as http:
        answer = await transact(
            http,
            token,
            [["r", key, None], ["append", key, first], ["r", key, None], ["append", 7, second]],
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["ops"] == [
            ["r", key, []],
            ["append", key, first],
            ["r", key, [first]],
            ["append", 7, second],
        ]
        assert len(body["transaction_id"]) == 36
        again = await transact(
            http, token, [["append", key, second], ["r", key, None], ["r", "7", None]]
        )
        assert again.json()["ops"] == [
            ["append", key, second],
            ["r", key, [first, second]],
            ["r", "7", []],  # the string "7" is not the integer 7
        ]
        # Another organization's lists are its own.
        foreign = await transact(http, stranger, [["r", key, None]])
        assert foreign.json()["ops"] == [["r", key, []]]


@pytest.mark.parametrize(
    "body",
    [
        {"ops": []},
        {"ops": [["append", "k", 1]] * 9},
        {"ops": [["append", "k", 1.0]]},
        {"ops": [["append", "k", True]]},
        {"ops": [["append", True, 1]]},
        {"ops": [["append", "", 1]]},
        {"ops": [["append", "k" * 65, 1]]},
        {"ops": [["append", "k", 1, 2]]},
        {"ops": [["r", "k", [1]]]},
        {"ops": [["w", "k", 1]]},
        {"ops": [["append", "k", 2**63]]},
        {"ops": [["append", "k", 1]], "extra": 1},
        {"ops": "append"},
        [["append", "k", 1]],
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    service: ServiceProcess, clinic: Clinic, body: Any
) -> None:
    before = stored_lists(clinic.url)
    async with client(service.base_url) as http:
        answer = await http.post(PATH, json=body, headers=bearer(mint_token(clinic.home)))
        assert_problem(answer, 422, "invalid_request")
        unauthenticated = await http.post(PATH, json={"ops": [["append", "k", 1]]})
        assert_problem(unauthenticated, 401, "unauthorized")
    assert stored_lists(clinic.url) == before


async def write_skew_history(base_url: str, token: str, prefix: str) -> list[str]:
    """Run many read-read-append transactions on a few keys at once; return their history.

    Each transaction reads two keys and appends to one of them: at snapshot isolation two
    of them that read the same pair and append to different keys are a write skew.
    """
    rng = random.Random(18)
    keys = [f"{prefix}{n}" for n in range(SKEW_KEYS)]
    plans = []
    for _ in range(SKEW_TRANSACTIONS):
        a, b = rng.sample(keys, 2)
        plans.append(
            [["r", a, None], ["r", b, None], ["append", rng.choice((a, b)), next(_VALUES)]]
        )
    events: list[dict[str, Any]] = []
    started = time.perf_counter_ns()
    queue: asyncio.Queue[list[list[Any]]] = asyncio.Queue()
    for plan in plans:
        queue.put_nowait(plan)

    async def user(process: int, http: httpx.AsyncClient) -> None:
        while not queue.empty():
            ops = queue.get_nowait()
            events.append(txn_event(process, "invoke", ops, started))
            answer = await transact(http, token, ops)
            if answer.status_code == 200:
                events.append(txn_event(process, "ok", answer.json()["ops"], started))
            else:
                assert_problem(answer, 409, "serialization_conflict")
                events.append(txn_event(process, "fail", ops, started))

    async with client(base_url) as http:
        await asyncio.gather(*(user(process, http) for process in range(SKEW_CONCURRENCY)))
    return [json.dumps(event) for event in events]


def txn_event(process: int, kind: str, ops: list[list[Any]], started: int) -> dict[str, Any]:
    return {
        "type": kind,
        "f": "txn",
        "process": process,
        "time": time.perf_counter_ns() - started,
        "value": ops,
    }


async def test_serializable_gives_a_history_the_checker_finds_valid(
    serve: Services, clinic: Clinic
) -> None:
    service = serve(ServiceOptions(workers=2, env={"TARGET_ISOLATION": "serializable"}))
    lines = await write_skew_history(service.base_url, mint_token(clinic.home), "ser-")
    result = check_history(read_events(lines), require="serializable")
    assert result.transactions["ok"] > SKEW_TRANSACTIONS // 2
    assert result.valid, result.summary()


async def test_repeatable_read_lets_a_write_skew_through(serve: Services, clinic: Clinic) -> None:
    service = serve(ServiceOptions(workers=2, env={"TARGET_ISOLATION": "repeatable_read"}))
    lines = await write_skew_history(service.base_url, mint_token(clinic.home), "rr-")
    result = check_history(read_events(lines), require="serializable")
    assert not result.valid
    assert "G2-item" in result.forbidden_kinds, result.summary()
    # Snapshot isolation's own anomalies are absent: PostgreSQL's REPEATABLE READ is SI.
    assert not {"G0", "G1a", "G1b", "G1c", "G-single", "lost-update"} & set(result.anomaly_counts)
    assert "snapshot-isolation" in result.consistent_with
