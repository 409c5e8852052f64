--
-- Audit: write events atomic with the change, read and deny events through
-- the queue and the worker (a denial survives its rollback), no plaintext
-- anywhere, append-only, and tamper evidence.
--
\set VERBOSITY terse
CREATE SCHEMA shop;
GRANT USAGE ON SCHEMA shop TO PUBLIC;
SET search_path = shop, public;
-- (keys creates regress_clerk too when the suites run in order)
DO $$ BEGIN CREATE ROLE regress_clerk; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE ROLE regress_auditor IN ROLE pii_guard_auditor;
CREATE TABLE clients (id int PRIMARY KEY, name text, phone pii_guard.encrypted_text, note text);
INSERT INTO clients VALUES (1, 'Ann', '13812345678', 'vip'), (2, 'Bob', '13900001111', NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON clients TO regress_clerk;
SELECT pii_guard.protect_table('clients') IS NOT NULL AS protected;
SELECT pii_guard.protect_column('clients', 'phone', 'sensitive', 'public.mask_tail(text)')
 WHERE false;  -- (no mask: the clerk has no profile, so phone is hidden)

-- Events the worker writes arrive asynchronously: wait for them.
CREATE FUNCTION wait_for_events(kinds text[], n int) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    i int := 0;
BEGIN
    LOOP
        IF (SELECT count(*) FROM pii_guard.audit_log WHERE kind = ANY (kinds)
               AND relation IS DISTINCT FROM 'ignored') >= n THEN
            RETURN true;
        END IF;
        i := i + 1;
        IF i > 100 THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.1);
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
END
$$;
-- (until a condition holds)
CREATE FUNCTION wait_until(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    ok boolean;
BEGIN
    FOR i IN 1..100 LOOP
        EXECUTE cond INTO ok;
        IF ok THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;
CREATE FUNCTION wait_for_event(start bigint, k text, op text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..100 LOOP
        IF EXISTS (SELECT 1 FROM pii_guard.audit_log
                    WHERE event_id > start AND kind = k AND operation = op) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
    RETURN false;
END
$$;
CREATE FUNCTION events_since(start bigint)
RETURNS TABLE (kind text, session_role text, relation text, operation text,
               columns_clear text[], columns_masked text[], columns_changed text[],
               rows bigint, row_keys text[], detail text)
LANGUAGE sql AS $$
    SELECT kind, session_role, relation, operation, columns_clear, columns_masked,
           columns_changed, rows, row_keys, detail
      FROM pii_guard.audit_log WHERE event_id > start ORDER BY event_id
$$;
SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset

-- Writes through the view and on the base table: one event per statement,
-- with row keys and changed column names, never values.
SET ROLE regress_clerk;
INSERT INTO clients (id, name, phone) VALUES (3, 'Cid', '13711112222');
UPDATE clients SET note = 'called' WHERE id = 3;
DELETE FROM clients WHERE id = 3;
RESET ROLE;
UPDATE shop_pii.clients SET name = name || '!' WHERE id IN (1, 2);
SELECT kind, session_role, relation, operation, columns_changed, rows, row_keys
  FROM events_since(:start) WHERE kind = 'write';

-- A write that rolls back leaves no write event (atomic with the change).
SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset
BEGIN;
UPDATE shop_pii.clients SET note = 'rolled back' WHERE id = 1;
ROLLBACK;
SELECT count(*) AS write_events_after_rollback FROM events_since(:start) WHERE kind = 'write';

-- A read by a governed role becomes a read event: which columns it saw
-- clear or masked, how many rows, and which row keys.
SELECT pii_guard.set_clearance('regress_clerk', 'sensitive');
SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset
SET ROLE regress_clerk;
SELECT id, name, phone FROM clients WHERE phone = '13812345678' OR id = 2 ORDER BY id;
RESET ROLE;
-- (Read events of the writes above may still be arriving: wait for this
-- SELECT's own event.)
SELECT wait_for_event(:start, 'read', 'SELECT');
SELECT kind, session_role, relation, operation, columns_clear, columns_masked, rows, row_keys
  FROM events_since(:start) WHERE kind = 'read' AND relation = 'shop.clients'
   AND operation = 'SELECT';

-- The same rows read twice in one statement, in another order, by two
-- sites each: each row once in the count and in the row keys.
SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset
SET ROLE regress_clerk;
SELECT id, name, phone FROM clients WHERE id IN (1, 2)
UNION ALL
SELECT id, phone, name FROM clients WHERE id IN (2, 1) ORDER BY 1, 2;
RESET ROLE;
SELECT wait_for_event(:start, 'read', 'SELECT');
SELECT columns_clear, rows, (SELECT array_agg(k ORDER BY k) FROM unnest(row_keys) k) AS row_keys
  FROM events_since(:start) WHERE kind = 'read' AND relation = 'shop.clients'
   AND operation = 'SELECT';

-- An UPDATE sending a column back as it was read (SET phone = phone, as
-- an ORM's save does) reads nothing; one copying another row's value into
-- it (UPDATE ... FROM) reads that row.
SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset
SET ROLE regress_clerk;
UPDATE clients SET phone = phone WHERE id = 1;
UPDATE clients c SET phone = c2.phone FROM clients c2 WHERE c2.id = 2 AND c.id = 1;
RESET ROLE;
SELECT wait_for_event(:start, 'read', 'UPDATE');
SELECT operation, columns_clear, rows, row_keys
  FROM events_since(:start) WHERE kind = 'read' AND relation = 'shop.clients';
UPDATE shop_pii.clients SET phone = '13812345678' WHERE id = 1;

-- Row keys and column names are kept whole, whatever they hold: a key
-- with a comma or a backslash is one key (in audit_log and in
-- audit_row_access).  COPY through the masking view, one row per trigger
-- call underneath, is one write event for the statement, as an INSERT is,
-- and no read event (nothing is read back).
CREATE TABLE vendors (code text PRIMARY KEY, "tel,ext" pii_guard.encrypted_text, note text);
GRANT SELECT, INSERT ON vendors TO regress_clerk;
SELECT pii_guard.protect_table('vendors') IS NOT NULL AS protected;
SELECT pii_guard.protect_column('vendors', 'tel,ext', 'sensitive') IS NOT NULL AS protected;
SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset
SET ROLE regress_clerk;
INSERT INTO vendors VALUES ('ACME,Inc', '13800000001'), ('back\slash', '13800000002');
COPY vendors (code, "tel,ext") FROM STDIN;
one,two	13800000003
three	13800000004
x\\y	13800000005
\.
SELECT code, "tel,ext" FROM vendors ORDER BY code;
RESET ROLE;
SELECT wait_for_event(:start, 'read', 'SELECT');
SELECT kind, operation, rows, columns_changed, columns_clear,
       (SELECT array_agg(k ORDER BY k) FROM unnest(row_keys) k) AS row_keys
  FROM events_since(:start) WHERE relation = 'shop.vendors' ORDER BY kind DESC, operation;
SELECT row_key, kind FROM pii_guard.audit_row_access
 WHERE event_id > :start AND relation = 'shop.vendors' ORDER BY kind, row_key;
-- A read is a value that leaves: a protected column compared in a
-- condition that chooses rows (a search that finds nothing, a count) or
-- written back to itself by an UPDATE's SET (col = col) is no read -- a
-- search is said in the event's detail, with no rows counted; what
-- RETURNING returns is, named by the statement that returned it.
GRANT UPDATE ON vendors TO regress_clerk;
SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset
SET ROLE regress_clerk;
SELECT code FROM vendors WHERE "tel,ext" = '10000000000';
SELECT count(*) FROM vendors WHERE "tel,ext" LIKE '138%';
UPDATE vendors SET "tel,ext" = "tel,ext" WHERE code = 'three' RETURNING code;
UPDATE vendors SET code = code WHERE "tel,ext" = '13800000004' RETURNING code, "tel,ext";
-- ... but a value that reaches a function (here in a condition), or is
-- copied into another column, was read: counted.
SELECT count(*) FROM vendors WHERE length("tel,ext") = 11 AND code = 'three';
UPDATE vendors SET note = "tel,ext" WHERE code = 'three';
RESET ROLE;
SELECT wait_until(format($$SELECT count(*) >= 6 FROM pii_guard.audit_log
                            WHERE event_id > %s AND relation = 'shop.vendors'$$, :start));
SELECT pg_sleep(0.3);
SELECT kind, operation, rows, columns_changed, columns_clear, row_keys, detail
  FROM events_since(:start) WHERE relation = 'shop.vendors'
 ORDER BY kind DESC, columns_clear, detail, operation, columns_changed NULLS FIRST;
SELECT pii_guard.unprotect_table('vendors') IS NOT NULL AS unprotected;
DROP TABLE vendors;

-- A denial inside a transaction that rolls back is still recorded.
SELECT pii_guard.encrypt('x')::text AS envelope \gset
SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset
SET ROLE regress_clerk;
BEGIN;
SELECT name FROM shop_pii.clients;
ROLLBACK;
BEGIN;
SELECT pii_guard.decrypt(:'envelope'::pii_guard.encrypted_text) IS NULL;
ROLLBACK;
BEGIN;
SELECT pii_guard.encrypt('x') IS NULL;
ROLLBACK;
RESET ROLE;
SELECT wait_for_events('{deny}', (SELECT count(*) + 3 FROM pii_guard.audit_log WHERE kind = 'deny' AND event_id <= :start)::int);
SELECT kind, acting_role, relation, operation, detail FROM pii_guard.audit_log
 WHERE event_id > :start AND kind = 'deny' AND acting_role = 'regress_clerk' ORDER BY event_time, event_id;

-- Policy changes are admin events.
SELECT kind, operation, detail FROM pii_guard.audit_log
 WHERE kind = 'admin' AND detail LIKE '%clients%' OR detail LIKE 'regress_clerk%' ORDER BY event_id;

-- A grant's issue and its end by itself are admin events.
CREATE ROLE regress_approver IN ROLE pii_guard_approver;
SET ROLE regress_approver;
SELECT pii_guard.approve('regress_clerk', 'clients', clock_timestamp() + interval '1 second',
                         'callback requested') AS grant_id \gset
RESET ROLE;
SELECT pg_sleep(1.2);
SELECT wait_until(format($$SELECT EXISTS (SELECT 1 FROM pii_guard.audit_log WHERE kind = 'admin'
                            AND operation = 'grant_expired' AND detail LIKE 'grant %s:%%')$$, :grant_id));
SELECT operation, session_role,
       regexp_replace(regexp_replace(detail, '(until|at) .*', '\1 ...'), '^grant [0-9]+', 'grant N') AS detail
  FROM pii_guard.audit_log
 WHERE kind = 'admin' AND operation IN ('approve', 'grant_expired')
   AND detail LIKE 'grant ' || :grant_id || ':%' ORDER BY event_id;

-- Approvers cannot write audit events themselves, and a grant inserted
-- directly (not through approve()) is audited and cannot be backdated.
SET ROLE regress_approver;
SELECT pii_guard._audit_admin('set_clearance', 'forged');
SELECT pii_guard._audit_deny('decrypt', 'forged');
INSERT INTO pii_guard.grants (kind, role, base, valid_from, valid_until, reason, approver)
VALUES ('unmask', 'regress_clerk', 'shop_pii.clients', '2020-01-01', now() + interval '1 hour', 'direct', 'postgres')
RETURNING grant_id AS direct_grant \gset
RESET ROLE;
SELECT valid_from > now() - interval '1 minute' AS starts_now, approver::text
  FROM pii_guard.grants WHERE grant_id = :direct_grant;
SELECT operation, regexp_replace(regexp_replace(detail, '(until|at) .*', '\1 ...'), '^grant [0-9]+', 'grant N') AS detail
  FROM pii_guard.audit_log
 WHERE kind = 'admin' AND detail LIKE 'grant ' || :direct_grant || ':%';
SELECT count(*) AS forged FROM pii_guard.audit_log WHERE detail = 'forged';

-- No plaintext of a protected column anywhere in the log, though a query
-- put a phone number in its WHERE clause.
SELECT count(*) AS rows_with_plaintext
  FROM pii_guard.audit_log a
 WHERE a::text LIKE '%13812345678%' OR a::text LIKE '%13711112222%';

-- The auditor reads the log and its views.
SET ROLE regress_auditor;
SELECT count(*) > 0 AS auditor_reads FROM pii_guard.audit_log;
SELECT DISTINCT relation, row_key, access FROM pii_guard.audit_row_access
 WHERE relation = 'shop.clients' AND row_key = '2' AND kind = 'read';
SELECT count(*) > 0 AS denials FROM pii_guard.audit_denials;
SELECT count(*) > 0 AS admin_changes FROM pii_guard.audit_admin_changes;
SELECT profile, clearance, clear_levels, member FROM pii_guard.access_review
 WHERE profile = 'regress_clerk';
SELECT name FROM shop.clients;
RESET ROLE;

-- Append-only, for every role including superusers.
UPDATE pii_guard.audit_log SET detail = 'x' WHERE event_id = 1;
DELETE FROM pii_guard.audit_log WHERE event_id = 1;
TRUNCATE pii_guard.audit_log;
DELETE FROM pii_guard.audit_seal;
INSERT INTO pii_guard.audit_log (event_time, kind, session_role, acting_role)
VALUES (now(), 'read', 'someone', 'someone');
SET ROLE regress_clerk;
SELECT count(*) FROM pii_guard.audit_log;
RESET ROLE;

-- Tamper evidence: wait until the worker has sealed everything, then, as a
-- superuser who switches the guards off, change, delete or forge a row.
CREATE FUNCTION wait_sealed() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    i int := 0;
BEGIN
    WHILE EXISTS (SELECT 1 FROM pii_guard.audit_log a
                   WHERE NOT EXISTS (SELECT 1 FROM pii_guard.audit_seal s WHERE s.event_id = a.event_id)) LOOP
        i := i + 1;
        IF i > 100 THEN RETURN false; END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN true;
END
$$;
SELECT wait_sealed();
SELECT * FROM pii_guard.verify_audit();
SELECT min(event_id) + 2 AS victim FROM pii_guard.audit_log \gset
BEGIN;
ALTER TABLE pii_guard.audit_log DISABLE TRIGGER audit_log_guard;
UPDATE pii_guard.audit_log SET session_role = 'someone_else' WHERE event_id = :victim;
SELECT event_id = :victim AS found_changed, seal_seq IS NOT NULL AS sealed, problem FROM pii_guard.verify_audit();
ROLLBACK;
BEGIN;
ALTER TABLE pii_guard.audit_log DISABLE TRIGGER audit_log_guard;
DELETE FROM pii_guard.audit_log WHERE event_id = :victim;
SELECT event_id = :victim AS found_deleted, problem FROM pii_guard.verify_audit();
ROLLBACK;
BEGIN;
ALTER TABLE pii_guard.audit_log DISABLE TRIGGER audit_log_guard;
INSERT INTO pii_guard.audit_log (event_time, kind, session_role, acting_role, row_mac)
VALUES (now(), 'read', 'forger', 'forger', '\x00');
SELECT problem FROM pii_guard.verify_audit();
ROLLBACK;
BEGIN;
ALTER TABLE pii_guard.audit_seal DISABLE TRIGGER audit_seal_guard;
DELETE FROM pii_guard.audit_seal WHERE event_id = :victim;
SELECT problem FROM pii_guard.verify_audit();
ROLLBACK;
SELECT * FROM pii_guard.verify_audit();

-- A cut or rewritten tail verifies by itself: the newest rows and their
-- seals deleted leave a shorter chain.  Against an anchor kept outside
-- (the head the worker logs after each sealing, here read from the chain
-- as it was) it does not.  A malformed anchor is an error.
SELECT s.seal_seq || ':' || encode(s.chain_hash, 'hex') AS anchor, s.event_id AS anchor_event
  FROM pii_guard.audit_seal s ORDER BY s.seal_seq DESC LIMIT 1 \gset
SELECT count(*) AS problems_against_anchor FROM pii_guard.verify_audit(:'anchor');
BEGIN;
ALTER TABLE pii_guard.audit_log DISABLE TRIGGER audit_log_guard;
ALTER TABLE pii_guard.audit_seal DISABLE TRIGGER audit_seal_guard;
DELETE FROM pii_guard.audit_seal WHERE seal_seq > (SELECT max(seal_seq) - 3 FROM pii_guard.audit_seal);
DELETE FROM pii_guard.audit_log a WHERE NOT EXISTS (SELECT 1 FROM pii_guard.audit_seal s WHERE s.event_id = a.event_id);
SELECT count(*) AS problems_without_anchor FROM pii_guard.verify_audit();
SELECT event_id, seal_seq IS NOT NULL AS at_anchor, problem FROM pii_guard.verify_audit(:'anchor');
ROLLBACK;
BEGIN;
ALTER TABLE pii_guard.audit_seal DISABLE TRIGGER audit_seal_guard;
UPDATE pii_guard.audit_seal SET chain_hash = pii_guard._audit_chain_next(NULL, 0, NULL)
 WHERE seal_seq = split_part(:'anchor', ':', 1)::bigint;
SELECT event_id = :anchor_event AS at_anchor_event, problem FROM pii_guard.verify_audit(:'anchor')
 WHERE problem LIKE '%anchor%';
ROLLBACK;
SELECT * FROM pii_guard.verify_audit('12:xyz');

-- pii_guard's own tables cannot be put under write audit (audit rows
-- about audit rows; they are guarded by triggers of their own).
SELECT pii_guard.audit_table('pii_guard.audit_log');
SELECT pii_guard.audit_table('pii_guard.audit_seal', 'event_id');
SELECT pii_guard.audit_table('pii_guard.data_keys');
SELECT pii_guard.audit_table('pii_guard.grants');
SELECT pii_guard.protect_table('pii_guard.profiles');

-- The audit trigger functions are pii_guard's: nobody else can attach them
-- to a table of their own -- grants_audit() (SECURITY DEFINER) would write
-- forged admin events as the extension owner.
CREATE ROLE regress_forger;
GRANT CREATE ON SCHEMA shop TO regress_forger;
SET ROLE regress_forger;
CREATE TABLE shop.forged (grant_id bigint, kind text, role regrole, base regclass,
                          columns name[], row_keys text[], rows bigint,
                          valid_until timestamptz, reason text, approver regrole);
CREATE TRIGGER forge1 AFTER INSERT ON shop.forged
    FOR EACH ROW EXECUTE FUNCTION pii_guard.grants_audit();
CREATE TRIGGER forge2 AFTER INSERT ON shop.forged REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION pii_guard.audit_write('grant_id');
CREATE TRIGGER forge3 BEFORE INSERT ON shop.forged
    FOR EACH ROW EXECUTE FUNCTION pii_guard.audit_log_guard();
INSERT INTO shop.forged VALUES (424242, 'unmask', 'regress_clerk', NULL, NULL, NULL, NULL,
                                now(), 'forged', 'regress_approver');
RESET ROLE;
SELECT count(*) AS forged_events FROM pii_guard.audit_log WHERE detail LIKE 'grant 424242:%';
DROP TABLE shop.forged;
REVOKE CREATE ON SCHEMA shop FROM regress_forger;
DROP ROLE regress_forger;

-- audit_write() used as anything but an AFTER ... FOR EACH STATEMENT
-- trigger with a row key says so, with its SQLSTATE.
CREATE TABLE shop.misused (id int PRIMARY KEY);
CREATE TRIGGER misused AFTER INSERT ON shop.misused
    FOR EACH ROW EXECUTE FUNCTION pii_guard.audit_write('id');
\set VERBOSITY sqlstate
INSERT INTO shop.misused VALUES (1);
\set VERBOSITY terse
DROP TABLE shop.misused;

-- No role may call or attach pii_guard's trigger functions: none is
-- executable by PUBLIC (the triggers fire all the same).
SELECT p.oid::regprocedure AS public_trigger_function
  FROM pg_proc p
 WHERE p.pronamespace = 'pii_guard'::regnamespace
   AND p.prorettype IN ('trigger'::regtype, 'event_trigger'::regtype)
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1::text;
CREATE ROLE regress_tblowner;
GRANT CREATE ON SCHEMA shop TO regress_tblowner;
CREATE TABLE shop.owned (id int PRIMARY KEY, v text);
ALTER TABLE shop.owned OWNER TO regress_tblowner;
SELECT pii_guard.audit_table('shop.owned');
SET ROLE regress_tblowner;
-- forged write events: attaching audit_write to a table of one's own
CREATE TABLE shop.forged (id int PRIMARY KEY);
CREATE TRIGGER forged AFTER INSERT ON shop.forged REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pii_guard.audit_write('id');
DROP TABLE shop.forged;
-- The owner cannot switch the write audit of its table off.
ALTER TABLE shop.owned DISABLE TRIGGER pii_guard_audit_insert;
ALTER TABLE shop.owned ENABLE REPLICA TRIGGER pii_guard_audit_update;
ALTER TABLE shop.owned DISABLE TRIGGER ALL;
ALTER TABLE shop.owned DISABLE TRIGGER USER;
DROP TRIGGER pii_guard_audit_delete ON shop.owned;
ALTER TRIGGER pii_guard_audit_insert ON shop.owned RENAME TO x;
CREATE OR REPLACE TRIGGER pii_guard_audit_insert AFTER INSERT ON shop.owned
    FOR EACH STATEMENT EXECUTE FUNCTION suppress_redundant_updates_trigger();
-- its own triggers stay its own
CREATE FUNCTION shop.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER noop AFTER INSERT ON shop.owned FOR EACH STATEMENT EXECUTE FUNCTION shop.noop();
ALTER TABLE shop.owned DISABLE TRIGGER noop;
DROP TRIGGER noop ON shop.owned;
INSERT INTO shop.owned VALUES (1, 'a');
RESET ROLE;
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'shop.owned'::regclass ORDER BY 1;
SELECT count(*) AS write_events FROM pii_guard.audit_log
 WHERE event_id > :start AND kind = 'write' AND relation = 'shop.owned';
-- A superuser may, and it is an admin event.
ALTER TABLE shop.owned DISABLE TRIGGER ALL;
ALTER TABLE shop.owned ENABLE TRIGGER ALL;
DROP TRIGGER pii_guard_audit_truncate ON shop.owned;
SELECT operation, relation, regexp_replace(detail, 'role \S+', 'role R') AS detail
  FROM pii_guard.audit_log
 WHERE event_id > :start AND kind = 'admin' AND operation = 'audit_trigger_changed'
 ORDER BY event_id;
DROP TABLE shop.owned;
DROP FUNCTION shop.noop();
REVOKE CREATE ON SCHEMA shop FROM regress_tblowner;
-- (The worker names the roles of queued events when it writes them: wait
-- for the last refusal, coalescing may hold it for a worker cycle.)
SELECT wait_until($$SELECT count(*) >= 7 FROM pii_guard.audit_denials
                     WHERE acting_role = 'regress_tblowner'$$);
DROP ROLE regress_tblowner;

-- Exports: a prepared INSERT ... SELECT and CREATE TABLE AS EXECUTE are
-- export events, like the same statements sent unprepared.
SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset
SELECT count(*) AS exports_before FROM pii_guard.audit_log WHERE kind = 'export' \gset
SET ROLE regress_clerk;
CREATE TEMP TABLE sink (id int, phone text);
INSERT INTO sink SELECT id, phone FROM clients;
PREPARE ins AS INSERT INTO sink SELECT id, phone FROM clients;
EXECUTE ins;
CREATE TEMP TABLE sink2 AS SELECT id, phone FROM clients;
PREPARE sel AS SELECT id, phone FROM clients;
CREATE TEMP TABLE sink3 AS EXECUTE sel;
DEALLOCATE ins;
DEALLOCATE sel;
RESET ROLE;
SELECT wait_for_events('{export}', :exports_before + 4);
SELECT kind, operation, rows FROM pii_guard.audit_log
 WHERE event_id > :start AND acting_role = 'regress_clerk' AND kind IN ('read', 'export')
 ORDER BY kind, operation;

-- Refusals are audited, PostgreSQL's own on a masking view too: a
-- governed role without a grant on the view, and the table owner refused
-- above.
SELECT coalesce(max(event_id), 0) AS start2 FROM pii_guard.audit_log \gset
CREATE ROLE regress_nogrant;
SELECT pii_guard.set_clearance('regress_nogrant', 'internal');
SET ROLE regress_nogrant;
SELECT name FROM clients;
DELETE FROM clients WHERE id = 1;
RESET ROLE;
SELECT wait_until($$SELECT count(*) >= 9 FROM pii_guard.audit_denials
                     WHERE acting_role IN ('regress_nogrant', 'regress_tblowner')$$);
SELECT acting_role, relation, operation, detail FROM pii_guard.audit_denials
 WHERE acting_role IN ('regress_nogrant', 'regress_tblowner')
 ORDER BY acting_role, operation, detail;
-- PostgreSQL's own privilege refusals are deny events when they concern
-- pii_guard's objects or a protected relation: each once, naming the
-- object schema-qualified and the statement refused.  A refusal on
-- anything else (pg_authid, below, before the last one) is not recorded.
SELECT coalesce(max(event_id), 0) AS start3 FROM pii_guard.audit_log \gset
SET ROLE regress_nogrant;
SELECT * FROM pii_guard.profiles;
SELECT pii_guard.verify_audit();
TRUNCATE pii_guard.audit_log;
SELECT nextval('pii_guard.grants_grant_id_seq');
ALTER TABLE clients ADD COLUMN extra int;
DROP VIEW clients;
SELECT count(*) FROM pg_catalog.pg_authid;
GRANT SELECT ON pii_guard.grants TO regress_nogrant;
RESET ROLE;
SELECT wait_until(format($$SELECT count(*) >= 7 FROM pii_guard.audit_denials
                            WHERE event_id > %s AND acting_role = 'regress_nogrant'$$, :start3));
SELECT relation, operation, detail FROM pii_guard.audit_log
 WHERE event_id > :start3 AND acting_role = 'regress_nogrant' ORDER BY event_time, event_id;
SELECT pii_guard.drop_profile('regress_nogrant');
DROP ROLE regress_nogrant;

-- Events are written straight to audit_log and its indexes (not by the
-- executor): every index holds exactly the rows it should, the partial
-- index of recorded grant expiries included (amcheck, every heap row; an
-- inconsistency is an error).
SELECT count(*) > 0 AS grant_expiries_recorded FROM pii_guard.audit_log
 WHERE kind = 'admin' AND operation = 'grant_expired';
-- An index a DBA adds, of another kind, is maintained too (the executor's
-- way, from the next event on).
CREATE INDEX audit_log_kind_hash ON pii_guard.audit_log USING hash (kind);
SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset
SELECT pii_guard.set_clearance('regress_clerk', 'sensitive', 'after the hash index');
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM pii_guard.audit_log WHERE kind = 'admin';
SELECT count(*) AS admin_events_since_through_hash_index FROM pii_guard.audit_log
 WHERE kind = 'admin' AND event_id > :start;
RESET enable_seqscan;
RESET enable_bitmapscan;
DROP INDEX pii_guard.audit_log_kind_hash;
CREATE EXTENSION amcheck;
SELECT i.indexrelid::regclass AS index, bt_index_check(i.indexrelid, true) IS NOT NULL AS checked
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
 WHERE i.indrelid = 'pii_guard.audit_log'::regclass AND a.amname = 'btree' ORDER BY 1;
SELECT count(*) AS found_through_partial_index FROM pii_guard.audit_log
 WHERE kind = 'admin' AND operation = 'grant_expired' AND split_part(detail, ':', 1) LIKE 'grant %';
DROP EXTENSION amcheck;
-- The time index is a BRIN index (cheap per event: event_time follows the
-- log's order); through it, every row is found, summarized or not.
SELECT amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.oid = 'pii_guard.audit_log_time'::regclass;
SELECT brin_summarize_new_values('pii_guard.audit_log_time') >= 0 AS summarized;
SELECT pii_guard._audit_admin('after_summary', 'an event in an unsummarized range') > 0 AS written;
SELECT count(*) AS all_rows FROM pii_guard.audit_log \gset
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM pii_guard.audit_log WHERE event_time > '-infinity';
SELECT count(*) = :all_rows AS all_rows_through_brin FROM pii_guard.audit_log WHERE event_time > '-infinity';
RESET enable_seqscan;

-- The row MAC does not depend on the session's client encoding: a write
-- from a LATIN1 session whose row key LATIN1 cannot show (chr(24352), a
-- Chinese character) is recorded, and verified from GBK and LATIN1
-- sessions as from any other.
CREATE TABLE enc_keys (k text PRIMARY KEY, v int);
INSERT INTO enc_keys VALUES (chr(24352) || chr(19977), 1);
SELECT pii_guard.audit_table('enc_keys');
SET client_encoding = 'LATIN1';
UPDATE enc_keys SET v = 2;
RESET client_encoding;
SELECT wait_until($$SELECT NOT EXISTS (SELECT 1 FROM pii_guard.audit_log l
                     WHERE NOT EXISTS (SELECT 1 FROM pii_guard.audit_seal s WHERE s.event_id = l.event_id))$$);
SELECT row_keys = ARRAY[chr(24352) || chr(19977)] AS key_recorded FROM pii_guard.audit_log
 WHERE relation = 'shop.enc_keys' AND operation = 'UPDATE';
SET client_encoding = 'GBK';
SELECT count(*) AS problems_seen_from_gbk FROM pii_guard.verify_audit();
SET client_encoding = 'LATIN1';
SELECT count(*) AS problems_seen_from_latin1 FROM pii_guard.verify_audit();
RESET client_encoding;
SELECT count(*) AS problems FROM pii_guard.verify_audit();
SELECT pii_guard.unaudit_table('enc_keys');
DROP TABLE enc_keys;

SELECT pii_guard.unprotect_table('clients');
RESET search_path;

-- The roles go (installcheck may run again on the same server).
SET client_min_messages = warning;
DROP OWNED BY regress_approver, regress_auditor, regress_clerk CASCADE;
DROP ROLE regress_approver, regress_auditor, regress_clerk;
RESET client_min_messages;
