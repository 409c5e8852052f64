-- pgTAP: purposes and consents, decided for every seed role on the seed
-- scenario (test/fixtures/crm.sql).
--
-- The purposes: 'service' (serving the customer's own requests: no consent
-- needed), 'marketing' and 'risk' (consent needed).  Sales may work for
-- service or marketing, support and interns for service, marketing for
-- marketing; managers' profile is not limited to purposes.  Customer 1
-- consented to marketing for everything, customer 2 for e-mail only,
-- customer 4 consented and withdrew.
BEGIN;
SELECT plan(43);

SET LOCAL client_min_messages = warning;
SELECT pii_guard.define_purpose('service', 'serving the customer''s own requests', false);
SELECT pii_guard.define_purpose('marketing', 'offers by e-mail and SMS');
SELECT pii_guard.define_purpose('risk', 'fraud and credit risk investigations');
SELECT pii_guard.set_purposes('sales', '{service,marketing}');
SELECT pii_guard.set_purposes('support', '{service}');
SELECT pii_guard.set_purposes('intern', '{service}');
SELECT pii_guard.set_purposes('marketing', '{marketing}');
SELECT pii_guard.record_consent('customers', '1', 'marketing', 'web form, 2026-03-01');
SELECT pii_guard.record_consent('customers', '02', 'marketing', 'shop sign-up sheet', '{email}');
SELECT pii_guard.record_consent('customers', '4', 'marketing', 'newsletter box');
SELECT pii_guard.withdraw_consent('customers', '4', 'marketing', 'unsubscribe link');

-- What a session may declare.
SELECT results_eq(
    $$SELECT r, pii_guard.may_declare(r::regrole, 'marketing'), pii_guard.may_declare(r::regrole, 'service'),
             pii_guard.may_declare(r::regrole, 'risk')
        FROM unnest('{mkt_amy,sales_bob,support_dan,mgr_eve,intern_fay}'::text[]) r ORDER BY r$$,
    $$VALUES ('intern_fay', false, true, false), ('mgr_eve', false, false, false),
             ('mkt_amy', true, false, false), ('sales_bob', true, true, false),
             ('support_dan', false, true, false)$$,
    'may_declare: the purposes each seed role''s profiles list');
SELECT is((SELECT row_key FROM pii_guard.consents WHERE how = 'shop sign-up sheet'), '2',
          'a consent''s row key is stored as the key type prints it (''02'' is row 2)');

-- Marketing: its only purpose is implied; a consent opens the rows (and
-- columns) it covers, the overrides still hide what they hide.
SET LOCAL ROLE mkt_amy;
SELECT results_eq(
    $$SELECT id, channel, campaign, phone FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, 'web', 'spring2026', NULL::text), (2::bigint, 's***', 'su***', NULL::text),
             (3::bigint, 'r***', 'sp***', NULL::text), (4::bigint, 'w***', 'in***', NULL::text)$$,
    'marketing (implied purpose marketing): channel and campaign clear only for customer 1, the only full consent; a withdrawn consent counts for nothing; phone stays hidden');
SELECT throws_ok($$SET pii_guard.purpose = 'service'$$, '42501',
                 'role "mkt_amy" may not declare the purpose "service"',
                 'marketing may not declare service');
SELECT throws_ok($$SELECT set_config('pii_guard.purpose', 'service', true)$$, '42501',
                 'role "mkt_amy" may not declare the purpose "service"',
                 'nor through set_config()');
SELECT throws_ok($$SET pii_guard.purpose = 'nosuch'$$, '42704', 'no pii_guard purpose "nosuch"',
                 'an undefined purpose is refused');
SELECT throws_ok($$SET pii_guard.purpose = 'Marketing; x'$$, '22023', NULL,
                 'a purpose is a lower-case word');
SELECT throws_ok($$SELECT * FROM pii_guard.consents$$, '42501', NULL,
                 'marketing cannot read who consented to what');
SELECT throws_ok($$SELECT pii_guard.record_consent('customers', '3', 'marketing', 'self-service')$$,
                 '42501', NULL, 'marketing cannot record a consent for itself');
RESET ROLE;

-- Sales: two purposes, so it must declare one; own customers only (RLS).
SET LOCAL ROLE sales_bob;
SELECT results_eq(
    $$SELECT id, name, phone, email FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, '张**', '138****5678', 'z*******@example.com'),
             (2::bigint, '李**', '139****1111', 'l*********@example.com')$$,
    'sales with no purpose declared (two to choose from): masked, as a role without a profile');
SET LOCAL pii_guard.purpose = 'service';
SELECT results_eq(
    $$SELECT id, name, phone, email FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, '张三丰', '13812345678', 'zhangsan@example.com'),
             (2::bigint, '李小龙', '13900001111', 'lixiaolong@example.com')$$,
    'sales for service (no consent needed): its clearance, clear');
SET LOCAL pii_guard.purpose = 'marketing';
SELECT results_eq(
    $$SELECT id, name, phone, email FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, '张三丰', '13812345678', 'zhangsan@example.com'),
             (2::bigint, '李**', '139****1111', 'lixiaolong@example.com')$$,
    'sales for marketing: customer 1 clear, customer 2 only its e-mail (what it consented to)');
SELECT is((SELECT count(*)::int FROM customers WHERE phone = '13900001111'), 0,
          'a filter on a phone the purpose does not reach finds nothing');
SELECT is((SELECT count(*)::int FROM customers WHERE phone = '13812345678'), 1,
          'a filter on a consented phone finds its row');
SELECT is((SELECT string_agg(id::text, ',' ORDER BY id) FROM customers WHERE email LIKE '%@example.com'),
          '1,2', 'both e-mails are consented: a filter on them finds both rows');
SELECT throws_ok($$SET pii_guard.purpose = 'risk'$$, '42501',
                 'role "sales_bob" may not declare the purpose "risk"', 'sales may not declare risk');
-- An ORM saving the whole row back: the masks it read are not written.
UPDATE customers SET name = '李**', phone = '139****1111', email = 'li.new@example.com' WHERE id = 2;
SELECT results_eq(
    $$SELECT id, name, phone, email FROM customers WHERE id = 2$$,
    $$VALUES (2::bigint, '李**', '139****1111', 'li.new@example.com')$$,
    'a row saved back as read: the consented e-mail changes, the masked name and phone stay masked');
RESET ROLE;
SELECT results_eq(
    $$SELECT name, phone::text, email FROM customers WHERE id = 2$$,
    $$VALUES ('李小龙', '13900001111', 'li.new@example.com')$$,
    'stored: the real name and phone kept, the new e-mail written');
UPDATE customers SET email = 'lixiaolong@example.com' WHERE id = 2;

-- Withdrawal takes effect at the next statement.
SET LOCAL ROLE sales_bob;
SET LOCAL pii_guard.purpose = 'marketing';
SELECT is((SELECT phone FROM customers WHERE id = 1), '13812345678', 'before withdrawal: clear');
RESET ROLE;
SELECT pii_guard.withdraw_consent('customers', '1', 'marketing', 'phone call to the service desk');
SET LOCAL ROLE sales_bob;
SELECT is((SELECT phone FROM customers WHERE id = 1), '138****5678',
          'after withdrawal: masked at the next statement, same session');
SELECT is((SELECT email FROM customers WHERE id = 2), 'lixiaolong@example.com',
          'another customer''s consent is untouched');
RESET pii_guard.purpose;
RESET ROLE;
SELECT pii_guard.record_consent('customers', '1', 'marketing', 'web form, again');

-- Support: its one purpose needs no consent: unchanged.
SET LOCAL ROLE support_dan;
SELECT results_eq(
    $$SELECT id, name, phone FROM customers ORDER BY id$$,
    $$VALUES (1::bigint, '张三丰', '13812345678'), (2::bigint, '李小龙', '13900001111'),
             (3::bigint, '王芳', '13711112222'), (4::bigint, 'John Smith', '+86 136 0000 3333')$$,
    'support (implied purpose service, no consent needed): clear as its clearance says');
SELECT throws_ok($$SET pii_guard.purpose = 'marketing'$$, '42501',
                 'role "support_dan" may not declare the purpose "marketing"',
                 'support may not declare marketing');
RESET ROLE;

-- A purpose declared by one role does not carry over to another: a
-- profile counts only for its own purposes, wherever the purpose was set
-- (a superuser's SET, a role default, a pool's reset).
SET LOCAL pii_guard.purpose = 'marketing';
SET LOCAL ROLE support_dan;
SELECT results_eq(
    $$SELECT id, name, phone FROM customers WHERE id IN (1, 2) ORDER BY id$$,
    $$VALUES (1::bigint, '张**', '138****5678'), (2::bigint, '李**', '139****1111')$$,
    'support under a purpose its profile does not list: no clearance (masked), consents or not');
RESET ROLE;
SELECT is(pii_guard.column_access('support'::regrole::oid,
                                  (SELECT base FROM pii_guard.protected_tables WHERE view_name = 'customers'),
                                  'phone'), 'masked',
          'column_access agrees for the session''s purpose');
SET LOCAL ROLE intern_fay;
SELECT results_eq(
    $$SELECT id, name, phone FROM customers WHERE id = 1$$,
    $$VALUES (1::bigint, '张**', '138****5678')$$,
    'intern: masked whatever the purpose (clearance public)');
RESET ROLE;
RESET pii_guard.purpose;

-- Intern: masked, and may not declare marketing.
SET LOCAL ROLE intern_fay;
SELECT throws_ok($$SET pii_guard.purpose = 'marketing'$$, '42501', NULL, 'intern may not declare marketing');
SELECT lives_ok($$SET pii_guard.purpose = 'service'$$, 'intern may declare service');
SELECT is((SELECT phone FROM customers WHERE id = 1), '138****5678', 'intern for service: masked');
RESET pii_guard.purpose;
RESET ROLE;

-- Manager: profile not limited to purposes (as before); an approval for a
-- purpose counts only while the session declares it, and lets it declare.
CREATE ROLE tap_risk_officer IN ROLE pii_guard_approver;
SET LOCAL ROLE mgr_eve;
SELECT results_eq(
    $$SELECT id, name, national_id FROM customers WHERE id = 1$$,
    $$VALUES (1::bigint, '张三丰', '110101********1234')$$,
    'manager: names clear, national IDs masked (core)');
SELECT throws_ok($$SET pii_guard.purpose = 'risk'$$, '42501', NULL,
                 'manager may not declare risk without an approval for it');
RESET ROLE;
SET LOCAL ROLE tap_risk_officer;
SELECT ok(pii_guard.approve('manager', 'customers', now() + interval '1 hour', 'fraud case 17',
                            '{national_id}', '{1}', 'risk') > 0, 'an approval for purpose risk, row 1');
RESET ROLE;
SELECT is((SELECT detail FROM pii_guard.audit_log WHERE kind = 'admin' AND operation = 'approve'
            ORDER BY event_id DESC LIMIT 1) LIKE '%purpose risk', true,
          'the approval''s admin event names its purpose');
SET LOCAL ROLE mgr_eve;
SELECT is((SELECT national_id FROM customers WHERE id = 1), '110101********1234',
          'the approval does not count while no purpose is declared');
SELECT lives_ok($$SET pii_guard.purpose = 'risk'$$, 'the live approval lets the manager declare risk');
SELECT results_eq(
    $$SELECT id, national_id FROM customers WHERE id IN (1, 2) ORDER BY id$$,
    $$VALUES (1::bigint, '110101199003071234'), (2::bigint, '440301********0018')$$,
    'for risk: row 1''s ID clear (approved), row 2''s masked');
SELECT is((SELECT name FROM customers WHERE id = 1), '张三丰',
          'the unlimited profile still applies under a declared purpose');
RESET pii_guard.purpose;
RESET ROLE;
SELECT throws_ok($$UPDATE pii_guard.grants SET purpose = NULL WHERE reason = 'fraud case 17'$$,
                 '42501', NULL, 'a grant''s purpose cannot be changed afterwards');

-- Administration is checked and audited.
SELECT throws_ok($$SELECT pii_guard.set_purposes('sales', '{nosuch}')$$, '42704', NULL,
                 'set_purposes refuses an undefined purpose');
SELECT throws_ok($$SELECT pii_guard.set_purposes('sales', '{}')$$, '22023', NULL,
                 'set_purposes refuses an empty list (NULL means not limited)');
SELECT throws_ok($$SELECT pii_guard.set_purposes('mkt_amy', '{marketing}')$$, '55000', NULL,
                 'set_purposes needs a profile');
SELECT is((SELECT count(*)::int FROM pii_guard.audit_log WHERE kind = 'admin' AND operation = 'set_purposes'
            AND detail IN ('sales: service, marketing', 'marketing: marketing')) >= 2, true,
          'set_purposes is an admin event');
SET LOCAL ROLE dba_joe;
SELECT throws_ok($$SELECT pii_guard.approve('sales', 'customers', now() + interval '1 hour', 'x', NULL, NULL, 'marketing')$$,
                 '42501', NULL, 'an administrator is not an approver');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
