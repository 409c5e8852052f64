-- pgTAP: writes through a masking view that hit a unique constraint.
--
-- A unique (or exclusion) violation tells the writer that a value exists --
-- also among rows row-level security hides from it.  PostgreSQL raises it;
-- pii_guard cannot hide it, so it makes each such probe a deny event
-- (operation 'probe'; identical ones close together are one event with
-- their count, audit_denials.attempts) and counts it as one row against the role's export
-- limits, whether the statement fails outright or inside a savepoint or an
-- exception block.  INSERT ... ON CONFLICT tells the same without failing:
-- each conflict is a probe too.
BEGIN;
SELECT plan(17);

-- Set-up, as the superuser: phones are unique; sales has limits.
CREATE UNIQUE INDEX tap_probe_phone ON public_pii.customers (phone);
SELECT pii_guard.set_export_limits('sales', 100, 1000);
\ir tap/undone.sql
-- The probes sales_bob made since event since, once n are in (or 10 s).
CREATE FUNCTION pg_temp.wait_probes(n int, since bigint) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_temp.wait_until(format('SELECT coalesce(sum(attempts), 0) >= %s FROM pii_guard.audit_denials
                                         WHERE event_id > %s AND operation = ''probe'' AND session_role = ''sales_bob''',
                                      n, since));
    RETURN (SELECT coalesce(sum(attempts), 0) FROM pii_guard.audit_denials
             WHERE event_id > since AND operation = 'probe' AND session_role = 'sales_bob');
END $$;
SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset

-- sales_bob, under his own name (the day's count is the login role's).
-- 13711112222 and +86 136 0000 3333 are customers 3 and 4's, sales_carl's:
-- hidden from sales_bob.
SET LOCAL SESSION AUTHORIZATION sales_bob;
SELECT is((SELECT count(*)::int FROM customers WHERE id IN (3, 4)), 0,
          'sales_bob cannot see the customers whose phones he will probe');
RESET SESSION AUTHORIZATION;
SELECT pii_guard.export_usage('sales_bob') AS used_before \gset
SET LOCAL SESSION AUTHORIZATION sales_bob;
SELECT throws_ok($$INSERT INTO customers (name, phone) VALUES ('probe', '13711112222')$$,
                 '23505', NULL, 'an insert with an existing phone fails on the unique index');
SELECT throws_ok($$INSERT INTO customers (name, phone) VALUES ('probe', '+86 136 0000 3333')$$,
                 '23505', NULL, '... whoever''s row it is');
RESET SESSION AUTHORIZATION;
SELECT is(pii_guard.export_usage('sales_bob') - :used_before, 2::bigint,
          'each probe counted one row against the export limits');
SET LOCAL SESSION AUTHORIZATION sales_bob;
SELECT throws_ok($$UPDATE customers SET phone = '13711112222' WHERE id = 1$$,
                 '23505', NULL, 'an update to an existing phone fails too');
SELECT lives_ok($$INSERT INTO customers (name, phone) VALUES ('new', '13799999999')$$,
                'a phone that exists nowhere inserts');
RESET SESSION AUTHORIZATION;

SELECT is(pg_temp.wait_probes(3, :start), 3, 'each failed write is a deny event (probe)');
SELECT is((SELECT string_agg(DISTINCT relation, ',') || ': ' || sum(rows) || ' rows, ' || sum(attempts) || ' probes'
             FROM pii_guard.audit_denials WHERE event_id > :start AND operation = 'probe'),
          'public.customers: 3 rows, 3 probes', '... naming the masking view, one probe each');
SELECT is((SELECT count(*)::int FROM pii_guard.audit_log
            WHERE event_id > :start AND kind = 'deny' AND operation = 'probe'
              AND (detail ~ '1371111|0000 3333' OR row_keys::text ~ '1371111|0000 3333')), 0,
          '... without the value probed');

-- INSERT ... ON CONFLICT through the view: every conflict is a probe, a
-- row of the statement that succeeds as one that fails.
RESET SESSION AUTHORIZATION;
SELECT pii_guard.export_usage('sales_bob') AS used_before \gset
SELECT coalesce(max(event_id), 0) AS start2 FROM pii_guard.audit_log \gset
SET LOCAL SESSION AUTHORIZATION sales_bob;
SELECT lives_ok($$INSERT INTO customers (name, phone) VALUES ('probe', '13711112222'), ('probe2', '13788887777')
                  ON CONFLICT DO NOTHING$$,
                'ON CONFLICT DO NOTHING with a hidden row''s phone: no error');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT count(*)::int FROM public_pii.customers WHERE name IN ('probe', 'probe2')), 1,
          '... the row without a conflict is inserted, the other is not');
SET LOCAL SESSION AUTHORIZATION sales_bob;
SELECT lives_ok($$INSERT INTO customers (id, name) VALUES (3, 'probe3') ON CONFLICT DO NOTHING$$,
                'ON CONFLICT DO NOTHING with a hidden row''s key: no error');
SELECT throws_ok($$INSERT INTO customers (id, name) VALUES (3, 'probe3')
                   ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name$$,
                 '42501', NULL, 'ON CONFLICT DO UPDATE of a hidden row: refused by row-level security');
RESET SESSION AUTHORIZATION;
SELECT is(pii_guard.export_usage('sales_bob') - :used_before, 3::bigint,
          'each conflict counted one row against the export limits');
SELECT is(pg_temp.wait_probes(3, :start2), 3, '... and is a deny event (probe)');
SELECT is((SELECT name FROM public_pii.customers WHERE id = 3), '王芳',
          'the hidden row is as it was');

-- A role without INSERT on the view cannot probe at all.
SET LOCAL ROLE intern_fay;
SELECT throws_ok($$INSERT INTO customers (name, phone) VALUES ('probe', '13711112222')$$,
                 '42501', NULL, 'the intern holds no INSERT privilege: no probe');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
