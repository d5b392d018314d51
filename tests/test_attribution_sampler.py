"""The attribution sampler and the measurement hygiene against the project's real cluster.

Lock waits and a checkpoint are provoked for real and must show in the samples and in the
attribution's words; autovacuum is paused and restored on real tables; a serialization
failure must not put its statement in the server's log.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from local_postgres import ClusterInfo
from reporting.attribution import explain_window
from watch.attribution_sampler import AttributionSampler
from watch.quiet_database import (
    autovacuum_paused,
    autovacuum_setting,
    prepare_measured_window,
)

SETTLE_S = 0.5  # long enough for a few samples at 100 ms, whatever the machine's load
QUIET_PROBES = 10  # 50 ms apart: half a second without the WAL writer syncing


def _wait_until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_cluster_logs_checkpoints_and_lock_waits_not_failed_statements(
    pg_cluster: ClusterInfo,
) -> None:
    with psycopg.connect(pg_cluster.url) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("log_min_error_statement", "log_checkpoints", "log_lock_waits")
        }
    assert settings == {
        "log_min_error_statement": "panic",
        "log_checkpoints": "on",
        "log_lock_waits": "on",
    }


def test_a_serialization_failure_leaves_its_error_but_not_its_statement_in_the_log(
    pg_cluster: ClusterInfo, database_url: str
) -> None:
    marker = f"marker_{uuid.uuid4().hex}"
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute(f"CREATE TABLE {marker} (n int)")
    first = psycopg.connect(database_url)
    second = psycopg.connect(database_url)
    try:
        for conn in (first, second):
            conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            conn.execute(f"SELECT count(*) FROM {marker}")
        first.execute(f"INSERT INTO {marker} VALUES (1)")
        second.execute(f"INSERT INTO {marker} VALUES (2)")
        first.commit()
        with pytest.raises(psycopg.errors.SerializationFailure):
            _insert_and_commit(second, marker)
    finally:
        first.close()
        second.close()
    log = _server_log_once_it_holds(Path(pg_cluster.workdir) / "server.log", "could not serialize")
    assert "could not serialize access" in log
    assert marker not in log


def _server_log_once_it_holds(path: Path, text: str, timeout_s: float = 5.0) -> str:
    """Read the server's log once ``text`` reached it: the server writes it after replying."""
    deadline = time.monotonic() + timeout_s
    log = path.read_text(errors="replace")
    while text not in log and time.monotonic() < deadline:
        time.sleep(0.05)
        log = path.read_text(errors="replace")
    return log


def _insert_and_commit(conn: psycopg.Connection, table: str) -> None:
    """Write after the other serializable transaction committed: PostgreSQL refuses (40001)."""
    conn.execute(f"INSERT INTO {table} VALUES (3)")
    conn.commit()


def test_sampler_sees_backends_waiting_on_a_lock_and_a_checkpoint(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE held (id int PRIMARY KEY, n int)")
        setup.execute("INSERT INTO held VALUES (1, 0)")
    holder = psycopg.connect(database_url)
    holder.execute("UPDATE held SET n = n + 1 WHERE id = 1")  # holds the row lock

    def blocked_update() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE held SET n = n + 1 WHERE id = 1")

    waiters = [threading.Thread(target=blocked_update) for _ in range(3)]
    with AttributionSampler(database_url) as sampler:
        for waiter in waiters:
            waiter.start()
        # The first waiter holds the tuple lock and waits for the holder's transaction; the
        # others queue for the tuple lock.
        _wait_until(
            lambda: any(
                s.get("pg", {}).get("waits", {}) == {"Lock:transactionid": 1, "Lock:tuple": 2}
                for s in sampler.samples
            )
        )
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE dirty AS SELECT generate_series(1, 20000) AS n")
            conn.execute("CHECKPOINT")
        time.sleep(SETTLE_S)
        holder.commit()
        for waiter in waiters:
            waiter.join()
    holder.close()
    document = sampler.document()
    assert not document["errors"]
    first, last = document["samples"][0], document["samples"][-1]
    assert last["pg"]["bgwriter"]["checkpoints"] > first["pg"]["bgwriter"]["checkpoints"]
    assert {"busy", "iowait", "steal"} <= set(last["host"])
    causes = explain_window(document, first["t"], last["t"] + 1)
    assert "2 backends waiting on Lock:tuple" in causes
    assert any(cause.startswith("checkpoint in progress") for cause in causes)


def _settle_the_cluster(database_url: str) -> None:
    """Flush what earlier tests wrote and wait until the WAL writer has had nothing to sync
    for a few probes in a row: the window after it is quiet, as the test means it to be."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        quiet_probes = 0

        def wal_writer_quiet() -> bool:
            nonlocal quiet_probes
            (wait,) = conn.execute(
                "SELECT coalesce(wait_event_type || ':' || wait_event, '') "
                "FROM pg_stat_activity WHERE backend_type = 'walwriter'"
            ).fetchone() or ("",)
            quiet_probes = 0 if wait.startswith("IO:") else quiet_probes + 1
            return quiet_probes >= QUIET_PROBES

        _wait_until(wal_writer_quiet, timeout_s=30.0)


def test_a_quiet_window_says_nothing_outside_the_service_coincided(database_url: str) -> None:
    # On a shared cluster the WAL writer may still be syncing what an earlier test wrote: the
    # explanation would then rightly name it. The window is made quiet first.
    _settle_the_cluster(database_url)
    with AttributionSampler(database_url) as sampler:
        time.sleep(SETTLE_S)
    document = sampler.document()
    (cause,) = explain_window(
        {**document, "samples": [{**s, "host": {}} for s in document["samples"]]},
        document["samples"][0]["t"],
        document["samples"][-1]["t"] + 1,
    )
    assert cause.startswith("nothing outside the service coincided")


def test_maintenance_runs_before_the_window_and_autovacuum_is_paused_then_restored(
    database_url: str,
) -> None:
    done = prepare_measured_window(database_url)
    assert [step["step"] for step in done["steps"]] == ["VACUUM (ANALYZE)", "CHECKPOINT"]
    assert all(step["error"] is None for step in done["steps"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE unit_transactions SET (autovacuum_enabled = true)")
        analyzed = conn.execute(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE relname = 'authorizations'"
        ).fetchone()[0]
    assert analyzed
    with autovacuum_paused(database_url) as paused:
        assert paused["error"] is None
        assert autovacuum_setting(database_url, "authorizations") == "off"
        assert autovacuum_setting(database_url, "unit_transactions") == "off"
    assert autovacuum_setting(database_url, "authorizations") is None
    assert autovacuum_setting(database_url, "unit_transactions") == "true"
