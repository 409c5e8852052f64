-- Crypto-shredding: values under per-subject keys (shred_by), keys destroyed
-- (shred_subject, erase_subject), what is checked and who may.
SET client_min_messages = warning;
CREATE SCHEMA shr;
CREATE TABLE shr.people (
    id     integer PRIMARY KEY,
    name   text NOT NULL,
    phone  pii_guard.encrypted_text,
    photo  pii_guard.encrypted_bytea);
CREATE TABLE shr.visits (
    id         integer PRIMARY KEY,
    person_id  integer REFERENCES shr.people ON DELETE CASCADE,
    other_id   integer,
    note       pii_guard.encrypted_text);
CREATE TABLE shr.plain (id integer PRIMARY KEY, phone pii_guard.encrypted_text);
INSERT INTO shr.people VALUES (1, 'a', '13812345678', '\x0102'), (2, 'b', '13987654321', NULL), (3, 'c', NULL, NULL);
INSERT INTO shr.visits VALUES (10, 1, 1, 'first visit'), (11, 1, 2, 'second'), (12, 2, 2, 'b''s'), (13, NULL, NULL, 'nobody''s');
CREATE ROLE shr_admin NOLOGIN IN ROLE pii_guard_admin;
CREATE ROLE shr_clerk NOLOGIN;
GRANT USAGE ON SCHEMA shr TO shr_admin, shr_clerk;
GRANT SELECT, INSERT, UPDATE ON shr.people, shr.visits TO shr_clerk;
SELECT pii_guard.protect_column('shr.people', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('shr.people', 'photo', 'sensitive');
SELECT pii_guard.protect_column('shr.visits', 'note', 'sensitive');
SELECT pii_guard.set_clearance('shr_clerk', 'sensitive');
RESET client_min_messages;

-- What is refused.
SELECT pii_guard.shred_by('shr.plain');
SELECT pii_guard.shred_by('shr.people', 'nosuch');
SELECT pii_guard.shred_by('shr.visits', 'other_id');
SET ROLE shr_clerk;
SELECT pii_guard.shred_by('shr.people');
SELECT pii_guard.shred_subject('shr.people', '1', 'x');
SELECT * FROM pii_guard.subject_keys;
RESET ROLE;
-- An administrator names the tables, but re-sealing existing rows is an
-- UPDATE with the caller's privileges: the table's owner runs it.
SET ROLE shr_admin;
SELECT pii_guard.shred_by('shr.people');
RESET ROLE;
SELECT count(*) AS configured FROM pii_guard.shredding;

-- The owner: existing rows re-sealed (rows with a value), per subject.
SELECT pii_guard.shred_by('shr.people') AS resealed;
SELECT pii_guard.shred_by('shr.visits', 'person_id') AS resealed;
SELECT base, subject_column, subject_base FROM pii_guard.shredding ORDER BY base::text;
SELECT p.id, pii_guard.key_id(p.phone) >= 2147483648 AS phone_subject_key,
       pii_guard.key_id(p.photo) = pii_guard.key_id(p.phone) AS photo_same_key,
       k.row_key
  FROM shr_pii.people p LEFT JOIN pii_guard.subject_keys k ON k.key_id = pii_guard.key_id(p.phone)
 ORDER BY p.id;
SELECT v.id, v.person_id, pii_guard.key_id(v.note) >= 2147483648 AS subject_key,
       pii_guard.key_id(v.note) = (SELECT pii_guard.key_id(phone) FROM shr_pii.people WHERE id = v.person_id) AS persons_key
  FROM shr_pii.visits v ORDER BY v.id;
SELECT count(*) AS keys FROM pii_guard.subject_keys WHERE subject_base = 'shr_pii.people'::regclass;

-- The clerk writes through the views; values land under the right keys.
SET ROLE shr_clerk;
INSERT INTO shr.people (id, name, phone) VALUES (4, 'd', '13600001111');
INSERT INTO shr.visits (id, person_id, note) VALUES (14, 4, 'd''s first');
UPDATE shr.visits SET person_id = 2 WHERE id = 11;
SELECT id, phone FROM shr.people ORDER BY id;
SELECT id, person_id, note FROM shr.visits ORDER BY id;
RESET ROLE;
SELECT v.id, pii_guard.key_id(v.note) = (SELECT pii_guard.key_id(phone) FROM shr_pii.people WHERE id = v.person_id) AS persons_key
  FROM shr_pii.visits v WHERE v.id IN (11, 14) ORDER BY v.id;
-- A value copied from another subject's row is sealed again under this one's.
UPDATE shr_pii.people SET phone = (SELECT phone FROM shr_pii.people WHERE id = 1) WHERE id = 3;
SELECT pii_guard.key_id(phone) = (SELECT key_id FROM pii_guard.subject_keys WHERE row_key = '3' AND subject_base = 'shr_pii.people'::regclass) AS own_key,
       pii_guard.decrypt(phone)
  FROM shr_pii.people WHERE id = 3;

-- Destroying a key: checked, audited; the values read as NULL through the
-- view and refuse to decrypt.
SELECT pii_guard.shred_subject('shr.people', '9', 'no such person');
SELECT pii_guard.shred_subject('shr.people', '1', ' ');
SET ROLE shr_admin;
SELECT pii_guard.shred_subject('shr.people', '01', 'customer request 7') > 0 AS shredded;
RESET ROLE;
SELECT row_key, wrapped_key IS NULL AS no_key, shredded_by, reason FROM pii_guard.subject_keys
 WHERE shredded_at IS NOT NULL;
SELECT regexp_replace(detail, 'key [0-9]+', 'key N') AS detail FROM pii_guard.audit_log
 WHERE operation = 'shred_subject' ORDER BY event_id DESC LIMIT 1;
SET ROLE shr_clerk;
SELECT id, phone, photo FROM shr.people WHERE id IN (1, 2) ORDER BY id;
SELECT id, note FROM shr.visits WHERE person_id = 1;
-- an ORM saving the row back as read writes nothing over it
UPDATE shr.people SET name = 'a2', phone = NULL WHERE id = 1;
RESET ROLE;
\set VERBOSITY terse
SELECT pii_guard.decrypt(phone) FROM shr_pii.people WHERE id = 1;
SELECT pii_guard.decrypt(note) FROM shr_pii.visits WHERE id = 10;
\set VERBOSITY default
-- A new value for the shredded person gets a new key.
UPDATE shr_pii.people SET phone = '13800000000' WHERE id = 1;
SELECT pii_guard.decrypt(phone), pii_guard.key_id(phone) <> (SELECT key_id FROM pii_guard.subject_keys WHERE shredded_at IS NOT NULL) AS new_key
  FROM shr_pii.people WHERE id = 1;
SELECT count(*) AS live_keys_of_1 FROM pii_guard.subject_keys WHERE row_key = '1' AND shredded_at IS NULL;

-- erase_subject destroys the key of the person it erases.
SELECT pii_guard.erase_subject('shr.people', '2', 'request 8');
SELECT row_key, reason FROM pii_guard.subject_keys WHERE row_key = '2';

-- Direct writes to the key table: only the extension's owner.
SET ROLE shr_admin;
UPDATE pii_guard.subject_keys SET shredded_at = now();
DELETE FROM pii_guard.subject_keys;
RESET ROLE;

-- reencrypt_column leaves values under subject keys as they are (they are
-- under their person's key; before, every pass found them "not under the
-- active key" and it gave up after ten with a WARNING).
SET client_min_messages = warning;
CALL pii_guard.reencrypt_column('shr.people', 'phone');
RESET client_min_messages;
SELECT count(*) FILTER (WHERE pii_guard.key_id(phone) >= 2147483648) AS under_subject_keys, count(phone)
  FROM shr_pii.people;

-- Data keys and subject keys never share an id.
SELECT max(key_id) < 2147483648 AS data_keys_below FROM pii_guard.data_keys;
SELECT min(key_id) >= 2147483648 AS subject_keys_above FROM pii_guard.subject_keys;

-- A backend whose first use of any key is a subject key's creation: an
-- envelope stored as it is (a restore, a copy between tables) in a new
-- subject's row.  (The key tables' names were resolved only with the data
-- key cache: the query read "FROM  WHERE" and failed.)
SELECT pii_guard.encrypt('13500002222'::text)::text AS env \gset
\c
INSERT INTO shr_pii.people (id, name, phone) VALUES (5, 'e', :'env');
SELECT pii_guard.key_id(phone) >= 2147483648 AS under_subject_key, pii_guard.decrypt(phone)
  FROM shr_pii.people WHERE id = 5;

SET client_min_messages = warning;
SELECT pii_guard.unprotect_table('shr.people');
SELECT pii_guard.unprotect_table('shr.visits');
DROP SCHEMA shr CASCADE;
DELETE FROM pii_guard.subject_keys;
DROP ROLE shr_admin, shr_clerk;
