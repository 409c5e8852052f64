-- pgTAP: the manager (mgr_eve) on the seed scenario (test/fixtures/crm.sql).
-- The manager profile's clearance is 'sensitive': every customer and every
-- column in clear except the national ID (core), which needs an approval.
-- An approval by another approver opens it for every row; revoking it
-- closes it again at once.
BEGIN;
SELECT plan(33);
CREATE ROLE tap_approver2 IN ROLE pii_guard_approver;

SET LOCAL ROLE mgr_eve;
SELECT results_eq(
    $$SELECT id, name, phone, national_id, email, address, channel, campaign, service_tier, deal_amount
        FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, '张三丰', '13812345678', '110101********1234', 'zhangsan@example.com',
              '北京市朝阳区建国路88号', 'web', 'spring2026', 'gold', 120000.00::numeric),
             (2::bigint, '李小龙', '13900001111', '440301********0018', 'lixiaolong@example.com',
              '广东省深圳市南山区科技园南区8栋', 'store', 'summer2026', 'standard', 3500.50::numeric),
             (3::bigint, '王芳', '13711112222', '310104********432X', 'wangfang@example.com',
              '上海市浦东新区世纪大道100号', 'referral', 'spring2026', 'silver', 800.00::numeric),
             (4::bigint, 'John Smith', '+86 136 0000 3333', '110105********0011', 'john.smith@example.com',
              '1600 Amphitheatre Pkwy, Mountain View, CA 94043', 'web', 'intl2026', 'standard', 15000.00::numeric)$$,
    'the manager sees all 4 customers, every column clear except the masked national ID');
SELECT is((SELECT count(*)::int FROM customers WHERE national_id = '110101199003071234'), 0,
          'without an approval, a filter on a plaintext national ID finds nothing');

-- Managers may change what sales and support may not.
SELECT lives_ok($$UPDATE customers SET service_tier = 'platinum', deal_amount = 125000 WHERE id = 1$$,
                'the manager changes a service tier and a deal amount');
SELECT results_eq($$SELECT service_tier, deal_amount, national_id FROM customers WHERE id = 1$$,
                  $$VALUES ('platinum', 125000.00::numeric, '110101********1234')$$,
                  '... and sees the change, the national ID still masked');

-- An approval by another approver opens the national IDs.
SET LOCAL ROLE tap_approver2;
SELECT pii_guard.approve('mgr_eve', 'customers', now() + interval '1 hour', 'annual KYC review',
                         '{national_id}') AS gid \gset
SELECT ok(:gid > 0, 'tap_approver2 approves national IDs for mgr_eve, for 1 hour');
SET LOCAL ROLE mgr_eve;
SELECT results_eq($$SELECT id, national_id FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, '110101199003071234'), (2::bigint, '440301198512120018'),
             (3::bigint, '31010419920815432X'), (4::bigint, '110105198001010011')$$,
    'with the approval, every national ID is clear to mgr_eve');
SELECT is((SELECT id FROM customers WHERE national_id = '31010419920815432X'), 3::bigint,
          '... and can be searched');
SET LOCAL ROLE support_dan;
SELECT is((SELECT national_id FROM customers WHERE id = 3), '310104********432X',
          'the approval is for mgr_eve only: support_dan still sees it masked');
SET LOCAL ROLE mgr_eve;
SELECT throws_ok(format($$UPDATE pii_guard.grants SET valid_until = now() + interval '1 year' WHERE grant_id = %s$$, :gid),
                 '42501', 'permission denied for table grants', 'mgr_eve cannot extend her own approval');

-- Revocation closes it at once.
SET LOCAL ROLE tap_approver2;
SELECT lives_ok(format('SELECT pii_guard.revoke_grant(%s)', :gid), 'tap_approver2 revokes the approval');
SET LOCAL ROLE mgr_eve;
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101********1234',
          'revoked: masked again at once');
SELECT results_eq($$SELECT national_id FROM customers ORDER BY id$$,
    $$VALUES ('110101********1234'), ('440301********0018'), ('310104********432X'), ('110105********0011')$$,
    '... on every row');
SET LOCAL ROLE tap_approver2;
SELECT throws_ok(format('SELECT pii_guard.revoke_grant(%s)', :gid), '42704', format('no live pii_guard grant %s', :gid),
                 'a revoked grant cannot be revoked again');
SELECT throws_ok(format('UPDATE pii_guard.grants SET revoked_at = NULL WHERE grant_id = %s', :gid),
                 '42501', 'a pii_guard grant can only be revoked, once', 'nor brought back');

-- Approvals are time-boxed: at most pii_guard.max_grant_duration (a
-- superuser's setting, 7 days by default), however they are issued.
SELECT throws_ok($$SELECT pii_guard.approve('mgr_eve', 'customers', now() + interval '100 years', 'forever')$$,
                 '22023', 'an approval may last at most 7 days', 'an approval for 100 years is refused');
SELECT throws_ok($$SELECT pii_guard.approve('mgr_eve', 'customers', now() + interval '8 days', 'a while')$$,
                 '22023', 'an approval may last at most 7 days', '... and one for 8 days');
SELECT throws_ok($$SELECT pii_guard.approve_export('intern', 10, now() + interval '30 days', 'a while')$$,
                 '22023', 'an approval may last at most 7 days', '... and an export approval for 30 days');
SELECT throws_ok($$INSERT INTO pii_guard.grants (kind, role, base, valid_until, reason, approver)
                   VALUES ('unmask', 'mgr_eve', 'public_pii.customers', now() + interval '1 year', 'x', 'tap_approver2')$$,
                 '22023', 'an approval may last at most 7 days', '... and one written into the grants table');
SELECT throws_ok($$SET pii_guard.max_grant_duration = '1000d'$$,
                 '42501', 'permission denied to set parameter "pii_guard.max_grant_duration"',
                 'an approver cannot lengthen the limit');
SELECT lives_ok($$SELECT pii_guard.revoke_grant(pii_guard.approve('mgr_eve', 'customers', now() + interval '7 days' - interval '1 minute', 'a week'))$$,
                'an approval for just under 7 days is accepted');
RESET ROLE;
SET LOCAL pii_guard.max_grant_duration = '30d';
SET LOCAL ROLE tap_approver2;
SELECT lives_ok($$SELECT pii_guard.revoke_grant(pii_guard.approve('mgr_eve', 'customers', now() + interval '20 days', 'audit season'))$$,
                'with the limit raised by a superuser to 30 days, 20 days are accepted');
RESET ROLE;
RESET pii_guard.max_grant_duration;

-- No self-approval through a role of one's own making: mgr_eve, given
-- CREATEROLE, creates a role, approves national IDs for it and joins it.
ALTER ROLE mgr_eve CREATEROLE;
SET LOCAL ROLE mgr_eve;
CREATE ROLE tap_shadow;
SELECT ok(pii_guard.approve('tap_shadow', 'customers', now() + interval '1 hour', 'shadow', '{national_id}') > 0,
          'mgr_eve approves national IDs for tap_shadow, a role she just created');
GRANT tap_shadow TO mgr_eve;
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101********1234',
          '... joins it, and still sees the national ID masked: her own approval does not count for her');
RESET ROLE;
GRANT SELECT ON customers TO tap_shadow;
SET LOCAL ROLE tap_shadow;
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101********1234',
          '... nor for tap_shadow, as which she can act');
RESET ROLE;
SET LOCAL ROLE tap_approver2;
SELECT ok(pii_guard.approve('tap_shadow', 'customers', now() + interval '1 hour', 'real need', '{national_id}') > 0,
          'another approver approves the same for tap_shadow');
SET LOCAL ROLE mgr_eve;
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101199003071234',
          '... and that approval counts, for tap_shadow''s members too');
RESET ROLE;
ALTER ROLE mgr_eve NOCREATEROLE;

-- Only an approver approves; the manager profile alone does not.
RESET ROLE;
CREATE ROLE tap_manager2 IN ROLE manager;
SET LOCAL ROLE tap_manager2;
SELECT throws_ok($$SELECT pii_guard.approve('sales_bob', 'customers', now() + interval '1 hour', 'x')$$,
                 '42501', 'permission denied for function approve',
                 'a manager who is not an approver cannot approve');
-- Export approvals: the manager profile sets no export limit; mgr_eve, an
-- approver, approves exports for others, never for a group she is in.
SET LOCAL ROLE mgr_eve;
SELECT is((SELECT count(phone)::int FROM customers), 4, 'the manager reads every customer in one statement');
SELECT throws_ok($$SELECT pii_guard.approve_export('manager', 100, now() + interval '1 hour', 'my own export')$$,
                 '42501', 'an approver cannot approve access for a role they belong to',
                 'mgr_eve cannot approve an export for her own profile');
SELECT pii_guard.approve_export('intern', 100, now() + interval '1 hour', 'quarterly mailing') AS xgid \gset
SELECT ok(:xgid > 0, 'mgr_eve approves an export for the interns');
SELECT lives_ok(format('SELECT pii_guard.revoke_grant(%s)', :xgid), '... and revokes it');
SET LOCAL ROLE tap_manager2;
SELECT throws_ok($$SELECT pii_guard.approve_export('intern', 100, now() + interval '1 hour', 'x')$$,
                 '42501', 'permission denied for function approve_export',
                 'a manager who is not an approver cannot approve an export');
RESET ROLE;
SELECT results_eq(
    $$SELECT name, pii_guard.decrypt(national_id), service_tier, deal_amount FROM public_pii.customers WHERE id = 1$$,
    $$VALUES ('张三丰', '110101199003071234', 'platinum', 125000.00::numeric(12,2))$$,
    'stored: the manager''s change, the national ID untouched');

SELECT * FROM finish();
ROLLBACK;
