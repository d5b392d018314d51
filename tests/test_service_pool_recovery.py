"""After PostgreSQL drops every connection (as a restart does), the service replaces its pool.

A dead pooled connection fails the request that finds it: 503 `unavailable`, which the
scenarios' client retries under its Idempotency-Key. Its idle siblings died with it, so the
service drops them all at once; otherwise each would fail one more request whenever it was
next used, long after the database came back (the faults profile saw such 503s outside the
fault's window and judged the run NO-GO, rightly).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
from support_service import SeededStack, seeded_stack

from local_postgres import ClusterInfo
from target.database import APPLICATION_NAME

WARM_UP_CALLS = 60  # concurrent calls, so that the pool opens several connections
CALLS_AFTER = 20


@pytest.fixture(scope="module", name="stack")
def _stack(
    pg_cluster: ClusterInfo, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SeededStack]:
    with seeded_stack(
        pg_cluster, migrated_template, tmp_path_factory.mktemp("pool"), background=0
    ) as stack:
        yield stack


def service_connections(database_url: str) -> list[int]:
    """Return the pids of the service's connections to its database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database()",
            (APPLICATION_NAME,),
        ).fetchall()
    return [pid for (pid,) in rows]


def call(client: httpx.Client, stack: SeededStack, index: int, *, change: bool) -> int:
    """Read an authorization (or reserve a unit on it); return the status."""
    pool = stack.fixtures["pools"]["high_throughput"]
    entry = pool[index % len(pool)]
    token = next(
        p["token"]
        for p in stack.fixtures["practitioners"]
        if p["organization_id"] == entry["organization_id"]
    )
    path = f"/api/authorizations/{entry['id']}"
    headers = {"Authorization": f"Bearer {token}"}
    if change:
        response = client.post(f"{path}/reserve", json={"units": 1}, headers=headers)
    else:
        response = client.get(path, headers=headers)
    if response.status_code != 200:
        assert json.loads(response.text)["code"] == "unavailable", response.text
    return response.status_code


def test_one_dead_connection_replaces_the_whole_pool(stack: SeededStack, tmp_path: Path) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        with ThreadPoolExecutor(max_workers=WARM_UP_CALLS) as threads:
            # Reads: concurrent reserves could meet serialization conflicts, beside the point.
            calls = threads.map(
                lambda n: call(client, stack, n, change=False), range(WARM_UP_CALLS)
            )
            assert set(calls) == {200}
        opened = service_connections(stack.database_url)
        # With one connection the test could not tell one 503 per dead connection from one.
        assert len(opened) >= 2, opened
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            for pid in opened:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        statuses = [call(client, stack, n, change=True) for n in range(CALLS_AFTER)]
    # The first call meets a dead connection; every later one a fresh pool.
    assert statuses.count(503) <= 1, (statuses, len(opened))
    assert statuses[1:] == [200] * (CALLS_AFTER - 1), statuses
