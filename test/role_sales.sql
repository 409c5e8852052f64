-- pgTAP: sales reps (sales_bob, sales_carl) on the seed scenario
-- (test/fixtures/crm.sql).  Sales' clearance is 'sensitive': contacts and
-- deal amounts clear, national IDs (core) masked; row-level security on the
-- base table limits each rep to the customers he owns (bob: 1 and 2, carl:
-- 3 and 4).  Reps may change contacts but not the service tier, may create
-- customers for themselves only, and a time-boxed approval opens one
-- customer's national ID to one rep and closes by itself.
BEGIN;
SELECT plan(37);

-- The stored values before anything happens, to prove what writes leave alone.
CREATE TEMP TABLE stored_before AS
SELECT id, phone::text AS phone_env, national_id::text AS national_id_env, deal_amount, service_tier
  FROM public_pii.customers;

-- Reads: own customers only.
SET LOCAL ROLE sales_bob;
SELECT results_eq(
    $$SELECT id, name, phone, national_id, email, address, channel, campaign, service_tier,
             deal_amount, sales_owner
        FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, '张三丰', '13812345678', '110101********1234', 'zhangsan@example.com',
              '北京市朝阳区建国路88号', 'web', 'spring2026', 'gold', 120000.00::numeric, 'sales_bob'::name),
             (2::bigint, '李小龙', '13900001111', '440301********0018', 'lixiaolong@example.com',
              '广东省深圳市南山区科技园南区8栋', 'store', 'summer2026', 'standard', 3500.50::numeric, 'sales_bob'::name)$$,
    'sales_bob sees exactly his customers 1 and 2: contacts and amounts clear, national ID masked');
SELECT is((SELECT count(*)::int FROM customers WHERE id IN (3, 4) OR sales_owner <> 'sales_bob'), 0,
          'sales_bob does not see sales_carl''s customers, even asking for them by id');
SET LOCAL ROLE sales_carl;
SELECT results_eq(
    $$SELECT id, name, phone, national_id, email, address, deal_amount, sales_owner
        FROM customers ORDER BY id$$,
    $$VALUES (3::bigint, '王芳', '13711112222', '310104********432X', 'wangfang@example.com',
              '上海市浦东新区世纪大道100号', 800.00::numeric, 'sales_carl'::name),
             (4::bigint, 'John Smith', '+86 136 0000 3333', '110105********0011', 'john.smith@example.com',
              '1600 Amphitheatre Pkwy, Mountain View, CA 94043', 15000.00::numeric, 'sales_carl'::name)$$,
    'sales_carl sees exactly his customers 3 and 4, national ID masked');
SELECT is((SELECT count(*)::int FROM customers WHERE id IN (1, 2)), 0,
          'sales_carl does not see sales_bob''s customers');

-- A leaky function of his own in WHERE (cheap, so that the planner would
-- like to run it first) sees only his own rows: row-level security on the
-- base table is applied before any of his conditions.
RESET ROLE;
CREATE SCHEMA tap_sales AUTHORIZATION sales_bob;
CREATE TEMP TABLE seen (id bigint, owner name, name text, phone text);
GRANT INSERT, SELECT ON seen TO sales_bob;
SET LOCAL ROLE sales_bob;
CREATE FUNCTION tap_sales.leak(bigint, name, text, text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS $$
BEGIN
    INSERT INTO pg_temp.seen VALUES ($1, $2, $3, $4);
    RETURN true;
END $$;
SELECT is((SELECT count(*)::int FROM customers WHERE tap_sales.leak(id, sales_owner, name, phone)), 2,
          'sales_bob''s query with a leaky function in WHERE returns his 2 customers');
SELECT results_eq($$SELECT DISTINCT id, owner, name, phone FROM pg_temp.seen ORDER BY id$$,
                  $$VALUES (1::bigint, 'sales_bob'::name, '张三丰', '13812345678'),
                           (2::bigint, 'sales_bob'::name, '李小龙', '13900001111')$$,
                  '... and the function saw his own rows only, never sales_carl''s');
-- Nor can he ask the write view whether a row he cannot see exists.
SELECT throws_ok($$INSERT INTO public_pii.customers__pii_write (id, name) VALUES (3, 'probe') ON CONFLICT DO NOTHING$$,
                 '42501', 'permission denied for view customers__pii_write',
                 'sales_bob cannot probe for hidden rows with INSERT ... ON CONFLICT on the write view');
SELECT lives_ok($$INSERT INTO customers (id, name) VALUES (3, 'probe') ON CONFLICT DO NOTHING$$,
                '... on the masking view the conflict is a probe (counted, audited: test/probes.sql)');

-- Writes: contacts yes, service tier no, other reps' customers no.
SET LOCAL ROLE sales_bob;
SELECT lives_ok($$UPDATE customers SET phone = '13800000001', name = '张三' WHERE id = 1$$,
                'sales_bob updates a customer''s phone and name');
SELECT results_eq($$SELECT name, phone, national_id FROM customers WHERE id = 1$$,
                  $$VALUES ('张三', '13800000001', '110101********1234')$$,
                  '... and sees the new phone and name, the national ID still masked');
SELECT lives_ok($$UPDATE customers SET name = '李小龙先生' WHERE id = 2$$,
                'sales_bob updates only the name of customer 2');
SELECT throws_ok($$UPDATE customers SET service_tier = 'platinum' WHERE id = 1$$,
                 '42501', 'permission denied for view customers', 'sales_bob cannot change the service tier');
SELECT throws_ok($$DELETE FROM customers WHERE id = 2$$,
                 '42501', 'permission denied for view customers', 'sales_bob cannot delete a customer');
WITH u AS (UPDATE customers SET name = 'hijack', phone = '13000000000' WHERE id = 3 RETURNING id)
SELECT is(count(*)::int, 0, 'sales_bob''s UPDATE of sales_carl''s customer 3 affects 0 rows') FROM u;
SELECT throws_ok($$UPDATE customers SET sales_owner = 'sales_carl' WHERE id = 1$$,
                 '42501', 'new row violates row-level security policy for table "customers"',
                 'sales_bob cannot hand his customer to another rep (WITH CHECK)');
SELECT throws_ok($$INSERT INTO customers (name, phone, sales_owner) VALUES ('x', '13700000000', 'sales_carl')$$,
                 '42501', 'new row violates row-level security policy for table "customers"',
                 'sales_bob cannot create a customer owned by sales_carl (WITH CHECK)');
WITH n AS (INSERT INTO customers (name, phone, email) VALUES ('新客户', '13700000009', 'new@example.com')
           RETURNING id)
SELECT is(n.id, currval('public_pii.customers_id_seq'), 'INSERT ... RETURNING id gives the new id') FROM n;
SELECT results_eq(
    $$SELECT name, phone, national_id, email, service_tier, sales_owner FROM customers
       WHERE id = currval('public_pii.customers_id_seq')$$,
    $$VALUES ('新客户', '13700000009', NULL::text, 'new@example.com', 'standard', 'sales_bob'::name)$$,
    'the new customer is sales_bob''s (column defaults applied) and he sees it');

-- What is stored, as the superuser (the base table; exempt from masking).
RESET ROLE;
SELECT results_eq(
    $$SELECT c.id, c.name, pii_guard.decrypt(c.phone), c.national_id::text = b.national_id_env,
             c.deal_amount, c.service_tier
        FROM public_pii.customers c JOIN stored_before b USING (id) WHERE c.id IN (1, 2) ORDER BY c.id$$,
    $$VALUES (1::bigint, '张三', '13800000001', true, 120000.00::numeric(12,2), 'gold'),
             (2::bigint, '李小龙先生', '13900001111', true, 3500.50::numeric(12,2), 'standard')$$,
    'stored: the new name and phone; the masked national ID was not written back');
SELECT is((SELECT c.phone::text FROM public_pii.customers c WHERE c.id = 2),
          (SELECT b.phone_env FROM stored_before b WHERE b.id = 2),
          'an UPDATE of the name leaves the stored phone untouched (same ciphertext)');
SELECT results_eq(
    $$SELECT name, pii_guard.decrypt(phone), sales_owner FROM public_pii.customers WHERE id = 3$$,
    $$VALUES ('王芳', '13711112222', 'sales_carl'::name)$$,
    'sales_carl''s customer 3 is untouched');
SELECT results_eq(
    $$SELECT name, pii_guard.decrypt(phone), email, sales_owner FROM public_pii.customers
       WHERE id = currval('public_pii.customers_id_seq')$$,
    $$VALUES ('新客户', '13700000009', 'new@example.com', 'sales_bob'::name)$$,
    'the inserted customer is stored, its phone encrypted');
SELECT is((SELECT count(*)::int FROM public_pii.customers WHERE sales_owner = 'sales_carl'), 2,
          'no customer was created or moved for sales_carl');

-- A time-boxed approval: customer 1's national ID, for sales_bob, 2 seconds.
-- (Decisions use the statement's start time: each check is its own statement.)
SET LOCAL ROLE mgr_eve;
SELECT ok(pii_guard.approve('sales_bob', 'customers', clock_timestamp() + interval '2 seconds',
                            'customer asked for a call back', '{national_id}', ARRAY['1']) > 0,
          'mgr_eve approves customer 1''s national ID for sales_bob, for 2 seconds');
RESET ROLE;
SELECT results_eq(
    $$SELECT kind, approver::text, columns, row_keys, reason FROM pii_guard.grants
       WHERE role = 'sales_bob'::regrole$$,
    $$VALUES ('unmask', 'mgr_eve', '{national_id}'::name[], '{1}'::text[], 'customer asked for a call back')$$,
    'the grant is recorded with its approver, column, row and reason');
SET LOCAL ROLE sales_bob;
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101199003071234',
          'while the grant lives, customer 1''s national ID is clear to sales_bob');
SELECT is((SELECT national_id FROM customers WHERE id = 2), '440301********0018',
          '... customer 2''s is still masked');
SELECT is((SELECT count(*)::int FROM customers WHERE national_id = '110101199003071234'), 1,
          '... and a filter on it finds customer 1');
SET LOCAL ROLE support_dan;
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101********1234',
          '... while for support_dan, whom nobody approved, it stays masked');
SET LOCAL ROLE sales_bob;
SELECT pg_sleep(2.5);
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101********1234',
          'after 2.5 seconds the grant has closed by itself: masked again');
SELECT is((SELECT count(*)::int FROM customers WHERE national_id = '110101199003071234'), 0,
          '... and the filter finds nothing again');

-- Who may approve.
SELECT throws_ok($$SELECT pii_guard.approve('sales_bob', 'customers', now() + interval '1 hour', 'me')$$,
                 '42501', 'permission denied for function approve', 'sales_bob cannot approve');
SET LOCAL ROLE sales_carl;
SELECT throws_ok($$SELECT pii_guard.approve('sales_bob', 'customers', now() + interval '1 hour', 'a colleague')$$,
                 '42501', 'permission denied for function approve', 'sales_carl cannot approve for sales_bob');
SET LOCAL ROLE mgr_eve;
SELECT throws_ok($$SELECT pii_guard.approve('manager', 'customers', now() + interval '1 hour', 'my team')$$,
                 '42501', 'an approver cannot approve access for a role they belong to',
                 'mgr_eve cannot approve for manager, a role she is in');
SELECT throws_ok($$SELECT pii_guard.approve('mgr_eve', 'customers', now() + interval '1 hour', 'myself')$$,
                 '42501', 'an approver cannot approve access for a role they belong to',
                 'mgr_eve cannot approve for herself');
SELECT throws_ok($$SELECT pii_guard.approve('sales_bob', 'customers', now() - interval '1 hour', 'late')$$,
                 '22023', 'valid_until must be in the future', 'an approval that ends in the past is refused');
SELECT throws_ok($$INSERT INTO pii_guard.grants (kind, role, base, valid_until, reason, approver)
                   VALUES ('unmask', 'mgr_eve', 'public_pii.customers', now() + interval '1 hour', 'x', 'dba_joe')$$,
                 '42501', 'an approver cannot approve access for a role they belong to',
                 'nor by writing the grants table directly');

SELECT * FROM finish();
ROLLBACK;
