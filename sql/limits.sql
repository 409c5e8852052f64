--
-- Export-row limits: per statement and per 24 hours, every path a value can
-- leave by, and export approvals.
--
\set VERBOSITY terse
CREATE SCHEMA lim;
GRANT USAGE ON SCHEMA lim TO PUBLIC;
SET search_path = lim, public;
CREATE FUNCTION lim_mask(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT LEAKPROOF
SET search_path = pg_catalog AS $$ SELECT left($1, 3) || '****' $$;
CREATE ROLE regress_lim;
CREATE ROLE regress_lim_approver IN ROLE pii_guard_approver;
CREATE TABLE people (id int PRIMARY KEY, phone pii_guard.encrypted_text, city text);
INSERT INTO people SELECT g, '1380000' || lpad(g::text, 4, '0'), 'city' || (g % 3)
  FROM generate_series(1, 30) g;
GRANT SELECT ON people TO regress_lim;
SELECT pii_guard.protect_column('people', 'phone', 'sensitive', 'lim.lim_mask(text)');
SELECT pii_guard.set_clearance('regress_lim', 'public');
SELECT pii_guard.set_export_limits('regress_lim', 10, 1000);
GRANT CREATE ON SCHEMA lim TO regress_lim;

SET ROLE regress_lim;
-- Under the limit: fine.  Unprotected columns and count(*) count nothing.
SELECT id, phone FROM people ORDER BY id LIMIT 3;
EXPLAIN (COSTS OFF) SELECT id, phone FROM people ORDER BY id LIMIT 3;
SELECT count(*) FROM people;
SELECT count(DISTINCT city) FROM people;
-- Over the limit: refused at the row that would exceed it, with details.
\set VERBOSITY default
SELECT id, phone FROM people ORDER BY id;
\set VERBOSITY terse
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- The client receives the rows before the limit, then the error (psql
-- fetches 3 rows at a time here).
\set FETCH_COUNT 3
SELECT id, phone FROM people ORDER BY id;
\unset FETCH_COUNT
-- COPY.
COPY (SELECT id, phone FROM people ORDER BY id) TO STDOUT;
-- An aggregate counts every row folded into it.
SELECT length(string_agg(phone, ',')) FROM people;
-- CREATE TABLE AS and INSERT ... SELECT.
CREATE TABLE lim.copy1 AS SELECT phone FROM people;
CREATE TABLE lim.copy2 (phone text);
INSERT INTO lim.copy2 SELECT phone FROM people;
-- A set-returning PL/pgSQL function: the top-level statement counts.
CREATE FUNCTION lim.all_phones() RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    FOR r IN SELECT phone FROM lim.people WHERE id <= 6 LOOP RETURN NEXT r.phone; END LOOP;
    FOR r IN SELECT phone FROM lim.people WHERE id > 24 LOOP RETURN NEXT r.phone; END LOOP;
END $$;
SELECT count(*) FROM lim.all_phones();
-- Prepared statements.
PREPARE p(int) AS SELECT phone FROM people WHERE id <= $1;
EXECUTE p(5);
EXECUTE p(11);
-- A cursor counts cumulatively across FETCHes.
BEGIN;
DECLARE c CURSOR FOR SELECT id, phone FROM people ORDER BY id;
FETCH 4 FROM c;
FETCH 4 FROM c;
FETCH 4 FROM c;
ROLLBACK;
-- A parallel plan changes nothing.
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SELECT count(phone) FROM people;
SET force_parallel_mode = on;
SELECT count(phone) FROM people;
SELECT count(phone) FROM people WHERE id <= 10;
RESET force_parallel_mode;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
-- The role cannot lift its own limits.
SELECT pii_guard.set_export_limits('regress_lim', NULL, NULL);
SET pii_guard.audit_reads = off;
SET pii_guard.audit_max_row_keys = 0;
UPDATE pii_guard.profiles SET max_rows_per_statement = NULL;
CREATE FUNCTION lim.definer_phones() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER
AS $$ SELECT phone FROM lim.people $$;
SELECT count(*) FROM lim.definer_phones();
RESET ROLE;

-- The daily window: lower it to what was used today plus 12.
SELECT pii_guard.set_export_limits('regress_lim', 10, pii_guard.export_usage('postgres') + 12);
SET ROLE regress_lim;
SELECT count(phone) FROM people WHERE id <= 5;
SELECT count(phone) FROM people WHERE id <= 5;
SELECT count(phone) FROM people WHERE id <= 5;
RESET ROLE;

-- An export approval: the role may export that many rows, then no more
-- (the approved rows count toward the day, too).
SET ROLE regress_lim_approver;
SELECT pii_guard.approve_export('regress_lim', 25, now() + interval '1 hour',
                                'quarterly mailing') AS export_grant \gset
RESET ROLE;
SET ROLE regress_lim;
SELECT count(phone) FROM people WHERE id <= 25;
SELECT count(phone) FROM people WHERE id <= 2;
RESET ROLE;
SELECT rows, used, live FROM pii_guard.export_approvals WHERE grant_id = :export_grant;

-- Every refusal is audited (it survives its rollback).
CREATE FUNCTION lim.wait_events(k text, n int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..100 LOOP
        IF (SELECT count(*) FROM pii_guard.audit_log
             WHERE kind = k AND (k <> 'deny' OR operation = 'export')
               AND acting_role = 'regress_lim') >= n THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END $$;
SELECT lim.wait_events('deny', 9), lim.wait_events('export', 4);
SELECT relation, detail FROM pii_guard.audit_log
 WHERE kind = 'deny' AND operation = 'export' AND acting_role = 'regress_lim'
 ORDER BY event_id LIMIT 2;
SELECT kind, operation, rows, detail FROM pii_guard.audit_log
 WHERE kind = 'export' AND acting_role = 'regress_lim' ORDER BY event_id;
RESET search_path;
