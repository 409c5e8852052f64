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
    purpose                 text NOT NULL CHECK (purpose IN ('encrypt', 'blind_index', 'pseudonym')),
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
GRANT SELECT ON @extschema@.master_keys, @extschema@.key_status TO pii_guard_admin;
