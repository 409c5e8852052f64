-- pgTAP: customer service (support_dan) on the seed scenario
-- (test/fixtures/crm.sql).  Support's clearance is 'sensitive' with
-- deal_amount overridden to 'hidden': every customer, contacts and service
-- data clear, national IDs masked, no sales amounts.  Support may change a
-- customer's contact details and service tier, not the name or the amount,
-- and cannot create or delete customers.
BEGIN;
SELECT plan(17);

CREATE TEMP TABLE stored_before AS
SELECT id, phone::text AS phone_env, national_id::text AS national_id_env, deal_amount
  FROM public_pii.customers;

SET LOCAL ROLE support_dan;

-- Reads.
SELECT results_eq(
    $$SELECT id, name, phone, national_id, email, address, channel, campaign, service_tier, deal_amount
        FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, '张三丰', '13812345678', '110101********1234', 'zhangsan@example.com',
              '北京市朝阳区建国路88号', 'web', 'spring2026', 'gold', NULL::numeric),
             (2::bigint, '李小龙', '13900001111', '440301********0018', 'lixiaolong@example.com',
              '广东省深圳市南山区科技园南区8栋', 'store', 'summer2026', 'standard', NULL::numeric),
             (3::bigint, '王芳', '13711112222', '310104********432X', 'wangfang@example.com',
              '上海市浦东新区世纪大道100号', 'referral', 'spring2026', 'silver', NULL::numeric),
             (4::bigint, 'John Smith', '+86 136 0000 3333', '110105********0011', 'john.smith@example.com',
              '1600 Amphitheatre Pkwy, Mountain View, CA 94043', 'web', 'intl2026', 'standard', NULL::numeric)$$,
    'support sees all 4 customers: contacts clear, national ID masked, deal amount NULL');
SELECT is((SELECT count(*)::int FROM customers WHERE deal_amount IS NOT NULL OR deal_amount > 0), 0,
          'no deal amount is visible, not even to a filter');
SELECT is((SELECT count(*)::int FROM customers WHERE national_id = '31010419920815432X'), 0,
          'a filter on a plaintext national ID finds nothing (support sees it masked)');
SELECT is((SELECT id FROM customers WHERE phone = '13711112222'), 3::bigint,
          'a filter on a clear phone finds the customer');

-- Writes: contact details and the tier.
SELECT lives_ok($$UPDATE customers SET phone = '13799998888', email = 'wf@example.com',
                                       address = '上海市浦东新区陆家嘴环路1号', service_tier = 'gold'
                  WHERE id = 3$$,
                'support updates phone, e-mail, address and service tier');
SELECT results_eq($$SELECT phone, email, address, service_tier, national_id, deal_amount FROM customers WHERE id = 3$$,
                  $$VALUES ('13799998888', 'wf@example.com', '上海市浦东新区陆家嘴环路1号', 'gold',
                            '310104********432X', NULL::numeric)$$,
                  '... and sees the change');
SELECT throws_ok($$UPDATE customers SET name = 'x' WHERE id = 3$$,
                 '42501', 'permission denied for view customers', 'support cannot rename a customer');
SELECT throws_ok($$UPDATE customers SET deal_amount = 1 WHERE id = 3$$,
                 '42501', 'permission denied for view customers', 'support cannot change a deal amount');
SELECT throws_ok($$UPDATE customers SET national_id = '110101199003071234' WHERE id = 3$$,
                 '42501', 'permission denied for view customers', 'support cannot change a national ID');
SELECT throws_ok($$UPDATE customers SET phone = '13700000000', name = 'x' WHERE id = 3$$,
                 '42501', 'permission denied for view customers',
                 'an UPDATE naming one forbidden column is refused as a whole');
SELECT throws_ok($$INSERT INTO customers (name, phone) VALUES ('x', '13700000000')$$,
                 '42501', 'permission denied for view customers', 'support cannot INSERT');
SELECT throws_ok($$DELETE FROM customers WHERE id = 3$$,
                 '42501', 'permission denied for view customers', 'support cannot DELETE');
SELECT throws_ok($$SELECT * FROM public_pii.customers$$, '42501', 'permission denied for table customers',
                 'support cannot read the base table');

-- What is stored, as the superuser.
RESET ROLE;
SELECT results_eq(
    $$SELECT name, pii_guard.decrypt(phone), email, address, service_tier FROM public_pii.customers WHERE id = 3$$,
    $$VALUES ('王芳', '13799998888', 'wf@example.com', '上海市浦东新区陆家嘴环路1号', 'gold')$$,
    'stored: the new contact details and tier, the name unchanged');
SELECT is((SELECT deal_amount FROM public_pii.customers WHERE id = 3), 800.00::numeric(12,2),
          'the deal amount support sees as NULL was not written back as NULL');
SELECT is((SELECT c.national_id::text = b.national_id_env
             FROM public_pii.customers c JOIN stored_before b USING (id) WHERE c.id = 3), true,
          'the national ID support sees masked was not written back (same ciphertext)');
SELECT is((SELECT count(*)::int FROM public_pii.customers c JOIN stored_before b USING (id)
            WHERE c.id <> 3 AND (c.phone::text <> b.phone_env OR c.deal_amount <> b.deal_amount)), 0,
          'no other customer changed');

SELECT * FROM finish();
ROLLBACK;
