-- Integrity queries, read by integrity/queries.py. Each starts with "-- name: <name>".
-- They read the service's tables with their own SQL: the checker shares no code with the
-- checked service, so a bug in the service cannot hide itself from the check.

-- name: overbooked_authorizations
-- Expected: 0 rows. Booked (used + scheduled) beyond the budget by the counters, or by the
-- ledger (seeded bookings plus every granted reservation, less releases), or a negative
-- counter. The counters alone are not enough: a lost update leaves them at exactly the total
-- while the ledger holds many times the budget in granted reservations.
WITH ledger AS (
    SELECT t.authorization_id,
           sum(CASE t.kind WHEN 'reserve' THEN t.units
                           WHEN 'release' THEN -t.units
                           ELSE 0 END) AS booked_delta
    FROM unit_transactions AS t
    GROUP BY t.authorization_id
),
booked AS (
    SELECT a.id,
           a.total_units,
           a.used_units,
           a.scheduled_units,
           a.used_units + a.scheduled_units AS booked_by_counters,
           b.used_units + b.scheduled_units + coalesce(l.booked_delta, 0) AS booked_by_ledger
    FROM authorizations AS a
    LEFT JOIN seed_baseline AS b ON b.authorization_id = a.id
    LEFT JOIN ledger AS l ON l.authorization_id = a.id
)
SELECT id::text AS authorization_id,
       total_units,
       used_units,
       scheduled_units,
       booked_by_counters,
       booked_by_ledger,
       greatest(booked_by_counters, coalesce(booked_by_ledger, 0)) - total_units AS units_over,
       CASE
           WHEN used_units < 0 OR scheduled_units < 0 OR total_units < 0
               THEN 'negative_counter'
           WHEN booked_by_counters > total_units THEN 'overbooked'
           ELSE 'overbooked_in_ledger'
       END AS problem
FROM booked
WHERE booked_by_counters > total_units
   OR booked_by_ledger > total_units
   OR used_units < 0
   OR scheduled_units < 0
   OR total_units < 0
ORDER BY units_over DESC, id

-- name: overbooked_in_history
-- Expected: 0 rows. Replays each authorization's ledger in commit order (commit timestamps,
-- track_commit_timestamp = on) from its seeded bookings: a moment when booked units exceeded
-- the total is overbooking, even when later releases brought the end state back under it.
-- Every change takes the authorization's row, so commits on one authorization never tie.
WITH steps AS (
    SELECT t.authorization_id,
           t.id,
           pg_xact_commit_timestamp(t.xmin) AS committed_at,
           CASE t.kind WHEN 'reserve' THEN t.units
                       WHEN 'release' THEN -t.units
                       ELSE 0 END AS booked_delta
    FROM unit_transactions AS t
),
running AS (
    SELECT s.authorization_id,
           s.committed_at,
           b.total_units,
           b.used_units + b.scheduled_units
               + sum(s.booked_delta) OVER (
                     PARTITION BY s.authorization_id
                     ORDER BY s.committed_at NULLS LAST, s.id
                     ROWS UNBOUNDED PRECEDING) AS booked
    FROM steps AS s
    JOIN seed_baseline AS b ON b.authorization_id = s.authorization_id
)
SELECT authorization_id::text AS authorization_id,
       total_units,
       max(booked) AS peak_booked,
       max(booked) - total_units AS units_over,
       min(committed_at)::text AS first_over_at,
       'overbooked_in_history' AS problem
FROM running
WHERE booked > total_units
GROUP BY authorization_id, total_units
ORDER BY units_over DESC, authorization_id

-- name: ledger_rows_without_commit_time
SELECT count(*) AS n
FROM unit_transactions AS t
WHERE pg_xact_commit_timestamp(t.xmin) IS NULL

-- name: ledger_drift
-- Expected: 0 rows. Counters must equal the seeded counters plus the ledger's sums by kind:
-- reserve schedules units, release unschedules them, consume turns scheduled into used.
WITH ledger AS (
    SELECT t.authorization_id,
           count(*) AS ledger_rows,
           sum(CASE t.kind WHEN 'reserve' THEN t.units
                           WHEN 'release' THEN -t.units
                           WHEN 'consume' THEN -t.units
                           ELSE 0 END) AS scheduled_delta,
           sum(CASE t.kind WHEN 'consume' THEN t.units ELSE 0 END) AS used_delta
    FROM unit_transactions AS t
    GROUP BY t.authorization_id
),
expected AS (
    SELECT coalesce(a.id, b.authorization_id) AS authorization_id,
           a.total_units,
           a.used_units,
           a.scheduled_units,
           b.total_units AS baseline_total_units,
           b.used_units + coalesce(l.used_delta, 0) AS expected_used_units,
           b.scheduled_units + coalesce(l.scheduled_delta, 0) AS expected_scheduled_units,
           coalesce(l.ledger_rows, 0) AS ledger_rows,
           CASE
               WHEN b.authorization_id IS NULL THEN 'not_in_seed_baseline'
               WHEN a.id IS NULL THEN 'missing_authorization'
               WHEN a.total_units IS DISTINCT FROM b.total_units THEN 'total_changed'
               ELSE 'counter_drift'
           END AS problem
    FROM authorizations AS a
    FULL JOIN seed_baseline AS b ON b.authorization_id = a.id
    LEFT JOIN ledger AS l ON l.authorization_id = coalesce(a.id, b.authorization_id)
)
SELECT authorization_id::text AS authorization_id,
       problem,
       total_units,
       baseline_total_units,
       used_units,
       expected_used_units,
       scheduled_units,
       expected_scheduled_units,
       ledger_rows
FROM expected
WHERE problem <> 'counter_drift'
   OR used_units IS DISTINCT FROM expected_used_units
   OR scheduled_units IS DISTINCT FROM expected_scheduled_units
ORDER BY problem, authorization_id

-- name: create_client_operations
CREATE TEMPORARY TABLE client_operations (
    transaction_id text NOT NULL,
    authorization_id text NOT NULL,
    kind text NOT NULL,
    units integer NOT NULL,
    source text NOT NULL
) ON COMMIT DROP

-- name: create_client_unanswered
-- The requests that got no response (unanswered.csv): each may have committed after the
-- client gave up on it, so a ledger row carrying its request id is indeterminate, not wrong.
CREATE TEMPORARY TABLE client_unanswered (
    request_id text NOT NULL,
    authorization_id text NOT NULL,
    kind text NOT NULL,
    units integer NOT NULL,
    source text NOT NULL
) ON COMMIT DROP

-- name: reconciliation_problems
-- Expected: 0 rows but 'indeterminate' ones. The generator's successful operations and the
-- ledger must be the same set: nothing lost, nothing altered, nothing the generator never
-- saw, nothing twice. A ledger row the generator never saw is excused ('indeterminate') only
-- when its request id is one of the requests that got no response, or its Idempotency-Key is
-- that of an operation whose outcome stayed unknown (info: a 503 after a lost commit
-- acknowledgement, say), with the same authorization, kind and units; any other (a 409 or
-- 500 that wrote a row, a retry of an ok operation that booked again) is a phantom.
-- Expects the ledger_keys view and the client_history table of this transaction.
WITH client AS (
    SELECT lower(transaction_id) AS transaction_id, lower(authorization_id) AS authorization_id,
           kind, units, source
    FROM client_operations
),
ledger AS (
    SELECT t.id::text AS transaction_id, t.authorization_id::text AS authorization_id,
           t.kind, t.units, t.request_id, t.idempotency_key
    FROM ledger_keys AS t
),
problems AS (
    SELECT 'duplicate' AS problem, c.transaction_id,
           min(c.authorization_id) AS client_authorization_id, min(c.kind) AS client_kind,
           min(c.units) AS client_units, NULL::text AS ledger_authorization_id,
           NULL::text AS ledger_kind, NULL::integer AS ledger_units,
           string_agg(DISTINCT c.source, ' ') AS source,
           count(*) AS times_seen, NULL::text AS request_id
    FROM client AS c
    GROUP BY c.transaction_id
    HAVING count(*) > 1
    UNION ALL
    SELECT 'lost', c.transaction_id, c.authorization_id, c.kind, c.units, NULL, NULL, NULL,
           c.source, 1, NULL
    FROM client AS c
    WHERE NOT EXISTS (SELECT 1 FROM ledger AS l WHERE l.transaction_id = c.transaction_id)
    UNION ALL
    SELECT 'mismatch', c.transaction_id, c.authorization_id, c.kind, c.units,
           l.authorization_id, l.kind, l.units, c.source, 1, l.request_id
    FROM client AS c
    JOIN ledger AS l ON l.transaction_id = c.transaction_id
    WHERE (c.authorization_id, c.kind, c.units) IS DISTINCT FROM
          (l.authorization_id, l.kind, l.units)
    UNION ALL
    -- The client columns show the unanswered request of the same id, if any, so that one
    -- whose authorization, kind or units differ from the ledger row shows why it is a phantom.
    SELECT CASE WHEN coalesce(u.matches, false) OR i.matches IS NOT NULL
                THEN 'indeterminate' ELSE 'phantom' END, l.transaction_id,
           coalesce(u.authorization_id, i.authorization_id), coalesce(u.kind, i.kind),
           coalesce(u.units, i.units), l.authorization_id, l.kind, l.units,
           coalesce(u.source, i.source), 0, l.request_id
    FROM (
        SELECT * FROM ledger AS l
        WHERE NOT EXISTS (SELECT 1 FROM client AS c WHERE c.transaction_id = l.transaction_id)
    ) AS l
    LEFT JOIN LATERAL (
        SELECT lower(u.authorization_id) AS authorization_id, u.kind, u.units, u.source,
               (lower(u.authorization_id), u.kind, u.units)
                   = (l.authorization_id, l.kind, l.units) AS matches
        FROM client_unanswered AS u
        WHERE u.request_id = l.request_id
        ORDER BY matches DESC
        LIMIT 1
    ) AS u ON true
    LEFT JOIN LATERAL (
        SELECT lower(h.authorization_id) AS authorization_id, h.kind, h.units, h.source,
               true AS matches
        FROM client_history AS h
        WHERE h.outcome = 'info'
          AND h.idempotency_key = l.idempotency_key
          AND (lower(h.authorization_id), h.kind, h.units) = (l.authorization_id, l.kind, l.units)
        LIMIT 1
    ) AS i ON true
    UNION ALL
    -- One request applied twice writes two ledger rows under one request id.
    SELECT 'doubled', min(l.transaction_id), NULL, NULL, NULL, min(l.authorization_id),
           min(l.kind), min(l.units), l.request_id, count(*), l.request_id
    FROM ledger AS l
    WHERE l.request_id IS NOT NULL
    GROUP BY l.request_id
    HAVING count(*) > 1
)
SELECT problem, transaction_id, client_authorization_id, client_kind, client_units,
       ledger_authorization_id, ledger_kind, ledger_units, source, times_seen, request_id
FROM problems
ORDER BY problem, transaction_id

-- name: high_contention_outcomes
-- One row per high-contention authorization: how many reservations of the scenario's size
-- the ledger holds against how many fit in the units available at the baseline.
WITH hc AS (
    SELECT unnest(%(authorization_ids)s::uuid[]) AS authorization_id
),
ledger AS (
    SELECT t.authorization_id,
           count(*) FILTER (WHERE t.kind = 'reserve' AND t.units = %(units_per_request)s)
               AS reservations,
           count(*) FILTER (WHERE NOT (t.kind = 'reserve' AND t.units = %(units_per_request)s))
               AS other_rows
    FROM unit_transactions AS t
    WHERE t.authorization_id IN (SELECT authorization_id FROM hc)
    GROUP BY t.authorization_id
)
SELECT hc.authorization_id::text AS authorization_id,
       a.total_units,
       a.used_units,
       a.scheduled_units,
       b.total_units - b.used_units - b.scheduled_units AS available_at_baseline,
       coalesce(l.reservations, 0) AS reservations,
       coalesce(l.other_rows, 0) AS other_rows,
       a.id IS NULL AS missing,
       b.authorization_id IS NULL AS missing_baseline
FROM hc
LEFT JOIN authorizations AS a ON a.id = hc.authorization_id
LEFT JOIN seed_baseline AS b ON b.authorization_id = hc.authorization_id
LEFT JOIN ledger AS l ON l.authorization_id = hc.authorization_id
ORDER BY hc.authorization_id

-- name: create_client_history
-- The generator's logical operations (history.jsonl): the Idempotency-Key each was sent
-- under, and how it ended: ok, fail (a definite refusal) or info (still unknown).
CREATE TEMPORARY TABLE client_history (
    idempotency_key text NOT NULL,
    outcome text NOT NULL,
    kind text NOT NULL,
    authorization_id text NOT NULL,
    units integer NOT NULL,
    transaction_id text NOT NULL,
    attempts integer NOT NULL,
    process integer NOT NULL,
    source text NOT NULL
) ON COMMIT DROP

-- name: has_idempotency_key_column
SELECT EXISTS (
    SELECT 1 FROM information_schema.columns
    WHERE table_schema = current_schema()
      AND table_name = 'unit_transactions'
      AND column_name = 'idempotency_key'
) AS present

-- name: create_ledger_keys
-- The ledger with the key each row was written under, read through one view so that the
-- queries below also run (finding no keys) on a ledger older than the column.
CREATE TEMPORARY VIEW ledger_keys AS
SELECT t.id, t.authorization_id, t.organization_id, t.kind, t.units, t.request_id,
       t.idempotency_key::text AS idempotency_key
FROM unit_transactions AS t

-- name: create_ledger_keys_without_column
CREATE TEMPORARY VIEW ledger_keys AS
SELECT t.id, t.authorization_id, t.organization_id, t.kind, t.units, t.request_id,
       NULL::text AS idempotency_key
FROM unit_transactions AS t

-- name: keyed_ledger_rows
SELECT count(*) AS n FROM ledger_keys WHERE idempotency_key IS NOT NULL

-- name: keys_with_several_rows
-- Expected: 0 rows. A key names one logical operation: the service runs it at most once
-- (keys are scoped to the organization), so two ledger rows under one key are a duplicate.
SELECT 'duplicated_operation' AS problem,
       l.idempotency_key,
       l.organization_id::text AS organization_id,
       count(*) AS ledger_rows,
       string_agg(l.id::text, ' ' ORDER BY l.id) AS transaction_ids,
       string_agg(coalesce(l.request_id, '-'), ' ' ORDER BY l.id) AS request_ids,
       min(l.authorization_id::text) AS authorization_id,
       min(l.kind) AS kind,
       min(l.units) AS units,
       (SELECT string_agg(DISTINCT h.outcome, ' ') FROM client_history AS h
        WHERE h.idempotency_key = l.idempotency_key) AS client_outcome,
       (SELECT max(h.attempts) FROM client_history AS h
        WHERE h.idempotency_key = l.idempotency_key) AS client_attempts
FROM ledger_keys AS l
WHERE l.idempotency_key IS NOT NULL
GROUP BY l.organization_id, l.idempotency_key
HAVING count(*) > 1
ORDER BY count(*) DESC, l.idempotency_key

-- name: client_operations_against_ledger
-- One row per keyed client operation: its ledger rows under the same key in the same
-- organization (the key's scope), and whether they match what the client asked and saw.
SELECT h.outcome,
       h.idempotency_key,
       h.kind,
       h.authorization_id,
       h.units,
       nullif(h.transaction_id, '') AS client_transaction_id,
       h.attempts,
       h.source,
       count(l.id) AS ledger_rows,
       string_agg(l.id::text, ' ' ORDER BY l.id) AS transaction_ids,
       string_agg(coalesce(l.request_id, '-'), ' ' ORDER BY l.id) AS request_ids,
       coalesce(bool_and((l.authorization_id::text, l.kind, l.units)
                         = (lower(h.authorization_id), h.kind, h.units)), true) AS rows_match,
       coalesce(bool_or(l.id::text = lower(h.transaction_id)), false) AS has_client_transaction
FROM client_history AS h
LEFT JOIN authorizations AS a ON a.id::text = lower(h.authorization_id)
LEFT JOIN ledger_keys AS l
       ON l.idempotency_key = h.idempotency_key AND l.organization_id = a.organization_id
WHERE h.outcome = %(outcome)s
GROUP BY h.outcome, h.idempotency_key, h.kind, h.authorization_id, h.units, h.transaction_id,
         h.attempts, h.source
ORDER BY h.idempotency_key
