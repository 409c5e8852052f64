-- pgTAP: who may do what with keys and encrypted values, role by role.
-- Roles: an application role (writes and searches, never decrypts or manages
-- keys: a pii_guard_encryptor member), a role that is not trusted to
-- encrypt, a key administrator (pii_guard_admin member), and a superuser.
BEGIN;
SELECT plan(35);

CREATE ROLE tap_app IN ROLE pii_guard_encryptor;
CREATE ROLE tap_other;
CREATE ROLE tap_keyadmin IN ROLE pii_guard_admin;
CREATE TABLE tap_customers (id serial PRIMARY KEY, phone pii_guard.encrypted_text UNIQUE,
                            id_card pii_guard.encrypted_bytea);
GRANT SELECT, INSERT, UPDATE, DELETE ON tap_customers TO tap_app, tap_keyadmin, tap_other;
GRANT USAGE ON SEQUENCE tap_customers_id_seq TO tap_app, tap_keyadmin, tap_other;

-- The extension's objects.
SELECT has_type('pii_guard', 'encrypted_text', 'type encrypted_text exists');
SELECT has_type('pii_guard', 'encrypted_bytea', 'type encrypted_bytea exists');
SELECT has_table('pii_guard', 'data_keys', 'data_keys exists');
SELECT has_role('pii_guard_admin', 'role pii_guard_admin exists');
SELECT has_role('pii_guard_approver', 'role pii_guard_approver exists');
SELECT has_role('pii_guard_auditor', 'role pii_guard_auditor exists');
SELECT is((SELECT rolcanlogin FROM pg_roles WHERE rolname = 'pii_guard_admin'), false,
          'pii_guard_admin cannot log in');
SELECT ok((SELECT extconfig @> ARRAY['pii_guard.data_keys'::regclass::oid]
             FROM pg_extension WHERE extname = 'pii_guard'),
          'data_keys is dumped with the database (pg_extension_config_dump)');
SELECT is((SELECT count(*)::int FROM pg_operator
            WHERE oprname = '<' AND oprleft = 'pii_guard.encrypted_text'::regtype), 0,
          'no "<" operator on encrypted_text');

-- Application role.
SET LOCAL ROLE tap_app;
SELECT lives_ok($$INSERT INTO tap_customers (phone, id_card) VALUES ('13812345678', '\x3131303130')$$,
                'app inserts an encrypted value');
SELECT is((SELECT count(*)::int FROM tap_customers WHERE phone = '13812345678'), 1,
          'app finds the row by plaintext equality');
SELECT throws_ok($$INSERT INTO tap_customers (phone) VALUES ('13812345678')$$, '23505', NULL,
                 'app hits UNIQUE on the same plaintext');
SELECT throws_ok($$SELECT pii_guard.decrypt(phone) FROM tap_customers$$, '42501',
                 'permission denied to decrypt pii_guard values', 'app may not decrypt text');
SELECT throws_ok($$SELECT pii_guard.decrypt(id_card) FROM tap_customers$$, '42501',
                 'permission denied to decrypt pii_guard values', 'app may not decrypt bytea');
SELECT ok((SELECT phone::text FROM tap_customers) LIKE 'pii_guard:%',
          'app reading the column sees only the envelope');
SELECT throws_ok($$SELECT * FROM pii_guard.data_keys$$, '42501', NULL, 'app may not read data_keys');
SELECT throws_ok($$UPDATE pii_guard.data_keys SET state = 'retired'$$, '42501', NULL,
                 'app may not change data_keys');
SELECT throws_ok($$SELECT pii_guard.rotate_data_key()$$, '42501', NULL, 'app may not rotate keys');
SELECT throws_ok($$SELECT pii_guard.rewrap_data_keys()$$, '42501', NULL, 'app may not re-wrap keys');
SELECT throws_ok($$SELECT pii_guard.reencrypt(phone) FROM tap_customers$$, '42501', NULL,
                 'app may not call reencrypt()');
SELECT throws_ok($$SELECT * FROM pii_guard.key_status$$, '42501', NULL, 'app may not read key_status');
SELECT throws_ok($$SHOW pii_guard.master_key_command$$, '42501', NULL,
                 'app may not see the master key command');
RESET ROLE;

-- A role not trusted to encrypt: outside a masking view it can neither
-- encrypt a plaintext nor compare one with encrypted values (either would
-- let it test guesses against any envelope), but it may compare envelopes.
SET LOCAL ROLE tap_other;
SELECT throws_ok($$INSERT INTO tap_customers (phone) VALUES ('13900000000')$$, '42501',
                 'permission denied to encrypt pii_guard values', 'an untrusted role may not encrypt');
SELECT throws_ok($$SELECT pii_guard.encrypt('13812345678')$$, '42501',
                 'permission denied to encrypt pii_guard values', '... nor call encrypt()');
SELECT throws_ok($$SELECT count(*) FROM tap_customers WHERE phone = '13812345678'::text$$, '42501',
                 'permission denied to compare plaintext with pii_guard encrypted values',
                 '... nor compare a plaintext with the column');
SELECT throws_ok($$SELECT pii_guard.text_blind_hash('13812345678')$$, '42501',
                 'permission denied to compare plaintext with pii_guard encrypted values',
                 '... nor compute a plaintext''s blind hash');
SELECT is((SELECT count(*)::int FROM tap_customers a JOIN tap_customers b ON a.phone = b.phone), 1,
          '... but compares envelopes with envelopes');
RESET ROLE;

-- Key administrator.
SET LOCAL ROLE tap_keyadmin;
SELECT is((SELECT pii_guard.decrypt(phone) FROM tap_customers), '13812345678',
          'key admin decrypts');
SELECT ok(pii_guard.rotate_data_key() > 0, 'key admin rotates the data key');
SELECT is((SELECT count(*)::int FROM pii_guard.key_status
            WHERE state = 'active' AND purpose IN ('encrypt', 'blind_index')), 2,
          'one active encryption key and one blind-index key');
SELECT is((SELECT pii_guard.decrypt(phone) FROM tap_customers), '13812345678',
          'the old value still decrypts after rotation');
SELECT throws_ok($$SELECT * FROM pii_guard.data_keys$$, '42501', NULL,
                 'key admin sees key_status, not the wrapped keys');
SELECT is((SELECT available FROM pii_guard.master_keys WHERE which = 'current'), true,
          'key admin sees that the master key is loaded');
RESET ROLE;

-- Superuser.
SELECT is((SELECT pii_guard.decrypt(id_card) FROM tap_customers), '\x3131303130'::bytea,
          'superuser decrypts bytea');
SELECT is((SELECT count(*)::int FROM pg_settings WHERE name = 'pii_guard.master_key_command'), 1,
          'superuser sees the master key command setting');

SELECT * FROM finish();
ROLLBACK;
