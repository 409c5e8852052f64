/* pii_guard--0.1.sql: keys and encrypted column types */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pii_guard" to load this file. \quit

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

GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

--------------------------------------------------------------------------
-- Data keys
--------------------------------------------------------------------------

-- Data keys, wrapped by the master key (which is never stored here).
-- Rows are created lazily on first use and by rotate_data_key().
CREATE TABLE @extschema@.data_keys (
    key_id                  integer PRIMARY KEY CHECK (key_id > 0),
    purpose                 text NOT NULL CHECK (purpose IN ('encrypt', 'blind_index', 'pseudonym', 'audit')),
    state                   text NOT NULL CHECK (state IN ('active', 'retired')),
    wrapped_key             bytea NOT NULL,
    master_key_fingerprint  bytea NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT pg_catalog.now(),
    retired_at              timestamptz,
    CHECK ((state = 'retired') = (retired_at IS NOT NULL))
);
CREATE UNIQUE INDEX data_keys_one_active
    ON @extschema@.data_keys (purpose) WHERE state = 'active';
REVOKE ALL ON @extschema@.data_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.data_keys', '');

CREATE FUNCTION @extschema@.data_keys_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pii_guard_data_keys_changed'
LANGUAGE C;

CREATE TRIGGER data_keys_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.data_keys
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.data_keys_changed();

CREATE FUNCTION @extschema@.master_key_info(previous boolean,
    OUT available boolean, OUT fingerprint bytea, OUT problem text)
RETURNS record
AS 'MODULE_PATHNAME', 'pii_guard_master_key_info'
LANGUAGE C STRICT VOLATILE;

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

CREATE FUNCTION @extschema@.rotate_data_key()
RETURNS integer
AS 'MODULE_PATHNAME', 'pii_guard_rotate_data_key'
LANGUAGE C VOLATILE;

CREATE FUNCTION @extschema@.rewrap_data_keys()
RETURNS integer
AS 'MODULE_PATHNAME', 'pii_guard_rewrap_data_keys'
LANGUAGE C VOLATILE;

--------------------------------------------------------------------------
-- Encrypted types
--------------------------------------------------------------------------

CREATE TYPE @extschema@.encrypted_text;
CREATE TYPE @extschema@.encrypted_bytea;

CREATE FUNCTION @extschema@.encrypted_text_in(cstring)
RETURNS @extschema@.encrypted_text
AS 'MODULE_PATHNAME', 'pii_guard_encrypted_text_in'
LANGUAGE C STRICT STABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.encrypted_text_out(@extschema@.encrypted_text)
RETURNS cstring
AS 'MODULE_PATHNAME', 'pii_guard_envelope_out'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.encrypted_text_recv(internal)
RETURNS @extschema@.encrypted_text
AS 'MODULE_PATHNAME', 'pii_guard_encrypted_text_recv'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.encrypted_text_send(@extschema@.encrypted_text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'pii_guard_envelope_send'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE TYPE @extschema@.encrypted_text (
    INPUT = @extschema@.encrypted_text_in,
    OUTPUT = @extschema@.encrypted_text_out,
    RECEIVE = @extschema@.encrypted_text_recv,
    SEND = @extschema@.encrypted_text_send,
    INTERNALLENGTH = VARIABLE,
    -- ciphertext does not compress: store it out of line, uncompressed
    STORAGE = external
);
COMMENT ON TYPE @extschema@.encrypted_text IS
    'text encrypted with AES-256-GCM under a pii_guard data key, with a blind index for equality';

CREATE FUNCTION @extschema@.encrypted_bytea_in(cstring)
RETURNS @extschema@.encrypted_bytea
AS 'MODULE_PATHNAME', 'pii_guard_encrypted_bytea_in'
LANGUAGE C STRICT STABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.encrypted_bytea_out(@extschema@.encrypted_bytea)
RETURNS cstring
AS 'MODULE_PATHNAME', 'pii_guard_envelope_out'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.encrypted_bytea_recv(internal)
RETURNS @extschema@.encrypted_bytea
AS 'MODULE_PATHNAME', 'pii_guard_encrypted_bytea_recv'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.encrypted_bytea_send(@extschema@.encrypted_bytea)
RETURNS bytea
AS 'MODULE_PATHNAME', 'pii_guard_envelope_send'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE TYPE @extschema@.encrypted_bytea (
    INPUT = @extschema@.encrypted_bytea_in,
    OUTPUT = @extschema@.encrypted_bytea_out,
    RECEIVE = @extschema@.encrypted_bytea_recv,
    SEND = @extschema@.encrypted_bytea_send,
    INTERNALLENGTH = VARIABLE,
    STORAGE = external
);
COMMENT ON TYPE @extschema@.encrypted_bytea IS
    'bytea encrypted with AES-256-GCM under a pii_guard data key, with a blind index for equality';

-- Encrypt, decrypt, inspect, re-encrypt.
CREATE FUNCTION @extschema@.encrypt(text)
RETURNS @extschema@.encrypted_text
AS 'MODULE_PATHNAME', 'pii_guard_encrypt_text'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION @extschema@.encrypt(bytea)
RETURNS @extschema@.encrypted_bytea
AS 'MODULE_PATHNAME', 'pii_guard_encrypt_bytea'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION @extschema@.decrypt(@extschema@.encrypted_text)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_decrypt_text'
LANGUAGE C STRICT STABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.decrypt(@extschema@.encrypted_bytea)
RETURNS bytea
AS 'MODULE_PATHNAME', 'pii_guard_decrypt_bytea'
LANGUAGE C STRICT STABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.key_id(@extschema@.encrypted_text)
RETURNS integer
AS 'MODULE_PATHNAME', 'pii_guard_envelope_key_id'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.key_id(@extschema@.encrypted_bytea)
RETURNS integer
AS 'MODULE_PATHNAME', 'pii_guard_envelope_key_id'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.reencrypt(@extschema@.encrypted_text)
RETURNS @extschema@.encrypted_text
AS 'MODULE_PATHNAME', 'pii_guard_reencrypt'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION @extschema@.reencrypt(@extschema@.encrypted_bytea)
RETURNS @extschema@.encrypted_bytea
AS 'MODULE_PATHNAME', 'pii_guard_reencrypt'
LANGUAGE C STRICT VOLATILE;

-- Assignment casts: a typed text (or varchar, or bytea) value is plaintext,
-- so INSERT ... SELECT and UPDATE ... SET from such an expression encrypt it,
-- even if it looks like an envelope.  (Untyped literals go through the input
-- function instead, which is how dumps restore envelopes as they are.)
CREATE CAST (text AS @extschema@.encrypted_text)
    WITH FUNCTION @extschema@.encrypt(text) AS ASSIGNMENT;
CREATE CAST (varchar AS @extschema@.encrypted_text)
    WITH FUNCTION @extschema@.encrypt(text) AS ASSIGNMENT;
CREATE CAST (bytea AS @extschema@.encrypted_bytea)
    WITH FUNCTION @extschema@.encrypt(bytea) AS ASSIGNMENT;

--------------------------------------------------------------------------
-- Blind-index comparison: equality, btree and hash operator classes
--------------------------------------------------------------------------

-- The operators live in pg_catalog, not in @extschema@: operators are found
-- through search_path, and `WHERE phone = '13812345678'` must work for every
-- application whatever its search_path.  They are extension members like the
-- rest, so DROP EXTENSION removes them and pg_dump does not dump them.  The
-- ordering operators are spelled ~<~ ~<=~ ~>=~ ~>~, not < <= >= >: they order
-- by blind index (which btree needs for UNIQUE), not by plaintext.

DO $ops$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['encrypted_text', 'encrypted_bytea']
    LOOP
        EXECUTE pg_catalog.format($f$
            CREATE FUNCTION @extschema@.%1$s_eq(@extschema@.%1$s, @extschema@.%1$s)
            RETURNS boolean AS 'MODULE_PATHNAME', 'pii_guard_envelope_eq'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.%1$s_ne(@extschema@.%1$s, @extschema@.%1$s)
            RETURNS boolean AS 'MODULE_PATHNAME', 'pii_guard_envelope_ne'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.%1$s_lt(@extschema@.%1$s, @extschema@.%1$s)
            RETURNS boolean AS 'MODULE_PATHNAME', 'pii_guard_envelope_lt'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.%1$s_le(@extschema@.%1$s, @extschema@.%1$s)
            RETURNS boolean AS 'MODULE_PATHNAME', 'pii_guard_envelope_le'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.%1$s_ge(@extschema@.%1$s, @extschema@.%1$s)
            RETURNS boolean AS 'MODULE_PATHNAME', 'pii_guard_envelope_ge'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.%1$s_gt(@extschema@.%1$s, @extschema@.%1$s)
            RETURNS boolean AS 'MODULE_PATHNAME', 'pii_guard_envelope_gt'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.%1$s_cmp(@extschema@.%1$s, @extschema@.%1$s)
            RETURNS integer AS 'MODULE_PATHNAME', 'pii_guard_envelope_cmp'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.%1$s_hash(@extschema@.%1$s)
            RETURNS integer AS 'MODULE_PATHNAME', 'pii_guard_envelope_hash'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.%1$s_hash_extended(@extschema@.%1$s, bigint)
            RETURNS bigint AS 'MODULE_PATHNAME', 'pii_guard_envelope_hash_extended'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

            CREATE OPERATOR pg_catalog.= (
                LEFTARG = @extschema@.%1$s, RIGHTARG = @extschema@.%1$s,
                FUNCTION = @extschema@.%1$s_eq,
                COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
                RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES);
            CREATE OPERATOR pg_catalog.<> (
                LEFTARG = @extschema@.%1$s, RIGHTARG = @extschema@.%1$s,
                FUNCTION = @extschema@.%1$s_ne,
                COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
                RESTRICT = neqsel, JOIN = neqjoinsel);
            CREATE OPERATOR pg_catalog.~<~ (
                LEFTARG = @extschema@.%1$s, RIGHTARG = @extschema@.%1$s,
                FUNCTION = @extschema@.%1$s_lt,
                COMMUTATOR = OPERATOR(pg_catalog.~>~), NEGATOR = OPERATOR(pg_catalog.~>=~),
                RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
            CREATE OPERATOR pg_catalog.~<=~ (
                LEFTARG = @extschema@.%1$s, RIGHTARG = @extschema@.%1$s,
                FUNCTION = @extschema@.%1$s_le,
                COMMUTATOR = OPERATOR(pg_catalog.~>=~), NEGATOR = OPERATOR(pg_catalog.~>~),
                RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
            CREATE OPERATOR pg_catalog.~>=~ (
                LEFTARG = @extschema@.%1$s, RIGHTARG = @extschema@.%1$s,
                FUNCTION = @extschema@.%1$s_ge,
                COMMUTATOR = OPERATOR(pg_catalog.~<=~), NEGATOR = OPERATOR(pg_catalog.~<~),
                RESTRICT = scalargesel, JOIN = scalargejoinsel);
            CREATE OPERATOR pg_catalog.~>~ (
                LEFTARG = @extschema@.%1$s, RIGHTARG = @extschema@.%1$s,
                FUNCTION = @extschema@.%1$s_gt,
                COMMUTATOR = OPERATOR(pg_catalog.~<~), NEGATOR = OPERATOR(pg_catalog.~<=~),
                RESTRICT = scalargtsel, JOIN = scalargtjoinsel);

            CREATE OPERATOR CLASS @extschema@.%1$s_blind_ops
                DEFAULT FOR TYPE @extschema@.%1$s USING btree AS
                OPERATOR 1 pg_catalog.~<~,
                OPERATOR 2 pg_catalog.~<=~,
                OPERATOR 3 pg_catalog.=,
                OPERATOR 4 pg_catalog.~>=~,
                OPERATOR 5 pg_catalog.~>~,
                FUNCTION 1 @extschema@.%1$s_cmp(@extschema@.%1$s, @extschema@.%1$s);
            CREATE OPERATOR CLASS @extschema@.%1$s_blind_hash_ops
                DEFAULT FOR TYPE @extschema@.%1$s USING hash AS
                OPERATOR 1 pg_catalog.=,
                FUNCTION 1 @extschema@.%1$s_hash(@extschema@.%1$s),
                FUNCTION 2 @extschema@.%1$s_hash_extended(@extschema@.%1$s, bigint);
        $f$, t);
    END LOOP;
END
$ops$;

--------------------------------------------------------------------------
-- Re-encryption of a column to the active data key
--------------------------------------------------------------------------

-- Where an interrupted reencrypt_column() resumes.
CREATE TABLE @extschema@.reencrypt_progress (
    table_oid    oid NOT NULL,
    column_name  name NOT NULL,
    key_id       integer NOT NULL,
    next_block   bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (table_oid, column_name)
);
REVOKE ALL ON @extschema@.reencrypt_progress FROM PUBLIC;

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
CREATE PROCEDURE @extschema@.reencrypt_column(
    tbl regclass, col name, batch_rows integer DEFAULT 10000)
LANGUAGE plpgsql
AS $proc$
DECLARE
    coltype     regtype;
    active      integer;
    pages       bigint;
    step        bigint;
    blk         bigint;
    done        bigint;
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

    -- Make sure an active key exists and learn its id.
    active := @extschema@.key_id(@extschema@.encrypt(''::text));

    LOOP
        pass := pass + 1;
        SELECT p.next_block INTO blk FROM @extschema@.reencrypt_progress p
         WHERE p.table_oid = tbl AND p.column_name = col AND p.key_id = active;
        IF blk IS NULL THEN
            blk := 0;
            DELETE FROM @extschema@.reencrypt_progress p
             WHERE p.table_oid = tbl AND p.column_name = col;
            INSERT INTO @extschema@.reencrypt_progress (table_oid, column_name, key_id, next_block)
            VALUES (tbl, col, active, 0);
            COMMIT;
        ELSE
            RAISE NOTICE 'resuming re-encryption of %.% at block %', tbl, col, blk;
        END IF;

        pages := pg_relation_size(tbl) / current_setting('block_size')::bigint;
        -- Pages per batch, from the planner's rows-per-page estimate.
        SELECT greatest(1, batch_rows / CASE WHEN c.reltuples > 0 AND c.relpages > 0
                                             THEN c.reltuples / c.relpages ELSE 100 END)::bigint
          INTO step FROM pg_catalog.pg_class c WHERE c.oid = tbl;

        WHILE blk < pages LOOP
            EXECUTE format(
                'UPDATE %s SET %I = @extschema@.reencrypt(%I) '
                'WHERE ctid >= $1 AND ctid < $2 AND @extschema@.key_id(%I) <> $3',
                tbl, col, col, col)
              USING format('(%s,0)', blk)::tid, format('(%s,0)', blk + step)::tid, active;
            GET DIAGNOSTICS done = ROW_COUNT;
            total := total + done;
            blk := blk + step;
            UPDATE @extschema@.reencrypt_progress p
               SET next_block = blk, updated_at = now()
             WHERE p.table_oid = tbl AND p.column_name = col;
            COMMIT;
        END LOOP;

        -- Sweep: rows moved or written under an older key while we ran.
        EXECUTE format('SELECT count(*) FROM %s WHERE @extschema@.key_id(%I) <> $1', tbl, col)
           INTO stale USING active;
        EXIT WHEN stale = 0 OR pass >= 10;
        DELETE FROM @extschema@.reencrypt_progress p
         WHERE p.table_oid = tbl AND p.column_name = col;
        COMMIT;
    END LOOP;

    DELETE FROM @extschema@.reencrypt_progress p
     WHERE p.table_oid = tbl AND p.column_name = col;
    COMMIT;
    IF stale > 0 THEN
        RAISE WARNING '% values of %.% are still under older keys after % passes', stale, tbl, col, pass
            USING HINT = 'Run reencrypt_column again when the write load is lower.';
    ELSE
        RAISE NOTICE 're-encrypted % values of %.% to data key %', total, tbl, col, active;
    END IF;
END
$proc$;

--------------------------------------------------------------------------
-- Privileges
--------------------------------------------------------------------------

REVOKE ALL ON FUNCTION @extschema@.rotate_data_key() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.rewrap_data_keys() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.master_key_info(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.reencrypt(@extschema@.encrypted_text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.reencrypt(@extschema@.encrypted_bytea) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.reencrypt_column(regclass, name, integer) FROM PUBLIC;
REVOKE ALL ON @extschema@.master_keys FROM PUBLIC;
REVOKE ALL ON @extschema@.key_status FROM PUBLIC;

GRANT EXECUTE ON FUNCTION @extschema@.rotate_data_key() TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@.rewrap_data_keys() TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@.master_key_info(boolean) TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@.reencrypt(@extschema@.encrypted_text) TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@.reencrypt(@extschema@.encrypted_bytea) TO pii_guard_admin;
GRANT EXECUTE ON PROCEDURE @extschema@.reencrypt_column(regclass, name, integer) TO pii_guard_admin;
-- reencrypt_column runs as its caller (it commits), and keeps its progress here.
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.reencrypt_progress TO pii_guard_admin;
GRANT SELECT ON @extschema@.master_keys, @extschema@.key_status TO pii_guard_admin;

--------------------------------------------------------------------------
-- Policy: levels, column rules, profiles, overrides, grants
--------------------------------------------------------------------------

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

CREATE TYPE @extschema@.level AS ENUM ('public', 'internal', 'sensitive', 'core');
COMMENT ON TYPE @extschema@.level IS 'data classification, ordered: public < internal < sensitive < core';

-- Tables whose data is read and written through a masking view.
CREATE TABLE @extschema@.protected_tables (
    base             regclass PRIMARY KEY,
    view_schema      name NOT NULL,
    view_name        name NOT NULL,
    write_view_name  name NOT NULL,
    row_key          name NOT NULL,
    protected_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    saved_grants     text[],
    UNIQUE (view_schema, view_name)
);

-- Protected columns: level, and the mask function (by signature, resolved
-- with to_regprocedure when used; never spliced into SQL).
CREATE TABLE @extschema@.column_rules (
    base           regclass NOT NULL REFERENCES @extschema@.protected_tables ON DELETE CASCADE,
    column_name    name NOT NULL,
    level          @extschema@.level NOT NULL,
    mask_function  text,
    mask_args      text[],
    PRIMARY KEY (base, column_name)
);

-- Profiles: group roles with a clearance level.
CREATE TABLE @extschema@.profiles (
    role                    regrole PRIMARY KEY,
    clearance               @extschema@.level NOT NULL,
    description             text,
    -- export-row limits (NULL: unlimited); see set_export_limits()
    max_rows_per_statement  bigint CHECK (max_rows_per_statement >= 0),
    max_rows_per_day        bigint CHECK (max_rows_per_day >= 0)
);

-- Per-column exceptions to a profile's clearance.
CREATE TABLE @extschema@.profile_overrides (
    role         regrole NOT NULL REFERENCES @extschema@.profiles ON DELETE CASCADE,
    base         regclass NOT NULL,
    column_name  name NOT NULL,
    access       text NOT NULL CHECK (access IN ('clear', 'masked', 'hidden')),
    PRIMARY KEY (role, base, column_name),
    FOREIGN KEY (base, column_name) REFERENCES @extschema@.column_rules
        ON DELETE CASCADE ON UPDATE CASCADE
);

-- Time-boxed approvals.  'unmask': the role sees the columns (all when
-- NULL) of the rows (all when NULL) in clear until valid_until.
CREATE TABLE @extschema@.grants (
    grant_id     bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('unmask', 'export')),
    role         regrole NOT NULL,
    base         regclass REFERENCES @extschema@.protected_tables ON DELETE CASCADE,
    columns      name[],
    row_keys     text[],
    rows         bigint CHECK (rows > 0),
    valid_from   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    valid_until  timestamptz NOT NULL,
    reason       text NOT NULL CHECK (reason <> ''),
    approver     regrole NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    revoked_at   timestamptz,
    CHECK (valid_until > valid_from),
    CHECK (kind <> 'unmask' OR base IS NOT NULL),
    CHECK (kind <> 'export' OR rows IS NOT NULL)
);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.protected_tables', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.column_rules', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.profiles', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.profile_overrides', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.grants', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.grants_grant_id_seq', '');

-- Any change to the policy makes every backend recompute its decisions.
CREATE FUNCTION @extschema@.policy_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pii_guard_policy_changed'
LANGUAGE C;

DO $trg$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['protected_tables', 'column_rules', 'profiles',
                             'profile_overrides', 'grants']
    LOOP
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER policy_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE '
            'ON @extschema@.%I FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.policy_changed()', t);
    END LOOP;
END
$trg$;

-- Grants are issued by pii_guard_approver members, for someone else; once
-- issued, only their revocation can change.
CREATE FUNCTION @extschema@.grants_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
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
        -- future, has a reason, and names its real approver.
        IF NEW.valid_until <= now() THEN
            RAISE EXCEPTION 'valid_until must be in the future'
                USING ERRCODE = 'invalid_parameter_value';
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
        NEW.valid_from, NEW.valid_until, NEW.reason, NEW.approver, NEW.created_at)
       IS DISTINCT FROM
       (OLD.grant_id, OLD.kind, OLD.role, OLD.base, OLD.columns, OLD.row_keys, OLD.rows,
        OLD.valid_from, OLD.valid_until, OLD.reason, OLD.approver, OLD.created_at)
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
CREATE FUNCTION @extschema@.grants_audit()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM @extschema@._audit_admin(CASE NEW.kind WHEN 'export' THEN 'approve_export' ELSE 'approve' END,
            format('grant %s: %s for %s by %s, %s, until %s, reason: %s', NEW.grant_id, NEW.kind, NEW.role,
                   NEW.approver,
                   CASE NEW.kind WHEN 'export' THEN NEW.rows || ' rows'
                        ELSE format('%s, columns %s, rows %s', NEW.base, coalesce(NEW.columns::text, 'all'),
                                    coalesce(array_length(NEW.row_keys, 1)::text, 'all')) END,
                   NEW.valid_until, NEW.reason));
    ELSE
        PERFORM @extschema@._audit_admin('revoke_grant',
            format('grant %s revoked by %s', NEW.grant_id, session_user));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER grants_guard BEFORE INSERT OR UPDATE ON @extschema@.grants
    FOR EACH ROW EXECUTE FUNCTION @extschema@.grants_guard();
CREATE TRIGGER grants_audit AFTER INSERT OR UPDATE ON @extschema@.grants
    FOR EACH ROW EXECUTE FUNCTION @extschema@.grants_audit();

--------------------------------------------------------------------------
-- Decisions and reveal()
--------------------------------------------------------------------------

CREATE FUNCTION @extschema@.reveal(value anyelement, base regclass, col name, row_key "any")
RETURNS anyelement
AS 'MODULE_PATHNAME', 'pii_guard_reveal'
LANGUAGE C STRICT STABLE PARALLEL RESTRICTED COST 1000;

CREATE FUNCTION @extschema@.reveal(value @extschema@.encrypted_text, base regclass, col name, row_key "any")
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_reveal_text'
LANGUAGE C STRICT STABLE PARALLEL RESTRICTED COST 1000;

CREATE FUNCTION @extschema@.reveal(value @extschema@.encrypted_bytea, base regclass, col name, row_key "any")
RETURNS bytea
AS 'MODULE_PATHNAME', 'pii_guard_reveal_bytea'
LANGUAGE C STRICT STABLE PARALLEL RESTRICTED COST 1000;

CREATE FUNCTION @extschema@.column_access(role oid, base regclass, col name)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_column_access'
LANGUAGE C STRICT STABLE;

CREATE FUNCTION @extschema@.masking_view_write()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pii_guard_masking_view_write'
LANGUAGE C;

CREATE FUNCTION @extschema@._maintenance(on_off boolean)
RETURNS void
AS 'MODULE_PATHNAME', 'pii_guard_maintenance'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION @extschema@._in_maintenance()
RETURNS boolean
AS 'MODULE_PATHNAME', 'pii_guard_in_maintenance'
LANGUAGE C STRICT VOLATILE;

--------------------------------------------------------------------------
-- Masking views
--------------------------------------------------------------------------

-- The protected base table named by tbl (the base table itself or its
-- masking view), or NULL.
CREATE FUNCTION @extschema@._base_of(tbl regclass)
RETURNS regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.base FROM @extschema@.protected_tables p
     WHERE p.base = tbl
        OR (p.view_schema, p.view_name) =
           (SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = tbl)
$$;

-- GRANT statements that give on target what rel's ACL gives (table and
-- column privileges), except to rel's owner and pii_guard_owner.
CREATE FUNCTION @extschema@._grants_of(rel regclass, target text)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
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
-- for _attach_views.  Used around DDL on the base table.
CREATE FUNCTION @extschema@._detach_views(base oid, rename_from text, rename_to text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p @extschema@.protected_tables;
    v regclass;
BEGIN
    SELECT * INTO p FROM @extschema@.protected_tables t WHERE t.base = _detach_views.base;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM @extschema@._maintenance(true);
    v := to_regclass(format('%I.%I', p.view_schema, p.view_name));
    IF v IS NOT NULL THEN
        UPDATE @extschema@.protected_tables t
           SET saved_grants = @extschema@._grants_of(v, format('%I.%I', p.view_schema, p.view_name))
         WHERE t.base = p.base;
        EXECUTE format('DROP VIEW %s', v);
    END IF;
    EXECUTE format('DROP VIEW IF EXISTS %I.%I',
                   (SELECT nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
                     WHERE c.oid = p.base), p.write_view_name);
    PERFORM @extschema@._maintenance(false);
END
$$;

-- (Re)build the masking view and the write view of a protected table, with
-- column defaults, the write trigger and grants; after a column rename,
-- carry its rules along.
CREATE FUNCTION @extschema@._attach_views(base oid, rename_from text, rename_to text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p          @extschema@.protected_tables;
    base_q     text;
    view_q     text;
    write_q    text;
    nsp        name;
    sel        text[] := '{}';
    wcols      text[] := '{}';
    skip       text[] := '{}';
    a          record;
    g          text;
    grants     text[];
    ownerless  boolean;
BEGIN
    SELECT * INTO p FROM @extschema@.protected_tables t WHERE t.base = _attach_views.base;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM @extschema@._maintenance(true);
    SELECT n.nspname INTO nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p.base;
    base_q := format('%I.%I', nsp, (SELECT relname FROM pg_class WHERE oid = p.base));
    view_q := format('%I.%I', p.view_schema, p.view_name);
    write_q := format('%I.%I', nsp, p.write_view_name);

    IF rename_from IS NOT NULL THEN
        UPDATE @extschema@.column_rules r SET column_name = rename_to
         WHERE r.base = p.base AND r.column_name = rename_from;
        IF p.row_key = rename_from THEN
            UPDATE @extschema@.protected_tables t SET row_key = rename_to WHERE t.base = p.base;
            p.row_key := rename_to;
        END IF;
        SELECT array_agg(regexp_replace(s, format(' \(%s\) ON ', quote_ident(rename_from)),
                                        format(' (%s) ON ', quote_ident(rename_to))))
          INTO p.saved_grants FROM unnest(p.saved_grants) s;
    END IF;
    -- Rules of columns that no longer exist go.
    DELETE FROM @extschema@.column_rules r
     WHERE r.base = p.base
       AND NOT EXISTS (SELECT 1 FROM pg_attribute att
                        WHERE att.attrelid = p.base AND att.attname = r.column_name
                          AND att.attnum > 0 AND NOT att.attisdropped);
    IF NOT EXISTS (SELECT 1 FROM pg_attribute att
                    WHERE att.attrelid = p.base AND att.attname = p.row_key
                      AND att.attnum > 0 AND NOT att.attisdropped) THEN
        RAISE EXCEPTION 'the row key column "%" of protected table % no longer exists', p.row_key, base_q
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Unprotect the table before dropping or renaming its row key.';
    END IF;
    -- Encrypted columns are never shown raw: one without a rule gets one
    -- (sensitive, no mask: clear only for enough clearance).
    INSERT INTO @extschema@.column_rules (base, column_name, level)
    SELECT p.base, att.attname, 'sensitive'
      FROM pg_attribute att
     WHERE att.attrelid = p.base AND att.attnum > 0 AND NOT att.attisdropped
       AND att.atttypid IN ('@extschema@.encrypted_text'::regtype, '@extschema@.encrypted_bytea'::regtype)
    ON CONFLICT DO NOTHING;

    FOR a IN
        SELECT att.attname, att.attidentity, att.attgenerated,
               r.column_name IS NOT NULL AS protected,
               -- the view column keeps the column's collation (encrypted
               -- columns become text with the default collation)
               CASE WHEN att.attcollation <> 0
                    THEN format(' COLLATE %I.%I', cn.nspname, co.collname)
                    WHEN att.atttypid = '@extschema@.encrypted_text'::regtype
                    THEN ' COLLATE pg_catalog."default"'
                    ELSE '' END AS coll
          FROM pg_attribute att
          LEFT JOIN pg_collation co ON co.oid = att.attcollation
          LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
          LEFT JOIN @extschema@.column_rules r ON r.base = p.base AND r.column_name = att.attname
         WHERE att.attrelid = p.base AND att.attnum > 0 AND NOT att.attisdropped
         ORDER BY att.attnum
    LOOP
        IF a.protected THEN
            sel := sel || format('@extschema@.reveal(%I, %L::regclass, %L::name, %I)%s AS %I',
                                 a.attname, base_q, a.attname, p.row_key, a.coll, a.attname);
        ELSE
            sel := sel || format('%I', a.attname);
        END IF;
        IF a.attgenerated <> '' OR a.attidentity = 'a' THEN
            skip := skip || a.attname::text;
        ELSE
            wcols := wcols || format('%I', a.attname);
        END IF;
    END LOOP;

    EXECUTE format('CREATE VIEW %s AS SELECT %s FROM %s', write_q, array_to_string(wcols, ', '), base_q);
    EXECUTE format('ALTER VIEW %s OWNER TO pii_guard_owner', write_q);
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', write_q);
    -- Not security_barrier: the view has no quals of its own to protect,
    -- every protected column is only ever reached through reveal(), and a
    -- flattened view lets ORDER BY ... LIMIT evaluate reveal() (costly by
    -- declaration) for the rows returned only, not for every row sorted.
    EXECUTE format('CREATE VIEW %s AS SELECT %s FROM %s',
                   view_q, array_to_string(sel, ', '), base_q);
    EXECUTE format('ALTER VIEW %s OWNER TO pii_guard_owner', view_q);
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', view_q);
    EXECUTE format('COMMENT ON VIEW %s IS %L', view_q,
                   format('pii_guard masking view of %s: columns are shown clear, masked or NULL according to the current role', base_q));
    -- The trigger's arguments: columns never written (generated, identity
    -- ALWAYS), which the write view leaves out.
    EXECUTE format('CREATE TRIGGER pii_guard_write INSTEAD OF INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION @extschema@.masking_view_write(%s)', view_q,
                   (SELECT string_agg(quote_literal(x), ', ') FROM unnest(skip) x));

    -- Column defaults (serial, now(), ...) apply to inserts through the view.
    FOR a IN
        SELECT att.attname, pg_get_expr(d.adbin, d.adrelid) AS expr
          FROM pg_attribute att JOIN pg_attrdef d ON d.adrelid = att.attrelid AND d.adnum = att.attnum
         WHERE att.attrelid = p.base AND att.attgenerated = '' AND NOT att.attisdropped
    LOOP
        EXECUTE format('ALTER VIEW %s ALTER COLUMN %I SET DEFAULT %s', view_q, a.attname, a.expr);
    END LOOP;
    FOR a IN
        SELECT att.attname, pg_get_serial_sequence(base_q, att.attname) AS seq
          FROM pg_attribute att
         WHERE att.attrelid = p.base AND att.attidentity = 'd' AND NOT att.attisdropped
    LOOP
        EXECUTE format('ALTER VIEW %s ALTER COLUMN %I SET DEFAULT pg_catalog.nextval(%L::regclass)',
                       view_q, a.attname, a.seq);
    END LOOP;

    -- The grants the masking view had (or the table had, when protected).
    FOREACH g IN ARRAY coalesce(p.saved_grants, '{}') LOOP
        BEGIN
            EXECUTE g;
        EXCEPTION WHEN undefined_column THEN
            NULL;   -- a column-level grant on a dropped column
        END;
    END LOOP;
    -- The table's owner is exempt from masking and reads and writes through
    -- the view like through the table.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', view_q,
                   (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = p.base));
    UPDATE @extschema@.protected_tables t SET saved_grants = NULL WHERE t.base = p.base;
    PERFORM @extschema@._sync_write_grants(p.base);
    PERFORM @extschema@._maintenance(false);
END
$$;

-- Mirror the masking view's write privileges onto the write view (plus
-- SELECT on the row key, which UPDATE and DELETE need to find the row), and
-- give INSERT grantees USAGE on the sequences behind the defaults.
CREATE FUNCTION @extschema@._sync_write_grants(base oid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p       @extschema@.protected_tables;
    nsp     name;
    view_q  text;
    write_q text;
    r       record;
    g       text;
BEGIN
    SELECT * INTO p FROM @extschema@.protected_tables t WHERE t.base = _sync_write_grants.base;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT n.nspname INTO nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p.base;
    view_q := format('%I.%I', p.view_schema, p.view_name);
    write_q := format('%I.%I', nsp, p.write_view_name);
    IF to_regclass(view_q) IS NULL OR to_regclass(write_q) IS NULL THEN
        RETURN;
    END IF;
    -- Start from nothing: privileges revoked on the masking view go too.
    FOR r IN SELECT DISTINCT a.grantee
               FROM pg_class c, aclexplode(c.relacl) a
              WHERE c.oid = to_regclass(write_q)
                AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', write_q,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
    END LOOP;
    FOR r IN SELECT att.attname, a.grantee
               FROM pg_attribute att, aclexplode(att.attacl) a
              WHERE att.attrelid = to_regclass(write_q) AND att.attnum > 0
    LOOP
        EXECUTE format('REVOKE ALL (%I) ON %s FROM %s', r.attname, write_q,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
    END LOOP;
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', write_q,
                   (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = p.base));
    FOREACH g IN ARRAY @extschema@._grants_of(to_regclass(view_q), write_q) LOOP
        IF g ~ '^GRANT (INSERT|UPDATE|DELETE)' THEN
            BEGIN
                EXECUTE g;
            EXCEPTION WHEN undefined_column THEN
                NULL;   -- a column the write view does not have (generated)
            END;
        END IF;
    END LOOP;
    FOR r IN
        SELECT DISTINCT a.grantee
          FROM (SELECT c.relacl AS acl FROM pg_class c WHERE c.oid = to_regclass(view_q)
                UNION ALL
                SELECT att.attacl FROM pg_attribute att
                 WHERE att.attrelid = to_regclass(view_q) AND att.attnum > 0) s,
               aclexplode(s.acl) a
         WHERE a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE')
    LOOP
        EXECUTE format('GRANT SELECT (%I) ON %s TO %s', p.row_key, write_q,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
    END LOOP;
    FOR r IN
        SELECT DISTINCT a.grantee, s.seq
          FROM (SELECT pg_get_serial_sequence(format('%I.%I', nsp, c.relname), att.attname) AS seq
                  FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid
                 WHERE att.attrelid = p.base AND att.attnum > 0 AND NOT att.attisdropped) s,
               (SELECT c.relacl AS acl FROM pg_class c WHERE c.oid = to_regclass(view_q)
                UNION ALL
                SELECT att.attacl FROM pg_attribute att
                 WHERE att.attrelid = to_regclass(view_q) AND att.attnum > 0) v,
               aclexplode(v.acl) a
         WHERE s.seq IS NOT NULL AND a.privilege_type = 'INSERT'
    LOOP
        EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %s', r.seq,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
    END LOOP;
END
$$;

-- Protect a table: move it to its companion schema <schema>_pii, put its
-- masking view under its name, move its grants to the view.
CREATE FUNCTION @extschema@.protect_table(tbl regclass, row_key name DEFAULT NULL)
RETURNS regclass
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel      record;
    comp     name;
    key      name := row_key;
    grants   text[];
    r        record;
BEGIN
    IF @extschema@._base_of(tbl) IS NOT NULL THEN
        RETURN @extschema@._base_of(tbl);
    END IF;
    SELECT c.oid, c.relname, c.relkind, n.nspname, c.relowner INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    IF rel.relkind <> 'r' THEN
        RAISE EXCEPTION '% is not an ordinary table', tbl
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'pii_guard protects ordinary tables; partitioned tables, views and foreign tables are not supported.';
    END IF;
    IF rel.nspname IN ('pg_catalog', 'information_schema', '@extschema@') OR rel.nspname LIKE 'pg\_%' THEN
        RAISE EXCEPTION 'cannot protect % in schema %', tbl, rel.nspname
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF key IS NULL THEN
        SELECT a.attname INTO key
          FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = tbl AND i.indisprimary AND i.indnatts = 1;
    END IF;
    IF key IS NULL OR NOT EXISTS (
            SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = tbl AND i.indisunique AND i.indnatts = 1 AND a.attname = key
               AND a.attnotnull AND i.indpred IS NULL) THEN
        RAISE EXCEPTION 'table % needs a row key', tbl
            USING ERRCODE = 'invalid_table_definition',
                  DETAIL = 'The row key identifies a row for writes through the masking view, for audit and for row-specific grants.',
                  HINT = 'Give the table a single-column primary key, or name a NOT NULL column with a unique index as row_key.';
    END IF;

    comp := rel.nspname || '_pii';
    IF to_regnamespace(quote_ident(comp)) IS NULL THEN
        EXECUTE format('CREATE SCHEMA %I', comp);
        EXECUTE format('COMMENT ON SCHEMA %I IS %L', comp,
                       format('pii_guard companion schema of %I: protected base tables', rel.nspname));
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', comp);
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO PUBLIC', comp);
    ELSIF obj_description(to_regnamespace(quote_ident(comp)), 'pg_namespace') IS DISTINCT FROM
          format('pii_guard companion schema of %I: protected base tables', rel.nspname) THEN
        RAISE EXCEPTION 'schema "%" exists and is not a pii_guard companion schema', comp
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'Rename that schema, then protect the table again.';
    END IF;
    IF to_regclass(format('%I.%I', comp, rel.relname)) IS NOT NULL
       OR to_regclass(format('%I.%I', comp, left(rel.relname, 52) || '__pii_write')) IS NOT NULL THEN
        RAISE EXCEPTION 'relation "%" already exists in schema "%"', rel.relname, comp
            USING ERRCODE = 'duplicate_table';
    END IF;

    PERFORM @extschema@._maintenance(true);
    grants := @extschema@._grants_of(tbl, format('%I.%I', rel.nspname, rel.relname));
    -- Take every privilege off the table: governed roles read and write
    -- through the views only.
    FOR r IN SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
              WHERE c.oid = tbl AND a.grantee <> rel.relowner
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', tbl,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
    END LOOP;
    FOR r IN SELECT att.attname, a.grantee FROM pg_attribute att, aclexplode(att.attacl) a
              WHERE att.attrelid = tbl AND att.attnum > 0
    LOOP
        EXECUTE format('REVOKE ALL (%I) ON %s FROM %s', r.attname, tbl,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
    END LOOP;
    EXECUTE format('ALTER TABLE %s SET SCHEMA %I', tbl, comp);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO pii_guard_owner', tbl);
    -- Sequences behind defaults: the view owner uses them too.
    FOR r IN SELECT pg_get_serial_sequence(tbl::text, att.attname) AS seq
               FROM pg_attribute att WHERE att.attrelid = tbl AND att.attnum > 0 AND NOT att.attisdropped
    LOOP
        IF r.seq IS NOT NULL THEN
            EXECUTE format('GRANT USAGE ON SEQUENCE %s TO pii_guard_owner', r.seq);
        END IF;
    END LOOP;
    INSERT INTO @extschema@.protected_tables (base, view_schema, view_name, write_view_name, row_key, saved_grants)
    VALUES (tbl, rel.nspname, rel.relname, left(rel.relname, 52) || '__pii_write', key, grants);
    PERFORM @extschema@._attach_views(tbl, NULL, NULL);
    PERFORM @extschema@._maintenance(false);
    PERFORM @extschema@.audit_table(tbl, key);
    PERFORM @extschema@._audit_admin('protect_table', format('%s protected; row key %s', tbl, key));
    RETURN tbl;
END
$$;

-- Put a protected table back exactly as it was: its schema, name and grants.
CREATE FUNCTION @extschema@.unprotect_table(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b        regclass := @extschema@._base_of(tbl);
    p        @extschema@.protected_tables;
    comp     name;
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
    PERFORM @extschema@._maintenance(true);
    grants := CASE WHEN to_regclass(format('%I.%I', p.view_schema, p.view_name)) IS NULL THEN '{}'::text[]
                   ELSE @extschema@._grants_of(to_regclass(format('%I.%I', p.view_schema, p.view_name)),
                                               format('%I.%I', p.view_schema, p.view_name)) END;
    EXECUTE format('DROP VIEW IF EXISTS %I.%I', p.view_schema, p.view_name);
    EXECUTE format('DROP VIEW IF EXISTS %I.%I', comp, p.write_view_name);
    DELETE FROM @extschema@.protected_tables t WHERE t.base = b;
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
CREATE FUNCTION @extschema@.refresh_views()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b regclass;
    n integer := 0;
BEGIN
    FOR b IN SELECT base FROM @extschema@.protected_tables ORDER BY base::text LOOP
        PERFORM @extschema@._detach_views(b, NULL, NULL);
        PERFORM @extschema@._attach_views(b, NULL, NULL);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Protect one column: its level and (optionally) its mask function, with
-- constant extra arguments.  Protects the table first if needed.
CREATE FUNCTION @extschema@.protect_column(tbl regclass, col name, level @extschema@.level,
                                           mask regprocedure DEFAULT NULL, mask_args text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b        regclass := coalesce(@extschema@._base_of(tbl), @extschema@.protect_table(tbl));
    coltype  regtype;
    valtype  regtype;
    fn       record;
    sig      text;
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
        sig := format('%I.%I(%s)', fn.nspname, fn.proname,
                      (SELECT oidvectortypes(p.proargtypes) FROM pg_proc p WHERE p.oid = mask));
    END IF;
    INSERT INTO @extschema@.column_rules (base, column_name, level, mask_function, mask_args)
    VALUES (b, col, level, sig, mask_args)
    ON CONFLICT (base, column_name) DO UPDATE
       SET level = EXCLUDED.level, mask_function = EXCLUDED.mask_function, mask_args = EXCLUDED.mask_args;
    PERFORM @extschema@._audit_admin('protect_column',
        format('%s.%I: level %s, mask %s', b, col, level, coalesce(sig, 'none')));
    PERFORM @extschema@._detach_views(b, NULL, NULL);
    PERFORM @extschema@._attach_views(b, NULL, NULL);
END
$$;

-- Stop protecting one column: it is shown as it is again.
CREATE FUNCTION @extschema@.unprotect_column(tbl regclass, col name)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
    DELETE FROM @extschema@.column_rules r WHERE r.base = b AND r.column_name = col;
    PERFORM @extschema@._audit_admin('unprotect_column', format('%s.%I', b, col));
    PERFORM @extschema@._detach_views(b, NULL, NULL);
    PERFORM @extschema@._attach_views(b, NULL, NULL);
END
$$;

-- Make a role a profile with this clearance (or change its clearance).
CREATE FUNCTION @extschema@.set_clearance(role regrole, clearance @extschema@.level, description text DEFAULT NULL)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO @extschema@.profiles (role, clearance, description)
    VALUES (role, clearance, description)
    ON CONFLICT (role) DO UPDATE
       SET clearance = EXCLUDED.clearance,
           description = coalesce(EXCLUDED.description, @extschema@.profiles.description);
    SELECT @extschema@._audit_admin('set_clearance', format('%s: %s', role, clearance));
$$;

-- Per-column exception for a profile: 'clear', 'masked' or 'hidden'.
CREATE FUNCTION @extschema@.set_column_access(role regrole, tbl regclass, col name, access text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@.reset_column_access(role regrole, tbl regclass, col name)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM @extschema@.profile_overrides o
     WHERE o.role = reset_column_access.role AND o.base = @extschema@._base_of(tbl)
       AND o.column_name = col;
    SELECT @extschema@._audit_admin('reset_column_access', format('%s on %s.%I', role, tbl, col));
$$;

-- A role is no longer a profile (its overrides go with it).
CREATE FUNCTION @extschema@.drop_profile(role regrole)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM @extschema@.profiles p WHERE p.role = drop_profile.role;
    SELECT @extschema@._audit_admin('drop_profile', role::text);
$$;

-- Time-boxed approval: role sees the columns (NULL: all protected columns)
-- of the rows with these row keys (NULL: all rows) of tbl in clear until
-- valid_until.  Runs as the caller, who must be a pii_guard_approver member
-- (checked by the grants table's trigger).
CREATE FUNCTION @extschema@.approve(role regrole, tbl regclass, valid_until timestamptz,
                                    reason text, columns name[] DEFAULT NULL,
                                    row_keys text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
    INSERT INTO @extschema@.grants (kind, role, base, columns, row_keys, valid_until, reason, approver)
    VALUES ('unmask', role, b, columns, row_keys, valid_until, reason, current_user::regrole)
    RETURNING grant_id INTO id;
    RETURN id;
END
$$;

-- End a grant before its time.
CREATE FUNCTION @extschema@.revoke_grant(grant_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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

-- What a role sees of every protected column (for rows without a
-- row-specific grant): 'clear', 'masked' or 'hidden'.
CREATE FUNCTION @extschema@.effective_access(role regrole)
RETURNS TABLE (table_name text, column_name name, level @extschema@.level, access text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', p.view_schema, p.view_name), r.column_name, r.level,
           @extschema@.column_access(role::oid, r.base, r.column_name)
      FROM @extschema@.column_rules r
      JOIN @extschema@.protected_tables p ON p.base = r.base
     ORDER BY 1, (SELECT att.attnum FROM pg_attribute att
                   WHERE att.attrelid = r.base AND att.attname = r.column_name)
$$;

-- Keep the policy tidy when protected tables are dropped, and the write
-- views' grants in step with GRANT and REVOKE on the masking views.
CREATE FUNCTION @extschema@._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM @extschema@.protected_tables p
     WHERE p.base::oid IN (SELECT objid FROM pg_event_trigger_dropped_objects()
                            WHERE classid = 'pg_class'::regclass AND objsubid = 0);
END
$$;

CREATE FUNCTION @extschema@._on_grant()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b   regclass;
    r   record;
    c   name;
    who text;
BEGIN
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

CREATE EVENT TRIGGER pii_guard_sql_drop ON sql_drop
    EXECUTE FUNCTION @extschema@._on_sql_drop();
CREATE EVENT TRIGGER pii_guard_grant ON ddl_command_end
    WHEN TAG IN ('GRANT', 'REVOKE')
    EXECUTE FUNCTION @extschema@._on_grant();

-- Policy privileges: pii_guard_admin manages policy; approvers issue grants;
-- admins, approvers and auditors may read the policy.
REVOKE ALL ON @extschema@.protected_tables, @extschema@.column_rules, @extschema@.profiles,
              @extschema@.profile_overrides, @extschema@.grants FROM PUBLIC;
GRANT SELECT ON @extschema@.protected_tables, @extschema@.column_rules, @extschema@.profiles,
                @extschema@.profile_overrides, @extschema@.grants
   TO pii_guard_admin, pii_guard_approver, pii_guard_auditor;
GRANT INSERT ON @extschema@.grants TO pii_guard_approver;
GRANT UPDATE (revoked_at) ON @extschema@.grants TO pii_guard_approver;
GRANT USAGE ON SEQUENCE @extschema@.grants_grant_id_seq TO pii_guard_approver;

DO $privs$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'protect_table(regclass, name)', 'unprotect_table(regclass)', 'refresh_views()',
        'protect_column(regclass, name, @extschema@.level, regprocedure, text[])',
        'unprotect_column(regclass, name)',
        'set_clearance(regrole, @extschema@.level, text)',
        'set_column_access(regrole, regclass, name, text)',
        'reset_column_access(regrole, regclass, name)', 'drop_profile(regrole)']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.%s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.%s TO pii_guard_admin', f);
    END LOOP;
    FOREACH f IN ARRAY ARRAY[
        'approve(regrole, regclass, timestamptz, text, name[], text[])', 'revoke_grant(bigint)']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.%s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.%s TO pii_guard_approver', f);
    END LOOP;
    FOREACH f IN ARRAY ARRAY['effective_access(regrole)', 'column_access(oid, regclass, name)']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.%s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.%s TO pii_guard_admin, pii_guard_approver, pii_guard_auditor', f);
    END LOOP;
    FOREACH f IN ARRAY ARRAY[
        '_maintenance(boolean)', '_in_maintenance()', '_detach_views(oid, text, text)',
        '_attach_views(oid, text, text)', '_sync_write_grants(oid)', '_grants_of(regclass, text)']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.%s FROM PUBLIC', f);
    END LOOP;
    -- approve() and effective_access() run as their caller.
    REVOKE ALL ON FUNCTION @extschema@._base_of(regclass) FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION @extschema@._base_of(regclass)
       TO pii_guard_admin, pii_guard_approver, pii_guard_auditor;
END
$privs$;

--------------------------------------------------------------------------
-- Export-row limits and export approvals
--------------------------------------------------------------------------

-- A profile's limits on protected rows per statement and per rolling 24
-- hours (NULL: unlimited).
CREATE FUNCTION @extschema@.set_export_limits(role regrole, max_rows_per_statement bigint,
                                              max_rows_per_day bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.profiles p
       SET max_rows_per_statement = set_export_limits.max_rows_per_statement,
           max_rows_per_day = set_export_limits.max_rows_per_day
     WHERE p.role = set_export_limits.role;
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
CREATE FUNCTION @extschema@.approve_export(role regrole, rows bigint, valid_until timestamptz,
                                           reason text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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

CREATE FUNCTION @extschema@.export_usage(role regrole)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pii_guard_export_usage'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION @extschema@.export_grant_used(grant_id bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pii_guard_export_grant_used'
LANGUAGE C STRICT VOLATILE;

-- Export approvals and how much of each is used.
CREATE VIEW @extschema@.export_approvals AS
SELECT g.grant_id, g.role, g.rows, @extschema@.export_grant_used(g.grant_id) AS used,
       g.valid_from, g.valid_until, g.revoked_at, g.reason, g.approver, g.created_at,
       g.revoked_at IS NULL AND g.valid_until > now()
           AND @extschema@.export_grant_used(g.grant_id) < g.rows AS live
  FROM @extschema@.grants g WHERE g.kind = 'export';

REVOKE ALL ON FUNCTION @extschema@.set_export_limits(regrole, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.set_export_limits(regrole, bigint, bigint) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.approve_export(regrole, bigint, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.approve_export(regrole, bigint, timestamptz, text) TO pii_guard_approver;
REVOKE ALL ON FUNCTION @extschema@.export_usage(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.export_grant_used(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.export_usage(regrole), @extschema@.export_grant_used(bigint)
   TO pii_guard_admin, pii_guard_approver, pii_guard_auditor;
REVOKE ALL ON @extschema@.export_approvals FROM PUBLIC;
GRANT SELECT ON @extschema@.export_approvals TO pii_guard_admin, pii_guard_approver, pii_guard_auditor;

--------------------------------------------------------------------------
-- Audit
--------------------------------------------------------------------------

-- Every event: who, when, from where, what (relation, columns, rows), how
-- (kind, operation), and the outcome -- never a value of a protected column.
CREATE TABLE @extschema@.audit_log (
    event_id          bigserial PRIMARY KEY,
    event_time        timestamptz NOT NULL,
    kind              text NOT NULL,    -- read, write, export, deny, admin (set by pii_guard only)
    session_role      text NOT NULL,
    acting_role      text NOT NULL,
    client_addr       inet,
    application_name  text,
    backend_pid       integer,
    xid               bigint,
    query_id          bigint,
    relation          text,
    operation         text,
    columns_clear     text[],
    columns_masked    text[],
    columns_changed   text[],
    rows              bigint,
    row_keys          text[],
    row_keys_masked   text[],
    detail            text,
    row_mac           bytea
);
COMMENT ON TABLE @extschema@.audit_log IS
    'pii_guard audit trail: append-only, each row MACed, sealed into audit_seal by the audit worker';
CREATE INDEX audit_log_time ON @extschema@.audit_log (event_time);
-- (Few indexes on purpose: every one is paid for on each event.)

-- The hash chain over committed rows, in sealing order.
CREATE TABLE @extschema@.audit_seal (
    seal_seq    bigint PRIMARY KEY,
    event_id    bigint NOT NULL UNIQUE,
    chain_hash  bytea NOT NULL,
    sealed_at   timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- The log (with its MACs) is dumped; the chain is not: a restored database
-- seals the restored rows into a chain of its own (restoring the old chain
-- would race the new database's audit worker, which seals as rows arrive).
SELECT pg_catalog.pg_extension_config_dump('@extschema@.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.audit_log_event_id_seq', '');

CREATE FUNCTION @extschema@.audit_log_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pii_guard_audit_log_guard'
LANGUAGE C;

CREATE TRIGGER audit_log_guard BEFORE INSERT OR UPDATE OR DELETE ON @extschema@.audit_log
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_log_guard();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON @extschema@.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_log_guard();
CREATE TRIGGER audit_seal_guard BEFORE UPDATE OR DELETE ON @extschema@.audit_seal
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_log_guard();
CREATE TRIGGER audit_seal_no_truncate BEFORE TRUNCATE ON @extschema@.audit_seal
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_log_guard();

CREATE FUNCTION @extschema@.audit_write()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pii_guard_audit_write'
LANGUAGE C;

CREATE FUNCTION @extschema@._audit_admin(action text, detail text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pii_guard_audit_admin'
LANGUAGE C VOLATILE;

CREATE FUNCTION @extschema@._audit_deny(operation text, detail text)
RETURNS void
AS 'MODULE_PATHNAME', 'pii_guard_audit_deny'
LANGUAGE C VOLATILE;

CREATE FUNCTION @extschema@._audit_row_ok(@extschema@.audit_log)
RETURNS boolean
AS 'MODULE_PATHNAME', 'pii_guard_audit_row_ok'
LANGUAGE C STRICT STABLE;

CREATE FUNCTION @extschema@._audit_chain_next(prev bytea, event_id bigint, row_mac bytea)
RETURNS bytea
AS 'MODULE_PATHNAME', 'pii_guard_audit_chain_next'
LANGUAGE C IMMUTABLE;

CREATE FUNCTION @extschema@.audit_queue_status(
    OUT queued bigint, OUT capacity integer, OUT spilled bigint, OUT workers integer)
RETURNS record
AS 'MODULE_PATHNAME', 'pii_guard_audit_queue_status'
LANGUAGE C VOLATILE;

-- Write events for any table (protect_table attaches them itself): one
-- event per statement with the row keys and the names of changed columns.
CREATE FUNCTION @extschema@.audit_table(tbl regclass, row_key name DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key name := row_key;
    t   name;
BEGIN
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

CREATE FUNCTION @extschema@.unaudit_table(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@.verify_audit()
RETURNS TABLE (event_id bigint, seal_seq bigint, problem text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s     record;
    a     @extschema@.audit_log;
    prev  bytea := NULL;
    want  bigint := 1;
BEGIN
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

-- The questions compliance staff ask.

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

CREATE VIEW @extschema@.audit_denials AS
SELECT event_id, event_time, session_role, acting_role, client_addr, application_name,
       relation, operation, rows, detail
  FROM @extschema@.audit_log WHERE kind = 'deny';

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

-- Roles idle for at least `idle` that still hold sensitive or core clearance.
CREATE FUNCTION @extschema@.idle_privileged_roles(idle interval DEFAULT '90 days')
RETURNS TABLE (member name, profile text, clearance @extschema@.level, last_activity timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.member, r.profile, r.clearance, r.last_activity
      FROM @extschema@.access_review r
     WHERE r.clearance >= 'sensitive' AND r.can_login
       AND (r.last_activity IS NULL OR r.last_activity < now() - idle)
     ORDER BY r.member, r.profile
$$;

REVOKE ALL ON @extschema@.audit_log, @extschema@.audit_seal FROM PUBLIC;
GRANT SELECT ON @extschema@.audit_log, @extschema@.audit_seal, @extschema@.audit_row_access,
                @extschema@.audit_exports, @extschema@.audit_denials, @extschema@.audit_admin_changes,
                @extschema@.access_review
   TO pii_guard_auditor;
REVOKE ALL ON @extschema@.audit_row_access, @extschema@.audit_exports, @extschema@.audit_denials,
              @extschema@.audit_admin_changes, @extschema@.access_review FROM PUBLIC;
DO $privs$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['audit_table(regclass, name)', 'unaudit_table(regclass)']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.%s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.%s TO pii_guard_admin', f);
    END LOOP;
    FOREACH f IN ARRAY ARRAY['verify_audit()', 'idle_privileged_roles(interval)', 'audit_queue_status()',
                             '_audit_row_ok(@extschema@.audit_log)', '_audit_chain_next(bytea, bigint, bytea)']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.%s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.%s TO pii_guard_auditor', f);
    END LOOP;
    -- Audit events are written by pii_guard's own functions only.
    REVOKE ALL ON FUNCTION @extschema@._audit_admin(text, text) FROM PUBLIC;
    REVOKE ALL ON FUNCTION @extschema@._audit_deny(text, text) FROM PUBLIC;
END
$privs$;

--------------------------------------------------------------------------
-- Masking functions
--------------------------------------------------------------------------

-- Each returns the type it masks, so that a masking view's column has one
-- type for every role.  The text masks raise no error for any input and are
-- LEAKPROOF; the others reject bad parameters or need the master key.  (This
-- script stays ASCII: it is read in the database's encoding.)
CREATE FUNCTION @extschema@.mask_phone(value text)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_mask_phone'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
COMMENT ON FUNCTION @extschema@.mask_phone(text) IS
    'masks a phone number: a mainland mobile shows its first 3 and last 4 digits (138****5678), an international number its country code and at most the last 4 digits; separators are dropped';

CREATE FUNCTION @extschema@.mask_cn_id(value text)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_mask_cn_id'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
COMMENT ON FUNCTION @extschema@.mask_cn_id(text) IS
    'masks a resident identity card number: 18 characters show the first 6 and last 4 (110101********1234), the old 15 digits the first 6 and last 3';

CREATE FUNCTION @extschema@.mask_bank_card(value text)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_mask_bank_card'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
COMMENT ON FUNCTION @extschema@.mask_bank_card(text) IS
    'masks a bank card number: 12 to 19 digits show the first 6 and last 4 (622202*********0123), other digit strings at most the last 4';

CREATE FUNCTION @extschema@.mask_email(value text)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_mask_email'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
COMMENT ON FUNCTION @extschema@.mask_email(text) IS
    'masks an e-mail address: the first character of the local part and the domain (z*******@example.com)';

CREATE FUNCTION @extschema@.mask_name(value text)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_mask_name'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
COMMENT ON FUNCTION @extschema@.mask_name(text) IS
    'masks a personal name: a Chinese name shows its surname (one character, or two for a compound surname), a name in another script the initial of each word (J*** S****)';

CREATE FUNCTION @extschema@.mask_address(value text)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_mask_address'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
COMMENT ON FUNCTION @extschema@.mask_address(text) IS
    'masks a postal address: a Chinese address shows its province, city and district, a comma-separated one what follows its street and number (****, Mountain View, CA 94043)';

CREATE FUNCTION @extschema@.mask_date(value date, "precision" text)
RETURNS date
AS 'MODULE_PATHNAME', 'pii_guard_mask_date'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.mask_date(date, text) IS
    'generalises a date to the first day of its year (precision ''year'') or month (''month'')';

CREATE FUNCTION @extschema@.mask_date(value timestamp, "precision" text)
RETURNS timestamp
AS 'MODULE_PATHNAME', 'pii_guard_mask_date_timestamp'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.mask_date(timestamp, text) IS
    'generalises a timestamp to midnight on the first day of its year (precision ''year'') or month (''month'')';

-- A timestamptz is truncated in the named time zone, as timezone(zone,
-- value) is, so that the result does not depend on the session's TimeZone.
CREATE FUNCTION @extschema@.mask_date(value timestamptz, "precision" text, zone text)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'pii_guard_mask_date_timestamptz'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.mask_date(timestamptz, text, text) IS
    'generalises a timestamp with time zone to midnight, in the given time zone, on the first day of its year (precision ''year'') or month (''month'')';

CREATE FUNCTION @extschema@.partial(value text, keep_prefix integer, pad text, keep_suffix integer)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_partial'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.partial(text, integer, text, integer) IS
    'shows the first keep_prefix and last keep_suffix characters with pad between, always hiding at least one character';

-- pseudonym() and noise() are keyed by the pseudonym data key.  IMMUTABLE
-- holds while that key is not rotated.  The key is created by the first
-- call, which must run in a read-write transaction, not in a parallel
-- worker.  Whoever may call them can test guesses against their results,
-- so only pii_guard_admin may; masking views apply them through reveal(),
-- which needs no privilege on the mask function.
CREATE FUNCTION @extschema@.pseudonym(value text)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_pseudonym'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.pseudonym(text) IS
    'a keyed pseudonym: 16 hex digits of HMAC-SHA256 under the pseudonym key, the same for the same value, not reversible without the key';

CREATE FUNCTION @extschema@.noise(value numeric, ratio double precision)
RETURNS numeric
AS 'MODULE_PATHNAME', 'pii_guard_noise_numeric'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.noise(numeric, double precision) IS
    'the value moved by at most ratio times itself, by keyed noise that is the same on every call, at the value''s scale';

CREATE FUNCTION @extschema@.noise(value integer, ratio double precision)
RETURNS integer
AS 'MODULE_PATHNAME', 'pii_guard_noise_int4'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.noise(integer, double precision) IS
    'the value moved by at most ratio times itself, by keyed noise that is the same on every call, rounded toward the value';

CREATE FUNCTION @extschema@.noise(value bigint, ratio double precision)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pii_guard_noise_int8'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.noise(bigint, double precision) IS
    'the value moved by at most ratio times itself, by keyed noise that is the same on every call, rounded toward the value';

CREATE FUNCTION @extschema@.noise(value double precision, ratio double precision)
RETURNS double precision
AS 'MODULE_PATHNAME', 'pii_guard_noise_float8'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.noise(double precision, double precision) IS
    'the value moved by at most ratio times itself, by keyed noise that is the same on every call';

REVOKE ALL ON FUNCTION @extschema@.pseudonym(text),
                       @extschema@.noise(numeric, double precision),
                       @extschema@.noise(integer, double precision),
                       @extschema@.noise(bigint, double precision),
                       @extschema@.noise(double precision, double precision)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.pseudonym(text),
                          @extschema@.noise(numeric, double precision),
                          @extschema@.noise(integer, double precision),
                          @extschema@.noise(bigint, double precision),
                          @extschema@.noise(double precision, double precision)
    TO pii_guard_admin;
