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
-- again: its filter compares masked values, so it finds nothing (after
-- reading every row; a filter counts nothing against the export limits).
-- Compared with a masked value, it finds the row that shows it.
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

-- Lists: `IN (...)` and `= ANY (array)`, as drivers send them (an array
-- parameter, text[] or varchar[]), compare the stored column with the
-- probes of the list's values, through the index; NULL elements match
-- nothing.
SET ROLE regress_lk_clear;
SELECT lk.plan($$SELECT id, phone FROM people WHERE phone IN ('13800000042', '13800000043')$$);
SELECT id, phone FROM people WHERE phone IN ('13800000042', '13800000043', '13899999999') ORDER BY id;
SELECT id FROM people WHERE phone = ANY ('{13800000044,NULL,13800000045}') ORDER BY id;
SELECT id FROM people WHERE phone = ANY (ARRAY['13800000046', '13800000047'::varchar]) ORDER BY id;
SELECT id FROM people WHERE phone = ANY ('{}'::text[]);
-- A plaintext column: the same list on its own index.
SELECT lk.plan($$SELECT id FROM people WHERE email IN ('u7@example.com', 'u8@example.com')$$);
SELECT id, email FROM people WHERE email IN ('u7@example.com', 'u8@example.com') ORDER BY id;
-- Array parameters, text[] and varchar[], and a list of parameters; the
-- generic plans too.
PREPARE by_phones(text[]) AS SELECT id, phone FROM people WHERE phone = ANY ($1) ORDER BY id;
PREPARE by_phones_vc(varchar[]) AS SELECT id, phone FROM people WHERE phone = ANY ($1) ORDER BY id;
PREPARE by_phone_list(varchar, varchar) AS SELECT id FROM people WHERE phone IN ($1, $2) ORDER BY id;
EXECUTE by_phones('{13800000048,13800000049}');
EXECUTE by_phones_vc('{13800000050,13800000051}');
EXECUTE by_phone_list('13800000052', '13800000053');
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE by_phones('{13800000054,13800000055}');
EXECUTE by_phones('{13800000054,13800000055}');
EXPLAIN (COSTS OFF) EXECUTE by_phones_vc('{13800000056,13800000057}');
EXECUTE by_phones_vc('{13800000056,13800000057}');
EXPLAIN (COSTS OFF) EXECUTE by_phone_list('13800000058', '13800000059');
EXECUTE by_phone_list('13800000058', '13800000059');
RESET plan_cache_mode;
-- What is not an equality with a list of values is left alone.
SELECT lk.plan($$SELECT id FROM people WHERE phone <> ALL ('{13800000042,13800000043}') AND id < 3$$);
SELECT lk.plan($$SELECT id FROM people WHERE phone = ANY (ARRAY['13800000042', email]) AND id < 3$$);
RESET ROLE;
-- A role that sees phone masked: nothing added, and the cached statement
-- is planned again for it.
SET ROLE regress_lk_masked;
SELECT lk.plan($$SELECT id FROM people WHERE phone IN ('13800000042', '13800000043')$$);
EXPLAIN (COSTS OFF) EXECUTE by_phones('{13800000054,13800000055}');
RESET ROLE;
DEALLOCATE by_phones;
DEALLOCATE by_phones_vc;
DEALLOCATE by_phone_list;

-- An encrypted bytea column: bytea lists.
CREATE TABLE files (id int PRIMARY KEY, digest pii_guard.encrypted_bytea UNIQUE);
INSERT INTO files SELECT g, convert_to('doc-' || g, 'UTF8') FROM generate_series(1, 2000) g;
GRANT SELECT ON files TO regress_lk_clear;
SELECT pii_guard.protect_column('files', 'digest', 'sensitive');
ANALYZE lk_pii.files;
SET ROLE regress_lk_clear;
SELECT lk.plan($$SELECT id FROM files WHERE digest IN ('doc-7'::bytea, 'doc-9'::bytea)$$);
SELECT id FROM files WHERE digest IN ('doc-7'::bytea, 'doc-9'::bytea, 'doc-0'::bytea) ORDER BY id;
SELECT id FROM files WHERE digest = ANY (ARRAY['doc-11'::bytea, NULL]);
-- (a list computed by a function is not a list of values: left alone)
SELECT lk.plan($$SELECT id FROM files WHERE digest IN (convert_to('doc-7', 'UTF8'), 'doc-9'::bytea)$$);
RESET ROLE;
SELECT pii_guard.unprotect_table('files');

-- The probes answer only where the lookup put them: called by a role
-- that is not trusted, in any other way, they are refused -- even to a
-- role that sees the column in clear.
SET ROLE regress_lk_clear;
SELECT pii_guard._blind_probe(ARRAY['13800000042']) IS NOT NULL;
SELECT pii_guard._blind_probe(ARRAY['\x01'::bytea]) IS NOT NULL;
PREPARE probes(text[]) AS SELECT pii_guard._blind_probe($1) IS NOT NULL;
EXECUTE probes('{13800000042}');
DEALLOCATE probes;
RESET ROLE;

-- A grant that will end: the masked role sees phone clear for now, but its
-- lookups are not rewritten (a cached plan would outlive the grant).
SET ROLE regress_lk_approver;
SELECT pii_guard.approve('regress_lk_masked', 'people', now() + interval '1 hour',
                         'lookup test', '{phone}') IS NOT NULL AS approved;
RESET ROLE;
SET ROLE regress_lk_masked;
SELECT lk.plan($$SELECT id FROM people WHERE phone = '13800000042'$$);
SELECT lk.plan($$SELECT id FROM people WHERE phone IN ('13800000042', '13800000043')$$);
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
        RETURN NEXT regexp_replace(line, '138[0-9]{8}', 'N', 'g');
    END LOOP;
END $$;
SET ROLE regress_lk_rep;
SELECT lk.plan($$SELECT id FROM people WHERE phone = '13800000042'$$);
SELECT id, phone FROM people WHERE phone = '13800000042';
SELECT id, phone FROM people WHERE phone = '13800000043';
SELECT (SELECT array_agg(l) FROM lk.analyzed($$SELECT id FROM people WHERE phone = '13800000043'$$) l) =
       (SELECT array_agg(l) FROM lk.analyzed($$SELECT id FROM people WHERE phone = '13899999999'$$) l)
       AS same_for_hidden_and_absent;
-- Lists the same way: his own rows only, behind the policy, and the same
-- output whether the list names someone else's rows or nothing at all.
SELECT lk.plan($$SELECT id FROM people WHERE phone IN ('13800000042', '13800000043')$$);
SELECT id, phone FROM people WHERE phone IN ('13800000042', '13800000043', '13800000044') ORDER BY id;
SELECT (SELECT array_agg(l) FROM lk.analyzed($$SELECT id FROM people WHERE phone IN ('13800000043', '13800000045')$$) l) =
       (SELECT array_agg(l) FROM lk.analyzed($$SELECT id FROM people WHERE phone IN ('13899999997', '13899999999')$$) l)
       AS same_for_hidden_and_absent;
PREPARE rep_phones(text[]) AS SELECT id FROM people WHERE phone = ANY ($1);
SET plan_cache_mode = force_generic_plan;
SELECT (SELECT array_agg(l) FROM lk.analyzed($$EXECUTE rep_phones('{13800000043,13800000045}')$$) l) =
       (SELECT array_agg(l) FROM lk.analyzed($$EXECUTE rep_phones('{13899999997,13899999999}')$$) l)
       AS same_for_hidden_and_absent_generic;
RESET plan_cache_mode;
DEALLOCATE rep_phones;
RESET ROLE;
SET ROLE regress_lk_clear;
SELECT lk.plan($$SELECT id FROM people WHERE phone = '13800000043'$$);
SELECT id, phone FROM people WHERE phone = '13800000043';
SELECT lk.plan($$SELECT id FROM people WHERE phone IN ('13800000043', '13800000045')$$);
SELECT id, phone FROM people WHERE phone IN ('13800000043', '13800000045') ORDER BY id;
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
SELECT lk.plan($$SELECT k FROM (SELECT k, pii_guard.reveal(v, 'lk_pii.people'::regclass, 'phone', k) AS phone
                                  FROM lk.loot) s WHERE phone IN ('secret-1', 'secret-4')$$);
SELECT k FROM (SELECT k, pii_guard.reveal(v, 'lk_pii.people'::regclass, 'phone', k) AS phone
                 FROM lk.loot) s WHERE phone IN ('secret-1', 'secret-4');
SELECT k FROM (SELECT k, pii_guard.reveal(v, 'lk_pii.people'::regclass, 'phone', k) AS phone
                 FROM lk.loot) s WHERE phone IN ('secret-3', 'secret-4');
RESET ROLE;

-- The table's owner (exempt) gets the index through the view as well.
SELECT lk.plan($$SELECT id FROM people WHERE phone = '13800000042'$$);
SELECT lk.plan($$SELECT id FROM people WHERE phone IN ('13800000042', '13800000043')$$);

SELECT pii_guard.unprotect_table('people');
RESET search_path;

-- The roles go (installcheck may run again on the same server).
SET client_min_messages = warning;
DROP OWNED BY regress_lk_approver, regress_lk_clear, regress_lk_masked, regress_lk_rep CASCADE;
DROP ROLE regress_lk_approver, regress_lk_clear, regress_lk_masked, regress_lk_rep;
RESET client_min_messages;
