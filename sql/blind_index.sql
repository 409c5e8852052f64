--
-- Equality on ciphertext through the blind index: WHERE col = 'plaintext'
-- through an index, UNIQUE, hash indexes and hash joins.
--
CREATE TABLE people (id int PRIMARY KEY, phone pii_guard.encrypted_text UNIQUE);
INSERT INTO people
SELECT g, '138' || lpad(g::text, 8, '0') FROM generate_series(1, 2000) g;
ANALYZE people;

-- EXPLAIN, with the (freshly encrypted, so ever-changing) constant elided.
CREATE FUNCTION plan(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        RETURN NEXT regexp_replace(line, '''pii_guard:[^'']*''', '''pii_guard:...''', 'g');
    END LOOP;
END
$$;

-- Found through the unique index.
SELECT plan($$SELECT id FROM people WHERE phone = '13800000042'$$);
SELECT id FROM people WHERE phone = '13800000042';
SELECT id FROM people WHERE phone = pii_guard.encrypt('13800001999');
SELECT count(*) FROM people WHERE phone <> '13800000042';

-- UNIQUE rejects the same plaintext under a fresh nonce (the detail would
-- show the envelope, so terse).
\set VERBOSITY terse
INSERT INTO people VALUES (9999, '13800000042');
\set VERBOSITY default

-- Hash index.
CREATE TABLE calls (caller pii_guard.encrypted_text, minutes int);
INSERT INTO calls
SELECT '138' || lpad((g % 500 + 1)::text, 8, '0'), g % 7 FROM generate_series(1, 3000) g;
CREATE INDEX calls_caller ON calls USING hash (caller);
ANALYZE calls;
SET enable_seqscan = off;
SELECT plan($$SELECT count(*) FROM calls WHERE caller = '13800000007'$$);
SELECT count(*) FROM calls WHERE caller = '13800000007';
RESET enable_seqscan;

-- Hash join on encrypted columns.
SET enable_mergejoin = off;
SET enable_nestloop = off;
EXPLAIN (COSTS OFF)
SELECT count(*) FROM calls c JOIN people p ON p.phone = c.caller;
SELECT count(*) FROM calls c JOIN people p ON p.phone = c.caller;
RESET enable_mergejoin;
RESET enable_nestloop;

-- Grouping and DISTINCT work on the blind index.
SELECT count(DISTINCT caller) FROM calls;
SELECT count(*) FROM (SELECT caller FROM calls GROUP BY caller) s;

-- Encrypted bytea has its own equality.
CREATE TABLE blobs (b pii_guard.encrypted_bytea UNIQUE);
INSERT INTO blobs VALUES ('\x0102'), ('\x0103');
SELECT count(*) FROM blobs WHERE b = '\x0102';
\set VERBOSITY terse
INSERT INTO blobs VALUES ('\x0102');
\set VERBOSITY default

-- A typed plaintext -- a text or varchar parameter of a prepared
-- statement, as drivers send them -- compares with the column too, through
-- the same indexes; nothing is decrypted.
PREPARE by_phone(text) AS SELECT id FROM people WHERE phone = $1;
EXECUTE by_phone('13800000042');
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE by_phone('13800000042');
EXECUTE by_phone('13800000043');
RESET plan_cache_mode;
PREPARE by_phone_vc(varchar) AS SELECT id FROM people WHERE $1 = phone;
EXECUTE by_phone_vc('13800000044');
PREPARE not_phone(text) AS SELECT count(*) FROM people WHERE phone <> $1;
EXECUTE not_phone('13800000044');
SELECT count(*) FROM people WHERE phone = '13800000044'::text || '';
SET enable_seqscan = off;
SELECT plan($$SELECT count(*) FROM calls WHERE caller = '13800000007'::text$$);
SELECT count(*) FROM calls WHERE caller = '13800000007'::text;
RESET enable_seqscan;
-- ... and hash-joins with a plaintext column.
CREATE TABLE leads (phone text);
INSERT INTO leads SELECT '138' || lpad(g::text, 8, '0') FROM generate_series(1990, 2010) g;
ANALYZE leads;
SET enable_mergejoin = off;
SET enable_nestloop = off;
EXPLAIN (COSTS OFF)
SELECT count(*) FROM leads l JOIN people p ON p.phone = l.phone;
SELECT count(*) FROM leads l JOIN people p ON p.phone = l.phone;
RESET enable_mergejoin;
RESET enable_nestloop;
SELECT count(*) FROM blobs WHERE b = '\x0102'::bytea;

-- A text value and a bytea value with the same bytes are different types.
SELECT pii_guard.encrypt('ab'::text) = pii_guard.encrypt('\x6162'::bytea);

-- There is no "<" on encrypted values: ordering by ciphertext means nothing.
SELECT count(*) FROM people WHERE phone < '13800000042';
