"""What the runner hands each Molotov process: one JSON document in one environment variable."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

ENVIRONMENT_VARIABLE = "LOADTEST_SCENARIO"


@dataclass(frozen=True)
class ScenarioEnvironment:
    """Everything a scenario process needs to know about the run it belongs to."""

    scenario: str
    target_url: str
    fixtures_path: str
    record_dir: str
    duration_s: float
    think_time_s: tuple[float, float]
    units_per_request: int
    users: int  # across all processes
    arrival_rate_rps: float | None
    # How long the service keeps an idle connection open (its TARGET_KEEP_ALIVE_S): the client
    # stops reusing one a margin before that.
    server_keep_alive_s: float
    # Sharded runs (load_runner/sharding.py); the defaults are a single-host run.
    shard_index: int = 1  # 1..shard_count
    shard_count: int = 1
    # Local epoch at which the run starts (the shared start time on this host's clock);
    # None: as soon as Molotov is up.
    start_at_epoch: float | None = None
    # Put before every request id, Idempotency-Key and worker name: "s2-" on shard 2 of 4, so
    # that no two shards can produce the same id; "" on a single host, as before.
    id_prefix: str = ""
    # Seeds the users' random streams (with the shard, the process slot and the worker id).
    seed: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ScenarioEnvironment:
        values = json.loads(text)
        values["think_time_s"] = tuple(values["think_time_s"])
        return cls(**values)

    @classmethod
    def from_process(cls) -> ScenarioEnvironment:
        """Read the environment the runner set; fail loudly when a scenario is run by hand."""
        text = os.environ.get(ENVIRONMENT_VARIABLE)
        if not text:
            raise RuntimeError(
                f"{ENVIRONMENT_VARIABLE} is not set: run scenarios through load_runner "
                "(invoke load-test.scenario1), not with molotov directly"
            )
        return cls.from_json(text)

    @property
    def records_dir(self) -> Path:
        return Path(self.record_dir)


def run_start_epoch(environment: ScenarioEnvironment, now: float) -> float:
    """Return when the run starts on this host's clock: the shared start time, else ``now``.

    A shard whose Molotov came up late still counts from the shared start (its first requests
    then start a little after second 0): every shard's records share one time base.
    """
    return now if environment.start_at_epoch is None else environment.start_at_epoch


def start_delay_s(run_start: float, launched: float | None = None) -> float:
    """Return how long a worker waits after Molotov's start for the run's (shared) start."""
    return 0.0 if launched is None else max(run_start - launched, 0.0)


def worker_seed(environment: ScenarioEnvironment, process_slot: int, worker_id: int) -> int:
    """Return the seed of one virtual user's random stream.

    Fixed by the run's seed, the shard, the process slot and the Molotov worker id: the same
    shard of the same run draws the same picks, and every user of every shard its own stream.
    An empty seed (a single-host run) keeps the former behaviour: fresh randomness.
    """
    if not environment.seed:
        return int.from_bytes(os.urandom(8), "big")
    text = f"{environment.seed}/{environment.shard_index}/{process_slot}/{worker_id}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
