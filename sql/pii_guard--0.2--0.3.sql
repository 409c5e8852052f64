/* pii_guard--0.2--0.3.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pii_guard UPDATE TO '0.3'" to load this file. \quit

-- 0.2 is released and its scripts are never edited: everything 0.3
-- changes is here, and CREATE EXTENSION of 0.3 runs the 0.1 script, the
-- 0.1--0.2 script and then this one.  Each change says why.

--------------------------------------------------------------------------
-- Security: no blind-index oracle
--------------------------------------------------------------------------

-- An envelope shows the blind index of its plaintext, and comparing a
-- plaintext with an envelope computes one: whoever may do either with a
-- plaintext of their choosing can test guesses against any envelope they
-- hold (a stolen dump).  From 0.3 on the library lets only trusted roles do
-- it outside a masking view: superusers, members of pii_guard_admin, owners
-- of protected tables, and members of this role -- for applications that
-- write and search encrypted columns of tables no masking view protects.
-- It gives no right to decrypt.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pii_guard_encryptor') THEN
        CREATE ROLE pii_guard_encryptor NOLOGIN;
    END IF;
END
$roles$;

-- The probe a lookup through a masking view compares the stored column
-- with (lookup.c): an envelope of the value the role searches for.  It
-- answers only at the call sites pii_guard builds, for roles that see the
-- column in clear; anyone else calling it is refused (trusted roles
-- excepted).  STABLE, so that it is evaluated at run time, once per index
-- scan, not folded while planning; PARALLEL RESTRICTED, since its call
-- site's mark does not travel to parallel workers.
CREATE FUNCTION @extschema@._blind_probe(text)
RETURNS @extschema@.encrypted_text
AS 'MODULE_PATHNAME', 'pii_guard_blind_probe_text'
LANGUAGE C STRICT STABLE PARALLEL RESTRICTED;

CREATE FUNCTION @extschema@._blind_probe(bytea)
RETURNS @extschema@.encrypted_bytea
AS 'MODULE_PATHNAME', 'pii_guard_blind_probe_bytea'
LANGUAGE C STRICT STABLE PARALLEL RESTRICTED;

COMMENT ON FUNCTION @extschema@._blind_probe(text) IS
    'internal: the probe of a lookup through a masking view; answers only where pii_guard put it';
COMMENT ON FUNCTION @extschema@._blind_probe(bytea) IS
    'internal: the probe of a lookup through a masking view; answers only where pii_guard put it';

-- A lookup through a masking view compares the stored column with its
-- probe by the envelopes' own equality; to use the column's index under
-- row-level security (for a role whose policy hides nothing, lookup.c),
-- that equality must be LEAKPROOF.  It is: it compares two blind indexes
-- and fails only on a damaged envelope, with a message that quotes no
-- value.
ALTER FUNCTION @extschema@.encrypted_text_eq(@extschema@.encrypted_text, @extschema@.encrypted_text) LEAKPROOF;
ALTER FUNCTION @extschema@.encrypted_text_ne(@extschema@.encrypted_text, @extschema@.encrypted_text) LEAKPROOF;
ALTER FUNCTION @extschema@.encrypted_bytea_eq(@extschema@.encrypted_bytea, @extschema@.encrypted_bytea) LEAKPROOF;
ALTER FUNCTION @extschema@.encrypted_bytea_ne(@extschema@.encrypted_bytea, @extschema@.encrypted_bytea) LEAKPROOF;

--------------------------------------------------------------------------
-- Security: no existence oracle across row-level security
--------------------------------------------------------------------------

-- A lookup through a masking view by a role whose row-level security
-- policy hides rows compares the stored column only after the policy
-- (lookup.c): the comparison is wrapped in this identity, which is not
-- LEAKPROOF, so that the planner cannot evaluate it -- through an index --
-- on rows the policy hides (EXPLAIN ANALYZE would count them).
CREATE FUNCTION @extschema@._after_policies(boolean)
RETURNS boolean
AS 'MODULE_PATHNAME', 'pii_guard_after_policies'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE COST 0.01;
COMMENT ON FUNCTION @extschema@._after_policies(boolean) IS
    'internal: keeps a lookup comparison behind row-level security';
