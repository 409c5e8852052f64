-- pgTAP: grants cannot be moved by changing a row key.
--
-- An unmask approval names rows by their row key (customers.id).  A role
-- that may UPDATE the masking view -- the manager profile holds INSERT,
-- UPDATE and DELETE -- could renumber rows instead of asking for another
-- approval: with national_id approved for row key 4, mgr_eve moves
-- customer 4 out of the way and customer 3 onto key 4, and reads customer
-- 3's national ID in clear.  Likewise a role that writes an envelope (copied
-- from a dump) into a protected column through the masking view must not
-- plant that envelope as the stored value: what it wrote is a string, and it
-- reads back that string.
--
-- Required behaviour:
--   * a governed role may not change the row key column of a protected table
--     through its masking view: UPDATE ... SET id = <another value> raises
--     42501 'permission denied to change row key column "id" of
--     public.customers', whatever the shape of the statement, even with
--     UPDATE privilege on the column;
--   * an UPDATE that sets the row key to its current value (an ORM saving a
--     whole row: SET id = id or SET id = $1 with the row's own key, and other
--     columns) still works;
--   * the table owner and superusers may still change row keys;
--   * INSERT/UPDATE through the masking view with a column set to an
--     envelope's text stores that text as a plaintext string: the writer reads
--     back exactly the string it wrote, and the stored value decrypts to the
--     string, not to the stolen value's plaintext.
--
-- TODAY 20 of the 47 assertions fail: every row key refusal (2.1, 2.3,
-- 3.1-3.12, 4.2, 4.3: each UPDATE of id through the masking view succeeds),
-- and the checks after them show the attack working: mgr_eve reads
-- customer 3's national ID in clear under row key 4 and finds her by it
-- (2.4, 2.5), the stored keys are {1,2,4,99} (2.6), and sales_bob reads
-- customer 1's national ID in clear under row key 2 (4.4).  Sections 1, 5
-- and 6 pass today (the write path already treats every written text as
-- plaintext: no envelope can be planted today; section 5 pins that).
BEGIN;
SELECT plan(47);
\ir tap/undone.sql

-----------------------------------------------------------------------------
-- Set-up, as the superuser.
-----------------------------------------------------------------------------
SET LOCAL client_min_messages = warning;
SELECT national_id::text AS nid3, phone::text AS phone3 FROM public_pii.customers WHERE id = 3 \gset
CREATE ROLE tap_rk_approver IN ROLE pii_guard_approver;
CREATE SCHEMA tap_rk_eve AUTHORIZATION mgr_eve;

-- mgr_eve's approval: national_id of row key 4 (customer 4, John Smith).
SET LOCAL ROLE tap_rk_approver;
SELECT pii_guard.approve('mgr_eve', 'customers', now() + interval '1 hour',
                         'John Smith asked for a KYC check', '{national_id}', '{4}') > 0 AS approved \gset
RESET ROLE;

\set refused '42501 permission denied to change row key column "id" of public.customers'
-- The outcome of one statement as a role, undone afterwards: 'no error'
-- or 'SQLSTATE message'.
CREATE FUNCTION pg_temp.outcome(who name, sql text) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_temp.undone(who, sql, 'status') $$;

-----------------------------------------------------------------------------
-- 1. What mgr_eve sees, and updates that keep the row key (an ORM saving a
-- whole row) -- these must keep working.
-----------------------------------------------------------------------------
SET LOCAL ROLE mgr_eve;
SELECT results_eq($$SELECT id, name, national_id FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, '张三丰', '110101********1234'), (2::bigint, '李小龙', '440301********0018'),
             (3::bigint, '王芳', '310104********432X'), (4::bigint, 'John Smith', '110105198001010011')$$,
    '1.1 mgr_eve sees the national ID of customer 4 (her approval) in clear, the others masked');
SELECT lives_ok($$UPDATE customers SET id = id, name = '张三丰', phone = '13812345678', service_tier = 'gold'
                   WHERE id = 1$$,
                '1.2 UPDATE ... SET id = id and other columns works');
SELECT lives_ok($$UPDATE customers SET id = 2, service_tier = 'standard' WHERE id = 2$$,
                '1.3 UPDATE ... SET id = <its own key> works');
PREPARE tap_rk_orm(bigint, text, text) AS
    UPDATE customers SET id = $1, name = $2, phone = $3 WHERE id = $1;
SELECT lives_ok($$EXECUTE tap_rk_orm(3, '王芳', '13711112222')$$,
                '1.4 a prepared ORM save (SET id = $1 ... WHERE id = $1) works');
DEALLOCATE tap_rk_orm;
SELECT lives_ok($$UPDATE customers SET id = id, service_tier = service_tier$$,
                '1.5 UPDATE ... SET id = id on every row works');
SELECT results_eq($$SELECT id, name, phone, service_tier FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, '张三丰', '13812345678', 'gold'), (2::bigint, '李小龙', '13900001111', 'standard'),
             (3::bigint, '王芳', '13711112222', 'silver'), (4::bigint, 'John Smith', '+86 136 0000 3333', 'standard')$$,
    '1.6 ... and the rows are as they were, under the same keys');

-----------------------------------------------------------------------------
-- 2. mgr_eve moves her approval onto another customer: customer 4 out of
-- the way (or deleted), customer 3 onto row key 4.
-----------------------------------------------------------------------------
SELECT throws_ok($$UPDATE customers SET id = 99 WHERE id = 4$$, '42501',
                 'permission denied to change row key column "id" of public.customers',
                 '2.1 mgr_eve cannot renumber customer 4 (the row of her approval)');
SELECT lives_ok($$DELETE FROM customers WHERE id = 4$$,
                '2.2 she may delete customer 4 (managers delete customers)');
SELECT throws_ok($$UPDATE customers SET id = 4 WHERE id = 3$$, '42501',
                 'permission denied to change row key column "id" of public.customers',
                 '2.3 she cannot move customer 3 onto row key 4');
SELECT is((SELECT national_id FROM customers WHERE name = '王芳'), '310104********432X',
          '2.4 customer 3''s national ID stays masked to her');
SELECT is((SELECT count(*)::int FROM customers WHERE national_id = '31010419920815432X'), 0,
          '2.5 ... and a search by it finds nothing');
RESET ROLE;
SELECT is((SELECT array_agg(id ORDER BY id) FROM public_pii.customers), ARRAY[1, 2, 3]::bigint[],
          '2.6 the stored row keys are 1, 2, 3: customer 4 deleted, no row renumbered');
SELECT is((SELECT pii_guard.decrypt(national_id) FROM public_pii.customers WHERE name = '王芳'),
          '31010419920815432X', '2.7 customer 3 keeps her national ID under her own key');

-----------------------------------------------------------------------------
-- 3. Other shapes of the same UPDATE (each undone afterwards).
-----------------------------------------------------------------------------
SELECT is(pg_temp.outcome('mgr_eve', $$UPDATE customers SET id = 100 WHERE id = 1$$), :'refused',
          '3.1 SET id = <a free key>');
SELECT is(pg_temp.outcome('mgr_eve', $$UPDATE customers SET id = id + 100$$), :'refused',
          '3.2 SET id = id + 100 on every row');
SELECT is(pg_temp.outcome('mgr_eve', $$UPDATE customers SET (id, name) = (100, name) WHERE id = 1$$), :'refused',
          '3.3 a row-valued SET (id, name) = (...)');
SELECT is(pg_temp.outcome('mgr_eve', $$UPDATE customers SET (id, name) = (SELECT 100, '张三丰') WHERE id = 1$$),
          :'refused', '3.4 SET (id, name) = (SELECT ...)');
SELECT is(pg_temp.outcome('mgr_eve', $$UPDATE customers SET id = (SELECT max(id) + 1 FROM customers) WHERE id = 1$$),
          :'refused', '3.5 SET id = (a scalar subquery)');
SELECT is(pg_temp.outcome('mgr_eve', $$UPDATE customers c SET id = v.new FROM (VALUES (1, 100), (2, 101)) v(old, new)
                                      WHERE c.id = v.old$$), :'refused',
          '3.6 UPDATE ... FROM a list of new keys');
SELECT is(pg_temp.outcome('mgr_eve', $$WITH u AS (UPDATE customers SET id = 100 WHERE id = 1 RETURNING id)
                                      SELECT id FROM u$$), :'refused',
          '3.7 a writable CTE');
SELECT is(pg_temp.outcome('mgr_eve', $$PREPARE tap_rk_move(bigint, bigint) AS UPDATE customers SET id = $2 WHERE id = $1;
                                      EXECUTE tap_rk_move(1, 100)$$), :'refused',
          '3.8 a prepared statement with the new key as a parameter');
SELECT is(pg_temp.outcome('mgr_eve', $$CREATE FUNCTION tap_rk_eve.move(bigint, bigint) RETURNS void LANGUAGE plpgsql AS
                                        'BEGIN UPDATE public.customers SET id = $2 WHERE id = $1; END';
                                      SELECT tap_rk_eve.move(1, 100)$$), :'refused',
          '3.9 a PL/pgSQL function of her own');
SELECT is(pg_temp.outcome('mgr_eve', $$CREATE FUNCTION tap_rk_eve.move_sql(bigint, bigint) RETURNS void LANGUAGE sql
                                        BEGIN ATOMIC UPDATE public.customers SET id = $2 WHERE id = $1; END;
                                      SELECT tap_rk_eve.move_sql(1, 100)$$), :'refused',
          '3.10 a BEGIN ATOMIC SQL function of her own');
SELECT is(pg_temp.outcome('mgr_eve', $$CREATE VIEW tap_rk_eve.mine AS SELECT id, name FROM public.customers;
                                      UPDATE tap_rk_eve.mine SET id = 100 WHERE id = 1$$), :'refused',
          '3.11 through a view of her own over the masking view');
SELECT is(pg_temp.outcome('mgr_eve', $$UPDATE customers SET id = 3 WHERE id = 1$$), :'refused',
          '3.12 SET id = <another existing row''s key> is refused as such (not a duplicate-key error)');

-----------------------------------------------------------------------------
-- 4. A sales rep given UPDATE on the row key column (so that only the
-- row-key rule stops him) and an approval for national_id of his customer
-- 2: he cannot move his customer 1 onto key 2.
-----------------------------------------------------------------------------
GRANT UPDATE (id) ON customers TO sales;
SET LOCAL ROLE tap_rk_approver;
SELECT pii_guard.approve('sales_bob', 'customers', now() + interval '1 hour',
                         'customer 2 asked for a KYC check', '{national_id}', '{2}') > 0 AS approved \gset
SET LOCAL ROLE sales_bob;
SELECT results_eq($$SELECT id, national_id FROM customers ORDER BY id$$,
                  $$VALUES (1::bigint, '110101********1234'), (2::bigint, '440301198512120018')$$,
                  '4.1 sales_bob sees customer 2''s national ID (his approval) in clear, customer 1''s masked');
SELECT throws_ok($$UPDATE customers SET id = 200 WHERE id = 2$$, '42501',
                 'permission denied to change row key column "id" of public.customers',
                 '4.2 sales_bob, with UPDATE on id, cannot renumber customer 2');
SELECT throws_ok($$UPDATE customers SET id = 2 WHERE id = 1$$, '42501',
                 'permission denied to change row key column "id" of public.customers',
                 '4.3 ... nor move customer 1 onto row key 2');
SELECT is((SELECT national_id FROM customers WHERE name = '张三丰'), '110101********1234',
          '4.4 customer 1''s national ID stays masked to him');
SELECT lives_ok($$UPDATE customers SET id = id, phone = '13900001111' WHERE id = 2$$,
                '4.5 his UPDATE ... SET id = id, phone = ... still works');
RESET ROLE;
REVOKE UPDATE (id) ON customers FROM sales;

-----------------------------------------------------------------------------
-- 5. An envelope's text written through the masking view is a string, not
-- a planted envelope.
-----------------------------------------------------------------------------
SET LOCAL ROLE sales_bob;
SELECT lives_ok(format('UPDATE customers SET phone = %L WHERE name = %L', :'nid3', '张三丰'),
                '5.1 sales_bob writes the text of a stolen envelope (customer 3''s national ID) as a phone');
SELECT is((SELECT phone FROM customers WHERE name = '张三丰'), :'nid3',
          '5.2 ... and reads back exactly the string he wrote, not the stolen plaintext');
SELECT is((SELECT phone FROM customers WHERE phone = :'nid3'), :'nid3',
          '5.3 ... and finds it by that string');
PREPARE tap_rk_ins(text, text) AS INSERT INTO customers (name, phone) VALUES ($1, $2) RETURNING phone;
SELECT results_eq(format('EXECUTE tap_rk_ins(%L, %L)', '探针', :'phone3'), ARRAY[:'phone3'],
                  '5.4 an INSERT of an envelope''s text (prepared) returns the string written');
DEALLOCATE tap_rk_ins;
SELECT is((SELECT phone FROM customers WHERE name = '探针'), :'phone3', '5.5 ... and reads it back as written');
SET LOCAL ROLE support_dan;
SELECT lives_ok(format('UPDATE customers SET phone = %L WHERE name = %L', :'nid3', '王芳'),
                '5.6 support_dan writes an envelope''s text as customer 3''s phone');
SELECT is((SELECT phone FROM customers WHERE name = '王芳'), :'nid3', '5.7 ... and reads back the string he wrote');
SET LOCAL ROLE mgr_eve;
SELECT lives_ok(format('INSERT INTO customers (name, phone, national_id, sales_owner) VALUES (%L, %L, %L, %L)',
                       '钱七', :'nid3', :'nid3', 'sales_carl'),
                '5.8 mgr_eve inserts a customer with an envelope''s text as phone and national ID');
SELECT is((SELECT phone FROM customers WHERE name = '钱七'), :'nid3', '5.9 ... and reads the phone back as written');
RESET ROLE;
SELECT results_eq($$SELECT pii_guard.decrypt(phone) FROM public_pii.customers WHERE name IN ('张三丰', '王芳')$$,
                  format('VALUES (%L), (%L)', :'nid3', :'nid3'),
                  '5.10 stored: the envelope''s text, encrypted as a plaintext (for customers 1 and 3)');
SELECT is((SELECT pii_guard.decrypt(national_id) FROM public_pii.customers WHERE name = '钱七'), :'nid3',
          '5.11 ... and for the new customer''s national ID');
SELECT is((SELECT count(*)::int FROM public_pii.customers
             WHERE phone::text IN (:'nid3', :'phone3')
                OR (national_id::text IN (:'nid3', :'phone3') AND name <> '王芳')), 0,
          '5.12 no stolen envelope was stored as it is (customer 3''s national ID is still her own)');

-----------------------------------------------------------------------------
-- 6. The table owner and superusers may still change row keys.
-----------------------------------------------------------------------------
SELECT lives_ok($$UPDATE customers SET id = 30 WHERE name = '王芳'$$,
                '6.1 a superuser changes a row key through the masking view');
SELECT lives_ok($$UPDATE public_pii.customers SET id = 31 WHERE name = '王芳'$$,
                '6.2 ... and on the base table');
CREATE ROLE tap_rk_dba;
ALTER TABLE public_pii.customers OWNER TO tap_rk_dba;
GRANT SELECT, UPDATE ON customers TO tap_rk_dba;
SET LOCAL ROLE tap_rk_dba;
SELECT lives_ok($$UPDATE public_pii.customers SET id = 32 WHERE name = '王芳'$$,
                '6.3 the table''s owner (not a superuser) changes a row key on the base table');
SELECT lives_ok($$UPDATE customers SET id = 33 WHERE name = '王芳'$$,
                '6.4 ... and through the masking view');
RESET ROLE;
SELECT is((SELECT name FROM public_pii.customers WHERE id = 33), '王芳', '6.5 customer 3 is now under row key 33');

SELECT * FROM finish();
ROLLBACK;
