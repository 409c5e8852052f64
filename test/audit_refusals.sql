-- pgTAP: every privilege refusal PostgreSQL's own checks raise on
-- pii_guard's objects or on a protected relation is a deny event -- once
-- per refusal, naming the object schema-qualified and what was refused --
-- whatever the object (tables, views, sequences, functions, procedures,
-- schemas; reading, writing, truncating, altering, dropping, granting) and
-- however the statement is sent: each attempt below fails inside an
-- exception block (pg_temp.undone), which catches the error before it
-- reaches the server log, and some are nested in a DO block or an SQL
-- function.  A refusal on anything else is not pii_guard's to record.
-- (Refusals that fail the whole statement: regress/audit.)
BEGIN;
SELECT plan(9);
\ir tap/undone.sql

-- What each governed seed role tries, and the
-- event each attempt must leave: object and operation, or none.
CREATE TEMP TABLE attempts (n int PRIMARY KEY, sql text, prelude text, object text, operation text);
INSERT INTO attempts VALUES
 (1, 'SELECT * FROM pii_guard.profiles', NULL, 'pii_guard.profiles', 'SELECT'),
 (2, 'UPDATE pii_guard.column_rules SET level = level', NULL, 'pii_guard.column_rules', 'UPDATE'),
 (3, 'INSERT INTO pii_guard.grants DEFAULT VALUES', NULL, 'pii_guard.grants', 'INSERT'),
 (4, 'DELETE FROM pii_guard.audit_log', NULL, 'pii_guard.audit_log', 'DELETE'),
 (5, 'TRUNCATE pii_guard.audit_seal', NULL, 'pii_guard.audit_seal', 'TRUNCATE TABLE'),
 (6, 'SELECT * FROM pii_guard.master_keys', NULL, 'pii_guard.master_keys', 'SELECT'),
 (7, $$SELECT nextval('pii_guard.grants_grant_id_seq')$$, NULL, 'pii_guard.grants_grant_id_seq', 'SELECT'),
 (8, 'SELECT pii_guard.verify_audit()', NULL, 'pii_guard.verify_audit', 'EXECUTE'),
 (9, $$SELECT pii_guard.set_clearance('intern', 'sensitive', 'self-service')$$, NULL,
     'pii_guard.set_clearance', 'EXECUTE'),
 (10, $$CALL pii_guard.reencrypt_column('customers', 'phone', 10)$$, NULL,
      'pii_guard.reencrypt_column', 'EXECUTE'),
 (11, 'DO $d$BEGIN PERFORM pii_guard.rotate_data_key(); END$d$', NULL,
      'pii_guard.rotate_data_key', 'EXECUTE'),
 (12, 'SELECT pg_temp.tap_peek()',
      'CREATE FUNCTION pg_temp.tap_peek() RETURNS bigint LANGUAGE sql AS $f$SELECT count(*) FROM pii_guard.grants$f$',
      'pii_guard.grants', 'SELECT'),
 (13, 'SELECT * FROM public_pii.customers', NULL, 'public_pii.customers', 'direct access'),
 (14, 'ALTER TABLE customers ADD COLUMN tap_extra int', NULL, 'public_pii.customers', 'ALTER TABLE'),
 (15, 'DROP VIEW customers', NULL, 'public.customers', 'DROP VIEW'),
 (16, 'ALTER FUNCTION pii_guard.verify_audit() RENAME TO tap_gone', NULL,
      'pii_guard.verify_audit', 'ALTER FUNCTION'),
 (17, 'GRANT SELECT ON pii_guard.grants TO PUBLIC', NULL, 'pii_guard.grants', 'GRANT'),
 (18, 'CREATE TABLE public_pii.tap_side (a int)', NULL, 'public_pii', 'CREATE TABLE'),
 (19, 'SELECT count(*) FROM pg_catalog.pg_authid', NULL, NULL, NULL),
 (20, 'CREATE TABLE public.tap_side (a int)', NULL, NULL, NULL);

-- The worker writes deny events asynchronously: wait for n of who's.
CREATE FUNCTION pg_temp.wait_denials(who name, since bigint, n int) RETURNS boolean
LANGUAGE sql AS $$
    SELECT pg_temp.wait_until(format('SELECT count(*) >= %s FROM pii_guard.audit_log
                                        WHERE event_id > %s AND kind = ''deny'' AND acting_role = %L',
                                     n, since, who))
$$;

SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset
CREATE TEMP TABLE outcomes AS
SELECT r.who, a.n, pg_temp.undone(r.who, a.sql, 'status', NULL, a.prelude) AS outcome
  FROM (VALUES ('intern_fay'::name), ('sales_bob'), ('support_dan'), ('mkt_amy')) r(who),
       attempts a
 ORDER BY r.who, a.n;

-- Every attempt is refused (42501), as every role.
SELECT is((SELECT string_agg(who || ' #' || n || ': ' || outcome, '; ' ORDER BY who, n)
             FROM outcomes
            WHERE outcome NOT LIKE '42501 %'),
          NULL, 'every attempt is refused with 42501, as every role');

-- Each refusal of pii_guard's objects or of a protected relation is one
-- deny event, naming the object and what was refused; the others none.
CREATE TEMP TABLE expected AS
SELECT r.who, a.n, a.object, a.operation
  FROM (SELECT DISTINCT who FROM outcomes) r, attempts a
 WHERE a.object IS NOT NULL;
SELECT bool_and(pg_temp.wait_denials(who, :start, n)) AS waited
  FROM (SELECT who, count(*)::int AS n FROM expected GROUP BY who) w \gset
SELECT is(
    (SELECT string_agg(relation || ' ' || operation, ', ' ORDER BY event_time, event_id)
       FROM pii_guard.audit_log
      WHERE event_id > :start AND kind = 'deny' AND acting_role = r.who),
    (SELECT string_agg(object || ' ' || operation, ', ' ORDER BY n) FROM expected e WHERE e.who = r.who),
    r.who || ': one deny event per refusal, in order, naming the object and the operation')
  FROM (SELECT DISTINCT who FROM outcomes) r ORDER BY r.who;

-- Nothing of what was attempted but names is in the events.
SELECT is((SELECT count(*)::int FROM pii_guard.audit_log
            WHERE event_id > :start AND kind = 'deny'
              AND (detail ~ 'self-service|tap_extra|tap_gone' OR relation ~ 'pg_authid|tap_side')),
          0, 'the events hold object names, not the statements'' other text');

-- The same refusal again and again (a loop of them) is counted each time,
-- in one event (identical refusals close together coalesce).
SELECT coalesce(max(event_id), 0) AS start2 FROM pii_guard.audit_log \gset
SELECT is(pg_temp.undone('intern_fay',
            $q$DO $d$BEGIN FOR i IN 1..300 LOOP BEGIN PERFORM pii_guard.verify_audit();
                 EXCEPTION WHEN insufficient_privilege THEN NULL; END; END LOOP; END$d$$q$),
          'no error', '300 refusals caught in a loop');
SELECT pg_temp.wait_denials('intern_fay', :start2, 1) AS waited \gset
SELECT pg_sleep(0.3);
SELECT is((SELECT sum(attempts)::int || ' attempts in ' || count(*) || ' event(s)'
             FROM pii_guard.audit_denials
            WHERE event_id > :start2 AND acting_role = 'intern_fay'
              AND relation = 'pii_guard.verify_audit'),
          '300 attempts in 1 event(s)', '... are all counted, in one deny event');

-- pii_guard's own refusals are recorded once, not again as PostgreSQL's.
SELECT is((SELECT count(*)::int FROM pii_guard.audit_log
            WHERE event_id > :start AND kind = 'deny' AND acting_role = 'intern_fay'
              AND relation = 'public_pii.customers' AND operation = 'direct access'), 1,
          'a fail-closed refusal is one event');

SELECT * FROM finish();
ROLLBACK;
