-- pgTAP: the intern sees everything masked (amounts noised, the same every
-- time), cannot write, and filters see only masked values.
BEGIN;
SELECT plan(9);
SET LOCAL ROLE intern_fay;

SELECT results_eq(
    $$SELECT id::int, name, phone, national_id, email, address, channel, campaign, service_tier
        FROM customers ORDER BY id$$,
    $$VALUES
      (1, '张**', '138****5678', '110101********1234', 'z*******@example.com', '北京市朝阳区****', 'w***', 'sp***', 'g***'),
      (2, '李**', '139****1111', '440301********0018', 'l*********@example.com', '广东省深圳市南山区****', 's***', 'su***', 's***'),
      (3, '王*', '137****2222', '310104********432X', 'w*******@example.com', '上海市浦东新区****', 'r***', 'sp***', 's***'),
      (4, 'J*** S****', '+86 136****3333', '110105********0011', 'j*********@example.com', '****, Mountain View, CA 94043', 'w***', 'in***', 's***')$$,
    'the intern sees every protected column masked');
SELECT ok((SELECT bool_and(deal_amount <> stored AND abs(deal_amount - stored) <= 0.2 * stored)
             FROM customers c JOIN (VALUES (1, 120000.00), (2, 3500.50), (3, 800.00), (4, 15000.00)) v(id, stored)
               ON v.id = c.id),
          'deal amounts are noised, within 20% of the truth');
SELECT results_eq($$SELECT deal_amount FROM customers ORDER BY id$$,
                  $$SELECT deal_amount FROM customers ORDER BY id$$,
                  'the noise is the same every time: averaging recovers nothing');
SELECT is((SELECT count(*)::int FROM customers WHERE phone = '13812345678'), 0,
          'a filter on the plaintext phone finds nothing');
SELECT is((SELECT id::int FROM customers WHERE phone = '138****5678'), 1,
          'filters see the masked value');
SELECT throws_ok($$INSERT INTO customers (name) VALUES ('x')$$, '42501', NULL, 'the intern cannot insert');
SELECT throws_ok($$UPDATE customers SET name = 'x'$$, '42501', NULL, 'the intern cannot update');
SELECT throws_ok($$DELETE FROM customers$$, '42501', NULL, 'the intern cannot delete');
SELECT throws_ok($$SELECT pii_guard.decrypt(phone) FROM public_pii.customers$$, '42501', NULL,
                 'the intern cannot decrypt');

SELECT * FROM finish();
ROLLBACK;
