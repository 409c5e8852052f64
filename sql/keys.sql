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

-- Partitioned and inherited tables: every partition and every child is
-- re-encrypted, each by itself.
CREATE TABLE parted (id int, phone pii_guard.encrypted_text) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (1000);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (1000) TO (2000);
INSERT INTO parted SELECT g, '137' || lpad(g::text, 8, '0') FROM generate_series(1, 1999) g;
CREATE TABLE inh_parent (id int, phone pii_guard.encrypted_text);
CREATE TABLE inh_child (note text) INHERITS (inh_parent);
INSERT INTO inh_parent SELECT g, '136' || lpad(g::text, 8, '0') FROM generate_series(1, 10) g;
INSERT INTO inh_child SELECT g, '136' || lpad(g::text, 8, '0') FROM generate_series(11, 3000) g;
SELECT pii_guard.rotate_data_key() AS tree_key \gset
SET client_min_messages = warning;
CALL pii_guard.reencrypt_column('parted', 'phone', 300);
CALL pii_guard.reencrypt_column('inh_parent', 'phone', 300);
RESET client_min_messages;
SELECT 'parted' AS tree, count(*) FILTER (WHERE pii_guard.key_id(phone) <> :tree_key) AS on_old_key,
       count(*) FILTER (WHERE pii_guard.decrypt(phone) = '137' || lpad(id::text, 8, '0')) AS decrypt_ok
  FROM parted
UNION ALL
SELECT 'inh_parent', count(*) FILTER (WHERE pii_guard.key_id(phone) <> :tree_key),
       count(*) FILTER (WHERE pii_guard.decrypt(phone) = '136' || lpad(id::text, 8, '0'))
  FROM inh_parent;

-- Bad arguments.
CALL pii_guard.reencrypt_column('accounts', 'id');
CALL pii_guard.reencrypt_column('accounts', 'nope');
CALL pii_guard.reencrypt_column('accounts', 'phone', 0);
-- A foreign table anywhere in the tree (its values live elsewhere) is
-- refused, at any depth, before anything is re-encrypted.
CREATE FOREIGN DATA WRAPPER regress_fdw;
CREATE SERVER regress_elsewhere FOREIGN DATA WRAPPER regress_fdw;
CREATE FOREIGN TABLE inh_far () INHERITS (inh_parent) SERVER regress_elsewhere;
CALL pii_guard.reencrypt_column('inh_parent', 'phone');
DROP FOREIGN TABLE inh_far;
CREATE FOREIGN TABLE inh_far () INHERITS (inh_child) SERVER regress_elsewhere;
CALL pii_guard.reencrypt_column('inh_parent', 'phone');
DROP FOREIGN TABLE inh_far;
DROP SERVER regress_elsewhere;
DROP FOREIGN DATA WRAPPER regress_fdw;

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
-- Rows that row-level security hides from the caller would stay under
-- their old key: refused, with a hint.
CREATE TABLE rls_accounts (id int, owner name, phone pii_guard.encrypted_text);
INSERT INTO rls_accounts VALUES (1, 'regress_keyadmin', '13500000001'), (2, 'someone', '13500000002');
ALTER TABLE rls_accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON rls_accounts USING (owner = current_user);
GRANT SELECT, UPDATE ON rls_accounts TO regress_keyadmin;
SET ROLE regress_keyadmin;
CALL pii_guard.reencrypt_column('rls_accounts', 'phone');
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

-- The roles go (installcheck may run again on the same server).
SET client_min_messages = warning;
DROP OWNED BY regress_clerk, regress_keyadmin CASCADE;
DROP ROLE regress_clerk, regress_keyadmin;
RESET client_min_messages;
