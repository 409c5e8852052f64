-- pgTAP: mask functions on the seed scenario (test/fixtures/crm.sql).
-- reveal() hands a mask function the plaintext of every value it masks,
-- for every governed role.  A member of pii_guard_admin (dba_joe) who is no
-- superuser must not be able to turn that into a harvest of other roles'
-- reads: only functions that cannot pass the plaintext on are accepted,
-- the check is repeated at use time (a function may be altered after
-- protect_column), a mask function in use cannot be dropped, and a function
-- that takes a renamed mask's name is not adopted.  The intern (intern_fay)
-- sees national IDs masked throughout.
BEGIN;
SELECT plan(27);

CREATE SCHEMA tap_admin AUTHORIZATION dba_joe;
CREATE TEMP TABLE warnings (w text);

-- 1. The attack: a SECURITY DEFINER function of the admin's own that keeps
-- its argument and returns a plausible mask.
SET LOCAL ROLE dba_joe;
CREATE TABLE tap_admin.harvest (v text);
CREATE FUNCTION tap_admin.steal(v text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO tap_admin.harvest VALUES (v);
    RETURN pii_guard.mask_cn_id(v);
END $$;
SELECT throws_ok($$SELECT pii_guard.protect_column('customers', 'national_id', 'core', 'tap_admin.steal(text)')$$,
                 '42501', 'function tap_admin.steal(text) cannot be a mask function',
                 'protect_column refuses the admin''s harvesting SECURITY DEFINER function');
-- Even a harmless-looking IMMUTABLE, LEAKPROOF-free function: the admin owns it and could change it.
CREATE FUNCTION tap_admin.own_mask(v text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog AS $$ SELECT pii_guard.mask_cn_id(v) $$;
SELECT throws_ok($$SELECT pii_guard.protect_column('customers', 'national_id', 'core', 'tap_admin.own_mask(text)')$$,
                 '42501', 'function tap_admin.own_mask(text) cannot be a mask function',
                 '... and any function the admin owns');
SELECT is(pii_guard._mask_problem('tap_admin.steal(text)'),
          'The function is owned by role dba_joe, which is not a superuser.',
          '_mask_problem says why');
SELECT is(pii_guard._mask_problem('pii_guard.mask_cn_id(text)'), NULL, 'pii_guard''s own masks qualify');
SELECT is(pii_guard._mask_problem('pii_guard.partial(text,integer,text,integer)'), NULL,
          '... the not LEAKPROOF ones too');
RESET ROLE;
SET LOCAL ROLE intern_fay;
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101********1234',
          'the intern still sees the national ID masked by mask_cn_id');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM tap_admin.harvest), 0, 'nothing was harvested');

-- 2. A mask a superuser owns and reviewed, in a schema the reader cannot
-- use: resolved and run without the reader's privileges.
CREATE FUNCTION tap_admin.cn_mask(v text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT LEAKPROOF SET search_path = pg_catalog AS $$ SELECT pii_guard.mask_cn_id(v) $$;
SET LOCAL ROLE dba_joe;
SELECT lives_ok($$SELECT pii_guard.protect_column('customers', 'national_id', 'core', 'tap_admin.cn_mask(text)')$$,
                'dba_joe sets a superuser''s reviewed function as the mask');
SET LOCAL ROLE intern_fay;
SELECT ok(NOT has_schema_privilege('tap_admin', 'USAGE'), 'the intern has no USAGE on the mask''s schema');
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101********1234',
          '... and reads the national ID masked by it');

-- 3. Altered after protect_column: checked again at use, failing closed.
RESET ROLE;
ALTER FUNCTION tap_admin.cn_mask(text) OWNER TO dba_joe;
SET LOCAL ROLE intern_fay;
SET LOCAL client_min_messages = error;      -- (the column is hidden with a WARNING)
SELECT is((SELECT national_id FROM customers WHERE id = 1), NULL,
          'once the admin owns the mask function, the column is hidden');
RESET client_min_messages;
SET LOCAL ROLE dba_joe;
CREATE OR REPLACE FUNCTION tap_admin.cn_mask(v text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO tap_admin.harvest VALUES (v);
    RETURN pii_guard.mask_cn_id(v);
END $$;
SET LOCAL ROLE intern_fay;
SET LOCAL client_min_messages = error;
SELECT is((SELECT string_agg(coalesce(national_id, '-'), ',') FROM customers), '-,-,-,-',
          '... and stays hidden when he turns it into a harvester');
RESET client_min_messages;
RESET ROLE;
SELECT is((SELECT count(*)::int FROM tap_admin.harvest), 0, '... which never runs');
CREATE OR REPLACE FUNCTION tap_admin.cn_mask(v text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT LEAKPROOF SET search_path = pg_catalog AS $$ SELECT pii_guard.mask_cn_id(v) $$;
ALTER FUNCTION tap_admin.cn_mask(text) OWNER TO CURRENT_USER;
SET LOCAL ROLE intern_fay;
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101********1234',
          'reviewed and back in a superuser''s hands, it masks again');
RESET ROLE;
ALTER FUNCTION tap_admin.cn_mask(text) VOLATILE;
SET LOCAL ROLE intern_fay;
SET LOCAL client_min_messages = error;
SELECT is((SELECT national_id FROM customers WHERE id = 1), NULL, 'made VOLATILE, the column is hidden');
RESET client_min_messages;
RESET ROLE;
ALTER FUNCTION tap_admin.cn_mask(text) IMMUTABLE SECURITY DEFINER;
SET LOCAL ROLE intern_fay;
SET LOCAL client_min_messages = error;
SELECT is((SELECT national_id FROM customers WHERE id = 1), NULL, 'made SECURITY DEFINER, the column is hidden');
RESET client_min_messages;
RESET ROLE;
ALTER FUNCTION tap_admin.cn_mask(text) SECURITY INVOKER NOT LEAKPROOF;
SET LOCAL ROLE intern_fay;
SET LOCAL client_min_messages = error;
SELECT is((SELECT national_id FROM customers WHERE id = 1), NULL, 'made NOT LEAKPROOF, the column is hidden');
RESET client_min_messages;
RESET ROLE;
ALTER FUNCTION tap_admin.cn_mask(text) LEAKPROOF;

-- 4. Dropping a mask function in use is refused; renaming it and taking its
-- name does not smuggle in another function.
SELECT throws_ok($$DROP FUNCTION tap_admin.cn_mask(text)$$, '2BP01',
                 'cannot drop function tap_admin.cn_mask(text) because other objects depend on it',
                 'a mask function in use cannot be dropped');
ALTER FUNCTION tap_admin.cn_mask(text) RENAME TO cn_mask_old;
CREATE FUNCTION tap_admin.cn_mask(v text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT LEAKPROOF SET search_path = pg_catalog AS $$ SELECT 'impostor'::text $$;
SET LOCAL ROLE intern_fay;
SET LOCAL client_min_messages = error;
SELECT is((SELECT national_id FROM customers WHERE id = 1), NULL,
          'a function that took a renamed mask''s name is not adopted: hidden');
RESET client_min_messages;
RESET ROLE;
SET LOCAL ROLE dba_joe;
SELECT lives_ok($$SELECT pii_guard.protect_column('customers', 'national_id', 'core', 'tap_admin.cn_mask(text)')$$,
                'protect_column adopts it when asked to');
SET LOCAL ROLE intern_fay;
SELECT is((SELECT national_id FROM customers WHERE id = 1), 'impostor', '... and then it masks');
RESET ROLE;
SELECT lives_ok($$DROP FUNCTION tap_admin.cn_mask_old(text)$$, 'the renamed one, no longer used, can be dropped');

-- 5. DROP ... CASCADE: the rule loses its mask (masked becomes hidden) and
-- the masking view is built again.
SET LOCAL client_min_messages = error;
DROP FUNCTION tap_admin.cn_mask(text) CASCADE;
RESET client_min_messages;
SELECT is((SELECT mask_function FROM pii_guard.column_rules
            WHERE base = 'public_pii.customers'::regclass AND column_name = 'national_id'), NULL,
          'after DROP FUNCTION ... CASCADE the national ID has no mask');
SELECT ok(to_regclass('public.customers') IS NOT NULL, '... the masking view is back');
SET LOCAL ROLE intern_fay;
SELECT results_eq($$SELECT national_id, phone FROM customers WHERE id = 1$$,
                  $$VALUES (NULL::text, '138****5678'::text)$$,
                  '... and shows the intern the national ID hidden, the rest as before');
RESET ROLE;
SELECT lives_ok($$SELECT pii_guard.protect_column('customers', 'national_id', 'core', 'pii_guard.mask_cn_id(text)')$$,
                'the original mask is set again');
SELECT is((SELECT count(*)::int FROM tap_admin.harvest), 0, 'and nothing was ever harvested');

SELECT * FROM finish();
ROLLBACK;
