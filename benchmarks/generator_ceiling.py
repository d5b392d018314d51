"""Measure the load generator's own ceiling: requests per second per CPU-second (per core).

The clients below run against the same trivial endpoint on 127.0.0.1, 50 connections each, one
at a time, repeated and interleaved (the machine is shared and noisy), medians reported:

- molotov: Molotov through this project's scenario plumbing (load_runner + the
  high_throughput scenario with no think time: timing, recording, files, self-watch), 1 process;
- molotov-bare: Molotov with a one-line scenario (POST, read the body, nothing recorded), to
  show what the plumbing adds;
- aiohttp: a bare aiohttp closed loop (50 tasks, one session, timing each call into a list);
- the HTTP clients side by side, each in the same closed loop under uvloop, sending the
  scenarios' request (four headers, two of them new on every request, a timeout per request):
  - lean: the scenarios' own client (molotov_scenarios.http_client);
  - aiohttp-tuned: aiohttp with no trace hooks, no connection limit, DNS cached for good, no
    cookie jar, no decompression, no default headers;
  - httpcore and httpx (AsyncClient, HTTP/1.1 only), aiosonic, niquests (HTTP/1.1 only);
  each row runs if its package is installed; the maintained ones are not the project's
  dependencies: `pip install httpx aiosonic niquests` (httpx brings httpcore; niquests
  brings urllib3-future, which installs itself as `urllib3` where no urllib3 is installed);
- wrk: wrk 4 with a Lua script sending the same POST (if `wrk` is installed).

The endpoint is a canned-response asyncio server in its own process that answers every
request with the same small JSON document: it does far less work per request than the
clients, and the figure that matters is normalised by the client's own CPU time anyway
(requests / CPU-seconds of the client's processes), so it holds even when the two compete
for the machine's cores.

    python benchmarks/generator_ceiling.py [--seconds 10] [--repeats 3] [--json PATH]
        [--clients lean,aiohttp-tuned,aiosonic,httpx,httpcore,niquests,aiohttp]

A script, not a test: it prints figures and passes or fails on nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from load_runner.profiles import ScenarioConfig, Thresholds
from load_runner.runner import MOLOTOV_MAIN, SCENARIO_DIR, execute

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = PROJECT_ROOT / ".loadtest" / "generator_ceiling.json"
CONNECTIONS = 50
RESPONSE_BODY = json.dumps({"transaction_id": str(uuid.UUID(int=1, version=4))}).encode()
UNITS_BODY = b'{"units": 1}'
WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = '{"units": 1}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer benchmark"
"""


@dataclass(frozen=True)
class Measurement:
    client: str
    requests: int
    seconds: float
    cpu_seconds: float
    server_cpu_seconds: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def requests_per_cpu_s(self) -> float:
        return self.requests / self.cpu_seconds if self.cpu_seconds else float("nan")


# -- The trivial endpoint ---------------------------------------------------------------------
class CannedResponse(asyncio.Protocol):
    """Answer every HTTP/1.1 request on a keep-alive connection with the same 200 JSON body."""

    RESPONSE = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(RESPONSE_BODY)}\r\n\r\n".encode()
        + RESPONSE_BODY
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            match = re.search(rb"content-length:\s*(\d+)", head)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self.transport.write(self.RESPONSE)  # type: ignore[attr-defined]


async def serve_canned(listener: socket.socket) -> None:
    server = await asyncio.get_running_loop().create_server(CannedResponse, sock=listener)
    async with server:
        await server.serve_forever()


def start_endpoint() -> tuple[subprocess.Popen[bytes], str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    code = (
        "import asyncio, socket, sys; sys.path.insert(0, sys.argv[2]);"
        "from generator_ceiling import serve_canned;"
        "asyncio.run(serve_canned(socket.socket(fileno=int(sys.argv[1]))))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(listener.fileno()), str(Path(__file__).parent)],
        pass_fds=(listener.fileno(),),
    )
    listener.close()
    return process, f"http://127.0.0.1:{port}"


# -- The clients ------------------------------------------------------------------------------
def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_cpu_seconds(server: subprocess.Popen[bytes]) -> float:
    times = psutil.Process(server.pid).cpu_times()
    return times.user + times.system


def write_fixtures(path: Path) -> None:
    organization = str(uuid.uuid4())
    pools = {
        name: [
            {"id": str(uuid.uuid4()), "organization_id": organization, "total_units": 10**6}
            for _ in range(count)
        ]
        for name, count in (("high_contention", 10), ("normal", 20), ("high_throughput", 25))
    }
    document = {
        "schema_version": 1,
        "practitioners": [{"id": "p", "organization_id": organization, "token": "benchmark"}],
        "pools": pools,
    }
    path.write_text(json.dumps(document))


def measure_molotov(url: str, seconds: float, server: subprocess.Popen[bytes]) -> Measurement:
    config = ScenarioConfig(
        scenario="high_throughput",
        profile="benchmark",
        users=CONNECTIONS,
        duration_s=seconds,
        ramp_up_s=0.0,
        think_time_s=(0.0, 0.0),
        processes=1,
        units_per_request=1,
        arrival_rate_rps=None,
        thresholds=Thresholds(),
    )
    with tempfile.TemporaryDirectory(prefix="generator-ceiling-") as folder:
        fixtures = Path(folder) / "fixtures.json"
        write_fixtures(fixtures)
        server_before = server_cpu_seconds(server)
        run = execute(
            config,
            scenario_module=SCENARIO_DIR / "high_throughput.py",
            target_url=url,
            fixtures_path=fixtures,
            out_dir=Path(folder),
            progress=False,
        )
        server_used = server_cpu_seconds(server) - server_before
        if not run.completed:
            raise RuntimeError(f"the Molotov run did not complete: {run.result['run']}")
        # CPU from the first worker's start to the files written (imports and fork excluded,
        # as for the aiohttp client); the whole subprocess tree is in result.json too.
        (summary_path,) = (run.result_dir / "raw").glob("process-*.json")
        summary = json.loads(summary_path.read_text())
    return Measurement(
        client="molotov",
        requests=run.result["totals"]["requests"],
        seconds=run.result["duration_s"],
        cpu_seconds=summary["cpu_seconds"],
        server_cpu_seconds=server_used,
    )


BARE_SCENARIO = textwrap.dedent(
    """
    import json, os, time
    import molotov

    URL = os.environ["CEILING_URL"]
    STATE = {"requests": 0}

    @molotov.global_setup()
    def started(args):
        STATE["cpu"], STATE["wall"] = time.process_time(), time.perf_counter()

    @molotov.scenario(weight=100)
    async def post(session):
        async with session.post(URL, json={"units": 1}) as response:
            await response.read()
        STATE["requests"] += 1

    @molotov.global_teardown()
    def finished():
        with open(os.environ["CEILING_OUT"], "w") as out:
            json.dump({"requests": STATE["requests"],
                       "cpu": time.process_time() - STATE["cpu"],
                       "wall": time.perf_counter() - STATE["wall"]}, out)
    """
)


def measure_molotov_bare(url: str, seconds: float, server: subprocess.Popen[bytes]) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="generator-ceiling-") as folder:
        scenario, out = Path(folder) / "bare.py", Path(folder) / "bare.json"
        scenario.write_text(BARE_SCENARIO)
        env = {
            **os.environ,
            "CEILING_URL": f"{url}/api/authorizations/{uuid.uuid4()}/reserve",
            "CEILING_OUT": str(out),
        }
        server_before = server_cpu_seconds(server)
        command = [sys.executable, "-c", MOLOTOV_MAIN, str(scenario), "-w", str(CONNECTIONS),
                   "-d", str(round(seconds)), "-q"]  # fmt: skip
        subprocess.run(command, env=env, check=True, stdin=subprocess.DEVNULL)
        figures = json.loads(out.read_text())
    return Measurement(
        client="molotov-bare",
        requests=figures["requests"],
        seconds=figures["wall"],
        cpu_seconds=figures["cpu"],
        server_cpu_seconds=server_cpu_seconds(server) - server_before,
    )


AIOHTTP_CLIENT = textwrap.dedent(
    """
    import asyncio, sys, time
    import aiohttp

    async def main(url, seconds, connections):
        latencies = []
        deadline = time.perf_counter() + seconds
        headers = {"Authorization": "Bearer benchmark"}
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def user():
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    async with session.post(url, json={"units": 1}, headers=headers) as response:
                        await response.read()
                    latencies.append((response.status, time.perf_counter() - started))
            began, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(user() for _ in range(connections)))
            print(len(latencies), time.perf_counter() - began, time.process_time() - cpu)

    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
    """
)


def measure_aiohttp(url: str, seconds: float, server: subprocess.Popen[bytes]) -> Measurement:
    target = f"{url}/api/authorizations/{uuid.uuid4()}/reserve"
    return measure_closed_loop("aiohttp", [AIOHTTP_CLIENT, target], seconds, server)


def measure_closed_loop(
    client: str, script_and_args: list[str], seconds: float, server: subprocess.Popen[bytes]
) -> Measurement:
    """Run a closed-loop client script that prints "requests wall-seconds cpu-seconds [errors]"."""
    server_before = server_cpu_seconds(server)
    output = subprocess.run(
        [sys.executable, "-c", *script_and_args, str(seconds), str(CONNECTIONS)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    ).stdout.split()
    if output[3:] and int(output[3]):
        raise RuntimeError(f"{client}: {output[3]} of {output[0]} requests were not answered 200")
    return Measurement(
        client=client,
        requests=int(output[0]),
        seconds=float(output[1]),
        cpu_seconds=float(output[2]),
        server_cpu_seconds=server_cpu_seconds(server) - server_before,
    )


# -- The HTTP clients side by side ---------------------------------------------------------------
# One closed loop for every client, as the scenarios send: under uvloop (Molotov runs with
# --uvloop), 50 tasks, each POSTing the same small JSON body with four headers (two of them,
# the Idempotency-Key and the request id, new on every request) and a timeout of its own,
# reading the whole answer and timing each call into a list. Each client's snippet defines
# `open_client(origin, connections) -> (post, close)`, tuned as its documentation says for
# one origin, no proxy, no cookies, no compression, no limit on the connections.
CLIENT_LOOP = """
import asyncio, inspect, itertools, sys, time
import uvloop

BODY = b'{"units": 1}'
FIXED_BYTES = ((b"Authorization", b"Bearer benchmark"), (b"Content-Type", b"application/json"))
FIXED = {"Authorization": "Bearer benchmark", "Content-Type": "application/json"}
SERVER_KEEP_ALIVE_S = 5.0  # Hypercorn's (TARGET_KEEP_ALIVE_S)
IDLE_S = 0.8 * SERVER_KEEP_ALIVE_S  # the idle cut-off every pool is given, as the lean one's

%s

async def main(origin, path, seconds, connections):
    post, close = await open_client(origin, connections)
    latencies, numbers = [], itertools.count()
    deadline = time.perf_counter() + seconds
    async def user():
        while time.perf_counter() < deadline:
            number = next(numbers)
            started = time.perf_counter()
            status = await post(path, f"{number:032x}", f"r-{number}", 5.0)
            latencies.append((status, time.perf_counter() - started))
    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(user() for _ in range(connections)))
    print(len(latencies), time.perf_counter() - began, time.process_time() - cpu,
          sum(status != 200 for status, _ in latencies))
    closing = close()
    if inspect.isawaitable(closing):
        await closing

uvloop.install()
asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
"""

CLIENTS = {
    # The scenarios' own client (molotov_scenarios/http_client.py).
    "lean": """
from molotov_scenarios.http_client import HttpClient

async def open_client(origin, connections):
    client = HttpClient(origin, server_keep_alive_s=SERVER_KEEP_ALIVE_S)
    async def post(path, key, request_id, timeout):
        headers = (*FIXED_BYTES, (b"Idempotency-Key", key.encode()),
                   (b"X-Request-ID", request_id.encode()))
        status, _ = await client.post(path, BODY, headers, timeout)
        return status
    return post, client.close
""",
    # aiohttp with what can be turned off turned off: no trace hooks (none given), no limit,
    # DNS cached for good, no cookie jar, no decompression, no default headers.
    "aiohttp-tuned": """
import aiohttp

async def open_client(origin, connections):
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, keepalive_timeout=IDLE_S)
    session = aiohttp.ClientSession(
        origin, connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False, skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"))
    async def post(path, key, request_id, timeout):
        headers = {**FIXED, "Idempotency-Key": key, "X-Request-ID": request_id}
        async with session.post(path, data=BODY, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            await response.read()
        return response.status
    return post, session.close
""",
    # httpcore: httpx's transport alone (h11 on anyio).
    "httpcore": """
import httpcore

async def open_client(origin, connections):
    pool = httpcore.AsyncConnectionPool(max_connections=connections, keepalive_expiry=IDLE_S,
                                        http1=True, http2=False)
    async def post(path, key, request_id, timeout):
        headers = [*FIXED_BYTES, (b"Idempotency-Key", key.encode()),
                   (b"X-Request-ID", request_id.encode())]
        limits = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        response = await pool.request("POST", origin + path, headers=headers, content=BODY,
                                      extensions={"timeout": limits})
        return response.status
    return post, pool.aclose
""",
    "httpx": """
import httpx

async def open_client(origin, connections):
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=None,
                          keepalive_expiry=IDLE_S)
    client = httpx.AsyncClient(base_url=origin, http1=True, http2=False, limits=limits,
                               trust_env=False)
    async def post(path, key, request_id, timeout):
        headers = {**FIXED, "Idempotency-Key": key, "X-Request-ID": request_id}
        response = await client.post(path, content=BODY, headers=headers, timeout=timeout)
        return response.status_code
    return post, client.aclose
""",
    "aiosonic": """
import aiosonic
from aiosonic.pools import PoolConfig

async def open_client(origin, connections):
    pool = PoolConfig(size=connections, max_conn_requests=None,
                      max_conn_idle_ms=int(IDLE_S * 1000))
    client = aiosonic.HTTPClient(aiosonic.TCPConnector(pool_configs={":default": pool}))
    async def post(path, key, request_id, timeout):
        headers = {**FIXED, "Idempotency-Key": key, "X-Request-ID": request_id}
        response = await client.post(origin + path, data=BODY, headers=headers,
                                     timeouts=aiosonic.Timeouts(request_timeout=timeout))
        await response.content()
        return response.status_code
    return post, client.connector.cleanup
""",
    "niquests": """
import niquests

async def open_client(origin, connections):
    session = niquests.AsyncSession(
        base_url=origin, disable_http2=True, disable_http3=True, pool_connections=1,
        pool_maxsize=connections, keepalive_idle_window=IDLE_S, allow_incoming_cookies=False)
    async def post(path, key, request_id, timeout):
        headers = {**FIXED, "Idempotency-Key": key, "X-Request-ID": request_id}
        response = await session.post(path, data=BODY, headers=headers, timeout=timeout)
        return response.status_code
    return post, session.close
""",
}


CLIENT_MODULES = {"lean": "httptools", "aiohttp-tuned": "aiohttp"}  # what each row imports


def measure_client(
    client: str, url: str, seconds: float, server: subprocess.Popen[bytes]
) -> Measurement:
    path = f"/api/authorizations/{uuid.uuid4()}/reserve"
    script = CLIENT_LOOP % textwrap.dedent(CLIENTS[client])
    return measure_closed_loop(client, [script, url, path], seconds, server)


def measure_wrk(url: str, seconds: float, server: subprocess.Popen[bytes]) -> Measurement:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    target = f"{url}/api/authorizations/{uuid.uuid4()}/reserve"
    before, server_before = children_cpu_seconds(), server_cpu_seconds(server)
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{round(seconds)}s", "-s", script.name, target]
    try:
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    requests = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output)
    if requests is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    elapsed = float(requests.group(2)) / (1000 if requests.group(3) == "ms" else 1)
    return Measurement(
        client="wrk",
        requests=int(requests.group(1)),
        seconds=elapsed,
        cpu_seconds=children_cpu_seconds() - before,
        server_cpu_seconds=server_cpu_seconds(server) - server_before,
    )


# -- Report -----------------------------------------------------------------------------------
def median_row(measurements: list[Measurement]) -> dict[str, float | str | int]:
    return {
        "client": measurements[0].client,
        "runs": len(measurements),
        "requests_per_s": statistics.median(m.requests_per_s for m in measurements),
        "requests_per_cpu_s": statistics.median(m.requests_per_cpu_s for m in measurements),
        "cpu_ms_per_1000_requests": statistics.median(
            1e6 * m.cpu_seconds / m.requests for m in measurements
        ),
        "client_cpu_share_of_one_core": statistics.median(
            m.cpu_seconds / m.seconds for m in measurements
        ),
        "server_cpu_share_of_one_core": statistics.median(
            m.server_cpu_seconds / m.seconds for m in measurements
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure the load generator's own ceiling.")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument(
        "--clients",
        type=lambda text: text.split(","),
        help="comma-separated rows to run (default: all that are installed)",
    )
    args = parser.parse_args()
    clients: dict[str, Callable[[str, float, subprocess.Popen[bytes]], Measurement]] = {
        "molotov": measure_molotov,
        "molotov-bare": measure_molotov_bare,
        "aiohttp": measure_aiohttp,
    }
    for name in CLIENTS:
        if importlib.util.find_spec(CLIENT_MODULES.get(name, name)) is None:
            print(f"{name} is not installed: skipping it (see the docstring)", file=sys.stderr)
        else:
            clients[name] = functools.partial(measure_client, name)
    if shutil.which("wrk"):
        clients["wrk"] = measure_wrk
    else:
        print("wrk is not installed: skipping it (apt-get install wrk)", file=sys.stderr)
    if args.clients:
        unknown = set(args.clients) - set(clients)
        if unknown:
            parser.error(f"unknown or missing clients: {', '.join(sorted(unknown))}")
        clients = {name: clients[name] for name in args.clients}
    server, url = start_endpoint()
    measurements: dict[str, list[Measurement]] = {name: [] for name in clients}
    try:
        time.sleep(0.5)
        for repeat in range(args.repeats):
            for name, measure in clients.items():
                measurement = measure(url, args.seconds, server)
                measurements[name].append(measurement)
                print(
                    f"[{repeat + 1}/{args.repeats}] {name:12s} {measurement.requests_per_s:9.0f} "
                    f"req/s  {measurement.requests_per_cpu_s:9.0f} req/CPU-s",
                    file=sys.stderr,
                )
    finally:
        server.terminate()
        server.wait(timeout=10)
    rows = [median_row(runs) for runs in measurements.values()]
    print(f"\n{CONNECTIONS} connections, {args.seconds:.0f} s runs, medians of {args.repeats}:")
    print(
        f"{'client':14s}{'req/s':>10s}{'req/CPU-s':>12s}{'CPU ms/1k req':>15s}"
        f"{'client CPU':>12s}{'server CPU':>12s}"
    )
    for row in rows:
        print(
            f"{row['client']:14s}{row['requests_per_s']:10.0f}{row['requests_per_cpu_s']:12.0f}"
            f"{row['cpu_ms_per_1000_requests']:15.1f}{row['client_cpu_share_of_one_core']:12.0%}"
            f"{row['server_cpu_share_of_one_core']:12.0%}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "cpu_count": os.cpu_count(),
                "load_average": os.getloadavg(),
                "connections": CONNECTIONS,
                "seconds": args.seconds,
                "medians": rows,
                "runs": {name: [asdict(m) for m in runs] for name, runs in measurements.items()},
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
