-- pgTAP: a role in two profiles on the seed scenario (test/fixtures/crm.sql)
-- gets the union of what they allow: for each column the most open access
-- any of its profiles gives.  tap_gus is in support (contacts clear, deal
-- amounts hidden) and marketing (channel and campaign only); tap_hal is in
-- intern (everything masked) and marketing.
BEGIN;
SELECT plan(6);

CREATE ROLE tap_gus IN ROLE support, marketing;
CREATE ROLE tap_hal IN ROLE intern, marketing;

SELECT results_eq(
    $$SELECT column_name, access FROM pii_guard.effective_access('tap_gus')
       WHERE table_name = 'public.customers' ORDER BY 1$$,
    $$VALUES ('address'::name, 'clear'), ('campaign', 'clear'), ('channel', 'clear'), ('deal_amount', 'hidden'),
             ('email', 'clear'), ('name', 'clear'), ('national_id', 'masked'), ('phone', 'clear'),
             ('service_tier', 'clear')$$,
    'support + marketing: support''s contacts win over marketing''s hidden ones, both hide deal amounts');
SET LOCAL ROLE tap_gus;
SELECT results_eq(
    $$SELECT id, name, phone, national_id, email, channel, campaign, service_tier, deal_amount
        FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, '张三丰', '13812345678', '110101********1234', 'zhangsan@example.com', 'web', 'spring2026', 'gold', NULL::numeric),
             (2::bigint, '李小龙', '13900001111', '440301********0018', 'lixiaolong@example.com', 'store', 'summer2026', 'standard', NULL::numeric),
             (3::bigint, '王芳', '13711112222', '310104********432X', 'wangfang@example.com', 'referral', 'spring2026', 'silver', NULL::numeric),
             (4::bigint, 'John Smith', '+86 136 0000 3333', '110105********0011', 'john.smith@example.com', 'web', 'intl2026', 'standard', NULL::numeric)$$,
    '... and that is what tap_gus reads');
RESET ROLE;

SELECT results_eq(
    $$SELECT column_name, access FROM pii_guard.effective_access('tap_hal')
       WHERE table_name = 'public.customers' ORDER BY 1$$,
    $$VALUES ('address'::name, 'masked'), ('campaign', 'clear'), ('channel', 'clear'), ('deal_amount', 'masked'),
             ('email', 'masked'), ('name', 'masked'), ('national_id', 'masked'), ('phone', 'masked'),
             ('service_tier', 'masked')$$,
    'intern + marketing: marketing''s clear channel and campaign, the intern''s masks over marketing''s hidden columns');
SET LOCAL ROLE tap_hal;
SELECT results_eq(
    $$SELECT id, name, phone, channel, campaign, service_tier FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, '张**', '138****5678', 'web', 'spring2026', 'g***'),
             (2::bigint, '李**', '139****1111', 'store', 'summer2026', 's***'),
             (3::bigint, '王*', '137****2222', 'referral', 'spring2026', 's***'),
             (4::bigint, 'J*** S****', '+86 136****3333', 'web', 'intl2026', 's***')$$,
    '... and that is what tap_hal reads');
SELECT is((SELECT count(*)::int FROM customers WHERE deal_amount IS NOT NULL), 4,
          'tap_hal sees deal amounts (noised, as the intern does), not NULL as marketing would');
RESET ROLE;

-- A member of one profile only is not widened by the other.
SELECT results_eq(
    $$SELECT column_name, access FROM pii_guard.effective_access('mkt_amy')
       WHERE table_name = 'public.customers' AND column_name IN ('name', 'channel', 'deal_amount') ORDER BY 1$$,
    $$VALUES ('channel'::name, 'clear'), ('deal_amount', 'hidden'), ('name', 'hidden')$$,
    'mkt_amy, in marketing alone, still sees contacts and amounts hidden');

SELECT * FROM finish();
ROLLBACK;
