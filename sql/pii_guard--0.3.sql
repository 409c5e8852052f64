/* pii_guard--0.3.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pii_guard" to load this file. \quit

-- The fresh install of pii_guard 0.3: CREATE EXTENSION pii_guard runs this
-- script alone.  A database that has 0.1 or 0.2 is updated by
-- pii_guard--0.1--0.2.sql and pii_guard--0.2--0.3.sql (ALTER EXTENSION
-- pii_guard UPDATE), which stay, with pii_guard--0.1.sql, for that and as
-- the record of what each version changed.  This script holds what they
-- leave, each object in its final form, in the sections below; the comment
-- above an object is the one those scripts give it, and its COMMENT ON
-- follows it.  The upgrade scenario (test/scenario/upgrade.sh) proves that
-- both ways give the same objects: members, function definitions and
-- settings, columns, constraints, indexes, triggers, policies, views and
-- every ACL.
--
-- Contents:
--   1. Roles: the cluster-wide roles pii_guard needs, created when missing
--   2. Types, operators and operator classes: the encrypted types and their
--      I/O functions, the classification level, the blind-index comparison
--      operators (in pg_catalog) and their btree and hash operator classes,
--      with their support functions
--   3. Tables and sequences: pii_guard's tables with their constraints,
--      indexes and sequences, and which of them pg_dump dumps
--      (pg_extension_config_dump)
--   4. Internal functions: helpers whose names start with an underscore,
--      and trigger and event-trigger functions
--   5. Public functions: by topic: keys and encryption; masking and policy;
--      export limits and approvals; audit; discovery and masked copies;
--      privacy and data subjects
--   6. Views, casts, triggers and event triggers: what has to follow the
--      functions
--   7. Privileges: every GRANT and REVOKE

-- Functions refer to tables, and views and SQL functions to functions
-- defined later in this script: their bodies are checked when they run.
SET check_function_bodies = off;

--------------------------------------------------------------------------
-- 1. Roles
--------------------------------------------------------------------------

-- Roles: created when missing (roles are cluster-wide and outlive the
-- extension).  pii_guard_admin manages keys and policy without superuser,
-- pii_guard_approver issues time-boxed grants, pii_guard_auditor reads the
-- audit trail.
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pii_guard_admin', 'pii_guard_approver', 'pii_guard_auditor']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;

-- Owner of every masking view and write view: a role that row-level
-- security applies to (not a superuser, not a table owner, no BYPASSRLS),
-- which nobody logs in as or is a member of.
DO $owner$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pii_guard_owner') THEN
        CREATE ROLE pii_guard_owner NOLOGIN NOINHERIT;
    END IF;
END
$owner$;

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

--------------------------------------------------------------------------
-- 2. Types, operators and operator classes
--------------------------------------------------------------------------

-- Types
-- =====

-- Shell types first: the I/O functions take and return them.
CREATE TYPE @extschema@.encrypted_text;
CREATE TYPE @extschema@.encrypted_bytea;

CREATE FUNCTION @extschema@.encrypted_text_in(cstring) RETURNS @extschema@.encrypted_text
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_encrypted_text_in';

CREATE FUNCTION @extschema@.encrypted_text_out(@extschema@.encrypted_text) RETURNS cstring
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_out';

CREATE FUNCTION @extschema@.encrypted_text_recv(internal) RETURNS @extschema@.encrypted_text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_encrypted_text_recv';

CREATE FUNCTION @extschema@.encrypted_text_send(@extschema@.encrypted_text) RETURNS bytea
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_send';

CREATE FUNCTION @extschema@.encrypted_bytea_in(cstring) RETURNS @extschema@.encrypted_bytea
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_encrypted_bytea_in';

CREATE FUNCTION @extschema@.encrypted_bytea_out(@extschema@.encrypted_bytea) RETURNS cstring
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_out';

CREATE FUNCTION @extschema@.encrypted_bytea_recv(internal) RETURNS @extschema@.encrypted_bytea
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_encrypted_bytea_recv';

CREATE FUNCTION @extschema@.encrypted_bytea_send(@extschema@.encrypted_bytea) RETURNS bytea
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_send';

CREATE TYPE @extschema@.encrypted_text (
    INTERNALLENGTH = variable,
    INPUT = @extschema@.encrypted_text_in,
    OUTPUT = @extschema@.encrypted_text_out,
    RECEIVE = @extschema@.encrypted_text_recv,
    SEND = @extschema@.encrypted_text_send,
    ALIGNMENT = int4,
    -- ciphertext does not compress: store it out of line, uncompressed
    STORAGE = external
);
COMMENT ON TYPE @extschema@.encrypted_text IS 'text encrypted with AES-256-GCM under a pii_guard data key, with a blind index for equality';

CREATE TYPE @extschema@.encrypted_bytea (
    INTERNALLENGTH = variable,
    INPUT = @extschema@.encrypted_bytea_in,
    OUTPUT = @extschema@.encrypted_bytea_out,
    RECEIVE = @extschema@.encrypted_bytea_recv,
    SEND = @extschema@.encrypted_bytea_send,
    ALIGNMENT = int4,
    STORAGE = external
);
COMMENT ON TYPE @extschema@.encrypted_bytea IS 'bytea encrypted with AES-256-GCM under a pii_guard data key, with a blind index for equality';

CREATE TYPE @extschema@.level AS ENUM (
    'public',
    'internal',
    'sensitive',
    'core'
);
COMMENT ON TYPE @extschema@.level IS 'data classification, ordered: public < internal < sensitive < core';

-- Comparison operators and operator classes
-- =========================================

-- The operators live in pg_catalog, not in @extschema@: operators are found
-- through search_path, and `WHERE phone = '13812345678'` must work for every
-- application whatever its search_path.  They are extension members like the
-- rest, so DROP EXTENSION removes them and pg_dump does not dump them.  The
-- ordering operators are spelled ~<~ ~<=~ ~>=~ ~>~, not < <= >= >: they order
-- by blind index (which btree needs for UNIQUE), not by plaintext.

-- `phone = $1` with a text (or varchar) parameter, as prepared statements
-- and most drivers send it, had no operator: only untyped literals worked.
-- These compare the plaintext's blind index with the envelope's (nothing is
-- decrypted), and are in the btree and hash families, so they use the
-- column's indexes and hash joins.  = and <> are LEAKPROOF (they return a
-- boolean, and fail only without a master key or on a damaged envelope,
-- never because of a value), so that a lookup through a masking view can
-- use the index under row-level security too (lookup.c).

CREATE FUNCTION @extschema@.encrypted_text_eq(@extschema@.encrypted_text, @extschema@.encrypted_text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_eq';

CREATE FUNCTION @extschema@.encrypted_text_ne(@extschema@.encrypted_text, @extschema@.encrypted_text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_ne';

CREATE FUNCTION @extschema@.encrypted_text_lt(@extschema@.encrypted_text, @extschema@.encrypted_text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_lt';

CREATE FUNCTION @extschema@.encrypted_text_le(@extschema@.encrypted_text, @extschema@.encrypted_text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_le';

CREATE FUNCTION @extschema@.encrypted_text_ge(@extschema@.encrypted_text, @extschema@.encrypted_text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_ge';

CREATE FUNCTION @extschema@.encrypted_text_gt(@extschema@.encrypted_text, @extschema@.encrypted_text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_gt';

CREATE FUNCTION @extschema@.encrypted_text_cmp(@extschema@.encrypted_text, @extschema@.encrypted_text) RETURNS integer
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_cmp';

CREATE FUNCTION @extschema@.encrypted_text_hash(@extschema@.encrypted_text) RETURNS integer
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_hash';

CREATE FUNCTION @extschema@.encrypted_text_hash_extended(@extschema@.encrypted_text, bigint) RETURNS bigint
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_hash_extended';

CREATE FUNCTION @extschema@.encrypted_bytea_eq(@extschema@.encrypted_bytea, @extschema@.encrypted_bytea) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_eq';

CREATE FUNCTION @extschema@.encrypted_bytea_ne(@extschema@.encrypted_bytea, @extschema@.encrypted_bytea) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_ne';

CREATE FUNCTION @extschema@.encrypted_bytea_lt(@extschema@.encrypted_bytea, @extschema@.encrypted_bytea) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_lt';

CREATE FUNCTION @extschema@.encrypted_bytea_le(@extschema@.encrypted_bytea, @extschema@.encrypted_bytea) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_le';

CREATE FUNCTION @extschema@.encrypted_bytea_ge(@extschema@.encrypted_bytea, @extschema@.encrypted_bytea) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_ge';

CREATE FUNCTION @extschema@.encrypted_bytea_gt(@extschema@.encrypted_bytea, @extschema@.encrypted_bytea) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_gt';

CREATE FUNCTION @extschema@.encrypted_bytea_cmp(@extschema@.encrypted_bytea, @extschema@.encrypted_bytea) RETURNS integer
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_cmp';

CREATE FUNCTION @extschema@.encrypted_bytea_hash(@extschema@.encrypted_bytea) RETURNS integer
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_hash';

CREATE FUNCTION @extschema@.encrypted_bytea_hash_extended(@extschema@.encrypted_bytea, bigint) RETURNS bigint
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_hash_extended';

CREATE FUNCTION @extschema@.encrypted_text_eq_plain(@extschema@.encrypted_text, text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_eq_plain';

CREATE FUNCTION @extschema@.encrypted_text_ne_plain(@extschema@.encrypted_text, text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_ne_plain';

CREATE FUNCTION @extschema@.encrypted_text_cmp_plain(@extschema@.encrypted_text, text) RETURNS integer
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_cmp_plain';

CREATE FUNCTION @extschema@.plain_eq_encrypted_text(text, @extschema@.encrypted_text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_plain_eq_envelope';

CREATE FUNCTION @extschema@.plain_ne_encrypted_text(text, @extschema@.encrypted_text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_plain_ne_envelope';

CREATE FUNCTION @extschema@.plain_cmp_encrypted_text(text, @extschema@.encrypted_text) RETURNS integer
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_plain_cmp_envelope';

CREATE FUNCTION @extschema@.text_blind_hash(text) RETURNS integer
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_plain_text_hash';

CREATE FUNCTION @extschema@.text_blind_hash_extended(text, bigint) RETURNS bigint
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_plain_text_hash_extended';

CREATE FUNCTION @extschema@.encrypted_bytea_eq_plain(@extschema@.encrypted_bytea, bytea) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_eq_plain';

CREATE FUNCTION @extschema@.encrypted_bytea_ne_plain(@extschema@.encrypted_bytea, bytea) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_ne_plain';

CREATE FUNCTION @extschema@.encrypted_bytea_cmp_plain(@extschema@.encrypted_bytea, bytea) RETURNS integer
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_cmp_plain';

CREATE FUNCTION @extschema@.plain_eq_encrypted_bytea(bytea, @extschema@.encrypted_bytea) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_plain_eq_envelope';

CREATE FUNCTION @extschema@.plain_ne_encrypted_bytea(bytea, @extschema@.encrypted_bytea) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_plain_ne_envelope';

CREATE FUNCTION @extschema@.plain_cmp_encrypted_bytea(bytea, @extschema@.encrypted_bytea) RETURNS integer
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_plain_cmp_envelope';

CREATE FUNCTION @extschema@.bytea_blind_hash(bytea) RETURNS integer
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_plain_bytea_hash';

CREATE FUNCTION @extschema@.bytea_blind_hash_extended(bytea, bigint) RETURNS bigint
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_plain_bytea_hash_extended';

CREATE OPERATOR pg_catalog.= (
    LEFTARG = @extschema@.encrypted_text, RIGHTARG = @extschema@.encrypted_text,
    FUNCTION = @extschema@.encrypted_text_eq,
    COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
    RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES);

CREATE OPERATOR pg_catalog.<> (
    LEFTARG = @extschema@.encrypted_text, RIGHTARG = @extschema@.encrypted_text,
    FUNCTION = @extschema@.encrypted_text_ne,
    COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
    RESTRICT = neqsel, JOIN = neqjoinsel);

CREATE OPERATOR pg_catalog.~<~ (
    LEFTARG = @extschema@.encrypted_text, RIGHTARG = @extschema@.encrypted_text,
    FUNCTION = @extschema@.encrypted_text_lt,
    COMMUTATOR = OPERATOR(pg_catalog.~>~), NEGATOR = OPERATOR(pg_catalog.~>=~),
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);

CREATE OPERATOR pg_catalog.~<=~ (
    LEFTARG = @extschema@.encrypted_text, RIGHTARG = @extschema@.encrypted_text,
    FUNCTION = @extschema@.encrypted_text_le,
    COMMUTATOR = OPERATOR(pg_catalog.~>=~), NEGATOR = OPERATOR(pg_catalog.~>~),
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);

CREATE OPERATOR pg_catalog.~>=~ (
    LEFTARG = @extschema@.encrypted_text, RIGHTARG = @extschema@.encrypted_text,
    FUNCTION = @extschema@.encrypted_text_ge,
    COMMUTATOR = OPERATOR(pg_catalog.~<=~), NEGATOR = OPERATOR(pg_catalog.~<~),
    RESTRICT = scalargesel, JOIN = scalargejoinsel);

CREATE OPERATOR pg_catalog.~>~ (
    LEFTARG = @extschema@.encrypted_text, RIGHTARG = @extschema@.encrypted_text,
    FUNCTION = @extschema@.encrypted_text_gt,
    COMMUTATOR = OPERATOR(pg_catalog.~<~), NEGATOR = OPERATOR(pg_catalog.~<=~),
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);

CREATE OPERATOR pg_catalog.= (
    LEFTARG = @extschema@.encrypted_bytea, RIGHTARG = @extschema@.encrypted_bytea,
    FUNCTION = @extschema@.encrypted_bytea_eq,
    COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
    RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES);

CREATE OPERATOR pg_catalog.<> (
    LEFTARG = @extschema@.encrypted_bytea, RIGHTARG = @extschema@.encrypted_bytea,
    FUNCTION = @extschema@.encrypted_bytea_ne,
    COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
    RESTRICT = neqsel, JOIN = neqjoinsel);

CREATE OPERATOR pg_catalog.~<~ (
    LEFTARG = @extschema@.encrypted_bytea, RIGHTARG = @extschema@.encrypted_bytea,
    FUNCTION = @extschema@.encrypted_bytea_lt,
    COMMUTATOR = OPERATOR(pg_catalog.~>~), NEGATOR = OPERATOR(pg_catalog.~>=~),
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);

CREATE OPERATOR pg_catalog.~<=~ (
    LEFTARG = @extschema@.encrypted_bytea, RIGHTARG = @extschema@.encrypted_bytea,
    FUNCTION = @extschema@.encrypted_bytea_le,
    COMMUTATOR = OPERATOR(pg_catalog.~>=~), NEGATOR = OPERATOR(pg_catalog.~>~),
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);

CREATE OPERATOR pg_catalog.~>=~ (
    LEFTARG = @extschema@.encrypted_bytea, RIGHTARG = @extschema@.encrypted_bytea,
    FUNCTION = @extschema@.encrypted_bytea_ge,
    COMMUTATOR = OPERATOR(pg_catalog.~<=~), NEGATOR = OPERATOR(pg_catalog.~<~),
    RESTRICT = scalargesel, JOIN = scalargejoinsel);

CREATE OPERATOR pg_catalog.~>~ (
    LEFTARG = @extschema@.encrypted_bytea, RIGHTARG = @extschema@.encrypted_bytea,
    FUNCTION = @extschema@.encrypted_bytea_gt,
    COMMUTATOR = OPERATOR(pg_catalog.~<~), NEGATOR = OPERATOR(pg_catalog.~<=~),
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);

CREATE OPERATOR pg_catalog.= (
    LEFTARG = @extschema@.encrypted_text, RIGHTARG = text,
    FUNCTION = @extschema@.encrypted_text_eq_plain,
    COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
    RESTRICT = eqsel, JOIN = eqjoinsel, HASHES);

CREATE OPERATOR pg_catalog.<> (
    LEFTARG = @extschema@.encrypted_text, RIGHTARG = text,
    FUNCTION = @extschema@.encrypted_text_ne_plain,
    COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
    RESTRICT = neqsel, JOIN = neqjoinsel);

CREATE OPERATOR pg_catalog.= (
    LEFTARG = text, RIGHTARG = @extschema@.encrypted_text,
    FUNCTION = @extschema@.plain_eq_encrypted_text,
    COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
    RESTRICT = eqsel, JOIN = eqjoinsel, HASHES);

CREATE OPERATOR pg_catalog.<> (
    LEFTARG = text, RIGHTARG = @extschema@.encrypted_text,
    FUNCTION = @extschema@.plain_ne_encrypted_text,
    COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
    RESTRICT = neqsel, JOIN = neqjoinsel);

CREATE OPERATOR pg_catalog.= (
    LEFTARG = @extschema@.encrypted_bytea, RIGHTARG = bytea,
    FUNCTION = @extschema@.encrypted_bytea_eq_plain,
    COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
    RESTRICT = eqsel, JOIN = eqjoinsel, HASHES);

CREATE OPERATOR pg_catalog.<> (
    LEFTARG = @extschema@.encrypted_bytea, RIGHTARG = bytea,
    FUNCTION = @extschema@.encrypted_bytea_ne_plain,
    COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
    RESTRICT = neqsel, JOIN = neqjoinsel);

CREATE OPERATOR pg_catalog.= (
    LEFTARG = bytea, RIGHTARG = @extschema@.encrypted_bytea,
    FUNCTION = @extschema@.plain_eq_encrypted_bytea,
    COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
    RESTRICT = eqsel, JOIN = eqjoinsel, HASHES);

CREATE OPERATOR pg_catalog.<> (
    LEFTARG = bytea, RIGHTARG = @extschema@.encrypted_bytea,
    FUNCTION = @extschema@.plain_ne_encrypted_bytea,
    COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
    RESTRICT = neqsel, JOIN = neqjoinsel);

CREATE OPERATOR FAMILY @extschema@.encrypted_bytea_blind_hash_ops USING hash;
ALTER OPERATOR FAMILY @extschema@.encrypted_bytea_blind_hash_ops USING hash ADD
    OPERATOR 1 =(bytea,@extschema@.encrypted_bytea) ,
    OPERATOR 1 =(@extschema@.encrypted_bytea,bytea) ,
    FUNCTION 1 (bytea, bytea) @extschema@.bytea_blind_hash(bytea) ,
    FUNCTION 2 (@extschema@.encrypted_bytea, @extschema@.encrypted_bytea) @extschema@.encrypted_bytea_hash_extended(@extschema@.encrypted_bytea,bigint) ,
    FUNCTION 2 (bytea, bytea) @extschema@.bytea_blind_hash_extended(bytea,bigint);

CREATE OPERATOR CLASS @extschema@.encrypted_bytea_blind_hash_ops
    DEFAULT FOR TYPE @extschema@.encrypted_bytea USING hash FAMILY @extschema@.encrypted_bytea_blind_hash_ops AS
    OPERATOR 1 =(@extschema@.encrypted_bytea,@extschema@.encrypted_bytea) ,
    FUNCTION 1 (@extschema@.encrypted_bytea, @extschema@.encrypted_bytea) @extschema@.encrypted_bytea_hash(@extschema@.encrypted_bytea);

CREATE OPERATOR FAMILY @extschema@.encrypted_bytea_blind_ops USING btree;
ALTER OPERATOR FAMILY @extschema@.encrypted_bytea_blind_ops USING btree ADD
    OPERATOR 3 =(bytea,@extschema@.encrypted_bytea) ,
    OPERATOR 3 =(@extschema@.encrypted_bytea,bytea) ,
    FUNCTION 1 (@extschema@.encrypted_bytea, bytea) @extschema@.encrypted_bytea_cmp_plain(@extschema@.encrypted_bytea,bytea) ,
    FUNCTION 1 (bytea, @extschema@.encrypted_bytea) @extschema@.plain_cmp_encrypted_bytea(bytea,@extschema@.encrypted_bytea);

CREATE OPERATOR CLASS @extschema@.encrypted_bytea_blind_ops
    DEFAULT FOR TYPE @extschema@.encrypted_bytea USING btree FAMILY @extschema@.encrypted_bytea_blind_ops AS
    OPERATOR 1 ~<~(@extschema@.encrypted_bytea,@extschema@.encrypted_bytea) ,
    OPERATOR 2 ~<=~(@extschema@.encrypted_bytea,@extschema@.encrypted_bytea) ,
    OPERATOR 3 =(@extschema@.encrypted_bytea,@extschema@.encrypted_bytea) ,
    OPERATOR 4 ~>=~(@extschema@.encrypted_bytea,@extschema@.encrypted_bytea) ,
    OPERATOR 5 ~>~(@extschema@.encrypted_bytea,@extschema@.encrypted_bytea) ,
    FUNCTION 1 (@extschema@.encrypted_bytea, @extschema@.encrypted_bytea) @extschema@.encrypted_bytea_cmp(@extschema@.encrypted_bytea,@extschema@.encrypted_bytea);

CREATE OPERATOR FAMILY @extschema@.encrypted_text_blind_hash_ops USING hash;
ALTER OPERATOR FAMILY @extschema@.encrypted_text_blind_hash_ops USING hash ADD
    OPERATOR 1 =(text,@extschema@.encrypted_text) ,
    OPERATOR 1 =(@extschema@.encrypted_text,text) ,
    FUNCTION 1 (text, text) @extschema@.text_blind_hash(text) ,
    FUNCTION 2 (@extschema@.encrypted_text, @extschema@.encrypted_text) @extschema@.encrypted_text_hash_extended(@extschema@.encrypted_text,bigint) ,
    FUNCTION 2 (text, text) @extschema@.text_blind_hash_extended(text,bigint);

CREATE OPERATOR CLASS @extschema@.encrypted_text_blind_hash_ops
    DEFAULT FOR TYPE @extschema@.encrypted_text USING hash FAMILY @extschema@.encrypted_text_blind_hash_ops AS
    OPERATOR 1 =(@extschema@.encrypted_text,@extschema@.encrypted_text) ,
    FUNCTION 1 (@extschema@.encrypted_text, @extschema@.encrypted_text) @extschema@.encrypted_text_hash(@extschema@.encrypted_text);

CREATE OPERATOR FAMILY @extschema@.encrypted_text_blind_ops USING btree;
ALTER OPERATOR FAMILY @extschema@.encrypted_text_blind_ops USING btree ADD
    OPERATOR 3 =(text,@extschema@.encrypted_text) ,
    OPERATOR 3 =(@extschema@.encrypted_text,text) ,
    FUNCTION 1 (@extschema@.encrypted_text, text) @extschema@.encrypted_text_cmp_plain(@extschema@.encrypted_text,text) ,
    FUNCTION 1 (text, @extschema@.encrypted_text) @extschema@.plain_cmp_encrypted_text(text,@extschema@.encrypted_text);

CREATE OPERATOR CLASS @extschema@.encrypted_text_blind_ops
    DEFAULT FOR TYPE @extschema@.encrypted_text USING btree FAMILY @extschema@.encrypted_text_blind_ops AS
    OPERATOR 1 ~<~(@extschema@.encrypted_text,@extschema@.encrypted_text) ,
    OPERATOR 2 ~<=~(@extschema@.encrypted_text,@extschema@.encrypted_text) ,
    OPERATOR 3 =(@extschema@.encrypted_text,@extschema@.encrypted_text) ,
    OPERATOR 4 ~>=~(@extschema@.encrypted_text,@extschema@.encrypted_text) ,
    OPERATOR 5 ~>~(@extschema@.encrypted_text,@extschema@.encrypted_text) ,
    FUNCTION 1 (@extschema@.encrypted_text, @extschema@.encrypted_text) @extschema@.encrypted_text_cmp(@extschema@.encrypted_text,@extschema@.encrypted_text);

--------------------------------------------------------------------------
-- 3. Tables and sequences
--------------------------------------------------------------------------

-- Data keys, wrapped by the master key (which is never stored here).
-- Rows are created lazily on first use and by rotate_data_key().
CREATE TABLE @extschema@.data_keys (
    key_id integer NOT NULL,
    purpose text NOT NULL,
    state text NOT NULL,
    wrapped_key bytea NOT NULL,
    master_key_fingerprint bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    retired_at timestamp with time zone,
    CONSTRAINT data_keys_check CHECK (((state = 'retired'::text) = (retired_at IS NOT NULL))),
    CONSTRAINT data_keys_key_id_check CHECK ((key_id > 0)),
    CONSTRAINT data_keys_purpose_check CHECK ((purpose = ANY (ARRAY['encrypt'::text, 'blind_index'::text, 'pseudonym'::text, 'audit'::text]))),
    CONSTRAINT data_keys_state_check CHECK ((state = ANY (ARRAY['active'::text, 'retired'::text]))),
    CONSTRAINT data_keys_pkey PRIMARY KEY (key_id)
);

CREATE UNIQUE INDEX data_keys_one_active ON @extschema@.data_keys USING btree (purpose) WHERE (state = 'active'::text);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.data_keys', '');

-- Where an interrupted reencrypt_column() resumes.
CREATE TABLE @extschema@.reencrypt_progress (
    table_oid oid NOT NULL,
    column_name name NOT NULL,
    key_id integer NOT NULL,
    next_block bigint NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT reencrypt_progress_pkey PRIMARY KEY (table_oid, column_name)
);

-- Tables whose data is read and written through a masking view.
CREATE TABLE @extschema@.protected_tables (
    base regclass NOT NULL,
    view_schema name NOT NULL,
    view_name name NOT NULL,
    write_view_name name NOT NULL,
    row_key name NOT NULL,
    protected_at timestamp with time zone DEFAULT now() NOT NULL,
    saved_grants text[],
    names_masks boolean DEFAULT false NOT NULL,
    CONSTRAINT protected_tables_pkey PRIMARY KEY (base),
    CONSTRAINT protected_tables_view_schema_view_name_key UNIQUE (view_schema, view_name)
);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.protected_tables', '');

-- Protected columns: level, and the mask function (by signature, resolved
-- with to_regprocedure when used; never spliced into SQL).
CREATE TABLE @extschema@.column_rules (
    base regclass NOT NULL,
    column_name name NOT NULL,
    level @extschema@.level NOT NULL,
    mask_function text,
    mask_args text[],
    CONSTRAINT column_rules_pkey PRIMARY KEY (base, column_name),
    CONSTRAINT column_rules_base_fkey FOREIGN KEY (base) REFERENCES @extschema@.protected_tables(base) ON DELETE CASCADE
);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.column_rules', '');

-- Profiles: group roles with a clearance level.
CREATE TABLE @extschema@.profiles (
    role regrole NOT NULL,
    clearance @extschema@.level NOT NULL,
    description text,
    -- export-row limits (NULL: unlimited); see set_export_limits()
    max_rows_per_statement bigint,
    max_rows_per_day bigint,
    alert_denials_per_minute integer,
    alert_rows_per_hour bigint,
    alert_work_from time without time zone,
    alert_work_to time without time zone,
    alert_dormant_after interval,
    purposes text[],
    CONSTRAINT profiles_alert_denials_per_minute_check CHECK ((alert_denials_per_minute > 0)),
    CONSTRAINT profiles_alert_dormant_after_check CHECK ((alert_dormant_after > '00:00:00'::interval)),
    CONSTRAINT profiles_alert_rows_per_hour_check CHECK ((alert_rows_per_hour > 0)),
    CONSTRAINT profiles_max_rows_per_day_check CHECK ((max_rows_per_day >= 0)),
    CONSTRAINT profiles_max_rows_per_statement_check CHECK ((max_rows_per_statement >= 0)),
    CONSTRAINT profiles_purposes_check CHECK (((purposes IS NULL) OR ((cardinality(purposes) > 0) AND (array_position(purposes, NULL::text) IS NULL)))),
    CONSTRAINT profiles_pkey PRIMARY KEY (role)
);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.profiles', '');

-- Per-column exceptions to a profile's clearance.
CREATE TABLE @extschema@.profile_overrides (
    role regrole NOT NULL,
    base regclass NOT NULL,
    column_name name NOT NULL,
    access text NOT NULL,
    CONSTRAINT profile_overrides_access_check CHECK ((access = ANY (ARRAY['clear'::text, 'masked'::text, 'hidden'::text]))),
    CONSTRAINT profile_overrides_pkey PRIMARY KEY (role, base, column_name),
    CONSTRAINT profile_overrides_base_column_name_fkey FOREIGN KEY (base, column_name) REFERENCES @extschema@.column_rules(base, column_name) ON UPDATE CASCADE ON DELETE CASCADE,
    CONSTRAINT profile_overrides_role_fkey FOREIGN KEY (role) REFERENCES @extschema@.profiles(role) ON DELETE CASCADE
);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.profile_overrides', '');

-- Time-boxed approvals.  'unmask': the role sees the columns (all when
-- NULL) of the rows (all when NULL) in clear until valid_until.
CREATE TABLE @extschema@.grants (
    grant_id bigint NOT NULL,
    kind text NOT NULL,
    role regrole NOT NULL,
    base regclass,
    columns name[],
    row_keys text[],
    rows bigint,
    valid_from timestamp with time zone DEFAULT now() NOT NULL,
    valid_until timestamp with time zone NOT NULL,
    reason text NOT NULL,
    approver regrole NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    revoked_at timestamp with time zone,
    purpose text,
    CONSTRAINT grants_check CHECK ((valid_until > valid_from)),
    CONSTRAINT grants_check1 CHECK (((kind <> 'unmask'::text) OR (base IS NOT NULL))),
    CONSTRAINT grants_check2 CHECK (((kind <> 'export'::text) OR (rows IS NOT NULL))),
    CONSTRAINT grants_kind_check CHECK ((kind = ANY (ARRAY['unmask'::text, 'export'::text]))),
    CONSTRAINT grants_reason_check CHECK ((reason <> ''::text)),
    CONSTRAINT grants_rows_check CHECK ((rows > 0)),
    CONSTRAINT grants_pkey PRIMARY KEY (grant_id),
    CONSTRAINT grants_base_fkey FOREIGN KEY (base) REFERENCES @extschema@.protected_tables(base) ON DELETE CASCADE
);

CREATE SEQUENCE @extschema@.grants_grant_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE @extschema@.grants_grant_id_seq OWNED BY @extschema@.grants.grant_id;
ALTER TABLE ONLY @extschema@.grants ALTER COLUMN grant_id SET DEFAULT nextval('@extschema@.grants_grant_id_seq'::regclass);

CREATE INDEX grants_valid_until ON @extschema@.grants USING btree (valid_until);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.grants', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.grants_grant_id_seq', '');

-- Every event: who, when, from where, what (relation, columns, rows), how
-- (kind, operation), and the outcome -- never a value of a protected column.
CREATE TABLE @extschema@.audit_log (
    event_id bigint NOT NULL,
    event_time timestamp with time zone NOT NULL,
    kind text NOT NULL,    -- read, write, export, deny, admin (set by pii_guard only)
    session_role text NOT NULL,
    acting_role text NOT NULL,
    client_addr inet,
    application_name text,
    backend_pid integer,
    xid bigint,
    query_id bigint,
    relation text,
    operation text,
    columns_clear text[],
    columns_masked text[],
    columns_changed text[],
    rows bigint,
    row_keys text[],
    row_keys_masked text[],
    detail text,
    row_mac bytea,
    CONSTRAINT audit_log_pkey PRIMARY KEY (event_id)
);
ALTER TABLE ONLY @extschema@.audit_log ALTER COLUMN row_keys SET STATISTICS 0;
ALTER TABLE ONLY @extschema@.audit_log ALTER COLUMN row_keys_masked SET STATISTICS 0;
ALTER TABLE ONLY @extschema@.audit_log ALTER COLUMN detail SET STATISTICS 0;
ALTER TABLE ONLY @extschema@.audit_log ALTER COLUMN row_mac SET STATISTICS 0;
COMMENT ON TABLE @extschema@.audit_log IS 'pii_guard audit trail: append-only, each row MACed, sealed into audit_seal by the audit worker';

CREATE SEQUENCE @extschema@.audit_log_event_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE @extschema@.audit_log_event_id_seq OWNED BY @extschema@.audit_log.event_id;
ALTER TABLE ONLY @extschema@.audit_log ALTER COLUMN event_id SET DEFAULT nextval('@extschema@.audit_log_event_id_seq'::regclass);

-- The audit worker's periodic queries are bounded so that their cost does
-- not grow with audit_log: whether a grant's expiry is recorded is one
-- probe of this partial index (only grant_expired events are in it), and
-- the grants that ended since its last look are found by valid_until.
CREATE INDEX audit_log_grant_expired ON @extschema@.audit_log USING btree (split_part(detail, ':'::text, 1)) WHERE ((kind = 'admin'::text) AND (operation = 'grant_expired'::text));

CREATE INDEX audit_log_time ON @extschema@.audit_log USING brin (event_time);

-- The log (with its MACs) is dumped; the chain is not: a restored database
-- seals the restored rows into a chain of its own (restoring the old chain
-- would race the new database's audit worker, which seals as rows arrive).
SELECT pg_catalog.pg_extension_config_dump('@extschema@.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.audit_log_event_id_seq', '');

-- The hash chain over committed rows, in sealing order.
CREATE TABLE @extschema@.audit_seal (
    seal_seq bigint NOT NULL,
    event_id bigint NOT NULL,
    chain_hash bytea NOT NULL,
    sealed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT audit_seal_pkey PRIMARY KEY (seal_seq),
    CONSTRAINT audit_seal_event_id_key UNIQUE (event_id)
);

-- USAGE on sequences that pii_guard gave INSERT grantees of a masking view
-- (nextval() in a column default checks the inserting role), so that it is
-- taken back when no longer needed, and at unprotect_table.
CREATE TABLE @extschema@.sequence_grants (
    base regclass NOT NULL,
    seq regclass NOT NULL,
    grantee regrole NOT NULL,    -- '-' (0): PUBLIC
    CONSTRAINT sequence_grants_pkey PRIMARY KEY (base, seq, grantee),
    CONSTRAINT sequence_grants_base_fkey FOREIGN KEY (base) REFERENCES @extschema@.protected_tables(base) ON DELETE CASCADE
);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.sequence_grants', '');

-- Rows each export approval has carried, copied from shared memory by the
-- audit worker (about every 0.2 s), so that a dump, a restore into another
-- database and a replica carry it: a used-up approval stays used up.
-- Keyed by grant id and the grant's created_at, since grant ids start
-- again after DROP and CREATE EXTENSION.  Written by pii_guard only.
CREATE TABLE @extschema@.export_grant_use (
    grant_id bigint NOT NULL,
    created_at timestamp with time zone NOT NULL,
    used bigint NOT NULL,
    CONSTRAINT export_grant_use_used_check CHECK ((used >= 0)),
    CONSTRAINT export_grant_use_pkey PRIMARY KEY (grant_id)
);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.export_grant_use', '');

-- Retention.  pii_guard.audit_retention (e.g. '3 years') says how long
-- events stay in audit_log; the audit worker's archive step (hourly, or
-- archive_audit() now) moves the sealed events older than that -- a prefix
-- of the chain, checked on the way out -- to a JSON-lines file in
-- pii_guard.audit_archive_directory, then deletes them.  Each archive is
-- recorded here: which seals it holds, the chain hash it continues from
-- and ends with, and the file's SHA-256.  Like audit_seal, not dumped (a
-- restored database starts a chain of its own); append-only.
CREATE TABLE @extschema@.audit_archives (
    file text NOT NULL,
    first_seal bigint NOT NULL,
    last_seal bigint NOT NULL,
    first_event bigint NOT NULL,
    last_event bigint NOT NULL,
    events bigint NOT NULL,
    prev_chain_hash bytea,
    last_chain_hash bytea NOT NULL,
    sha256 bytea NOT NULL,
    older_than timestamp with time zone NOT NULL,
    archived_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT audit_archives_pkey PRIMARY KEY (file),
    CONSTRAINT audit_archives_first_seal_key UNIQUE (first_seal)
);
COMMENT ON TABLE @extschema@.audit_archives IS 'pii_guard audit archives: sealed events moved out of audit_log to JSON-lines files, by seal range';

-- What the last discovery found in each table's unprotected columns
-- (pii_guard.inventory shows it); each run of discover() replaces the rows
-- of the tables it read.
CREATE TABLE @extschema@.discovered_columns (
    relation regclass NOT NULL,
    column_name name NOT NULL,
    kind text NOT NULL,
    matched_by text NOT NULL,
    share numeric NOT NULL,
    sampled bigint NOT NULL,
    discovered_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT discovered_columns_pkey PRIMARY KEY (relation, column_name)
);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.discovered_columns', '');

-- Columns added to protected tables under pii_guard.protect_new_columns
-- (see _protect_new_column below).
CREATE TABLE @extschema@.new_columns (
    base regclass NOT NULL,
    column_name name NOT NULL,
    added_at timestamp with time zone DEFAULT now() NOT NULL,
    added_by name DEFAULT SESSION_USER NOT NULL,
    decision text NOT NULL,
    kind text,
    classified_at timestamp with time zone,
    classified_by name,
    CONSTRAINT new_columns_pkey PRIMARY KEY (base, column_name)
);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.new_columns', '');

-- Retention: how long the rows of a protected table are kept -- keep after
-- the date in date_column -- and what happens to them then: deleted, or
-- anonymised (every protected column set to NULL, a NOT NULL text column
-- to ''; the row stays for the statistics and foreign keys that need it).
-- CALL pii_guard.apply_retention() does it in batches,
-- committing each and recording it as an admin event with its count, so
-- that an interrupted run loses nothing and the next one goes on.
CREATE TABLE @extschema@.retention_rules (
    base regclass NOT NULL,
    date_column name NOT NULL,
    keep interval NOT NULL,
    action text NOT NULL,
    batch_rows integer DEFAULT 1000 NOT NULL,
    last_applied timestamp with time zone,
    -- or kept `keep` after the latest activity_column of the rows of
    -- activity that refer to it (its foreign key activity_key), when later
    activity regclass,
    activity_column name,
    activity_key name,
    CONSTRAINT retention_rules_action_check CHECK ((action = ANY (ARRAY['delete'::text, 'anonymize'::text]))),
    CONSTRAINT retention_rules_batch_rows_check CHECK ((batch_rows > 0)),
    CONSTRAINT retention_rules_check CHECK ((((activity IS NULL) = (activity_column IS NULL)) AND ((activity IS NULL) = (activity_key IS NULL)))),
    CONSTRAINT retention_rules_keep_check CHECK ((keep > '00:00:00'::interval)),
    CONSTRAINT retention_rules_pkey PRIMARY KEY (base),
    CONSTRAINT retention_rules_base_fkey FOREIGN KEY (base) REFERENCES @extschema@.protected_tables(base) ON DELETE CASCADE
);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.retention_rules', '');

-- Purposes and consents: the purposes personal data may be used for
-- (whether using it for one needs the customer's consent), and each
-- customer's consent to a purpose -- row key, purpose, the columns it
-- covers (NULL: all), when, how it was given, who recorded it, and when and
-- how it was withdrawn.  Written only through record_consent() and
-- withdraw_consent(), each an admin event.  What masking views do with
-- them: see "Purposes on profiles and approvals" below.
CREATE TABLE @extschema@.purposes (
    purpose text NOT NULL,
    description text NOT NULL,
    requires_consent boolean DEFAULT true NOT NULL,
    CONSTRAINT purposes_purpose_check CHECK (((purpose ~ '^[a-z][a-z0-9_]*$'::text) AND (length(purpose) < 64))),
    CONSTRAINT purposes_pkey PRIMARY KEY (purpose)
);

ALTER TABLE ONLY @extschema@.grants
    ADD CONSTRAINT grants_purpose_fkey FOREIGN KEY (purpose) REFERENCES @extschema@.purposes(purpose);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.purposes', '');

CREATE TABLE @extschema@.consents (
    consent_id bigint NOT NULL,
    base regclass NOT NULL,
    row_key text NOT NULL,
    purpose text NOT NULL,
    columns name[],
    given_at timestamp with time zone NOT NULL,
    how text NOT NULL,
    recorded_by name DEFAULT SESSION_USER NOT NULL,
    withdrawn_at timestamp with time zone,
    withdrawn_how text,
    CONSTRAINT consents_check CHECK (((withdrawn_at IS NULL) OR (withdrawn_at >= given_at))),
    CONSTRAINT consents_how_check CHECK ((how <> ''::text)),
    CONSTRAINT consents_pkey PRIMARY KEY (consent_id),
    CONSTRAINT consents_base_fkey FOREIGN KEY (base) REFERENCES @extschema@.protected_tables(base) ON DELETE CASCADE,
    CONSTRAINT consents_purpose_fkey FOREIGN KEY (purpose) REFERENCES @extschema@.purposes(purpose)
);

CREATE SEQUENCE @extschema@.consents_consent_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE @extschema@.consents_consent_id_seq OWNED BY @extschema@.consents.consent_id;
ALTER TABLE ONLY @extschema@.consents ALTER COLUMN consent_id SET DEFAULT nextval('@extschema@.consents_consent_id_seq'::regclass);

CREATE INDEX consents_subject ON @extschema@.consents USING btree (base, row_key);

-- (what a masking view's decision reads: the live consents to a purpose,
-- index-only once vacuumed)
CREATE INDEX consents_live ON @extschema@.consents USING btree (base, purpose, given_at) INCLUDE (row_key) WHERE ((withdrawn_at IS NULL) AND (columns IS NULL));

SELECT pg_catalog.pg_extension_config_dump('@extschema@.consents', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.consents_consent_id_seq', '');

-- Crypto-shredding.  A table may keep the encrypted values of each person
-- under that person's own key (a subject key): a random 256-bit key per
-- row key of the subject's table, wrapped by the master key like the data
-- keys, and kept only in pii_guard.subject_keys -- which no dump holds (it
-- is not a configuration table).  Destroying one (shred_subject, or
-- erase_subject) makes that person's values in every copy of the data --
-- dumps, masked or not, restored anywhere -- unreadable, while everyone
-- else's still decrypt wherever the subject keys are (the database itself,
-- its replicas and physical backups, or a copy of the table made with
-- \copy).  A shredded key keeps its row (when, by whom, why) without the
-- key.  Subject key ids are 2^31 and up; data key ids stay below.
CREATE SEQUENCE @extschema@.subject_key_ids
    START WITH 2147483648
    INCREMENT BY 1
    MINVALUE 2147483648
    MAXVALUE 4294967295
    CACHE 1;
-- (a random start, as for data keys: ids of different databases rarely meet)
SELECT pg_catalog.setval('@extschema@.subject_key_ids',
                         2147483648 + pg_catalog.floor(pg_catalog.random() * 1073741824)::bigint);

CREATE TABLE @extschema@.subject_keys (
    key_id bigint NOT NULL,
    subject_base regclass NOT NULL,
    row_key text NOT NULL,
    wrapped_key bytea,
    master_key_fingerprint bytea,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    shredded_at timestamp with time zone,
    shredded_by name,
    reason text,
    CONSTRAINT subject_keys_check CHECK (((shredded_at IS NULL) = ((wrapped_key IS NOT NULL) AND (master_key_fingerprint IS NOT NULL)))),
    CONSTRAINT subject_keys_key_id_check CHECK (((key_id >= '2147483648'::bigint) AND (key_id <= '4294967295'::bigint))),
    CONSTRAINT subject_keys_pkey PRIMARY KEY (key_id)
);

CREATE UNIQUE INDEX subject_keys_live ON @extschema@.subject_keys USING btree (subject_base, row_key) WHERE (shredded_at IS NULL);

-- Which tables keep values under subject keys, and whose: the subject is
-- the row of subject_base whose row key is the value of subject_column
-- (the table's own row key, or a foreign key to the subject's table).
CREATE TABLE @extschema@.shredding (
    base regclass NOT NULL,
    subject_column name NOT NULL,
    subject_base regclass NOT NULL,
    CONSTRAINT shredding_pkey PRIMARY KEY (base),
    CONSTRAINT shredding_base_fkey FOREIGN KEY (base) REFERENCES @extschema@.protected_tables(base) ON DELETE CASCADE,
    CONSTRAINT shredding_subject_base_fkey FOREIGN KEY (subject_base) REFERENCES @extschema@.protected_tables(base) ON DELETE CASCADE
);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.shredding', '');

--------------------------------------------------------------------------
-- 4. Internal functions
--------------------------------------------------------------------------

-- Not for calling: the library, the views and the public functions call
-- them (the privileges section says who may).

-- Helpers
-- =======

CREATE FUNCTION @extschema@._maintenance(on_off boolean) RETURNS void
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_maintenance';

CREATE FUNCTION @extschema@._in_maintenance() RETURNS boolean
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_in_maintenance';

-- The protected base table named by tbl (the base table itself or its
-- masking view), or NULL.
CREATE FUNCTION @extschema@._base_of(tbl regclass) RETURNS regclass
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT p.base FROM @extschema@.protected_tables p
     WHERE p.base = tbl
        OR (p.view_schema, p.view_name) =
           (SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = tbl)
$$;

-- GRANT statements that give on target what rel's ACL gives (table and
-- column privileges), except to rel's owner and pii_guard_owner.
CREATE FUNCTION @extschema@._grants_of(rel regclass, target text) RETURNS text[]
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    WITH owner AS (SELECT relowner FROM pg_class WHERE oid = rel),
    tab AS (
        SELECT a.privilege_type, a.grantee, a.is_grantable, NULL::name AS col
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = rel
        UNION ALL
        SELECT a.privilege_type, a.grantee, a.is_grantable, att.attname
          FROM pg_attribute att, aclexplode(att.attacl) a
         WHERE att.attrelid = rel AND att.attnum > 0 AND NOT att.attisdropped
    )
    SELECT coalesce(array_agg(format('GRANT %s%s ON %s TO %s%s', t.privilege_type,
                                     CASE WHEN t.col IS NOT NULL THEN format(' (%I)', t.col) ELSE '' END,
                                     target,
                                     CASE WHEN t.grantee = 0 THEN 'PUBLIC'
                                          ELSE quote_ident(pg_get_userbyid(t.grantee)) END,
                                     CASE WHEN t.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
                              ORDER BY t.col NULLS FIRST, t.grantee, t.privilege_type), '{}')
      FROM tab t, owner o
     WHERE t.grantee <> o.relowner
       AND t.grantee <> (SELECT oid FROM pg_roles WHERE rolname = 'pii_guard_owner')
$$;

-- Drop the views of a protected table, keeping the masking view's grants
-- for _attach_views.  Needed only when a column the views show goes or
-- changes its type (a view cannot lose or retype a column); refused, with
-- the dependent objects named, while other views depend on them.
CREATE FUNCTION @extschema@._detach_views(base oid, rename_from text, rename_to text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    p    @extschema@.protected_tables;
    v    regclass;
    w    regclass;
    deps text;
BEGIN
    SELECT * INTO p FROM @extschema@.protected_tables t WHERE t.base = _detach_views.base;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v := to_regclass(format('%I.%I', p.view_schema, p.view_name));
    w := to_regclass(format('%I.%I', (SELECT n.nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
                                        WHERE c.oid = p.base), p.write_view_name));
    deps := @extschema@._dependents(ARRAY[v, w]);
    IF deps IS NOT NULL THEN
        RAISE EXCEPTION 'cannot rebuild the masking view %.%: other objects depend on it',
                        quote_ident(p.view_schema), quote_ident(p.view_name)
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = 'This change removes a column from the masking view or changes its type, which only dropping and recreating the view can do.',
                  HINT = format('Drop %s first (a temporary view goes when its session ends), then make the change and create what you dropped again.', deps);
    END IF;
    PERFORM @extschema@._maintenance(true);
    IF v IS NOT NULL THEN
        UPDATE @extschema@.protected_tables t
           SET saved_grants = @extschema@._grants_of(v, format('%I.%I', p.view_schema, p.view_name))
         WHERE @extschema@._relname(t.base) = @extschema@._relname_here(p.base);
        EXECUTE format('DROP VIEW %s', v);
    END IF;
    IF w IS NOT NULL THEN
        EXECUTE format('DROP VIEW %s', w);
    END IF;
    PERFORM @extschema@._maintenance(false);
END
$$;

-- (Re)build the masking view and the write view of a protected table, with
-- column defaults, the write trigger and grants; after a column rename,
-- carry its rules along.  The views are replaced in place (CREATE OR
-- REPLACE VIEW), so views of other roles built on them survive: a new
-- column is appended, a protected or unprotected column keeps its type (a
-- typmod is kept by a cast) and a renamed one is renamed in the views
-- first.  Only a column that went or changed its type makes them dropped
-- and created again (_detach_views).
--
-- _attach_views() was one 215-line body, re-declared whole by any change to
-- any of its steps.  It is now the sequence of its steps, one function
-- each; a later version replaces only the step it changes.  The steps run
-- with the rights of _attach_views() (they are not SECURITY DEFINER, and
-- no one else may call them).
CREATE FUNCTION @extschema@._attach_views(base oid, rename_from text, rename_to text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "citus.enable_ddl_propagation" TO 'off'
    AS $$
DECLARE
    q record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.protected_tables t WHERE t.base = _attach_views.base) THEN
        RETURN;
    END IF;
    PERFORM @extschema@._maintenance(true);
    IF rename_from IS NOT NULL THEN
        PERFORM @extschema@._views_follow_rename(base, rename_from, rename_to);
    END IF;
    PERFORM @extschema@._reconcile_rules(base);
    SELECT * INTO q FROM @extschema@._view_queries(base);
    PERFORM @extschema@._put_views(base, q.view_sql, q.write_sql);
    PERFORM @extschema@._view_write_path(base, q.keep_out);
    PERFORM @extschema@._restore_view_grants(base);
    PERFORM @extschema@._maintenance(false);
END
$$;

-- Mirror the masking view's write privileges onto the write view, give
-- INSERT grantees USAGE on the sequences behind the defaults, and keep a
-- copy of the masking view's grants in saved_grants, so that the view can
-- be rebuilt with them whoever dropped it.
CREATE FUNCTION @extschema@._sync_write_grants(base oid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    names record;
BEGIN
    SELECT * INTO names FROM @extschema@._view_names(base);
    IF NOT FOUND OR to_regclass(names.view_q) IS NULL OR to_regclass(names.write_q) IS NULL THEN
        RETURN;
    END IF;
    UPDATE @extschema@.protected_tables t
       SET saved_grants = @extschema@._grants_of(to_regclass(names.view_q), names.view_q)
     WHERE @extschema@._relname(t.base) = @extschema@._relname_here(_sync_write_grants.base::regclass);
    PERFORM @extschema@._mirror_write_grants(base);
    PERFORM @extschema@._sync_sequence_usage(base);
END
$$;

CREATE FUNCTION @extschema@._audit_admin(action text, detail text) RETURNS bigint
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_audit_admin';

CREATE FUNCTION @extschema@._audit_deny(operation text, detail text) RETURNS void
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_audit_deny';

CREATE FUNCTION @extschema@._audit_row_ok(@extschema@.audit_log) RETURNS boolean
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_audit_row_ok';

CREATE FUNCTION @extschema@._audit_chain_next(prev bytea, event_id bigint, row_mac bytea) RETURNS bytea
    LANGUAGE c IMMUTABLE
    AS 'MODULE_PATHNAME', 'pii_guard_audit_chain_next';

-- Why a function may not be a mask function (NULL: it may).  reveal()
-- hands a mask function the plaintext of every value it masks, for every
-- governed role; see policy_mask_problem() in policy.c.
CREATE FUNCTION @extschema@._mask_problem(fn regprocedure) RETURNS text
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_mask_problem';

-- The objects (other than pii_guard's own) that depend on the relations
-- rels, as "view s.v, ..." for a message, or NULL.  A view on a masking
-- view pins it: the masking view can then be replaced (CREATE OR REPLACE
-- VIEW) but not dropped.
CREATE FUNCTION @extschema@._dependents(rels regclass[]) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT string_agg(DISTINCT CASE WHEN d.classid = 'pg_rewrite'::regclass
                                    THEN (SELECT CASE c.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END
                                                 || c.oid::regclass::text
                                            FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class
                                           WHERE w.oid = d.objid)
                                    ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END, ', ')
      FROM pg_depend d
     WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY (rels) AND d.deptype = 'n'
       -- a view's own rule refers to the view itself
       AND NOT (d.classid = 'pg_rewrite'::regclass
                AND (SELECT w.ev_class FROM pg_rewrite w WHERE w.oid = d.objid) = ANY (rels))
$$;

-- The (sequence, role) pairs that need USAGE: every sequence behind a
-- column of a protected table, for every role that may insert into its
-- masking view.
CREATE FUNCTION @extschema@._sequence_usage_wanted(base oid) RETURNS TABLE(seq regclass, grantee oid)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT DISTINCT s.seq::regclass, a.grantee
      FROM @extschema@.protected_tables p,
           LATERAL (SELECT pg_get_serial_sequence(p.base::text, att.attname) AS seq
                      FROM pg_attribute att
                     WHERE att.attrelid = p.base AND att.attnum > 0 AND NOT att.attisdropped) s,
           LATERAL (SELECT c.relacl AS acl FROM pg_class c
                     WHERE c.oid = to_regclass(format('%I.%I', p.view_schema, p.view_name))
                    UNION ALL
                    SELECT att.attacl FROM pg_attribute att
                     WHERE att.attrelid = to_regclass(format('%I.%I', p.view_schema, p.view_name))
                       AND att.attnum > 0) v,
           aclexplode(v.acl) a
     WHERE p.base = _sequence_usage_wanted.base AND s.seq IS NOT NULL AND a.privilege_type = 'INSERT'
$$;

-- The probe a lookup through a masking view compares the stored column
-- with (lookup.c): an envelope of the value the role searches for.  It
-- answers only at the call sites pii_guard builds, for roles that see the
-- column in clear; anyone else calling it is refused (trusted roles
-- excepted).  STABLE, so that it is evaluated at run time, once per index
-- scan, not folded while planning; PARALLEL RESTRICTED, since its call
-- site's mark does not travel to parallel workers.
CREATE FUNCTION @extschema@._blind_probe(text) RETURNS @extschema@.encrypted_text
    LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_blind_probe_text';
COMMENT ON FUNCTION @extschema@._blind_probe(text) IS 'internal: the probe of a lookup through a masking view; answers only where pii_guard put it';

CREATE FUNCTION @extschema@._blind_probe(bytea) RETURNS @extschema@.encrypted_bytea
    LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_blind_probe_bytea';
COMMENT ON FUNCTION @extschema@._blind_probe(bytea) IS 'internal: the probe of a lookup through a masking view; answers only where pii_guard put it';

-- `WHERE phone IN ('…', '…')` and `WHERE phone = ANY ($1)` (a text[] or
-- varchar[] parameter, as drivers send lists) through a masking view, by
-- a role that sees the column in clear on every row, are compared on the
-- stored column as `phone = ANY (_blind_probe(array))` (lookup.c), which
-- the column's index answers.  These are the array forms of the probes
-- above: an array of the probes of the array's elements, NULL elements
-- staying NULL.  They answer exactly where and to whom the scalar probes
-- do (the same C function serves both), for the same reasons STABLE and
-- PARALLEL RESTRICTED.
CREATE FUNCTION @extschema@._blind_probe(text[]) RETURNS @extschema@.encrypted_text[]
    LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_blind_probe_text_array';
COMMENT ON FUNCTION @extschema@._blind_probe(text[]) IS 'internal: the probes of a lookup of a list through a masking view; answers only where pii_guard put it';

CREATE FUNCTION @extschema@._blind_probe(bytea[]) RETURNS @extschema@.encrypted_bytea[]
    LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_blind_probe_bytea_array';
COMMENT ON FUNCTION @extschema@._blind_probe(bytea[]) IS 'internal: the probes of a lookup of a list through a masking view; answers only where pii_guard put it';

-- A lookup through a masking view by a role whose row-level security
-- policy hides rows compares the stored column only after the policy
-- (lookup.c): the comparison is wrapped in this identity, which is not
-- LEAKPROOF, so that the planner cannot evaluate it -- through an index --
-- on rows the policy hides (EXPLAIN ANALYZE would count them).
CREATE FUNCTION @extschema@._after_policies(boolean) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT COST 0.01 PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_after_policies';
COMMENT ON FUNCTION @extschema@._after_policies(boolean) IS 'internal: keeps a lookup comparison behind row-level security';

-- A row counts against a role's export limits when it delivers protected
-- values somewhere outside the protected table (the library finds those
-- places in the plan: exports.c), not when the executor merely evaluates
-- them -- a lookup's filter, an UPDATE of one's own rows, rows an OFFSET
-- skips used to count.  Where values go into an aggregate or a function
-- that could pass them on, the plan wraps them in one of these: they count
-- the row (once per row and statement when its table and key are known)
-- and return the value unchanged.  Counting only ever refuses (54P01);
-- calling them does nothing but count against the caller's own limits.
CREATE FUNCTION @extschema@._exported(value anyelement) RETURNS anyelement
    LANGUAGE c PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_exported';
COMMENT ON FUNCTION @extschema@._exported(value anyelement) IS 'internal: counts a protected value leaving into an aggregate or a function';

CREATE FUNCTION @extschema@._exported(value anyelement, base regclass, row_key "any") RETURNS anyelement
    LANGUAGE c PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_exported_row';
COMMENT ON FUNCTION @extschema@._exported(value anyelement, base regclass, row_key "any") IS 'internal: counts a protected row leaving into an aggregate or a function';

-- On Citus, a query on a masking view of a distributed table gets its rows
-- from the workers, where reveal() runs; the coordinator's plan hands them
-- out through this identity, around the columns that carry protected
-- values, so that export limits count them where they leave (exports.c).
-- Only pii_guard's own calls of it count; calling it does nothing.
CREATE FUNCTION @extschema@._protected(value anyelement, base regclass) RETURNS anyelement
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_protected';
COMMENT ON FUNCTION @extschema@._protected(value anyelement, base regclass) IS 'internal: marks a protected value a Citus query hands out';

-- A table and all its partitions and inheritance children, at any depth.
CREATE FUNCTION @extschema@._descendants(tbl regclass) RETURNS TABLE(rel regclass)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    WITH RECURSIVE d(rel) AS (
        SELECT tbl::oid
        UNION
        SELECT i.inhrelid FROM pg_inherits i JOIN d ON i.inhparent = d.rel
    )
    SELECT rel::regclass FROM d
$$;

-- protect_table() in steps (they run with its rights; no one else may call
-- them).  First: tbl may be protected (an ordinary or partitioned table,
-- not a partition or child, not in a system schema), and its row key (the
-- one named, else its one-column primary key) is a NOT NULL column with a
-- unique index of its own.
-- The qualified name of a relation, and the name of a role (NULL for
-- PUBLIC, 0), as every node spells them.  On Citus the policy tables are
-- reference tables, written on the coordinator and replayed on every
-- node, where the same relation and role have other OIDs: a row to update
-- or delete is found by these names (evaluated where the row is), never
-- by an OID.  IMMUTABLE, which they are not (a rename changes them), so
-- that Citus lets them be called on a column in an UPDATE or DELETE: they
-- are only ever called there, and on values of the statement itself.
CREATE FUNCTION @extschema@._relname(rel regclass) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT format('%I.%I', n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel
$$;

CREATE FUNCTION @extschema@._rolname(r regrole) RETURNS name
    LANGUAGE sql IMMUTABLE STRICT
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT a.rolname FROM pg_roles a WHERE a.oid = r
$$;

-- ... and the same, evaluated where the statement is (STABLE: Citus
-- evaluates it on the coordinator and sends the name), for the values a
-- row is compared with.
CREATE FUNCTION @extschema@._relname_here(rel regclass) RETURNS text
    LANGUAGE sql STABLE STRICT
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT @extschema@._relname(rel)
$$;

CREATE FUNCTION @extschema@._rolname_here(r regrole) RETURNS name
    LANGUAGE sql STABLE STRICT
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT @extschema@._rolname(r)
$$;

-- Is tbl a Citus table (distributed, reference or local)?
CREATE FUNCTION @extschema@._citus_table(tbl regclass) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    found boolean := false;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1)'
           INTO found USING tbl;
    END IF;
    RETURN found;
END
$$;

CREATE FUNCTION @extschema@._protectable(tbl regclass, row_key name) RETURNS name
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    rel record;
    key name := row_key;
    citus "char";
    dist_col name;
BEGIN
    SELECT c.relkind, n.nspname INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', tbl
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'pii_guard protects ordinary and partitioned tables; views and foreign tables are not supported.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = tbl) THEN
        RAISE EXCEPTION '% is a partition or inheritance child', tbl
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Protect the table it belongs to: its partitions and children are protected with it.';
    END IF;
    IF rel.nspname IN ('pg_catalog', 'information_schema', '@extschema@') OR rel.nspname LIKE 'pg\_%' THEN
        RAISE EXCEPTION 'cannot protect % in schema %', tbl, rel.nspname
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        EXECUTE 'SELECT partmethod, pg_catalog.column_to_column_name(logicalrelid, partkey) '
                '  FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1'
           INTO citus, dist_col USING tbl;
        IF citus = 'n' THEN
            RAISE EXCEPTION '% is a Citus reference or local table', tbl
                USING ERRCODE = 'feature_not_supported',
                      DETAIL = 'The coordinator reads such a table from its own placement, inside the reading role''s session, where pii_guard cannot tell Citus''s query on it from the role''s own; masking views are supported on distributed tables.',
                      HINT = 'Distribute the table (create_distributed_table), or keep it on the coordinator (undistribute_table) and protect it there.';
        ELSIF citus IS NULL THEN
            IF EXISTS (SELECT 1 FROM pg_dist_partition d
                        WHERE d.logicalrelid = '@extschema@.protected_tables'::regclass) THEN
                RAISE EXCEPTION '% is not distributed, and pii_guard''s policy is shared across this Citus cluster', tbl
                    USING ERRCODE = 'feature_not_supported',
                          DETAIL = 'Every node keeps the policy, naming the tables it protects; the workers have no table of that name.',
                          HINT = 'Distribute the table (create_distributed_table), then protect it.';
            END IF;
        ELSE
            IF NOT EXISTS (SELECT 1 FROM pg_dist_partition d
                            WHERE d.logicalrelid = '@extschema@.protected_tables'::regclass) THEN
                RAISE EXCEPTION 'pii_guard''s policy is not shared across this Citus cluster yet'
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          DETAIL = format('%s is a distributed table: its shards are read on the workers, which decide by the policy of the coordinator.', tbl),
                          HINT = 'Run SELECT * FROM pii_guard.citus_setup() on the coordinator first, as a superuser.';
            END IF;
        END IF;
    END IF;
    IF key IS NULL THEN
        SELECT a.attname INTO key
          FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = tbl AND i.indisprimary AND i.indnatts = 1;
    END IF;
    -- (On a distributed table Citus enforces uniqueness only with the
    -- distribution column: a unique index on both columns will do, and
    -- its own values, a sequence's, keep the key unique on its own.)
    IF key IS NULL AND dist_col IS NOT NULL THEN
        SELECT a.attname INTO key
          FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = tbl AND i.indisprimary AND i.indnatts = 2 AND a.attname <> dist_col;
    END IF;
    IF key IS NULL OR NOT EXISTS (
            SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = tbl AND i.indisunique AND i.indnatts = 1 AND a.attname = key
               AND a.attnotnull AND i.indpred IS NULL
            UNION ALL
            SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE dist_col IS NOT NULL AND i.indrelid = tbl AND i.indisunique AND i.indnatts = 2
               AND i.indpred IS NULL AND a.attname = key AND a.attnotnull
               AND (SELECT array_agg(b.attname ORDER BY b.attname) FROM pg_attribute b
                     WHERE b.attrelid = tbl AND b.attnum = ANY (i.indkey))
                   = (SELECT array_agg(n ORDER BY n) FROM unnest(ARRAY[key, dist_col]) n)) THEN
        RAISE EXCEPTION 'table % needs a row key', tbl
            USING ERRCODE = 'invalid_table_definition',
                  DETAIL = 'The row key identifies a row for writes through the masking view, for audit and for row-specific grants.',
                  HINT = 'Give the table a single-column primary key, or name a NOT NULL column with a unique index as row_key.';
    END IF;
    RETURN key;
END
$$;

-- The companion schema of schema nsp (nsp_pii), where protected base tables
-- live: created (USAGE for all, nothing else) or found -- a schema of that
-- name that pii_guard did not make is refused -- and free of relname.
CREATE FUNCTION @extschema@._companion_schema(nsp name, relname name) RETURNS name
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    comp name := nsp || '_pii';
BEGIN
    IF to_regnamespace(quote_ident(comp)) IS NULL THEN
        EXECUTE format('CREATE SCHEMA %I', comp);
        EXECUTE format('COMMENT ON SCHEMA %I IS %L', comp,
                       format('pii_guard companion schema of %I: protected base tables', nsp));
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', comp);
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO PUBLIC', comp);
    ELSIF obj_description(to_regnamespace(quote_ident(comp)), 'pg_namespace') IS DISTINCT FROM
          format('pii_guard companion schema of %I: protected base tables', nsp) THEN
        RAISE EXCEPTION 'schema "%" exists and is not a pii_guard companion schema', comp
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'Rename that schema, then protect the table again.';
    END IF;
    IF to_regclass(format('%I.%I', comp, relname)) IS NOT NULL
       OR to_regclass(format('%I.%I', comp, left(relname, 52) || '__pii_write')) IS NOT NULL THEN
        RAISE EXCEPTION 'relation "%" already exists in schema "%"', relname, comp
            USING ERRCODE = 'duplicate_table';
    END IF;
    RETURN comp;
END
$$;

-- The table moved to its companion schema with every privilege taken off it
-- and its partitions (or inheritance children) -- governed roles read and
-- write through the views only -- and given to pii_guard_owner, the views'
-- owner, with the sequences behind its defaults.
CREATE FUNCTION @extschema@._seclude(tbl regclass, comp name) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT c.oid::regclass AS rel, a.grantee
               FROM pg_class c, aclexplode(c.relacl) a
              WHERE c.oid IN (SELECT d.rel FROM @extschema@._descendants(tbl) d)
                AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', r.rel, @extschema@._grantee(r.grantee));
    END LOOP;
    FOR r IN SELECT att.attrelid::regclass AS rel, att.attname, a.grantee
               FROM pg_attribute att, aclexplode(att.attacl) a
              WHERE att.attrelid IN (SELECT d.rel FROM @extschema@._descendants(tbl) d)
                AND att.attnum > 0
    LOOP
        EXECUTE format('REVOKE ALL (%I) ON %s FROM %s', r.attname, r.rel, @extschema@._grantee(r.grantee));
    END LOOP;
    EXECUTE format('ALTER TABLE %s SET SCHEMA %I', tbl, comp);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO pii_guard_owner', tbl);
    FOR r IN SELECT pg_get_serial_sequence(tbl::text, att.attname) AS seq
               FROM pg_attribute att WHERE att.attrelid = tbl AND att.attnum > 0 AND NOT att.attisdropped
    LOOP
        IF r.seq IS NOT NULL THEN
            EXECUTE format('GRANT USAGE ON SEQUENCE %s TO pii_guard_owner', r.seq);
        END IF;
    END LOOP;
END
$$;

-- An INSERT, UPDATE or DELETE on a masking view is rewritten, when it is
-- analysed, into the same statement on the base table (src/write.c), so
-- that it runs as one statement instead of one INSTEAD OF trigger call
-- and one statement per row; the trigger stays for what is not rewritten
-- (rules, COPY FROM).  These two functions are what the rewritten
-- statement writes with.  They work only where the rewrite put them (its
-- calls are marked; any other call is refused with 42501 and audited,
-- superusers excepted): an envelope of a plaintext of one's choosing, or
-- a comparison with a stored value, is what the rest of pii_guard keeps
-- from governed roles.
--
-- The envelope of a value written to an encrypted column.
CREATE FUNCTION @extschema@._write_seal(value text, base regclass, col name) RETURNS @extschema@.encrypted_text
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_write_seal';
COMMENT ON FUNCTION @extschema@._write_seal(value text, base regclass, col name) IS 'internal: seals a value written through a masking view';

CREATE FUNCTION @extschema@._write_seal(value bytea, base regclass, col name) RETURNS @extschema@.encrypted_bytea
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_write_seal';
COMMENT ON FUNCTION @extschema@._write_seal(value bytea, base regclass, col name) IS 'internal: seals a value written through a masking view';

-- What an UPDATE stores in a column: the stored value when the new one is
-- what the role was shown for the row (masks are never written back, and
-- a value sent back unchanged needs no privilege on its column), else the
-- new value (sealed for an encrypted column), if the role may update the
-- column (a governed role never changes a row key).
CREATE FUNCTION @extschema@._write_set(stored anyelement, base regclass, col name, row_key "any", value "any") RETURNS anyelement
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_write_set';
COMMENT ON FUNCTION @extschema@._write_set(stored anyelement, base regclass, col name, row_key "any", value "any") IS 'internal: the value an UPDATE through a masking view stores';

-- Citus: writes through the masking view of a distributed table.  Citus
-- plans an UPDATE, DELETE or INSERT on a distributed table only when the
-- functions of its SET list, WHERE and RETURNING are IMMUTABLE; it sends
-- them to the workers as written, and evaluates there what is not.  The
-- rewrite of such a write calls these instead of reveal() and
-- _write_set(): the same code, declared IMMUTABLE, and answering, like
-- them, only at call sites marked as proved -- on a worker, by the
-- admission of the coordinator's task (a call anywhere else, including
-- one the planner would fold, refuses).  _write_set_shard() takes what the
-- role may do with the view's column as an argument, from _write_may(),
-- which the coordinator evaluates before sending the statement: the view
-- lives on the coordinator alone.
CREATE FUNCTION @extschema@._reveal_shard(value anyelement, base regclass, col name, row_key "any") RETURNS anyelement
    LANGUAGE c IMMUTABLE STRICT COST 10 PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_reveal';
COMMENT ON FUNCTION @extschema@._reveal_shard(anyelement, regclass, name, "any") IS 'internal: reveal() in a write through a masking view of a distributed table';

CREATE FUNCTION @extschema@._reveal_shard(value @extschema@.encrypted_text, base regclass, col name, row_key "any") RETURNS text
    LANGUAGE c IMMUTABLE STRICT COST 10 PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_reveal_text';
COMMENT ON FUNCTION @extschema@._reveal_shard(@extschema@.encrypted_text, regclass, name, "any") IS 'internal: reveal() in a write through a masking view of a distributed table';

CREATE FUNCTION @extschema@._reveal_shard(value @extschema@.encrypted_bytea, base regclass, col name, row_key "any") RETURNS bytea
    LANGUAGE c IMMUTABLE STRICT COST 10 PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_reveal_bytea';
COMMENT ON FUNCTION @extschema@._reveal_shard(@extschema@.encrypted_bytea, regclass, name, "any") IS 'internal: reveal() in a write through a masking view of a distributed table';

CREATE FUNCTION @extschema@._write_set_shard(stored anyelement, base regclass, col name, row_key "any", value "any", may integer) RETURNS anyelement
    LANGUAGE c IMMUTABLE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'pii_guard_write_set';
COMMENT ON FUNCTION @extschema@._write_set_shard(anyelement, regclass, name, "any", "any", integer) IS 'internal: _write_set() in a write through a masking view of a distributed table';

-- What the current role may do with column col of masking view view: 1 if
-- it may read it, plus 2 if it may update it.
CREATE FUNCTION @extschema@._write_may(view regclass, col name) RETURNS integer
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_write_may';
COMMENT ON FUNCTION @extschema@._write_may(regclass, name) IS 'internal: the current role''s privileges on a masking view''s column, for a write on a distributed table';

-- INSERT ... ON CONFLICT through a masking view is rewritten too: a
-- conflict tells whether a row with that key or value exists (also among
-- rows row-level security hides), so each is a probe, like a unique
-- violation -- audited as a deny event and counted against the role's
-- export limits.  DO UPDATE counts them with this: its WHERE becomes
-- _write_conflict(base, the WHERE written), which answers what the WHERE
-- does -- a call the planner cannot fold away, however constant the WHERE
-- (WHERE false would otherwise make a conflict a free probe); DO NOTHING
-- from the statement's row count.
CREATE FUNCTION @extschema@._write_conflict(base regclass, pass boolean) RETURNS boolean
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_write_conflict';
COMMENT ON FUNCTION @extschema@._write_conflict(base regclass, pass boolean) IS 'internal: counts a conflict of an INSERT ... ON CONFLICT through a masking view as a probe';

-- The alerts due for the events first_id .. last_id just written: one row
-- per (role, rule) crossed, unless the same alert was raised in its window.
CREATE FUNCTION @extschema@._alerts_due(first_id bigint, last_id bigint) RETURNS TABLE(session_role text, acting_role text, rule text, detail text)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
WITH new AS (
    SELECT l.* FROM @extschema@.audit_log l
     WHERE l.event_id BETWEEN first_id AND last_id AND l.kind IN ('read', 'export', 'deny')),
roles AS (
    SELECT DISTINCT ON (n.acting_role) n.acting_role, n.session_role, p.*
      FROM new n
      JOIN pg_catalog.pg_roles r ON r.rolname = n.acting_role
      JOIN @extschema@.profiles p ON pg_catalog.pg_has_role(r.oid, p.role, 'MEMBER')
     ORDER BY n.acting_role, p.role),
due AS (
    SELECT r.session_role, r.acting_role, 'denials_per_minute' AS rule, interval '1 minute' AS win,
           format('%s refusals in the last minute (threshold %s)', d.n, r.alert_denials_per_minute) AS detail
      FROM roles r,
           LATERAL (SELECT coalesce(sum(coalesce(pg_catalog.substring(l.detail, '; ([0-9]+) times$')::bigint, 1)), 0) AS n
                      FROM @extschema@.audit_log l
                     WHERE l.kind = 'deny' AND l.acting_role = r.acting_role
                       AND l.event_time > pg_catalog.now() - interval '1 minute') d
     WHERE r.alert_denials_per_minute IS NOT NULL AND d.n > r.alert_denials_per_minute
    UNION ALL
    SELECT r.session_role, r.acting_role, 'rows_per_hour', interval '1 hour',
           format('%s protected rows read or exported in the last hour (threshold %s)', h.n, r.alert_rows_per_hour)
      FROM roles r,
           LATERAL (SELECT coalesce(sum(l.rows), 0) AS n FROM @extschema@.audit_log l
                     WHERE l.kind IN ('read', 'export') AND l.acting_role = r.acting_role
                       AND l.event_time > pg_catalog.now() - interval '1 hour') h
     WHERE r.alert_rows_per_hour IS NOT NULL AND h.n > r.alert_rows_per_hour
    UNION ALL
    SELECT r.session_role, r.acting_role, 'outside_working_hours', interval '1 hour',
           format('%s read or exported protected rows at %s, outside working hours %s-%s', r.acting_role,
                  (SELECT pg_catalog.max(n.event_time)::time(0) FROM new n
                    WHERE n.acting_role = r.acting_role AND n.kind IN ('read', 'export')),
                  r.alert_work_from, r.alert_work_to)
      FROM roles r
     WHERE r.alert_work_from IS NOT NULL
       AND EXISTS (SELECT 1 FROM new n
                    WHERE n.acting_role = r.acting_role AND n.kind IN ('read', 'export')
                      AND CASE WHEN r.alert_work_from <= r.alert_work_to
                               THEN NOT (n.event_time::time >= r.alert_work_from AND n.event_time::time < r.alert_work_to)
                               ELSE n.event_time::time >= r.alert_work_to AND n.event_time::time < r.alert_work_from END)
    UNION ALL
    SELECT r.session_role, r.acting_role, 'dormant_role_reads', interval '1 day',
           format('%s read protected rows again after %s of not reading any (threshold %s)', r.acting_role,
                  pg_catalog.date_trunc('second', f.first_new - prev.last_read), r.alert_dormant_after)
      FROM roles r,
           LATERAL (SELECT pg_catalog.min(n.event_time) AS first_new FROM new n
                     WHERE n.acting_role = r.acting_role AND n.kind IN ('read', 'export')) f,
           LATERAL (SELECT pg_catalog.max(l.event_time) AS last_read FROM @extschema@.audit_log l
                     WHERE l.kind IN ('read', 'export') AND l.acting_role = r.acting_role
                       AND l.event_id < first_id) prev
     WHERE r.alert_dormant_after IS NOT NULL AND f.first_new IS NOT NULL
       AND prev.last_read IS NOT NULL AND f.first_new - prev.last_read > r.alert_dormant_after)
SELECT d.session_role, d.acting_role, d.rule, d.detail FROM due d
 WHERE NOT EXISTS (SELECT 1 FROM @extschema@.audit_log a
                    WHERE a.kind = 'alert' AND a.acting_role = d.acting_role AND a.operation = d.rule
                      AND a.event_time > pg_catalog.now() - d.win)
$$;

-- One archive file checked (verify_audit_archive() below says what is
-- checked); anchor_seq, anchor_hash: the anchor's, or NULL.
CREATE FUNCTION @extschema@._verify_archive_file(r @extschema@.audit_archives, anchor_seq bigint, anchor_hash bytea) RETURNS TABLE(file text, event_id bigint, seal_seq bigint, problem text)
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    dir       text := current_setting('pii_guard.audit_archive_directory');
    body      bytea;
    ln        text;
    j         jsonb;
    a         @extschema@.audit_log;
    prev      bytea;
    want      bigint;
    n         bigint;
    lineno    bigint;
    ended     boolean;
BEGIN
    BEGIN
        body := pg_read_binary_file(CASE WHEN dir = '' THEN 'pii_guard_archive' ELSE dir END || '/' || r.file);
    EXCEPTION WHEN undefined_file THEN
        RETURN QUERY SELECT r.file, NULL::bigint, NULL::bigint, 'the archive file is missing';
        RETURN;
    END;
    IF sha256(body) <> r.sha256 THEN
        RETURN QUERY SELECT r.file, NULL::bigint, NULL::bigint,
            'the archive file does not match the SHA-256 recorded when it was written: it was changed';
    END IF;
    prev := r.prev_chain_hash;
    want := r.first_seal;
    n := 0;
    lineno := 0;
    ended := false;
    BEGIN
        FOR ln IN SELECT t FROM regexp_split_to_table(convert_from(body, pg_catalog.getdatabaseencoding()), E'\n') t LOOP
            lineno := lineno + 1;
            CONTINUE WHEN ln = '';
            j := ln::jsonb;
            IF lineno = 1 THEN
                IF j->>'pii_guard_audit_archive' IS DISTINCT FROM '1'
                   OR (j->>'first_seal')::bigint IS DISTINCT FROM r.first_seal
                   OR decode(j->>'prev_chain_hash', 'hex') IS DISTINCT FROM r.prev_chain_hash THEN
                    RETURN QUERY SELECT r.file, NULL::bigint, r.first_seal,
                        'the archive''s header does not match its record: it is another file or was changed';
                    EXIT;
                END IF;
                CONTINUE;
            END IF;
            IF j ? 'end' THEN
                ended := true;
                IF (j->>'events')::bigint IS DISTINCT FROM n OR (j->>'last_seal')::bigint IS DISTINCT FROM want - 1
                   OR decode(j->>'last_chain_hash', 'hex') IS DISTINCT FROM prev
                   OR prev IS DISTINCT FROM r.last_chain_hash OR want - 1 <> r.last_seal THEN
                    RETURN QUERY SELECT r.file, NULL::bigint, want - 1,
                        'the archive ends where its record does not: events were removed or added';
                END IF;
                EXIT;
            END IF;
            a := jsonb_populate_record(NULL::@extschema@.audit_log, j);
            IF (j->>'seal_seq')::bigint IS DISTINCT FROM want THEN
                RETURN QUERY SELECT r.file, a.event_id, want, 'a seal is missing in the archive before this event: it was removed';
                EXIT;
            END IF;
            IF NOT coalesce(@extschema@._audit_row_ok(a), false) THEN
                RETURN QUERY SELECT r.file, a.event_id, want, 'archived row does not match its MAC: it was changed';
                EXIT;
            END IF;
            IF @extschema@._audit_chain_next(prev, a.event_id, a.row_mac) IS DISTINCT FROM decode(j->>'chain_hash', 'hex') THEN
                RETURN QUERY SELECT r.file, a.event_id, want, 'archived chain link does not match: the chain was altered';
                EXIT;
            END IF;
            prev := decode(j->>'chain_hash', 'hex');
            IF want = anchor_seq AND prev <> anchor_hash THEN
                RETURN QUERY SELECT r.file, a.event_id, want,
                    'the chain does not match the anchor at this seal: it was rewritten or reset';
            END IF;
            want := want + 1;
            n := n + 1;
        END LOOP;
    EXCEPTION WHEN invalid_text_representation OR invalid_parameter_value OR datatype_mismatch
                OR character_not_in_repertoire OR untranslatable_character
                OR invalid_datetime_format OR numeric_value_out_of_range THEN
        RETURN QUERY SELECT r.file, NULL::bigint, want,
            format('line %s of the archive is not an archived event: it was changed', lineno);
        RETURN;
    END;
    IF NOT ended THEN
        RETURN QUERY SELECT r.file, NULL::bigint, want - 1, 'the archive file has no end line: it was cut';
    END IF;END
$$;

-- Discovery: per column not yet protected, of a table or of every table of
-- a schema (with the base tables of its protected ones), what kind of
-- personal data it holds -- by content (detect_kind over a sample: the
-- whole table up to sample_rows rows, a TABLESAMPLE of larger ones) and by
-- its name (English, pinyin and Chinese names) -- the share of sampled
-- values that match, a suggested level and mask, and the protect_column
-- call to run.  Reads the tables with the caller's privileges; returns no
-- value of them; an admin event records each run.
CREATE FUNCTION @extschema@._name_kind(col name) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT CASE
        WHEN c ~ '(id_?card|id_?no|national_?id|identity|sfz|shenfen|身份证|证件号)' THEN 'cn_id'
        WHEN c ~ '(bank_?card|card_?no|card_?number|yinhangka|银行卡|卡号)' THEN 'bank_card'
        WHEN c ~ '(mobile|cell|phone|shouji|手机)' THEN 'mobile'
        WHEN c ~ '(tel|landline|dianhua|电话|座机)' THEN 'landline'
        WHEN c ~ '(e_?mail|youxiang|邮箱)' THEN 'email'
        WHEN c ~ '(passport|huzhao|护照)' THEN 'passport'
        WHEN c ~ '(plate|chepai|车牌)' THEN 'plate'
        WHEN c ~ '(^|_)(ip|ip_?addr|ipv4)($|_)' THEN 'ipv4'
        WHEN c ~ '(address|addr|dizhi|zhuzhi|地址|住址)' THEN 'address'
        WHEN c ~ '(birth|dob|shengri|出生|生日)' THEN 'birth_date'
        WHEN c ~ '^(name|full_?name|real_?name|customer_?name|contact_?name|contact|xingming|xm)$'
             OR c ~ '(姓名|联系人|客户名)' THEN 'cn_name'
    END
    FROM (SELECT pg_catalog.lower(col::text) AS c) s
$$;

CREATE FUNCTION @extschema@._kind_policy(kind text, OUT level @extschema@.level, OUT mask text) RETURNS record
    LANGUAGE sql IMMUTABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT l::@extschema@.level, m FROM (VALUES
        ('cn_id', 'core', '@extschema@.mask_cn_id(text)'),
        ('bank_card', 'core', '@extschema@.mask_bank_card(text)'),
        ('passport', 'core', NULL),
        ('mobile', 'sensitive', '@extschema@.mask_phone(text)'),
        ('landline', 'sensitive', '@extschema@.mask_phone(text)'),
        ('email', 'sensitive', '@extschema@.mask_email(text)'),
        ('address', 'sensitive', '@extschema@.mask_address(text)'),
        ('plate', 'sensitive', NULL),
        ('birth_date', 'sensitive', NULL),
        ('cn_name', 'internal', '@extschema@.mask_name(text)'),
        ('ipv4', 'internal', NULL)) AS t(k, l, m)
     WHERE k = kind
$$;

CREATE FUNCTION @extschema@._record_discovery(rel regclass, found jsonb) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    DELETE FROM @extschema@.discovered_columns WHERE relation = rel;
    INSERT INTO @extschema@.discovered_columns (relation, column_name, kind, matched_by, share, sampled)
    SELECT rel, e->>'column', e->>'kind', e->>'matched_by', (e->>'share')::numeric, (e->>'sampled')::bigint
      FROM jsonb_array_elements(found) e;
$$;

-- (discover() reads with its caller's privileges; its admin event is
-- written by this definer-rights helper, which records nothing else.)
CREATE FUNCTION @extschema@._audit_discover(target text, tables integer, sample_rows integer) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT NULL::void FROM @extschema@._audit_admin('discover',
        format('discovery over %s (%s tables, up to %s rows each)', target, tables, sample_rows))
$$;

-- The tables discovery looks at: those of a schema (and the base tables of
-- the masking views in it), or one table (a masking view stands for its
-- base table).  NULL: none.
CREATE FUNCTION @extschema@._discover_tables(target text) RETURNS regclass[]
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    rel regclass;
BEGIN
    IF target IS NOT NULL AND cardinality(parse_ident(target, false)) = 1
       AND to_regnamespace(target) IS NOT NULL THEN
        RETURN (SELECT array_agg(c.oid::regclass ORDER BY c.relname)
                  FROM pg_class c
                 WHERE (c.relnamespace = to_regnamespace(target) AND c.relkind IN ('r', 'p', 'm')
                        AND NOT c.relispartition)
                    OR c.oid IN (SELECT p.base FROM @extschema@.protected_tables p WHERE p.view_schema = target));
    END IF;
    rel := to_regclass(target);
    IF rel IS NULL THEN
        RAISE EXCEPTION 'no schema or table "%"', target
            USING ERRCODE = 'undefined_object',
                  HINT = 'Name a schema, or a table (schema-qualified if need be).';
    END IF;
    RETURN ARRAY[coalesce((SELECT p.base FROM @extschema@.protected_tables p JOIN pg_class v
                             ON v.relname = p.view_name AND v.relnamespace = p.view_schema::regnamespace
                            WHERE v.oid = rel), rel)];
END
$$;

-- A sample of up to sample_rows rows of the given columns of rel (a
-- TABLESAMPLE of a large table): per column, how many values are not NULL
-- (nn) and how many look like each kind (kinds: [{i, kind, n}]).  An
-- encrypted column (protected by no rule yet) is read decrypted when the
-- caller may decrypt it, else judged by its name only.
CREATE FUNCTION @extschema@._discover_sample(rel regclass, names name[], types text[], sample_rows integer, OUT nn bigint[], OUT kinds jsonb) RETURNS record
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    q      text;
    sel    text := '';
    vals   text := '';
    counts text := '';
    src    text;
    ntup   double precision := (SELECT c.reltuples FROM pg_class c WHERE c.oid = rel);
    i      integer;
BEGIN
    src := CASE WHEN ntup > sample_rows * 4
                THEN format('%s TABLESAMPLE SYSTEM (%s)', rel,
                            least(100, round((100.0 * sample_rows * 2 / ntup)::numeric, 4)))
                ELSE rel::text END;
    FOR i IN 1 .. cardinality(names) LOOP
        IF types[i] = '@extschema@.encrypted_text' THEN
            BEGIN
                EXECUTE format('SELECT @extschema@.decrypt(%I) FROM %s WHERE %I IS NOT NULL LIMIT 1',
                               names[i], rel, names[i]);
                q := format('@extschema@.decrypt(%I)', names[i]);
            EXCEPTION WHEN OTHERS THEN
                q := 'NULL::text';
            END;
        ELSE
            q := format('%I::text', names[i]);
        END IF;
        sel := sel || CASE WHEN i > 1 THEN ', ' ELSE '' END || format('%s AS c%s', q, i);
        vals := vals || CASE WHEN i > 1 THEN ', ' ELSE '' END || format('(%s, s.c%s)', i, i);
        counts := counts || CASE WHEN i > 1 THEN ', ' ELSE '' END || format('count(s.c%s)', i);
    END LOOP;
    EXECUTE format('WITH s AS MATERIALIZED (SELECT %s FROM %s LIMIT %s) '
                   'SELECT ARRAY[%s]::bigint[] AS nn, '
                   '  (SELECT coalesce(jsonb_agg(jsonb_build_object(''i'', k.i, ''kind'', k.kind, ''n'', k.n)), ''[]'') '
                   '     FROM (SELECT v.i, @extschema@.detect_kind(v.val) AS kind, count(*) AS n '
                   '             FROM s, LATERAL (VALUES %s) v(i, val) '
                   '            WHERE v.val IS NOT NULL AND @extschema@.detect_kind(v.val) IS NOT NULL '
                   '            GROUP BY 1, 2) k) AS kinds '
                   'FROM s', sel, src, sample_rows, counts, vals)
       INTO nn, kinds;
END
$$;

-- One table's findings: its unprotected columns of the types personal data
-- comes in, sampled and judged by content and by name, each with the
-- protect_column() call to run; recorded in discovered_columns.
CREATE FUNCTION @extschema@._discover_table(rel regclass, sample_rows integer) RETURNS TABLE(relation regclass, column_name name, data_type text, kind text, matched_by text, share numeric, sampled bigint, suggested_level @extschema@.level, suggested_mask text, protect_call text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    names    name[];
    types    text[];
    r        record;
    i        integer;
    best     record;
    nkind    text;
    pol      record;
    found    jsonb := '[]';
BEGIN
    SELECT array_agg(a.attname ORDER BY a.attnum), array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
      INTO names, types
      FROM pg_attribute a
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
       AND a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'name'::regtype,
                          'int8'::regtype, 'numeric'::regtype, 'inet'::regtype, 'date'::regtype,
                          'timestamp'::regtype, 'timestamptz'::regtype, '@extschema@.encrypted_text'::regtype)
       AND NOT EXISTS (SELECT 1 FROM @extschema@.column_rules cr
                        WHERE cr.base = rel AND cr.column_name = a.attname);
    IF names IS NOT NULL THEN
        SELECT * INTO r FROM @extschema@._discover_sample(rel, names, types, sample_rows);
        FOR i IN 1 .. cardinality(names) LOOP
            SELECT (e->>'kind') AS kind, (e->>'n')::bigint AS n INTO best
              FROM jsonb_array_elements(r.kinds) e
             WHERE (e->>'i')::int = i ORDER BY (e->>'n')::bigint DESC, e->>'kind' LIMIT 1;
            nkind := @extschema@._name_kind(names[i]);
            relation := rel; column_name := names[i]; data_type := types[i]; sampled := r.nn[i];
            share := CASE WHEN r.nn[i] > 0 AND best.n IS NOT NULL
                          THEN round(best.n::numeric / r.nn[i], 3) ELSE 0 END;
            IF best.kind IS NOT NULL AND (share >= 0.5 OR (share >= 0.2 AND best.kind = nkind)) THEN
                kind := best.kind;
                matched_by := CASE WHEN best.kind = nkind THEN 'content and name' ELSE 'content' END;
            ELSIF nkind IS NOT NULL THEN
                kind := nkind;
                matched_by := 'name';
                share := CASE WHEN best.kind = nkind THEN share ELSE 0 END;
            ELSE
                CONTINUE;
            END IF;
            SELECT * INTO pol FROM @extschema@._kind_policy(kind);
            suggested_level := pol.level;
            suggested_mask := CASE WHEN types[i] IN ('text', 'character varying', '@extschema@.encrypted_text')
                                     OR types[i] LIKE 'character varying(%'
                                     OR types[i] LIKE 'character(%' THEN pol.mask END;
            protect_call := format('SELECT pii_guard.protect_column(%L, %L, %L%s);', rel::text, names[i],
                                   pol.level, CASE WHEN suggested_mask IS NOT NULL
                                                   THEN format(', %L', suggested_mask) ELSE '' END);
            found := found || jsonb_build_object('column', names[i], 'kind', kind, 'matched_by', matched_by,
                                                 'share', share, 'sampled', sampled);
            RETURN NEXT;
        END LOOP;
    END IF;
    PERFORM @extschema@._record_discovery(rel, found);
END
$$;

-- Masked copies for development, test and analytics: anonymize_into()
-- copies the tables of the application's schemas into a new schema in
-- which every protected column holds a format-preserving pseudonym (phone,
-- resident ID, bank card, e-mail, Chinese name: _fake, src/fake.c) or its
-- mask (the others; hidden columns: NULL) -- no ciphertext, no key, and,
-- checked before it returns, no real value of a protected column anywhere.
CREATE FUNCTION @extschema@._fake(kind text, value text, secret bytea, attempt integer) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_fake';

-- The kind of personal data a protected column holds: by its mask (the
-- masks of one kind), else by what discovery found in it, else by its name.
CREATE FUNCTION @extschema@._column_kind(base regclass, col name, fn text) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT coalesce(
        CASE to_regprocedure(fn)
            WHEN '@extschema@.mask_phone(text)'::regprocedure THEN 'mobile'
            WHEN '@extschema@.mask_cn_id(text)'::regprocedure THEN 'cn_id'
            WHEN '@extschema@.mask_bank_card(text)'::regprocedure THEN 'bank_card'
            WHEN '@extschema@.mask_email(text)'::regprocedure THEN 'email'
            WHEN '@extschema@.mask_name(text)'::regprocedure THEN 'cn_name'
            WHEN '@extschema@.mask_address(text)'::regprocedure THEN 'address'
        END,
        (SELECT d.kind FROM @extschema@.discovered_columns d WHERE d.relation = base AND d.column_name = col),
        @extschema@._name_kind(col))
$$;

-- A definer function told by its invoker-rights wrapper whom it acts for
-- checks that the session may be that role (called directly, it could be
-- told anyone).
CREATE FUNCTION @extschema@._acting_as(caller regrole, what text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF caller IS NULL OR NOT pg_has_role(session_user, caller, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to % as role %', what, caller
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;

-- The type of a column in a masked copy: a domain's base type (its
-- checks would run the functions of whoever made it, as the definer),
-- arrays of domains likewise; composite types are not copied.
CREATE FUNCTION @extschema@._copy_type(typ oid, typmod integer) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t        pg_type;
    arrays   integer := 0;
BEGIN
    LOOP
        SELECT * INTO t FROM pg_type WHERE oid = typ;
        IF t.typtype = 'd' THEN
            typ := t.typbasetype; typmod := t.typtypmod;
        ELSIF t.typcategory = 'A' AND t.typelem <> 0 AND t.typsubscript = 'array_subscript_handler'::regproc THEN
            typ := t.typelem; arrays := arrays + 1;
        ELSE
            EXIT;
        END IF;
    END LOOP;
    IF t.typtype = 'c' THEN
        RAISE EXCEPTION 'a masked copy cannot hold a column of composite type %', typ::regtype
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Leave the table out (name other schemas), or change the column''s type.';
    END IF;
    RETURN format_type(typ, typmod) || repeat('[]', arrays);
END
$$;

-- The schemas to copy (NULL: every schema a masking view is in), checked:
-- the target is new and not reserved, each source exists and is one
-- applications use.
CREATE FUNCTION @extschema@._anon_sources(target name, sources name[]) RETURNS name[]
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    i integer;
BEGIN
    IF target IS NULL OR to_regnamespace(quote_ident(target)) IS NOT NULL THEN
        RAISE EXCEPTION 'schema "%" already exists', target
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'A masked copy goes into a new schema: name one that does not exist, or drop the old copy first.';
    END IF;
    IF target ~ '^pg_' OR target LIKE '%\_pii' THEN
        RAISE EXCEPTION 'unacceptable schema name "%" for a masked copy', target
            USING ERRCODE = 'reserved_name';
    END IF;
    sources := coalesce(sources, (SELECT array_agg(DISTINCT p.view_schema) FROM @extschema@.protected_tables p));
    IF sources IS NULL THEN
        RAISE EXCEPTION 'no protected table to copy'
            USING ERRCODE = 'undefined_object',
                  HINT = 'Name the schemas to copy, or protect tables first.';
    END IF;
    FOR i IN 1 .. cardinality(sources) LOOP
        IF to_regnamespace(quote_ident(sources[i])) IS NULL THEN
            RAISE EXCEPTION 'schema "%" does not exist', sources[i] USING ERRCODE = 'invalid_schema_name';
        END IF;
        IF sources[i] = '@extschema@' OR sources[i] LIKE '%\_pii' OR sources[i] = target
           OR sources[i] ~ '^pg_' OR sources[i] = 'information_schema' THEN
            RAISE EXCEPTION 'schema "%" cannot be copied', sources[i]
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Name the schemas applications use: a protected table is copied from its masking view''s schema.';
        END IF;
    END LOOP;
    RETURN sources;
END
$$;

-- What is copied, in two temporary tables: _anon_tables, the tables of the
-- sources the caller may read (a protected one: through its masking view),
-- and _anon_cols, every column of them and what the copy holds in it (kind:
-- the kinds that get a pseudonym, in text columns).  Tables of these names
-- the caller made in its temporary schema are dropped, not used: their
-- triggers would run with the definer's rights.
CREATE FUNCTION @extschema@._anon_inventory(caller regrole, sources name[]) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t  text;
    tb record;
BEGIN
    FOREACH t IN ARRAY ARRAY['_anon_tables', '_anon_cols', '_anon_map', '_anon_real'] LOOP
        IF to_regclass('pg_temp.' || t) IS NOT NULL THEN
            EXECUTE format('DROP TABLE pg_temp.%I', t);
        END IF;
    END LOOP;
    CREATE TEMP TABLE _anon_tables ON COMMIT DROP AS
    SELECT c.oid::regclass AS src, coalesce(p.view_name, c.relname) AS name,
           p.base IS NOT NULL AS protected, c.relkind
      FROM pg_class c
      LEFT JOIN @extschema@.protected_tables p ON p.base = c.oid
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype = 'e')
       AND ((p.base IS NULL AND c.relnamespace::regnamespace::name = ANY (sources))
            OR p.view_schema = ANY (sources))
       AND has_table_privilege(caller, CASE WHEN p.base IS NULL THEN c.oid
                                            ELSE format('%I.%I', p.view_schema, p.view_name)::regclass::oid END,
                               'SELECT');
    FOR tb IN SELECT c.oid::regclass AS src FROM pg_class c
               WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                 AND c.relnamespace::regnamespace::name = ANY (sources)
                 AND NOT EXISTS (SELECT 1 FROM _anon_tables t WHERE t.src = c.oid)
                 AND NOT EXISTS (SELECT 1 FROM @extschema@.protected_tables p WHERE p.base = c.oid)
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                    AND d.objid = c.oid AND d.deptype = 'e') LOOP
        RAISE NOTICE 'table % not copied: you may not read it', tb.src;
    END LOOP;
    CREATE TEMP TABLE _anon_cols ON COMMIT DROP AS
    SELECT t.src, a.attnum, a.attname, a.attnotnull,
           a.atttypid IN ('@extschema@.encrypted_text'::regtype, '@extschema@.encrypted_bytea'::regtype) AS enc,
           CASE a.atttypid WHEN '@extschema@.encrypted_text'::regtype THEN 'text'
                           WHEN '@extschema@.encrypted_bytea'::regtype THEN 'bytea'
                           ELSE @extschema@._copy_type(a.atttypid, a.atttypmod) END AS typ,
           r.column_name IS NOT NULL AS protected, r.mask_function, r.mask_args,
           CASE WHEN r.column_name IS NOT NULL
                THEN @extschema@._column_kind(t.src, a.attname, r.mask_function) END AS data_kind,
           a.atttypid IN ('text'::regtype, 'varchar'::regtype, '@extschema@.encrypted_text'::regtype) AS texty
      FROM _anon_tables t
      JOIN pg_attribute a ON a.attrelid = t.src AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN @extschema@.column_rules r ON r.base = t.src AND r.column_name = a.attname;
    ALTER TABLE _anon_cols ADD COLUMN kind text;
    UPDATE _anon_cols SET kind = data_kind
     WHERE texty AND data_kind IN ('mobile', 'landline', 'cn_id', 'bank_card', 'email', 'cn_name');
END
$$;

-- _anon_map: the real values of every pseudonymised column, one pseudonym
-- each (all in one pass, hash joins and aggregates, no index to keep up).
-- A pseudonym that is some real value, or that two values share (all but
-- the smallest value keep it), is made again with the next attempt (a few
-- rounds, on a few values).
CREATE FUNCTION @extschema@._anon_pseudonyms(secret bytea) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    col   record;
    sel   text := '';
    i     integer;
    fixed bigint;
BEGIN
    FOR col IN SELECT * FROM pg_temp._anon_cols WHERE kind IS NOT NULL LOOP
        sel := sel || CASE WHEN sel = '' THEN '' ELSE ' UNION ALL ' END
               || format('SELECT %L AS kind, %s AS v FROM %s', col.kind,
                         CASE WHEN col.enc THEN format('@extschema@.decrypt(%I)', col.attname)
                              ELSE format('%I::text', col.attname) END, col.src);
    END LOOP;
    EXECUTE format('CREATE TEMP TABLE _anon_map ON COMMIT DROP AS '
                   'SELECT kind, v AS real, @extschema@._fake(kind, v, $1, 0) AS fake, 0 AS attempt '
                   '  FROM (SELECT DISTINCT kind, v FROM (%s) u WHERE v IS NOT NULL) s',
                   CASE WHEN sel = '' THEN 'SELECT NULL::text AS kind, NULL::text AS v WHERE false' ELSE sel END)
      USING secret;
    ANALYZE pg_temp._anon_map;
    FOR i IN 1 .. 64 LOOP
        UPDATE pg_temp._anon_map m
           SET attempt = m.attempt + 1, fake = @extschema@._fake(m.kind, m.real, secret, m.attempt + 1)
          FROM (SELECT b.kind, b.real FROM pg_temp._anon_map b
                 WHERE EXISTS (SELECT 1 FROM pg_temp._anon_map r WHERE r.real = b.fake)
                UNION
                SELECT x.kind, x.real
                  FROM pg_temp._anon_map x
                  JOIN (SELECT y.kind, y.fake, min(y.real) AS keep FROM pg_temp._anon_map y
                         GROUP BY 1, 2 HAVING count(*) > 1) d
                    ON d.kind = x.kind AND d.fake = x.fake AND x.real <> d.keep) bad
         WHERE m.kind = bad.kind AND m.real = bad.real;
        GET DIAGNOSTICS fixed = ROW_COUNT;
        EXIT WHEN fixed = 0;
        IF i = 64 THEN
            RAISE EXCEPTION 'pii_guard could not find distinct pseudonyms'
                USING ERRCODE = 'program_limit_exceeded',
                      DETAIL = 'The values of one kind nearly fill the space of its pseudonyms.';
        END IF;
    END LOOP;
END
$$;

-- One table of the copy, created in target and filled: pseudonyms joined
-- from _anon_map, masks (which must still qualify: they run here as the
-- definer), NULL for hidden columns and for encrypted columns that are not
-- protected; owned by the caller.
CREATE FUNCTION @extschema@._anon_copy_table(caller regrole, target name, src regclass, OUT rows bigint, OUT pseudonymised name[], OUT masked name[], OUT hidden name[]) RETURNS record
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    tb    record;
    col   record;
    cols  text := '';
    sel   text := '';
    joins text := '';
    expr  text;
    val   text;
    fn    regprocedure;
BEGIN
    SELECT * INTO tb FROM pg_temp._anon_tables t WHERE t.src = _anon_copy_table.src;
    pseudonymised := '{}'; masked := '{}'; hidden := '{}';
    FOR col IN SELECT * FROM pg_temp._anon_cols c WHERE c.src = tb.src ORDER BY c.attnum LOOP
        val := CASE WHEN col.enc THEN format('@extschema@.decrypt(s.%I)', col.attname)
                    ELSE format('s.%I', col.attname) END;
        IF col.kind IS NOT NULL THEN
            joins := joins || format(' LEFT JOIN pg_temp._anon_map m%s ON m%s.kind = %L AND m%s.real = %s::text',
                                     col.attnum, col.attnum, col.kind, col.attnum, val);
            expr := format('m%s.fake::%s', col.attnum, col.typ);
            pseudonymised := pseudonymised || col.attname;
        ELSIF col.protected AND col.mask_function IS NOT NULL THEN
            fn := to_regprocedure(col.mask_function);
            IF fn IS NULL OR @extschema@._mask_problem(fn) IS NOT NULL THEN
                RAISE EXCEPTION 'mask function % of %.% may not be used', col.mask_function, tb.src, col.attname
                    USING ERRCODE = 'invalid_object_definition',
                          DETAIL = coalesce(@extschema@._mask_problem(fn), 'The function does not exist.'),
                          HINT = 'Correct the column''s mask with pii_guard.protect_column(), then copy again.';
            END IF;
            expr := @extschema@._mask_expr(fn, col.mask_args, val);
            masked := masked || col.attname;
        ELSIF col.protected OR col.enc THEN
            expr := format('NULL::%s', col.typ);
            hidden := hidden || col.attname;
            col.attnotnull := false;
        ELSE
            expr := val;
        END IF;
        cols := cols || CASE WHEN cols = '' THEN '' ELSE ', ' END
                || format('%I %s%s', col.attname, col.typ, CASE WHEN col.attnotnull THEN ' NOT NULL' ELSE '' END);
        sel := sel || CASE WHEN sel = '' THEN '' ELSE ', ' END || expr;
    END LOOP;
    EXECUTE format('CREATE TABLE %I.%I (%s)', target, tb.name, cols);
    EXECUTE format('INSERT INTO %I.%I SELECT %s FROM %s%s s%s', target, tb.name, sel,
                   CASE WHEN tb.relkind = 'r' THEN 'ONLY ' ELSE '' END, tb.src, joins);
    GET DIAGNOSTICS rows = ROW_COUNT;
    EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', target, tb.name, caller::name);
END
$$;

-- The copy's keys: primary keys and unique constraints, and foreign keys
-- between copied tables, unless they rest on a masked or hidden column.
CREATE FUNCTION @extschema@._anon_constraints(target name) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    con record;
BEGIN
    FOR con IN SELECT k.conname, k.contype, t.name, k.conkey, k.confkey, ft.name AS fname,
                      k.conrelid, k.confrelid
                 FROM pg_constraint k
                 JOIN pg_temp._anon_tables t ON t.src = k.conrelid
                 LEFT JOIN pg_temp._anon_tables ft ON ft.src = k.confrelid
                WHERE k.contype IN ('p', 'u') OR (k.contype = 'f' AND ft.src IS NOT NULL)
                ORDER BY k.contype DESC, t.name, k.conname LOOP
        IF EXISTS (SELECT 1 FROM pg_temp._anon_cols x
                    WHERE ((x.src = con.conrelid AND x.attnum = ANY (con.conkey))
                           OR (x.src = con.confrelid AND x.attnum = ANY (con.confkey)))
                      AND (x.enc OR (x.protected AND x.kind IS NULL))) THEN
            RAISE NOTICE 'constraint % of % not copied: it rests on a masked or hidden column', con.conname, con.name;
            CONTINUE;
        END IF;
        EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', target, con.name, con.conname,
            CASE con.contype
                WHEN 'p' THEN 'PRIMARY KEY '
                WHEN 'u' THEN 'UNIQUE '
                ELSE 'FOREIGN KEY ' END
            || (SELECT '(' || string_agg(quote_ident(attname), ', ' ORDER BY k.o) || ')'
                  FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
                  JOIN pg_attribute ON attrelid = con.conrelid AND attnum = k.n)
            || CASE WHEN con.contype = 'f' THEN
                   format(' REFERENCES %I.%I ', target, con.fname)
                   || (SELECT '(' || string_agg(quote_ident(attname), ', ' ORDER BY k.o) || ')'
                         FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute ON attrelid = con.confrelid AND attnum = k.n)
               ELSE '' END);
    END LOOP;
END
$$;

-- The check: no real value of a protected column (pseudonymised, hidden or
-- an address) anywhere in the copy -- a whole value, or a number or e-mail
-- address inside a text.  Raises, naming the columns and row counts.
CREATE FUNCTION @extschema@._anon_leak_check(target name) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    col   record;
    sel   text := 'SELECT real AS v FROM pg_temp._anon_map';
    n     bigint;
    leaks text := '';
BEGIN
    FOR col IN SELECT * FROM pg_temp._anon_cols
              WHERE protected AND kind IS NULL AND (mask_function IS NULL OR data_kind = 'address')
                AND typ IN ('text', 'character varying', 'character', 'name') LOOP
        sel := sel || format(' UNION ALL SELECT %s FROM %s',
                             CASE WHEN col.enc THEN format('@extschema@.decrypt(%I)', col.attname)
                                  ELSE format('%I::text', col.attname) END, col.src);
    END LOOP;
    EXECUTE format('CREATE TEMP TABLE _anon_real ON COMMIT DROP AS SELECT DISTINCT v FROM (%s) u WHERE v IS NOT NULL', sel);
    ANALYZE pg_temp._anon_real;
    FOR col IN SELECT t.name, x.attname, x.kind
               FROM pg_temp._anon_cols x JOIN pg_temp._anon_tables t ON t.src = x.src
              WHERE x.typ IN ('text', 'character varying', 'character', 'name', 'bigint', 'numeric')
                 OR x.typ LIKE 'character varying(%' OR x.typ LIKE 'character(%' OR x.typ LIKE 'numeric(%'
              ORDER BY t.name, x.attnum LOOP
        -- the rows whose value is a real one, and those with a number or an
        -- e-mail address in them that is (hash joins: no lookup per row);
        -- a column of pseudonyms holds what _fake made, each value whole,
        -- so only its whole values are looked up
        EXECUTE format('SELECT count(*) FROM (SELECT c.ctid FROM %I.%I c '
                       '  WHERE EXISTS (SELECT 1 FROM pg_temp._anon_real r WHERE r.v = c.%I::text)%s) u',
                       target, col.name, col.attname,
                       CASE WHEN col.kind IS NOT NULL THEN '' ELSE
                           format(' UNION SELECT c.ctid FROM %I.%I c, regexp_matches(c.%I::text, %L, ''g'') m '
                                  '  WHERE EXISTS (SELECT 1 FROM pg_temp._anon_real r WHERE r.v = m[1])',
                                  target, col.name, col.attname,
                                  '([0-9]{11,19}[0-9Xx]?|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+)') END)
           INTO n;
        IF n > 0 THEN
            leaks := leaks || format('%s%I.%I holds real values in %s rows', CASE WHEN leaks = '' THEN '' ELSE '; ' END,
                                     col.name, col.attname, n);
        END IF;
    END LOOP;
    IF leaks <> '' THEN
        RAISE EXCEPTION 'the masked copy would hold real values of protected columns'
            USING ERRCODE = 'data_exception',
                  DETAIL = leaks || '.',
                  HINT = 'Those columns hold personal data but are not protected (pii_guard.discover() finds such columns): protect them, then copy again.';
    END IF;
END
$$;

CREATE FUNCTION @extschema@._anonymize_into(caller regrole, target name, sources name[]) RETURNS TABLE(source regclass, copy regclass, rows bigint, pseudonymised name[], masked name[], hidden name[])
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET work_mem TO '64MB'
    AS $$
DECLARE
    tb     record;
    c      record;
    total  bigint := 0;
    tables integer := 0;
BEGIN
    PERFORM @extschema@._acting_as(caller, 'make a copy');
    sources := @extschema@._anon_sources(target, sources);
    PERFORM @extschema@._anon_inventory(caller, sources);
    -- the copy's secret: random, never stored, gone with this call
    PERFORM @extschema@._anon_pseudonyms(
        decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
    EXECUTE format('CREATE SCHEMA %I', target);
    EXECUTE format('COMMENT ON SCHEMA %I IS %L', target,
                   format('pii_guard masked copy of %s, made %s', array_to_string(sources, ', '), now()));
    FOR tb IN SELECT t.src, t.name FROM pg_temp._anon_tables t ORDER BY t.name LOOP
        SELECT * INTO c FROM @extschema@._anon_copy_table(caller, target, tb.src);
        source := tb.src; copy := format('%I.%I', target, tb.name)::regclass; rows := c.rows;
        pseudonymised := c.pseudonymised; masked := c.masked; hidden := c.hidden;
        total := total + c.rows; tables := tables + 1;
        RETURN NEXT;
    END LOOP;
    PERFORM @extschema@._anon_constraints(target);
    PERFORM @extschema@._anon_leak_check(target);
    EXECUTE format('ALTER SCHEMA %I OWNER TO %I', target, caller::name);
    PERFORM @extschema@._audit_admin('anonymize',
        format('masked copy of %s tables (%s rows) of schema %s into schema %s, checked: no real value of a protected column',
               tables, total, array_to_string(sources, ', '), target));
    DROP TABLE pg_temp._anon_tables, pg_temp._anon_cols, pg_temp._anon_map, pg_temp._anon_real;
END
$$;

-- Policy lint in pieces: check_policy() runs one function per check, in
-- order, over the access table _lint_prepare() builds; a later version
-- changes or adds a check without re-declaring the others.  They run with
-- check_policy()'s rights; no one else may call them.
--
-- _lint_access: every column of every protected table, with its kind, and
-- each profile's access to it ('none': no SELECT privilege on it).  A
-- table of that name the caller made in its temporary schema is dropped,
-- not used: its triggers would run with the definer's rights.
CREATE FUNCTION @extschema@._lint_prepare() RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF to_regclass('pg_temp._lint_access') IS NOT NULL THEN
        DROP TABLE pg_temp._lint_access;
    END IF;
    CREATE TEMP TABLE _lint_access (profile regrole, base regclass, view_name text,
        column_name name, kind text, access text) ON COMMIT DROP;
    INSERT INTO _lint_access
    SELECT pr.role, p.base, format('%I.%I', p.view_schema, p.view_name), a.attname,
           @extschema@._column_kind(p.base, a.attname, cr.mask_function),
           CASE WHEN NOT has_column_privilege(pr.role::oid, format('%I.%I', p.view_schema, p.view_name)::regclass,
                                              a.attname, 'SELECT') THEN 'none'
                WHEN cr.column_name IS NULL THEN 'clear'
                ELSE @extschema@.column_access(pr.role, p.base, a.attname) END
      FROM @extschema@.protected_tables p
      JOIN pg_attribute a ON a.attrelid = p.base AND a.attnum > 0 AND NOT a.attisdropped
      CROSS JOIN @extschema@.profiles pr
      LEFT JOIN @extschema@.column_rules cr ON cr.base = p.base AND cr.column_name = a.attname;
END
$$;

-- rebuild_from_clear: a column masked or hidden from a profile whose hidden part another
-- column shows it in clear, or an unprotected column discovery found to hold
-- the same kind of data.
CREATE FUNCTION @extschema@._lint_rebuild_from_clear() RETURNS TABLE(severity text, check_name text, object text, problem text, hint text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r        record;
BEGIN
    FOR r IN SELECT DISTINCT h.profile, h.view_name, h.column_name AS hidden_col, h.kind, c.column_name AS clear_col,
                    c.view_name AS clear_table
               FROM _lint_access h
               JOIN _lint_access c ON c.profile = h.profile AND c.access = 'clear'
                AND (c.base = h.base OR c.kind = h.kind)
                AND (c.kind = h.kind OR (h.kind = 'cn_id' AND c.kind = 'birth_date'))
                AND NOT (c.base = h.base AND c.column_name = h.column_name)
              WHERE h.access IN ('masked', 'hidden') AND h.kind IS NOT NULL
              ORDER BY 1, 2, 3, 5 LOOP
        severity := 'error'; check_name := 'rebuild_from_clear';
        object := format('%s.%I for %s', r.view_name, r.hidden_col, r.profile);
        problem := CASE WHEN r.kind = 'cn_id'
            THEN format('%s sees %s.%I in clear: a birth date, the part of the ID number the mask hides',
                        r.profile, r.clear_table, r.clear_col)
            ELSE format('%s sees %s.%I in clear, which holds the same kind of data (%s)',
                        r.profile, r.clear_table, r.clear_col, r.kind) END;
        hint := format('Give %s.%I the same level as %I (or mask it for %s).', r.clear_table, r.clear_col,
                       r.hidden_col, r.profile);
        RETURN NEXT;
    END LOOP;
    -- (and unprotected columns of other tables that discovery found to hold
    -- the same kind of data, which every role with SELECT on them sees)
    FOR r IN SELECT DISTINCT h.profile, h.view_name, h.column_name AS hidden_col, h.kind, d.relation, d.column_name
               FROM _lint_access h
               JOIN @extschema@.discovered_columns d ON d.kind = h.kind
              WHERE h.access IN ('masked', 'hidden')
                AND NOT EXISTS (SELECT 1 FROM @extschema@.column_rules cr
                                 WHERE cr.base = d.relation AND cr.column_name = d.column_name)
                AND NOT EXISTS (SELECT 1 FROM @extschema@.protected_tables p WHERE p.base = d.relation)
                AND has_column_privilege(h.profile::oid, d.relation, d.column_name, 'SELECT')
              ORDER BY 1, 2, 3 LOOP
        severity := 'error'; check_name := 'rebuild_from_clear';
        object := format('%s.%I for %s', r.view_name, r.hidden_col, r.profile);
        problem := format('%s may read %s.%I, not protected, which discovery found to hold %s data',
                          r.profile, r.relation, r.column_name, r.kind);
        hint := format('Protect %s.%I (pii_guard.discover() gives the call).', r.relation, r.column_name);
        RETURN NEXT;
    END LOOP;
END
$$;

-- no_export_limit: a profile that sees sensitive or core data in clear with no export
-- limit (and no default limit).
CREATE FUNCTION @extschema@._lint_no_export_limit() RETURNS TABLE(severity text, check_name text, object text, problem text, hint text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r        record;
BEGIN
    FOR r IN SELECT pr.role, pr.description
               FROM @extschema@.profiles pr
              WHERE pr.max_rows_per_statement IS NULL AND pr.max_rows_per_day IS NULL
                AND current_setting('pii_guard.default_max_rows_per_statement')::int < 0
                AND current_setting('pii_guard.default_max_rows_per_day')::int < 0
                AND EXISTS (SELECT 1 FROM _lint_access x JOIN @extschema@.column_rules cr
                              ON cr.base = x.base AND cr.column_name = x.column_name
                             WHERE x.profile = pr.role AND x.access = 'clear' AND cr.level >= 'sensitive')
              ORDER BY 1 LOOP
        severity := 'warning'; check_name := 'no_export_limit'; object := r.role::text;
        problem := format('profile %s sees sensitive or core data in clear and may export any number of rows', r.role);
        hint := format('Set limits with pii_guard.set_export_limits(%L, rows_per_statement, rows_per_day); bulk exports then need pii_guard.approve_export().', r.role);
        RETURN NEXT;
    END LOOP;
END
$$;

-- long_grant: a live approval longer than max_grant, or one that unmasks every row
-- of a table.
CREATE FUNCTION @extschema@._lint_long_grant(max_grant interval) RETURNS TABLE(severity text, check_name text, object text, problem text, hint text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r        record;
BEGIN
    FOR r IN SELECT g.* FROM @extschema@.grants g
              WHERE g.revoked_at IS NULL AND g.valid_until > now()
                AND (g.valid_until - g.valid_from > max_grant
                     OR (g.kind = 'unmask' AND g.row_keys IS NULL))
              ORDER BY g.grant_id LOOP
        severity := 'warning'; check_name := 'long_grant';
        object := format('grant %s (%s for %s)', r.grant_id, r.kind, r.role);
        problem := CASE WHEN r.valid_until - r.valid_from > max_grant
                        THEN format('it lasts %s, longer than %s', r.valid_until - r.valid_from, max_grant)
                        ELSE format('it unmasks every row of %s', r.base) END;
        hint := format('Revoke it (pii_guard.revoke_grant(%s)) and approve what the task needs: its rows, for its time.', r.grant_id);
        RETURN NEXT;
    END LOOP;
END
$$;

-- encrypted_unmasked: an encrypted column with no masking view over it.
CREATE FUNCTION @extschema@._lint_encrypted_unmasked() RETURNS TABLE(severity text, check_name text, object text, problem text, hint text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r        record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel, a.attname
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              WHERE a.atttypid IN ('@extschema@.encrypted_text'::regtype, '@extschema@.encrypted_bytea'::regtype)
                AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
                AND NOT c.relispartition
                AND NOT EXISTS (SELECT 1 FROM @extschema@.column_rules cr
                                 WHERE cr.base = c.oid AND cr.column_name = a.attname)
              ORDER BY 1, 2 LOOP
        severity := 'error'; check_name := 'encrypted_unmasked';
        object := format('%s.%I', r.rel, r.attname);
        problem := 'an encrypted column with no masking view over it: applications cannot read it, and who may see it is not decided';
        hint := format('SELECT pii_guard.protect_column(%L, %L, level, mask);', r.rel::text, r.attname);
        RETURN NEXT;
    END LOOP;
END
$$;

-- unclassified: a column added under protect_new_columns, hidden until an
-- administrator classifies it.
CREATE FUNCTION @extschema@._lint_unclassified() RETURNS TABLE(severity text, check_name text, object text, problem text, hint text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r        record;
BEGIN
    FOR r IN SELECT n.*, p.view_schema, p.view_name FROM @extschema@.new_columns n
               JOIN @extschema@.protected_tables p ON p.base = n.base
              WHERE n.classified_at IS NULL AND n.kind IS NULL
                AND EXISTS (SELECT 1 FROM @extschema@.column_rules cr
                             WHERE cr.base = n.base AND cr.column_name = n.column_name)
              ORDER BY n.added_at LOOP
        severity := 'warning'; check_name := 'unclassified';
        object := format('%I.%I.%I', r.view_schema, r.view_name, r.column_name);
        problem := format('added by %s at %s, hidden until an administrator classifies it', r.added_by, r.added_at);
        hint := format('SELECT pii_guard.protect_column(%L, %L, level, mask); or pii_guard.unprotect_column() if it holds nothing personal.',
                       format('%I.%I', r.view_schema, r.view_name), r.column_name);
        RETURN NEXT;
    END LOOP;
END
$$;

-- companion_privilege: a privilege on a companion schema or a protected base table held by
-- a role other than the owner.
CREATE FUNCTION @extschema@._lint_companion_privilege() RETURNS TABLE(severity text, check_name text, object text, problem text, hint text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r        record;
BEGIN
    FOR r IN SELECT DISTINCT 'schema ' || quote_ident(n.nspname) AS obj, acl.grantee, acl.privilege_type
               FROM pg_namespace n, aclexplode(n.nspacl) acl
              WHERE n.oid IN (SELECT c.relnamespace FROM pg_class c
                               WHERE c.oid IN (SELECT base FROM @extschema@.protected_tables))
                AND acl.grantee <> n.nspowner
                AND NOT (acl.grantee = 0 AND acl.privilege_type = 'USAGE')
             UNION
             SELECT DISTINCT 'table ' || c.oid::regclass::text, acl.grantee, acl.privilege_type
               FROM pg_class c, aclexplode(c.relacl) acl
              WHERE c.oid IN (SELECT base FROM @extschema@.protected_tables)
                AND acl.grantee <> c.relowner AND acl.grantee <> 'pii_guard_owner'::regrole
             ORDER BY 1, 2, 3 LOOP
        severity := 'error'; check_name := 'companion_privilege';
        object := r.obj;
        problem := format('%s holds %s on it', CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE r.grantee::regrole::text END,
                          r.privilege_type);
        hint := format('REVOKE %s ON %s FROM %s; grant on the masking view instead.', r.privilege_type, r.obj,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE r.grantee::regrole::text END);
        RETURN NEXT;
    END LOOP;
END
$$;

-- length_kept, mask_unusable: a mask function that no longer qualifies, and a mask whose output is
-- as long as its input where the length identifies (names, free text).
CREATE FUNCTION @extschema@._lint_masks() RETURNS TABLE(severity text, check_name text, object text, problem text, hint text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r        record;
    s        text[];
    m1       text;
    m2       text;
    fn       regprocedure;
    call     text;
BEGIN
    FOR r IN SELECT cr.base, p.view_schema, p.view_name, cr.column_name, cr.mask_function, cr.mask_args,
                    @extschema@._column_kind(cr.base, cr.column_name, cr.mask_function) AS kind
               FROM @extschema@.column_rules cr
               JOIN @extschema@.protected_tables p ON p.base = cr.base
              WHERE cr.mask_function IS NOT NULL
              ORDER BY 2, 3, 4 LOOP
        fn := to_regprocedure(r.mask_function);
        IF fn IS NULL OR @extschema@._mask_problem(fn) IS NOT NULL THEN
            severity := 'error'; check_name := 'mask_unusable';
            object := format('%I.%I.%I', r.view_schema, r.view_name, r.column_name);
            problem := format('mask %s cannot be used: %s', r.mask_function,
                              coalesce(@extschema@._mask_problem(fn), 'The function does not exist.'));
            hint := 'Give the column a mask that qualifies with pii_guard.protect_column().';
            RETURN NEXT;
            CONTINUE;
        END IF;
        CONTINUE WHEN (SELECT p.prorettype <> 'text'::regtype OR p.proargtypes[0] <> 'text'::regtype
                         FROM pg_proc p WHERE p.oid = fn);
        CONTINUE WHEN r.kind IS NOT NULL AND r.kind <> 'cn_name';
        -- two values of the column's kind, of different lengths, masked
        s := CASE WHEN r.kind = 'cn_name' THEN ARRAY['王芳', '欧阳娜娜'] ELSE ARRAY['ok', 'a longer free text'] END;
        call := 'SELECT ' || @extschema@._mask_expr(fn, r.mask_args, '$1');
        EXECUTE call INTO m1 USING s[1];
        EXECUTE call INTO m2 USING s[2];
        IF length(m2) - length(m1) = length(s[2]) - length(s[1]) THEN
            severity := 'warning'; check_name := 'length_kept';
            object := format('%I.%I.%I', r.view_schema, r.view_name, r.column_name);
            problem := format('mask %s keeps the length of %s, and the length tells people apart (a four-character name is rare)',
                              r.mask_function, CASE WHEN r.kind = 'cn_name' THEN 'a name' ELSE 'the text' END);
            hint := 'Use a mask with an output of fixed length, e.g. pii_guard.partial(text,integer,text,integer) with {1,**,0}, or hide the column.';
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

-- Protection by default (pii_guard.protect_new_columns): a column added to
-- a protected table is classified in the statement that adds it -- by what
-- its name and content (a sample, when it is added with values) say it
-- holds, protected at that kind's level with its mask; when neither says,
-- or with protect_new_columns = hide, hidden (core, no mask) until an
-- administrator classifies it with protect_column() or unprotect_column().
-- Each decision is an admin event and a row here.
-- (the table new_columns is created with discovered_columns, above)
--
-- (called by ddl.c after the ALTER TABLE, as the extension owner)
CREATE FUNCTION @extschema@._protect_new_column(tbl oid, col text, mode text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    rel      regclass := tbl::regclass;
    typ      regtype;
    nkind    text;
    ckind    text;
    n        bigint;
    total    bigint;
    k        text;
    pol      record;
    mask     text;
    said     text;
BEGIN
    IF EXISTS (SELECT 1 FROM @extschema@.column_rules r WHERE r.base = rel AND r.column_name = col) THEN
        RETURN;
    END IF;
    SELECT a.atttypid INTO typ FROM pg_attribute a
     WHERE a.attrelid = rel AND a.attname = col AND NOT a.attisdropped;
    nkind := @extschema@._name_kind(col);
    -- a column added with values (a default): what they look like
    EXECUTE format('SELECT k, n, sum(n) OVER () FROM (SELECT @extschema@.detect_kind(v) AS k, count(*) AS n FROM '
                   '(SELECT %s AS v FROM %s WHERE %I IS NOT NULL LIMIT 1000) s GROUP BY 1) c '
                   'ORDER BY k IS NULL, n DESC LIMIT 1',
                   -- (only types whose text PostgreSQL or pii_guard makes: this runs as
                   -- the extension owner, and a cast the table's owner defined would run
                   -- with its rights)
                   CASE WHEN typ = '@extschema@.encrypted_text'::regtype THEN format('@extschema@.decrypt(%I)', col)
                        WHEN typ IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'int8'::regtype,
                                     'int4'::regtype, 'numeric'::regtype, 'date'::regtype, 'inet'::regtype)
                        THEN format('%I::text', col)
                        ELSE 'NULL::text' END, rel, col)
       INTO ckind, n, total;
    k := CASE WHEN ckind IS NOT NULL AND n * 2 >= total THEN ckind ELSE nkind END;
    SELECT * INTO pol FROM @extschema@._kind_policy(k);
    IF mode = 'classify' AND pol.level IS NOT NULL THEN
        mask := CASE WHEN typ IN ('text'::regtype, '@extschema@.encrypted_text'::regtype) THEN pol.mask END;
        PERFORM @extschema@.protect_column(rel, col::name, pol.level, mask::regprocedure);
        said := format('classified as %s by its %s: %s, %s', k,
                           CASE WHEN k = ckind AND k = nkind THEN 'name and content'
                                WHEN k = ckind THEN 'content' ELSE 'name' END,
                           pol.level, coalesce('masked with ' || mask, 'hidden below it'));
    ELSE
        PERFORM @extschema@.protect_column(rel, col::name, 'core');
        said := CASE WHEN mode = 'hide' THEN 'hidden until an administrator classifies it'
                         ELSE 'hidden until an administrator classifies it: neither its name nor its content says what it holds' END;
        k := NULL;
    END IF;
    INSERT INTO @extschema@.new_columns (base, column_name, decision, kind)
    VALUES (rel, col, said, k)
    ON CONFLICT ON CONSTRAINT new_columns_pkey DO UPDATE
       SET added_at = EXCLUDED.added_at, added_by = EXCLUDED.added_by, decision = EXCLUDED.decision,
           kind = EXCLUDED.kind, classified_at = NULL, classified_by = NULL;
    PERFORM @extschema@._audit_admin('protect_new_column', format('%s.%I: %s', rel, col, said));
END
$$;

-- A mask function's call on the SQL expression val, with its constant
-- extra arguments typed as the function declares them.
CREATE FUNCTION @extschema@._mask_expr(fn regprocedure, args text[], val text) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT format('%s(%s%s)', fn::oid::regproc, val,
                  coalesce((SELECT string_agg(format(', %L::%s', args[i], format_type(p.proargtypes[i], NULL)), '' ORDER BY i)
                              FROM pg_proc p, generate_subscripts(args, 1) i WHERE p.oid = fn), ''))
$$;

-- The protected base table tbl names (itself, or its masking view), or an
-- error; its row key column and that column's type (a domain's base type:
-- a domain's check would run its maker's functions); and, when subject is
-- given, whether a row has that row key (read with the caller's rights).
CREATE FUNCTION @extschema@._subject_table(tbl regclass, subject text DEFAULT NULL::text, OUT base regclass, OUT relation text, OUT key_col name, OUT key_type text, OUT present boolean) RETURNS record
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    SELECT p.base, format('%I.%I', p.view_schema, p.view_name), p.row_key
      INTO base, relation, key_col
      FROM @extschema@.protected_tables p
     WHERE p.base = tbl OR to_regclass(format('%I.%I', p.view_schema, p.view_name)) = tbl;
    IF base IS NULL THEN
        RAISE EXCEPTION 'table % is not protected by pii_guard', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name a protected table (or its masking view): its row key identifies the person.';
    END IF;
    SELECT @extschema@._copy_type(a.atttypid, a.atttypmod) INTO key_type
      FROM pg_attribute a WHERE a.attrelid = base AND a.attname = key_col;
    IF subject IS NOT NULL THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I = $1::%s)', base, key_col, key_type)
           INTO present USING subject;
    END IF;
END
$$;

-- every column of the row, as the caller sees it (clear, masked or hidden,
-- by its clearance and approvals); an admin event names the columns shown
-- in clear.
CREATE FUNCTION @extschema@._subject_held(caller regrole, tbl regclass, subject text) RETURNS TABLE(section text, item text, value text, at timestamp with time zone, by_role text, detail text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t        record := @extschema@._subject_table(tbl);   -- (the row is known to be there)
    a        record;
    acc      text;
    expr     text;
    fn       regprocedure;
    shown    name[] := '{}';
BEGIN
    FOR a IN SELECT att.attname, att.atttypid, r.column_name IS NOT NULL AS protected, r.level,
                    r.mask_function, r.mask_args
               FROM pg_attribute att
               LEFT JOIN @extschema@.column_rules r ON r.base = t.base AND r.column_name = att.attname
              WHERE att.attrelid = t.base AND att.attnum > 0 AND NOT att.attisdropped
              ORDER BY att.attnum LOOP
        acc := CASE WHEN NOT a.protected THEN 'clear'
                    ELSE @extschema@.column_access(caller, t.base, a.attname) END;
        -- (a live approval of this row, for the caller, shows it in clear)
        IF acc <> 'clear' AND EXISTS (
               SELECT 1 FROM @extschema@.grants g
                WHERE g.kind = 'unmask' AND g.base = t.base AND g.revoked_at IS NULL
                  AND now() >= g.valid_from AND now() < g.valid_until
                  AND pg_has_role(caller, g.role, 'USAGE')
                  AND (g.row_keys IS NULL OR subject = ANY (g.row_keys))
                  AND (g.columns IS NULL OR a.attname = ANY (g.columns))) THEN
            acc := 'clear';
        END IF;
        IF acc = 'clear' AND a.protected THEN
            shown := shown || a.attname;
        END IF;
        expr := CASE WHEN a.atttypid = '@extschema@.encrypted_text'::regtype THEN format('@extschema@.decrypt(%I)', a.attname)
                     WHEN a.atttypid = '@extschema@.encrypted_bytea'::regtype THEN format('@extschema@.decrypt(%I)', a.attname)
                     ELSE quote_ident(a.attname) END;
        IF acc = 'masked' THEN
            fn := to_regprocedure(a.mask_function);
            IF fn IS NULL OR @extschema@._mask_problem(fn) IS NOT NULL THEN
                acc := 'hidden';
            ELSE
                expr := @extschema@._mask_expr(fn, a.mask_args, expr);
            END IF;
        END IF;
        section := 'held'; item := a.attname; at := NULL; by_role := NULL;
        detail := format('%s, %s', coalesce(a.level::text, 'public'), acc);
        IF acc = 'hidden' THEN
            value := NULL;
        ELSE
            -- (format's %s: the type's output function, never a cast someone wrote)
            EXECUTE format('SELECT format(''%%s'', %s) FROM %s WHERE %I = $1::%s', expr, t.base, t.key_col, t.key_type)
               INTO value USING subject;
        END IF;
        RETURN NEXT;
    END LOOP;
    PERFORM @extschema@._audit_admin('subject_report',
        format('subject report of %s row %s for %s; in clear: %s', t.relation, subject, caller,
               coalesce(nullif(array_to_string(shown, ', '), ''), 'nothing protected')));
END
$$;

-- the approvals that named the row.
CREATE FUNCTION @extschema@._subject_approvals(tbl regclass, subject text) RETURNS TABLE(section text, item text, value text, at timestamp with time zone, by_role text, detail text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t        record := @extschema@._subject_table(tbl);   -- (the row is known to be there)
    a        record;
BEGIN
    FOR a IN SELECT g.* FROM @extschema@.grants g
              WHERE g.base = t.base AND subject = ANY (g.row_keys) ORDER BY g.grant_id LOOP
        section := 'approval'; item := format('%s grant %s', a.kind, a.grant_id);
        value := array_to_string(a.columns, ', '); at := a.valid_from; by_role := a.role::text;
        detail := format('until %s, approved by %s: %s%s', a.valid_until, a.approver, a.reason,
                         CASE WHEN a.revoked_at IS NOT NULL THEN format(' (revoked %s)', a.revoked_at) ELSE '' END);
        RETURN NEXT;
    END LOOP;
END
$$;

-- the customer's consents, live and withdrawn.
CREATE FUNCTION @extschema@._subject_consents(tbl regclass, subject text) RETURNS TABLE(section text, item text, value text, at timestamp with time zone, by_role text, detail text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t        record := @extschema@._subject_table(tbl);   -- (the row is known to be there)
    a        record;
BEGIN
    FOR a IN SELECT c.* FROM @extschema@.consents c
              WHERE c.base = t.base AND c.row_key = subject ORDER BY c.consent_id LOOP
        section := 'consent'; item := a.purpose;
        value := coalesce(array_to_string(a.columns, ', '), 'all protected columns');
        at := a.given_at; by_role := a.recorded_by::text;
        detail := a.how || CASE WHEN a.withdrawn_at IS NOT NULL
                                THEN format('; withdrawn %s (%s)', a.withdrawn_at, a.withdrawn_how) ELSE '' END;
        RETURN NEXT;
    END LOOP;
END
$$;

-- how many rows of other tables refer to it (one-column foreign keys).
CREATE FUNCTION @extschema@._subject_related(tbl regclass, subject text) RETURNS TABLE(section text, item text, value text, at timestamp with time zone, by_role text, detail text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t        record := @extschema@._subject_table(tbl);   -- (the row is known to be there)
    a        record;
BEGIN
    FOR a IN SELECT k.conrelid::regclass AS rel, (SELECT att.attname FROM pg_attribute att
                                                   WHERE att.attrelid = k.conrelid AND att.attnum = k.conkey[1]) AS col
               FROM pg_constraint k
              WHERE k.contype = 'f' AND k.confrelid = t.base AND cardinality(k.conkey) = 1
                AND (SELECT att.attname FROM pg_attribute att
                      WHERE att.attrelid = k.confrelid AND att.attnum = k.confkey[1]) = t.key_col
              ORDER BY 1 LOOP
        section := 'related'; item := coalesce((SELECT format('%I.%I', p.view_schema, p.view_name)
                                                  FROM @extschema@.protected_tables p WHERE p.base = a.rel),
                                                 a.rel::text);
        EXECUTE format('SELECT count(*)::text FROM %s WHERE %I = $1::%s', a.rel, a.col, t.key_type)
           INTO value USING subject;
        at := NULL; by_role := NULL; detail := format('rows whose %I is %s', a.col, subject);
        RETURN NEXT;
    END LOOP;
END
$$;

-- every read, export and change the audit trail records of it.
CREATE FUNCTION @extschema@._subject_events(tbl regclass, subject text) RETURNS TABLE(section text, item text, value text, at timestamp with time zone, by_role text, detail text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t        record := @extschema@._subject_table(tbl);   -- (the row is known to be there)
    a        record;
BEGIN
    FOR a IN SELECT l.event_time, l.kind, l.operation, l.session_role, l.acting_role, l.application_name,
                    CASE WHEN subject = ANY (l.row_keys) THEN 'clear' ELSE 'masked' END AS access,
                    CASE WHEN subject = ANY (l.row_keys)
                         THEN coalesce(l.columns_clear, l.columns_changed) ELSE l.columns_masked END AS columns
               FROM @extschema@.audit_log l
              WHERE l.relation = t.relation AND l.kind IN ('read', 'export', 'write')
                AND (subject = ANY (l.row_keys) OR subject = ANY (l.row_keys_masked))
              ORDER BY l.event_time, l.event_id LOOP
        section := CASE a.kind WHEN 'write' THEN 'changed' WHEN 'export' THEN 'exported' ELSE 'read' END;
        item := a.operation; value := array_to_string(a.columns, ', '); at := a.event_time;
        by_role := CASE WHEN a.acting_role = a.session_role THEN a.session_role
                        ELSE format('%s (as %s)', a.session_role, a.acting_role) END;
        detail := CASE WHEN a.kind = 'write' THEN 'changed' ELSE a.access END
                  || coalesce(', by ' || nullif(a.application_name, ''), '');
        RETURN NEXT;
    END LOOP;
END
$$;

-- The customer's request to know what is held and who saw it: for the row
-- of tbl whose row key is row_key -- what is held, column by column (its
-- level, and its value as the caller sees it: clear, masked or hidden, by
-- the caller's clearance and approvals), the approvals that named the row,
-- the rows of other protected tables that refer to it, and from the audit
-- trail every read, export and change of it: when, by whom, which
-- columns, clear or masked.  For pii_guard_auditor (the person who answers
-- such requests; administrators do not read the audit trail); each report
-- is an admin event naming the columns it showed in clear.
CREATE FUNCTION @extschema@._subject_report(caller regrole, tbl regclass, subject text) RETURNS TABLE(section text, item text, value text, at timestamp with time zone, by_role text, detail text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t        record;
BEGIN
    PERFORM @extschema@._acting_as(caller, 'report');
    SELECT * INTO t FROM @extschema@._subject_table(tbl, subject);
    IF NOT t.present THEN
        RAISE EXCEPTION 'no row of % has row key %', t.relation, subject
            USING ERRCODE = 'no_data_found';
    END IF;

    RETURN QUERY SELECT * FROM @extschema@._subject_held(caller, t.base, subject);
    RETURN QUERY SELECT * FROM @extschema@._subject_approvals(t.base, subject);
    RETURN QUERY SELECT * FROM @extschema@._subject_consents(t.base, subject);
    RETURN QUERY SELECT * FROM @extschema@._subject_related(t.base, subject);
    RETURN QUERY SELECT * FROM @extschema@._subject_events(t.base, subject);
END
$$;

-- The right to deletion: the row of tbl whose row key is row_key is
-- deleted through its masking view, with the caller's own privileges (the
-- DELETE privilege, row-level security, the view's write path; what its
-- foreign keys cascade to goes too, a foreign key that restricts stops it,
-- 23503), then recorded as an admin event with the reason and the count,
-- once _audit_erasure has seen that the row is gone.  Its row key stays in
-- the audit trail, as the record of the erasure and of what was done with
-- the data before.  (Not with the definer's rights: triggers the table's
-- owner put on it would run with them.)
CREATE FUNCTION @extschema@._audit_erasure(caller regrole, tbl regclass, subject text, reason text, n bigint) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t      record;
BEGIN
    PERFORM @extschema@._acting_as(caller, 'erase');
    SELECT * INTO t FROM @extschema@._subject_table(tbl, subject);
    IF t.present OR n < 1 THEN
        RAISE EXCEPTION 'row % of % was not erased', subject, t.relation
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM @extschema@._audit_admin('erase_subject',
        format('%s row %s erased by %s: %s', t.relation, subject, caller, reason));
    -- and the person's subject key, if any (crypto-shredding, below)
    PERFORM @extschema@._shred(tbl, subject, 'erased: ' || reason);
END
$$;

-- The one-column foreign keys of rel that name a protected table's row key:
-- the column, and that table.  (Whose each row of rel is: retention by
-- activity, crypto-shredding by a foreign key.)
CREATE FUNCTION @extschema@._row_key_fks(rel regclass, OUT col name, OUT base regclass) RETURNS SETOF record
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT a.attname, p.base
      FROM pg_constraint k
      JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
      JOIN pg_attribute f ON f.attrelid = k.confrelid AND f.attnum = k.confkey[1]
      JOIN @extschema@.protected_tables p ON p.base = k.confrelid AND p.row_key = f.attname
     WHERE k.conrelid = rel AND k.contype = 'f' AND cardinality(k.conkey) = 1
     ORDER BY k.conname
$$;

-- One batch of one rule, with the caller's privileges on the base table
-- (the table's owner, or whoever it let): at most batch_rows of the rows
-- expired at cutoff (anonymise: those not anonymised yet); how many.
CREATE FUNCTION @extschema@._retention_batch(tbl regclass, cutoff timestamp with time zone) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r       record;
    t       record;
    sets    text;
    todo    text;
    n       bigint;
    gone    text[];
    expired text;
BEGIN
    SELECT * INTO r FROM @extschema@.retention_rules WHERE base = tbl;
    SELECT * INTO t FROM @extschema@._subject_table(tbl);
    -- expired: its date before the cutoff, and no activity since
    expired := format('x.%I < $1', r.date_column);
    IF r.activity IS NOT NULL THEN
        expired := expired || format(' AND NOT EXISTS (SELECT 1 FROM %s a WHERE a.%I = x.%I AND a.%I >= $1)',
                                     r.activity, r.activity_key, t.key_col, r.activity_column);
    END IF;
    IF r.action = 'delete' THEN
        EXECUTE format('WITH d AS (DELETE FROM %s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %s x WHERE %s LIMIT %s)) '
                       '          RETURNING %I::text AS k) '
                       'SELECT count(*), array_agg(k) FROM d',
                       t.base, t.base, expired, r.batch_rows, t.key_col)
          INTO n, gone USING cutoff;
        -- the subject keys of the deleted people go with them (crypto-shredding)
        IF n > 0 AND EXISTS (SELECT 1 FROM @extschema@.shredding s WHERE s.subject_base = t.base) THEN
            PERFORM @extschema@._shred_gone(t.base, gone,
                format('retention: %I before %s', r.date_column, cutoff));
        END IF;
        RETURN n;
    ELSE
        SELECT string_agg(format('%I = %s', a.attname, CASE WHEN a.attnotnull THEN quote_literal('') ELSE 'NULL' END), ', '),
               string_agg(format('%I %s', a.attname,
                                 CASE WHEN a.attnotnull THEN '<> ' || quote_literal('') ELSE 'IS NOT NULL' END), ' OR ')
          INTO sets, todo
          FROM @extschema@.column_rules c JOIN pg_attribute a ON a.attrelid = c.base AND a.attname = c.column_name
         WHERE c.base = t.base;
        IF sets IS NULL THEN
            RETURN 0;
        END IF;
        EXECUTE format('UPDATE %s SET %s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %s x WHERE %s AND (%s) LIMIT %s))',
                       t.base, sets, t.base, expired, todo, r.batch_rows)
          USING cutoff;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- (the admin event of a committed batch, and the rule's last run)
CREATE FUNCTION @extschema@._audit_retention(tbl regclass, n bigint, cutoff timestamp with time zone) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r  record;
BEGIN
    SELECT * INTO r FROM @extschema@.retention_rules WHERE base = tbl;
    UPDATE @extschema@.retention_rules SET last_applied = now() WHERE @extschema@._relname(base) = @extschema@._relname_here(tbl::regclass);
    IF n > 0 THEN
        PERFORM @extschema@._audit_admin('apply_retention',
            format('%s: %s rows %s (%I before %s)', (SELECT x.relation FROM @extschema@._subject_table(tbl) x),
                   n, CASE r.action WHEN 'delete' THEN 'deleted' ELSE 'anonymised' END, r.date_column, cutoff));
    END IF;
END
$$;

CREATE FUNCTION @extschema@._shred_by(caller regrole, tbl regclass, subject_column name) RETURNS TABLE(base regclass, encrypted name[])
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t      record;
    col    name := subject_column;
    sbase  regclass;
BEGIN
    PERFORM @extschema@._acting_as(caller, 'shred_by');
    SELECT * INTO t FROM @extschema@._subject_table(tbl);
    col := coalesce(col, t.key_col);
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.base AND a.attname = col
                      AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" of % does not exist', col, t.relation
            USING ERRCODE = 'undefined_column';
    END IF;
    IF col = t.key_col THEN
        sbase := t.base;
    ELSE
        -- a one-column foreign key to a protected table's row key
        SELECT r.base INTO sbase FROM @extschema@._row_key_fks(t.base) r WHERE r.col = _shred_by.subject_column LIMIT 1;
        IF sbase IS NULL THEN
            RAISE EXCEPTION 'column "%" of % names no protected table''s row key', col, t.relation
                USING ERRCODE = 'invalid_foreign_key',
                      HINT = 'Name the table''s row key, or a column with a foreign key to the row key of the protected table its subjects are in.';
        END IF;
    END IF;
    INSERT INTO @extschema@.shredding VALUES (t.base, col, sbase)
    ON CONFLICT ON CONSTRAINT shredding_pkey
    DO UPDATE SET subject_column = EXCLUDED.subject_column, subject_base = EXCLUDED.subject_base;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger g
                    WHERE g.tgrelid = t.base AND g.tgname = 'zzz_pii_guard_subject_seal') THEN
        EXECUTE format('CREATE TRIGGER zzz_pii_guard_subject_seal BEFORE INSERT OR UPDATE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION @extschema@._subject_seal()', t.base);
    END IF;
    PERFORM @extschema@._audit_admin('shred_by',
        format('%s: values under the keys of the subjects of %s named by %I', t.relation, sbase, col));
    RETURN QUERY
        SELECT t.base, array_agg(a.attname ORDER BY a.attnum)
          FROM pg_attribute a
         WHERE a.attrelid = t.base AND a.attnum > 0 AND NOT a.attisdropped
           AND a.atttypid IN ('@extschema@.encrypted_text'::regtype, '@extschema@.encrypted_bytea'::regtype);
END
$$;

-- Destroy the key of the subject row_key of tbl (a subject table): its
-- values, in this database and in every dump, backup or copy, no longer
-- decrypt.  Returns the key id, or NULL when the subject had no key.
CREATE FUNCTION @extschema@._shred(tbl regclass, row_key text, reason text) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t   record;
    k   text;
    id  bigint;
BEGIN
    SELECT * INTO t FROM @extschema@._subject_table(tbl);
    EXECUTE format('SELECT $1::%s::text', t.key_type) INTO k USING row_key;
    UPDATE @extschema@.subject_keys s
       SET wrapped_key = NULL, master_key_fingerprint = NULL, shredded_at = now(),
           shredded_by = session_user, reason = _shred.reason
     WHERE s.subject_base = t.base AND s.row_key = k AND s.shredded_at IS NULL
    RETURNING s.key_id INTO id;
    IF id IS NOT NULL THEN
        PERFORM @extschema@._audit_admin('shred_subject',
            format('%s row %s: subject key %s destroyed by %s: %s', t.relation, k, id, session_user, reason));
    END IF;
    RETURN id;
END
$$;

-- reencrypt_column() in steps.  The tables that hold the rows of tbl: tbl
-- and everything that inherits from it (partitions included), each
-- processed by itself (UPDATE ONLY); checked: col is an encrypted column,
-- no foreign table is among them, no row-level security hides rows (they
-- would stay under their old key).
CREATE FUNCTION @extschema@._reencrypt_tables(tbl regclass, col name) RETURNS regclass[]
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    coltype regtype;
    rels    regclass[];
    rel     regclass;
BEGIN
    SELECT a.atttypid::regtype INTO coltype
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF coltype IS NULL THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl
            USING ERRCODE = 'undefined_column';
    END IF;
    IF coltype NOT IN ('@extschema@.encrypted_text'::regtype,
                       '@extschema@.encrypted_bytea'::regtype) THEN
        RAISE EXCEPTION 'column "%" of relation % is not an encrypted column', col, tbl
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = format('Its type is %s.', coltype),
                  HINT = 'Only encrypted_text and encrypted_bytea columns can be re-encrypted.';
    END IF;
    SELECT array_agg(c.oid::regclass ORDER BY c.oid) FILTER (WHERE c.relkind = 'r'),
           (array_agg(c.oid::regclass ORDER BY c.oid) FILTER (WHERE c.relkind = 'f'))[1]
      INTO rels, rel
      FROM @extschema@._descendants(tbl) d JOIN pg_class c ON c.oid = d.rel;
    IF rel IS NOT NULL THEN
        RAISE EXCEPTION 'cannot re-encrypt the foreign table % of %', rel, tbl
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Re-encrypt the values where the foreign table''s data lives.';
    END IF;
    FOREACH rel IN ARRAY coalesce(rels, '{}') LOOP
        IF row_security_active(rel) THEN
            RAISE EXCEPTION 'row-level security on % hides rows from %', rel, current_user
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'Rows the caller cannot see would stay under their old key.',
                      HINT = 'Run reencrypt_column as the table''s owner or as a role with BYPASSRLS.';
        END IF;
    END LOOP;
    RETURN coalesce(rels, '{}');
END
$$;

-- One pass over one table: the values of col not under the active key
-- (values under subject keys, 2^31 and up, left as they are) re-encrypted
-- in batches of about batch_rows rows, a transaction each, its progress
-- kept in reencrypt_progress so that an interrupted pass resumes; done
-- grows by the values re-encrypted.  (A procedure, for its COMMITs: no SET
-- clause, so every name is qualified.)
CREATE PROCEDURE @extschema@._reencrypt_table(IN rel regclass, IN col name, IN active integer, IN batch_rows integer, INOUT done bigint)
    LANGUAGE plpgsql
    AS $proc$
DECLARE
    pages bigint;
    step  bigint;
    blk   bigint;
    n     bigint;
    citus "char";
    ok    boolean;
    why   text;
    qcol  text := pg_catalog.replace(pg_catalog.quote_ident(col), '%', '%%');
BEGIN
    -- A Citus table's rows are in its shards, on the workers: every pass
    -- re-encrypts up to batch_rows rows of each shard, on the shard, and
    -- commits, until no shard has any left.
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        EXECUTE 'SELECT partmethod FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1'
           INTO citus USING rel;
    END IF;
    IF citus = 'n' THEN
        RAISE EXCEPTION 'reencrypt_column does not re-encrypt the Citus reference or local table %', rel
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Its placements would each get different ciphertexts of the same values.',
                  HINT = 'Copy its rows into a new table with INSERT ... SELECT, which encrypts under the active key.';
    ELSIF citus IS NOT NULL THEN
        LOOP
            -- (A rotation meanwhile: the shards would re-encrypt to the new
            -- key, never to this one; the caller starts over with it.)
            EXIT WHEN @extschema@.key_id(@extschema@.encrypt(''::text)) <> active;
            EXECUTE 'SELECT pg_catalog.sum(pg_catalog.split_part(r.result, '' '', 2)::bigint) FILTER (WHERE r.success), '
                    '       pg_catalog.bool_and(r.success), pg_catalog.min(r.result) FILTER (WHERE NOT r.success) '
                    '  FROM pg_catalog.run_command_on_shards($1, $2) r'
               INTO n, ok, why
              USING rel, pg_catalog.format(
                    'UPDATE %%s SET %s = @extschema@.reencrypt(%s) WHERE ctid = ANY (ARRAY('
                    'SELECT ctid FROM %%1$s WHERE @extschema@.key_id(%s) <> %s '
                    'AND @extschema@.key_id(%s) < 2147483648 LIMIT %s))',
                    -- (Citus formats the command again, with the shard's
                    -- name: a % in the column's name must reach it doubled)
                    qcol, qcol, qcol, active, qcol, batch_rows);
            IF NOT ok THEN
                RAISE EXCEPTION 'could not re-encrypt a shard of %', rel
                    USING ERRCODE = 'connection_failure', DETAIL = why;
            END IF;
            done := done + coalesce(n, 0);
            COMMIT;
            EXIT WHEN coalesce(n, 0) = 0;
        END LOOP;
        RETURN;
    END IF;
    SELECT p.next_block INTO blk FROM @extschema@.reencrypt_progress p
     WHERE p.table_oid = rel AND p.column_name = col AND p.key_id = active;
    IF blk IS NULL THEN
        blk := 0;
        DELETE FROM @extschema@.reencrypt_progress p
         WHERE p.table_oid = rel AND p.column_name = col;
        INSERT INTO @extschema@.reencrypt_progress (table_oid, column_name, key_id, next_block)
        VALUES (rel, col, active, 0);
        COMMIT;
    ELSE
        RAISE NOTICE 'resuming re-encryption of %.% at block %', rel, col, blk;
    END IF;

    pages := pg_catalog.pg_relation_size(rel) / pg_catalog.current_setting('block_size')::bigint;
    -- Pages per batch, from the planner's rows-per-page estimate.
    SELECT greatest(1, batch_rows / CASE WHEN c.reltuples > 0 AND c.relpages > 0
                                         THEN c.reltuples / c.relpages ELSE 100 END)::bigint
      INTO step FROM pg_catalog.pg_class c WHERE c.oid = rel;

    WHILE blk < pages LOOP
        EXECUTE pg_catalog.format(
            'UPDATE ONLY %s SET %I = @extschema@.reencrypt(%I) '
            'WHERE ctid >= $1 AND ctid < $2 AND @extschema@.key_id(%I) <> $3 '
            'AND @extschema@.key_id(%I) < 2147483648',
            rel, col, col, col, col)
          USING pg_catalog.format('(%s,0)', blk)::tid,
                pg_catalog.format('(%s,0)', blk + step)::tid, active;
        GET DIAGNOSTICS n = ROW_COUNT;
        done := done + n;
        blk := blk + step;
        UPDATE @extschema@.reencrypt_progress p
           SET next_block = blk, updated_at = pg_catalog.now()
         WHERE p.table_oid = rel AND p.column_name = col;
        COMMIT;
    END LOOP;
END
$proc$;

-- The subject keys of rows of tbl that are gone (of the keys given: the
-- rows a retention batch deleted), destroyed; how many.
CREATE FUNCTION @extschema@._shred_gone(tbl regclass, keys text[], reason text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t     record;
    gone  text[];
    n     integer;
BEGIN
    SELECT * INTO t FROM @extschema@._subject_table(tbl);
    EXECUTE format('SELECT array_agg(k) FROM unnest($1) k WHERE NOT EXISTS (SELECT 1 FROM %s x WHERE x.%I = k::%s)',
                   t.base, t.key_col, t.key_type)
       INTO gone USING keys;
    UPDATE @extschema@.subject_keys s
       SET wrapped_key = NULL, master_key_fingerprint = NULL, shredded_at = now(),
           shredded_by = session_user, reason = _shred_gone.reason
     WHERE s.subject_base = t.base AND s.row_key = ANY (gone) AND s.shredded_at IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM @extschema@._audit_admin('shred_subject',
            format('%s: %s subject keys destroyed by %s: %s', t.relation, n, session_user, reason));
    END IF;
    RETURN n;
END
$$;

-- The names of a protected table and of its two views, quoted.
CREATE FUNCTION @extschema@._view_names(base oid, OUT base_q text, OUT view_q text, OUT write_q text) RETURNS record
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT format('%I.%I', n.nspname, c.relname),
           format('%I.%I', p.view_schema, p.view_name),
           format('%I.%I', n.nspname, p.write_view_name)
      FROM @extschema@.protected_tables p
      JOIN pg_class c ON c.oid = p.base
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE p.base = $1
$$;

-- After ALTER TABLE ... RENAME COLUMN: the column's rules, the row key, the
-- saved grants and the views' columns follow it (the views keep their
-- columns by position, so renaming the column there first lets them be
-- replaced).  The saved grants are renamed where they are kept, so that a
-- view dropped later by something else comes back with them.
CREATE FUNCTION @extschema@._views_follow_rename(tbl oid, rename_from text, rename_to text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    names record;
    v     regclass;
BEGIN
    SELECT * INTO names FROM @extschema@._view_names(tbl);
    UPDATE @extschema@.column_rules r SET column_name = rename_to
     WHERE @extschema@._relname(r.base) = @extschema@._relname_here(tbl::regclass) AND r.column_name = rename_from;
    UPDATE @extschema@.protected_tables t
       SET row_key = CASE WHEN t.row_key = rename_from THEN rename_to ELSE t.row_key END,
           saved_grants = (SELECT array_agg(regexp_replace(s, format(' \(%s\) ON ', quote_ident(rename_from)),
                                                           format(' (%s) ON ', quote_ident(rename_to))))
                             FROM unnest(t.saved_grants) s)
     WHERE @extschema@._relname(t.base) = @extschema@._relname_here(tbl::regclass);
    FOREACH v IN ARRAY ARRAY[to_regclass(names.view_q), to_regclass(names.write_q)] LOOP
        IF EXISTS (SELECT 1 FROM pg_attribute att WHERE att.attrelid = v
                      AND att.attname = rename_from AND NOT att.attisdropped) THEN
            EXECUTE format('ALTER VIEW %s RENAME COLUMN %I TO %I', v, rename_from, rename_to);
        END IF;
    END LOOP;
END
$$;

-- The rules follow the table's columns: those of columns that went go, the
-- row key must still be there, and an encrypted column without a rule gets
-- one (sensitive, no mask: clear only for enough clearance) -- encrypted
-- columns are never shown raw.
CREATE FUNCTION @extschema@._reconcile_rules(tbl oid) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    key name := (SELECT t.row_key FROM @extschema@.protected_tables t WHERE t.base = tbl);
    cols name[];
    col name;
BEGIN
    -- (the catalog read first: on Citus, column_rules is a reference table,
    -- and Citus writes one only with values it can send to every node)
    cols := ARRAY(SELECT att.attname FROM pg_attribute att
                   WHERE att.attrelid = tbl AND att.attnum > 0 AND NOT att.attisdropped);
    DELETE FROM @extschema@.column_rules r
     WHERE @extschema@._relname(r.base) = @extschema@._relname_here(tbl::regclass) AND r.column_name <> ALL (cols);
    IF NOT EXISTS (SELECT 1 FROM pg_attribute att
                    WHERE att.attrelid = tbl AND att.attname = key
                      AND att.attnum > 0 AND NOT att.attisdropped) THEN
        RAISE EXCEPTION 'the row key column "%" of protected table % no longer exists', key, tbl::regclass
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Unprotect the table before dropping or renaming its row key.';
    END IF;
    -- (one row at a time: Citus would copy the rows of an INSERT ... SELECT
    -- with the coordinator's OID in base, which names nothing on a worker)
    FOR col IN SELECT att.attname FROM pg_attribute att
                WHERE att.attrelid = tbl AND att.attnum > 0 AND NOT att.attisdropped
                  AND att.atttypid IN ('@extschema@.encrypted_text'::regtype, '@extschema@.encrypted_bytea'::regtype)
    LOOP
        INSERT INTO @extschema@.column_rules (base, column_name, level)
        VALUES (tbl, col, 'sensitive')
        ON CONFLICT DO NOTHING;
    END LOOP;
END
$$;

-- The queries of the two views.  The masking view shows each protected
-- column through reveal() (cast back to the column's typmod, with the
-- column's collation; encrypted columns become text with the default
-- collation); the write view has every column, the row key among them (for
-- RETURNING and to find rows).  keep_out: the columns the write trigger
-- never writes (generated, identity ALWAYS).
--
-- The masking view names every mask function its rules use, in a condition
-- the planner folds away: that records a dependency, so a mask function
-- cannot be dropped from under the view, and a decision can tell the
-- function the view was built with from another that took its name
-- (policy.c).  One "IS NOT NULL" per function: a test of a constant folds
-- at once, where an ARRAY[...] of them would be evaluated by an executor of
-- its own at every planning.  Not security_barrier: the view has no quals
-- of its own to protect, every protected column is only ever reached
-- through reveal(), and a flattened view lets ORDER BY ... LIMIT evaluate
-- reveal() for the rows returned only, not for every row sorted.
CREATE FUNCTION @extschema@._view_queries(tbl oid, OUT view_sql text, OUT write_sql text, OUT keep_out text[]) RETURNS record
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    WITH t AS (SELECT n.base_q, p.row_key
                 FROM @extschema@.protected_tables p, @extschema@._view_names(p.base) n
                WHERE p.base = $1),
    cols AS (
        SELECT att.attnum, att.attname, att.attidentity, att.attgenerated,
               r.column_name IS NOT NULL AS protected,
               CASE WHEN att.atttypmod >= 0
                    THEN '::' || format_type(att.atttypid, att.atttypmod) ELSE '' END AS typmod_cast,
               CASE WHEN att.attcollation <> 0
                    THEN format(' COLLATE %I.%I', cn.nspname, co.collname)
                    WHEN att.atttypid = '@extschema@.encrypted_text'::regtype
                    THEN ' COLLATE pg_catalog."default"'
                    ELSE '' END AS coll
          FROM pg_attribute att
          LEFT JOIN pg_collation co ON co.oid = att.attcollation
          LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
          LEFT JOIN @extschema@.column_rules r ON r.base = att.attrelid AND r.column_name = att.attname
         WHERE att.attrelid = $1 AND att.attnum > 0 AND NOT att.attisdropped),
    masks AS (
        SELECT array_agg(DISTINCT format('%L::pg_catalog.regprocedure IS NOT NULL', f::oid::text)) AS conds
          FROM (SELECT to_regprocedure(r.mask_function) AS f FROM @extschema@.column_rules r
                 WHERE r.base = $1 AND r.mask_function IS NOT NULL) s
         WHERE f IS NOT NULL)
    SELECT format('SELECT %s FROM %s',
                  (SELECT string_agg(CASE WHEN c.protected
                                          THEN format('@extschema@.reveal(%I, %L::regclass, %L::name, %I)%s%s AS %I',
                                                      c.attname, t.base_q, c.attname, t.row_key,
                                                      c.typmod_cast, c.coll, c.attname)
                                          ELSE format('%I', c.attname) END, ', ' ORDER BY c.attnum)
                     FROM cols c), t.base_q)
           || CASE WHEN m.conds IS NULL THEN ''
                   ELSE format(' WHERE %s', array_to_string(m.conds, ' AND ')) END,
           format('SELECT %s FROM %s',
                  (SELECT string_agg(format('%I', c.attname), ', ' ORDER BY c.attnum) FROM cols c), t.base_q),
           (SELECT coalesce(array_agg(c.attname::text ORDER BY c.attnum), '{}') FROM cols c
             WHERE c.attgenerated <> '' OR c.attidentity = 'a')
      FROM t, masks m
$$;

-- Each view replaced in place; one that cannot be (a column went or changed
-- its type) is dropped -- refused while others depend on it -- and created
-- again, owned by pii_guard_owner and closed to PUBLIC.
CREATE FUNCTION @extschema@._put_views(tbl oid, view_sql text, write_sql text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    names    record;
    replaced boolean := false;
BEGIN
    SELECT * INTO names FROM @extschema@._view_names(tbl);
    IF to_regclass(names.view_q) IS NOT NULL THEN
        BEGIN
            EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', names.view_q, view_sql);
            replaced := true;
        EXCEPTION WHEN invalid_table_definition THEN
            replaced := false;
        END;
        IF NOT replaced THEN
            PERFORM @extschema@._detach_views(tbl, NULL, NULL);     -- both views
        END IF;
    END IF;
    IF to_regclass(names.write_q) IS NOT NULL THEN
        BEGIN
            EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', names.write_q, write_sql);
        EXCEPTION WHEN invalid_table_definition THEN
            IF @extschema@._dependents(ARRAY[to_regclass(names.write_q)]) IS NOT NULL THEN
                RAISE EXCEPTION 'cannot rebuild the write view %: other objects depend on it', names.write_q
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = format('Drop %s first, then run the statement again.',
                                        @extschema@._dependents(ARRAY[to_regclass(names.write_q)]));
            END IF;
            EXECUTE format('DROP VIEW %s', names.write_q);
        END;
    END IF;
    IF to_regclass(names.write_q) IS NULL THEN
        EXECUTE format('CREATE VIEW %s AS %s', names.write_q, write_sql);
        EXECUTE format('ALTER VIEW %s OWNER TO pii_guard_owner', names.write_q);
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', names.write_q);
    END IF;
    IF to_regclass(names.view_q) IS NULL THEN
        EXECUTE format('CREATE VIEW %s AS %s', names.view_q, view_sql);
        EXECUTE format('ALTER VIEW %s OWNER TO pii_guard_owner', names.view_q);
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', names.view_q);
        EXECUTE format('COMMENT ON VIEW %s IS %L', names.view_q,
                       format('pii_guard masking view of %s: columns are shown clear, masked or NULL according to the current role', names.base_q));
    END IF;
    UPDATE @extschema@.protected_tables t SET names_masks = true WHERE @extschema@._relname(t.base) = @extschema@._relname_here(tbl::regclass) AND NOT t.names_masks;
END
$$;

-- The masking view's write path: its INSTEAD OF trigger (its arguments:
-- the columns it never writes), and the table's column defaults (serial,
-- identity BY DEFAULT, now(), ...), which apply to inserts through the
-- view, and only those.
CREATE FUNCTION @extschema@._view_write_path(tbl oid, keep_out text[]) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    names record;
    a     record;
BEGIN
    SELECT * INTO names FROM @extschema@._view_names(tbl);
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = to_regclass(names.view_q)
                  AND t.tgname = 'pii_guard_write') THEN
        EXECUTE format('DROP TRIGGER pii_guard_write ON %s', names.view_q);
    END IF;
    EXECUTE format('CREATE TRIGGER pii_guard_write INSTEAD OF INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION @extschema@.masking_view_write(%s)', names.view_q,
                   (SELECT string_agg(quote_literal(x), ', ') FROM unnest(keep_out) x));
    FOR a IN
        SELECT att.attname,
               CASE WHEN att.attidentity = 'd'
                    THEN format('pg_catalog.nextval(%L::regclass)', pg_get_serial_sequence(names.base_q, att.attname))
                    WHEN att.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS expr,
               v.atthasdef AS view_has_default
          FROM pg_attribute att
          LEFT JOIN pg_attrdef d ON d.adrelid = att.attrelid AND d.adnum = att.attnum
          JOIN pg_attribute v ON v.attrelid = to_regclass(names.view_q) AND v.attname = att.attname
         WHERE att.attrelid = tbl AND att.attnum > 0 AND NOT att.attisdropped
    LOOP
        IF a.expr IS NOT NULL THEN
            EXECUTE format('ALTER VIEW %s ALTER COLUMN %I SET DEFAULT %s', names.view_q, a.attname, a.expr);
        ELSIF a.view_has_default THEN
            EXECUTE format('ALTER VIEW %s ALTER COLUMN %I DROP DEFAULT', names.view_q, a.attname);
        END IF;
    END LOOP;
END
$$;

-- The grants the masking view had (kept in saved_grants, also when it was
-- dropped by something else, such as DROP FUNCTION ... CASCADE of a mask),
-- or the table had when protected; the table's owner, who is exempt from
-- masking, reads and writes through the view like through the table; and
-- the write view's grants and sequence USAGE that follow from them.
CREATE FUNCTION @extschema@._restore_view_grants(tbl oid) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    g text;
BEGIN
    FOREACH g IN ARRAY coalesce((SELECT t.saved_grants FROM @extschema@.protected_tables t WHERE t.base = tbl), '{}') LOOP
        BEGIN
            EXECUTE g;
        EXCEPTION WHEN undefined_column OR undefined_object THEN
            NULL;   -- a column-level grant on a dropped column, a dropped role
        END;
    END LOOP;
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I',
                   (SELECT view_q FROM @extschema@._view_names(tbl)),
                   (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = tbl));
    PERFORM @extschema@._sync_write_grants(tbl);
END
$$;

-- A grantee as GRANT and REVOKE name it: PUBLIC (0) or the role's name.
CREATE FUNCTION @extschema@._grantee(role oid) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT CASE WHEN role = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(role)) END
$$;

-- The write view's privileges, rebuilt from the masking view's: everything
-- revoked first (privileges revoked on the masking view go too), then the
-- table's owner, the masking view's INSERT, UPDATE and DELETE grants, and
-- for each role that writes SELECT on the row key (UPDATE and DELETE need
-- it to find the row) and, for a role that inserts, INSERT on the columns
-- with a default: an insert through the masking view writes those it does
-- not name with the view's default (so that a sequence is drawn from once),
-- as on a table.
CREATE FUNCTION @extschema@._mirror_write_grants(tbl oid) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    names record;
    view  regclass;
    wv    regclass;
    key   name := (SELECT t.row_key FROM @extschema@.protected_tables t WHERE t.base = tbl);
    r     record;
    g     text;
BEGIN
    SELECT * INTO names FROM @extschema@._view_names(tbl);
    view := to_regclass(names.view_q);
    wv := to_regclass(names.write_q);
    FOR r IN SELECT DISTINCT a.grantee
               FROM pg_class c, aclexplode(c.relacl) a
              WHERE c.oid = wv AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', names.write_q, @extschema@._grantee(r.grantee));
    END LOOP;
    FOR r IN SELECT att.attname, a.grantee
               FROM pg_attribute att, aclexplode(att.attacl) a
              WHERE att.attrelid = wv AND att.attnum > 0
    LOOP
        EXECUTE format('REVOKE ALL (%I) ON %s FROM %s', r.attname, names.write_q, @extschema@._grantee(r.grantee));
    END LOOP;
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', names.write_q,
                   (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = tbl));
    FOREACH g IN ARRAY @extschema@._grants_of(view, names.write_q) LOOP
        IF g ~ '^GRANT (INSERT|UPDATE|DELETE)' THEN
            BEGIN
                EXECUTE g;
            EXCEPTION WHEN undefined_column THEN
                NULL;   -- a column a write view built by 0.1 lacks (generated)
            END;
        END IF;
    END LOOP;
    FOR r IN
        SELECT DISTINCT a.grantee, a.privilege_type = 'INSERT' AS inserts
          FROM (SELECT c.relacl AS acl FROM pg_class c WHERE c.oid = view
                UNION ALL
                SELECT att.attacl FROM pg_attribute att
                 WHERE att.attrelid = view AND att.attnum > 0) s,
               aclexplode(s.acl) a
         WHERE a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE')
    LOOP
        EXECUTE format('GRANT SELECT (%I) ON %s TO %s', key, names.write_q, @extschema@._grantee(r.grantee));
        IF r.inserts AND EXISTS (SELECT 1 FROM pg_attribute att
                                  WHERE att.attrelid = view AND att.atthasdef) THEN
            EXECUTE format('GRANT INSERT (%s) ON %s TO %s',
                           (SELECT string_agg(quote_ident(att.attname), ', ' ORDER BY att.attnum)
                              FROM pg_attribute att
                             WHERE att.attrelid = view AND att.atthasdef),
                           names.write_q, @extschema@._grantee(r.grantee));
        END IF;
    END LOOP;
END
$$;

-- USAGE on the sequences behind the defaults for every INSERT grantee of the
-- masking view (nextval() checks the inserting role): given (and recorded
-- in sequence_grants) where the role did not hold it, taken back where
-- pii_guard gave it and the role no longer inserts.
CREATE FUNCTION @extschema@._sync_sequence_usage(tbl oid) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT w.seq, w.grantee FROM @extschema@._sequence_usage_wanted(tbl) w
         WHERE NOT EXISTS (SELECT 1 FROM @extschema@.sequence_grants g
                            WHERE g.base = tbl AND g.seq = w.seq AND g.grantee::oid = w.grantee)
           AND NOT EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a
                            WHERE c.oid = w.seq AND a.grantee = w.grantee AND a.privilege_type = 'USAGE')
    LOOP
        EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %s', r.seq, @extschema@._grantee(r.grantee));
        INSERT INTO @extschema@.sequence_grants (base, seq, grantee) VALUES (tbl, r.seq, r.grantee::regrole);
    END LOOP;
    FOR r IN
        SELECT g.seq, g.grantee::oid AS grantee FROM @extschema@.sequence_grants g
         WHERE g.base = tbl
           AND NOT EXISTS (SELECT 1 FROM @extschema@._sequence_usage_wanted(tbl) w
                            WHERE w.seq = g.seq AND w.grantee = g.grantee::oid)
    LOOP
        DELETE FROM @extschema@.sequence_grants g
         WHERE @extschema@._relname(g.base) = @extschema@._relname_here(tbl::regclass) AND @extschema@._relname(g.seq) = @extschema@._relname_here(r.seq)
           AND coalesce(@extschema@._rolname(g.grantee), '') = coalesce(@extschema@._rolname_here(nullif(r.grantee, 0)::regrole), '');
        IF r.grantee = 0 OR EXISTS (SELECT 1 FROM pg_roles WHERE oid = r.grantee) THEN
            EXECUTE format('REVOKE USAGE ON SEQUENCE %s FROM %s', r.seq, @extschema@._grantee(r.grantee));
        END IF;
    END LOOP;
END
$$;

-- Trigger and event-trigger functions
-- ===================================

CREATE FUNCTION @extschema@.data_keys_changed() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_data_keys_changed';

-- Any change to the policy makes every backend recompute its decisions.
CREATE FUNCTION @extschema@.policy_changed() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_policy_changed';

-- Grants are issued by pii_guard_approver members, for someone else, for
-- at most pii_guard.max_grant_duration (a superuser's setting, 7 days by
-- default); once issued, only their revocation can change.  (Whether a
-- grant counts at all is decided again at use: policy.c ignores one whose
-- approver is the reader or could act as the reader.)
--
-- A grant's purpose is fixed like the rest of it.
CREATE FUNCTION @extschema@.grants_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    longest interval := current_setting('pii_guard.max_grant_duration')::interval;
BEGIN
    -- A superuser's row is kept as it is: that is how pg_restore brings
    -- grants back, with their approvers, times and revocations (and a
    -- superuser, trusted anyway, has the privileges of every role, so the
    -- checks below would refuse every grant to them).
    IF TG_OP = 'INSERT' AND (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NOT pg_has_role(current_user, 'pii_guard_approver', 'USAGE') THEN
            RAISE EXCEPTION 'permission denied to issue pii_guard grants'
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('Role %s is not a member of pii_guard_approver.', current_user);
        END IF;
        IF pg_has_role(current_user, NEW.role::oid, 'MEMBER') THEN
            RAISE EXCEPTION 'an approver cannot approve access for a role they belong to'
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('%s would be approving its own access as %s.', current_user, NEW.role),
                      HINT = 'Ask another member of pii_guard_approver.';
        END IF;
        -- Whoever inserts, and however: a grant starts now, ends in the
        -- future but not too far in it, has a reason, and names its real
        -- approver.
        IF NEW.valid_until <= now() THEN
            RAISE EXCEPTION 'valid_until must be in the future'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF NEW.valid_until > now() + longest THEN
            RAISE EXCEPTION 'an approval may last at most %', longest
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('This one would last %s.', date_trunc('second', NEW.valid_until - now())),
                      HINT = 'Approve for a shorter time (and again when needed), or ask a superuser to raise pii_guard.max_grant_duration.';
        END IF;
        IF NEW.reason IS NULL OR btrim(NEW.reason) = '' THEN
            RAISE EXCEPTION 'an approval needs a reason'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        NEW.valid_from := now();
        NEW.approver := current_user::regrole;
        NEW.created_at := now();
        NEW.revoked_at := NULL;
        RETURN NEW;
    END IF;
    IF (NEW.grant_id, NEW.kind, NEW.role, NEW.base, NEW.columns, NEW.row_keys, NEW.rows,
        NEW.valid_from, NEW.valid_until, NEW.reason, NEW.approver, NEW.created_at, NEW.purpose)
       IS DISTINCT FROM
       (OLD.grant_id, OLD.kind, OLD.role, OLD.base, OLD.columns, OLD.row_keys, OLD.rows,
        OLD.valid_from, OLD.valid_until, OLD.reason, OLD.approver, OLD.created_at, OLD.purpose)
       OR OLD.revoked_at IS NOT NULL OR NEW.revoked_at IS NULL THEN
        RAISE EXCEPTION 'a pii_guard grant can only be revoked, once'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    NEW.revoked_at := now();
    RETURN NEW;
END
$$;

-- Every grant issued or revoked, however it was done, is an admin event
-- (written with the extension owner's rights: approvers cannot write audit
-- events themselves).
--
-- A grant a superuser inserts with a creation time before its transaction
-- began is a restored one (pg_restore): its issue is already in the
-- restored audit trail, and an event written now could take an event id
-- the restore is about to bring back.  Every other insert is an issue.
CREATE FUNCTION @extschema@.grants_audit() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.created_at < transaction_timestamp()
           AND (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user) THEN
            RETURN NULL;
        END IF;
        PERFORM @extschema@._audit_admin(CASE NEW.kind WHEN 'export' THEN 'approve_export' ELSE 'approve' END,
            format('grant %s: %s for %s by %s, %s, until %s, reason: %s%s', NEW.grant_id, NEW.kind, NEW.role,
                   NEW.approver,
                   CASE NEW.kind WHEN 'export' THEN NEW.rows || ' rows'
                        ELSE format('%s, columns %s, rows %s', NEW.base, coalesce(NEW.columns::text, 'all'),
                                    coalesce(array_length(NEW.row_keys, 1)::text, 'all')) END,
                   NEW.valid_until, NEW.reason, coalesce(', purpose ' || NEW.purpose, '')));
    ELSE
        PERFORM @extschema@._audit_admin('revoke_grant',
            format('grant %s revoked by %s', NEW.grant_id, session_user));
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION @extschema@.masking_view_write() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_masking_view_write';

-- Keep the policy tidy when objects are dropped: a protected table's rules
-- go with it; a mask function dropped with CASCADE (which drops the
-- masking views built with it) leaves its columns without a mask -- hidden
-- for the roles that saw them masked -- and the views are rebuilt.
--
-- The sql_drop event trigger ran a DELETE on protected_tables (and, for a
-- dropped function, an UPDATE of column_rules) on every DROP anywhere --
-- a role dropping a function or table in its temporary schema included.
-- Each fired the policy tables' statement trigger, which makes every
-- session recompute its decisions and reload its caches, even when no row
-- changed.  Now it writes only when a protected table or a mask function
-- in use was dropped.
-- Is this node a Citus worker?  pii_guard's event triggers leave alone,
-- there, the coordinator's DDL that Citus passes on to the workers: the
-- masking views and the policy are the coordinator's (src/citus.c).
CREATE FUNCTION @extschema@._citus_worker() RETURNS boolean
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'pii_guard_citus_worker';

CREATE FUNCTION @extschema@._on_sql_drop() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r record;
BEGIN
    IF @extschema@._citus_worker() THEN
        RETURN;     -- the coordinator's DDL, which Citus passes on
    END IF;
    IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
                 JOIN @extschema@.protected_tables p ON p.base::oid = d.objid
                WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0) THEN
        -- (the rows whose table is gone, on every node: see _relname; the
        -- approvals and consents first, which on Citus have no foreign key
        -- to cascade from -- see citus_setup)
        DELETE FROM @extschema@.grants g WHERE g.base IS NOT NULL AND @extschema@._relname(g.base) IS NULL;
        DELETE FROM @extschema@.consents c WHERE @extschema@._relname(c.base) IS NULL;
        DELETE FROM @extschema@.protected_tables p WHERE @extschema@._relname(p.base) IS NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() WHERE classid = 'pg_proc'::regclass)
       OR NOT EXISTS (SELECT 1 FROM @extschema@.column_rules c
                       WHERE c.mask_function IS NOT NULL AND to_regprocedure(c.mask_function) IS NULL) THEN
        RETURN;
    END IF;
    FOR r IN
        UPDATE @extschema@.column_rules c SET mask_function = NULL, mask_args = NULL
          FROM @extschema@.column_rules o
         WHERE o.base = c.base AND o.column_name = c.column_name
           AND c.mask_function IS NOT NULL AND to_regprocedure(c.mask_function) IS NULL
        RETURNING c.base, c.column_name, o.mask_function   -- (the name it had)
    LOOP
        RAISE WARNING 'mask function % of %.% was dropped; the column is hidden where it was masked',
                      r.mask_function, r.base, quote_ident(r.column_name)
            USING HINT = 'Give the column a new mask with pii_guard.protect_column().';
        PERFORM @extschema@._audit_admin('protect_column',
            format('%s.%I: mask %s dropped, now none', r.base, r.column_name, r.mask_function));
    END LOOP;
    FOR r IN
        SELECT p.base FROM @extschema@.protected_tables p
         WHERE to_regclass(format('%I.%I', p.view_schema, p.view_name)) IS NULL
           AND to_regnamespace(quote_ident(p.view_schema)) IS NOT NULL
    LOOP
        PERFORM @extschema@._attach_views(r.base, NULL, NULL);
    END LOOP;
END
$$;

CREATE FUNCTION @extschema@._on_grant() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    b   regclass;
    r   record;
    c   name;
    who text;
BEGIN
    IF @extschema@._citus_worker() THEN
        RETURN;     -- the coordinator's DDL, which Citus passes on
    END IF;
    IF @extschema@._in_maintenance() THEN
        RETURN;     -- our own GRANTs, while building views
    END IF;
    PERFORM @extschema@._maintenance(true);
    FOR b IN SELECT base FROM @extschema@.protected_tables LOOP
        -- Fail closed: nobody but the owner (and pii_guard_owner) holds a
        -- privilege on a protected base table -- not even one granted by
        -- mistake, which would also show its values in pg_stats.
        FOR r IN SELECT DISTINCT a.grantee
                   FROM pg_class c, aclexplode(c.relacl) a
                  WHERE c.oid = b AND a.grantee <> c.relowner
                    AND a.grantee <> (SELECT oid FROM pg_roles WHERE rolname = 'pii_guard_owner')
                 UNION
                 SELECT DISTINCT a.grantee
                   FROM pg_attribute att, aclexplode(att.attacl) a
                  WHERE att.attrelid = b AND att.attnum > 0
        LOOP
            who := CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END;
            EXECUTE format('REVOKE ALL ON %s FROM %s', b, who);
            FOR c IN SELECT att.attname FROM pg_attribute att, aclexplode(att.attacl) a
                      WHERE att.attrelid = b AND att.attnum > 0 AND a.grantee = r.grantee LOOP
                EXECUTE format('REVOKE ALL (%I) ON %s FROM %s', c, b, who);
            END LOOP;
            RAISE WARNING 'pii_guard revoked the privileges of % on protected table %', who, b
                USING HINT = format('Grant them on its masking view %s instead.',
                                    (SELECT format('%I.%I', p.view_schema, p.view_name)
                                       FROM @extschema@.protected_tables p WHERE p.base = b));
        END LOOP;
        PERFORM @extschema@._sync_write_grants(b);
    END LOOP;
    PERFORM @extschema@._maintenance(false);
END
$$;

CREATE FUNCTION @extschema@.audit_log_guard() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_audit_log_guard';

CREATE FUNCTION @extschema@.audit_write() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_audit_write';

-- An administrator's later protect_column() or unprotect_column() of a
-- new column classifies it.
CREATE FUNCTION @extschema@._new_column_classified() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    UPDATE @extschema@.new_columns n
       SET classified_at = now(), classified_by = session_user
     WHERE n.base = OLD.base AND n.column_name = OLD.column_name AND n.classified_at IS NULL;
    RETURN NULL;
END
$$;

-- The row trigger that seals a row's encrypted values under its subject's
-- key (created by shred_by(); named to run after the table's own BEFORE
-- triggers).
CREATE FUNCTION @extschema@._subject_seal() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_subject_seal';

--------------------------------------------------------------------------
-- 5. Public functions
--------------------------------------------------------------------------

-- Grouped by topic, each group in the order in which the update scripts
-- introduced its functions.

-- Keys and encryption
-- ===================

CREATE FUNCTION @extschema@.master_key_info(previous boolean, OUT available boolean, OUT fingerprint bytea, OUT problem text) RETURNS record
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_master_key_info';

CREATE FUNCTION @extschema@.rotate_data_key() RETURNS integer
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_rotate_data_key';

CREATE FUNCTION @extschema@.rewrap_data_keys() RETURNS integer
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_rewrap_data_keys';

-- Encrypt, decrypt, inspect, re-encrypt.
CREATE FUNCTION @extschema@.encrypt(text) RETURNS @extschema@.encrypted_text
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_encrypt_text';

CREATE FUNCTION @extschema@.encrypt(bytea) RETURNS @extschema@.encrypted_bytea
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_encrypt_bytea';

CREATE FUNCTION @extschema@.decrypt(@extschema@.encrypted_text) RETURNS text
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_decrypt_text';

CREATE FUNCTION @extschema@.decrypt(@extschema@.encrypted_bytea) RETURNS bytea
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_decrypt_bytea';

-- key_id() names subject keys too (2^31 and up): bigint.  reencrypt_column
-- leaves values under subject keys alone (they are under their subject's
-- key, as they should be; the row trigger would seal them so again).
CREATE FUNCTION @extschema@.key_id(@extschema@.encrypted_text) RETURNS bigint
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_key_id';

CREATE FUNCTION @extschema@.key_id(@extschema@.encrypted_bytea) RETURNS bigint
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_envelope_key_id';

CREATE FUNCTION @extschema@.reencrypt(@extschema@.encrypted_text) RETURNS @extschema@.encrypted_text
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_reencrypt';

CREATE FUNCTION @extschema@.reencrypt(@extschema@.encrypted_bytea) RETURNS @extschema@.encrypted_bytea
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_reencrypt';

-- Re-encrypts every value of one encrypted column that is not under the
-- active data key, a block range at a time, committing after each range.
-- Resumable: progress is kept in reencrypt_progress, and a run that is
-- interrupted continues where the last committed range ended.  Safe under
-- concurrent writes: each range is one ordinary UPDATE (row locks, and
-- re-evaluation on the newest row version), and rows that concurrent writers
-- moved or wrote under an older key are caught by a final sweep.  Runs as
-- the caller, who needs UPDATE on the table (it cannot be SECURITY DEFINER or
-- carry a SET clause: both forbid COMMIT).  Call it outside a transaction
-- block: CALL pii_guard.reencrypt_column('customers', 'phone');
--
-- 0.1 read the size of the named table only: a partitioned table has
-- none, so its partitions were never re-encrypted (and inheritance
-- children only as far as the parent's size reached), while the call
-- succeeded; rows that row-level security hid from the caller were left
-- out silently; and a rotation during the run left values under the key
-- that was active when it started.
CREATE PROCEDURE @extschema@.reencrypt_column(IN tbl regclass, IN col name, IN batch_rows integer DEFAULT 10000)
    LANGUAGE plpgsql
    AS $proc$
DECLARE
    rels        regclass[];
    rel         regclass;
    active      integer;
    stale       bigint;
    pass        integer := 0;
    total       bigint := 0;
BEGIN
    -- A protected table's name is its masking view's: use the base table.
    tbl := coalesce(@extschema@._base_of(tbl), tbl);
    IF batch_rows IS NULL OR batch_rows < 1 THEN
        RAISE EXCEPTION 'batch_rows must be a positive number'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    rels := @extschema@._reencrypt_tables(tbl, col);
    LOOP
        pass := pass + 1;
        -- The active key now (and an active key at all): a rotation since
        -- the last pass makes this pass re-encrypt to the new key.
        active := @extschema@.key_id(@extschema@.encrypt(''::text));
        FOREACH rel IN ARRAY rels LOOP
            CALL @extschema@._reencrypt_table(rel, col, active, batch_rows, total);
        END LOOP;
        -- Sweep: rows moved or written under an older key while we ran, or
        -- everything, if the key was rotated meanwhile.
        active := @extschema@.key_id(@extschema@.encrypt(''::text));
        EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s WHERE @extschema@.key_id(%I) <> $1 '
                                  'AND @extschema@.key_id(%I) < 2147483648',
                                  tbl, col, col)
           INTO stale USING active;
        EXIT WHEN stale = 0 OR pass >= 10;
        DELETE FROM @extschema@.reencrypt_progress p
         WHERE p.table_oid = ANY (rels::oid[]) AND p.column_name = col;
        COMMIT;
    END LOOP;

    DELETE FROM @extschema@.reencrypt_progress p
     WHERE p.table_oid = ANY (rels::oid[]) AND p.column_name = col;
    COMMIT;
    IF stale > 0 THEN
        RAISE WARNING '% values of %.% are still under older keys after % passes', stale, tbl, col, pass
            USING HINT = 'Run reencrypt_column again when the write load is lower.';
    ELSE
        RAISE NOTICE 're-encrypted % values of %.% to data key %', total, tbl, col, active;
    END IF;
END
$proc$;

-- Masking and policy: mask functions, protected tables and columns, profiles, decisions, lint
-- ===========================================================================================

CREATE FUNCTION @extschema@.reveal(value anyelement, base regclass, col name, row_key "any") RETURNS anyelement
    LANGUAGE c STABLE STRICT COST 10 PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_reveal';

CREATE FUNCTION @extschema@.reveal(value @extschema@.encrypted_text, base regclass, col name, row_key "any") RETURNS text
    LANGUAGE c STABLE STRICT COST 10 PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_reveal_text';

CREATE FUNCTION @extschema@.reveal(value @extschema@.encrypted_bytea, base regclass, col name, row_key "any") RETURNS bytea
    LANGUAGE c STABLE STRICT COST 10 PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_reveal_bytea';

CREATE FUNCTION @extschema@.column_access(role regrole, tbl regclass, col name) RETURNS text
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_column_access';

-- Protect a table: move it to its companion schema <schema>_pii, put its
-- masking view under its name, move its grants to the view.
--
-- protect_table() accepts a partitioned table (its row key is a unique
-- column, which PostgreSQL lets a partitioned table have when it is the
-- partition key), refuses a partition on its own (protect the table it
-- belongs to), and takes the privileges off every partition as well as
-- off the table.  The library treats the partitions (and any partition or
-- inheritance child attached later) as the protected table: the
-- fail-closed check refuses governed roles each of them, and reveal()'s
-- proof follows the masking view's scan into them.
CREATE FUNCTION @extschema@.protect_table(tbl regclass, row_key name DEFAULT NULL::name) RETURNS regclass
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "citus.multi_shard_modify_mode" TO 'sequential'
    AS $$
DECLARE
    rel      record;
    comp     name;
    key      name;
    grants   text[];
BEGIN
    IF @extschema@._base_of(tbl) IS NOT NULL THEN
        RETURN @extschema@._base_of(tbl);
    END IF;
    key := @extschema@._protectable(tbl, row_key);
    SELECT c.relname, n.nspname INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    comp := @extschema@._companion_schema(rel.nspname, rel.relname);
    PERFORM @extschema@._maintenance(true);
    grants := @extschema@._grants_of(tbl, format('%I.%I', rel.nspname, rel.relname));
    PERFORM @extschema@._seclude(tbl, comp);
    INSERT INTO @extschema@.protected_tables (base, view_schema, view_name, write_view_name, row_key, saved_grants)
    VALUES (tbl, rel.nspname, rel.relname, left(rel.relname, 52) || '__pii_write', key, grants);
    PERFORM @extschema@._attach_views(tbl, NULL, NULL);
    PERFORM @extschema@._maintenance(false);
    -- (Citus refuses triggers on a distributed table: its writes are not
    -- audited yet.)
    IF NOT @extschema@._citus_table(tbl) THEN
        PERFORM @extschema@.audit_table(tbl, key);
    END IF;
    PERFORM @extschema@._audit_admin('protect_table', format('%s protected; row key %s', tbl, key));
    RETURN tbl;
END
$$;

-- Put a protected table back as it was: its schema, name and grants (and
-- the sequence privileges pii_guard gave).  Refused, with the dependent
-- objects named, while views depend on its
-- masking view (they would go with it).
CREATE FUNCTION @extschema@.unprotect_table(tbl regclass) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "citus.multi_shard_modify_mode" TO 'sequential'
    AS $$
DECLARE
    b        regclass := @extschema@._base_of(tbl);
    p        @extschema@.protected_tables;
    comp     name;
    v        regclass;
    deps     text;
    grants   text[];
    g        text;
    r        record;
BEGIN
    IF b IS NULL THEN
        RAISE EXCEPTION '% is not protected by pii_guard', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT * INTO p FROM @extschema@.protected_tables t WHERE t.base = b;
    SELECT n.nspname INTO comp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = b;
    v := to_regclass(format('%I.%I', p.view_schema, p.view_name));
    deps := @extschema@._dependents(ARRAY[v, to_regclass(format('%I.%I', comp, p.write_view_name))]);
    IF deps IS NOT NULL THEN
        RAISE EXCEPTION 'cannot unprotect %: other objects depend on its masking view %.%', b,
                        quote_ident(p.view_schema), quote_ident(p.view_name)
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = 'Unprotecting drops the masking view and gives its name back to the table.',
                  HINT = format('Drop %s first (a temporary view goes when its session ends), then unprotect and create what you dropped again on the table.', deps);
    END IF;
    PERFORM @extschema@._maintenance(true);
    grants := CASE WHEN v IS NULL THEN '{}'::text[]
                   ELSE @extschema@._grants_of(v, format('%I.%I', p.view_schema, p.view_name)) END;
    -- What pii_guard gave on the sequences goes back.
    FOR r IN SELECT g.seq, g.grantee::oid AS grantee FROM @extschema@.sequence_grants g
              WHERE g.base = b AND (g.grantee::oid = 0 OR EXISTS (SELECT 1 FROM pg_roles WHERE oid = g.grantee))
    LOOP
        EXECUTE format('REVOKE USAGE ON SEQUENCE %s FROM %s', r.seq,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
    END LOOP;
    EXECUTE format('DROP VIEW IF EXISTS %I.%I', p.view_schema, p.view_name);
    EXECUTE format('DROP VIEW IF EXISTS %I.%I', comp, p.write_view_name);
    -- (approvals and consents too: on Citus no foreign key cascades to them)
    DELETE FROM @extschema@.grants g WHERE @extschema@._relname(g.base) = @extschema@._relname_here(b);
    DELETE FROM @extschema@.consents c WHERE @extschema@._relname(c.base) = @extschema@._relname_here(b);
    DELETE FROM @extschema@.protected_tables t WHERE @extschema@._relname(t.base) = @extschema@._relname_here(b);
    EXECUTE format('REVOKE ALL ON %s FROM pii_guard_owner', b);
    PERFORM @extschema@.unaudit_table(b);
    FOR r IN SELECT pg_get_serial_sequence(b::text, att.attname) AS seq
               FROM pg_attribute att WHERE att.attrelid = b AND att.attnum > 0 AND NOT att.attisdropped
    LOOP
        IF r.seq IS NOT NULL THEN
            EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM pii_guard_owner', r.seq);
        END IF;
    END LOOP;
    EXECUTE format('ALTER TABLE %s SET SCHEMA %I', b, p.view_schema);
    FOREACH g IN ARRAY grants LOOP
        EXECUTE g;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = to_regnamespace(quote_ident(comp))) THEN
        EXECUTE format('DROP SCHEMA %I', comp);
    END IF;
    PERFORM @extschema@._maintenance(false);
    PERFORM @extschema@._audit_admin('unprotect_table', format('%s unprotected', b));
END
$$;

-- Rebuild every masking view (after restoring policy, or to repair).
CREATE FUNCTION @extschema@.refresh_views() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    b regclass;
    n integer := 0;
BEGIN
    FOR b IN SELECT base FROM @extschema@.protected_tables ORDER BY base::text LOOP
        PERFORM @extschema@._attach_views(b, NULL, NULL);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Protect one column: its level and (optionally) its mask function, with
-- constant extra arguments.  Protects the table first if needed.  The mask
-- function must be one that cannot pass on the plaintext it is given
-- (_mask_problem).
CREATE FUNCTION @extschema@.protect_column(tbl regclass, col name, level @extschema@.level, mask regprocedure DEFAULT NULL::regprocedure, mask_args text[] DEFAULT NULL::text[]) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    b        regclass := coalesce(@extschema@._base_of(tbl), @extschema@.protect_table(tbl));
    coltype  regtype;
    valtype  regtype;
    fn       record;
    sig      text;
    problem  text;
BEGIN
    SELECT att.atttypid::regtype INTO coltype FROM pg_attribute att
     WHERE att.attrelid = b AND att.attname = col AND att.attnum > 0 AND NOT att.attisdropped;
    IF coltype IS NULL THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl
            USING ERRCODE = 'undefined_column';
    END IF;
    IF col = (SELECT p.row_key FROM @extschema@.protected_tables p WHERE p.base = b) THEN
        RAISE EXCEPTION 'column "%" is the row key of %', col, tbl
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The row key is shown as it is: it identifies rows for writes, audit and grants.',
                  HINT = 'Protect the table with another row key (a surrogate key), then protect this column.';
    END IF;
    valtype := CASE coltype WHEN '@extschema@.encrypted_text'::regtype THEN 'text'::regtype
                            WHEN '@extschema@.encrypted_bytea'::regtype THEN 'bytea'::regtype
                            ELSE coltype END;
    IF mask IS NOT NULL THEN
        SELECT p.proname, n.nspname, p.prorettype::regtype AS rettype, p.pronargs,
               p.proargtypes[0]::regtype AS argtype, p.prokind
          INTO fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.oid = mask;
        IF fn.prokind <> 'f' OR fn.argtype <> valtype OR fn.rettype <> valtype
           OR fn.pronargs <> 1 + coalesce(array_length(mask_args, 1), 0) THEN
            RAISE EXCEPTION 'function % cannot mask column "%"', mask, col
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('A mask function for this column takes %s (plus one argument per element of mask_args) and returns %s.', valtype, valtype);
        END IF;
        problem := @extschema@._mask_problem(mask);
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'function % cannot be a mask function', mask
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = problem || ' A mask function is given the plaintext of every value it masks.',
                      HINT = 'Use one of pii_guard''s masks, or have a superuser review the function and take ownership of it; it must not be SECURITY DEFINER or VOLATILE, must be LEAKPROOF, and must SET search_path unless written in C.';
        END IF;
        sig := format('%I.%I(%s)', fn.nspname, fn.proname,
                      (SELECT oidvectortypes(p.proargtypes) FROM pg_proc p WHERE p.oid = mask));
    END IF;
    INSERT INTO @extschema@.column_rules (base, column_name, level, mask_function, mask_args)
    VALUES (b, col, level, sig, mask_args)
    ON CONFLICT (base, column_name) DO UPDATE
       SET level = EXCLUDED.level, mask_function = EXCLUDED.mask_function, mask_args = EXCLUDED.mask_args;
    PERFORM @extschema@._audit_admin('protect_column',
        format('%s.%I: level %s, mask %s', b, col, level, coalesce(sig, 'none')));
    PERFORM @extschema@._attach_views(b, NULL, NULL);
END
$$;

-- Stop protecting one column: it is shown as it is again.
CREATE FUNCTION @extschema@.unprotect_column(tbl regclass, col name) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    b regclass := @extschema@._base_of(tbl);
BEGIN
    IF b IS NULL THEN
        RAISE EXCEPTION '% is not protected by pii_guard', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_attribute att WHERE att.attrelid = b AND att.attname = col
                 AND att.atttypid IN ('@extschema@.encrypted_text'::regtype, '@extschema@.encrypted_bytea'::regtype)) THEN
        RAISE EXCEPTION 'encrypted column "%" cannot be unprotected', col
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Set its level and mask with protect_column instead.';
    END IF;
    DELETE FROM @extschema@.column_rules r WHERE @extschema@._relname(r.base) = @extschema@._relname_here(b) AND r.column_name = col;
    PERFORM @extschema@._audit_admin('unprotect_column', format('%s.%I', b, col));
    PERFORM @extschema@._attach_views(b, NULL, NULL);
END
$$;

-- Make a role a profile with this clearance (or change its clearance).
-- On Citus, Citus connects to the workers as the current role -- after SET
-- ROLE to a profile, as the profile, which a NOLOGIN group role cannot be.
-- A profile that cannot log in on the coordinator is let log in on the
-- workers whose login gate is set (pii_guard.cluster_peer_cn), where only
-- the coordinator's connections, with the cluster's certificate, get in as
-- it -- and only after SET ROLE, which needs membership.  Set (or taken
-- back, for a dropped profile) with Citus's propagation off there, so that
-- the coordinator's role is left as it is; a worker that refuses is
-- warned of, not an error: the profile is only not usable there.
CREATE FUNCTION @extschema@._citus_profile_logins(roles regrole[], login boolean) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r name;
    w record;
    workers boolean := false;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_node') IS NOT NULL THEN
        EXECUTE 'SELECT (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g) = 0
                    AND EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node n WHERE n.groupid <> 0)'
           INTO workers;
    END IF;
    IF NOT coalesce(workers, false) THEN
        RETURN;
    END IF;
    FOR r IN SELECT a.rolname FROM pg_roles a
              WHERE a.oid = ANY (roles::oid[]) AND NOT a.rolcanlogin AND NOT a.rolsuper LOOP
        FOR w IN SELECT * FROM run_command_on_workers(format('DO %L', format(
                     'BEGIN IF pg_catalog.current_setting(%L, true) <> %L THEN '
                     'PERFORM pg_catalog.set_config(%L, %L, true); EXECUTE %L; END IF; END',
                     'pii_guard.cluster_peer_cn', '', 'citus.enable_ddl_propagation', 'off',
                     format('ALTER ROLE %I %s', r, CASE WHEN login THEN 'LOGIN' ELSE 'NOLOGIN' END))))
        LOOP
            IF NOT w.success THEN
                RAISE WARNING 'could not let profile % log in on worker %:%', r, w.nodename, w.nodeport
                    USING DETAIL = w.result;
            END IF;
        END LOOP;
    END LOOP;
END
$$;

CREATE FUNCTION @extschema@.set_clearance(role regrole, clearance @extschema@.level, description text DEFAULT NULL::text) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    INSERT INTO @extschema@.profiles (role, clearance, description)
    VALUES (role, clearance, description)
    ON CONFLICT (role) DO UPDATE
       SET clearance = EXCLUDED.clearance,
           description = coalesce(EXCLUDED.description, @extschema@.profiles.description);
    SELECT @extschema@._citus_profile_logins(ARRAY[role], true);
    SELECT @extschema@._audit_admin('set_clearance', format('%s: %s', role, clearance));
$$;

-- Per-column exception for a profile: 'clear', 'masked' or 'hidden'.
CREATE FUNCTION @extschema@.set_column_access(role regrole, tbl regclass, col name, access text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    b regclass := @extschema@._base_of(tbl);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.column_rules r WHERE r.base = b AND r.column_name = col) THEN
        RAISE EXCEPTION 'column "%" of % is not protected', col, tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Protect it first with pii_guard.protect_column().';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.profiles p WHERE p.role = set_column_access.role) THEN
        RAISE EXCEPTION 'role % is not a pii_guard profile', role
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Give it a clearance first with pii_guard.set_clearance().';
    END IF;
    INSERT INTO @extschema@.profile_overrides (role, base, column_name, access)
    VALUES (role, b, col, access)
    ON CONFLICT ON CONSTRAINT profile_overrides_pkey DO UPDATE SET access = EXCLUDED.access;
    PERFORM @extschema@._audit_admin('set_column_access', format('%s on %s.%I: %s', role, b, col, access));
END
$$;

-- Remove a per-column exception.
CREATE FUNCTION @extschema@.reset_column_access(role regrole, tbl regclass, col name) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    DELETE FROM @extschema@.profile_overrides o
     WHERE @extschema@._rolname(o.role) = @extschema@._rolname_here(reset_column_access.role) AND @extschema@._relname(o.base) = @extschema@._relname_here(@extschema@._base_of(tbl))
       AND o.column_name = col;
    SELECT @extschema@._audit_admin('reset_column_access', format('%s on %s.%I', role, tbl, col));
$$;

-- A role is no longer a profile (its overrides go with it).
CREATE FUNCTION @extschema@.drop_profile(role regrole) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    DELETE FROM @extschema@.profiles p WHERE @extschema@._rolname(p.role) = @extschema@._rolname_here(drop_profile.role);
    SELECT @extschema@._citus_profile_logins(ARRAY[role], false);
    SELECT @extschema@._audit_admin('drop_profile', role::text);
$$;

-- What a role sees of every protected column (for rows without a
-- row-specific grant): 'clear', 'masked' or 'hidden'.
CREATE FUNCTION @extschema@.effective_access(role regrole) RETURNS TABLE(table_name text, column_name name, level @extschema@.level, access text)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT format('%I.%I', p.view_schema, p.view_name), r.column_name, r.level,
           @extschema@.column_access(role, r.base, r.column_name)
      FROM @extschema@.column_rules r
      JOIN @extschema@.protected_tables p ON p.base = r.base
     ORDER BY 1, (SELECT att.attnum FROM pg_attribute att
                   WHERE att.attrelid = r.base AND att.attname = r.column_name)
$$;

-- Each returns the type it masks, so that a masking view's column has one
-- type for every role.  The text masks raise no error for any input and are
-- LEAKPROOF; the others reject bad parameters or need the master key.  (This
-- script stays ASCII: it is read in the database's encoding.)
CREATE FUNCTION @extschema@.mask_phone(value text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_mask_phone';
COMMENT ON FUNCTION @extschema@.mask_phone(value text) IS 'masks a phone number: a mainland mobile shows its first 3 and last 4 digits (138****5678), an international number its country code and at most the last 4 digits; separators are dropped';

CREATE FUNCTION @extschema@.mask_cn_id(value text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_mask_cn_id';
COMMENT ON FUNCTION @extschema@.mask_cn_id(value text) IS 'masks a resident identity card number: 18 characters show the first 6 and last 4 (110101********1234), the old 15 digits the first 6 and last 3';

CREATE FUNCTION @extschema@.mask_bank_card(value text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_mask_bank_card';
COMMENT ON FUNCTION @extschema@.mask_bank_card(value text) IS 'masks a bank card number: 16 to 19 digits show the first 6 and last 4 (622202*********0123), 13 to 15 the first 2 and last 4, other digit strings at most the last 4 -- never more than half of the digits';

CREATE FUNCTION @extschema@.mask_email(value text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_mask_email';
COMMENT ON FUNCTION @extschema@.mask_email(value text) IS 'masks an e-mail address: the first character of the local part and the domain (z*******@example.com)';

CREATE FUNCTION @extschema@.mask_name(value text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_mask_name';
COMMENT ON FUNCTION @extschema@.mask_name(value text) IS 'masks a personal name: a Chinese name shows its surname (one character, or two for a compound surname), a name in another script the initial of each word (J*** S****)';

CREATE FUNCTION @extschema@.mask_address(value text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_mask_address';
COMMENT ON FUNCTION @extschema@.mask_address(value text) IS 'masks a postal address: a Chinese address shows its province, city and district, a comma-separated one what follows its street and number (****, Mountain View, CA 94043)';

CREATE FUNCTION @extschema@.mask_date(value date, "precision" text) RETURNS date
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_mask_date';
COMMENT ON FUNCTION @extschema@.mask_date(value date, "precision" text) IS 'generalises a date to the first day of its year (precision ''year'') or month (''month'')';

CREATE FUNCTION @extschema@.mask_date(value timestamp without time zone, "precision" text) RETURNS timestamp without time zone
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_mask_date_timestamp';
COMMENT ON FUNCTION @extschema@.mask_date(value timestamp without time zone, "precision" text) IS 'generalises a timestamp to midnight on the first day of its year (precision ''year'') or month (''month'')';

-- A timestamptz is truncated in the named time zone, as timezone(zone,
-- value) is, so that the result does not depend on the session's TimeZone.
CREATE FUNCTION @extschema@.mask_date(value timestamp with time zone, "precision" text, zone text) RETURNS timestamp with time zone
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_mask_date_timestamptz';
COMMENT ON FUNCTION @extschema@.mask_date(value timestamp with time zone, "precision" text, zone text) IS 'generalises a timestamp with time zone to midnight, in the given time zone, on the first day of its year (precision ''year'') or month (''month'')';

CREATE FUNCTION @extschema@.partial(value text, keep_prefix integer, pad text, keep_suffix integer) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_partial';
COMMENT ON FUNCTION @extschema@.partial(value text, keep_prefix integer, pad text, keep_suffix integer) IS 'shows the first keep_prefix and last keep_suffix characters with pad between, always hiding at least one character';

-- pseudonym() and noise() are keyed by the pseudonym data key.  IMMUTABLE
-- holds while that key is not rotated.  The key is created by the first
-- call, which must run in a read-write transaction, not in a parallel
-- worker.  Whoever may call them can test guesses against their results,
-- so only pii_guard_admin may; masking views apply them through reveal(),
-- which needs no privilege on the mask function.
CREATE FUNCTION @extschema@.pseudonym(value text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_pseudonym';
COMMENT ON FUNCTION @extschema@.pseudonym(value text) IS 'a keyed pseudonym: 16 hex digits of HMAC-SHA256 under the pseudonym key, the same for the same value, not reversible without the key';

CREATE FUNCTION @extschema@.noise(value numeric, ratio double precision) RETURNS numeric
    LANGUAGE c IMMUTABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_noise_numeric';
COMMENT ON FUNCTION @extschema@.noise(value numeric, ratio double precision) IS 'the value moved by keyed noise that is the same on every call: by about ratio times itself, rounded to the value''s last digit and at least one unit of it';

CREATE FUNCTION @extschema@.noise(value integer, ratio double precision) RETURNS integer
    LANGUAGE c IMMUTABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_noise_int4';
COMMENT ON FUNCTION @extschema@.noise(value integer, ratio double precision) IS 'the value moved by keyed noise that is the same on every call: by about ratio times itself, rounded, at least 1, clamped to the integer range';

CREATE FUNCTION @extschema@.noise(value bigint, ratio double precision) RETURNS bigint
    LANGUAGE c IMMUTABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_noise_int8';
COMMENT ON FUNCTION @extschema@.noise(value bigint, ratio double precision) IS 'the value moved by keyed noise that is the same on every call: by about ratio times itself, rounded, at least 1, clamped to the bigint range';

CREATE FUNCTION @extschema@.noise(value double precision, ratio double precision) RETURNS double precision
    LANGUAGE c IMMUTABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'pii_guard_noise_float8';
COMMENT ON FUNCTION @extschema@.noise(value double precision, ratio double precision) IS 'the value moved by at most ratio times itself, by keyed noise that is the same on every call, clamped to the finite range';

-- pg_dump -t customers matches the masking view public.customers only (an
-- unqualified pattern matches what the dumping role's search_path shows),
-- and a view has no data.  The table, its data and its write view are
-- named with -t public_pii.customers -t public_pii.customers__pii_write;
-- but pg_dump dumps an extension's configuration tables whole or not at
-- all, so no single-table dump can carry the table's pii_guard policy --
-- and a table that is dropped (pg_restore --clean, or by mistake) loses
-- its policy rows with it.  Restored without them the masking views fail
-- closed (reveal() refuses).  policy_script() writes the policy of one
-- protected table as SQL for a superuser to run after restoring such a
-- dump: the protected-table entry, its column rules, the profile
-- exceptions on its columns and the sequence grants pii_guard made for
-- it, plus the profiles the target lacks (their clearances and export
-- limits decide what each role sees).  What the target has already is
-- kept (ON CONFLICT DO NOTHING).  Approvals are not carried: they belong
-- to the database they were issued in, and expire within
-- pii_guard.max_grant_duration.  It runs as its caller, who must read the
-- policy tables (pii_guard_admin), and shows nothing they do not show.
CREATE FUNCTION @extschema@.policy_script(tbl regclass) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET "DateStyle" TO 'ISO, YMD'
    AS $$
DECLARE
    b     regclass := @extschema@._base_of(tbl);
    p     record;
    comp  name;
    sql   text[];
BEGIN
    IF b IS NULL THEN
        RAISE EXCEPTION '% is not protected by pii_guard', tbl
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO p FROM @extschema@.protected_tables t WHERE t.base = b;
    SELECT n.nspname INTO comp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = b;
    sql := ARRAY[
        format('-- pii_guard policy of %s (masking view %I.%I).', b, p.view_schema, p.view_name),
        '-- Run as a superuser after restoring the table and its views (pg_dump -t) into a',
        '-- database with pii_guard and the data keys; what is there already is kept.',
        '-- Approvals (pii_guard.grants) are not carried: issue them again.',
        'BEGIN;',
        -- the companion schema as protect_table() leaves it
        format('COMMENT ON SCHEMA %I IS %L;', comp,
               format('pii_guard companion schema of %I: protected base tables', p.view_schema)),
        format('REVOKE ALL ON SCHEMA %I FROM PUBLIC;', comp),
        format('GRANT USAGE ON SCHEMA %I TO PUBLIC;', comp),
        format('INSERT INTO @extschema@.protected_tables (base, view_schema, view_name, write_view_name, row_key, protected_at, saved_grants) '
               'VALUES (%L, %L, %L, %L, %L, %L, %L) ON CONFLICT DO NOTHING;',
               b, p.view_schema, p.view_name, p.write_view_name, p.row_key, p.protected_at, p.saved_grants)];
    sql := sql || ARRAY(
        SELECT format('INSERT INTO @extschema@.column_rules (base, column_name, level, mask_function, mask_args) '
                      'VALUES (%L, %L, %L, %L, %L) ON CONFLICT DO NOTHING;',
                      r.base, r.column_name, r.level, r.mask_function, r.mask_args)
          FROM @extschema@.column_rules r WHERE r.base = b ORDER BY r.column_name);
    sql := sql || ARRAY(
        SELECT format('INSERT INTO @extschema@.profiles (role, clearance, description, max_rows_per_statement, max_rows_per_day) '
                      'VALUES (%L, %L, %L, %L, %L) ON CONFLICT DO NOTHING;',
                      f.role, f.clearance, f.description, f.max_rows_per_statement, f.max_rows_per_day)
          FROM @extschema@.profiles f ORDER BY f.role::text);
    sql := sql || ARRAY(
        SELECT format('INSERT INTO @extschema@.profile_overrides (role, base, column_name, access) '
                      'VALUES (%L, %L, %L, %L) ON CONFLICT DO NOTHING;',
                      o.role, o.base, o.column_name, o.access)
          FROM @extschema@.profile_overrides o WHERE o.base = b ORDER BY o.role::text, o.column_name);
    sql := sql || ARRAY(
        SELECT format('INSERT INTO @extschema@.sequence_grants (base, seq, grantee) '
                      'VALUES (%L, %L, %L) ON CONFLICT DO NOTHING;', s.base, s.seq, s.grantee)
          FROM @extschema@.sequence_grants s WHERE s.base = b ORDER BY s.seq::text, s.grantee::text);
    sql := sql || 'COMMIT;'::text;
    RETURN array_to_string(sql, E'\n') || E'\n';
END
$$;
COMMENT ON FUNCTION @extschema@.policy_script(tbl regclass) IS 'the pii_guard policy of one protected table as SQL, to restore it with a pg_dump -t dump of the table';

-- Policy lint: what a reviewer would flag in the policy as it stands, one
-- row per finding (none: nothing found).  Readable by pii_guard_admin and
-- pii_guard_auditor; reads only the policy and the catalogs.
--   rebuild_from_clear  a column masked or hidden from a profile whose
--                       hidden part another column shows it in clear (a
--                       resident ID masked while the birth date is clear; a
--                       phone masked while another column holds phones)
--   no_export_limit     a profile that sees sensitive or core data in clear
--                       with no export limit (and no default limit)
--   long_grant          a live approval longer than max_grant, or one that
--                       unmasks every row of a table
--   encrypted_unmasked  an encrypted column with no masking view over it
--   companion_privilege a privilege on a companion schema or a protected
--                       base table held by a role other than the owner
--   length_kept         a mask whose output is as long as its input where
--                       the length identifies (names, free text)
--   mask_unusable       a mask function that no longer qualifies (the
--                       column is hidden from everyone below its level)
--   unclassified        a column added under protect_new_columns, hidden
--                       until an administrator classifies it
CREATE FUNCTION @extschema@.check_policy(max_grant interval DEFAULT '1 day'::interval) RETURNS TABLE(severity text, check_name text, object text, problem text, hint text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM @extschema@._lint_prepare();
    RETURN QUERY SELECT * FROM @extschema@._lint_rebuild_from_clear();
    RETURN QUERY SELECT * FROM @extschema@._lint_no_export_limit();
    RETURN QUERY SELECT * FROM @extschema@._lint_long_grant(max_grant);
    RETURN QUERY SELECT * FROM @extschema@._lint_encrypted_unmasked();
    RETURN QUERY SELECT * FROM @extschema@._lint_unclassified();
    RETURN QUERY SELECT * FROM @extschema@._lint_companion_privilege();
    RETURN QUERY SELECT * FROM @extschema@._lint_masks();
END
$$;
COMMENT ON FUNCTION @extschema@.check_policy(max_grant interval) IS 'policy lint: what a reviewer would flag (masks undone by clear columns, profiles without export limits, long or broad approvals, encrypted columns without a view, privileges on companion schemas, masks that keep length)';

-- Export limits and approvals
-- ===========================

-- Time-boxed approval: role sees the columns (NULL: all protected columns)
-- of the rows with these row keys (NULL: all rows) of tbl in clear until
-- valid_until.  Runs as the caller, who must be a pii_guard_approver member
-- (checked by the grants table's trigger).
--
-- approve() takes the purpose the approval is for (NULL: any).
CREATE FUNCTION @extschema@.approve(role regrole, tbl regclass, valid_until timestamp with time zone, reason text, columns name[] DEFAULT NULL::name[], row_keys text[] DEFAULT NULL::text[], purpose text DEFAULT NULL::text) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    b  regclass := @extschema@._base_of(tbl);
    id bigint;
BEGIN
    IF b IS NULL THEN
        RAISE EXCEPTION '% is not protected by pii_guard', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF valid_until <= now() THEN
        RAISE EXCEPTION 'valid_until must be in the future'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'an approval needs a reason'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(columns) c
                WHERE NOT EXISTS (SELECT 1 FROM @extschema@.column_rules r
                                   WHERE r.base = b AND r.column_name = c)) THEN
        RAISE EXCEPTION 'approve() names a column of % that is not protected', tbl
            USING ERRCODE = 'undefined_column';
    END IF;
    IF purpose IS NOT NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.purposes p
                                            WHERE p.purpose = approve.purpose) THEN
        RAISE EXCEPTION 'no purpose "%"', purpose
            USING ERRCODE = 'undefined_object',
                  HINT = 'An administrator defines purposes with pii_guard.define_purpose().';
    END IF;
    INSERT INTO @extschema@.grants (kind, role, base, columns, row_keys, valid_until, reason, approver, purpose)
    VALUES ('unmask', role, b, columns, row_keys, valid_until, reason, current_user::regrole, purpose)
    RETURNING grant_id INTO id;
    RETURN id;
END
$$;
COMMENT ON FUNCTION @extschema@.approve(role regrole, tbl regclass, valid_until timestamp with time zone, reason text, columns name[], row_keys text[], purpose text) IS 'time-boxed approval: role sees the columns (all when NULL) of the rows (all when NULL) in clear until valid_until, for purpose (any when NULL)';

-- End a grant before its time.
CREATE FUNCTION @extschema@.revoke_grant(grant_id bigint) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    UPDATE @extschema@.grants g SET revoked_at = now()
     WHERE g.grant_id = revoke_grant.grant_id AND g.revoked_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no live pii_guard grant %', grant_id
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

-- A profile's limits on protected rows per statement and per rolling 24
-- hours (NULL: unlimited).
CREATE FUNCTION @extschema@.set_export_limits(role regrole, max_rows_per_statement bigint, max_rows_per_day bigint) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    UPDATE @extschema@.profiles p
       SET max_rows_per_statement = set_export_limits.max_rows_per_statement,
           max_rows_per_day = set_export_limits.max_rows_per_day
     WHERE @extschema@._rolname(p.role) = @extschema@._rolname_here(set_export_limits.role);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role % is not a pii_guard profile', role
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Give it a clearance first with pii_guard.set_clearance().';
    END IF;
    PERFORM @extschema@._audit_admin('set_export_limits',
        format('%s: %s rows per statement, %s rows per 24 hours', role,
               coalesce(max_rows_per_statement::text, 'unlimited'),
               coalesce(max_rows_per_day::text, 'unlimited')));
END
$$;

-- Time-boxed export approval: role may produce up to `rows` protected rows
-- beyond its limits until valid_until (or until they are used up).
CREATE FUNCTION @extschema@.approve_export(role regrole, rows bigint, valid_until timestamp with time zone, reason text) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    id bigint;
BEGIN
    IF rows IS NULL OR rows < 1 THEN
        RAISE EXCEPTION 'an export approval needs a positive number of rows'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF valid_until <= now() THEN
        RAISE EXCEPTION 'valid_until must be in the future'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'an approval needs a reason'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO @extschema@.grants (kind, role, rows, valid_until, reason, approver)
    VALUES ('export', role, rows, valid_until, reason, current_user::regrole)
    RETURNING grant_id INTO id;
    RETURN id;
END
$$;
COMMENT ON FUNCTION @extschema@.approve_export(role regrole, rows bigint, valid_until timestamp with time zone, reason text) IS 'time-boxed export approval: up to rows protected rows beyond the role''s export limits, until valid_until; they do not count toward the day';

CREATE FUNCTION @extschema@.export_usage(role regrole) RETURNS bigint
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_export_usage';

CREATE FUNCTION @extschema@.export_grant_used(grant_id bigint) RETURNS bigint
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pii_guard_export_grant_used';

-- Audit: write audit, verification, archives, alerts, access reviews
-- ==================================================================

CREATE FUNCTION @extschema@.audit_queue_status(OUT queued bigint, OUT capacity integer, OUT spilled bigint, OUT workers integer) RETURNS record
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_audit_queue_status';

-- Write events for any table (protect_table attaches them itself): one
-- event per statement with the row keys and the names of changed columns.
--
-- audit_table() refuses pii_guard's own tables (those in its schema or
-- belonging to the extension): audit_log and audit_seal are append-only
-- and tamper-evident by their own triggers, and write audit on audit_log
-- would write audit rows about audit rows.  Otherwise as in 0.1.
CREATE FUNCTION @extschema@.audit_table(tbl regclass, row_key name DEFAULT NULL::name) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    key name := row_key;
    t   name;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class c
                WHERE c.oid = tbl AND c.relnamespace = '@extschema@'::regnamespace)
       OR EXISTS (SELECT 1 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                   WHERE d.classid = 'pg_class'::regclass AND d.objid = tbl
                     AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                     AND e.extname = 'pii_guard') THEN
        RAISE EXCEPTION 'cannot audit pii_guard''s own table %', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'pii_guard''s tables are guarded by triggers of their own; write audit on them would record audit rows about audit rows.';
    END IF;
    IF key IS NULL THEN
        SELECT a.attname INTO key
          FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = tbl AND i.indisprimary AND i.indnatts = 1;
    END IF;
    IF key IS NULL THEN
        RAISE EXCEPTION 'table % needs a row key for write audit', tbl
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'Give it a single-column primary key or name a row_key column.';
    END IF;
    PERFORM @extschema@._maintenance(true);
    FOR t IN SELECT tgname FROM pg_trigger WHERE tgrelid = tbl AND tgname LIKE 'pii\_guard\_audit\_%' LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t, tbl);
    END LOOP;
    EXECUTE format('CREATE TRIGGER pii_guard_audit_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_write(%L)', tbl, key);
    EXECUTE format('CREATE TRIGGER pii_guard_audit_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_write(%L)', tbl, key);
    EXECUTE format('CREATE TRIGGER pii_guard_audit_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_write(%L)', tbl, key);
    EXECUTE format('CREATE TRIGGER pii_guard_audit_truncate AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_write(%L)', tbl, key);
    PERFORM @extschema@._maintenance(false);
    PERFORM @extschema@._audit_admin('audit_table', format('write audit on %s', tbl));
END
$$;

CREATE FUNCTION @extschema@.unaudit_table(tbl regclass) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t name;
BEGIN
    PERFORM @extschema@._maintenance(true);
    FOR t IN SELECT tgname FROM pg_trigger WHERE tgrelid = tbl AND tgname LIKE 'pii\_guard\_audit\_%' LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t, tbl);
    END LOOP;
    PERFORM @extschema@._maintenance(false);
    PERFORM @extschema@._audit_admin('unaudit_table', format('write audit off on %s', tbl));
END
$$;

-- Tamper evidence: the first sealed row whose content, MAC or chain link
-- no longer matches (a changed, deleted or forged row), then any unsealed
-- row whose MAC does not match (forged).  No rows: the log verifies.
--
-- verify_audit() over archives and table: the archives link up from seal
-- 1, each continuing the chain of the one before, and the table's chain
-- continues from the last archive.  (The files themselves:
-- verify_audit_archive().)
CREATE FUNCTION @extschema@.verify_audit() RETURNS TABLE(event_id bigint, seal_seq bigint, problem text)
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    s     record;
    a     @extschema@.audit_log;
    prev  bytea := NULL;
    want  bigint := 1;
BEGIN
    FOR s IN SELECT x.first_seal, x.last_seal, x.first_event, x.prev_chain_hash, x.last_chain_hash
               FROM @extschema@.audit_archives x ORDER BY x.first_seal LOOP
        IF s.first_seal <> want OR s.prev_chain_hash IS DISTINCT FROM prev THEN
            RETURN QUERY SELECT s.first_event, want, 'an archive is missing or was changed before this one: the chain was cut';
            RETURN;
        END IF;
        want := s.last_seal + 1;
        prev := s.last_chain_hash;
    END LOOP;
    FOR s IN SELECT x.seal_seq, x.event_id, x.chain_hash FROM @extschema@.audit_seal x ORDER BY x.seal_seq LOOP
        IF s.seal_seq <> want THEN
            RETURN QUERY SELECT s.event_id, want, 'a seal is missing before this one: the chain was cut';
            RETURN;
        END IF;
        want := want + 1;
        SELECT * INTO a FROM @extschema@.audit_log l WHERE l.event_id = s.event_id;
        IF NOT FOUND THEN
            RETURN QUERY SELECT s.event_id, s.seal_seq, 'sealed row is missing: it was deleted';
            RETURN;
        END IF;
        IF NOT @extschema@._audit_row_ok(a) THEN
            RETURN QUERY SELECT s.event_id, s.seal_seq, 'row does not match its MAC: it was changed';
            RETURN;
        END IF;
        IF @extschema@._audit_chain_next(prev, s.event_id, a.row_mac) <> s.chain_hash THEN
            RETURN QUERY SELECT s.event_id, s.seal_seq, 'chain link does not match: the chain was altered';
            RETURN;
        END IF;
        prev := s.chain_hash;
    END LOOP;
    FOR a IN SELECT l.* FROM @extschema@.audit_log l
              WHERE NOT EXISTS (SELECT 1 FROM @extschema@.audit_seal x WHERE x.event_id = l.event_id)
              ORDER BY l.event_id LOOP
        IF NOT @extschema@._audit_row_ok(a) THEN
            RETURN QUERY SELECT a.event_id, NULL::bigint, 'unsealed row does not match its MAC: it was forged or changed';
            RETURN;
        END IF;
    END LOOP;
END
$$;

-- The chain checked against an anchor kept outside the database: the head
-- (SEQ:HASH) that the audit worker logs after each sealing ("pii_guard
-- audit anchor: ...") and gives to pii_guard.audit_anchor_command.  A
-- chain that verifies by itself may still have lost its newest rows and
-- their seals, or been reset; kept against an anchor taken earlier, it
-- must still hold that seal with that hash (or, when that seal has been
-- archived -- see Retention below -- the archive that holds it must).
CREATE FUNCTION @extschema@.verify_audit(anchor text) RETURNS TABLE(event_id bigint, seal_seq bigint, problem text)
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    want_seq  bigint;
    want_hash bytea;
    p         record;
    s         record;
    arch      text;
BEGIN
    IF anchor IS NULL OR anchor !~ '^[0-9]{1,18}:[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'not an audit anchor'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An anchor reads SEQ:HASH: a seal sequence number, a colon, 64 hex digits.',
                  HINT = 'Take it from the server log''s "pii_guard audit anchor" lines or from what pii_guard.audit_anchor_command kept.';
    END IF;
    want_seq := split_part(anchor, ':', 1)::bigint;
    want_hash := decode(split_part(anchor, ':', 2), 'hex');
    FOR p IN SELECT * FROM @extschema@.verify_audit() LOOP
        RETURN QUERY SELECT p.event_id, p.seal_seq, p.problem;
    END LOOP;
    SELECT x.file INTO arch FROM @extschema@.audit_archives x
     WHERE want_seq BETWEEN x.first_seal AND x.last_seal;
    IF FOUND THEN
        FOR p IN SELECT * FROM @extschema@.verify_audit_archive(arch, anchor) LOOP
            RETURN QUERY SELECT p.event_id, p.seal_seq, format('%s (archive %s)', p.problem, p.file);
        END LOOP;
        RETURN;
    END IF;
    SELECT x.event_id, x.chain_hash INTO s FROM @extschema@.audit_seal x WHERE x.seal_seq = want_seq;
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::bigint, want_seq,
            'the chain ends before the anchor: its newest rows and seals were removed, or the log was reset';
    ELSIF s.chain_hash <> want_hash THEN
        RETURN QUERY SELECT s.event_id, want_seq,
            'the chain does not match the anchor at this seal: it was rewritten or reset';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.verify_audit(anchor text) IS 'verify_audit(), and the chain against an anchor kept outside the database (SEQ:HASH)';

-- Roles idle for at least `idle` that still hold sensitive or core clearance.
CREATE FUNCTION @extschema@.idle_privileged_roles(idle interval DEFAULT '90 days'::interval) RETURNS TABLE(member name, profile text, clearance @extschema@.level, last_activity timestamp with time zone)
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT r.member, r.profile, r.clearance, r.last_activity
      FROM @extschema@.access_review r
     WHERE r.clearance >= 'sensitive' AND r.can_login
       AND (r.last_activity IS NULL OR r.last_activity < now() - idle)
     ORDER BY r.member, r.profile
$$;

CREATE FUNCTION @extschema@.set_alerts(role regrole, denials_per_minute integer DEFAULT NULL::integer, rows_per_hour bigint DEFAULT NULL::bigint, work_from time without time zone DEFAULT NULL::time without time zone, work_to time without time zone DEFAULT NULL::time without time zone, dormant_after interval DEFAULT NULL::interval) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF (work_from IS NULL) <> (work_to IS NULL) THEN
        RAISE EXCEPTION 'working hours need both ends'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give work_from and work_to, e.g. ''08:00'' and ''19:00'' (server time zone), or neither.';
    END IF;
    UPDATE @extschema@.profiles p
       SET alert_denials_per_minute = set_alerts.denials_per_minute,
           alert_rows_per_hour = set_alerts.rows_per_hour,
           alert_work_from = set_alerts.work_from,
           alert_work_to = set_alerts.work_to,
           alert_dormant_after = set_alerts.dormant_after
     WHERE @extschema@._rolname(p.role) = @extschema@._rolname_here(set_alerts.role);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role % is not a pii_guard profile', role
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Give it a clearance first with pii_guard.set_clearance().';
    END IF;
    PERFORM @extschema@._audit_admin('set_alerts',
        format('%s: %s denials per minute, %s rows per hour, working hours %s, dormant after %s', role,
               coalesce(denials_per_minute::text, 'any'), coalesce(rows_per_hour::text, 'any'),
               coalesce(work_from::text || '-' || work_to::text, 'any'),
               coalesce(dormant_after::text, 'never')));
END
$$;

-- The archive step now: events older than older_than (default: the
-- pii_guard.audit_retention setting), at most max_events into one file.
-- Superusers only (the audit worker runs it by itself).
CREATE FUNCTION @extschema@.archive_audit(older_than interval DEFAULT NULL::interval, max_events integer DEFAULT 100000, OUT file text, OUT first_seal bigint, OUT last_seal bigint, OUT events bigint) RETURNS record
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_archive_audit';
COMMENT ON FUNCTION @extschema@.archive_audit(older_than interval, max_events integer, OUT file text, OUT first_seal bigint, OUT last_seal bigint, OUT events bigint) IS 'moves sealed audit events older than older_than (default pii_guard.audit_retention) to an archive file';

-- An archive file (or every archive, in seal order) checked line by line:
-- its header, each event against its row MAC and its chain link, no seal
-- missing, the trailer (a file without one was cut), the file against the
-- SHA-256 recorded when it was written; with an anchor (SEQ:HASH) whose
-- seal the archive holds, that seal's hash against the anchor.  No rows:
-- the archives verify.  Reads the files as the extension owner, by the
-- names pii_guard.audit_archives records only.
CREATE FUNCTION @extschema@.verify_audit_archive(archive text DEFAULT NULL::text, anchor text DEFAULT NULL::text) RETURNS TABLE(file text, event_id bigint, seal_seq bigint, problem text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    r         @extschema@.audit_archives;
    anchor_seq  bigint;
    anchor_hash bytea;
BEGIN
    IF anchor IS NOT NULL THEN
        IF anchor !~ '^[0-9]{1,18}:[0-9a-f]{64}$' THEN
            RAISE EXCEPTION 'not an audit anchor'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'An anchor reads SEQ:HASH: a seal sequence number, a colon, 64 hex digits.';
        END IF;
        anchor_seq := split_part(anchor, ':', 1)::bigint;
        anchor_hash := decode(split_part(anchor, ':', 2), 'hex');
    END IF;
    IF archive IS NOT NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.audit_archives x WHERE x.file = archive) THEN
        RAISE EXCEPTION 'there is no audit archive "%"', archive
            USING ERRCODE = 'undefined_object',
                  HINT = 'pii_guard.audit_archives lists the archives.';
    END IF;
    FOR r IN SELECT x.* FROM @extschema@.audit_archives x
              WHERE archive IS NULL OR x.file = archive ORDER BY x.first_seal LOOP
        RETURN QUERY SELECT * FROM @extschema@._verify_archive_file(r, anchor_seq, anchor_hash);
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.verify_audit_archive(archive text, anchor text) IS 'checks audit archive files (all, or one) line by line, against their records and optionally an anchor';

-- Discovery and masked copies
-- ===========================

-- Detectors: the kind of personal data a text value looks like, by its
-- content (cn_id with its check digit and birth date, mobile, bank_card
-- with a network prefix and the Luhn digit, email, landline, passport,
-- ipv4, plate, cn_name, address), or NULL.  Raises no error for any input.
CREATE FUNCTION @extschema@.detect_kind(value text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pii_guard_detect_kind';
COMMENT ON FUNCTION @extschema@.detect_kind(value text) IS 'the kind of personal data a value looks like by its content (cn_id, mobile, bank_card, email, landline, passport, ipv4, plate, cn_name, address), or NULL';

-- discover() in steps (run with its caller's rights, as discover() is;
-- executable by those who may run discover()).
CREATE FUNCTION @extschema@.discover(target text, sample_rows integer DEFAULT 10000) RETURNS TABLE(relation regclass, column_name name, data_type text, kind text, matched_by text, share numeric, sampled bigint, suggested_level @extschema@.level, suggested_mask text, protect_call text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    rel  regclass;
    rels regclass[];
BEGIN
    IF sample_rows IS NULL OR sample_rows < 1 THEN
        RAISE EXCEPTION 'sample_rows must be at least 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    rels := @extschema@._discover_tables(target);
    IF rels IS NULL THEN
        RETURN;
    END IF;
    PERFORM @extschema@._audit_discover(target, cardinality(rels), sample_rows);
    FOREACH rel IN ARRAY rels LOOP
        CONTINUE WHEN (SELECT c.relnamespace = '@extschema@'::regnamespace FROM pg_class c WHERE c.oid = rel);
        IF NOT has_table_privilege(rel, 'SELECT') THEN
            RAISE NOTICE 'table % skipped: you may not read it', rel;
            CONTINUE;
        END IF;
        RETURN QUERY SELECT * FROM @extschema@._discover_table(rel, sample_rows);
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.discover(target text, sample_rows integer) IS 'personal data found in the unprotected columns of a table or schema, by content and by name, with the protect_column call to run';

-- anonymize_into() in steps (_anonymize_into calls them in order; they run
-- with its rights and no one else may call them).
CREATE FUNCTION @extschema@.anonymize_into(target_schema name, source_schemas name[] DEFAULT NULL::name[]) RETURNS TABLE(source regclass, copy regclass, rows bigint, pseudonymised name[], masked name[], hidden name[])
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT * FROM @extschema@._anonymize_into(current_user::regrole, target_schema, source_schemas)
$$;
COMMENT ON FUNCTION @extschema@.anonymize_into(target_schema name, source_schemas name[]) IS 'a masked copy of the application''s tables in a new schema: protected columns pseudonymised (format-preserving, consistent across tables) or masked, checked to hold no real value';

-- Privacy and data subjects: access reports, erasure, retention, purposes and consents, crypto-shredding
-- ======================================================================================================

-- subject_report() in sections, one function each (they run with its
-- rights; no one else may call them).  t: _subject_table(tbl): the report
-- has checked that the row is there, once.
CREATE FUNCTION @extschema@.subject_report(tbl regclass, row_key text) RETURNS TABLE(section text, item text, value text, at timestamp with time zone, by_role text, detail text)
    LANGUAGE sql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT * FROM @extschema@._subject_report(current_user::regrole, tbl, row_key)
$$;
COMMENT ON FUNCTION @extschema@.subject_report(tbl regclass, row_key text) IS 'a data subject''s request: what is held about the row (as the caller sees it), its approvals, related rows, and every read, export and change of it in the audit trail';

CREATE FUNCTION @extschema@.erase_subject(tbl regclass, row_key text, reason text) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t  record;
    n  bigint;
BEGIN
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'an erasure needs a reason'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say why, e.g. the customer''s request and its reference.';
    END IF;
    SELECT * INTO t FROM @extschema@._subject_table(tbl);
    EXECUTE format('DELETE FROM %s WHERE %I = $1::%s', t.relation, t.key_col, t.key_type) USING row_key;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        RAISE EXCEPTION 'no row of % has row key %', t.relation, row_key
            USING ERRCODE = 'no_data_found',
                  HINT = 'Or row-level security hides it from you.';
    END IF;
    PERFORM @extschema@._audit_erasure(current_user::regrole, tbl, row_key, reason, n);
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.erase_subject(tbl regclass, row_key text, reason text) IS 'the right to deletion: the person''s row deleted (with what its foreign keys cascade to), audited with the reason';

CREATE FUNCTION @extschema@.set_retention(tbl regclass, date_column name, keep interval, action text DEFAULT 'delete'::text, batch_rows integer DEFAULT 1000, activity regclass DEFAULT NULL::regclass, activity_column name DEFAULT NULL::name) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t     record;
    typ   regtype;
    akey  name;
BEGIN
    SELECT * INTO t FROM @extschema@._subject_table(tbl);
    IF keep IS NULL THEN
        DELETE FROM @extschema@.retention_rules r WHERE @extschema@._relname(r.base) = @extschema@._relname_here(t.base);
        PERFORM @extschema@._audit_admin('set_retention', format('%s: no retention rule', t.relation));
        RETURN;
    END IF;
    SELECT a.atttypid INTO typ FROM pg_attribute a
     WHERE a.attrelid = t.base AND a.attname = date_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF typ IS NULL OR typ NOT IN ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype) THEN
        RAISE EXCEPTION 'column "%" of % is not a date', date_column, t.relation
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name a column of type date, timestamp or timestamptz: rows are kept for keep after it.';
    END IF;
    IF (activity IS NULL) <> (activity_column IS NULL) THEN
        RAISE EXCEPTION 'an activity table needs its date column, and the other way round'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF activity IS NOT NULL THEN
        -- "3 years after the customer's last order": the activity table's
        -- one-column foreign key to the row key says whose each row is
        SELECT r.col INTO akey FROM @extschema@._row_key_fks(activity) r WHERE r.base = t.base LIMIT 1;
        IF akey IS NULL THEN
            RAISE EXCEPTION '% has no foreign key to the row key of %', activity, t.relation
                USING ERRCODE = 'invalid_foreign_key',
                      HINT = 'The activity table says whose each of its rows is by a foreign key to the protected table''s row key.';
        END IF;
        SELECT a.atttypid INTO typ FROM pg_attribute a
         WHERE a.attrelid = activity AND a.attname = activity_column AND a.attnum > 0 AND NOT a.attisdropped;
        IF typ IS NULL OR typ NOT IN ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype) THEN
            RAISE EXCEPTION 'column "%" of % is not a date', activity_column, activity
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF action IS NULL OR action NOT IN ('delete', 'anonymize') THEN
        RAISE EXCEPTION 'retention action must be delete or anonymize'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF action = 'anonymize' AND EXISTS (
           SELECT 1 FROM @extschema@.column_rules c JOIN pg_attribute a
                  ON a.attrelid = c.base AND a.attname = c.column_name
            WHERE c.base = t.base AND a.attnotnull
              AND a.atttypid NOT IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype)) THEN
        RAISE EXCEPTION 'the protected columns of % cannot all be anonymised', t.relation
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Anonymising sets each protected column to NULL (a NOT NULL text column to an empty string); a NOT NULL column of another type cannot be.',
                  HINT = 'Delete the rows instead, or drop that column''s NOT NULL.';
    END IF;
    IF keep <= interval '0' OR batch_rows IS NULL OR batch_rows < 1 THEN
        RAISE EXCEPTION 'retention needs a positive keep and batch_rows'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO @extschema@.retention_rules AS r
           (base, date_column, keep, action, batch_rows, activity, activity_column, activity_key)
    VALUES (t.base, date_column, keep, action, batch_rows, activity, activity_column, akey)
    ON CONFLICT ON CONSTRAINT retention_rules_pkey DO UPDATE
       SET date_column = EXCLUDED.date_column, keep = EXCLUDED.keep, action = EXCLUDED.action,
           batch_rows = EXCLUDED.batch_rows, activity = EXCLUDED.activity,
           activity_column = EXCLUDED.activity_column, activity_key = EXCLUDED.activity_key;
    PERFORM @extschema@._audit_admin('set_retention',
        format('%s: %s rows %s after %I%s, in batches of %s', t.relation, action, keep, date_column,
               CASE WHEN activity IS NULL THEN ''
                    ELSE format(' and after the latest %I of their rows in %s', activity_column, activity) END,
               batch_rows));
END
$$;
COMMENT ON FUNCTION @extschema@.set_retention(tbl regclass, date_column name, keep interval, action text, batch_rows integer, activity regclass, activity_column name) IS 'the retention rule of a protected table: delete or anonymize its rows keep after date_column (keep NULL: no rule)';

CREATE PROCEDURE @extschema@.apply_retention(IN max_rows bigint DEFAULT NULL::bigint)
    LANGUAGE plpgsql
    AS $$
DECLARE
    r       record;
    n       bigint;
    total   bigint := 0;
    cutoff  timestamptz;
BEGIN
    FOR r IN SELECT base, keep FROM @extschema@.retention_rules ORDER BY base::text LOOP
        cutoff := now() - r.keep;
        LOOP
            n := @extschema@._retention_batch(r.base, cutoff);
            PERFORM @extschema@._audit_retention(r.base, n, cutoff);
            COMMIT;
            total := total + n;
            EXIT WHEN n = 0 OR (max_rows IS NOT NULL AND total >= max_rows);
        END LOOP;
        EXIT WHEN max_rows IS NOT NULL AND total >= max_rows;
    END LOOP;
    RAISE NOTICE 'pii_guard retention: % rows', total;
END
$$;
COMMENT ON PROCEDURE @extschema@.apply_retention(IN max_rows bigint) IS 'the retention rules applied: expired rows deleted or anonymised in batches, each committed and audited with its count (max_rows: stop after about that many)';

CREATE FUNCTION @extschema@.define_purpose(purpose text, description text, requires_consent boolean DEFAULT true) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF purpose IS NULL OR purpose !~ '^[a-z][a-z0-9_]*$' OR length(purpose) >= 64
       OR coalesce(btrim(description), '') = '' OR requires_consent IS NULL THEN
        RAISE EXCEPTION 'a purpose is a lower-case word with a description'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'e.g. define_purpose(''marketing'', ''offers by e-mail and SMS'').';
    END IF;
    INSERT INTO @extschema@.purposes AS p VALUES (purpose, description, requires_consent)
    ON CONFLICT ON CONSTRAINT purposes_pkey
    DO UPDATE SET description = EXCLUDED.description, requires_consent = EXCLUDED.requires_consent;
    PERFORM @extschema@._audit_admin('define_purpose',
        format('%s (%s): %s', purpose,
               CASE WHEN requires_consent THEN 'needs consent' ELSE 'no consent needed' END, description));
END
$$;

-- (whoever the DBA lets record consents -- the application's role that
-- collects them, say -- is granted EXECUTE on these two)
CREATE FUNCTION @extschema@.record_consent(tbl regclass, row_key text, purpose text, how text, columns name[] DEFAULT NULL::name[], given_at timestamp with time zone DEFAULT now()) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t     record;
    id    bigint;
BEGIN
    SELECT * INTO t FROM @extschema@._subject_table(tbl);
    IF NOT EXISTS (SELECT 1 FROM @extschema@.purposes p WHERE p.purpose = record_consent.purpose) THEN
        RAISE EXCEPTION 'no purpose "%"', purpose
            USING ERRCODE = 'undefined_object',
                  HINT = 'An administrator defines purposes with pii_guard.define_purpose().';
    END IF;
    IF coalesce(btrim(how), '') = '' OR given_at IS NULL OR given_at > now() THEN
        RAISE EXCEPTION 'a consent needs how it was given and when (not later than now)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(columns) c
                WHERE NOT EXISTS (SELECT 1 FROM @extschema@.column_rules r
                                   WHERE r.base = t.base AND r.column_name = c)) THEN
        RAISE EXCEPTION 'a consent names a column of % that is not protected', t.relation
            USING ERRCODE = 'undefined_column';
    END IF;
    IF NOT (@extschema@._subject_table(tbl, row_key)).present THEN
        RAISE EXCEPTION 'no row of % has row key %', t.relation, row_key
            USING ERRCODE = 'no_data_found';
    END IF;
    -- the key as the row key's own type prints it ('042' is row 42), which
    -- is how masking views look consents up
    EXECUTE format('SELECT $1::%s::text', t.key_type) INTO row_key USING row_key;
    INSERT INTO @extschema@.consents (base, row_key, purpose, columns, given_at, how)
    VALUES (t.base, row_key, purpose, columns, given_at, how)
    RETURNING consent_id INTO id;
    PERFORM @extschema@._audit_admin('record_consent',
        format('consent %s: %s row %s for %s%s, given %s (%s)', id, t.relation, row_key, purpose,
               coalesce(' on ' || array_to_string(columns, ', '), ''), given_at, how));
    RETURN id;
END
$$;

CREATE FUNCTION @extschema@.withdraw_consent(tbl regclass, row_key text, purpose text, how text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    t  record;
    n  integer;
BEGIN
    SELECT * INTO t FROM @extschema@._subject_table(tbl);
    IF coalesce(btrim(how), '') = '' THEN
        RAISE EXCEPTION 'a withdrawal needs how it was made'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE @extschema@.consents c SET withdrawn_at = now(), withdrawn_how = withdraw_consent.how
     WHERE @extschema@._relname(c.base) = @extschema@._relname_here(t.base) AND c.row_key = withdraw_consent.row_key
       AND c.purpose = withdraw_consent.purpose AND c.withdrawn_at IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        RAISE EXCEPTION 'row % of % has no live consent for %', row_key, t.relation, purpose
            USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM @extschema@._audit_admin('withdraw_consent',
        format('%s row %s withdrew its consent for %s (%s)', t.relation, row_key, purpose, how));
    RETURN n;
END
$$;

-- The purposes a profile's members may declare (NULL: the profile is not
-- limited to purposes).
CREATE FUNCTION @extschema@.set_purposes(role regrole, purposes text[]) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    missing text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.profiles p WHERE p.role = set_purposes.role) THEN
        RAISE EXCEPTION 'role % is not a pii_guard profile', role
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Give it a clearance first with pii_guard.set_clearance().';
    END IF;
    IF purposes IS NOT NULL AND (cardinality(purposes) = 0 OR array_position(purposes, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'a profile''s purposes are a non-empty list of purposes, or NULL (not limited)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT u INTO missing FROM unnest(purposes) u
     WHERE NOT EXISTS (SELECT 1 FROM @extschema@.purposes d WHERE d.purpose = u) LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'no purpose "%"', missing
            USING ERRCODE = 'undefined_object',
                  HINT = 'An administrator defines purposes with pii_guard.define_purpose().';
    END IF;
    UPDATE @extschema@.profiles p
       SET purposes = (SELECT array_agg(DISTINCT u ORDER BY u) FROM unnest(set_purposes.purposes) u)
     WHERE @extschema@._rolname(p.role) = @extschema@._rolname_here(set_purposes.role);
    PERFORM @extschema@._audit_admin('set_purposes',
        format('%s: %s', role, coalesce(array_to_string(purposes, ', '), 'any (not limited)')));
END
$$;

-- May role declare purpose?  (Checked by SET pii_guard.purpose.)  Yes when
-- a profile whose privileges it has lists it, or a live approval for it
-- names it.
CREATE FUNCTION @extschema@.may_declare(role regrole, purpose text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT EXISTS (SELECT 1 FROM @extschema@.profiles p
                    WHERE may_declare.purpose = ANY (p.purposes)
                      AND pg_has_role(may_declare.role, p.role, 'USAGE'))
        OR EXISTS (SELECT 1 FROM @extschema@.grants g
                    WHERE g.purpose = may_declare.purpose AND g.kind = 'unmask'
                      AND g.revoked_at IS NULL AND g.valid_until > now()
                      AND pg_has_role(may_declare.role, g.role, 'USAGE'))
$$;

-- Keep tbl's encrypted values under per-subject keys, from now on and for
-- the rows it has (re-sealed here, with the caller's privileges: the
-- table's owner, or a superuser, runs it).  subject_column: whose values
-- they are (default: the table's own row key).
CREATE FUNCTION @extschema@.shred_by(tbl regclass, subject_column name DEFAULT NULL::name) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    s  record;
    n  bigint := 0;
BEGIN
    SELECT * INTO s FROM @extschema@._shred_by(current_user::regrole, tbl, subject_column);
    IF s.encrypted IS NOT NULL THEN
        EXECUTE format('UPDATE %s SET %s', s.base,
                       (SELECT string_agg(format('%I = %I', c, c), ', ') FROM unnest(s.encrypted) c));
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.shred_by(tbl regclass, subject_column name) IS 'crypto-shredding: tbl''s encrypted values kept under a key per subject (the row of the subject''s table named by subject_column, default the row key); returns the rows re-sealed';

CREATE FUNCTION @extschema@.shred_subject(tbl regclass, row_key text, reason text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    id bigint;
BEGIN
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'destroying a subject key needs a reason'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    id := @extschema@._shred(tbl, row_key, reason);
    IF id IS NULL THEN
        RAISE EXCEPTION 'row % of % has no subject key', row_key, tbl
            USING ERRCODE = 'no_data_found',
                  HINT = 'Only tables named by pii_guard.shred_by() keep values under subject keys.';
    END IF;
    RETURN id;
END
$$;
COMMENT ON FUNCTION @extschema@.shred_subject(tbl regclass, row_key text, reason text) IS 'crypto-shredding: the subject''s key destroyed, so that its values in every dump and copy no longer decrypt; audited with the reason';

--------------------------------------------------------------------------
-- 5b. Scale-out on Citus
--------------------------------------------------------------------------

-- An active data key of every purpose, created now where missing.
CREATE FUNCTION @extschema@._ensure_data_keys() RETURNS void
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pii_guard_ensure_data_keys';

-- One set of data keys for a Citus cluster.  Run once on the coordinator,
-- by a superuser, after CREATE EXTENSION pii_guard (which Citus also runs on
-- every worker): data_keys and subject_keys become reference tables, so
-- that every node unwraps the same keys with the same master key, and every
-- key created, rotated, re-wrapped or shredded later on the coordinator
-- reaches every node in the same two-phase commit (and a node added later
-- with the rest of the reference tables).  Each node then reads its own
-- placement of them.  Refused while a worker holds keys of its own: what it
-- encrypted with them would no longer decrypt.
CREATE FUNCTION @extschema@.citus_setup()
RETURNS TABLE (relation regclass, placements integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl regclass;
    mine text;
    w record;
    fk record;
    fks text[] := '{}';
    sync text;
    placement text;
    placements_list text[] := '{}';
    saved text[] := '{}';
    fresh boolean := false;
    item json;
    -- What every node's masking decisions read (where the shards are: a
    -- worker reveals the values of its own shards, under the reading role's
    -- policy), and the tables whose foreign keys point into them.
    policy constant regclass[] := ARRAY['@extschema@.protected_tables', '@extschema@.column_rules',
        '@extschema@.profiles', '@extschema@.profile_overrides', '@extschema@.grants', '@extschema@.purposes',
        '@extschema@.consents', '@extschema@.sequence_grants', '@extschema@.retention_rules',
        '@extschema@.shredding']::regclass[];
    -- (run on the workers too, with their default search_path: qualified)
    fp constant text := 'SELECT CASE WHEN pg_catalog.count(*) OPERATOR(pg_catalog.=) 0 THEN ''none'' '
                        'ELSE pg_catalog.md5(pg_catalog.string_agg(pg_catalog.concat(key_id, '':'', '
                        'coalesce(pg_catalog.encode(wrapped_key, ''hex''), ''shredded'')), '','' ORDER BY key_id)) END FROM %s';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'Citus is not installed in this database'
            USING ERRCODE = '55000',
                  HINT = 'Preload citus before pii_guard on every node (shared_preload_libraries = ''citus,pii_guard''), then CREATE EXTENSION citus.';
    END IF;
    IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'permission denied for function citus_setup'
            USING ERRCODE = '42501', DETAIL = 'Only a superuser may share pii_guard''s keys across a Citus cluster.';
    END IF;
    IF (SELECT g.groupid FROM pg_dist_local_group g) <> 0 THEN
        RAISE EXCEPTION 'pii_guard.citus_setup() runs on the coordinator'
            USING ERRCODE = '55000', HINT = 'Connect to the coordinator and run it there.';
    END IF;
    PERFORM @extschema@._ensure_data_keys();
    FOREACH tbl IN ARRAY ARRAY['@extschema@.data_keys'::regclass, '@extschema@.subject_keys'::regclass] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = tbl) THEN
            EXECUTE format(fp, tbl) INTO mine;
            FOR w IN SELECT * FROM run_command_on_workers(format(fp, tbl)) LOOP
                IF NOT w.success THEN
                    RAISE EXCEPTION 'could not read % on worker %:%', tbl, w.nodename, w.nodeport
                        USING ERRCODE = '08006', DETAIL = w.result;
                END IF;
                IF w.result NOT IN ('none', mine) THEN
                    RAISE EXCEPTION 'worker %:% has keys of its own in %', w.nodename, w.nodeport, tbl
                        USING ERRCODE = '55000',
                              DETAIL = 'What that worker encrypted with them, and its audit chain, would no longer verify or decrypt once the coordinator''s keys are shared.',
                              HINT = 'If that worker has encrypted nothing it keeps and recorded no audit event, delete them there (DELETE FROM pii_guard.data_keys); otherwise move its data to the coordinator first. Then run citus_setup() again.';
                END IF;
            END LOOP;
            -- (data_keys' statement trigger, which drops every backend's
            -- key cache, has to follow the table onto its placements)
            PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
            PERFORM set_config('client_min_messages', 'warning', true);
            PERFORM create_reference_table(tbl);
            PERFORM truncate_local_data_after_distributing_table(tbl);
            PERFORM @extschema@._audit_admin('citus_setup', format('%s is a reference table on every node', tbl));
        END IF;
        relation := tbl;
        placements := (SELECT count(*) FROM pg_dist_shard s JOIN pg_dist_placement pl USING (shardid)
                        WHERE s.logicalrelid = tbl);
        RETURN NEXT;
    END LOOP;
    IF EXISTS (SELECT 1 FROM unnest(policy) p(rel)
                WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition d WHERE d.logicalrelid = p.rel)) THEN
        IF EXISTS (SELECT 1 FROM @extschema@.protected_tables) THEN
            RAISE EXCEPTION 'tables are protected on the coordinator alone'
                USING ERRCODE = '55000',
                      DETAIL = format('The policy shared across the cluster would name tables the workers do not have: %s.',
                                      (SELECT string_agg(t.base::text, ', ' ORDER BY t.base::text) FROM @extschema@.protected_tables t)),
                      HINT = 'Unprotect them (pii_guard.unprotect_table), run citus_setup(), distribute them, and protect them again.';
        END IF;
        FOREACH tbl IN ARRAY policy LOOP
            CONTINUE WHEN EXISTS (SELECT 1 FROM pg_dist_partition d WHERE d.logicalrelid = tbl);
            FOR w IN SELECT * FROM run_command_on_workers(format('SELECT pg_catalog.count(*) FROM %s', tbl)) LOOP
                IF NOT w.success THEN
                    RAISE EXCEPTION 'could not read % on worker %:%', tbl, w.nodename, w.nodeport
                        USING ERRCODE = '08006', DETAIL = w.result;
                END IF;
                IF w.result <> '0' THEN
                    RAISE EXCEPTION 'worker %:% has a policy of its own in %', w.nodename, w.nodeport, tbl
                        USING ERRCODE = '55000',
                              DETAIL = 'On a Citus cluster pii_guard''s policy is declared on the coordinator and read on every node.',
                              HINT = 'Unprotect what is protected on that worker (it protects nothing the coordinator sees), then run citus_setup() again.';
                END IF;
            END LOOP;
        END LOOP;
        -- (Citus distributes a table with no foreign key to a local table:
        -- the keys between the policy tables are made again once they are
        -- all reference tables -- but those of grants and consents, which
        -- approvers and consent recorders write: Citus would lock the tables
        -- they reference on their behalf, which it lets only roles that may
        -- write those do.  Their rows go with their table explicitly.)
        FOR fk IN SELECT c.conrelid::regclass AS rel, c.conname, pg_get_constraintdef(c.oid) AS def
                    FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid = ANY (policy)
                   ORDER BY c.conrelid, c.conname LOOP
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.rel, fk.conname);
            -- (and from the workers' tables, which become the shells)
            FOR w IN SELECT * FROM run_command_on_workers(
                         format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', fk.rel, fk.conname)) LOOP
                IF NOT w.success THEN
                    RAISE EXCEPTION 'could not change % on worker %:%', fk.rel, w.nodename, w.nodeport
                        USING ERRCODE = '08006', DETAIL = w.result;
                END IF;
            END LOOP;
            IF fk.rel NOT IN ('@extschema@.grants'::regclass, '@extschema@.consents'::regclass) THEN
                fks := fks || format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.rel, fk.conname, fk.def);
            END IF;
        END LOOP;
        -- (The rows are put back one by one once the tables are reference
        -- tables: Citus would copy them to the workers in binary, OIDs and
        -- all -- and a table or a role has another OID on each node -- while
        -- an INSERT ... VALUES reaches every node by name.)
        FOREACH tbl IN ARRAY policy LOOP
            EXECUTE format('SELECT coalesce(pg_catalog.json_agg(t), ''[]'') FROM %s t', tbl) INTO mine;
            saved := saved || mine;
        END LOOP;
        EXECUTE 'TRUNCATE ' || array_to_string(policy, ', ');
        PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
        PERFORM set_config('client_min_messages', 'warning', true);
        FOREACH tbl IN ARRAY policy LOOP
            PERFORM create_reference_table(tbl);
            PERFORM @extschema@._audit_admin('citus_setup', format('%s is a reference table on every node', tbl));
        END LOOP;
        FOREACH mine IN ARRAY fks LOOP
            EXECUTE mine;
        END LOOP;
        FOR i IN 1 .. array_length(policy, 1) LOOP
            FOR item IN SELECT * FROM pg_catalog.json_array_elements(saved[i]::json) LOOP
                EXECUTE format('INSERT INTO %s VALUES ((pg_catalog.json_populate_record(NULL::%s, $1)).*)',
                               policy[i], policy[i]) USING item;
            END LOOP;
        END LOOP;
        fresh := true;
    END IF;
    -- The workers' placements of the policy, written again by name.  Citus
    -- copies a reference table to a node -- when the table is made one, and
    -- to a node added later -- in binary, OIDs and all, and a table or a
    -- role has another OID on each node: the rows are rendered here, where
    -- a regclass or regrole shows its name, and loaded there, where the name
    -- finds that node's own.  (Run again after adding a node; not in the
    -- call that made them reference tables, whose placements the workers'
    -- connections here cannot see yet -- nor need to: see above.)
    sync := '';
    IF NOT fresh THEN
        -- (no policy change between reading it here and loading it there)
        EXECUTE 'LOCK TABLE ' || array_to_string(policy, ', ') || ' IN EXCLUSIVE MODE';
    END IF;
    FOREACH tbl IN ARRAY CASE WHEN fresh THEN '{}'::regclass[] ELSE policy END LOOP
        placement := format('%s_%s', tbl, (SELECT s.shardid FROM pg_dist_shard s WHERE s.logicalrelid = tbl));
        EXECUTE format('SELECT coalesce(pg_catalog.json_agg(t), ''[]'') FROM %s t', tbl) INTO mine;
        placements_list := placements_list || placement;
        sync := sync || format('INSERT INTO %s SELECT * FROM pg_catalog.json_populate_recordset(NULL::%s, %L); ',
                               placement, placement, mine);
    END LOOP;
    sync := format('DO %L', format('BEGIN PERFORM pg_catalog.set_config(%L, %L, true); TRUNCATE %s; %s END',
                                   'citus.enable_manual_changes_to_shards', 'on',
                                   array_to_string(placements_list, ', '), sync));
    FOR w IN SELECT * FROM run_command_on_workers(sync) WHERE NOT fresh LOOP
        IF NOT w.success THEN
            RAISE EXCEPTION 'could not write pii_guard''s policy on worker %:%', w.nodename, w.nodeport
                USING ERRCODE = '08006', DETAIL = w.result;
        END IF;
    END LOOP;
    PERFORM @extschema@._citus_profile_logins(ARRAY(SELECT p.role FROM @extschema@.profiles p), true);
    FOREACH tbl IN ARRAY policy LOOP
        relation := tbl;
        placements := (SELECT count(*) FROM pg_dist_shard s JOIN pg_dist_placement pl USING (shardid)
                        WHERE s.logicalrelid = tbl);
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.citus_setup() IS 'Citus: one set of data keys and one policy for the cluster (reference tables replicated to every node); run on the coordinator, and again after adding a node';

-- Every node's audit log in one place (Citus): each node keeps its own log
-- and chain; these read them all from the coordinator, over connections as
-- the calling role, which must be able to log in on every node.
CREATE FUNCTION @extschema@._cluster_json(what text, since timestamptz DEFAULT NULL)
RETURNS TABLE (node text, result json)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    command text;
    r record;
BEGIN
    -- (Run on every node with its default search_path and DateStyle: the
    -- names are qualified, the time is ISO 8601 in UTC.)
    IF what = 'log' THEN
        command := format(
            'SELECT coalesce(pg_catalog.json_agg(a ORDER BY a.event_id), ''[]'') FROM ('
            'SELECT event_id, event_time, kind, session_role, acting_role, client_addr, application_name, '
            'relation, operation, columns_clear, columns_masked, columns_changed, "rows", row_keys, '
            'row_keys_masked, detail FROM @extschema@.audit_log '
            'WHERE event_time OPERATOR(pg_catalog.>=) %L::pg_catalog.timestamptz) a',
            CASE WHEN isfinite(coalesce(since, '-infinity'))
                 THEN to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                 ELSE coalesce(since, '-infinity')::text END);
    ELSIF what = 'verify' THEN
        command := 'SELECT coalesce(pg_catalog.json_agg(v), ''[]'') FROM @extschema@.verify_audit() v';
    ELSE
        RAISE EXCEPTION 'unknown cluster read "%"', what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        node := 'local';
        EXECUTE command INTO result;
        RETURN NEXT;
        RETURN;
    END IF;
    -- (A coordinator that is not in pg_dist_node is still run on, as node 0.)
    FOR r IN SELECT coalesce(n.nodename || ':' || n.nodeport,
                             coalesce(current_setting('citus.local_hostname', true), 'localhost') || ':' ||
                             current_setting('port')) AS name,
                    x.success, x.result
               FROM run_command_on_all_nodes(command) x
               LEFT JOIN pg_dist_node n USING (nodeid)
              ORDER BY coalesce(n.groupid, 0), n.nodename, n.nodeport LOOP
        IF NOT r.success THEN
            RAISE EXCEPTION 'could not read the audit log of node %', r.name
                USING ERRCODE = 'connection_failure', DETAIL = r.result,
                      HINT = 'The calling role must be able to log in on every node (a role it SET ROLE to cannot be connected as).';
        END IF;
        node := r.name;
        result := r.result::json;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE FUNCTION @extschema@.cluster_audit_log(since timestamptz DEFAULT now() - interval '1 day')
RETURNS TABLE (node text, event_id bigint, event_time timestamptz, kind text, session_role text,
               acting_role text, client_addr inet, application_name text, relation text, operation text,
               columns_clear text[], columns_masked text[], columns_changed text[], "rows" bigint,
               row_keys text[], row_keys_masked text[], detail text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.node, j.*
      FROM @extschema@._cluster_json('log', since) c,
           json_to_recordset(c.result) AS j(event_id bigint, event_time timestamptz, kind text, session_role text,
               acting_role text, client_addr inet, application_name text, relation text, operation text,
               columns_clear text[], columns_masked text[], columns_changed text[], "rows" bigint,
               row_keys text[], row_keys_masked text[], detail text)
     ORDER BY j.event_time, c.node, j.event_id
$$;
COMMENT ON FUNCTION @extschema@.cluster_audit_log(since timestamptz) IS 'Citus: every node''s audit events since a time, with the node they were recorded on';

CREATE FUNCTION @extschema@.verify_cluster_audit()
RETURNS TABLE (node text, event_id bigint, seal_seq bigint, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.node, j.*
      FROM @extschema@._cluster_json('verify') c,
           json_to_recordset(c.result) AS j(event_id bigint, seal_seq bigint, problem text)
$$;
COMMENT ON FUNCTION @extschema@.verify_cluster_audit() IS 'Citus: verify_audit() on every node, each node''s chain; no rows: all verify';

--------------------------------------------------------------------------
-- 6. Views, casts, triggers and event triggers
--------------------------------------------------------------------------

-- Views
-- =====

-- What the DBA needs to know about the master keys, without the keys.
CREATE VIEW @extschema@.master_keys AS
SELECT 'current'::text AS which, k.available,
       pg_catalog.encode(k.fingerprint, 'hex') AS fingerprint, k.problem
  FROM @extschema@.master_key_info(false) AS k
UNION ALL
SELECT 'previous', k.available, pg_catalog.encode(k.fingerprint, 'hex'), k.problem
  FROM @extschema@.master_key_info(true) AS k;

-- The data keys, without their wrapped key material.
CREATE VIEW @extschema@.key_status AS
SELECT d.key_id, d.purpose, d.state, d.created_at, d.retired_at,
       pg_catalog.encode(d.master_key_fingerprint, 'hex') AS master_key_fingerprint,
       d.master_key_fingerprint IS NOT DISTINCT FROM
           (SELECT k.fingerprint FROM @extschema@.master_key_info(false) AS k)
           AS wrapped_by_current_master_key
  FROM @extschema@.data_keys AS d;

-- Export approvals and how much of each is used.
CREATE VIEW @extschema@.export_approvals AS
SELECT g.grant_id, g.role, g.rows, @extschema@.export_grant_used(g.grant_id) AS used,
       g.valid_from, g.valid_until, g.revoked_at, g.reason, g.approver, g.created_at,
       g.revoked_at IS NULL AND g.valid_until > now()
           AND @extschema@.export_grant_used(g.grant_id) < g.rows AS live
  FROM @extschema@.grants g WHERE g.kind = 'export';

-- The questions compliance staff ask.
--
-- Who accessed which row key, clear or masked (reads list up to
-- pii_guard.audit_max_row_keys keys per statement; writes list the rows
-- they changed).  Filter by relation, row_key and event_time.
CREATE VIEW @extschema@.audit_row_access AS
SELECT l.event_id, l.event_time, l.kind, l.session_role, l.acting_role, l.client_addr,
       l.application_name, l.relation, l.operation, k.row_key, 'clear'::text AS access,
       coalesce(l.columns_clear, l.columns_changed) AS columns
  FROM @extschema@.audit_log l, unnest(l.row_keys) AS k(row_key)
UNION ALL
SELECT l.event_id, l.event_time, l.kind, l.session_role, l.acting_role, l.client_addr,
       l.application_name, l.relation, l.operation, k.row_key, 'masked', l.columns_masked
  FROM @extschema@.audit_log l, unnest(l.row_keys_masked) AS k(row_key);

CREATE VIEW @extschema@.audit_exports AS
SELECT event_id, event_time, session_role, acting_role, client_addr, application_name,
       relation, operation, rows, columns_clear, columns_masked, detail
  FROM @extschema@.audit_log WHERE kind = 'export';

CREATE VIEW @extschema@.audit_admin_changes AS
SELECT event_id, event_time, session_role, acting_role, client_addr, application_name,
       operation AS action, detail
  FROM @extschema@.audit_log WHERE kind = 'admin';

-- Access review: each profile and the roles whose privileges include it,
-- the levels it reads in clear, and the last activity seen in the audit.
CREATE VIEW @extschema@.access_review AS
SELECT p.role::text AS profile, p.clearance,
       (SELECT array_agg(l.lvl ORDER BY l.lvl) FROM unnest(enum_range(NULL::@extschema@.level)) l(lvl)
         WHERE l.lvl <= p.clearance) AS clear_levels,
       m.rolname AS member, m.rolcanlogin AS can_login,
       (SELECT max(a.event_time) FROM @extschema@.audit_log a WHERE a.session_role = m.rolname) AS last_activity,
       (SELECT count(*) FROM @extschema@.grants g
         WHERE pg_has_role(m.oid, g.role::oid, 'USAGE') AND g.revoked_at IS NULL
           AND g.valid_until > now()) AS live_grants
  FROM @extschema@.profiles p
  JOIN pg_roles m ON pg_has_role(m.oid, p.role::oid, 'USAGE') AND NOT m.rolsuper;

-- Identical deny events close together (same role, application, object,
-- operation, query and reason) are one row, its detail ending "; N times":
-- a loop of refused statements does not flood the log.  attempts is N (1
-- for a row that stands for one refusal).
CREATE VIEW @extschema@.audit_denials AS
SELECT event_id, event_time, session_role, acting_role, client_addr, application_name,
       relation, operation, rows, detail,
       coalesce(pg_catalog.substring(detail, '; ([0-9]+) times$')::bigint, 1) AS attempts
  FROM @extschema@.audit_log WHERE kind = 'deny';

CREATE VIEW @extschema@.alerts AS
SELECT event_id, event_time, session_role, acting_role, operation AS rule, detail
  FROM @extschema@.audit_log WHERE kind = 'alert';

-- The data inventory: every protected column and every column discovery
-- found personal data in that is not protected yet -- its kind, level and
-- mask, who sees it in clear (profiles whose clearance or exception says
-- so, roles holding a live unmask approval; for an unprotected column,
-- every role that may select it), and when it was last read, in clear or
-- masked, by the audit trail.  Readable by pii_guard_admin and
-- pii_guard_auditor.
CREATE VIEW @extschema@.inventory AS
WITH reads AS (
    SELECT l.relation, c.col, max(l.event_time) AS last_read,
           max(l.event_time) FILTER (WHERE c.clear) AS last_read_clear
      FROM @extschema@.audit_log l,
           LATERAL (SELECT u, true FROM unnest(l.columns_clear) u
                    UNION ALL SELECT u, false FROM unnest(l.columns_masked) u) c(col, clear)
     WHERE l.kind IN ('read', 'export')
     GROUP BY 1, 2
), cols AS (
    SELECT format('%I.%I', p.view_schema, p.view_name) AS table_name, r.base, r.column_name,
           CASE WHEN EXISTS (SELECT 1 FROM @extschema@.new_columns n
                              WHERE n.base = r.base AND n.column_name = r.column_name
                                AND n.classified_at IS NULL AND n.kind IS NULL)
                THEN 'new, hidden until classified' ELSE 'protected' END AS status,
           @extschema@._column_kind(r.base, r.column_name, r.mask_function) AS kind,
           r.level, r.mask_function AS mask, r.mask_args,
           (SELECT array_agg(x ORDER BY x) FROM (
                SELECT pr.role::text AS x FROM @extschema@.profiles pr
                 WHERE @extschema@.column_access(pr.role, r.base, r.column_name) = 'clear'
                   AND has_column_privilege(pr.role::oid, format('%I.%I', p.view_schema, p.view_name)::regclass,
                                            r.column_name, 'SELECT')
                UNION
                -- (approvals for every row count in column_access)
                SELECT format('%s (rows approved until %s)', g.role, to_char(g.valid_until, 'YYYY-MM-DD HH24:MI'))
                  FROM @extschema@.grants g
                 WHERE g.kind = 'unmask' AND g.base = r.base AND g.revoked_at IS NULL
                   AND g.row_keys IS NOT NULL AND g.valid_until > now()
                   AND (g.columns IS NULL OR r.column_name = ANY (g.columns))) v) AS clear_to
      FROM @extschema@.column_rules r
      JOIN @extschema@.protected_tables p ON p.base = r.base
    UNION ALL
    SELECT (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = d.relation),
           d.relation, d.column_name, 'detected, not protected', d.kind,
           (@extschema@._kind_policy(d.kind)).level, NULL, NULL,
           (SELECT array_agg(ro.rolname::text ORDER BY ro.rolname) FROM pg_roles ro
             WHERE NOT ro.rolsuper AND ro.rolname !~ '^pg_'
               AND has_column_privilege(ro.oid, d.relation, d.column_name, 'SELECT'))
      FROM @extschema@.discovered_columns d
     WHERE NOT EXISTS (SELECT 1 FROM @extschema@.column_rules r
                        WHERE r.base = d.relation AND r.column_name = d.column_name)
       AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = d.relation
                      AND a.attname = d.column_name AND NOT a.attisdropped)
)
SELECT c.table_name, c.column_name, c.status, c.kind, c.level,
       CASE WHEN c.mask IS NULL THEN NULL
            ELSE c.mask || coalesce(' ' || c.mask_args::text, '') END AS mask,
       coalesce(c.clear_to, '{}') AS clear_to, rd.last_read, rd.last_read_clear
  FROM cols c
  LEFT JOIN reads rd ON rd.relation = c.table_name AND rd.col = c.column_name
 ORDER BY c.status DESC, c.table_name,
          (SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = c.base AND a.attname = c.column_name);
COMMENT ON VIEW @extschema@.inventory IS 'every protected column and every detected but unprotected one: kind, level, mask, who sees it in clear, when it was last read';

-- Casts
-- =====

-- Assignment casts: a typed text (or varchar, or bytea) value is plaintext,
-- so INSERT ... SELECT and UPDATE ... SET from such an expression encrypt it,
-- even if it looks like an envelope.  (Untyped literals go through the input
-- function instead, which is how dumps restore envelopes as they are.)
CREATE CAST (bytea AS @extschema@.encrypted_bytea) WITH FUNCTION @extschema@.encrypt(bytea) AS ASSIGNMENT;
CREATE CAST (text AS @extschema@.encrypted_text) WITH FUNCTION @extschema@.encrypt(text) AS ASSIGNMENT;
CREATE CAST (character varying AS @extschema@.encrypted_text) WITH FUNCTION @extschema@.encrypt(text) AS ASSIGNMENT;

-- Triggers
-- ========

CREATE TRIGGER data_keys_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON @extschema@.data_keys
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.data_keys_changed();

CREATE TRIGGER grants_guard BEFORE INSERT OR UPDATE ON @extschema@.grants
    FOR EACH ROW EXECUTE FUNCTION @extschema@.grants_guard();

CREATE TRIGGER grants_audit AFTER INSERT OR UPDATE ON @extschema@.grants
    FOR EACH ROW EXECUTE FUNCTION @extschema@.grants_audit();

CREATE TRIGGER audit_log_guard BEFORE INSERT OR DELETE OR UPDATE ON @extschema@.audit_log
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_log_guard();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON @extschema@.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_log_guard();

CREATE TRIGGER audit_seal_guard BEFORE DELETE OR UPDATE ON @extschema@.audit_seal
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_log_guard();

CREATE TRIGGER audit_seal_no_truncate BEFORE TRUNCATE ON @extschema@.audit_seal
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_log_guard();

CREATE TRIGGER audit_archives_guard BEFORE INSERT OR DELETE OR UPDATE ON @extschema@.audit_archives
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_log_guard();

CREATE TRIGGER audit_archives_no_truncate BEFORE TRUNCATE ON @extschema@.audit_archives
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_log_guard();

CREATE TRIGGER column_rules_classified AFTER DELETE OR UPDATE ON @extschema@.column_rules
    FOR EACH ROW EXECUTE FUNCTION @extschema@._new_column_classified();

-- a key destroyed (or deleted) reaches every session's key cache at once
CREATE TRIGGER subject_keys_changed AFTER DELETE OR UPDATE OR TRUNCATE ON @extschema@.subject_keys
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.data_keys_changed();

CREATE TRIGGER policy_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON @extschema@.protected_tables
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.policy_changed();

CREATE TRIGGER policy_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON @extschema@.column_rules
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.policy_changed();

CREATE TRIGGER policy_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON @extschema@.profiles
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.policy_changed();

CREATE TRIGGER policy_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON @extschema@.profile_overrides
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.policy_changed();

CREATE TRIGGER policy_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON @extschema@.grants
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.policy_changed();

CREATE TRIGGER policy_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON @extschema@.purposes
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.policy_changed();

CREATE TRIGGER policy_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON @extschema@.consents
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.policy_changed();

-- Event triggers
-- ==============

CREATE EVENT TRIGGER pii_guard_grant ON ddl_command_end
    WHEN TAG IN ('GRANT', 'REVOKE')
    EXECUTE FUNCTION @extschema@._on_grant();

CREATE EVENT TRIGGER pii_guard_sql_drop ON sql_drop
    EXECUTE FUNCTION @extschema@._on_sql_drop();

--------------------------------------------------------------------------
-- 7. Privileges
--------------------------------------------------------------------------

-- Every privilege pii_guard gives or takes on its objects, object by
-- object in the order of this script.  (Given in an extension script,
-- they are recorded in pg_init_privs: a dump holds no GRANT for them.)
-- A REVOKE ALL ... FROM PUBLIC on an object PUBLIC has no privilege on
-- still stores the object's ACL (the owner's privileges), as the update
-- scripts do: it is kept so that the ACLs are the same.

-- Schema
-- ======

GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

-- Tables
-- ======

REVOKE ALL ON TABLE @extschema@.data_keys FROM PUBLIC;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE @extschema@.reencrypt_progress TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.protected_tables TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.protected_tables TO pii_guard_approver;
GRANT SELECT ON TABLE @extschema@.protected_tables TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.column_rules TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.column_rules TO pii_guard_approver;
GRANT SELECT ON TABLE @extschema@.column_rules TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.profiles TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.profiles TO pii_guard_approver;
GRANT SELECT ON TABLE @extschema@.profiles TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.profile_overrides TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.profile_overrides TO pii_guard_approver;
GRANT SELECT ON TABLE @extschema@.profile_overrides TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.grants TO pii_guard_admin;
GRANT SELECT,INSERT ON TABLE @extschema@.grants TO pii_guard_approver;
GRANT SELECT ON TABLE @extschema@.grants TO pii_guard_auditor;
GRANT UPDATE(revoked_at) ON TABLE @extschema@.grants TO pii_guard_approver;
GRANT SELECT ON TABLE @extschema@.audit_log TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.audit_seal TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.sequence_grants TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.sequence_grants TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.export_grant_use TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.export_grant_use TO pii_guard_approver;
GRANT SELECT ON TABLE @extschema@.export_grant_use TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.audit_archives TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.discovered_columns TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.discovered_columns TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.new_columns TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.new_columns TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.retention_rules TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.retention_rules TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.purposes TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.purposes TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.purposes TO pii_guard_approver;
GRANT SELECT ON TABLE @extschema@.consents TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.consents TO pii_guard_auditor;
GRANT SELECT(created_at) ON TABLE @extschema@.subject_keys TO pii_guard_admin;
GRANT SELECT(created_at) ON TABLE @extschema@.subject_keys TO pii_guard_auditor;
GRANT SELECT(key_id) ON TABLE @extschema@.subject_keys TO pii_guard_admin;
GRANT SELECT(key_id) ON TABLE @extschema@.subject_keys TO pii_guard_auditor;
GRANT SELECT(reason) ON TABLE @extschema@.subject_keys TO pii_guard_admin;
GRANT SELECT(reason) ON TABLE @extschema@.subject_keys TO pii_guard_auditor;
GRANT SELECT(row_key) ON TABLE @extschema@.subject_keys TO pii_guard_admin;
GRANT SELECT(row_key) ON TABLE @extschema@.subject_keys TO pii_guard_auditor;
GRANT SELECT(shredded_at) ON TABLE @extschema@.subject_keys TO pii_guard_admin;
GRANT SELECT(shredded_at) ON TABLE @extschema@.subject_keys TO pii_guard_auditor;
GRANT SELECT(shredded_by) ON TABLE @extschema@.subject_keys TO pii_guard_admin;
GRANT SELECT(shredded_by) ON TABLE @extschema@.subject_keys TO pii_guard_auditor;
GRANT SELECT(subject_base) ON TABLE @extschema@.subject_keys TO pii_guard_admin;
GRANT SELECT(subject_base) ON TABLE @extschema@.subject_keys TO pii_guard_auditor;
REVOKE ALL ON TABLE @extschema@.subject_keys FROM PUBLIC;
GRANT SELECT ON TABLE @extschema@.shredding TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.shredding TO pii_guard_auditor;

-- Sequences
-- =========

GRANT SELECT,USAGE ON SEQUENCE @extschema@.grants_grant_id_seq TO pii_guard_approver;
GRANT SELECT ON SEQUENCE @extschema@.grants_grant_id_seq TO pii_guard_admin;
GRANT SELECT ON SEQUENCE @extschema@.grants_grant_id_seq TO pii_guard_auditor;
GRANT SELECT ON SEQUENCE @extschema@.audit_log_event_id_seq TO pii_guard_auditor;
GRANT SELECT ON SEQUENCE @extschema@.consents_consent_id_seq TO pii_guard_admin;
GRANT SELECT ON SEQUENCE @extschema@.consents_consent_id_seq TO pii_guard_auditor;
REVOKE ALL ON SEQUENCE @extschema@.subject_key_ids FROM PUBLIC;

-- Internal functions
-- ==================

REVOKE ALL ON FUNCTION @extschema@._maintenance(on_off boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._in_maintenance() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._base_of(tbl regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._base_of(tbl regclass) TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@._base_of(tbl regclass) TO pii_guard_approver;
GRANT EXECUTE ON FUNCTION @extschema@._base_of(tbl regclass) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@._grants_of(rel regclass, target text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._detach_views(base oid, rename_from text, rename_to text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._attach_views(base oid, rename_from text, rename_to text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._sync_write_grants(base oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._audit_admin(action text, detail text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._audit_deny(operation text, detail text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._audit_row_ok(@extschema@.audit_log) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._audit_row_ok(@extschema@.audit_log) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@._audit_chain_next(prev bytea, event_id bigint, row_mac bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._audit_chain_next(prev bytea, event_id bigint, row_mac bytea) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@._mask_problem(fn regprocedure) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._mask_problem(fn regprocedure) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._dependents(rels regclass[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._sequence_usage_wanted(base oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._descendants(tbl regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._descendants(tbl regclass) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._protectable(tbl regclass, row_key name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._citus_table(tbl regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._citus_profile_logins(roles regrole[], login boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._companion_schema(nsp name, relname name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._seclude(tbl regclass, comp name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._alerts_due(first_id bigint, last_id bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._verify_archive_file(r @extschema@.audit_archives, anchor_seq bigint, anchor_hash bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._name_kind(col name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._name_kind(col name) TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@._name_kind(col name) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@._kind_policy(kind text, OUT level @extschema@.level, OUT mask text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._kind_policy(kind text, OUT level @extschema@.level, OUT mask text) TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@._kind_policy(kind text, OUT level @extschema@.level, OUT mask text) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@._record_discovery(rel regclass, found jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._record_discovery(rel regclass, found jsonb) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._audit_discover(target text, tables integer, sample_rows integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._audit_discover(target text, tables integer, sample_rows integer) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._discover_tables(target text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._discover_tables(target text) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._discover_sample(rel regclass, names name[], types text[], sample_rows integer, OUT nn bigint[], OUT kinds jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._discover_sample(rel regclass, names name[], types text[], sample_rows integer, OUT nn bigint[], OUT kinds jsonb) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._discover_table(rel regclass, sample_rows integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._discover_table(rel regclass, sample_rows integer) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._fake(kind text, value text, secret bytea, attempt integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._column_kind(base regclass, col name, fn text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._column_kind(base regclass, col name, fn text) TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@._column_kind(base regclass, col name, fn text) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@._acting_as(caller regrole, what text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._copy_type(typ oid, typmod integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._copy_type(typ oid, typmod integer) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._anon_sources(target name, sources name[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anon_inventory(caller regrole, sources name[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anon_pseudonyms(secret bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anon_copy_table(caller regrole, target name, src regclass, OUT rows bigint, OUT pseudonymised name[], OUT masked name[], OUT hidden name[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anon_constraints(target name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anon_leak_check(target name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anonymize_into(caller regrole, target name, sources name[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._anonymize_into(caller regrole, target name, sources name[]) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._lint_prepare() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_rebuild_from_clear() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_no_export_limit() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_long_grant(max_grant interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_encrypted_unmasked() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_unclassified() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_companion_privilege() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_masks() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._protect_new_column(tbl oid, col text, mode text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._mask_expr(fn regprocedure, args text[], val text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._subject_table(tbl regclass, subject text, OUT base regclass, OUT relation text, OUT key_col name, OUT key_type text, OUT present boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._subject_table(tbl regclass, subject text, OUT base regclass, OUT relation text, OUT key_col name, OUT key_type text, OUT present boolean) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._subject_held(caller regrole, tbl regclass, subject text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._subject_approvals(tbl regclass, subject text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._subject_consents(tbl regclass, subject text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._subject_related(tbl regclass, subject text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._subject_events(tbl regclass, subject text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._subject_report(caller regrole, tbl regclass, subject text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._subject_report(caller regrole, tbl regclass, subject text) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@._audit_erasure(caller regrole, tbl regclass, subject text, reason text, n bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._audit_erasure(caller regrole, tbl regclass, subject text, reason text, n bigint) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._row_key_fks(rel regclass, OUT col name, OUT base regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._retention_batch(tbl regclass, cutoff timestamp with time zone) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._retention_batch(tbl regclass, cutoff timestamp with time zone) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._audit_retention(tbl regclass, n bigint, cutoff timestamp with time zone) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._audit_retention(tbl regclass, n bigint, cutoff timestamp with time zone) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._shred_by(caller regrole, tbl regclass, subject_column name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._shred_by(caller regrole, tbl regclass, subject_column name) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._shred(tbl regclass, row_key text, reason text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._reencrypt_tables(tbl regclass, col name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._reencrypt_tables(tbl regclass, col name) TO pii_guard_admin;
REVOKE ALL ON PROCEDURE @extschema@._reencrypt_table(IN rel regclass, IN col name, IN active integer, IN batch_rows integer, INOUT done bigint) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@._reencrypt_table(IN rel regclass, IN col name, IN active integer, IN batch_rows integer, INOUT done bigint) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._shred_gone(tbl regclass, keys text[], reason text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._shred_gone(tbl regclass, keys text[], reason text) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._view_names(base oid, OUT base_q text, OUT view_q text, OUT write_q text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._views_follow_rename(tbl oid, rename_from text, rename_to text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._reconcile_rules(tbl oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._view_queries(tbl oid, OUT view_sql text, OUT write_sql text, OUT keep_out text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._put_views(tbl oid, view_sql text, write_sql text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._view_write_path(tbl oid, keep_out text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._restore_view_grants(tbl oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._grantee(role oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._mirror_write_grants(tbl oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._sync_sequence_usage(tbl oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.data_keys_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.policy_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.grants_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.grants_audit() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.masking_view_write() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._on_sql_drop() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._citus_worker() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._on_grant() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.audit_log_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.audit_write() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._new_column_classified() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._subject_seal() FROM PUBLIC;

-- Public functions
-- ================

REVOKE ALL ON FUNCTION @extschema@.master_key_info(previous boolean, OUT available boolean, OUT fingerprint bytea, OUT problem text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.master_key_info(previous boolean, OUT available boolean, OUT fingerprint bytea, OUT problem text) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.rotate_data_key() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._ensure_data_keys() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.citus_setup() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._cluster_json(what text, since timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._cluster_json(what text, since timestamptz) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.cluster_audit_log(since timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.cluster_audit_log(since timestamptz) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.verify_cluster_audit() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.verify_cluster_audit() TO pii_guard_auditor;
GRANT EXECUTE ON FUNCTION @extschema@.rotate_data_key() TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.rewrap_data_keys() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.rewrap_data_keys() TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.reencrypt(@extschema@.encrypted_text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.reencrypt(@extschema@.encrypted_text) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.reencrypt(@extschema@.encrypted_bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.reencrypt(@extschema@.encrypted_bytea) TO pii_guard_admin;
REVOKE ALL ON PROCEDURE @extschema@.reencrypt_column(IN tbl regclass, IN col name, IN batch_rows integer) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@.reencrypt_column(IN tbl regclass, IN col name, IN batch_rows integer) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.column_access(role regrole, tbl regclass, col name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.column_access(role regrole, tbl regclass, col name) TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@.column_access(role regrole, tbl regclass, col name) TO pii_guard_approver;
GRANT EXECUTE ON FUNCTION @extschema@.column_access(role regrole, tbl regclass, col name) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.protect_table(tbl regclass, row_key name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.protect_table(tbl regclass, row_key name) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.unprotect_table(tbl regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.unprotect_table(tbl regclass) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.refresh_views() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.refresh_views() TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.protect_column(tbl regclass, col name, level @extschema@.level, mask regprocedure, mask_args text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.protect_column(tbl regclass, col name, level @extschema@.level, mask regprocedure, mask_args text[]) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.unprotect_column(tbl regclass, col name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.unprotect_column(tbl regclass, col name) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.set_clearance(role regrole, clearance @extschema@.level, description text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.set_clearance(role regrole, clearance @extschema@.level, description text) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.set_column_access(role regrole, tbl regclass, col name, access text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.set_column_access(role regrole, tbl regclass, col name, access text) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.reset_column_access(role regrole, tbl regclass, col name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.reset_column_access(role regrole, tbl regclass, col name) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.drop_profile(role regrole) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.drop_profile(role regrole) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.effective_access(role regrole) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.effective_access(role regrole) TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@.effective_access(role regrole) TO pii_guard_approver;
GRANT EXECUTE ON FUNCTION @extschema@.effective_access(role regrole) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.pseudonym(value text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pseudonym(value text) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.noise(value numeric, ratio double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.noise(value numeric, ratio double precision) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.noise(value integer, ratio double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.noise(value integer, ratio double precision) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.noise(value bigint, ratio double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.noise(value bigint, ratio double precision) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.noise(value double precision, ratio double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.noise(value double precision, ratio double precision) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.policy_script(tbl regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.policy_script(tbl regclass) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.check_policy(max_grant interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.check_policy(max_grant interval) TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@.check_policy(max_grant interval) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.approve(role regrole, tbl regclass, valid_until timestamp with time zone, reason text, columns name[], row_keys text[], purpose text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.approve(role regrole, tbl regclass, valid_until timestamp with time zone, reason text, columns name[], row_keys text[], purpose text) TO pii_guard_approver;
REVOKE ALL ON FUNCTION @extschema@.revoke_grant(grant_id bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.revoke_grant(grant_id bigint) TO pii_guard_approver;
REVOKE ALL ON FUNCTION @extschema@.set_export_limits(role regrole, max_rows_per_statement bigint, max_rows_per_day bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.set_export_limits(role regrole, max_rows_per_statement bigint, max_rows_per_day bigint) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.approve_export(role regrole, rows bigint, valid_until timestamp with time zone, reason text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.approve_export(role regrole, rows bigint, valid_until timestamp with time zone, reason text) TO pii_guard_approver;
REVOKE ALL ON FUNCTION @extschema@.export_usage(role regrole) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.export_usage(role regrole) TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@.export_usage(role regrole) TO pii_guard_approver;
GRANT EXECUTE ON FUNCTION @extschema@.export_usage(role regrole) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.export_grant_used(grant_id bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.export_grant_used(grant_id bigint) TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@.export_grant_used(grant_id bigint) TO pii_guard_approver;
GRANT EXECUTE ON FUNCTION @extschema@.export_grant_used(grant_id bigint) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.audit_queue_status(OUT queued bigint, OUT capacity integer, OUT spilled bigint, OUT workers integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.audit_queue_status(OUT queued bigint, OUT capacity integer, OUT spilled bigint, OUT workers integer) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.audit_table(tbl regclass, row_key name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.audit_table(tbl regclass, row_key name) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.unaudit_table(tbl regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.unaudit_table(tbl regclass) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.verify_audit() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.verify_audit() TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.verify_audit(anchor text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.verify_audit(anchor text) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.idle_privileged_roles(idle interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.idle_privileged_roles(idle interval) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.set_alerts(role regrole, denials_per_minute integer, rows_per_hour bigint, work_from time without time zone, work_to time without time zone, dormant_after interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.set_alerts(role regrole, denials_per_minute integer, rows_per_hour bigint, work_from time without time zone, work_to time without time zone, dormant_after interval) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.archive_audit(older_than interval, max_events integer, OUT file text, OUT first_seal bigint, OUT last_seal bigint, OUT events bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.verify_audit_archive(archive text, anchor text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.verify_audit_archive(archive text, anchor text) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.discover(target text, sample_rows integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.discover(target text, sample_rows integer) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.anonymize_into(target_schema name, source_schemas name[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.anonymize_into(target_schema name, source_schemas name[]) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.subject_report(tbl regclass, row_key text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.subject_report(tbl regclass, row_key text) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.erase_subject(tbl regclass, row_key text, reason text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.erase_subject(tbl regclass, row_key text, reason text) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.set_retention(tbl regclass, date_column name, keep interval, action text, batch_rows integer, activity regclass, activity_column name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.set_retention(tbl regclass, date_column name, keep interval, action text, batch_rows integer, activity regclass, activity_column name) TO pii_guard_admin;
REVOKE ALL ON PROCEDURE @extschema@.apply_retention(IN max_rows bigint) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@.apply_retention(IN max_rows bigint) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.define_purpose(purpose text, description text, requires_consent boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.define_purpose(purpose text, description text, requires_consent boolean) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.record_consent(tbl regclass, row_key text, purpose text, how text, columns name[], given_at timestamp with time zone) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.record_consent(tbl regclass, row_key text, purpose text, how text, columns name[], given_at timestamp with time zone) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.withdraw_consent(tbl regclass, row_key text, purpose text, how text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.withdraw_consent(tbl regclass, row_key text, purpose text, how text) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.set_purposes(role regrole, purposes text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.set_purposes(role regrole, purposes text[]) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.may_declare(role regrole, purpose text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.may_declare(role regrole, purpose text) TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@.may_declare(role regrole, purpose text) TO pii_guard_approver;
GRANT EXECUTE ON FUNCTION @extschema@.may_declare(role regrole, purpose text) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.shred_by(tbl regclass, subject_column name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.shred_by(tbl regclass, subject_column name) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.shred_subject(tbl regclass, row_key text, reason text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.shred_subject(tbl regclass, row_key text, reason text) TO pii_guard_admin;

-- Views
-- =====

GRANT SELECT ON TABLE @extschema@.master_keys TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.key_status TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.export_approvals TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.export_approvals TO pii_guard_approver;
GRANT SELECT ON TABLE @extschema@.export_approvals TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.audit_row_access TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.audit_exports TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.audit_admin_changes TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.access_review TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.audit_denials TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.alerts TO pii_guard_auditor;
GRANT SELECT ON TABLE @extschema@.inventory TO pii_guard_admin;
GRANT SELECT ON TABLE @extschema@.inventory TO pii_guard_auditor;
