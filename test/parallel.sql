-- pgTAP: parallel plans for roles with export limits.
--
-- reveal() is PARALLEL RESTRICTED, so protected values are produced in the
-- leader only; a parallel worker runs a part of the plan whose rows reach
-- the leader, which counts what leaves.  A worker must not count (or
-- refuse) anything itself: it cannot see the leader's initplans, so a
-- row-level security policy like examples/policy.sql's (a function call and
-- an initplan) looked, from inside it, like a filter on protected values, and a plain count(*) by a sales rep with
-- export limits was refused with 0A000 once the table was big enough for
-- a parallel plan.
BEGIN;
SELECT plan(5);

SET LOCAL client_min_messages = warning;
CREATE SCHEMA tap_par;
GRANT USAGE ON SCHEMA tap_par TO PUBLIC;
CREATE ROLE tap_par_rep;
CREATE TABLE tap_par.accounts (id int PRIMARY KEY, phone pii_guard.encrypted_text,
                               owner name NOT NULL);
INSERT INTO tap_par.accounts
SELECT g, '1390000' || lpad((g % 10000)::text, 4, '0'),
       CASE WHEN g % 2 = 0 THEN 'tap_par_rep' ELSE 'someone_else' END
  FROM generate_series(1, 20000) g;
ALTER TABLE tap_par.accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON tap_par.accounts
    USING (owner = current_user OR NOT pg_has_role(current_user, 'tap_par_rep', 'USAGE')
           OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user));
GRANT SELECT ON tap_par.accounts TO tap_par_rep;
SELECT pii_guard.protect_column('tap_par.accounts', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.set_clearance('tap_par_rep', 'sensitive');
SELECT pii_guard.set_export_limits('tap_par_rep', 100, 1000);
ANALYZE tap_par_pii.accounts;
CREATE FUNCTION pg_temp.plan_has(sql text, pattern text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || sql LOOP
        IF line ~ pattern THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END $$;

SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL min_parallel_index_scan_size = 0;
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL parallel_leader_participation = off;
SET LOCAL ROLE tap_par_rep;
SELECT ok(pg_temp.plan_has('SELECT count(*) FROM tap_par.accounts', 'Gather'),
          'the rep''s count(*) is planned in parallel (not vacuous)');
-- (Run as statements of their own: inside pgTAP's is(), a PARALLEL UNSAFE
-- function, no plan is parallel.)
SELECT count(*)::int AS n_all FROM tap_par.accounts \gset
SELECT count(*)::int AS n_sevens FROM tap_par.accounts WHERE id % 7 = 0 \gset
SELECT array_length(array_agg(phone), 1) AS n_phones FROM tap_par.accounts WHERE id <= 100 \gset
SELECT is(:n_all, 10000,
          'a parallel count(*) by a rep with export limits works: his 10,000 rows');
SELECT is(:n_sevens, 1428,
          '... and with a filter on an unprotected column');
SELECT is(:n_phones, 50,
          'protected values still count where they leave (50 of his 100 rows allowed)');
SELECT throws_ok($$SELECT phone FROM tap_par.accounts WHERE id <= 400$$, '54P01', NULL,
                 '... and 200 of them do not fit the 100-row limit');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
