--
-- Bad input: each case has a documented outcome, stored or an ERROR with its
-- own SQLSTATE, and none crashes the backend or shows the value.
--
\set VERBOSITY default
CREATE TABLE t (id int, v pii_guard.encrypted_text, b pii_guard.encrypted_bytea);
INSERT INTO t VALUES (1, '13812345678', '\x0102');

-- A string goes through the type's input function (as in COPY and restore):
-- an envelope is checked and stored as it is.  (A text-typed value would be
-- encrypted as plaintext by the assignment cast instead.)
CREATE FUNCTION env(s text) RETURNS pii_guard.encrypted_text
LANGUAGE sql STABLE AS $$ SELECT pii_guard.encrypted_text_in(s::cstring) $$;
CREATE FUNCTION benv(s text) RETURNS pii_guard.encrypted_bytea
LANGUAGE sql STABLE AS $$ SELECT pii_guard.encrypted_bytea_in(s::cstring) $$;

-- Helper: the envelope with byte n XOR mask, in text form.
CREATE FUNCTION tamper(e text, n int, mask int DEFAULT 1) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'pii_guard:' || translate(encode(set_byte(raw, n, get_byte(raw, n) # mask), 'base64'), E'\n', '')
      FROM decode(substr(e, 11), 'base64') AS raw
$$;

-- Helper: the envelope naming another data key (bytes 2-5, big-endian).
CREATE FUNCTION with_key_id(e text, id bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'pii_guard:' || translate(encode(overlay(raw PLACING substr(int8send(id), 5, 4) FROM 3 FOR 4),
                                            'base64'), E'\n', '')
      FROM decode(substr(e, 11), 'base64') AS raw
$$;

-- Empty string and NULL: stored.
INSERT INTO t VALUES (2, '', NULL);
SELECT id, pii_guard.decrypt(v) = '' AS empty_round_trip, v IS NULL AS is_null
  FROM t WHERE id = 2;

-- Truncated: shorter than an envelope can be (22P02 at input) ...
SELECT env(substr(v::text, 1, 42)) FROM t WHERE id = 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- ... or cut inside the ciphertext: stored, then fails authentication (XX001).
SELECT pii_guard.decrypt(env('pii_guard:' || encode(substr(decode(substr(v::text, 11), 'base64'), 1, 52), 'base64')))
  FROM t WHERE id = 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE

-- Not base64 after the prefix (22P02).
SELECT 'pii_guard:***'::pii_guard.encrypted_text;
\echo SQLSTATE :LAST_ERROR_SQLSTATE

-- One bit flipped, wherever it is, is detected.
-- version byte: 22P02 at input
SELECT env(tamper(v::text, 0)) FROM t WHERE id = 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- kind byte (text envelope made to look like bytea): 22P02 at input
SELECT env(tamper(v::text, 1, 22)) FROM t WHERE id = 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- a bytea envelope given to encrypted_text: 22P02
SELECT env(b::text) FROM t WHERE id = 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- key id names key 0: 22P02 at input
SELECT env(with_key_id(v::text, 0)) FROM t WHERE id = 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- key id names a key that does not exist: 42704 at decryption (key ids
-- start at a random number below 2^30, so 2^31 - 1 is never one)
SELECT pii_guard.decrypt(env(with_key_id(v::text, 2147483647))) FROM t WHERE id = 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- nonce, blind index, ciphertext, tag: stored, XX001 at decryption
SELECT pii_guard.decrypt(env(tamper(v::text, 6))) FROM t WHERE id = 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pii_guard.decrypt(env(tamper(v::text, 20))) FROM t WHERE id = 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pii_guard.decrypt(env(tamper(v::text, 36))) FROM t WHERE id = 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pii_guard.decrypt(env(tamper(v::text, 60))) FROM t WHERE id = 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pii_guard.decrypt(benv(tamper(b::text, 40))) FROM t WHERE id = 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE

-- A tampered value can be stored (it is structurally sound) but never read.
INSERT INTO t SELECT 3, env(tamper(v::text, 40)) FROM t WHERE id = 1;
SELECT id, pii_guard.decrypt(v) FROM t WHERE id = 3;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
DELETE FROM t WHERE id = 3;

-- Wrong version: an envelope of a future format version 2.
SELECT env(tamper(v::text, 0, 3)) FROM t WHERE id = 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE

-- Multi-megabyte values: stored, and read back intact.
INSERT INTO t (id, v, b)
SELECT 4, repeat('0123456789abcdef', 4 * 65536), decode(repeat('00ff', 3 * 1024 * 1024), 'hex');
SELECT length(v::text) > 4 * 1024 * 1024 AS big_envelope,
       length(pii_guard.decrypt(v)) AS text_chars,
       md5(pii_guard.decrypt(v)) = md5(repeat('0123456789abcdef', 4 * 65536)) AS text_intact,
       length(pii_guard.decrypt(b)) AS bytea_bytes,
       pii_guard.decrypt(b) = decode(repeat('00ff', 3 * 1024 * 1024), 'hex') AS bytea_intact
  FROM t WHERE id = 4;

-- Non-UTF-8 bytes in encrypted_bytea: stored and returned byte for byte.
INSERT INTO t (id, b) VALUES (5, '\xc328ffa0a1e28228');
SELECT pii_guard.decrypt(b) FROM t WHERE id = 5;

-- Binary input (COPY ... FORMAT binary, the binary protocol) is checked the
-- same way, with 22P03: a value too short to be an envelope, and an
-- envelope of format version 2.  The files are written as bytea by COPY TO
-- and read back into an encrypted_text column.
CREATE TABLE bin_in (v pii_guard.encrypted_text);
SELECT current_setting('data_directory') || '/pii_guard_bad_input.bin' AS binfile \gset
COPY (SELECT '\x0102'::bytea) TO :'binfile' (FORMAT binary);
COPY bin_in FROM :'binfile' (FORMAT binary);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
COPY (SELECT set_byte(pii_guard.encrypted_text_send(v), 0, 2) FROM t WHERE id = 1)
  TO :'binfile' (FORMAT binary);
COPY bin_in FROM :'binfile' (FORMAT binary);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- (and a sound envelope goes through)
COPY (SELECT pii_guard.encrypted_text_send(v) FROM t WHERE id = 1)
  TO :'binfile' (FORMAT binary);
COPY bin_in FROM :'binfile' (FORMAT binary);
SELECT pii_guard.decrypt(v) = '13812345678' AS binary_round_trip FROM bin_in;

-- A damaged row of pii_guard.data_keys: XX001 "cannot be unwrapped" (a
-- wrong master key would be 55000), for a flipped bit and for a wrong
-- length; restored, the values decrypt again.  (Key ids are random: the
-- messages are shown with digits as N.)
CREATE FUNCTION show_error(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || regexp_replace(SQLERRM, '[0-9]+', 'N', 'g');
END $$;
CREATE TABLE saved_key AS
SELECT key_id, wrapped_key FROM pii_guard.data_keys
 WHERE key_id = (SELECT pii_guard.key_id(v) FROM t WHERE id = 1);
UPDATE pii_guard.data_keys d SET wrapped_key = set_byte(d.wrapped_key, 20, get_byte(d.wrapped_key, 20) # 1)
  FROM saved_key s WHERE d.key_id = s.key_id;
SELECT show_error('SELECT pii_guard.decrypt(v) FROM t WHERE id = 1') AS flipped_bit;
UPDATE pii_guard.data_keys d SET wrapped_key = substr(s.wrapped_key, 1, 40)
  FROM saved_key s WHERE d.key_id = s.key_id;
SELECT show_error('SELECT pii_guard.decrypt(v) FROM t WHERE id = 1') AS wrong_length;
UPDATE pii_guard.data_keys d SET wrapped_key = s.wrapped_key
  FROM saved_key s WHERE d.key_id = s.key_id;
SELECT pii_guard.decrypt(v) = '13812345678' AS restored FROM t WHERE id = 1;

-- The session is still healthy after all of the above.
SELECT count(*) FROM t;
