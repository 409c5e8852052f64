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
-- column's indexes and hash joins.  = and <> are LEAKPROOF (they return a
-- boolean, and fail only without a master key or on a damaged envelope,
-- never because of a value), so that a lookup through a masking view can
-- use the index under row-level security too (lookup.c).
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
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;
            CREATE FUNCTION @extschema@.%1$s_ne_plain(@extschema@.%1$s, %2$s)
            RETURNS boolean AS 'MODULE_PATHNAME', 'pii_guard_envelope_ne_plain'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;
            CREATE FUNCTION @extschema@.%1$s_cmp_plain(@extschema@.%1$s, %2$s)
            RETURNS integer AS 'MODULE_PATHNAME', 'pii_guard_envelope_cmp_plain'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
            CREATE FUNCTION @extschema@.plain_eq_%1$s(%2$s, @extschema@.%1$s)
            RETURNS boolean AS 'MODULE_PATHNAME', 'pii_guard_plain_eq_envelope'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;
            CREATE FUNCTION @extschema@.plain_ne_%1$s(%2$s, @extschema@.%1$s)
            RETURNS boolean AS 'MODULE_PATHNAME', 'pii_guard_plain_ne_envelope'
            LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;
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

--------------------------------------------------------------------------
-- Policy and masking views: trusted mask functions, views rebuilt in place
--------------------------------------------------------------------------

-- Masking views built by 0.2 name their mask functions (see
-- _attach_views); a decision then takes only a function the view names.
-- Views built by 0.1 keep working as they did until refresh_views() (or any
-- change to the table) rebuilds them: an extension script cannot replace
-- objects that are not its own, so this one cannot.
ALTER TABLE @extschema@.protected_tables ADD COLUMN names_masks boolean NOT NULL DEFAULT false;

-- Why a function may not be a mask function (NULL: it may).  reveal()
-- hands a mask function the plaintext of every value it masks, for every
-- governed role; see policy_mask_problem() in policy.c.
CREATE FUNCTION @extschema@._mask_problem(fn regprocedure)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_mask_problem'
LANGUAGE C STRICT STABLE;
REVOKE ALL ON FUNCTION @extschema@._mask_problem(regprocedure) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._mask_problem(regprocedure) TO pii_guard_admin;

-- The objects (other than pii_guard's own) that depend on the relations
-- rels, as "view s.v, ..." for a message, or NULL.  A view on a masking
-- view pins it: the masking view can then be replaced (CREATE OR REPLACE
-- VIEW) but not dropped.
CREATE FUNCTION @extschema@._dependents(rels regclass[])
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._dependents(regclass[]) FROM PUBLIC;

-- Drop the views of a protected table, keeping the masking view's grants
-- for _attach_views.  Needed only when a column the views show goes or
-- changes its type (a view cannot lose or retype a column); refused, with
-- the dependent objects named, while other views depend on them.
CREATE OR REPLACE FUNCTION @extschema@._detach_views(base oid, rename_from text, rename_to text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
         WHERE t.base = p.base;
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
CREATE OR REPLACE FUNCTION @extschema@._attach_views(base oid, rename_from text, rename_to text)
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
    masks      text[];
    view_sql   text;
    write_sql  text;
    view_replaced boolean := false;
    a          record;
    g          text;
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
        -- The views keep their columns by position: rename the column there
        -- too, so that they can be replaced.
        IF EXISTS (SELECT 1 FROM pg_attribute att WHERE att.attrelid = to_regclass(view_q)
                      AND att.attname = rename_from AND NOT att.attisdropped) THEN
            EXECUTE format('ALTER VIEW %s RENAME COLUMN %I TO %I', view_q, rename_from, rename_to);
        END IF;
        IF EXISTS (SELECT 1 FROM pg_attribute att WHERE att.attrelid = to_regclass(write_q)
                      AND att.attname = rename_from AND NOT att.attisdropped) THEN
            EXECUTE format('ALTER VIEW %s RENAME COLUMN %I TO %I', write_q, rename_from, rename_to);
        END IF;
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
               -- reveal() returns the column's type without its typmod: cast
               -- it back, so that (un)protecting keeps the view column's type
               CASE WHEN att.atttypmod >= 0
                    THEN '::' || format_type(att.atttypid, att.atttypmod) ELSE '' END AS typmod_cast,
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
            sel := sel || format('@extschema@.reveal(%I, %L::regclass, %L::name, %I)%s%s AS %I',
                                 a.attname, base_q, a.attname, p.row_key, a.typmod_cast, a.coll, a.attname);
        ELSE
            sel := sel || format('%I', a.attname);
        END IF;
        -- The write view has every column, the row key among them (for
        -- RETURNING and to find rows); the trigger never writes generated
        -- and identity ALWAYS columns.
        wcols := wcols || format('%I', a.attname);
        IF a.attgenerated <> '' OR a.attidentity = 'a' THEN
            skip := skip || a.attname::text;
        END IF;
    END LOOP;
    -- The masking view names every mask function its rules use, in a
    -- condition the planner folds away: that records a dependency, so a
    -- mask function cannot be dropped from under the view, and a decision
    -- can tell the function the view was built with from another that took
    -- its name (policy.c).  One "IS NOT NULL" per function: a test of a
    -- constant folds at once, where an ARRAY[...] of them would be
    -- evaluated by an executor of its own at every planning.
    SELECT array_agg(DISTINCT format('%L::pg_catalog.regprocedure IS NOT NULL', f::oid::text))
      INTO masks
      FROM (SELECT to_regprocedure(r.mask_function) AS f FROM @extschema@.column_rules r
             WHERE r.base = p.base AND r.mask_function IS NOT NULL) s
     WHERE f IS NOT NULL;
    write_sql := format('SELECT %s FROM %s', array_to_string(wcols, ', '), base_q);
    -- Not security_barrier: the view has no quals of its own to protect,
    -- every protected column is only ever reached through reveal(), and a
    -- flattened view lets ORDER BY ... LIMIT evaluate reveal() (costly by
    -- declaration) for the rows returned only, not for every row sorted.
    view_sql := format('SELECT %s FROM %s', array_to_string(sel, ', '), base_q)
             || CASE WHEN masks IS NULL THEN ''
                     ELSE format(' WHERE %s', array_to_string(masks, ' AND ')) END;

    -- Replace each view in place; one that cannot be (a column went or
    -- changed its type) is dropped -- refused while others depend on it --
    -- and created again.
    IF to_regclass(view_q) IS NOT NULL THEN
        BEGIN
            EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', view_q, view_sql);
            view_replaced := true;
        EXCEPTION WHEN invalid_table_definition THEN
            view_replaced := false;
        END;
    END IF;
    IF to_regclass(view_q) IS NOT NULL AND NOT view_replaced THEN
        PERFORM @extschema@._detach_views(p.base, NULL, NULL);     -- both views
        SELECT t.saved_grants INTO p.saved_grants FROM @extschema@.protected_tables t WHERE t.base = p.base;
    END IF;
    IF to_regclass(write_q) IS NOT NULL THEN
        BEGIN
            EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', write_q, write_sql);
        EXCEPTION WHEN invalid_table_definition THEN
            IF @extschema@._dependents(ARRAY[to_regclass(write_q)]) IS NOT NULL THEN
                RAISE EXCEPTION 'cannot rebuild the write view %: other objects depend on it', write_q
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = format('Drop %s first, then run the statement again.',
                                        @extschema@._dependents(ARRAY[to_regclass(write_q)]));
            END IF;
            EXECUTE format('DROP VIEW %s', write_q);
        END;
    END IF;
    IF to_regclass(write_q) IS NULL THEN
        EXECUTE format('CREATE VIEW %s AS %s', write_q, write_sql);
        EXECUTE format('ALTER VIEW %s OWNER TO pii_guard_owner', write_q);
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', write_q);
    END IF;
    IF to_regclass(view_q) IS NULL THEN
        EXECUTE format('CREATE VIEW %s AS %s', view_q, view_sql);
        EXECUTE format('ALTER VIEW %s OWNER TO pii_guard_owner', view_q);
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', view_q);
        EXECUTE format('COMMENT ON VIEW %s IS %L', view_q,
                       format('pii_guard masking view of %s: columns are shown clear, masked or NULL according to the current role', base_q));
    END IF;
    UPDATE @extschema@.protected_tables t SET names_masks = true WHERE t.base = p.base AND NOT t.names_masks;
    -- The trigger's arguments: the columns it never writes.
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = to_regclass(view_q)
                  AND t.tgname = 'pii_guard_write') THEN
        EXECUTE format('DROP TRIGGER pii_guard_write ON %s', view_q);
    END IF;
    EXECUTE format('CREATE TRIGGER pii_guard_write INSTEAD OF INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION @extschema@.masking_view_write(%s)', view_q,
                   (SELECT string_agg(quote_literal(x), ', ') FROM unnest(skip) x));

    -- Column defaults (serial, identity BY DEFAULT, now(), ...) apply to
    -- inserts through the view, and only those.
    FOR a IN
        SELECT att.attname,
               CASE WHEN att.attidentity = 'd'
                    THEN format('pg_catalog.nextval(%L::regclass)', pg_get_serial_sequence(base_q, att.attname))
                    WHEN att.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS expr,
               v.atthasdef AS view_has_default
          FROM pg_attribute att
          LEFT JOIN pg_attrdef d ON d.adrelid = att.attrelid AND d.adnum = att.attnum
          JOIN pg_attribute v ON v.attrelid = to_regclass(view_q) AND v.attname = att.attname
         WHERE att.attrelid = p.base AND att.attnum > 0 AND NOT att.attisdropped
    LOOP
        IF a.expr IS NOT NULL THEN
            EXECUTE format('ALTER VIEW %s ALTER COLUMN %I SET DEFAULT %s', view_q, a.attname, a.expr);
        ELSIF a.view_has_default THEN
            EXECUTE format('ALTER VIEW %s ALTER COLUMN %I DROP DEFAULT', view_q, a.attname);
        END IF;
    END LOOP;

    -- The grants the masking view had (kept in saved_grants, also when it
    -- was dropped by something else, such as DROP FUNCTION ... CASCADE of a
    -- mask), or the table had when protected.
    FOREACH g IN ARRAY coalesce(p.saved_grants, '{}') LOOP
        BEGIN
            EXECUTE g;
        EXCEPTION WHEN undefined_column OR undefined_object THEN
            NULL;   -- a column-level grant on a dropped column, a dropped role
        END;
    END LOOP;
    -- The table's owner is exempt from masking and reads and writes through
    -- the view like through the table.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', view_q,
                   (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = p.base));
    PERFORM @extschema@._sync_write_grants(p.base);
    PERFORM @extschema@._maintenance(false);
END
$$;

-- USAGE on sequences that pii_guard gave INSERT grantees of a masking view
-- (nextval() in a column default checks the inserting role), so that it is
-- taken back when no longer needed, and at unprotect_table.
CREATE TABLE @extschema@.sequence_grants (
    base     regclass NOT NULL REFERENCES @extschema@.protected_tables ON DELETE CASCADE,
    seq      regclass NOT NULL,
    grantee  regrole NOT NULL,      -- '-' (0): PUBLIC
    PRIMARY KEY (base, seq, grantee)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sequence_grants', '');
REVOKE ALL ON @extschema@.sequence_grants FROM PUBLIC;
GRANT SELECT ON @extschema@.sequence_grants TO pii_guard_admin, pii_guard_auditor;

-- The (sequence, role) pairs that need USAGE: every sequence behind a
-- column of a protected table, for every role that may insert into its
-- masking view.
CREATE FUNCTION @extschema@._sequence_usage_wanted(base oid)
RETURNS TABLE (seq regclass, grantee oid)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._sequence_usage_wanted(oid) FROM PUBLIC;

-- Mirror the masking view's write privileges onto the write view (plus
-- SELECT on the row key, which UPDATE and DELETE need to find the row), and
-- give INSERT grantees USAGE on the sequences behind the defaults.  Keeps a
-- copy of the masking view's grants in saved_grants, so that the view can
-- be rebuilt with them whoever dropped it.
CREATE OR REPLACE FUNCTION @extschema@._sync_write_grants(base oid)
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
    UPDATE @extschema@.protected_tables t SET saved_grants = @extschema@._grants_of(to_regclass(view_q), view_q)
     WHERE t.base = p.base;
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
                NULL;   -- a column a write view built by 0.1 lacks (generated)
            END;
        END IF;
    END LOOP;
    FOR r IN
        SELECT DISTINCT a.grantee, a.privilege_type = 'INSERT' AS inserts
          FROM (SELECT c.relacl AS acl FROM pg_class c WHERE c.oid = to_regclass(view_q)
                UNION ALL
                SELECT att.attacl FROM pg_attribute att
                 WHERE att.attrelid = to_regclass(view_q) AND att.attnum > 0) s,
               aclexplode(s.acl) a
         WHERE a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE')
    LOOP
        EXECUTE format('GRANT SELECT (%I) ON %s TO %s', p.row_key, write_q,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
        -- An insert through the masking view writes the columns it names
        -- and, with the value of the view's default, those it does not name
        -- that have one (so that a sequence is drawn from once): whoever
        -- may insert at all may do that, as on a table.
        IF r.inserts AND EXISTS (SELECT 1 FROM pg_attribute att
                                  WHERE att.attrelid = to_regclass(view_q) AND att.atthasdef) THEN
            EXECUTE format('GRANT INSERT (%s) ON %s TO %s',
                           (SELECT string_agg(quote_ident(att.attname), ', ' ORDER BY att.attnum)
                              FROM pg_attribute att
                             WHERE att.attrelid = to_regclass(view_q) AND att.atthasdef),
                           write_q,
                           CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
        END IF;
    END LOOP;
    -- USAGE on the sequences behind the defaults for every INSERT grantee:
    -- given (and recorded) where the role did not hold it, taken back where
    -- pii_guard gave it and the role no longer inserts.
    FOR r IN
        SELECT w.seq, w.grantee FROM @extschema@._sequence_usage_wanted(p.base) w
         WHERE NOT EXISTS (SELECT 1 FROM @extschema@.sequence_grants g
                            WHERE g.base = p.base AND g.seq = w.seq AND g.grantee::oid = w.grantee)
           AND NOT EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a
                            WHERE c.oid = w.seq AND a.grantee = w.grantee AND a.privilege_type = 'USAGE')
    LOOP
        EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %s', r.seq,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
        INSERT INTO @extschema@.sequence_grants (base, seq, grantee) VALUES (p.base, r.seq, r.grantee::regrole);
    END LOOP;
    FOR r IN
        DELETE FROM @extschema@.sequence_grants g
         WHERE g.base = p.base
           AND NOT EXISTS (SELECT 1 FROM @extschema@._sequence_usage_wanted(p.base) w
                            WHERE w.seq = g.seq AND w.grantee = g.grantee::oid)
        RETURNING g.seq, g.grantee::oid AS grantee
    LOOP
        IF r.grantee = 0 OR EXISTS (SELECT 1 FROM pg_roles WHERE oid = r.grantee) THEN
            EXECUTE format('REVOKE USAGE ON SEQUENCE %s FROM %s', r.seq,
                           CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
        END IF;
    END LOOP;
END
$$;

-- Protect one column: its level and (optionally) its mask function, with
-- constant extra arguments.  Protects the table first if needed.  The mask
-- function must be one that cannot pass on the plaintext it is given
-- (_mask_problem).
CREATE OR REPLACE FUNCTION @extschema@.protect_column(tbl regclass, col name, level @extschema@.level,
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
CREATE OR REPLACE FUNCTION @extschema@.unprotect_column(tbl regclass, col name)
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
    PERFORM @extschema@._attach_views(b, NULL, NULL);
END
$$;

-- Rebuild every masking view (after restoring policy, or to repair).
CREATE OR REPLACE FUNCTION @extschema@.refresh_views()
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
        PERFORM @extschema@._attach_views(b, NULL, NULL);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Keep the policy tidy when objects are dropped: a protected table's rules
-- go with it; a mask function dropped with CASCADE (which drops the
-- masking views built with it) leaves its columns without a mask -- hidden
-- for the roles that saw them masked -- and the views are rebuilt.
CREATE OR REPLACE FUNCTION @extschema@._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    DELETE FROM @extschema@.protected_tables p
     WHERE p.base::oid IN (SELECT objid FROM pg_event_trigger_dropped_objects()
                            WHERE classid = 'pg_class'::regclass AND objsubid = 0);
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() WHERE classid = 'pg_proc'::regclass) THEN
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

-- Put a protected table back as it was: its schema, name and grants (and
-- the sequence privileges pii_guard gave).  Refused, with the dependent
-- objects named, while views depend on its
-- masking view (they would go with it).
CREATE OR REPLACE FUNCTION @extschema@.unprotect_table(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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

--------------------------------------------------------------------------
-- Policy and masking views: approvals are time-boxed
--------------------------------------------------------------------------

-- Grants are issued by pii_guard_approver members, for someone else, for
-- at most pii_guard.max_grant_duration (a superuser's setting, 7 days by
-- default); once issued, only their revocation can change.  (Whether a
-- grant counts at all is decided again at use: policy.c ignores one whose
-- approver is the reader or could act as the reader.)
CREATE OR REPLACE FUNCTION @extschema@.grants_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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

--------------------------------------------------------------------------
-- Export-row limits: what export approvals have used, kept with the policy
--------------------------------------------------------------------------

-- Rows each export approval has carried, copied from shared memory by the
-- audit worker (about every 0.2 s), so that a dump, a restore into another
-- database and a replica carry it: a used-up approval stays used up.
-- Keyed by grant id and the grant's created_at, since grant ids start
-- again after DROP and CREATE EXTENSION.  Written by pii_guard only.
CREATE TABLE @extschema@.export_grant_use (
    grant_id    bigint PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    used        bigint NOT NULL CHECK (used >= 0)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.export_grant_use', '');
REVOKE ALL ON @extschema@.export_grant_use FROM PUBLIC;
GRANT SELECT ON @extschema@.export_grant_use TO pii_guard_admin, pii_guard_approver, pii_guard_auditor;

-- 0.1 said that approved rows count toward the day and are used before the
-- profile's own allowance; they are now only the rows beyond it.
COMMENT ON FUNCTION @extschema@.approve_export(regrole, bigint, timestamptz, text) IS
    'time-boxed export approval: up to rows protected rows beyond the role''s export limits, until valid_until; they do not count toward the day';

--------------------------------------------------------------------------
-- Restoring grants
--------------------------------------------------------------------------

-- A grant a superuser inserts with a creation time before its transaction
-- began is a restored one (pg_restore): its issue is already in the
-- restored audit trail, and an event written now could take an event id
-- the restore is about to bring back.  Every other insert is an issue.
CREATE OR REPLACE FUNCTION @extschema@.grants_audit()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.created_at < transaction_timestamp()
           AND (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user) THEN
            RETURN NULL;
        END IF;
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

--------------------------------------------------------------------------
-- Audit hardening
--------------------------------------------------------------------------

-- The audit trigger functions are pii_guard's own.  EXECUTE is what lets a
-- role attach a trigger function to a table of its own: grants_audit() is
-- SECURITY DEFINER, and on a look-alike table it wrote forged 'approve'
-- admin events as the extension owner; audit_write() wrote write events
-- for any table its caller chose.  The triggers pii_guard creates are
-- created by its SECURITY DEFINER functions, and a trigger needs no
-- EXECUTE to fire.
REVOKE ALL ON FUNCTION @extschema@.audit_log_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.audit_write() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.grants_audit() FROM PUBLIC;

-- audit_table() refuses pii_guard's own tables (those in its schema or
-- belonging to the extension): audit_log and audit_seal are append-only
-- and tamper-evident by their own triggers, and write audit on audit_log
-- would write audit rows about audit rows.  Otherwise as in 0.1.
CREATE OR REPLACE FUNCTION @extschema@.audit_table(tbl regclass, row_key name DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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

--------------------------------------------------------------------------
-- Trigger functions are not for calling: nobody gets EXECUTE on them.
-- PostgreSQL checks EXECUTE on a trigger function when CREATE TRIGGER
-- names it, not when the trigger fires, and pii_guard creates its
-- triggers as the extension owner; so the triggers keep firing for every
-- role, while no role can attach pii_guard's trigger functions (write
-- audit, the grants and policy guards, the masking views' write trigger)
-- to tables of its own.
--------------------------------------------------------------------------
DO $privs$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = '@extschema@'::regnamespace
                AND p.prorettype IN ('pg_catalog.trigger'::regtype, 'pg_catalog.event_trigger'::regtype)
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$privs$;

-- The audit worker's periodic queries are bounded so that their cost does
-- not grow with audit_log: whether a grant's expiry is recorded is one
-- probe of this partial index (only grant_expired events are in it), and
-- the grants that ended since its last look are found by valid_until.
CREATE INDEX audit_log_grant_expired ON @extschema@.audit_log
    (pg_catalog.split_part(detail, ':', 1))
    WHERE kind = 'admin' AND operation = 'grant_expired';
CREATE INDEX grants_valid_until ON @extschema@.grants (valid_until);
