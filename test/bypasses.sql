-- pgTAP: ways a governed role (intern_fay, whose profile sees everything
-- masked, and mkt_amy, who sees contacts as NULL) might try to get around
-- its masking on the seed scenario (test/fixtures/crm.sql).  Each must fail
-- with its SQLSTATE or show only what the role's policy shows.
BEGIN;
SELECT plan(71);

-- Set-up, as the superuser.
ANALYZE public_pii.customers;               -- so that there are statistics to hide
CREATE SCHEMA tap_intern AUTHORIZATION intern_fay;
GRANT USAGE ON SCHEMA tap_intern TO mkt_amy;      -- (to try the intern's leaky function)
CREATE TEMP TABLE seen (v text);             -- what leaky functions saw
GRANT INSERT, SELECT, DELETE ON seen TO intern_fay, mkt_amy;
-- Every plaintext of the fixture's protected columns (what must never leak).
CREATE TEMP TABLE plaintexts (x text);
INSERT INTO plaintexts VALUES
    ('张三丰'), ('李小龙'), ('王芳'), ('John Smith'),
    ('13812345678'), ('13900001111'), ('13711112222'), ('136 0000 3333'),
    ('110101199003071234'), ('440301198512120018'), ('31010419920815432X'), ('110105198001010011'),
    ('zhangsan@'), ('lixiaolong@'), ('wangfang@'), ('john.smith@'),
    ('建国路'), ('科技园'), ('世纪大道'), ('Amphitheatre'),
    ('120000.00'), ('3500.50'), ('800.00'), ('15000.00');
GRANT SELECT ON plaintexts TO intern_fay, mkt_amy;
-- The DETAIL of the error a statement raises (to tell pii_guard's
-- fail-closed refusal from PostgreSQL's own privilege check).
CREATE FUNCTION pg_temp.error_detail(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d text;
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN d;
END $$;
-- A stored envelope, as a stolen backup or dump holds it (customer 3's
-- national ID, core data).
SELECT national_id::text AS stolen_envelope FROM public_pii.customers WHERE id = 3 \gset
SELECT is((SELECT count(*)::int FROM pg_stats WHERE schemaname = 'public_pii' AND tablename = 'customers'), 11,
          'the superuser sees statistics for the 11 columns of public_pii.customers');

SET LOCAL ROLE intern_fay;

-- 1. The base table: by name, through search_path, TABLE, subqueries, CTAS.
SELECT throws_ok($$SELECT * FROM public_pii.customers$$, '42501', 'permission denied for table customers',
                 'SELECT from public_pii.customers, qualified');
SET LOCAL search_path = public_pii, public;
SELECT throws_ok($$SELECT phone FROM customers$$, '42501', 'permission denied for table customers',
                 'SELECT from customers with search_path = public_pii, public');
SET LOCAL search_path TO DEFAULT;
SELECT throws_ok($$TABLE public_pii.customers$$, '42501', 'permission denied for table customers',
                 'TABLE public_pii.customers');
SELECT throws_ok($$SELECT c.id FROM customers c WHERE EXISTS
                     (SELECT 1 FROM public_pii.customers b WHERE b.id = c.id AND b.name LIKE '张%')$$,
                 '42501', 'permission denied for table customers', 'the base table in a subquery');
SELECT throws_ok($$CREATE TEMP TABLE grab AS SELECT * FROM public_pii.customers$$,
                 '42501', 'permission denied for table customers', 'CREATE TABLE AS from the base table');
SELECT throws_ok($$SELECT id FROM public_pii.customers__pii_write$$,
                 '42501', 'permission denied for view customers__pii_write', 'the write view');

-- 2. COPY.  PL/pgSQL refuses COPY ... TO STDOUT (0A000, before any
-- privilege check), so throws_ok cannot run it: each COPY runs as a plain
-- statement in a savepoint, and its SQLSTATE is taken from psql.  (psql
-- prints the expected ERROR on stderr.)
\set VERBOSITY terse
\set ON_ERROR_STOP 0
SAVEPOINT bypass_copy;
COPY (SELECT * FROM public_pii.customers) TO STDOUT;
\set copy_query_state :SQLSTATE
ROLLBACK TO SAVEPOINT bypass_copy;
COPY public_pii.customers TO STDOUT;
\set copy_table_state :SQLSTATE
ROLLBACK TO SAVEPOINT bypass_copy;
\set ON_ERROR_STOP 1
\set VERBOSITY default
SELECT is(:'copy_query_state'::text, '42501', 'COPY (SELECT * FROM public_pii.customers) TO STDOUT');
SELECT is(:'copy_table_state'::text, '42501', 'COPY public_pii.customers TO STDOUT');

-- 3. Becoming someone else.  (SET ROLE is checked against the session
-- user, so the session must be the intern's, not the superuser's.  SET
-- SESSION AUTHORIZATION is checked against the authenticated user, a
-- superuser here, so it cannot be shown in this suite.)
SET LOCAL SESSION AUTHORIZATION intern_fay;
SELECT throws_ok($$SET ROLE manager$$, '42501', 'permission denied to set role "manager"',
                 'SET ROLE manager (not a member)');
SELECT throws_ok($$SET ROLE sales$$, '42501', 'permission denied to set role "sales"',
                 'SET ROLE sales (not a member)');
SELECT throws_ok($$SET ROLE mgr_eve$$, '42501', 'permission denied to set role "mgr_eve"',
                 'SET ROLE mgr_eve');
RESET SESSION AUTHORIZATION;
SET LOCAL ROLE intern_fay;

-- 4. Decryption, directly or through the masking machinery.
SELECT throws_ok(format('SELECT pii_guard.decrypt(%L::pii_guard.encrypted_text)', :'stolen_envelope'),
                 '42501', 'permission denied to decrypt pii_guard values', 'decrypt() of a stolen envelope');
SELECT throws_ok($$SELECT pii_guard.decrypt(pii_guard.encrypt('13812345678'))$$,
                 '42501', 'permission denied to encrypt pii_guard values',
                 'no encrypting of a value of its own (its envelope would show its blind index)');
SELECT throws_ok($$SELECT pii_guard.decrypt(phone::pii_guard.encrypted_text) FROM customers$$,
                 '42501', 'permission denied to encrypt pii_guard values',
                 'no re-encrypting what the view shows either');
SELECT throws_ok(format('SELECT pii_guard.reveal(%L::pii_guard.encrypted_text, %L::regclass, %L, 3)',
                        :'stolen_envelope', 'pii_guard.profiles', 'role'),
                 '42804', 'reveal() was given a value that is not a value of column "role"',
                 'reveal() does not decrypt a stolen envelope for the intern (naming an unprotected column)');
SELECT throws_ok(format('SELECT pii_guard.reveal(%L::pii_guard.encrypted_text, %L::regclass, %L, 3)',
                        :'stolen_envelope', 'public_pii.customers', 'national_id'),
                 '42501', 'pii_guard.reveal() can only be used by masking views',
                 'reveal() does not decrypt a stolen envelope for the intern (naming its own column)');
SELECT throws_ok($$SELECT pii_guard.reveal('abc'::text, 'public_pii.customers'::regclass, 'deal_amount', 1)$$,
                 '42804', 'reveal() was given a value that is not a value of column "deal_amount"',
                 'reveal() refuses a value whose type is not the column''s (text for a numeric column)');

-- 5. Statistics.
SELECT is((SELECT count(*)::int FROM pg_stats WHERE schemaname = 'public_pii' AND tablename = 'customers'), 0,
          'pg_stats shows the intern nothing of public_pii.customers');
SELECT throws_ok($$SELECT * FROM pg_statistic$$, '42501', 'permission denied for table pg_statistic',
                 'pg_statistic is not readable');

-- 6. A leaky function in WHERE (cheap, so the planner evaluates it early)
-- sees only masked values.
CREATE FUNCTION tap_intern.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS $$
BEGIN
    RAISE NOTICE 'leak: %', $1;
    INSERT INTO pg_temp.seen VALUES ($1);
    RETURN true;
END $$;
SET LOCAL client_min_messages = warning;    -- the notices would only clutter the TAP stream
SELECT lives_ok($$SELECT id FROM customers
                   WHERE tap_intern.leak(phone) AND tap_intern.leak(national_id) AND tap_intern.leak(name)
                     AND tap_intern.leak(email) AND tap_intern.leak(address)$$,
                'a query with a leaky function in WHERE runs');
SELECT set_eq($$SELECT v FROM pg_temp.seen$$,
    $$VALUES ('138****5678'), ('139****1111'), ('137****2222'), ('+86 136****3333'),
             ('110101********1234'), ('440301********0018'), ('310104********432X'), ('110105********0011'),
             ('张**'), ('李**'), ('王*'), ('J*** S****'),
             ('z*******@example.com'), ('l*********@example.com'), ('w*******@example.com'), ('j*********@example.com'),
             ('北京市朝阳区****'), ('广东省深圳市南山区****'), ('上海市浦东新区****'), ('****, Mountain View, CA 94043')$$,
    'the leaky function saw exactly the masked values');
DELETE FROM pg_temp.seen;
SELECT lives_ok($$SELECT id FROM customers c WHERE tap_intern.leak(c::text) AND tap_intern.leak(c.deal_amount::text)$$,
                'a leaky function given whole rows and amounts runs');
SELECT is((SELECT count(*)::int FROM pg_temp.seen), 8, '... on every row');
SELECT is((SELECT count(*)::int FROM pg_temp.seen s JOIN plaintexts p ON strpos(s.v, p.x) > 0), 0,
          '... and saw no plaintext of any protected column');
DELETE FROM pg_temp.seen;
RESET client_min_messages;

-- 7. Prepared statements and cursors.
PREPARE intern_phone(bigint) AS SELECT phone FROM customers WHERE id = $1;
SELECT results_eq('EXECUTE intern_phone(1)', $$VALUES ('138****5678')$$,
                  'a prepared statement shows the masked value');
DECLARE intern_cursor CURSOR FOR SELECT id, phone, national_id FROM customers ORDER BY id;
SELECT results_eq('FETCH 2 FROM intern_cursor',
                  $$VALUES (1::bigint, '138****5678', '110101********1234'), (2::bigint, '139****1111', '440301********0018')$$,
                  'a cursor FETCH shows masked values');
SELECT results_eq('FETCH ALL FROM intern_cursor',
                  $$VALUES (3::bigint, '137****2222', '310104********432X'), (4::bigint, '+86 136****3333', '110105********0011')$$,
                  '... to the end');
CLOSE intern_cursor;
-- A statement the manager prepared (generic plan), executed as the intern.
RESET ROLE;
SET LOCAL plan_cache_mode = force_generic_plan;
SET LOCAL ROLE mgr_eve;
PREPARE mgr_phones AS SELECT phone FROM customers ORDER BY id;
SELECT results_eq('EXECUTE mgr_phones', $$VALUES ('13812345678'), ('13900001111'), ('13711112222'), ('+86 136 0000 3333')$$,
                  'the manager''s prepared statement shows her the clear phones');
SET LOCAL ROLE intern_fay;
SELECT results_eq('EXECUTE mgr_phones', $$VALUES ('138****5678'), ('139****1111'), ('137****2222'), ('+86 136****3333')$$,
                  '... and the same plan, executed as the intern, masked ones');
DEALLOCATE mgr_phones;
DEALLOCATE intern_phone;

-- 8. Code and views the intern owns run as the intern.
CREATE FUNCTION tap_intern.phones() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER
AS $$ SELECT phone FROM public.customers ORDER BY id $$;
SELECT is((SELECT string_agg(p, ',') FROM tap_intern.phones() p),
          '138****5678,139****1111,137****2222,+86 136****3333',
          'its own SECURITY DEFINER function returns masked phones');
CREATE FUNCTION tap_intern.raw_phones() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER
AS $$ SELECT pii_guard.decrypt(phone) FROM public_pii.customers $$;
SELECT throws_ok($$SELECT * FROM tap_intern.raw_phones()$$, '42501', 'permission denied for table customers',
                 'its own SECURITY DEFINER function over the base table is refused');
CREATE VIEW tap_intern.raw AS SELECT * FROM public_pii.customers;
SELECT throws_ok($$SELECT * FROM tap_intern.raw$$, '42501', 'permission denied for table customers',
                 'its own view over public_pii.customers is refused when queried');
CREATE VIEW tap_intern.mine AS SELECT id, phone, national_id FROM customers;
SELECT results_eq($$SELECT phone, national_id FROM tap_intern.mine WHERE id = 3$$,
                  $$VALUES ('137****2222', '310104********432X')$$,
                  'its own view over the masking view shows masked values');
CREATE MATERIALIZED VIEW tap_intern.snapshot AS SELECT id, phone FROM customers;
SELECT results_eq($$SELECT phone FROM tap_intern.snapshot ORDER BY id$$,
                  $$VALUES ('138****5678'), ('139****1111'), ('137****2222'), ('+86 136****3333')$$,
                  'a materialized copy holds masked values only');

-- 9. Changing the policy, the views or the settings.
SELECT throws_ok($$SELECT pii_guard.set_clearance('intern', 'core')$$,
                 '42501', 'permission denied for function set_clearance', 'set_clearance');
SELECT throws_ok($$SELECT pii_guard.protect_column('customers', 'phone', 'public')$$,
                 '42501', 'permission denied for function protect_column', 'protect_column');
SELECT throws_ok($$SELECT pii_guard.unprotect_table('customers')$$,
                 '42501', 'permission denied for function unprotect_table', 'unprotect_table');
SELECT throws_ok($$SELECT pii_guard.set_column_access('intern', 'customers', 'phone', 'clear')$$,
                 '42501', 'permission denied for function set_column_access', 'set_column_access');
SELECT throws_ok($$SELECT pii_guard.approve('intern_fay', 'customers', now() + interval '1 hour', 'please')$$,
                 '42501', 'permission denied for function approve', 'approve');
SELECT throws_ok($$SELECT pii_guard._maintenance(true)$$,
                 '42501', 'permission denied for function _maintenance', 'pii_guard._maintenance');
SELECT throws_ok($$INSERT INTO pii_guard.profiles (role, clearance) VALUES ('intern_fay', 'core')$$,
                 '42501', 'permission denied for table profiles', 'INSERT into pii_guard.profiles');
SELECT throws_ok($$UPDATE pii_guard.profiles SET clearance = 'core'$$,
                 '42501', 'permission denied for table profiles', 'UPDATE pii_guard.profiles');
SELECT throws_ok($$DELETE FROM pii_guard.profiles$$,
                 '42501', 'permission denied for table profiles', 'DELETE FROM pii_guard.profiles');
SELECT throws_ok($$INSERT INTO pii_guard.column_rules (base, column_name, level)
                   VALUES ('public_pii.customers', 'sales_owner', 'public')$$,
                 '42501', 'permission denied for table column_rules', 'INSERT into pii_guard.column_rules');
SELECT throws_ok($$UPDATE pii_guard.column_rules SET level = 'public'$$,
                 '42501', 'permission denied for table column_rules', 'UPDATE pii_guard.column_rules');
SELECT throws_ok($$DELETE FROM pii_guard.column_rules$$,
                 '42501', 'permission denied for table column_rules', 'DELETE FROM pii_guard.column_rules');
SELECT throws_ok($$INSERT INTO pii_guard.grants (kind, role, base, valid_until, reason, approver)
                   VALUES ('unmask', 'intern_fay', 'public_pii.customers', now() + interval '1 day', 'x', 'mgr_eve')$$,
                 '42501', 'permission denied for table grants', 'INSERT into pii_guard.grants');
SELECT throws_ok($$UPDATE pii_guard.grants SET valid_until = now() + interval '1 year'$$,
                 '42501', 'permission denied for table grants', 'UPDATE pii_guard.grants');
SELECT throws_ok($$DELETE FROM pii_guard.grants$$,
                 '42501', 'permission denied for table grants', 'DELETE FROM pii_guard.grants');
SELECT throws_ok($$SET pii_guard.audit_reads = off$$,
                 '42501', 'permission denied to set parameter "pii_guard.audit_reads"', 'switching read audit off');
SELECT throws_ok($$DROP VIEW customers$$, '42501', 'must be owner of view customers', 'dropping the masking view');
SELECT throws_ok($$ALTER TABLE customers DISABLE ROW LEVEL SECURITY$$, '42501', 'must be owner of table customers',
                 'switching row-level security off');
SELECT throws_ok($$ALTER TABLE customers DROP COLUMN national_id$$, '42501', 'must be owner of table customers',
                 'dropping a protected column through the view''s name');
SELECT throws_ok($$SELECT pii_guard.protect_column('customers', 'phone', 'sensitive', 'pii_guard.mask_name(text)')$$,
                 '42501', 'permission denied for function protect_column', 'choosing another mask');

-- 10. The marketing analyst: hidden columns stay hidden.
SET LOCAL ROLE mkt_amy;
SELECT throws_ok(format('SELECT pii_guard.reveal(%L::pii_guard.encrypted_text, %L::regclass, %L, 3)',
                        :'stolen_envelope', 'public_pii.customers', 'channel'),
                 '42804', 'reveal() was given a value that is not a value of column "channel"',
                 'reveal() does not decrypt a stolen envelope for mkt_amy (naming a column she sees clear)');
SELECT throws_ok($$DELETE FROM pii_guard.profile_overrides$$,
                 '42501', 'permission denied for table profile_overrides',
                 'mkt_amy cannot delete the overrides that hide contacts from marketing');
SET LOCAL client_min_messages = warning;
SELECT lives_ok($$SELECT id FROM customers WHERE tap_intern.leak(phone) AND tap_intern.leak(name)
                    AND tap_intern.leak(deal_amount::text)$$,
                'mkt_amy runs the intern''s leaky function over hidden columns');
RESET client_min_messages;
SELECT results_eq($$SELECT count(*)::int, count(v)::int FROM pg_temp.seen$$, $$VALUES (12, 0)$$,
                  '... which saw only NULLs');
\set VERBOSITY terse
\set ON_ERROR_STOP 0
SAVEPOINT bypass_copy;
COPY (SELECT name, phone FROM public_pii.customers) TO STDOUT;
\set copy_mkt_state :SQLSTATE
ROLLBACK TO SAVEPOINT bypass_copy;
\set ON_ERROR_STOP 1
\set VERBOSITY default
SELECT is(:'copy_mkt_state'::text, '42501', 'mkt_amy: COPY of the base table');

-- 11. A mistaken GRANT on the base table: pii_guard takes it back at once
-- (with a WARNING), and the fail-closed check refuses in any case.
RESET ROLE;
SET LOCAL client_min_messages = error;
GRANT SELECT ON public_pii.customers TO intern;
RESET client_min_messages;
SELECT ok(NOT has_table_privilege('intern_fay', 'public_pii.customers', 'SELECT'),
          'a mistaken GRANT on public_pii.customers is revoked at once');
SET LOCAL ROLE intern_fay;
SELECT throws_ok($$SELECT name FROM public_pii.customers$$, '42501', 'permission denied for table customers',
                 'the intern is still refused');
SELECT is(pg_temp.error_detail($$SELECT name FROM public_pii.customers$$),
          'Table public_pii.customers is protected by pii_guard; its data is read and written through its masking view.',
          '... by pii_guard''s fail-closed check');
SELECT throws_ok($$SELECT * FROM tap_intern.raw$$, '42501', 'permission denied for table customers',
                 '... through its own view as well');
SELECT throws_ok($$SELECT * FROM tap_intern.raw_phones()$$, '42501', 'permission denied for table customers',
                 '... and its own SECURITY DEFINER function');
\set VERBOSITY terse
\set ON_ERROR_STOP 0
SAVEPOINT bypass_copy;
COPY public_pii.customers TO STDOUT;
\set copy_granted_state :SQLSTATE
ROLLBACK TO SAVEPOINT bypass_copy;
\set ON_ERROR_STOP 1
\set VERBOSITY default
SELECT is(:'copy_granted_state'::text, '42501', '... and COPY public_pii.customers TO STDOUT');
SELECT is((SELECT count(*)::int FROM pg_stats WHERE schemaname = 'public_pii' AND tablename = 'customers'), 0,
          'pg_stats still shows the intern nothing (row-level security is on)');
-- Most protected tables have no row-level security; without it, the
-- statistics of a base table someone granted by mistake must stay hidden too.
RESET ROLE;
ALTER TABLE public_pii.customers DISABLE ROW LEVEL SECURITY;
SET LOCAL ROLE intern_fay;
SELECT is((SELECT count(*)::int FROM pg_stats s JOIN plaintexts p
             ON strpos(concat_ws(' ', s.most_common_vals, s.histogram_bounds), p.x) > 0
            WHERE s.schemaname = 'public_pii' AND s.tablename = 'customers'), 0,
          'after a mistaken GRANT on a table without row-level security, pg_stats shows the intern no plaintext');


-- 12. A view or CHECK constraint of its own calling reveal() on copied
-- envelopes (from a stolen dump, say) under a column it may see in clear.
RESET ROLE;
CREATE TEMP TABLE loot (k bigint, v pii_guard.encrypted_text);
INSERT INTO loot SELECT id, national_id FROM public_pii.customers;
GRANT SELECT ON loot TO support_dan;
SET LOCAL ROLE support_dan;
CREATE TEMP VIEW dec AS
    SELECT pii_guard.reveal(v, 'public_pii.customers'::regclass, 'phone'::name, k) FROM loot;
SELECT throws_ok($$SELECT * FROM dec$$,
                 '42501', 'pii_guard.reveal() can only be used by masking views',
                 'its own view calling reveal() on copied envelopes is refused');
CREATE TEMP TABLE oracle (k bigint, v pii_guard.encrypted_text,
    CHECK (pii_guard.reveal(v, 'public_pii.customers'::regclass, 'phone'::name, k) <> 'x'));
SELECT throws_ok($$INSERT INTO oracle SELECT * FROM loot$$,
                 '42501', 'pii_guard.reveal() can only be used by masking views',
                 'a CHECK constraint calling reveal() is refused');
SELECT throws_ok($$SELECT pii_guard.reveal(v, 'public_pii.customers'::regclass, 'phone'::name, k) FROM loot$$,
                 '42501', 'pii_guard.reveal() can only be used by masking views',
                 'reveal() typed in a query is refused');

SELECT * FROM finish();
ROLLBACK;
