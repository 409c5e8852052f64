-- pgTAP: support sees every customer's contacts and service data, not the
-- deal amounts; may change contact details and the tier, not names or
-- amounts; cannot create or delete customers.
BEGIN;
SELECT plan(9);
SET LOCAL ROLE support_dan;

SELECT results_eq(
    $$SELECT id::int, name, phone, email, service_tier FROM customers ORDER BY id$$,
    $$VALUES (1, '张三丰', '13812345678', 'zhangsan@example.com', 'gold'),
             (2, '李小龙', '13900001111', 'lixiaolong@example.com', 'standard'),
             (3, '王芳', '13711112222', 'wangfang@example.com', 'silver'),
             (4, 'John Smith', '+86 136 0000 3333', 'john.smith@example.com', 'standard')$$,
    'support sees all customers with contacts in clear');
SELECT is((SELECT count(deal_amount)::int FROM customers), 0, 'deal amounts are hidden from support');
SELECT is((SELECT national_id FROM customers WHERE id = 3), '310104********432X', 'national IDs are masked');
SELECT lives_ok($$UPDATE customers SET phone = '13799998888', service_tier = 'gold' WHERE id = 3$$,
                'support updates a phone and a service tier');
SELECT is((SELECT phone || ' ' || service_tier FROM customers WHERE id = 3), '13799998888 gold', '... and sees the change');
SELECT throws_ok($$UPDATE customers SET name = 'x' WHERE id = 3$$, '42501', NULL, 'support cannot rename a customer');
SELECT throws_ok($$UPDATE customers SET deal_amount = 1 WHERE id = 3$$, '42501', NULL, 'support cannot change amounts');
SELECT throws_ok($$INSERT INTO customers (name) VALUES ('x')$$, '42501', NULL, 'support cannot insert');
SELECT throws_ok($$DELETE FROM customers WHERE id = 3$$, '42501', NULL, 'support cannot delete');

SELECT * FROM finish();
ROLLBACK;
