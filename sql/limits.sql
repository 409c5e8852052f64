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
-- What counts is what leaves: rows only filtered, sorted or skipped count
-- nothing, nor count() of a protected column: a filter on all 30 phones
-- whose answer is one count, 12 ids in phone order, the 5 phones after an
-- OFFSET of 20, are under the limit.
SELECT count(*) AS ids FROM (SELECT id FROM people WHERE phone LIKE '138%') s;
SELECT id FROM people ORDER BY phone DESC, id LIMIT 12;
-- But the rows a filter on a protected value chooses count, whatever
-- their columns: which ids match is itself protected.  5 fit, 12 do not.
SELECT id FROM people WHERE phone LIKE '138%' ORDER BY id DESC LIMIT 5;
SELECT id FROM people WHERE phone LIKE '138%' ORDER BY id DESC LIMIT 12;
SELECT id, phone FROM people ORDER BY id OFFSET 20 LIMIT 5;
SELECT count(phone), count(DISTINCT phone) FROM people;
-- A value given to a function that could pass it on leaves: the role's own
-- function, or a volatile one like pg_notify() -- each counts.
CREATE TABLE lim.loot (v text);
CREATE FUNCTION lim.keep(v text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lim.loot VALUES (v);
    RETURN true;
END $$;
SELECT count(*) FROM people WHERE lim.keep(phone);
SELECT count(*) FROM lim.loot;
SELECT count(*) FROM people WHERE id <= 5 AND lim.keep(phone);
SELECT count(pg_notify('lim', phone)) FROM people;
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
-- A parallel plan changes nothing: reveal() is PARALLEL RESTRICTED, so the
-- leader produces every value and aggregates them (and counts each) -- the
-- plans are parallel.
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET enable_indexscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT array_length(array_agg(phone), 1) FROM people;
SELECT array_length(array_agg(phone), 1) FROM people;
SET force_parallel_mode = on;
EXPLAIN (COSTS OFF) SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 10;
SELECT array_length(array_agg(phone), 1) FROM people;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 10;
RESET force_parallel_mode;
-- A PARALLEL SAFE function can still read the view inside a worker, where
-- its rows would count in a budget of their own (17 rows, limit 10): a role
-- with limits gets no protected value in a parallel worker at all.
CREATE FUNCTION pg_temp.ph(i int) RETURNS text LANGUAGE sql PARALLEL SAFE STABLE
AS $$ SELECT phone FROM lim.people WHERE id = i $$;
SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF) SELECT id, pg_temp.ph(id) FROM people WHERE id % 2 = 0 OR id < 5;
SELECT id, pg_temp.ph(id) FROM people WHERE id % 2 = 0 OR id < 5;
SELECT id, pg_temp.ph(id) FROM people WHERE id = 3;
RESET parallel_leader_participation;
RESET enable_indexscan;
RESET enable_bitmapscan;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
SELECT pg_temp.ph(3);

-- A cursor counts cumulatively however it was opened: a refcursor that a
-- function returns,
CREATE FUNCTION lim.open_phones() RETURNS refcursor LANGUAGE plpgsql AS $$
DECLARE c refcursor;
BEGIN
    OPEN c FOR SELECT id, phone FROM lim.people ORDER BY id;
    RETURN c;
END $$;
BEGIN;
SELECT lim.open_phones() AS rc \gset
FETCH 8 FROM :"rc";
FETCH 8 FROM :"rc";
ROLLBACK;
-- a cursor declared through EXECUTE,
BEGIN;
DO $$ BEGIN EXECUTE 'DECLARE c2 CURSOR FOR SELECT id, phone FROM lim.people ORDER BY id'; END $$;
FETCH 8 FROM c2;
FETCH 8 FROM c2;
ROLLBACK;
-- a cursor whose name a failed DECLARE reused inside a savepoint,
BEGIN;
DECLARE c CURSOR FOR SELECT id, phone FROM people ORDER BY id;
FETCH 8 FROM c;
SAVEPOINT s;
DECLARE c CURSOR FOR SELECT 1;
ROLLBACK TO s;
FETCH 8 FROM c;
ROLLBACK;
-- and a cursor fetched from by another statement in between.
BEGIN;
DECLARE c CURSOR FOR SELECT id, phone FROM people ORDER BY id;
FETCH 8 FROM c;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id > 25;
FETCH 8 FROM c;
ROLLBACK;
-- A cursor WITH HOLD computes its remaining rows at COMMIT: they count
-- with the ones fetched before.
BEGIN;
DECLARE h CURSOR WITH HOLD FOR SELECT id, phone FROM people ORDER BY id;
FETCH 8 FROM h;
COMMIT;
BEGIN;
DECLARE h CURSOR WITH HOLD FOR SELECT id, phone FROM people WHERE id <= 10 ORDER BY id;
FETCH 4 FROM h;
COMMIT;
FETCH 8 FROM h;
CLOSE h;

-- Work done while planning belongs to the statement: the planner folds
-- this immutable function into a constant, running its 6 queries of 5 rows.
CREATE FUNCTION pg_temp.grab(n int) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE s text := ''; t text;
BEGIN
    FOR i IN 0..n-1 LOOP
        SELECT string_agg(phone, ',') INTO t FROM lim.people WHERE id > i*5 AND id <= i*5+5;
        s := s || t || ',';
    END LOOP;
    RETURN s;
END $$;
EXPLAIN (COSTS OFF) SELECT pg_temp.grab(1);
SELECT length(pg_temp.grab(6));
SELECT length(pg_temp.grab(2));
-- So do deferred triggers that run at commit,
CREATE TABLE lim.tick (x int);
CREATE FUNCTION lim.grab_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE t text;
BEGIN
    FOR i IN 0..5 LOOP
        SELECT string_agg(phone, ',') INTO t FROM lim.people WHERE id > i*5 AND id <= i*5+5;
    END LOOP;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER tick_grab AFTER INSERT ON lim.tick
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION lim.grab_at_commit();
INSERT INTO lim.tick VALUES (1);
DROP TABLE lim.tick;
-- and a procedure's statements between its COMMITs.
RESET ROLE;
CREATE PROCEDURE lim.grab_committing() LANGUAGE plpgsql AS $$
DECLARE t text;
BEGIN
    FOR i IN 0..5 LOOP
        SELECT string_agg(phone, ',') INTO t FROM lim.people WHERE id > i*5 AND id <= i*5+5;
        COMMIT;
    END LOOP;
END $$;
CREATE PROCEDURE lim.roll_back() LANGUAGE plpgsql AS $$ BEGIN ROLLBACK; END $$;
GRANT EXECUTE ON PROCEDURE lim.grab_committing(), lim.roll_back() TO regress_lim;
SET ROLE regress_lim;
CALL lim.grab_committing();
-- A procedure's ROLLBACK does not upset the nesting level that tells a
-- function's queries from statements: still one statement of 12 rows.
CALL lim.roll_back();
SELECT count(*) FROM lim.all_phones();

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
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 5;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 5;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 5;
RESET ROLE;

-- An export approval: the role may export that many rows beyond its
-- limits, then no more (the day is spent here, so every row is approved).
SET ROLE regress_lim_approver;
SELECT pii_guard.approve_export('regress_lim', 25, now() + interval '1 hour',
                                'quarterly mailing') AS export_grant \gset
RESET ROLE;
SET ROLE regress_lim;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 25;
SELECT array_length(array_agg(phone), 1) FROM people WHERE id <= 2;
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
-- (Failed statements' events name the view too, not its table's OID: the
-- name is taken when the rows are read, while the catalogs can be.)
SELECT kind, operation, relation, rows,
       replace(detail, 'approval ' || :export_grant, 'approval <export_grant>') AS detail
  FROM pii_guard.audit_log
 WHERE kind = 'export' AND acting_role = 'regress_lim' ORDER BY event_id;
RESET search_path;

-- The roles go (installcheck may run again on the same server).
SET client_min_messages = warning;
DROP OWNED BY regress_lim, regress_lim_approver CASCADE;
DROP ROLE regress_lim, regress_lim_approver;
RESET client_min_messages;
