"""The DB relay against the test session's own PostgreSQL: the latency it adds, and its faults.

Round trips are `SELECT 1` on autocommit psycopg connections, direct and through relays, sampled
in turn so that whatever else the machine is doing weighs on every column alike.
"""

from __future__ import annotations

import hashlib
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import psycopg
import pytest

from faults.relay import DbRelay, RelayError, Upstream, upstream_of, url_with_address
from local_postgres import ClusterInfo
from local_postgres.cluster import url_for

SAMPLES = 250
WARM_UP = 20
ASKED_RTT_MS = (2.0, 5.0)
# ±10 % of the asked figure, but never tighter than 0.1 ms: a timer wakes the relay some
# 0.05 ms late with a spread of as much, per direction, and the medians of two columns
# sampled on a busy two-core machine move by a few hundredths of a millisecond themselves.
RELATIVE_TOLERANCE = 0.10
ABSOLUTE_TOLERANCE_MS = 0.1
STALL_CHECK_S = 0.6  # a stalled query must not have finished by then


@pytest.fixture(name="admin_url")
def _admin_url(pg_cluster: ClusterInfo) -> str:
    return url_for(pg_cluster.port, "postgres")


@pytest.fixture(name="relay")
def _relay(admin_url: str) -> Iterator[DbRelay]:
    with DbRelay.for_url(admin_url) as relay:
        yield relay


def median_round_trips_ms(urls: dict[str, str]) -> dict[str, float]:
    """Return each URL's median `SELECT 1` round trip, the URLs sampled in turn."""
    connections = {name: psycopg.connect(url, autocommit=True) for name, url in urls.items()}
    samples: dict[str, list[float]] = {name: [] for name in urls}
    try:
        for i in range(WARM_UP + SAMPLES):
            for name, conn in connections.items():
                started = time.perf_counter()
                conn.execute("SELECT 1").fetchone()
                if i >= WARM_UP:
                    samples[name].append((time.perf_counter() - started) * 1000)
    finally:
        for conn in connections.values():
            conn.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def test_the_relay_adds_the_round_trip_it_is_asked_for(admin_url: str) -> None:
    with (
        DbRelay.for_url(admin_url) as plain,
        DbRelay.for_url(admin_url, added_rtt_ms=ASKED_RTT_MS[0]) as slower,
        DbRelay.for_url(admin_url, added_rtt_ms=ASKED_RTT_MS[1]) as slowest,
    ):
        medians = median_round_trips_ms({
            "direct": admin_url,
            "relay 0 ms": plain.url_for(admin_url),
            "relay 2 ms": slower.url_for(admin_url),
            "relay 5 ms": slowest.url_for(admin_url),
        })  # fmt: skip
    # The relay's own hop (two more socket passes each way) is tens of microseconds.
    assert medians["relay 0 ms"] - medians["direct"] < 1.0, medians
    for asked in ASKED_RTT_MS:
        extra = medians[f"relay {asked:g} ms"] - medians["relay 0 ms"]
        tolerance = max(RELATIVE_TOLERANCE * asked, ABSOLUTE_TOLERANCE_MS)
        assert abs(extra - asked) <= tolerance, f"asked {asked} ms, added {extra:.3f}: {medians}"


def test_changing_the_latency_takes_effect_at_once(relay: DbRelay, admin_url: str) -> None:
    url = relay.url_for(admin_url)
    before = median_round_trips_ms({"relay": url})["relay"]
    relay.set_added_rtt_ms(3.0)
    after = median_round_trips_ms({"relay": url})["relay"]
    assert relay.added_rtt_ms == 3.0
    assert relay.stats().added_rtt_ms == 3.0
    assert abs(after - before - 3.0) <= 0.3, (before, after)


def test_a_partition_stalls_queries_and_new_connections_until_healed(
    relay: DbRelay, admin_url: str
) -> None:
    url = relay.url_for(admin_url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        relay.partition()
        answers: list[object] = []
        query = threading.Thread(target=lambda: answers.append(conn.execute("SELECT 2").fetchone()))
        connecting = threading.Thread(target=lambda: answers.append(_connect_and_ask(url)))
        query.start()
        connecting.start()
        time.sleep(STALL_CHECK_S)
        assert answers == []  # neither an answer nor an error: the link just went quiet
        stats = relay.stats()
        assert stats.partitioned
        assert stats.bytes_held > 0  # the query's bytes are held, not dropped
        relay.heal()
        query.join(5)
        connecting.join(5)
        assert sorted(answers, key=str) == [(2,), (3,)]
        assert not relay.stats().partitioned


def _connect_and_ask(url: str) -> object:
    with psycopg.connect(url, connect_timeout=10) as conn:
        return conn.execute("SELECT 3").fetchone()


def test_a_timed_partition_heals_by_itself(relay: DbRelay, admin_url: str) -> None:
    with psycopg.connect(relay.url_for(admin_url), autocommit=True) as conn:
        relay.partition(0.5)
        started = time.monotonic()
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert time.monotonic() - started >= 0.45


def test_a_partition_with_reset_cuts_every_connection(relay: DbRelay, admin_url: str) -> None:
    url = relay.url_for(admin_url)
    conn = psycopg.connect(url, autocommit=True)
    try:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        relay.partition(reset=True)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()  # refused while cut
    finally:
        conn.close()
    assert relay.stats().connections_reset == 1
    relay.heal()
    assert _connect_and_ask(url) == (3,)


def test_large_results_and_parameters_arrive_intact_both_ways(
    relay: DbRelay, admin_url: str
) -> None:
    relay.set_added_rtt_ms(1.0)
    payload = hashlib.sha256(b"seed").hexdigest() * 40_000  # 2.56 MB to the server
    with psycopg.connect(relay.url_for(admin_url), autocommit=True) as conn:
        (text,) = conn.execute("SELECT repeat('x', 1000000)").fetchone()  # type: ignore[misc]
        assert text == "x" * 1_000_000
        (digest,) = conn.execute("SELECT md5(%s)", (payload,)).fetchone()  # type: ignore[misc]
        assert digest == hashlib.md5(payload.encode()).hexdigest()
        # Numbered lines, with the latency changed meanwhile: any reordering or loss shows.
        flipping = threading.Event()
        flipper = threading.Thread(target=_flip_latency, args=(relay, flipping))
        flipper.start()
        try:
            (lines,) = conn.execute(  # type: ignore[misc]
                "SELECT string_agg(i::text, ',' ORDER BY i) FROM generate_series(1, 300000) i"
            ).fetchone()
        finally:
            flipping.set()
            flipper.join()
        assert lines == ",".join(str(i) for i in range(1, 300_001))
    stats = relay.stats()
    assert stats.bytes_to_upstream > len(payload)
    assert stats.bytes_to_client > 1_000_000 + len(lines)


def test_the_delays_of_consecutive_chunks_do_not_add_up(relay: DbRelay, admin_url: str) -> None:
    with psycopg.connect(relay.url_for(admin_url), autocommit=True) as conn:
        tries: dict[float, list[float]] = {0.0: [], 5.0: []}
        # Interleaved, and the fastest of five: a busy machine slows some tries, never speeds one.
        for _ in range(5):
            for rtt_ms in (0.0, 5.0):
                relay.set_added_rtt_ms(rtt_ms)
                conn.execute("SELECT 1")
                before = relay.stats().chunks_received
                started = time.perf_counter()
                conn.execute("SELECT repeat('x', 4000000)").fetchone()
                tries[rtt_ms].append((time.perf_counter() - started) * 1000)
                chunks = relay.stats().chunks_received - before
    timings = {rtt_ms: min(times) for rtt_ms, times in tries.items()}
    # 4 MB come in many chunks; a link with latency delays them all by the same 2.5 ms, a
    # queue of sleeps would delay them by 2.5 ms each, one after the other.
    assert chunks >= 10
    assert timings[5.0] - timings[0.0] < 5.0 + 10.0, (timings, chunks)


def _flip_latency(relay: DbRelay, done: threading.Event) -> None:
    while not done.is_set():
        for rtt_ms in (5.0, 0.0, 2.0):
            relay.set_added_rtt_ms(rtt_ms)
            time.sleep(0.002)


def test_many_concurrent_connections_each_get_their_own_answers(
    relay: DbRelay, admin_url: str
) -> None:
    relay.set_added_rtt_ms(1.0)
    url = relay.url_for(admin_url)

    def ask(number: int) -> list[int]:
        with psycopg.connect(url, autocommit=True) as conn:
            return [
                conn.execute("SELECT %s::int * 2", (number + i,)).fetchone()[0] for i in range(5)
            ]  # type: ignore[index]

    with ThreadPoolExecutor(max_workers=60) as pool:
        answers = list(pool.map(ask, range(0, 6000, 100)))
    assert answers == [[2 * (n + i) for i in range(5)] for n in range(0, 6000, 100)]
    stats = relay.stats()
    assert stats.connections_accepted == 60
    deadline = time.monotonic() + 5
    while relay.stats().connections_open and time.monotonic() < deadline:
        time.sleep(0.05)
    assert relay.stats().connections_open == 0


def test_stop_leaves_no_process_behind_and_closes_its_connections(admin_url: str) -> None:
    relay = DbRelay.for_url(admin_url).start()
    pid = relay.pid
    assert pid is not None
    assert psutil.Process(pid).is_running()
    conn = psycopg.connect(relay.url_for(admin_url), autocommit=True)
    relay.stop()
    assert not psutil.pid_exists(pid)
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    with pytest.raises(RelayError, match="not running"):
        relay.stats()


def test_the_relay_reaches_postgresql_over_its_unix_socket(pg_cluster: ClusterInfo) -> None:
    socket_url = f"postgresql://postgres@/postgres?host={pg_cluster.workdir}&port={pg_cluster.port}"
    with DbRelay.for_url(socket_url) as relay:
        assert relay.upstream.unix_path == f"{pg_cluster.workdir}/.s.PGSQL.{pg_cluster.port}"
        with psycopg.connect(relay.url_for(socket_url)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert conn.info.host == "127.0.0.1"  # to the relay over TCP, not to the socket


# -- validation and URLs ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_negative_or_endless_latency_is_refused_in_one_line(bad: float) -> None:
    with pytest.raises(ValueError, match="added_rtt_ms must be a finite number ≥ 0") as raised:
        DbRelay("127.0.0.1", 5432, added_rtt_ms=bad)
    assert "\n" not in str(raised.value)


def test_set_added_rtt_refuses_a_negative_value_before_asking_the_relay(relay: DbRelay) -> None:
    with pytest.raises(ValueError, match="≥ 0"):
        relay.set_added_rtt_ms(-0.5)
    assert relay.stats().added_rtt_ms == 0.0


def test_url_for_swaps_only_the_server_and_keeps_the_rest() -> None:
    url = "postgresql://app:s%40cret@db.example:6432/clinic?sslmode=disable&options=-c%20x%3Dy"
    assert url_with_address(url, "127.0.0.1", 40001) == (
        "postgresql://app:s%40cret@127.0.0.1:40001/clinic?sslmode=disable&options=-c%20x%3Dy"
    )
    # A server named in the query would override the relay's address: it goes.
    socket_url = "postgresql://postgres@/clinic?host=/run/pg&port=5433&application_name=x"
    assert url_with_address(socket_url, "127.0.0.1", 40001) == (
        "postgresql://postgres@127.0.0.1:40001/clinic?application_name=x"
    )


@pytest.mark.parametrize(
    ("url", "upstream"),
    [
        ("postgresql://postgres@127.0.0.1:5544/clinic", Upstream("127.0.0.1", 5544)),
        ("postgres://u@db/clinic", Upstream("db", 5432)),
        ("postgresql://u@[::1]:5433/clinic", Upstream("::1", 5433)),
        ("postgresql://u@%2Frun%2Fpg:5433/clinic", Upstream("/run/pg", 5433)),
        ("postgresql:///clinic?host=/run/pg&port=5434", Upstream("/run/pg", 5434)),
    ],
)
def test_for_url_finds_the_server_a_libpq_url_names(url: str, upstream: Upstream) -> None:
    assert upstream_of(url) == upstream


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "not a libpq URL"),
        ("postgresql://u@h1:5432,h2:5432/db", "several hosts"),
        ("postgresql://u:secret@/db", "names no host"),
    ],
)
def test_for_url_refuses_what_it_cannot_relay_without_showing_a_password(
    url: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        upstream_of(url)
    assert "secret" not in str(raised.value)
