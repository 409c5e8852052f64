-- pgTAP: the intern (intern_fay) on the seed scenario (test/fixtures/crm.sql).
-- The intern profile's clearance is 'public': every protected column is
-- masked by its mask function (deal amounts with deterministic noise, so
-- that reading them again and averaging recovers nothing), filters see only
-- the masked values, and the intern writes nothing.
BEGIN;
SELECT plan(28);

-- The intern's first reading of the amounts, kept for the determinism check.
CREATE TEMP TABLE first_read (id bigint, deal_amount numeric);
GRANT INSERT, SELECT ON first_read TO intern_fay;

SET LOCAL ROLE intern_fay;

SELECT results_eq(
    $$SELECT id, name, phone, national_id, email, address, channel, campaign, service_tier
        FROM customers ORDER BY id$$,
    $$VALUES
      (1::bigint, '张**', '138****5678', '110101********1234', 'z*******@example.com',
       '北京市朝阳区****', 'w***', 'sp***', 'g***'),
      (2::bigint, '李**', '139****1111', '440301********0018', 'l*********@example.com',
       '广东省深圳市南山区****', 's***', 'su***', 's***'),
      (3::bigint, '王*', '137****2222', '310104********432X', 'w*******@example.com',
       '上海市浦东新区****', 'r***', 'sp***', 's***'),
      (4::bigint, 'J*** S****', '+86 136****3333', '110105********0011', 'j*********@example.com',
       '****, Mountain View, CA 94043', 'w***', 'in***', 's***')$$,
    'the intern sees all 4 customers with every protected column masked');
SELECT results_eq($$SELECT id, sales_owner FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, 'sales_bob'::name), (2::bigint, 'sales_bob'::name),
             (3::bigint, 'sales_carl'::name), (4::bigint, 'sales_carl'::name)$$,
    'unprotected columns are shown as they are');

-- Deal amounts: noised within 20%, never the stored value, the same every time.
INSERT INTO first_read SELECT id, deal_amount FROM customers;
SELECT is((SELECT count(*)::int FROM first_read WHERE deal_amount IS NOT NULL), 4,
          'every deal amount is shown (noised, not hidden)');
SELECT is((SELECT count(*)::int
             FROM first_read f JOIN (VALUES (1, 120000.00), (2, 3500.50), (3, 800.00), (4, 15000.00)) v(id, stored)
               ON v.id = f.id
            WHERE f.deal_amount <> v.stored AND abs(f.deal_amount - v.stored) <= 0.2 * v.stored), 4,
          'each deal amount differs from the stored one, by at most 20%');
SELECT set_eq($$SELECT id, deal_amount FROM customers$$, $$SELECT id, deal_amount FROM first_read$$,
              'reading the amounts again gives the same noise');
SELECT is((SELECT deal_amount FROM customers WHERE id = 1), (SELECT deal_amount FROM first_read WHERE id = 1),
          '... one row at a time too');
SELECT is((SELECT avg(deal_amount) FROM (SELECT c.deal_amount FROM customers c, generate_series(1, 50) g
                                          WHERE c.id = 1) s),
          (SELECT deal_amount FROM first_read WHERE id = 1),
          '... so averaging many reads converges on the noised value, not the truth');
SELECT is((SELECT count(*)::int FROM customers WHERE deal_amount = 120000.00), 0,
          'a filter on the stored amount finds nothing');

-- Filters see only masked values.
SELECT is((SELECT count(*)::int FROM customers WHERE phone = '13812345678'), 0,
          'WHERE phone = ''13812345678'' finds nothing');
SELECT results_eq($$SELECT id FROM customers WHERE phone = '138****5678'$$, $$VALUES (1::bigint)$$,
                  'WHERE phone = ''138****5678'' finds the masked row');
SELECT is((SELECT count(*)::int FROM customers WHERE national_id = '110101199003071234'), 0,
          'a filter on a plaintext national ID finds nothing');
SELECT is((SELECT count(*)::int FROM customers WHERE name = '张三丰' OR email LIKE 'zhangsan%'
              OR address LIKE '%建国路%' OR channel = 'web' OR service_tier = 'gold'), 0,
          'filters on plaintext names, e-mails, addresses, channels and tiers find nothing');
SELECT is((SELECT count(*)::int FROM customers WHERE phone LIKE '138%5678'), 1,
          'a pattern matching the masked form finds it (what is shown is what is filtered)');

-- No writes.
SELECT throws_ok($$INSERT INTO customers (name) VALUES ('x')$$,
                 '42501', 'permission denied for view customers', 'the intern cannot INSERT');
SELECT throws_ok($$UPDATE customers SET phone = '13800000000' WHERE id = 1$$,
                 '42501', 'permission denied for view customers', 'the intern cannot UPDATE');
SELECT throws_ok($$DELETE FROM customers WHERE id = 1$$,
                 '42501', 'permission denied for view customers', 'the intern cannot DELETE');
SELECT throws_ok($$TRUNCATE public_pii.customers$$, '42501', NULL, 'the intern cannot TRUNCATE the base table');
SELECT throws_ok($$INSERT INTO public_pii.customers (name) VALUES ('x')$$,
                 '42501', 'permission denied for table customers', 'the intern cannot write the base table');

RESET ROLE;
SELECT results_eq(
    $$SELECT id, name, pii_guard.decrypt(phone), deal_amount FROM public_pii.customers ORDER BY id$$,
    $$VALUES (1::bigint, '张三丰', '13812345678', 120000.00::numeric(12,2)),
             (2::bigint, '李小龙', '13900001111', 3500.50::numeric(12,2)),
             (3::bigint, '王芳', '13711112222', 800.00::numeric(12,2)),
             (4::bigint, 'John Smith', '+86 136 0000 3333', 15000.00::numeric(12,2))$$,
    'the stored data is untouched');
SELECT is((SELECT count(*)::int FROM public_pii.customers), 4, 'no row was added or removed');

-- Export limits (the fixture: 20 protected rows per statement).  600 more
-- customers, for this suite only (rolled back with it).
INSERT INTO public_pii.customers (name, phone, channel)
SELECT 'Bulk ' || g, '137' || lpad(g::text, 8, '0'), 'web' FROM generate_series(1, 600) g;
SET LOCAL ROLE intern_fay;
SELECT is((SELECT array_length(array_agg(phone), 1) FROM (SELECT phone FROM customers ORDER BY id LIMIT 20) s), 20,
          'the intern reads 20 customers in one statement');
SELECT throws_ok($$SELECT string_agg(phone, ',') FROM customers$$, '54P01', 'pii_guard export limit exceeded',
                 'the intern''s bulk export of all customers is refused');
SELECT throws_ok($$SELECT array_length(array_agg(phone), 1) FROM (SELECT id, phone FROM customers ORDER BY id LIMIT 21) s$$, '54P01', NULL,
                 '... at the 21st row');
SET LOCAL ROLE mgr_eve;
SELECT ok(pii_guard.approve_export('intern', 500, now() + interval '24 hours', 'mailing to all customers') > 0,
          'the manager approves 500 rows for the interns, for 24 hours');
SET LOCAL ROLE intern_fay;
SELECT is((SELECT array_length(array_agg(phone), 1) FROM (SELECT phone FROM customers ORDER BY id LIMIT 520) s), 520,
          'the intern exports 500 rows beyond her own 20 in one statement');
SELECT throws_ok($$SELECT array_length(array_agg(phone), 1) FROM (SELECT id, phone FROM customers ORDER BY id LIMIT 21) s$$, '54P01', NULL,
                 'the 501st row beyond her limit is refused: the approval is used up');
SELECT is((SELECT array_length(array_agg(phone), 1) FROM (SELECT phone FROM customers ORDER BY id LIMIT 20) s), 20,
          '... her own 20 rows per statement are still hers');
RESET ROLE;
SELECT results_eq($$SELECT rows, used, live FROM pii_guard.export_approvals WHERE reason = 'mailing to all customers'$$,
                  $$VALUES (500::bigint, 500::bigint, false)$$, 'the approval shows all 500 rows used');

SELECT * FROM finish();
ROLLBACK;
