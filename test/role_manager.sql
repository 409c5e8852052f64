-- pgTAP: the manager (mgr_eve) on the seed scenario (test/fixtures/crm.sql).
-- The manager profile's clearance is 'sensitive': every customer and every
-- column in clear except the national ID (core), which needs an approval.
-- An approval by another approver opens it for every row; revoking it
-- closes it again at once.
BEGIN;
SELECT plan(21);
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
                 '42501', NULL, 'mgr_eve cannot extend her own approval');

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
SELECT throws_ok(format('SELECT pii_guard.revoke_grant(%s)', :gid), '42704', NULL,
                 'a revoked grant cannot be revoked again');
SELECT throws_ok(format('UPDATE pii_guard.grants SET revoked_at = NULL WHERE grant_id = %s', :gid),
                 '42501', 'a pii_guard grant can only be revoked, once', 'nor brought back');

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
