/* pii_guard--0.1--0.2.sql: the changes of version 0.2 over 0.1 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pii_guard UPDATE TO '0.2'" to load this file. \quit

-- 0.1 is released and its script is never edited: everything 0.2 changes
-- is here, and CREATE EXTENSION of 0.2 runs the 0.1 script and then this
-- one.  Each change says why.

--------------------------------------------------------------------------
-- reencrypt_column: every table of an inheritance or partition tree;
-- refuse what it cannot finish (row-level security hiding rows from the
-- caller, foreign tables); follow a rotation that happens while it runs.
--------------------------------------------------------------------------

-- 0.1 read the size of the named table only: a partitioned table has
-- none, so its partitions were never re-encrypted (and inheritance
-- children only as far as the parent's size reached), while the call
-- succeeded; rows that row-level security hid from the caller were left
-- out silently; and a rotation during the run left values under the key
-- that was active when it started.
CREATE OR REPLACE PROCEDURE @extschema@.reencrypt_column(
    tbl regclass, col name, batch_rows integer DEFAULT 10000)
LANGUAGE plpgsql
AS $proc$
DECLARE
    coltype     regtype;
    rels        regclass[];
    rel         regclass;
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
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF coltype IS NULL THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl
            USING ERRCODE = 'undefined_column';
    END IF;
    IF coltype NOT IN ('@extschema@.encrypted_text'::regtype,
                       '@extschema@.encrypted_bytea'::regtype) THEN
        RAISE EXCEPTION 'column "%" of relation % is not an encrypted column', col, tbl
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = pg_catalog.format('Its type is %s.', coltype),
                  HINT = 'Only encrypted_text and encrypted_bytea columns can be re-encrypted.';
    END IF;

    -- The tables that hold the rows: tbl and everything that inherits from
    -- it (partitions included), each processed by itself (UPDATE ONLY).
    WITH RECURSIVE tree(oid) AS (
        SELECT tbl::oid
        UNION
        SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent = t.oid)
    SELECT pg_catalog.array_agg(c.oid::regclass ORDER BY c.oid) INTO rels
      FROM tree t JOIN pg_catalog.pg_class c ON c.oid = t.oid
     WHERE c.relkind = 'r';
    SELECT c.oid::regclass INTO rel
      FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
     WHERE c.relkind = 'f' AND i.inhparent IN (SELECT pg_catalog.unnest(rels) UNION SELECT tbl)
     LIMIT 1;
    IF rel IS NOT NULL THEN
        RAISE EXCEPTION 'cannot re-encrypt the foreign table % of %', rel, tbl
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Re-encrypt the values where the foreign table''s data lives.';
    END IF;
    FOREACH rel IN ARRAY coalesce(rels, '{}') LOOP
        IF pg_catalog.row_security_active(rel) THEN
            RAISE EXCEPTION 'row-level security on % hides rows from %', rel, current_user
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'Rows the caller cannot see would stay under their old key.',
                      HINT = 'Run reencrypt_column as the table''s owner or as a role with BYPASSRLS.';
        END IF;
    END LOOP;

    LOOP
        pass := pass + 1;
        -- The active key now (and an active key at all): a rotation since
        -- the last pass makes this pass re-encrypt to the new key.
        active := @extschema@.key_id(@extschema@.encrypt(''::text));

        FOREACH rel IN ARRAY coalesce(rels, '{}') LOOP
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
                    'WHERE ctid >= $1 AND ctid < $2 AND @extschema@.key_id(%I) <> $3',
                    rel, col, col, col)
                  USING pg_catalog.format('(%s,0)', blk)::tid,
                        pg_catalog.format('(%s,0)', blk + step)::tid, active;
                GET DIAGNOSTICS done = ROW_COUNT;
                total := total + done;
                blk := blk + step;
                UPDATE @extschema@.reencrypt_progress p
                   SET next_block = blk, updated_at = pg_catalog.now()
                 WHERE p.table_oid = rel AND p.column_name = col;
                COMMIT;
            END LOOP;
        END LOOP;

        -- Sweep: rows moved or written under an older key while we ran, or
        -- everything, if the key was rotated meanwhile.
        active := @extschema@.key_id(@extschema@.encrypt(''::text));
        EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s WHERE @extschema@.key_id(%I) <> $1',
                                  tbl, col)
           INTO stale USING active;
        EXIT WHEN stale = 0 OR pass >= 10;
        DELETE FROM @extschema@.reencrypt_progress p
         WHERE p.table_oid = ANY (rels::oid[]) AND p.column_name = col;
        COMMIT;
    END LOOP;

    DELETE FROM @extschema@.reencrypt_progress p
     WHERE p.table_oid = ANY (coalesce(rels, '{}')::oid[]) AND p.column_name = col;
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
-- Equality of an encrypted column with a typed plaintext
--------------------------------------------------------------------------

-- `phone = $1` with a text (or varchar) parameter, as prepared statements
-- and most drivers send it, had no operator: only untyped literals worked.
-- These compare the plaintext's blind index with the envelope's (nothing is
-- decrypted), and are in the btree and hash families, so they use the
-- column's indexes and hash joins.
DO $plainops$
DECLARE
    t text;
    p text;
BEGIN
    FOR t, p IN VALUES ('encrypted_text', 'text'), ('encrypted_bytea', 'bytea')
    LOOP
        EXECUTE pg_catalog.format($f$
            CREATE FUNCTION @extschema@.%1$s_eq_plain(@extschema@.%1$s, %2$s)
            RETURNS boolean AS 'MODULE_PATHNAME', 'pii_guard_envelope_eq_plain'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.%1$s_ne_plain(@extschema@.%1$s, %2$s)
            RETURNS boolean AS 'MODULE_PATHNAME', 'pii_guard_envelope_ne_plain'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.%1$s_cmp_plain(@extschema@.%1$s, %2$s)
            RETURNS integer AS 'MODULE_PATHNAME', 'pii_guard_envelope_cmp_plain'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.plain_eq_%1$s(%2$s, @extschema@.%1$s)
            RETURNS boolean AS 'MODULE_PATHNAME', 'pii_guard_plain_eq_envelope'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.plain_ne_%1$s(%2$s, @extschema@.%1$s)
            RETURNS boolean AS 'MODULE_PATHNAME', 'pii_guard_plain_ne_envelope'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.plain_cmp_%1$s(%2$s, @extschema@.%1$s)
            RETURNS integer AS 'MODULE_PATHNAME', 'pii_guard_plain_cmp_envelope'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.%2$s_blind_hash(%2$s)
            RETURNS integer AS 'MODULE_PATHNAME', 'pii_guard_plain_%2$s_hash'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.%2$s_blind_hash_extended(%2$s, bigint)
            RETURNS bigint AS 'MODULE_PATHNAME', 'pii_guard_plain_%2$s_hash_extended'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

            CREATE OPERATOR pg_catalog.= (
                LEFTARG = @extschema@.%1$s, RIGHTARG = %2$s,
                FUNCTION = @extschema@.%1$s_eq_plain,
                COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
                RESTRICT = eqsel, JOIN = eqjoinsel, HASHES);
            CREATE OPERATOR pg_catalog.<> (
                LEFTARG = @extschema@.%1$s, RIGHTARG = %2$s,
                FUNCTION = @extschema@.%1$s_ne_plain,
                COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
                RESTRICT = neqsel, JOIN = neqjoinsel);
            CREATE OPERATOR pg_catalog.= (
                LEFTARG = %2$s, RIGHTARG = @extschema@.%1$s,
                FUNCTION = @extschema@.plain_eq_%1$s,
                COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
                RESTRICT = eqsel, JOIN = eqjoinsel, HASHES);
            CREATE OPERATOR pg_catalog.<> (
                LEFTARG = %2$s, RIGHTARG = @extschema@.%1$s,
                FUNCTION = @extschema@.plain_ne_%1$s,
                COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
                RESTRICT = neqsel, JOIN = neqjoinsel);

            ALTER OPERATOR FAMILY @extschema@.%1$s_blind_ops USING btree ADD
                OPERATOR 3 pg_catalog.= (@extschema@.%1$s, %2$s),
                OPERATOR 3 pg_catalog.= (%2$s, @extschema@.%1$s),
                FUNCTION 1 (@extschema@.%1$s, %2$s) @extschema@.%1$s_cmp_plain(@extschema@.%1$s, %2$s),
                FUNCTION 1 (%2$s, @extschema@.%1$s) @extschema@.plain_cmp_%1$s(%2$s, @extschema@.%1$s);
            ALTER OPERATOR FAMILY @extschema@.%1$s_blind_hash_ops USING hash ADD
                OPERATOR 1 pg_catalog.= (@extschema@.%1$s, %2$s),
                OPERATOR 1 pg_catalog.= (%2$s, @extschema@.%1$s),
                FUNCTION 1 (%2$s) @extschema@.%2$s_blind_hash(%2$s),
                FUNCTION 2 (%2$s) @extschema@.%2$s_blind_hash_extended(%2$s, bigint);
        $f$, t, p);
    END LOOP;
END
$plainops$;
