-- pgTAP: pii_guard_auditor on the seed scenario (test/fixtures/crm.sql).
-- Compliance staff read the whole audit trail -- the log, every audit view,
-- the access review and the chain check -- and nothing else: no customer
-- data (clear or masked), no base table, no key, no decrypt(), and no
-- audit row changed.
BEGIN;
SELECT plan(22);

CREATE ROLE auditor_gil LOGIN IN ROLE pii_guard_auditor;
SET LOCAL ROLE auditor_gil;

-- The audit trail, all of it.
SELECT lives_ok('SELECT count(*) FROM pii_guard.audit_log', 'the auditor reads audit_log');
SELECT lives_ok('SELECT count(*) FROM pii_guard.audit_row_access', 'the auditor reads audit_row_access');
SELECT lives_ok('SELECT count(*) FROM pii_guard.audit_exports', 'the auditor reads audit_exports');
SELECT lives_ok('SELECT count(*) FROM pii_guard.audit_denials', 'the auditor reads audit_denials');
SELECT lives_ok('SELECT count(*) FROM pii_guard.audit_admin_changes', 'the auditor reads audit_admin_changes');
SELECT lives_ok('SELECT count(*) FROM pii_guard.access_review', 'the auditor reads access_review');
SELECT lives_ok('SELECT count(*) FROM pii_guard.audit_seal', 'the auditor reads audit_seal');
SELECT lives_ok('SELECT * FROM pii_guard.verify_audit()', 'the auditor runs verify_audit()');
SELECT cmp_ok((SELECT count(*) FROM pii_guard.audit_admin_changes), '>', 0::bigint,
              'the fixture''s policy changes are visible to the auditor');

-- No protected data.
SELECT throws_ok('SELECT name FROM public.customers', '42501', NULL,
                 'the auditor cannot read the masking view');
SELECT throws_ok('SELECT id FROM public_pii.customers', '42501', NULL,
                 'the auditor cannot read the base table');
SELECT throws_ok('SELECT count(*) FROM pii_guard.data_keys', '42501', NULL,
                 'the auditor cannot read the data keys');
SELECT throws_ok('SELECT count(*) FROM pii_guard.master_keys', '42501', NULL,
                 'the auditor cannot read the master keys');
SELECT throws_ok('SELECT count(*) FROM pii_guard.key_status', '42501', NULL,
                 'the auditor cannot read the key status');
SELECT throws_ok($$SELECT pii_guard.decrypt(pii_guard.encrypt('x'))$$, '42501', NULL,
                 'the auditor cannot decrypt');
SELECT throws_ok($$SELECT pii_guard._audit_admin('forged', 'x')$$, '42501', NULL,
                 'the auditor cannot write admin events');
SELECT throws_ok($$SELECT pii_guard.unaudit_table('public_pii.customers')$$, '42501', NULL,
                 'the auditor cannot switch write audit off');

-- No audit row changed.
SELECT throws_ok('UPDATE pii_guard.audit_log SET detail = NULL', '42501', NULL,
                 'the auditor cannot update audit rows');
SELECT throws_ok('DELETE FROM pii_guard.audit_log', '42501', NULL,
                 'the auditor cannot delete audit rows');
SELECT throws_ok('TRUNCATE pii_guard.audit_log', '42501', NULL,
                 'the auditor cannot truncate the audit log');
SELECT throws_ok($$INSERT INTO pii_guard.audit_log (kind, detail) VALUES ('admin', 'forged')$$,
                 '42501', NULL, 'the auditor cannot insert audit rows');
SELECT throws_ok('DELETE FROM pii_guard.audit_seal', '42501', NULL,
                 'the auditor cannot delete seals');

SELECT * FROM finish();
ROLLBACK;
