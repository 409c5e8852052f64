-- pgTAP: lookups of lists through a masking view, and no blind-index
-- oracle in them.
--
-- `WHERE phone IN ('…', '…')` and `WHERE phone = ANY ($1)` (a text[] or
-- varchar[] parameter, as JDBC, node-postgres and psycopg2 send lists) on
-- the masking view, by a role that sees phone in clear on every row, are
-- answered through the base table's index: lookup.c adds `phone = ANY
-- (pii_guard._blind_probe(array))` on the stored column, the array of the
-- values' blind-index probes.  The array probe, like the scalar one,
-- answers only at the call sites lookup.c built; anywhere else it would
-- turn guesses into blind indexes to test against stolen envelopes.
--
-- Required behaviour:
--   * for every governed role -- those that see phone in clear (sales_bob,
--     support_dan, mgr_eve) included -- pii_guard._blind_probe(text[]) and
--     (bytea[]) called in any other way (typed, over a table of its own, in
--     an index scan, in SQL and PL/pgSQL functions, a view, a prepared
--     statement, a rule, a default) raise 42501 'permission denied to
--     compare plaintext with pii_guard encrypted values', and while a
--     statement is planned it gives no answer, so EXPLAIN's estimates read
--     the same for a guess that matches as for one that does not;
--   * a subquery of a role's own making that calls reveal() on its own
--     table of stolen envelopes, naming a column it sees in clear, gets no
--     comparison: reveal() refuses it whether or not a guess matched;
--   * support_dan and mgr_eve (clear on every row, no row hidden) find
--     customers by a list of phones, through the index; a text[] and a
--     varchar[] parameter and a list of parameters, generic plans too;
--   * intern_fay (masked) and mkt_amy (hidden) get nothing added: their
--     filters compare what they see;
--   * sales_bob (row-level security keeps his own customers) finds only
--     his own, without the index, and EXPLAIN ANALYZE reads the same for a
--     list of sales_carl's customers' phones as for phones that exist
--     nowhere;
--   * trusted roles (dba_joe) may call the array probe.
BEGIN;
SELECT plan(165);
\ir tap/undone.sql

-----------------------------------------------------------------------------
-- Set-up, as the superuser.
-----------------------------------------------------------------------------
SET LOCAL client_min_messages = warning;
-- (plans are compared as text: no JIT lines, whatever the costs)
SET LOCAL jit = off;

-- A stolen envelope: customer 3's phone (13711112222).
SELECT phone::text AS phone3 FROM public_pii.customers WHERE id = 3 \gset

-- The phone index the lookups use (created before anything is written in
-- this transaction, so that it is usable at once).
CREATE INDEX tap_la_phone ON public_pii.customers (phone);
ANALYZE public_pii.customers;

CREATE ROLE tap_la_nobody LOGIN;
CREATE TEMP TABLE attackers (n int, who name, sch name);
INSERT INTO attackers VALUES
    (1, 'sales_bob', 'tap_la_bob'), (2, 'support_dan', 'tap_la_dan'), (3, 'mgr_eve', 'tap_la_eve'),
    (4, 'intern_fay', 'tap_la_fay'), (5, 'mkt_amy', 'tap_la_amy'), (6, 'tap_la_nobody', 'tap_la_nobody');
GRANT SELECT ON attackers TO PUBLIC;

-- Each attacker's schema: its loot (every customer's phone and national ID
-- envelope, as a stolen dump holds them), and a table it may write.
DO $setup$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT * FROM pg_temp.attackers LOOP
        EXECUTE format('CREATE SCHEMA %I AUTHORIZATION %I', a.sch, a.who);
        EXECUTE format('CREATE TABLE %I.loot (k bigint, v pii_guard.encrypted_text)', a.sch);
        EXECUTE format('INSERT INTO %I.loot SELECT id, phone FROM public_pii.customers
                        UNION ALL SELECT id, national_id FROM public_pii.customers', a.sch);
        EXECUTE format('ANALYZE %I.loot', a.sch);
        EXECUTE format('ALTER TABLE %I.loot OWNER TO %I', a.sch, a.who);
    END LOOP;
END
$setup$;

-- For the estimates: a table where customer 3's phone (13711112222) is
-- half the rows, each sealed under its own nonce, the other half distinct
-- phones.  A planner that learnt the probe of a guess would estimate 200
-- rows for that phone and 1 for any other.
CREATE SCHEMA tap_la;
GRANT USAGE ON SCHEMA tap_la TO PUBLIC;
CREATE TABLE tap_la.est (v pii_guard.encrypted_text);
INSERT INTO tap_la.est SELECT pii_guard.encrypt('13711112222'::text) FROM generate_series(1, 200);
INSERT INTO tap_la.est SELECT pii_guard.encrypt(('1370000' || lpad(g::text, 4, '0'))::text)
  FROM generate_series(1, 200) g;
ANALYZE tap_la.est;
GRANT SELECT ON tap_la.est TO PUBLIC;

-- One variant, tried by every attacker: SET ROLE, run it (a format()
-- string: %1$I the attacker's schema), undo whatever it did.  want: the
-- SQLSTATE and message expected, or for a query that must work, its
-- single value as text.
CREATE FUNCTION pg_temp.outcome(who name, sch name, sql text) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_temp.undone(who, format(sql, sch), 'value') $$;
CREATE FUNCTION pg_temp.each(variant text, want text, sql text) RETURNS SETOF text
LANGUAGE plpgsql AS $f$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT * FROM pg_temp.attackers ORDER BY n LOOP
        RETURN NEXT is(pg_temp.outcome(a.who, a.sch, sql), want, format('%s -- %s', variant, a.who));
    END LOOP;
END
$f$;

-- A plan as text, each of the values searched for replaced by ?:
-- analyze, or only EXPLAIN (the estimates).
CREATE FUNCTION pg_temp.plan_of(q text, searched text[], analyzed boolean DEFAULT true) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
    line text;
    plan text := '';
    s text;
BEGIN
    FOR line IN EXECUTE CASE WHEN analyzed THEN 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) '
                             ELSE 'EXPLAIN ' END || q LOOP
        FOREACH s IN ARRAY searched LOOP
            line := replace(line, s, '?');
        END LOOP;
        plan := plan || line || E'\n';
    END LOOP;
    RETURN plan;
END
$f$;
-- The same plan, EXPLAINed by every attacker, for a guess that matches
-- and one that does not: the same text.
CREATE FUNCTION pg_temp.same_estimates(variant text, sql text, hit text, miss text) RETURNS SETOF text
LANGUAGE plpgsql AS $f$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT * FROM pg_temp.attackers ORDER BY n LOOP
        RETURN NEXT is(
            pg_temp.outcome(a.who, a.sch, format('SELECT pg_temp.plan_of(%L, ARRAY[%L], false)', format(sql, hit), hit)),
            pg_temp.outcome(a.who, a.sch, format('SELECT pg_temp.plan_of(%L, ARRAY[%L], false)', format(sql, miss), miss)),
            format('%s -- %s', variant, a.who));
    END LOOP;
END
$f$;
\set cmp '42501 permission denied to compare plaintext with pii_guard encrypted values'
\set reveal '42501 pii_guard.reveal() can only be used by masking views'

-----------------------------------------------------------------------------
-- 1. The array probe answers no governed role anywhere but where a lookup
-- put it -- not even the roles that see phone in clear.
-----------------------------------------------------------------------------
SELECT * FROM pg_temp.each('1.1 pii_guard._blind_probe(ARRAY[text])', :'cmp',
    $$SELECT pii_guard._blind_probe(ARRAY['13711112222'])::text$$);
SELECT * FROM pg_temp.each('1.2 pii_guard._blind_probe(text[] literal)', :'cmp',
    $$SELECT pii_guard._blind_probe('{13711112222,13700000000}'::text[])::text$$);
SELECT * FROM pg_temp.each('1.3 pii_guard._blind_probe(varchar[])', :'cmp',
    $$SELECT pii_guard._blind_probe(ARRAY['13711112222'::varchar])::text$$);
SELECT * FROM pg_temp.each('1.4 pii_guard._blind_probe(bytea[])', :'cmp',
    $$SELECT pii_guard._blind_probe(ARRAY['\x3133373131313132323232'::bytea])::text$$);
SELECT * FROM pg_temp.each('1.5 its loot = ANY (the probes of its guesses)', :'cmp',
    $$SELECT string_agg(k::text, ',') FROM %1$I.loot
       WHERE v = ANY (pii_guard._blind_probe(ARRAY['13711112222', '31010419920815432X']))$$);
SELECT * FROM pg_temp.each('1.6 ... with the guesses from a subquery', :'cmp',
    $$SELECT string_agg(k::text, ',') FROM %1$I.loot
       WHERE v = ANY (pii_guard._blind_probe(ARRAY(SELECT '1371111' || lpad(n::text, 4, '0')
                                                     FROM generate_series(2000, 2300) n)))$$);
SELECT * FROM pg_temp.each('1.7 ... through an index scan of its loot', :'cmp',
    $$CREATE INDEX ON %1$I.loot (v);
      SET LOCAL enable_seqscan = off;
      SELECT string_agg(k::text, ',') FROM %1$I.loot
       WHERE v = ANY (pii_guard._blind_probe(ARRAY['13711112222', '13700000000']))$$);
SELECT * FROM pg_temp.each('1.8 ... the probe in an element of an array', :'cmp',
    $$SELECT string_agg(k::text, ',') FROM %1$I.loot
       WHERE v = ANY (ARRAY[(pii_guard._blind_probe(ARRAY['13711112222']))[1]])$$);
SELECT * FROM pg_temp.each('1.9 in an SQL function (inlined)', :'cmp',
    $$CREATE FUNCTION %1$I.p(text[]) RETURNS pii_guard.encrypted_text[]
        LANGUAGE sql STABLE AS 'SELECT pii_guard._blind_probe($1)';
      SELECT string_agg(k::text, ',') FROM %1$I.loot WHERE v = ANY (%1$I.p(ARRAY['13711112222']))$$);
SELECT * FROM pg_temp.each('1.10 in an SQL function (not inlined)', :'cmp',
    $$CREATE FUNCTION %1$I.p(text[]) RETURNS pii_guard.encrypted_text[]
        LANGUAGE sql STABLE SET search_path = pg_catalog AS 'SELECT pii_guard._blind_probe($1)';
      SELECT (%1$I.p(ARRAY['13711112222']))[1]::text$$);
SELECT * FROM pg_temp.each('1.11 in a PL/pgSQL function', :'cmp',
    $$CREATE FUNCTION %1$I.p(g text[]) RETURNS pii_guard.encrypted_text[]
        LANGUAGE plpgsql AS 'BEGIN RETURN pii_guard._blind_probe(g); END';
      SELECT (%1$I.p(ARRAY['13711112222']))[1]::text$$);
SELECT * FROM pg_temp.each('1.12 in a view', :'cmp',
    $$CREATE VIEW %1$I.pv AS SELECT pii_guard._blind_probe(ARRAY['13711112222']) AS p;
      SELECT p[1]::text FROM %1$I.pv$$);
SELECT * FROM pg_temp.each('1.13 in a prepared statement with a text[] parameter', :'cmp',
    $$PREPARE %1$I_probes(text[]) AS SELECT string_agg(k::text, ',') FROM %1$I.loot
                                     WHERE v = ANY (pii_guard._blind_probe($1));
      EXECUTE %1$I_probes('{13711112222}')$$);
SELECT * FROM pg_temp.each('1.14 ... and its generic plan', :'cmp',
    $$PREPARE %1$I_probes_g(text[]) AS SELECT string_agg(k::text, ',') FROM %1$I.loot
                                       WHERE v = ANY (pii_guard._blind_probe($1));
      SET LOCAL plan_cache_mode = force_generic_plan;
      EXECUTE %1$I_probes_g('{13711112222}')$$);
SELECT * FROM pg_temp.each('1.15 in a rule', :'cmp',
    $$CREATE TABLE %1$I.asks (g text[]);
      CREATE TABLE %1$I.answers (p text);
      CREATE RULE probe AS ON INSERT TO %1$I.asks
          DO ALSO INSERT INTO %1$I.answers SELECT pii_guard._blind_probe(NEW.g)::text;
      INSERT INTO %1$I.asks VALUES ('{13711112222}');
      SELECT p FROM %1$I.answers$$);
SELECT * FROM pg_temp.each('1.16 in a column default', :'cmp',
    $$CREATE TABLE %1$I.d (k int, p pii_guard.encrypted_text[] DEFAULT pii_guard._blind_probe(ARRAY['13711112222']));
      INSERT INTO %1$I.d (k) VALUES (1);
      SELECT p::text FROM %1$I.d$$);

-- Estimates: while a statement is planned the probe gives no answer, so
-- EXPLAIN reads the same whether the guess matches half of tap_la.est or
-- nothing.  (The superuser, trusted, gets an answer: its estimates differ.)
SELECT isnt(pg_temp.plan_of($$SELECT count(*) FROM tap_la.est
                              WHERE v = ANY (pii_guard._blind_probe(ARRAY['13711112222']))$$,
                            ARRAY['13711112222'], false),
            pg_temp.plan_of($$SELECT count(*) FROM tap_la.est
                              WHERE v = ANY (pii_guard._blind_probe(ARRAY['13700009999']))$$,
                            ARRAY['13700009999'], false),
            '1.17 (the superuser''s estimates tell a matching guess from another)');
SELECT * FROM pg_temp.same_estimates('1.18 EXPLAIN of = ANY (the array probe): a matching guess reads like another',
    $$SELECT count(*) FROM tap_la.est WHERE v = ANY (pii_guard._blind_probe(ARRAY[%L]))$$,
    '13711112222', '13700009999');
SELECT * FROM pg_temp.same_estimates('1.19 ... and of = (the scalar probe)',
    $$SELECT count(*) FROM tap_la.est WHERE v = pii_guard._blind_probe(%L::text)$$,
    '13711112222', '13700009999');

-----------------------------------------------------------------------------
-- 2. A subquery of the role's own calling reveal() on its own table of
-- stolen envelopes, naming phone (which sales_bob, support_dan and mgr_eve
-- see in clear): nothing is added to it, and reveal() refuses it whether a
-- guess matches an envelope (customer 3's national ID) or not.
-----------------------------------------------------------------------------
SELECT * FROM pg_temp.each('2.1 its loot through reveal(), IN (a matching guess, another)', :'reveal',
    $$SELECT count(*)::text FROM (SELECT pii_guard.reveal(v, 'public_pii.customers'::regclass, 'phone', k) AS phone
                                    FROM %1$I.loot) s
       WHERE phone IN ('31010419920815432X', '310104199208150000')$$);
SELECT * FROM pg_temp.each('2.2 ... IN (two guesses that match nothing)', :'reveal',
    $$SELECT count(*)::text FROM (SELECT pii_guard.reveal(v, 'public_pii.customers'::regclass, 'phone', k) AS phone
                                    FROM %1$I.loot) s
       WHERE phone IN ('310104199208150001', '310104199208150000')$$);
SELECT * FROM pg_temp.each('2.3 ... = a matching guess', :'reveal',
    $$SELECT count(*)::text FROM (SELECT pii_guard.reveal(v, 'public_pii.customers'::regclass, 'phone', k) AS phone
                                    FROM %1$I.loot) s
       WHERE phone = '31010419920815432X'$$);
SELECT * FROM pg_temp.each('2.4 ... = a guess that matches nothing', :'reveal',
    $$SELECT count(*)::text FROM (SELECT pii_guard.reveal(v, 'public_pii.customers'::regclass, 'phone', k) AS phone
                                    FROM %1$I.loot) s
       WHERE phone = '310104199208150001'$$);

-----------------------------------------------------------------------------
-- 3. Lists through the masking view, for the roles that see phone in clear
-- on every row: the index answers.
-----------------------------------------------------------------------------
SET LOCAL enable_seqscan = off;
SET LOCAL ROLE support_dan;
SELECT results_eq($$SELECT id FROM customers WHERE phone IN ('13812345678', '13900001111') ORDER BY id$$,
                  $$VALUES (1::bigint), (2::bigint)$$,
                  '3.1 support_dan finds customers 1 and 2 by a list of phones');
SELECT matches(pg_temp.plan_of($$SELECT id FROM customers WHERE phone IN ('13812345678', '13900001111')$$,
                               '{}', false),
               'Index Cond: \(phone = ANY \(pii_guard\._blind_probe\(', '3.2 ... through the phone index');
SELECT results_eq($$SELECT id FROM customers WHERE phone = ANY ('{13812345678,NULL,13700000000}') ORDER BY id$$,
                  $$VALUES (1::bigint)$$, '3.3 ... = ANY (an array constant): a NULL and an unknown phone match nothing');
PREPARE tap_la_text(text[]) AS SELECT id FROM customers WHERE phone = ANY ($1) ORDER BY id;
PREPARE tap_la_vc(varchar[]) AS SELECT id FROM customers WHERE phone = ANY ($1) ORDER BY id;
PREPARE tap_la_list(varchar, varchar) AS SELECT id FROM customers WHERE phone IN ($1, $2) ORDER BY id;
SELECT results_eq($$EXECUTE tap_la_text('{13812345678,13711112222}')$$, $$VALUES (1::bigint), (3::bigint)$$,
                  '3.4 ... = ANY ($1) with a text[] parameter');
SELECT results_eq($$EXECUTE tap_la_vc('{13900001111,"+86 136 0000 3333"}')$$, $$VALUES (2::bigint), (4::bigint)$$,
                  '3.5 ... and with a varchar[] parameter');
SELECT results_eq($$EXECUTE tap_la_list('13812345678', '13900001111')$$, $$VALUES (1::bigint), (2::bigint)$$,
                  '3.6 ... IN ($1, $2) with varchar parameters');
SELECT matches(pg_temp.plan_of($$EXECUTE tap_la_vc('{13900001111}')$$, '{}', false),
               'Index Cond: \(phone = ANY \(pii_guard\._blind_probe\(', '3.7 ... through the phone index');
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT results_eq($$EXECUTE tap_la_text('{13711112222,13900001111}')$$, $$VALUES (2::bigint), (3::bigint)$$,
                  '3.8 ... and the generic plans: text[]');
SELECT results_eq($$EXECUTE tap_la_vc('{13812345678}')$$, $$VALUES (1::bigint)$$, '3.9 ... varchar[]');
SELECT results_eq($$EXECUTE tap_la_list('+86 136 0000 3333', '13700000000')$$, $$VALUES (4::bigint)$$,
                  '3.10 ... IN ($1, $2)');
-- (on four rows the generic plan's estimate of a list of unknown length
-- prefers the primary key; sql/lookup.sql shows the index on more)
SELECT matches(pg_temp.plan_of($$EXECUTE tap_la_vc('{13812345678}')$$, '{}', false),
               '\(phone = ANY \(pii_guard\._blind_probe\(\(\$1\)::text\[\]\)\)\)',
               '3.11 ... with the comparison on the stored column');
RESET plan_cache_mode;

SET LOCAL ROLE mgr_eve;
SELECT results_eq($$SELECT id FROM customers WHERE phone IN ('13711112222', '+86 136 0000 3333') ORDER BY id$$,
                  $$VALUES (3::bigint), (4::bigint)$$, '3.12 mgr_eve finds customers 3 and 4 by a list of phones');
SELECT matches(pg_temp.plan_of($$SELECT id FROM customers WHERE phone IN ('13711112222', '+86 136 0000 3333')$$,
                               '{}', false),
               'Index Cond: \(phone = ANY \(pii_guard\._blind_probe\(', '3.13 ... through the phone index');
SELECT results_eq($$EXECUTE tap_la_text('{13812345678,13711112222}')$$, $$VALUES (1::bigint), (3::bigint)$$,
                  '3.14 ... and with support_dan''s prepared statement, planned again for her');

-- Masked and hidden: nothing is added, and a list compares what they see.
SET LOCAL ROLE intern_fay;
SELECT doesnt_match(pg_temp.plan_of($$SELECT id FROM customers WHERE phone IN ('13812345678', '13900001111')$$,
                                    '{}', false),
                    '_blind_probe', '3.15 intern_fay (phone masked): nothing added to her list');
SELECT is((SELECT count(*)::int FROM customers WHERE phone IN ('13812345678', '13900001111')), 0,
          '3.16 ... which finds nothing by clear phones');
SELECT results_eq($$SELECT id FROM customers WHERE phone IN ('138****5678', '139****1111') ORDER BY id$$,
                  $$VALUES (1::bigint), (2::bigint)$$, '3.17 ... and finds what she sees');
SELECT results_eq($$EXECUTE tap_la_text('{13812345678,138****5678}')$$, $$VALUES (1::bigint)$$,
                  '3.18 ... also with the prepared statement, planned again for her');
SELECT doesnt_match(pg_temp.plan_of($$EXECUTE tap_la_text('{13812345678}')$$, '{}', false),
                    '_blind_probe', '3.19 ... with nothing added');
SET LOCAL ROLE mkt_amy;
SELECT doesnt_match(pg_temp.plan_of($$SELECT id FROM customers WHERE phone IN ('13812345678', '13900001111')$$,
                                    '{}', false),
                    '_blind_probe', '3.20 mkt_amy (phone hidden): nothing added to her list');
SELECT is((SELECT count(*)::int FROM customers WHERE phone IN ('13812345678', '13900001111')), 0,
          '3.21 ... which finds nothing');
RESET ROLE;

-----------------------------------------------------------------------------
-- 4. sales_bob: row-level security keeps his own customers (1 and 2).  His
-- lists find only those, behind the policy (no index), and EXPLAIN
-- ANALYZE reads the same for sales_carl's customers' phones as for phones
-- that exist nowhere.
-----------------------------------------------------------------------------
SET LOCAL ROLE sales_bob;
SELECT results_eq($$SELECT id FROM customers WHERE phone IN ('13812345678', '13711112222', '+86 136 0000 3333') ORDER BY id$$,
                  $$VALUES (1::bigint)$$, '4.1 sales_bob finds only his own customer in a list');
SELECT results_eq($$EXECUTE tap_la_text('{13900001111,13711112222}')$$, $$VALUES (2::bigint)$$,
                  '4.2 ... also with a prepared statement');
SELECT matches(pg_temp.plan_of($$SELECT id FROM customers WHERE phone IN ('13812345678', '13711112222')$$,
                               '{}', false),
               '_after_policies\(\(phone = ANY \(pii_guard\._blind_probe\(', '4.3 ... his list is behind the policy');
SELECT doesnt_match(pg_temp.plan_of($$SELECT id FROM customers WHERE phone IN ('13812345678', '13711112222')$$,
                                    '{}', false),
                    'Index Cond: \(phone', '4.4 ... without the index (sequential scans disabled)');
SELECT is(pg_temp.plan_of($$SELECT id FROM customers WHERE phone IN ('13711112222', '+86 136 0000 3333')$$,
                          ARRAY['13711112222', '+86 136 0000 3333']),
          pg_temp.plan_of($$SELECT id FROM customers WHERE phone IN ('13700000000', '+86 136 0000 3334')$$,
                          ARRAY['13700000000', '+86 136 0000 3334']),
          '4.5 EXPLAIN ANALYZE: a list of sales_carl''s customers'' phones reads like phones that exist nowhere');
SELECT is(pg_temp.plan_of($$SELECT id FROM customers WHERE phone = ANY ('{13711112222}')$$, ARRAY['13711112222']),
          pg_temp.plan_of($$SELECT id FROM customers WHERE phone = ANY ('{13700000000}')$$, ARRAY['13700000000']),
          '4.6 ... and = ANY (an array constant)');
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT is(pg_temp.plan_of($$EXECUTE tap_la_vc('{13711112222,"+86 136 0000 3333"}')$$,
                          ARRAY['13711112222', '+86 136 0000 3333']),
          pg_temp.plan_of($$EXECUTE tap_la_vc('{13700000000,"+86 136 0000 3334"}')$$,
                          ARRAY['13700000000', '+86 136 0000 3334']),
          '4.7 ... and a varchar[] parameter (generic plan)');
SET LOCAL plan_cache_mode = force_custom_plan;
SELECT is(pg_temp.plan_of($$EXECUTE tap_la_text('{13711112222,"+86 136 0000 3333"}')$$,
                          ARRAY['13711112222', '+86 136 0000 3333']),
          pg_temp.plan_of($$EXECUTE tap_la_text('{13700000000,"+86 136 0000 3334"}')$$,
                          ARRAY['13700000000', '+86 136 0000 3334']),
          '4.8 ... and a text[] parameter (custom plan)');
RESET plan_cache_mode;
-- (what is compared is a real plan: his own customers' phones are found)
SELECT matches(pg_temp.plan_of($$SELECT id FROM customers WHERE phone IN ('13812345678', '13900001111')$$,
                               ARRAY['13812345678', '13900001111']),
               'actual rows=2 ', '4.9 sales_bob''s list of his own customers'' phones finds both rows');
RESET ROLE;
DEALLOCATE tap_la_text;
DEALLOCATE tap_la_vc;
DEALLOCATE tap_la_list;
RESET enable_seqscan;

-----------------------------------------------------------------------------
-- 5. Trusted roles may call the array probe.
-----------------------------------------------------------------------------
SET LOCAL ROLE dba_joe;
SELECT is(:'phone3'::pii_guard.encrypted_text = ANY (pii_guard._blind_probe(ARRAY['13812345678', NULL, '13711112222'])),
          true, '5.1 dba_joe (pii_guard_admin) compares an envelope with the array probe');
SELECT is((pii_guard._blind_probe(ARRAY['13812345678', NULL]))[2], NULL, '5.2 ... a NULL element stays NULL');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
