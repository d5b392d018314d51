-- Scheduling queries, read by integrity/queries.py. Each starts with "-- name: <name>".
-- They read therapy_sessions with their own SQL, as verify.sql reads the ledger: the rules
-- that span rows (no overlap, the units within the authorization) are the service's job, and
-- a checker sharing its code could not see the service break them.

-- name: has_therapy_sessions
SELECT to_regclass('therapy_sessions') IS NOT NULL AS present

-- name: count_therapy_sessions
SELECT count(*) AS n FROM therapy_sessions

-- name: overlapping_sessions
-- Expected: 0 rows. Every pair of sessions not cancelled whose half-open ranges
-- [starts_at, ends_at) overlap and that share a practitioner, or a patient: the write skew
-- REPEATABLE READ allows (two bookings each saw no overlap, both inserted). Each pair once,
-- the earlier start first: the later one starts inside the earlier one (touching sessions,
-- one ending when the next starts, do not overlap), which the (person, starts_at) indexes
-- find without comparing every session of a person with every other. `pairs` counts them
-- all; only the first %(row_limit)s are returned.
WITH pairs AS (
    SELECT 'practitioner_overlap' AS problem,
           a.practitioner_id::text AS practitioner_id,
           NULL::text AS patient_id,
           a.id AS first_id, b.id AS second_id
    FROM therapy_sessions AS a
    JOIN therapy_sessions AS b
      ON b.practitioner_id = a.practitioner_id
     AND b.starts_at >= a.starts_at
     AND b.starts_at < a.ends_at
     AND (b.starts_at, b.id) > (a.starts_at, a.id)
    WHERE a.status <> 'cancelled' AND b.status <> 'cancelled'
    UNION ALL
    SELECT 'patient_overlap', NULL, a.patient_id::text, a.id, b.id
    FROM therapy_sessions AS a
    JOIN therapy_sessions AS b
      ON b.patient_id = a.patient_id
     AND b.starts_at >= a.starts_at
     AND b.starts_at < a.ends_at
     AND (b.starts_at, b.id) > (a.starts_at, a.id)
    WHERE a.status <> 'cancelled' AND b.status <> 'cancelled'
),
counted AS (
    SELECT p.*, count(*) OVER () AS pairs
    FROM pairs AS p
)
SELECT c.problem,
       c.practitioner_id,
       c.patient_id,
       a.id::text AS first_session_id,
       a.request_id AS first_request_id,
       a.starts_at::text AS first_starts_at,
       a.ends_at::text AS first_ends_at,
       a.status AS first_status,
       b.id::text AS second_session_id,
       b.request_id AS second_request_id,
       b.starts_at::text AS second_starts_at,
       b.ends_at::text AS second_ends_at,
       b.status AS second_status,
       b.starts_at::text AS overlap_starts_at,
       least(a.ends_at, b.ends_at)::text AS overlap_ends_at,
       c.pairs
FROM counted AS c
JOIN therapy_sessions AS a ON a.id = c.first_id
JOIN therapy_sessions AS b ON b.id = c.second_id
ORDER BY c.problem, a.starts_at, a.id, b.starts_at, b.id
LIMIT %(row_limit)s

-- name: over_scheduled_authorizations
-- Expected: 0 rows. An authorization's used units plus the units of its sessions booked or
-- completed (a completed session's units were delivered: they still count) must stay within
-- its total. Summed from the session rows, not from any counter the service keeps.
WITH counted AS (
    SELECT s.authorization_id,
           sum(s.units) AS scheduled_by_sessions,
           count(*) AS sessions,
           (array_agg(s.id::text ORDER BY s.created_at DESC, s.id DESC))[1:%(newest)s]
               AS newest_session_ids,
           (array_agg(coalesce(s.request_id, '-') ORDER BY s.created_at DESC, s.id DESC))
               [1:%(newest)s] AS newest_request_ids
    FROM therapy_sessions AS s
    WHERE s.status IN ('booked', 'completed')
    GROUP BY s.authorization_id
)
SELECT 'over_scheduled' AS problem,
       a.id::text AS authorization_id,
       a.total_units,
       a.used_units,
       c.scheduled_by_sessions,
       a.used_units + c.scheduled_by_sessions - a.total_units AS units_over,
       c.sessions,
       array_to_string(c.newest_session_ids, ' ') AS newest_session_ids,
       array_to_string(c.newest_request_ids, ' ') AS newest_request_ids
FROM counted AS c
JOIN authorizations AS a ON a.id = c.authorization_id
WHERE a.used_units + c.scheduled_by_sessions > a.total_units
ORDER BY units_over DESC, a.id

-- name: create_session_history
-- The generator's scheduling operations (book, cancel, complete) from history.jsonl: the key
-- each was sent under, how it ended (ok, fail, info) and, when ok, the session it named.
CREATE TEMPORARY TABLE session_history (
    idempotency_key text NOT NULL,
    outcome text NOT NULL,
    kind text NOT NULL,
    authorization_id text NOT NULL,
    units integer NOT NULL,
    session_id text NOT NULL,
    attempts integer NOT NULL,
    source text NOT NULL
) ON COMMIT DROP

-- name: create_session_unanswered
-- The scheduling requests that got no response (unanswered.csv): each may have committed.
CREATE TEMPORARY TABLE session_unanswered (
    request_id text NOT NULL,
    authorization_id text NOT NULL,
    kind text NOT NULL,
    units integer NOT NULL,
    source text NOT NULL
) ON COMMIT DROP

-- name: session_reconciliation_problems
-- Expected: 0 rows but 'indeterminate_*' ones. The client's scheduling operations and the
-- session rows must agree:
--   ok_book_missing        an ok booking with no session under its id or its key;
--   ok_book_mismatch       the session under its id differs (authorization, units, key), or
--                          its key is on another session;
--   failed_book_applied    a session carries the key of a booking the service refused;
--   booked_twice           one key (one logical booking) on several sessions of an
--                          organization, whatever the client saw;
--   phantom                a session whose booking key the client never sent, and whose
--                          request is not one that got no response ('indeterminate_booking'
--                          when it is, with the same authorization and units);
--   *_of_missing_session   an ok cancel or complete of a session that is not there;
--   cancel_not_applied, complete_not_applied
--                          an ok cancel (complete) left its session in another status;
--   cancelled_and_completed
--                          ok cancel and ok complete of one session: one of them was lost;
--   failed_status_change_applied
--                          the session's status was last set under the key of a refused
--                          cancel or complete;
--   phantom_status_change  cancelled or completed under a key the client never sent for that
--                          change ('indeterminate_status_change' when its request got no
--                          response).
-- Keys are scoped to the organization, as the service's unique index scopes them.
WITH client AS (
    SELECT h.idempotency_key, h.outcome, h.kind, lower(h.authorization_id) AS authorization_id,
           h.units, lower(nullif(h.session_id, '')) AS session_id, h.source,
           a.organization_id
    FROM session_history AS h
    LEFT JOIN authorizations AS a ON a.id::text = lower(h.authorization_id)
),
sessions AS (
    SELECT s.id::text AS session_id, s.organization_id, s.authorization_id::text AS authorization_id,
           s.units, s.status, s.request_id, s.idempotency_key, s.status_idempotency_key,
           s.status_request_id, s.starts_at, s.ends_at
    FROM therapy_sessions AS s
),
status_changes AS (
    SELECT c.session_id,
           string_agg(c.kind || ' ' || c.idempotency_key, ' ' ORDER BY c.kind, c.idempotency_key)
               AS keys,
           bool_or(c.kind = 'cancel') AS cancelled,
           bool_or(c.kind = 'complete') AS completed,
           min(c.authorization_id) AS authorization_id,
           min(c.units) AS units,
           string_agg(DISTINCT c.source, ' ') AS source
    FROM client AS c
    WHERE c.kind IN ('cancel', 'complete') AND c.outcome = 'ok'
    GROUP BY c.session_id
),
problems AS (
    SELECT 'ok_book_missing' AS problem, c.idempotency_key, c.kind AS client_kind,
           c.outcome AS client_outcome, c.session_id AS client_session_id,
           c.authorization_id AS client_authorization_id, c.units AS client_units,
           NULL::text AS session_id, NULL::text AS authorization_id, NULL::integer AS units,
           NULL::text AS status, NULL::text AS request_id, NULL::text AS booking_key,
           NULL::text AS status_idempotency_key, NULL::text AS status_request_id,
           NULL::timestamptz AS starts_at, NULL::timestamptz AS ends_at,
           NULL::bigint AS session_rows, c.source
    FROM client AS c
    WHERE c.kind = 'book' AND c.outcome = 'ok'
      AND NOT EXISTS (SELECT 1 FROM sessions AS s WHERE s.session_id = c.session_id)
      AND NOT EXISTS (SELECT 1 FROM sessions AS s
                      WHERE s.idempotency_key = c.idempotency_key
                        AND s.organization_id = c.organization_id)
    UNION ALL
    SELECT 'ok_book_mismatch', c.idempotency_key, c.kind, c.outcome, c.session_id,
           c.authorization_id, c.units, s.session_id, s.authorization_id, s.units, s.status,
           s.request_id, s.idempotency_key, s.status_idempotency_key, s.status_request_id,
           s.starts_at, s.ends_at, NULL, c.source
    FROM client AS c
    JOIN sessions AS s ON s.session_id = c.session_id
    WHERE c.kind = 'book' AND c.outcome = 'ok'
      AND (s.authorization_id, s.units, s.idempotency_key)
          IS DISTINCT FROM (c.authorization_id, c.units, c.idempotency_key)
    UNION ALL
    SELECT 'ok_book_mismatch', c.idempotency_key, c.kind, c.outcome, c.session_id,
           c.authorization_id, c.units, s.session_id, s.authorization_id, s.units, s.status,
           s.request_id, s.idempotency_key, s.status_idempotency_key, s.status_request_id,
           s.starts_at, s.ends_at, NULL, c.source
    FROM client AS c
    JOIN sessions AS s
      ON s.idempotency_key = c.idempotency_key AND s.organization_id = c.organization_id
    WHERE c.kind = 'book' AND c.outcome = 'ok'
      AND s.session_id IS DISTINCT FROM c.session_id
    UNION ALL
    SELECT 'failed_book_applied', c.idempotency_key, c.kind, c.outcome, c.session_id,
           c.authorization_id, c.units, s.session_id, s.authorization_id, s.units, s.status,
           s.request_id, s.idempotency_key, s.status_idempotency_key, s.status_request_id,
           s.starts_at, s.ends_at, NULL, c.source
    FROM client AS c
    JOIN sessions AS s
      ON s.idempotency_key = c.idempotency_key AND s.organization_id = c.organization_id
    WHERE c.kind = 'book' AND c.outcome = 'fail'
    UNION ALL
    SELECT 'booked_twice', s.idempotency_key, 'book',
           (SELECT string_agg(DISTINCT c.outcome, ' ') FROM client AS c
            WHERE c.kind = 'book' AND c.idempotency_key = s.idempotency_key),
           NULL, NULL, NULL,
           string_agg(s.session_id, ' ' ORDER BY s.session_id), min(s.authorization_id),
           min(s.units), NULL, string_agg(coalesce(s.request_id, '-'), ' ' ORDER BY s.session_id),
           s.idempotency_key, NULL, NULL, min(s.starts_at), max(s.ends_at), count(*), NULL
    FROM sessions AS s
    WHERE s.idempotency_key IS NOT NULL
    GROUP BY s.organization_id, s.idempotency_key
    HAVING count(*) > 1
    UNION ALL
    -- The client columns show the unanswered booking request of the same request id, if
    -- any, so one whose authorization or units differ from the session shows why it is a
    -- phantom.
    SELECT CASE WHEN coalesce(u.matches, false) THEN 'indeterminate_booking' ELSE 'phantom' END,
           NULL, u.kind, NULL, NULL, u.authorization_id, u.units, s.session_id,
           s.authorization_id, s.units, s.status, s.request_id, s.idempotency_key,
           s.status_idempotency_key, s.status_request_id, s.starts_at, s.ends_at, NULL,
           u.source
    FROM sessions AS s
    LEFT JOIN LATERAL (
        SELECT lower(u.authorization_id) AS authorization_id, u.kind, u.units, u.source,
               (u.kind, lower(u.authorization_id), u.units)
                   = ('book', s.authorization_id, s.units) AS matches
        FROM session_unanswered AS u
        WHERE u.request_id = s.request_id
        ORDER BY matches DESC
        LIMIT 1
    ) AS u ON true
    WHERE NOT EXISTS (SELECT 1 FROM client AS c
                      WHERE c.kind = 'book' AND c.idempotency_key = s.idempotency_key)
    UNION ALL
    SELECT CASE WHEN c.cancelled THEN 'cancel_of_missing_session'
                ELSE 'complete_of_missing_session' END,
           c.keys, CASE WHEN c.cancelled AND c.completed THEN 'cancel complete'
                        WHEN c.cancelled THEN 'cancel' ELSE 'complete' END,
           'ok', c.session_id, c.authorization_id, c.units, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, c.source
    FROM status_changes AS c
    WHERE NOT EXISTS (SELECT 1 FROM sessions AS s WHERE s.session_id = c.session_id)
    UNION ALL
    SELECT CASE WHEN c.cancelled AND c.completed THEN 'cancelled_and_completed'
                WHEN c.cancelled THEN 'cancel_not_applied'
                ELSE 'complete_not_applied' END,
           c.keys, CASE WHEN c.cancelled AND c.completed THEN 'cancel complete'
                        WHEN c.cancelled THEN 'cancel' ELSE 'complete' END,
           'ok', c.session_id, c.authorization_id, c.units, s.session_id, s.authorization_id,
           s.units, s.status, s.request_id, s.idempotency_key, s.status_idempotency_key,
           s.status_request_id, s.starts_at, s.ends_at, NULL, c.source
    FROM status_changes AS c
    JOIN sessions AS s ON s.session_id = c.session_id
    WHERE (c.cancelled AND c.completed)
       OR (c.cancelled AND s.status <> 'cancelled')
       OR (c.completed AND s.status <> 'completed')
    UNION ALL
    SELECT 'failed_status_change_applied', c.idempotency_key, c.kind, c.outcome, c.session_id,
           c.authorization_id, c.units, s.session_id, s.authorization_id, s.units, s.status,
           s.request_id, s.idempotency_key, s.status_idempotency_key, s.status_request_id,
           s.starts_at, s.ends_at, NULL, c.source
    FROM client AS c
    JOIN sessions AS s
      ON s.status_idempotency_key = c.idempotency_key AND s.organization_id = c.organization_id
    WHERE c.kind IN ('cancel', 'complete') AND c.outcome = 'fail'
    UNION ALL
    SELECT CASE WHEN coalesce(u.matches, false) THEN 'indeterminate_status_change'
                ELSE 'phantom_status_change' END,
           NULL, u.kind, NULL, NULL, u.authorization_id, u.units, s.session_id,
           s.authorization_id, s.units, s.status, s.request_id, s.idempotency_key,
           s.status_idempotency_key, s.status_request_id, s.starts_at, s.ends_at, NULL,
           u.source
    FROM sessions AS s
    LEFT JOIN LATERAL (
        SELECT lower(u.authorization_id) AS authorization_id, u.kind, u.units, u.source,
               (u.kind, lower(u.authorization_id))
                   = (CASE s.status WHEN 'cancelled' THEN 'cancel' ELSE 'complete' END,
                      s.authorization_id) AS matches
        FROM session_unanswered AS u
        WHERE u.request_id = s.status_request_id
        ORDER BY matches DESC
        LIMIT 1
    ) AS u ON true
    WHERE s.status <> 'booked'
      AND NOT EXISTS (
          SELECT 1 FROM client AS c
          WHERE c.idempotency_key = s.status_idempotency_key
            AND c.kind = CASE s.status WHEN 'cancelled' THEN 'cancel' ELSE 'complete' END)
)
SELECT problem, idempotency_key, client_kind, client_outcome, client_session_id,
       client_authorization_id, client_units, session_id, authorization_id, units, status,
       request_id, booking_key, status_idempotency_key, status_request_id,
       starts_at::text AS starts_at, ends_at::text AS ends_at, session_rows, source
FROM problems
ORDER BY problem, session_id NULLS FIRST, idempotency_key
