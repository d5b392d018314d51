"""Scenario 5 (isolation_append): Elle's list-append workload, for the isolation checker.

Every user runs transactions of 1 to 4 micro-operations over 30 keys of one organization:
`append k v` or `read k`, half each. Few keys and many users make transactions overlap on
the same keys all the time, so the dependency graph is dense and a cycle the isolation level
lets through has many chances to happen. The history (results/list_history.py) is checked by
anomalies/ after the run; the service's refusals (409 serialization_conflict) are expected.

Appended values are unique per key, as Elle requires: a per-process counter n and the
writer w (the shard and the Molotov process slot, unique across the run) give
v = n * WRITERS + w. Processes are forked from one parent, so the counter alone would repeat.
"""

from __future__ import annotations

import itertools

from molotov import scenario

from molotov_scenarios.common import (
    ENVIRONMENT,
    FIXTURES,
    Worker,
    guarded,
    list_transaction,
    process_slot,
    think,
)

KEYS = 30
MAX_OPS = 4
APPEND_SHARE = 0.5
SLOTS_PER_SHARD = 1_000  # process slots of one shard stay below this
WRITERS = 1_000_000  # ... and shards below WRITERS / SLOTS_PER_SHARD
_APPENDS = itertools.count(1)


def next_value() -> int:
    """Return a value no other append of the run uses."""
    writer = (ENVIRONMENT.shard_index - 1) * SLOTS_PER_SHARD + process_slot()
    return next(_APPENDS) * WRITERS + writer


@scenario(weight=100)
@guarded
async def append_and_read(worker: Worker) -> None:
    """Run one short transaction of appends and reads on the shared keys."""
    rng = worker.rng
    ops: list[list[object]] = []
    for _ in range(rng.randint(1, MAX_OPS)):
        key = rng.randrange(KEYS)
        append = rng.random() < APPEND_SHARE
        ops.append(["append", key, next_value()] if append else ["r", key, None])
    # Every user works on the keys of one organization (its first authorization's).
    if await list_transaction(worker, FIXTURES.authorizations[0], ops) is not None:
        await think(worker)
