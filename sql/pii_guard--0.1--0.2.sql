/* pii_guard--0.1--0.2.sql: the changes of version 0.2 over 0.1 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pii_guard UPDATE TO '0.2'" to load this file. \quit

-- 0.1 is released and its script is never edited: everything 0.2 changes
-- is here, and CREATE EXTENSION of 0.2 runs the 0.1 script and then this
-- one.  Each change says why.

--------------------------------------------------------------------------
-- Policy and masking views: masking functions
--------------------------------------------------------------------------

-- pseudonym() and noise() create the pseudonym key on first use, a write
-- that a parallel worker cannot do: they are PARALLEL RESTRICTED, not SAFE.
ALTER FUNCTION @extschema@.pseudonym(text) PARALLEL RESTRICTED;
ALTER FUNCTION @extschema@.noise(numeric, double precision) PARALLEL RESTRICTED;
ALTER FUNCTION @extschema@.noise(integer, double precision) PARALLEL RESTRICTED;
ALTER FUNCTION @extschema@.noise(bigint, double precision) PARALLEL RESTRICTED;
ALTER FUNCTION @extschema@.noise(double precision, double precision) PARALLEL RESTRICTED;

-- Short card numbers no longer show 6 + 4 digits; noise always moves a
-- value and clamps instead of overflowing.
COMMENT ON FUNCTION @extschema@.mask_bank_card(text) IS
    'masks a bank card number: 16 to 19 digits show the first 6 and last 4 (622202*********0123), 13 to 15 the first 2 and last 4, other digit strings at most the last 4 -- never more than half of the digits';
COMMENT ON FUNCTION @extschema@.noise(numeric, double precision) IS
    'the value moved by keyed noise that is the same on every call: by about ratio times itself, rounded to the value''s last digit and at least one unit of it';
COMMENT ON FUNCTION @extschema@.noise(integer, double precision) IS
    'the value moved by keyed noise that is the same on every call: by about ratio times itself, rounded, at least 1, clamped to the integer range';
COMMENT ON FUNCTION @extschema@.noise(bigint, double precision) IS
    'the value moved by keyed noise that is the same on every call: by about ratio times itself, rounded, at least 1, clamped to the bigint range';
COMMENT ON FUNCTION @extschema@.noise(double precision, double precision) IS
    'the value moved by at most ratio times itself, by keyed noise that is the same on every call, clamped to the finite range';
