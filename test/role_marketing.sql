-- pgTAP: the marketing analyst (mkt_amy) on the seed scenario
-- (test/fixtures/crm.sql).  Marketing's clearance is 'internal', with every
-- contact, ID, tier and amount column overridden to 'hidden': it sees
-- acquisition channels and campaigns of every customer, NULL for the rest,
-- and changes nothing.
BEGIN;
SELECT plan(17);

-- What the policy says, before looking at data (asked as the superuser:
-- effective_access is for admins, approvers and auditors).
SELECT results_eq(
    $$SELECT column_name::text COLLATE "default", access FROM pii_guard.effective_access('marketing')
       WHERE table_name = 'public.customers' ORDER BY column_name$$,
    $$VALUES ('address', 'hidden'), ('campaign', 'clear'), ('channel', 'clear'),
             ('deal_amount', 'hidden'), ('email', 'hidden'), ('name', 'hidden'),
             ('national_id', 'hidden'), ('phone', 'hidden'), ('service_tier', 'hidden')$$,
    'effective_access(marketing): channel and campaign clear, everything else hidden');

SET LOCAL ROLE mkt_amy;

-- Reads.
SELECT results_eq(
    $$SELECT id, channel, campaign, name, phone FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, 'web', 'spring2026', NULL::text, NULL::text),
             (2::bigint, 'store', 'summer2026', NULL::text, NULL::text),
             (3::bigint, 'referral', 'spring2026', NULL::text, NULL::text),
             (4::bigint, 'web', 'intl2026', NULL::text, NULL::text)$$,
    'SELECT id, channel, campaign, name, phone: all 4 customers, channel and campaign clear, name and phone NULL');
SELECT results_eq(
    $$SELECT id, national_id, email, address, service_tier, deal_amount FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, NULL::text, NULL::text, NULL::text, NULL::text, NULL::numeric),
             (2::bigint, NULL::text, NULL::text, NULL::text, NULL::text, NULL::numeric),
             (3::bigint, NULL::text, NULL::text, NULL::text, NULL::text, NULL::numeric),
             (4::bigint, NULL::text, NULL::text, NULL::text, NULL::text, NULL::numeric)$$,
    'national_id, email, address, service_tier and deal_amount are NULL on every row');
SELECT is((SELECT count(*)::int FROM customers), 4, 'marketing sees all 4 rows (no row-level restriction)');
SELECT results_eq(
    $$SELECT channel, count(*)::int FROM customers GROUP BY channel ORDER BY channel$$,
    $$VALUES ('referral', 1), ('store', 1), ('web', 2)$$,
    'channel analytics work on clear values');

-- Filters see only what marketing sees: hidden values cannot be inferred.
SELECT is((SELECT count(*)::int FROM customers WHERE phone = '13812345678'), 0,
          'a filter on a hidden phone finds nothing');
SELECT is((SELECT count(*)::int FROM customers WHERE national_id = '110101199003071234'), 0,
          'a filter on a hidden national ID finds nothing');
SELECT is((SELECT count(*)::int FROM customers WHERE deal_amount > 0), 0,
          'a range filter on a hidden amount finds nothing');

-- Writes: marketing holds SELECT only.
SELECT throws_ok($$INSERT INTO customers (name, channel) VALUES ('x', 'web')$$,
                 '42501', 'permission denied for view customers', 'marketing cannot INSERT');
SELECT throws_ok($$UPDATE customers SET campaign = 'x' WHERE id = 1$$,
                 '42501', 'permission denied for view customers', 'marketing cannot UPDATE a clear column');
SELECT throws_ok($$UPDATE customers SET phone = '13800000000' WHERE id = 1$$,
                 '42501', 'permission denied for view customers', 'marketing cannot UPDATE a hidden column');
SELECT throws_ok($$DELETE FROM customers WHERE id = 1$$,
                 '42501', 'permission denied for view customers', 'marketing cannot DELETE');

-- Around the view: base table, decryption, the policy.
SELECT throws_ok($$SELECT * FROM public_pii.customers$$, '42501', 'permission denied for table customers',
                 'marketing cannot read the base table');
SELECT throws_ok($$SELECT pii_guard.decrypt(pii_guard.encrypt('13812345678'))$$, '42501',
                 'permission denied to encrypt pii_guard values', 'marketing cannot encrypt (nor decrypt)');
SELECT throws_ok($$SELECT * FROM pii_guard.effective_access('mkt_amy')$$, '42501', NULL,
                 'marketing may not ask what roles see');
SELECT throws_ok($$SELECT pii_guard.set_column_access('marketing', 'customers', 'phone', 'clear')$$,
                 '42501', NULL, 'marketing cannot open a column for itself');

RESET ROLE;
-- Nothing changed underneath.
SELECT results_eq(
    $$SELECT id, campaign, pii_guard.decrypt(phone) FROM public_pii.customers ORDER BY id$$,
    $$VALUES (1::bigint, 'spring2026', '13812345678'), (2::bigint, 'summer2026', '13900001111'),
             (3::bigint, 'spring2026', '13711112222'), (4::bigint, 'intl2026', '+86 136 0000 3333')$$,
    'the stored data is untouched');

SELECT * FROM finish();
ROLLBACK;
