"""The SQL of a change: one statement per strategy and operation, built once at import.

Each change is a single statement, so it costs one round trip and is its own transaction
(the connections autocommit; under `serializable` their default isolation is SERIALIZABLE).
Inside the statement the strategies differ exactly where their guarantees come from:

- serializable: read the row, check the read values, write. Safe only because SERIALIZABLE
  aborts (40001) a write on a row another transaction changed since the read.
- for_update: the read locks the row (FOR UPDATE), and the check sits in the UPDATE's WHERE
  on the row it updates. Checking the locked read's values instead (as it once did) let a
  release pass its check on one row version and subtract from a later one under READ
  COMMITTED: 500s from the nonnegative CHECK, and no CHECK guards the sum on reserve.
- atomic: the check sits in the UPDATE's own WHERE, which PostgreSQL re-evaluates on the
  latest row version under READ COMMITTED.
- unsafe: the caller reads and checks first, waits, then writes absolute values computed in
  Python with no check at all: a lost update waiting to happen.

A keyed change also takes a transaction-scoped advisory lock on its key (a repeat in flight
fails to take it) and stores its outcome in `idempotency_keys` in the same statement, so the
ledger row and the key can never part; a key stored before makes the INSERT fail with 23505.
"""

from __future__ import annotations

from typing import LiteralString

from target.operations import ACTIVE, Operation
from target.settings import CONCURRENCY_STRATEGIES

AUTHORIZATION_COLUMNS = (
    "id",
    "organization_id",
    "patient_id",
    "service_code",
    "total_units",
    "used_units",
    "scheduled_units",
    "status",
    "start_date",
    "end_date",
)
# Every strategy has a statement but `constraint`, whose units are guarded as for_update's are.
STATEMENT_STRATEGIES = tuple(name for name in CONCURRENCY_STRATEGIES if name != "constraint")
COLUMN_LIST = ", ".join(AUTHORIZATION_COLUMNS)

SELECT_AUTHORIZATION: LiteralString = (
    "SELECT id, organization_id, patient_id, service_code, total_units, used_units, "
    "scheduled_units, status, start_date, end_date, CURRENT_DATE AS today FROM authorizations "
    "WHERE id = %(authorization_id)s AND organization_id = %(organization_id)s"
)
SELECT_STORED_KEY: LiteralString = (
    "SELECT fingerprint, applied, image, transaction_id FROM idempotency_keys "
    "WHERE organization_id = %(organization_id)s AND key = %(idempotency_key)s"
)

# How each operation moves the counters, relative to the row being updated (`a`).
RELATIVE_CHANGES = {
    Operation.RESERVE: "scheduled_units = a.scheduled_units + %(units)s",
    Operation.RELEASE: "scheduled_units = a.scheduled_units - %(units)s",
    Operation.CONSUME: (
        "scheduled_units = a.scheduled_units - %(units)s, used_units = a.used_units + %(units)s"
    ),
}
# The unsafe control writes values computed in Python.
ABSOLUTE_CHANGE = "scheduled_units = %(scheduled_units)s, used_units = %(used_units)s"
# When an operation is allowed, on row `{r}`: the rules `rules.refusal` applies in Python.
ALLOWED_CONDITIONS = {
    Operation.RESERVE: (
        "{r}.used_units + {r}.scheduled_units + %(units)s <= {r}.total_units "
        "AND CURRENT_DATE BETWEEN {r}.start_date AND {r}.end_date"
    ),
    Operation.RELEASE: "{r}.scheduled_units >= %(units)s",
    Operation.CONSUME: "{r}.scheduled_units >= %(units)s",
}
KEY_LOCK = (
    "SELECT pg_try_advisory_xact_lock("
    "hashtextextended(%(organization_id)s::text || '/' || %(idempotency_key)s, 0)) AS held"
)


def _condition(operation: Operation, row: str) -> str:
    return f"{row}.status = '{ACTIVE}' AND " + ALLOWED_CONDITIONS[operation].format(r=row)


def change_statement(strategy: str, operation: Operation, *, keyed: bool) -> LiteralString:
    """Build the one statement that applies ``operation`` under ``strategy``."""
    if strategy not in STATEMENT_STRATEGIES:
        raise ValueError(f"unknown concurrency strategy {strategy!r}")
    if strategy == "atomic" and not keyed:
        return _atomic_statement(operation)
    assignments = ABSOLUTE_CHANGE if strategy == "unsafe" else RELATIVE_CHANGES[operation]
    condition = {
        "serializable": _condition(operation, "c"),
        "for_update": _condition(operation, "a"),
        "atomic": _condition(operation, "a"),
        "unsafe": "true",
    }[strategy]
    lock = " FOR UPDATE" if strategy == "for_update" else ""
    gate = " AND (SELECT held FROM claim)" if keyed else ""
    ctes = [f"claim AS ({KEY_LOCK})"] if keyed else []
    ctes += [
        f"current AS (SELECT {COLUMN_LIST}, CURRENT_DATE AS today FROM authorizations"
        " WHERE id = %(authorization_id)s AND organization_id = %(organization_id)s"
        f"{gate}{lock})",
        f"changed AS (UPDATE authorizations AS a SET {assignments}, updated_at = now()"
        f" FROM current AS c WHERE a.id = c.id AND {condition}"
        f" RETURNING {', '.join('a.' + column for column in AUTHORIZATION_COLUMNS)})",
        "ledger AS (INSERT INTO unit_transactions (id, authorization_id, organization_id,"
        " practitioner_id, kind, units, request_id, idempotency_key)"
        " SELECT %(transaction_id)s, id, organization_id, %(practitioner_id)s, %(kind)s,"
        " %(units)s, %(request_id)s, %(idempotency_key)s FROM changed)",
    ]
    if keyed:
        ctes.append(
            "stored AS (INSERT INTO idempotency_keys"
            " (organization_id, key, fingerprint, applied, image, transaction_id)"
            " SELECT c.organization_id, %(idempotency_key)s, %(fingerprint)s, x.id IS NOT NULL,"
            " to_jsonb(c) || coalesce(to_jsonb(x), '{}'::jsonb),"
            " CASE WHEN x.id IS NULL THEN NULL ELSE %(transaction_id)s::uuid END"
            " FROM current AS c LEFT JOIN changed AS x ON true)"
        )
    image = ", ".join(
        f"coalesce(x.{column}, c.{column}) AS {column}" for column in AUTHORIZATION_COLUMNS
    )
    source = "claim" if keyed else "(SELECT true AS held) AS claim"
    statement = (
        f"WITH {', '.join(ctes)} SELECT claim.held AS key_held, x.id IS NOT NULL AS applied,"
        f" {image}, c.today FROM {source}"
        " LEFT JOIN current AS c ON true LEFT JOIN changed AS x ON true"
    )
    return statement  # type: ignore[return-value]  # built only from this module's constants


def _atomic_statement(operation: Operation) -> LiteralString:
    """Build atomic's statement without a key: the conditional UPDATE and the ledger row only.

    It returns no row when nothing matched; the caller then reads the row to say why. Reading
    it inside the statement (as the other strategies must) cost PostgreSQL about 1.7 times
    the CPU of this form on every success, to explain the rarer refusal.
    """
    returned = ", ".join(f"a.{column}" for column in AUTHORIZATION_COLUMNS)
    statement = (
        f"WITH changed AS (UPDATE authorizations AS a SET {RELATIVE_CHANGES[operation]},"
        " updated_at = now()"
        " WHERE a.id = %(authorization_id)s AND a.organization_id = %(organization_id)s"
        f" AND {_condition(operation, 'a')} RETURNING {returned}),"
        " ledger AS (INSERT INTO unit_transactions (id, authorization_id, organization_id,"
        " practitioner_id, kind, units, request_id, idempotency_key)"
        " SELECT %(transaction_id)s, id, organization_id, %(practitioner_id)s, %(kind)s,"
        " %(units)s, %(request_id)s, %(idempotency_key)s FROM changed)"
        f" SELECT true AS key_held, true AS applied, {COLUMN_LIST}, CURRENT_DATE AS today"
        " FROM changed"
    )
    return statement  # type: ignore[return-value]  # built only from this module's constants


# Every statement the service runs for a change, by (strategy, operation, keyed).
CHANGE_STATEMENTS = {
    (strategy, operation, keyed): change_statement(strategy, operation, keyed=keyed)
    for strategy in STATEMENT_STRATEGIES
    for operation in Operation
    for keyed in (False, True)
}
