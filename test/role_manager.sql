-- pgTAP: the manager sees everything in clear except national IDs, which
-- need an approval; an approval by another approver opens them, revoking
-- it closes them at once.
BEGIN;
SELECT plan(6);
CREATE ROLE tap_approver2 IN ROLE pii_guard_approver;
SET LOCAL ROLE mgr_eve;

SELECT results_eq(
    $$SELECT id::int, name, phone, deal_amount, service_tier FROM customers ORDER BY id$$,
    $$VALUES (1, '张三丰', '13812345678', 120000.00::numeric(12,2), 'gold'),
             (2, '李小龙', '13900001111', 3500.50::numeric(12,2), 'standard'),
             (3, '王芳', '13711112222', 800.00::numeric(12,2), 'silver'),
             (4, 'John Smith', '+86 136 0000 3333', 15000.00::numeric(12,2), 'standard')$$,
    'the manager sees all customers, contacts and amounts in clear');
SELECT results_eq($$SELECT national_id FROM customers ORDER BY id$$,
    $$VALUES ('110101********1234'), ('440301********0018'), ('310104********432X'), ('110105********0011')$$,
    'national IDs are masked without an approval');
SET LOCAL ROLE tap_approver2;
SELECT pii_guard.approve('mgr_eve', 'customers', now() + interval '1 hour', 'annual KYC review',
                         '{national_id}') AS gid \gset
SET LOCAL ROLE mgr_eve;
SELECT results_eq($$SELECT national_id FROM customers ORDER BY id$$,
    $$VALUES ('110101199003071234'), ('440301198512120018'), ('31010419920815432X'), ('110105198001010011')$$,
    'with an approval, every national ID is clear');
SELECT is((SELECT phone FROM customers WHERE national_id = '110101199003071234'), '13812345678',
          'and can be searched');
SET LOCAL ROLE tap_approver2;
SELECT lives_ok(format('SELECT pii_guard.revoke_grant(%s)', :gid), 'the approver revokes it');
SET LOCAL ROLE mgr_eve;
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101********1234', 'closed again at once');

SELECT * FROM finish();
ROLLBACK;
