--
-- Data keys: lazy creation, rotation, re-encryption; none of it makes a
-- value unreadable.
--
\set VERBOSITY default
-- (The audit key appears whenever the first audit event is written, so the
-- checks below leave it out.)
SELECT purpose, state, wrapped_by_current_master_key
  FROM pii_guard.key_status WHERE purpose <> 'audit' ORDER BY key_id;
SELECT which, available, problem FROM pii_guard.master_keys;
-- The fingerprint of test/keys/test-master-1.hex, pinned to an HMAC
-- computed outside pii_guard (its first 16 hex digits):
--   printf 'f%s' 'pii_guard master key fingerprint v1' | openssl dgst -sha256 \
--     -mac HMAC -macopt hexkey:$(cat test/keys/test-master-1.hex)
-- Blind indexes, pseudonyms and audit MACs use the same HMAC routine.
SELECT fingerprint = 'b1004d5c63254071' AS fingerprint_pinned
  FROM pii_guard.master_keys WHERE which = 'current';

CREATE TABLE accounts (id int PRIMARY KEY, phone pii_guard.encrypted_text, card pii_guard.encrypted_bytea);
INSERT INTO accounts
SELECT g, '139' || lpad(g::text, 8, '0'), int4send(g) FROM generate_series(1, 3000) g;

-- Rotate: new values use the new key, old values keep theirs.
SELECT pii_guard.rotate_data_key() AS new_key \gset
INSERT INTO accounts
SELECT g, '139' || lpad(g::text, 8, '0'), int4send(g) FROM generate_series(3001, 3500) g;
SELECT pii_guard.key_id(phone) = :new_key AS on_new_key, count(*)
  FROM accounts GROUP BY 1 ORDER BY 1;
SELECT key_id = :new_key AS is_new, purpose, state
  FROM pii_guard.key_status WHERE purpose <> 'audit' ORDER BY key_id;

-- Everything still decrypts, and equality still finds old and new values.
SELECT count(*) FILTER (WHERE pii_guard.decrypt(phone) = '139' || lpad(id::text, 8, '0')) AS phones_ok,
       count(*) FILTER (WHERE pii_guard.decrypt(card) = int4send(id)) AS cards_ok
  FROM accounts;
SELECT id FROM accounts WHERE phone = '13900000007';
SELECT id FROM accounts WHERE phone = '13900003007';

-- Re-encrypt the old values in committed batches (resumable procedure).
SET client_min_messages = warning;   -- the NOTICE names the key id
CALL pii_guard.reencrypt_column('accounts', 'phone', 400);
CALL pii_guard.reencrypt_column('accounts', 'card', 400);
RESET client_min_messages;
SELECT count(*) FILTER (WHERE pii_guard.key_id(phone) <> :new_key) AS phones_on_old_key,
       count(*) FILTER (WHERE pii_guard.key_id(card) <> :new_key) AS cards_on_old_key
  FROM accounts;
SELECT count(*) FILTER (WHERE pii_guard.decrypt(phone) = '139' || lpad(id::text, 8, '0')) AS phones_ok,
       count(*) FILTER (WHERE pii_guard.decrypt(card) = int4send(id)) AS cards_ok
  FROM accounts;
SELECT id FROM accounts WHERE phone = '13900000007';
SELECT count(*) AS progress_rows FROM pii_guard.reencrypt_progress;

-- Running it again has nothing to do.
SET client_min_messages = warning;
CALL pii_guard.reencrypt_column('accounts', 'phone');
RESET client_min_messages;

-- Bad arguments.
CALL pii_guard.reencrypt_column('accounts', 'id');
CALL pii_guard.reencrypt_column('accounts', 'nope');
CALL pii_guard.reencrypt_column('accounts', 'phone', 0);

-- Key management is for pii_guard_admin members (and superusers) only.
CREATE ROLE regress_clerk;
CREATE ROLE regress_keyadmin;
GRANT pii_guard_admin TO regress_keyadmin;
SET ROLE regress_clerk;
SELECT pii_guard.rotate_data_key();
SELECT pii_guard.rewrap_data_keys();
SELECT * FROM pii_guard.key_status;
SELECT * FROM pii_guard.master_keys;
CALL pii_guard.reencrypt_column('accounts', 'phone');
SELECT wrapped_key FROM pii_guard.data_keys;
RESET ROLE;
SET ROLE regress_keyadmin;
SELECT pii_guard.rotate_data_key() > :new_key AS rotated;
SELECT pii_guard.rewrap_data_keys() AS rewrapped;
SELECT count(*) AS keys, count(*) FILTER (WHERE state = 'active') AS active
  FROM pii_guard.key_status WHERE purpose <> 'audit';
RESET ROLE;

-- Data keys can't be deleted or changed by ordinary roles, and the master key
-- setting is hidden from them.
SET ROLE regress_clerk;
DELETE FROM pii_guard.data_keys;
SHOW pii_guard.master_key_command;
SELECT count(*) FROM pg_settings WHERE name LIKE 'pii_guard.%';
RESET ROLE;
SELECT count(*) FROM pg_settings WHERE name LIKE 'pii_guard.%';

-- All values, under all keys, still decrypt.
SELECT count(*) FILTER (WHERE pii_guard.decrypt(phone) = '139' || lpad(id::text, 8, '0')) AS phones_ok
  FROM accounts;

-- Decryption in parallel workers (whose key cache starts cold).
SET force_parallel_mode = on;
SELECT count(*) FILTER (WHERE pii_guard.decrypt(phone) = '139' || lpad(id::text, 8, '0')) AS phones_ok
  FROM accounts;
RESET force_parallel_mode;
