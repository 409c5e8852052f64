-- pgTAP: sales reps see their own customers only (row-level security),
-- contacts and deal amounts in clear, national IDs masked; they may change
-- contacts but not the service tier; a time-boxed grant opens one
-- customer's national ID to one rep and closes by itself.
BEGIN;
SELECT plan(17);

SET LOCAL ROLE sales_bob;
SELECT results_eq(
    $$SELECT id::int, name, phone, national_id, email, deal_amount FROM customers ORDER BY id$$,
    $$VALUES (1, '张三丰', '13812345678', '110101********1234', 'zhangsan@example.com', 120000.00::numeric(12,2)),
             (2, '李小龙', '13900001111', '440301********0018', 'lixiaolong@example.com', 3500.50::numeric(12,2))$$,
    'sales_bob sees his two customers: contacts and amounts clear, national ID masked');
SELECT is((SELECT count(*)::int FROM customers WHERE id IN (3, 4)), 0,
          'sales_bob does not see sales_carl''s customers');
SELECT lives_ok($$UPDATE customers SET phone = '13800000001', name = '张三' WHERE id = 1$$,
                'sales_bob updates a customer''s phone and name');
SELECT throws_ok($$UPDATE customers SET service_tier = 'platinum' WHERE id = 1$$, '42501', NULL,
                 'sales_bob cannot change the service tier');
SELECT is((SELECT count(*)::int FROM (SELECT 1 FROM customers WHERE id = 3) s), 0,
          'customer 3 is invisible to sales_bob ...');
UPDATE customers SET name = 'hijack' WHERE id = 3;
SELECT is((SELECT phone FROM customers WHERE id = 1), '13800000001', '... and his update of it changed nothing');
SELECT throws_ok($$INSERT INTO customers (name, phone, sales_owner) VALUES ('x', '13700000000', 'sales_carl')$$,
                 '42501', NULL, 'sales_bob cannot create a customer for another rep (WITH CHECK)');
WITH n AS (INSERT INTO customers (name, phone, email) VALUES ('新客户', '13700000009', 'new@example.com')
           RETURNING id)
SELECT ok((SELECT id FROM n) > 4, 'INSERT ... RETURNING id gives the new id');
RESET ROLE;
SELECT is((SELECT name FROM public_pii.customers WHERE id = 3), '王芳', 'sales_carl''s customer was untouched');
SELECT is((SELECT pii_guard.decrypt(phone) FROM public_pii.customers WHERE id = 2), '13900001111',
          'an update of other columns never rewrites the stored phone');

-- A grant for one customer's national ID, for two seconds.
SET LOCAL ROLE mgr_eve;
SELECT ok(pii_guard.approve('sales_bob', 'customers', clock_timestamp() + interval '2 seconds',
                            'customer 1 asked for a call back', '{national_id}', ARRAY['1']) > 0,
          'mgr_eve approves customer 1''s national ID for sales_bob, for 2 seconds');
SET LOCAL ROLE sales_bob;
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101199003071234',
          'while the grant lives, customer 1''s national ID is clear');
SELECT is((SELECT national_id FROM customers WHERE id = 2), '440301********0018',
          '... and only customer 1''s');
SELECT pg_sleep(2.5);
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101********1234',
          'the grant closed by itself');
SELECT throws_ok($$SELECT pii_guard.approve('sales_bob', 'customers', now() + interval '1 hour', 'me')$$,
                 '42501', NULL, 'a sales rep cannot approve');
SET LOCAL ROLE mgr_eve;
SELECT throws_ok($$SELECT pii_guard.approve('manager', 'customers', now() + interval '1 hour', 'myself')$$,
                 '42501', NULL, 'an approver cannot approve a role she belongs to');
SELECT throws_ok($$SELECT pii_guard.approve('sales_bob', 'customers', now() - interval '1 hour', 'late')$$,
                 '22023', NULL, 'an approval must end in the future');

SELECT * FROM finish();
ROLLBACK;
