--
-- Export approvals: who may issue them, what they carry (only rows beyond
-- the profile's limits, never counted toward the day), how they end, and
-- how every use is audited; and the default limits of roles that set none.
--
\set VERBOSITY terse
CREATE SCHEMA lima;
GRANT USAGE ON SCHEMA lima TO PUBLIC;
SET search_path = lima, public;
CREATE FUNCTION lima_mask(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT LEAKPROOF
SET search_path = pg_catalog AS $$ SELECT left($1, 3) || '****' $$;
CREATE ROLE regress_lima_clerks;
CREATE ROLE regress_lima_clerk IN ROLE regress_lima_clerks;
CREATE ROLE regress_lima_clerk2 IN ROLE regress_lima_clerks;
CREATE ROLE regress_lima_approver IN ROLE pii_guard_approver;
CREATE ROLE regress_lima_selfish IN ROLE pii_guard_approver, regress_lima_clerks;
CREATE ROLE regress_lima_app;
CREATE TABLE people (id int PRIMARY KEY, phone pii_guard.encrypted_text);
INSERT INTO people SELECT g, '1390000' || lpad(g::text, 4, '0') FROM generate_series(1, 100) g;
GRANT SELECT ON people TO regress_lima_clerks, regress_lima_app;
SELECT pii_guard.protect_column('people', 'phone', 'sensitive', 'lima.lima_mask(text)');
SELECT pii_guard.set_clearance('regress_lima_clerks', 'public');
SELECT pii_guard.set_export_limits('regress_lima_clerks', 10, NULL);
-- Waits (boundedly) for n export events of a grant to reach the audit log.
CREATE FUNCTION wait_uses(g bigint, n int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..100 LOOP
        IF (SELECT count(*) FROM pii_guard.audit_exports
             WHERE detail LIKE '% rows under export approval ' || g) >= n THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END $$;

-- Only approvers approve, and never for themselves.
SET ROLE regress_lima_clerk;
SELECT pii_guard.approve_export('regress_lima_clerks', 100, now() + interval '1 hour', 'mine');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pii_guard.approve_export('regress_lima_clerk', 100, now() + interval '1 hour', 'mine');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
INSERT INTO pii_guard.grants (kind, role, rows, valid_until, reason, approver)
VALUES ('export', 'regress_lima_clerk', 100, now() + interval '1 hour', 'mine', 'regress_lima_approver');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET ROLE regress_lima_app;
SELECT pii_guard.approve_export('regress_lima_clerks', 100, now() + interval '1 hour', 'theirs');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET ROLE regress_lima_selfish;
SELECT pii_guard.approve_export('regress_lima_selfish', 100, now() + interval '1 hour', 'mine');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pii_guard.approve_export('regress_lima_clerks', 100, now() + interval '1 hour', 'my group');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Rows within the profile's limits never touch an approval; rows beyond
-- them are the approval's and do not count toward the day.
SET ROLE regress_lima_approver;
SELECT pii_guard.approve_export('regress_lima_clerks', 60, now() + interval '1 hour',
                                'mailing') AS g1 \gset
RESET ROLE;
SELECT pii_guard.export_usage('postgres') AS day0 \gset
SET ROLE regress_lima_clerk;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 5;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 10;
RESET ROLE;
SELECT rows, used, live FROM pii_guard.export_approvals WHERE grant_id = :g1;
SELECT pii_guard.export_usage('postgres') - :day0 AS day_rows;
-- Used through a cursor: each FETCH is an approved export of its own
-- rows; once the approval is used up the next row is refused.
SET ROLE regress_lima_clerk;
BEGIN;
DECLARE c CURSOR FOR SELECT id, phone FROM people ORDER BY id;
FETCH 30 FROM c \g /dev/null
FETCH 30 FROM c \g /dev/null
FETCH 30 FROM c \g /dev/null
ROLLBACK;
RESET ROLE;
SELECT rows, used, live FROM pii_guard.export_approvals WHERE grant_id = :g1;
SELECT pii_guard.export_usage('postgres') - :day0 AS day_rows;
-- Every use is an export event naming the approval, FETCHes included.
SELECT wait_uses(:g1, 3);
SELECT acting_role, operation, relation, rows,
       replace(detail, 'approval ' || :g1, 'approval <g1>') AS detail
  FROM pii_guard.audit_exports
 WHERE detail LIKE '% rows under export approval ' || :g1 ORDER BY event_id;

-- An approval for a group is one pool its members share; approvals are
-- used in the order they end, however many there are.
SET ROLE regress_lima_approver;
SELECT count(pii_guard.approve_export('regress_lima_clerks', 1, now() + interval '1 hour', 'one row'))
  FROM generate_series(1, 12);
SELECT pii_guard.approve_export('regress_lima_clerks', 5, now() + interval '2 hours',
                                'five rows') AS g2 \gset
SET ROLE regress_lima_clerk;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 25;
SET ROLE regress_lima_clerk2;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 12;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 11;
RESET ROLE;
SELECT rows, used, live FROM pii_guard.export_approvals WHERE grant_id = :g2;

-- An approval ends by itself,
SET ROLE regress_lima_approver;
SELECT pii_guard.approve_export('regress_lima_clerks', 50, clock_timestamp() + interval '1 second',
                                'a short one') AS g3 \gset
SET ROLE regress_lima_clerk;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 12;
RESET ROLE;
DO $$ BEGIN WHILE clock_timestamp() <= (SELECT valid_until FROM pii_guard.grants
                                          WHERE reason = 'a short one') LOOP
    PERFORM pg_sleep(0.1); END LOOP; END $$;
SET ROLE regress_lima_clerk;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 12;
RESET ROLE;
SELECT rows, used, live FROM pii_guard.export_approvals WHERE grant_id = :g3;
-- and a revoked one at once.
SET ROLE regress_lima_approver;
SELECT pii_guard.approve_export('regress_lima_clerks', 50, now() + interval '1 hour',
                                'revoked soon') AS g4 \gset
SET ROLE regress_lima_clerk;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 12;
SET ROLE regress_lima_approver;
SELECT pii_guard.revoke_grant(:g4);
SET ROLE regress_lima_clerk;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 12;
RESET ROLE;
SELECT rows, used, live FROM pii_guard.export_approvals WHERE grant_id = :g4;

-- A governed role with no profile has the default limits: unlimited
-- unless the superuser sets them.  The role cannot change them.
SET ROLE regress_lima_app;
SELECT array_length(array_agg(phone), 1) FROM people;
RESET ROLE;
SET pii_guard.default_max_rows_per_statement = 20;
SET ROLE regress_lima_app;
SELECT array_length(array_agg(phone), 1) FROM people;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 20;
SET pii_guard.default_max_rows_per_statement = -1;
RESET ROLE;
-- A profile that sets a limit keeps its own; one that sets none gets the
-- default too.
SET ROLE regress_lima_clerk;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 11;
RESET ROLE;
SELECT pii_guard.set_export_limits('regress_lima_clerks', NULL, NULL);
SET ROLE regress_lima_clerk;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 21;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 20;
RESET ROLE;
SELECT pii_guard.export_usage('postgres') AS day1 \gset
SELECT set_config('pii_guard.default_max_rows_per_day', (:day1 + 3)::text, false) IS NOT NULL;
SET ROLE regress_lima_app;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 3;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 1;
RESET ROLE;
RESET pii_guard.default_max_rows_per_statement;
RESET pii_guard.default_max_rows_per_day;
SET ROLE regress_lima_app;
SELECT array_length(array_agg(phone), 1) FROM people;
RESET ROLE;
RESET search_path;

-- The roles go (installcheck may run again on the same server).
SET client_min_messages = warning;
DROP OWNED BY regress_lima_app, regress_lima_approver, regress_lima_clerk, regress_lima_clerk2, regress_lima_clerks, regress_lima_selfish CASCADE;
DROP ROLE regress_lima_app, regress_lima_approver, regress_lima_clerk, regress_lima_clerk2, regress_lima_clerks, regress_lima_selfish;
RESET client_min_messages;
