--
-- encrypted_text and encrypted_bytea: plaintext in, ciphertext stored and
-- printed, plaintext back only through decrypt() for roles allowed to.
--
CREATE TABLE customers (
    id      serial PRIMARY KEY,
    name    text,
    phone   pii_guard.encrypted_text,
    photo   pii_guard.encrypted_bytea
);

INSERT INTO customers (name, phone, photo) VALUES
    ('张三丰', '13812345678', '\x89504e470d0a1a0a'),
    ('John Smith', '+86 139 0000 1111', '\xdeadbeef'),
    ('empty', '', '\x'),
    ('nulls', NULL, NULL);

-- Stored and printed as envelopes, never as plaintext.
SELECT id,
       phone::text LIKE 'pii_guard:%' AS phone_is_envelope,
       strpos(phone::text, '13812345678') = 0 AS phone_not_in_output,
       photo::text LIKE 'pii_guard:%' AS photo_is_envelope
  FROM customers ORDER BY id;

-- The stored bytes do not contain the plaintext either.
SELECT count(*) AS rows_with_plaintext_on_disk
  FROM customers
 WHERE position('13812345678'::bytea IN pii_guard.encrypted_text_send(phone)) > 0;

-- Every value is encrypted with its own nonce: equal plaintexts, different
-- envelopes.
SELECT '13812345678'::pii_guard.encrypted_text::text
    <> '13812345678'::pii_guard.encrypted_text::text AS fresh_nonce_each_time;

-- Round trips, including UTF-8 text, the empty string and non-UTF-8 bytes.
SELECT id, name, pii_guard.decrypt(phone) AS phone, pii_guard.decrypt(photo) AS photo
  FROM customers ORDER BY id;
SELECT pii_guard.decrypt(pii_guard.encrypt('身份证 110101199003071234 ✓'));
SELECT pii_guard.decrypt('\xff00fe80'::pii_guard.encrypted_bytea);
SELECT pii_guard.decrypt(pii_guard.encrypt('\x00ff'::bytea));

-- NULL in, NULL out.
SELECT pii_guard.encrypt(NULL::text) IS NULL AS enc_null,
       pii_guard.decrypt(NULL::pii_guard.encrypted_text) IS NULL AS dec_null,
       pii_guard.key_id(NULL::pii_guard.encrypted_text) IS NULL AS key_null;

-- Envelopes (as in a dump or COPY) are taken as they are, not encrypted
-- again; the same envelope read back decrypts to the same value.
CREATE TABLE copy_target (LIKE customers);
INSERT INTO copy_target
SELECT id, name, pii_guard.encrypted_text_in(phone::text::cstring),
       pii_guard.encrypted_bytea_in(photo::text::cstring)
  FROM customers;
SELECT c.id, c.phone::text = t.phone::text AS same_envelope,
       pii_guard.decrypt(t.phone) AS phone
  FROM customers c JOIN copy_target t USING (id) ORDER BY c.id;

-- Binary COPY carries the raw envelope both ways (send/receive).
\copy customers TO 'results/customers.bin' WITH (FORMAT binary)
CREATE TABLE binary_target (LIKE customers);
\copy binary_target FROM 'results/customers.bin' WITH (FORMAT binary)
SELECT c.id, c.phone::text = b.phone::text AS same_phone,
       c.photo::text = b.photo::text AS same_photo, pii_guard.decrypt(b.phone) AS phone
  FROM customers c JOIN binary_target b USING (id) ORDER BY c.id;

-- Assignment casts encrypt typed values (INSERT ... SELECT, UPDATE ... SET),
-- even one that looks like an envelope: a text value is plaintext.
CREATE TABLE staging (phone text, photo bytea);
INSERT INTO staging VALUES ('13700000001', '\x01'), ('13700000002', '\x02');
INSERT INTO customers (name, phone, photo) SELECT 'staged', phone, photo FROM staging;
SELECT pii_guard.decrypt(phone), pii_guard.decrypt(photo)
  FROM customers WHERE name = 'staged' ORDER BY 1;
UPDATE customers SET phone = 'pii_guard:' || name WHERE name = 'staged';
SELECT DISTINCT pii_guard.decrypt(phone) FROM customers WHERE name = 'staged';
SELECT count(*) FROM customers WHERE phone = 'pii_guard:staged'::text::pii_guard.encrypted_text;

-- encrypt() always encrypts, even a string that looks like an envelope.
SELECT pii_guard.decrypt(pii_guard.encrypt('pii_guard:not an envelope'));

-- Outside a masking view, only trusted roles may encrypt or compare a
-- plaintext with encrypted values (either shows a blind index of a value of
-- one's choosing, which tests guesses against any envelope): others get
-- 42501.  An application that writes and searches such a table gets
-- pii_guard_encryptor, which does not let it decrypt.
CREATE ROLE regress_app;
CREATE ROLE regress_keeper;
GRANT pii_guard_admin TO regress_keeper;
GRANT ALL ON customers, customers_id_seq TO regress_app, regress_keeper;
SET ROLE regress_app;
INSERT INTO customers (name, phone) VALUES ('by app', '13600000000');
SELECT count(*) FROM customers WHERE phone = '13600000000'::text;
SELECT pii_guard.encrypt('13600000000');
SELECT count(*) FROM customers WHERE phone = phone;
RESET ROLE;
GRANT pii_guard_encryptor TO regress_app;
SET ROLE regress_app;
INSERT INTO customers (name, phone) VALUES ('by app', '13600000000');
SELECT count(*) FROM customers WHERE phone = '13600000000';
SELECT count(*) FROM customers WHERE phone = '13600000000'::text;
\set VERBOSITY default
SELECT pii_guard.decrypt(phone) FROM customers WHERE name = 'by app';
\set VERBOSITY terse
SELECT pii_guard.decrypt(photo) FROM customers WHERE id = 1;
RESET ROLE;
SET ROLE regress_keeper;
SELECT pii_guard.decrypt(phone) FROM customers WHERE name = 'by app';
RESET ROLE;

-- Data keys are not readable by application roles.
SET ROLE regress_app;
SELECT count(*) FROM pii_guard.data_keys;
SELECT count(*) FROM pii_guard.key_status;
RESET ROLE;

-- The roles go (installcheck may run again on the same server).
SET client_min_messages = warning;
DROP OWNED BY regress_app, regress_keeper CASCADE;
DROP ROLE regress_app, regress_keeper;
RESET client_min_messages;
