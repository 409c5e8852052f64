-- pgTAP: the seed roles write the seed CRM (test/citus/fixture.sql) through
-- its masking views, as applications do: an ORM saving a whole row as it
-- read it, a change of one column, INSERT ... RETURNING, a multi-row
-- INSERT, an UPDATE chosen by a search on an encrypted column, DELETE, a
-- statement prepared by one role and run by another.  test/citus/run.sh
-- runs this same file against one server and against a Citus coordinator
-- whose customers, orders and tickets are distributed: the same results on
-- both.  (Runs outside a transaction block, as an application does; what
-- it changes it puts back at the end.)
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(29);
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS citus \gset

-- support: UPDATE on phone, email, address and service tier only.
SET ROLE support_dan;
SELECT results_eq($$SELECT name, phone, national_id, email, deal_amount FROM customers WHERE id = 3$$,
                  $$VALUES ('王芳', '13711112222', '310104********432X', 'wangfang@example.com', NULL::numeric)$$,
                  'support_dan reads customer 3: national ID masked, deal amount hidden');
SELECT lives_ok($$UPDATE customers SET name = '王芳', phone = '13711112222', national_id = '310104********432X',
                         email = 'wangfang@example.com', address = '上海市浦东新区世纪大道100号',
                         channel = 'referral', campaign = 'spring2026', service_tier = 'silver',
                         deal_amount = NULL, sales_owner = 'sales_carl'
                   WHERE id = 3$$,
                'support_dan saves customer 3 as an ORM does: every column sent back as read, those he may not update included');
RESET ROLE;
SELECT results_eq($$SELECT name, pii_guard.decrypt(phone), pii_guard.decrypt(national_id), deal_amount
                      FROM public_pii.customers WHERE id = 3$$,
                  $$VALUES ('王芳', '13711112222', '31010419920815432X', 800.00::numeric)$$,
                  '... nothing changed: the masked national ID and the hidden deal amount were not written back');
SET ROLE support_dan;
SELECT lives_ok($$UPDATE customers SET phone = '13711113333', service_tier = 'gold' WHERE id = 3$$,
                'support_dan changes a phone and a service tier');
SELECT results_eq($$SELECT phone, service_tier FROM customers WHERE id = 3$$,
                  $$VALUES ('13711113333', 'gold')$$, '... and reads them back');
SELECT throws_ok($$UPDATE customers SET name = 'Fang Wang' WHERE id = 3$$, '42501', NULL,
                 'support_dan may not change a name');
SELECT throws_ok($$UPDATE customers SET national_id = '310104199208154321' WHERE id = 3$$, '42501', NULL,
                 '... nor a national ID he sees masked');
SELECT throws_ok($$UPDATE customers SET deal_amount = 1 WHERE id = 3$$, '42501', NULL,
                 '... nor a deal amount he does not see');
SELECT throws_ok($$UPDATE customers SET id = 300 WHERE id = 3$$,
                 (CASE WHEN :'citus' THEN '0A000' ELSE '42501' END)::char(5), NULL,
                 '... nor the row key (on Citus also the distribution column)');
SELECT throws_ok($$DELETE FROM customers WHERE id = 3$$, '42501', NULL, '... nor delete a customer');
SELECT throws_ok($$INSERT INTO customers (name) VALUES ('new')$$, '42501', NULL, '... nor insert one');
SELECT lives_ok($$UPDATE customers SET email = 'fang@example.com' WHERE phone = '13711113333'$$,
                'support_dan changes an e-mail address, finding the row by its phone (an encrypted column)');
RESET ROLE;
SELECT results_eq($$SELECT pii_guard.decrypt(phone), email, service_tier, phone::text LIKE 'pii_guard:%'
                      FROM public_pii.customers WHERE id = 3$$,
                  $$VALUES ('13711113333', 'fang@example.com', 'gold', true)$$,
                  'the new phone is stored encrypted, the rest as written');

-- sales: own customers only (row-level security).
SET ROLE sales_bob;
SELECT lives_ok($$UPDATE customers SET email = 'taken@example.com' WHERE id = 3$$,
                'sales_bob''s UPDATE of sales_carl''s customer 3 ...');
SELECT lives_ok($$UPDATE customers SET email = 'zhang@example.com' WHERE id = 1$$,
                '... and of his own customer 1');
RESET ROLE;
SELECT results_eq($$SELECT id, email FROM public_pii.customers WHERE id IN (1, 3) ORDER BY id$$,
                  $$VALUES (1::bigint, 'zhang@example.com'), (3, 'fang@example.com')$$,
                  '... changed his own customer only');

-- A statement prepared by one role and run by another is decided for the
-- role that runs it.
SET ROLE mgr_eve;
PREPARE rename(text, bigint) AS UPDATE customers SET name = $1 WHERE id = $2;
EXECUTE rename('张三丰', 1);
RESET ROLE;
SET ROLE support_dan;
SELECT throws_ok($$EXECUTE rename('Zhang', 1)$$, '42501', NULL,
                 'mgr_eve''s prepared rename, run by support_dan: refused');
RESET ROLE;
DEALLOCATE rename;

-- manager: INSERT, UPDATE, DELETE; national IDs and cards masked.
SET ROLE mgr_eve;
INSERT INTO customers (name, phone, national_id, email, sales_owner)
VALUES ('赵六', '13600006666', '110101198801011111', 'zhaoliu@example.com', 'sales_bob')
RETURNING id AS new_id, phone AS new_phone, national_id AS new_nid, service_tier AS new_tier \gset
SELECT is(:'new_phone' || ' ' || :'new_nid' || ' ' || :'new_tier', '13600006666 110101********1111 standard',
          'mgr_eve inserts a customer; RETURNING shows the phone, the national ID masked, the default tier');
INSERT INTO customers (name, phone, national_id, sales_owner)
VALUES ('钱七', '13600007777', '110101198801012222', 'sales_bob'),
       ('孙八', '13600008888', NULL, 'sales_carl'),
       ('周九', NULL, '110101198801014444', 'sales_carl');
SELECT results_eq($$SELECT name, phone, national_id FROM customers WHERE name IN ('钱七', '孙八', '周九') ORDER BY name COLLATE "C"$$,
                  $$VALUES ('周九', NULL, '110101********4444'), ('孙八', '13600008888', NULL),
                           ('钱七', '13600007777', '110101********2222')$$,
                  'mgr_eve inserts three customers in one statement');
UPDATE customers SET address = '北京市东城区1号' WHERE phone = '13600007777'
RETURNING name AS upd_name, address AS upd_address, national_id AS upd_nid \gset
SELECT is(:'upd_name' || ' ' || :'upd_address' || ' ' || :'upd_nid', '钱七 北京市东城区1号 110101********2222',
          'mgr_eve updates the customer a phone finds; RETURNING masks the national ID');
UPDATE customers c SET address = o.ship_to FROM orders o WHERE o.customer_id = c.id AND o.id = 3
RETURNING c.id AS from_id, o.card AS from_card \gset
SELECT is(:from_id || ' ' || :'from_card', '2 621700******7890',
          'mgr_eve updates a customer from the order that names it (UPDATE ... FROM another masking view); RETURNING masks the card');
INSERT INTO orders (customer_id, card, ship_to, amount, placed_on)
VALUES (:new_id, '6222029876543210', '北京市西城区2号', 10.00, '2026-08-01')
RETURNING id AS order_id, card AS order_card \gset
SELECT is(:'order_card'::text, '622202******3210', 'mgr_eve places an order; RETURNING masks the card');
SELECT lives_ok(format($$UPDATE orders SET amount = 12.50, card = '622202******3210' WHERE id = %s$$, :order_id),
                'mgr_eve changes the amount, the masked card sent back as read');
RESET ROLE;
SELECT results_eq(format($$SELECT amount, pii_guard.decrypt(card) FROM public_pii.orders WHERE id = %s$$, :order_id),
                  $$VALUES (12.50::numeric, '6222029876543210')$$,
                  '... the card is the one inserted, not its mask');
SET ROLE mgr_eve;
SELECT lives_ok(format($$DELETE FROM orders WHERE id = %s$$, :order_id), 'mgr_eve deletes the order');
SELECT lives_ok($$DELETE FROM customers WHERE name IN ('赵六', '钱七', '孙八', '周九')$$,
                '... and the four customers');
SELECT is((SELECT count(*)::int FROM customers), 34, '... the customers are as they were');
RESET ROLE;

-- intern: reads only.
SET ROLE intern_fay;
SELECT throws_ok($$UPDATE customers SET phone = '13700000000' WHERE id = 3$$, '42501', NULL,
                 'intern_fay may not write');
RESET ROLE;

-- What was changed, put back (through the view, as mgr_eve).
SET ROLE mgr_eve;
UPDATE customers SET phone = '13711112222', email = 'wangfang@example.com', service_tier = 'silver' WHERE id = 3;
UPDATE customers SET email = 'zhangsan@example.com' WHERE id = 1;
RESET ROLE;
SELECT results_eq($$SELECT id, name, pii_guard.decrypt(phone), email, service_tier
                      FROM public_pii.customers WHERE id IN (1, 3) ORDER BY id$$,
                  $$VALUES (1::bigint, '张三丰', '13812345678', 'zhangsan@example.com', 'gold'),
                           (3, '王芳', '13711112222', 'wangfang@example.com', 'silver')$$,
                  'customers 1 and 3 are as they were');

SELECT * FROM finish();
