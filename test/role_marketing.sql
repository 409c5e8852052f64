-- pgTAP: the marketing analyst (mkt_amy) sees acquisition channels and
-- campaigns, nothing of contacts, IDs or amounts, and changes nothing.
BEGIN;
SELECT plan(8);
SET LOCAL ROLE mkt_amy;

SELECT results_eq(
    $$SELECT id::int, channel, campaign FROM customers ORDER BY id$$,
    $$VALUES (1, 'web', 'spring2026'), (2, 'store', 'summer2026'),
             (3, 'referral', 'spring2026'), (4, 'web', 'intl2026')$$,
    'marketing sees every customer''s channel and campaign in clear');
SELECT is((SELECT count(*)::int FROM customers
            WHERE name IS NOT NULL OR phone IS NOT NULL OR national_id IS NOT NULL
               OR email IS NOT NULL OR address IS NOT NULL OR deal_amount IS NOT NULL
               OR service_tier IS NOT NULL), 0,
          'contacts, national ID, service tier and deal amounts are hidden (NULL)');
SELECT is((SELECT count(*)::int FROM customers WHERE phone = '13812345678'), 0,
          'a filter on a hidden phone finds nothing');
SELECT throws_ok($$INSERT INTO customers (name) VALUES ('x')$$, '42501', NULL, 'marketing cannot insert');
SELECT throws_ok($$UPDATE customers SET campaign = 'x'$$, '42501', NULL, 'marketing cannot update');
SELECT throws_ok($$DELETE FROM customers$$, '42501', NULL, 'marketing cannot delete');
SELECT throws_ok($$SELECT * FROM public_pii.customers$$, '42501', NULL, 'marketing cannot read the base table');
SELECT ok(NOT has_function_privilege('mkt_amy', 'pii_guard.effective_access(regrole)', 'EXECUTE'),
          'marketing may not ask what other roles see');

SELECT * FROM finish();
ROLLBACK;
