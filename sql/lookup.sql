--
-- Equality lookups through a masking view: a role that sees the column in
-- clear finds the row through the base table's index (the blind index for
-- an encrypted column); every other role's filter still sees only what it
-- sees, and cached plans follow the role and the policy.
--
\set VERBOSITY terse
CREATE SCHEMA lk;
GRANT USAGE ON SCHEMA lk TO PUBLIC;
SET search_path = lk, public;
CREATE ROLE regress_lk_clear;
CREATE ROLE regress_lk_masked;
CREATE ROLE regress_lk_rep;
CREATE ROLE regress_lk_approver IN ROLE pii_guard_approver;
CREATE TABLE people (id int PRIMARY KEY, phone pii_guard.encrypted_text UNIQUE,
                     email text, owner name);
CREATE INDEX people_email ON people (email);
INSERT INTO people
SELECT g, '138' || lpad(g::text, 8, '0'), 'u' || g || '@example.com',
       CASE WHEN g % 2 = 0 THEN 'regress_lk_rep' ELSE 'someone' END
  FROM generate_series(1, 2000) g;
GRANT SELECT ON people TO regress_lk_clear, regress_lk_masked, regress_lk_rep;
SELECT pii_guard.protect_column('people', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('people', 'email', 'sensitive', 'pii_guard.mask_email(text)');
SELECT pii_guard.set_clearance('regress_lk_clear', 'sensitive');
SELECT pii_guard.set_clearance('regress_lk_masked', 'public');
SELECT pii_guard.set_clearance('regress_lk_rep', 'sensitive');
-- A per-statement export limit far below the table's size: a lookup that
-- read every row would be refused.
SELECT pii_guard.set_export_limits('regress_lk_clear', 10, NULL);
SELECT pii_guard.set_export_limits('regress_lk_masked', 10, NULL);
ANALYZE lk_pii.people;

-- EXPLAIN, with the encrypted constants elided.
CREATE FUNCTION lk.plan(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        RETURN NEXT line;
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION lk.plan(text) TO PUBLIC;

-- A role that sees phone in clear: the blind index answers, and only the
-- row found is revealed (and counted).
SET ROLE regress_lk_clear;
SELECT lk.plan($$SELECT id, phone FROM people WHERE phone = '13800000042'$$);
SELECT id, phone FROM people WHERE phone = '13800000042';
SELECT id, phone FROM people WHERE '13800000043' = phone;
-- A plaintext column with an index of its own: that index.
SELECT lk.plan($$SELECT id FROM people WHERE email = 'u7@example.com'$$);
SELECT id, email FROM people WHERE email = 'u7@example.com';
-- Inside a subquery, a CTE and a SubLink too.
SELECT lk.plan($$SELECT * FROM (SELECT id FROM people WHERE phone = '13800000042') s$$);
SELECT lk.plan($$WITH c AS MATERIALIZED (SELECT id FROM people WHERE phone = '13800000042') SELECT * FROM c$$);
SELECT lk.plan($$SELECT 1 WHERE EXISTS (SELECT 1 FROM people WHERE phone = '13800000042')$$);
-- A prepared statement, generic plan included.
PREPARE by_phone(text) AS SELECT id, phone FROM people WHERE phone = $1;
EXECUTE by_phone('13800000044');
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE by_phone('13800000045');
EXECUTE by_phone('13800000045');
RESET ROLE;

-- The same cached statement run by a role that sees phone masked is planned
-- again: its filter compares masked values, so it would find nothing, after
-- reading (and counting) every row -- over its limit.  Compared with a
-- masked value, it finds the row that shows it.
SET ROLE regress_lk_masked;
EXPLAIN (COSTS OFF) EXECUTE by_phone('13800000045');
EXECUTE by_phone('13800000045');
SELECT id, phone FROM people WHERE phone = '138****0005' AND id < 9;
RESET ROLE;

-- A policy change replans too: with its clearance lowered, the clear role's
-- cached statement compares masked values.
SELECT pii_guard.set_clearance('regress_lk_clear', 'public');
SET ROLE regress_lk_clear;
EXPLAIN (COSTS OFF) EXECUTE by_phone('13800000045');
RESET ROLE;
SELECT pii_guard.set_clearance('regress_lk_clear', 'sensitive');
SET ROLE regress_lk_clear;
EXPLAIN (COSTS OFF) EXECUTE by_phone('13800000045');
EXECUTE by_phone('13800000045');
RESET plan_cache_mode;
DEALLOCATE by_phone;
RESET ROLE;

-- A grant that will end: the masked role sees phone clear for now, but its
-- lookups are not rewritten (a cached plan would outlive the grant).
SET ROLE regress_lk_approver;
SELECT pii_guard.approve('regress_lk_masked', 'people', now() + interval '1 hour',
                         'lookup test', '{phone}') IS NOT NULL AS approved;
RESET ROLE;
SET ROLE regress_lk_masked;
SELECT lk.plan($$SELECT id FROM people WHERE phone = '13800000042'$$);
RESET ROLE;

-- Under row-level security.  For a role whose policy hides rows (the rep
-- sees only their own), the comparison goes behind the policy
-- (_after_policies): an index lookup would touch rows the policy hides
-- before the policy removes them, and EXPLAIN ANALYZE would count them --
-- telling whether a value exists among other reps' rows.  So no index, and
-- the same output for a phone of someone else's row (43) as for one that
-- exists nowhere.  For a role whose policy, evaluated for it, hides
-- nothing, the index still answers.
ALTER TABLE lk_pii.people ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON lk_pii.people
    USING (owner = current_user OR NOT pg_has_role(current_user, 'regress_lk_rep', 'USAGE')
           OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user));
CREATE FUNCTION lk.analyzed(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || q LOOP
        RETURN NEXT regexp_replace(line, '''[0-9]+''', '''N''', 'g');
    END LOOP;
END $$;
SET ROLE regress_lk_rep;
SELECT lk.plan($$SELECT id FROM people WHERE phone = '13800000042'$$);
SELECT id, phone FROM people WHERE phone = '13800000042';
SELECT id, phone FROM people WHERE phone = '13800000043';
SELECT (SELECT array_agg(l) FROM lk.analyzed($$SELECT id FROM people WHERE phone = '13800000043'$$) l) =
       (SELECT array_agg(l) FROM lk.analyzed($$SELECT id FROM people WHERE phone = '13899999999'$$) l)
       AS same_for_hidden_and_absent;
RESET ROLE;
SET ROLE regress_lk_clear;
SELECT lk.plan($$SELECT id FROM people WHERE phone = '13800000043'$$);
SELECT id, phone FROM people WHERE phone = '13800000043';
RESET ROLE;
ALTER TABLE lk_pii.people DISABLE ROW LEVEL SECURITY;

-- A subquery of the role's own making calling reveal() on its own table of
-- envelopes (a stolen dump), naming a column the role sees in clear, is
-- not a masking view: nothing is added to it, and reveal() refuses it on
-- its first row, whether or not the value searched for is among the
-- envelopes (were the comparison added, it would run first and keep
-- reveal() from being reached when nothing matched).
CREATE TABLE lk.loot (k int, v pii_guard.encrypted_text);
INSERT INTO lk.loot VALUES (1, pii_guard.encrypt('secret-1'::text)),
                           (2, pii_guard.encrypt('secret-2'::text));
ALTER TABLE lk.loot OWNER TO regress_lk_clear;
SET ROLE regress_lk_clear;
SELECT lk.plan($$SELECT k FROM (SELECT k, pii_guard.reveal(v, 'lk_pii.people'::regclass, 'phone', k) AS phone
                                  FROM lk.loot) s WHERE phone = 'secret-1'$$);
SELECT k FROM (SELECT k, pii_guard.reveal(v, 'lk_pii.people'::regclass, 'phone', k) AS phone
                 FROM lk.loot) s WHERE phone = 'secret-1';
SELECT k FROM (SELECT k, pii_guard.reveal(v, 'lk_pii.people'::regclass, 'phone', k) AS phone
                 FROM lk.loot) s WHERE phone = 'secret-3';
RESET ROLE;

-- The table's owner (exempt) gets the index through the view as well.
SELECT lk.plan($$SELECT id FROM people WHERE phone = '13800000042'$$);

SELECT pii_guard.unprotect_table('people');
RESET search_path;
