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

--------------------------------------------------------------------------
-- Caches: nothing but a change of the policy flushes them
--------------------------------------------------------------------------

-- The sql_drop event trigger ran a DELETE on protected_tables (and, for a
-- dropped function, an UPDATE of column_rules) on every DROP anywhere --
-- a role dropping a function or table in its temporary schema included.
-- Each fired the policy tables' statement trigger, which makes every
-- session recompute its decisions and reload its caches, even when no row
-- changed.  Now it writes only when a protected table or a mask function
-- in use was dropped.
CREATE OR REPLACE FUNCTION @extschema@._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
                 JOIN @extschema@.protected_tables p ON p.base::oid = d.objid
                WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0) THEN
        DELETE FROM @extschema@.protected_tables p
         WHERE p.base::oid IN (SELECT objid FROM pg_event_trigger_dropped_objects()
                                WHERE classid = 'pg_class'::regclass AND objsubid = 0);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() WHERE classid = 'pg_proc'::regclass)
       OR NOT EXISTS (SELECT 1 FROM @extschema@.column_rules c
                       WHERE c.mask_function IS NOT NULL AND to_regprocedure(c.mask_function) IS NULL) THEN
        RETURN;
    END IF;
    FOR r IN
        UPDATE @extschema@.column_rules c SET mask_function = NULL, mask_args = NULL
         WHERE c.mask_function IS NOT NULL AND to_regprocedure(c.mask_function) IS NULL
        RETURNING c.base, c.column_name, c.mask_function
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

--------------------------------------------------------------------------
-- Lookups: IN lists and = ANY arrays through the blind index
--------------------------------------------------------------------------

-- `WHERE phone IN ('…', '…')` and `WHERE phone = ANY ($1)` (a text[] or
-- varchar[] parameter, as drivers send lists) through a masking view, by
-- a role that sees the column in clear on every row, are compared on the
-- stored column as `phone = ANY (_blind_probe(array))` (lookup.c), which
-- the column's index answers.  These are the array forms of the probes
-- above: an array of the probes of the array's elements, NULL elements
-- staying NULL.  They answer exactly where and to whom the scalar probes
-- do (the same C function serves both), for the same reasons STABLE and
-- PARALLEL RESTRICTED.
CREATE FUNCTION @extschema@._blind_probe(text[])
RETURNS @extschema@.encrypted_text[]
AS 'MODULE_PATHNAME', 'pii_guard_blind_probe_text_array'
LANGUAGE C STRICT STABLE PARALLEL RESTRICTED;

CREATE FUNCTION @extschema@._blind_probe(bytea[])
RETURNS @extschema@.encrypted_bytea[]
AS 'MODULE_PATHNAME', 'pii_guard_blind_probe_bytea_array'
LANGUAGE C STRICT STABLE PARALLEL RESTRICTED;

COMMENT ON FUNCTION @extschema@._blind_probe(text[]) IS
    'internal: the probes of a lookup of a list through a masking view; answers only where pii_guard put it';
COMMENT ON FUNCTION @extschema@._blind_probe(bytea[]) IS
    'internal: the probes of a lookup of a list through a masking view; answers only where pii_guard put it';
