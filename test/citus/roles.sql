-- pgTAP: the seed roles read the seed CRM (test/citus/fixture.sql) through
-- its masking views.  test/citus/run.sh runs this same file against one
-- server and against a Citus coordinator whose customers, orders and
-- tickets are distributed: every role sees exactly the same on both --
-- multi-shard and router queries, co-located joins, searches on protected
-- columns, an approval opening one row, export limits.  (Runs outside a
-- transaction block: the approval is committed, so that the workers
-- decide with it, and revoked at the end.)
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(33);

-- marketing: channels and campaigns only; contacts hidden, the rest masked.
SET ROLE mkt_amy;
SELECT results_eq(
    $$SELECT id, name, phone, national_id, email, channel, campaign, service_tier, deal_amount
        FROM customers WHERE id <= 4 ORDER BY id$$,
    $$VALUES (1::bigint, NULL::text, NULL::text, NULL::text, NULL::text, 'web', 'spring2026', NULL::text, NULL::numeric),
             (2, NULL, NULL, NULL, NULL, 'store', 'summer2026', NULL, NULL),
             (3, NULL, NULL, NULL, NULL, 'referral', 'spring2026', NULL, NULL),
             (4, NULL, NULL, NULL, NULL, 'web', 'intl2026', NULL, NULL)$$,
    'mkt_amy: contacts hidden, channels and campaigns in clear (a multi-shard query)');
SELECT results_eq(
    $$SELECT o.id, c.name, o.card, o.ship_to FROM orders o JOIN customers c ON c.id = o.customer_id
       ORDER BY o.id$$,
    $$VALUES (1::bigint, NULL::text, '622202*********0123', '北京市朝阳区****'),
             (2, NULL, '622202*********0123', '北京市海淀区****'),
             (3, NULL, '621700******7890', '广东省深圳市南山区****'),
             (4, NULL, '411111******1111', '上海市浦东新区****'),
             (5, NULL, '550000******0004', '****, Mountain View, CA 94043')$$,
    'mkt_amy: orders joined to their customers, cards and addresses masked (a co-located join)');
SELECT results_eq($$SELECT subject, callback, body FROM tickets WHERE customer_id = 3$$,
                  $$VALUES ('refund', '137****2222', NULL::text)$$,
                  'mkt_amy: a ticket, by its customer (a router query): callback masked, body hidden');
SELECT is((SELECT count(*)::int FROM customers), 34, 'mkt_amy counts every customer');
SELECT is((SELECT count(*)::int FROM customers WHERE phone = '13812345678'), 0,
          'mkt_amy cannot find a customer by a phone she does not see');
RESET ROLE;

-- sales: own customers only (row-level security), contacts in clear.
SET ROLE sales_bob;
SELECT results_eq(
    $$SELECT id, name, phone, national_id, email, address, channel, deal_amount, sales_owner
        FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, '张三丰', '13812345678', '110101********1234', 'zhangsan@example.com',
              '北京市朝阳区建国路88号', 'web', 120000.00::numeric, 'sales_bob'::name),
             (2, '李小龙', '13900001111', '440301********0018', 'lixiaolong@example.com',
              '广东省深圳市南山区科技园南区8栋', 'store', 3500.50, 'sales_bob')$$,
    'sales_bob sees exactly his customers 1 and 2, national IDs masked');
SELECT results_eq($$SELECT name, phone FROM customers WHERE id = 1$$,
                  $$VALUES ('张三丰', '13812345678')$$, 'sales_bob: his customer 1, by id (a router query)');
SELECT is_empty($$SELECT * FROM customers WHERE id = 3$$,
                'sales_bob: sales_carl''s customer 3, by id: nothing');
SELECT results_eq(
    $$SELECT o.id, c.name, o.card, o.ship_to FROM orders o JOIN customers c ON c.id = o.customer_id
       ORDER BY o.id$$,
    $$VALUES (1::bigint, '张三丰', '622202*********0123', '北京市朝阳区建国路88号'),
             (2, '张三丰', '622202*********0123', '北京市海淀区中关村大街1号'),
             (3, '李小龙', '621700******7890', '广东省深圳市南山区科技园南区8栋')$$,
    'sales_bob: the orders of his customers, cards masked (core), addresses clear');
SELECT is((SELECT count(*)::int FROM customers WHERE phone = '13812345678'), 1,
          'sales_bob finds his customer by phone');
SELECT is((SELECT count(*)::int FROM customers WHERE phone = '13711112222'), 0,
          '... but not sales_carl''s');
RESET ROLE;
SET ROLE sales_carl;
SELECT is((SELECT count(*)::int FROM customers), 32, 'sales_carl counts his 32 customers');
SELECT results_eq($$SELECT name, phone FROM customers WHERE id = 3$$,
                  $$VALUES ('王芳', '13711112222')$$, 'sales_carl reads his customer 3');
RESET ROLE;

-- support: every customer, contacts in clear, no deal amounts.
SET ROLE support_dan;
SELECT results_eq(
    $$SELECT id, name, phone, national_id, deal_amount FROM customers WHERE id <= 4 ORDER BY id$$,
    $$VALUES (1::bigint, '张三丰', '13812345678', '110101********1234', NULL::numeric),
             (2, '李小龙', '13900001111', '440301********0018', NULL),
             (3, '王芳', '13711112222', '310104********432X', NULL),
             (4, 'John Smith', '+86 136 0000 3333', '110105********0011', NULL)$$,
    'support_dan: contacts clear, national IDs masked, deal amounts hidden');
SELECT results_eq($$SELECT t.id, c.name, t.callback, t.body FROM tickets t JOIN customers c ON c.id = t.customer_id
                     ORDER BY t.id$$,
                  $$VALUES (1::bigint, '张三丰', '13812345678', 'Call back after 6pm, the parcel went to 北京市朝阳区建国路88号'),
                           (2, '王芳', '13711112222', 'Refund to card 4111111111111111 please'),
                           (3, 'John Smith', '+86 136 0000 3333', 'New address: 1 Infinite Loop, Cupertino')$$,
                  'support_dan reads the tickets in clear, with their customers');
SELECT results_eq($$SELECT count(*)::int, max(length(phone)) FROM customers WHERE email LIKE 'kunde1%'$$,
                  $$VALUES (11, 11)$$, 'support_dan searches by e-mail');
RESET ROLE;

-- A profile itself, NOLOGIN: SET ROLE to it reads as its members do (on
-- Citus, the workers let it log in behind their login gate).
SET ROLE support;
SELECT results_eq($$SELECT name, phone, national_id FROM customers WHERE id = 2$$,
                  $$VALUES ('李小龙', '13900001111', '440301********0018')$$,
                  'SET ROLE support, a NOLOGIN profile: reads as support_dan does');
RESET ROLE;

-- manager: everything sensitive in clear; national IDs and cards (core) masked.
SET ROLE mgr_eve;
SELECT results_eq($$SELECT name, national_id, deal_amount FROM customers WHERE id = 4$$,
                  $$VALUES ('John Smith', '110105********0011', 15000.00::numeric)$$,
                  'mgr_eve: deal amounts clear, national IDs masked');
SELECT results_eq($$SELECT card FROM orders WHERE customer_id = 4$$,
                  $$VALUES ('550000******0004')$$, 'mgr_eve: cards masked');
-- An approval: customer 1's national ID, for sales_bob (committed).
SELECT ok(pii_guard.approve('sales_bob', 'customers', clock_timestamp() + interval '1 hour',
                            'customer asked for a call back', '{national_id}', ARRAY['1']) > 0,
          'mgr_eve approves customer 1''s national ID for sales_bob');
RESET ROLE;
SET ROLE sales_bob;
SELECT results_eq($$SELECT id, national_id FROM customers ORDER BY id$$,
                  $$VALUES (1::bigint, '110101199003071234'), (2, '440301********0018')$$,
                  'with the approval, sales_bob sees customer 1''s national ID in clear, not customer 2''s');
SELECT results_eq($$SELECT national_id FROM customers WHERE id = 1$$,
                  $$VALUES ('110101199003071234')$$, '... also by id (a router query)');
SELECT is((SELECT count(*)::int FROM customers WHERE national_id = '110101199003071234'), 1,
          '... and finds customer 1 by it');
RESET ROLE;
SET ROLE support_dan;
SELECT results_eq($$SELECT national_id FROM customers WHERE id = 1$$,
                  $$VALUES ('110101********1234')$$, 'support_dan, whom nobody approved, still sees it masked');
RESET ROLE;
SELECT pii_guard.revoke_grant(grant_id) FROM pii_guard.grants
 WHERE role = 'sales_bob'::regrole AND revoked_at IS NULL;
SET ROLE sales_bob;
SELECT results_eq($$SELECT national_id FROM customers WHERE id = 1$$,
                  $$VALUES ('110101********1234')$$, 'the approval revoked: masked again');
RESET ROLE;

-- intern: masked data only, at most 20 protected rows per statement.
SET ROLE intern_fay;
SELECT results_eq(
    $$SELECT id, name, phone, national_id, email, channel, deal_amount FROM customers WHERE id <= 4 ORDER BY id$$,
    $$VALUES (1::bigint, '张**', '138****5678', '110101********1234', 'z*******@example.com', 'w***', NULL::numeric),
             (2, '李**', '139****1111', '440301********0018', 'l*********@example.com', 's***', NULL),
             (3, '王*', '137****2222', '310104********432X', 'w*******@example.com', 'r***', NULL),
             (4, 'J*** S****', '+86 136****3333', '110105********0011', 'j*********@example.com', 'w***', NULL)$$,
    'intern_fay: everything masked');
SELECT results_eq($$SELECT card FROM orders WHERE customer_id = 1 ORDER BY id$$,
                  $$VALUES ('622202*********0123'), ('622202*********0123')$$, 'intern_fay: cards masked');
SELECT throws_ok($$SELECT id, phone FROM customers ORDER BY id$$, '54P01', NULL,
                 'intern_fay: 34 rows of phones is over her limit of 20 per statement');
SELECT is((SELECT count(*)::int FROM (SELECT id, phone FROM customers ORDER BY id LIMIT 20) s), 20,
          '... 20 are not');
SELECT is((SELECT count(*)::int FROM (SELECT id, channel FROM customers WHERE phone IS NOT NULL) s WHERE id > 0), 34,
          '... the ids of 34 customers, found without testing a protected value, leave nothing protected');
SELECT throws_ok($$SELECT id FROM customers WHERE phone LIKE '13%' ORDER BY id$$, '54P01', NULL,
                 '... but the ids of the 33 whose phone matches a pattern are protected rows');
SELECT is((SELECT count(*)::int FROM customers WHERE phone LIKE '13%'), 33,
          '... while their count is one row');
-- (one server counts the 34 values as they are folded in, and refuses the
-- 21st: 54P01; on Citus the workers fold them, where they are not counted,
-- and the coordinator refuses the query: 0A000)
SELECT throws_ok($$SELECT string_agg(phone, ',') FROM customers$$,
                 (SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')
                              THEN '0A000' ELSE '54P01' END)::char(5), NULL,
                 'intern_fay cannot fold 34 phones into one value');
RESET ROLE;

SELECT * FROM finish();
