/* pii_guard--0.2--0.3.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pii_guard UPDATE TO '0.3'" to load this file. \quit

-- 0.2 is released and its scripts are never edited: everything 0.3
-- changes is here, and CREATE EXTENSION of 0.3 runs the 0.1 script, the
-- 0.1--0.2 script and then this one.  Each change says why.

--------------------------------------------------------------------------
-- The update takes its locks first, all at once
--------------------------------------------------------------------------

-- The update changes tables and views the audit worker and every session
-- use (the audit log, the grants, the profiles, ...).  Taken one by one as
-- the script goes, it could hold one while waiting for a transaction that
-- holds another and waits for the first -- the worker's cycle reads the
-- grants, then writes the log -- and the deadlock detector cancelled the
-- update.  So it locks every table and view of the extension here, in one
-- LOCK that waits its turn in the queue but at most 100 ms, well under
-- deadlock_timeout, and gives back what it got when it times out (the
-- subtransaction) before trying again: the update never waits long enough
-- to be the deadlock detector's victim.  (Updating from 0.1, the 0.1 -> 0.2
-- script has already taken some of them, which an attempt cannot give back;
-- a transaction waiting for those while holding one the update wants then
-- waits the longest, and the detector cancels it.)  For at most a minute.
DO $lock$
DECLARE
    tables   text;
    previous text := pg_catalog.current_setting('lock_timeout');
    started  timestamptz := pg_catalog.clock_timestamp();
BEGIN
    SELECT pg_catalog.string_agg(c.oid::pg_catalog.regclass::text, ', ' ORDER BY c.oid) INTO tables
      FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.objid
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'e'
       AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'pii_guard')
       AND c.relkind IN ('r', 'p', 'v');
    LOOP
        BEGIN
            PERFORM pg_catalog.set_config('lock_timeout', '100ms', true);
            EXECUTE 'LOCK TABLE ' || tables || ' IN ACCESS EXCLUSIVE MODE';
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            IF pg_catalog.clock_timestamp() - started > interval '1 minute' THEN
                RAISE EXCEPTION 'pii_guard''s tables stayed in use for a minute: the update cannot lock them'
                    USING ERRCODE = 'lock_not_available',
                          HINT = 'Update when no long transaction uses pii_guard''s tables (pg_stat_activity, pg_locks), or stop the applications for the update.';
            END IF;
        END;
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', previous, true);
END
$lock$;

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
-- Is this node a Citus worker?  pii_guard's event triggers leave alone,
-- there, the coordinator's DDL that Citus passes on to the workers: the
-- masking views and the policy are the coordinator's (src/citus.c).
CREATE FUNCTION @extschema@._citus_worker() RETURNS boolean
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'pii_guard_citus_worker';

REVOKE ALL ON FUNCTION @extschema@._citus_worker() FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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

--------------------------------------------------------------------------
-- Export limits count what leaves the statement
--------------------------------------------------------------------------

-- A row counts against a role's export limits when it delivers protected
-- values somewhere outside the protected table (the library finds those
-- places in the plan: exports.c), not when the executor merely evaluates
-- them -- a lookup's filter, an UPDATE of one's own rows, rows an OFFSET
-- skips used to count.  Where values go into an aggregate or a function
-- that could pass them on, the plan wraps them in one of these: they count
-- the row (once per row and statement when its table and key are known)
-- and return the value unchanged.  Counting only ever refuses (54P01);
-- calling them does nothing but count against the caller's own limits.
CREATE FUNCTION @extschema@._exported(value anyelement)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'pii_guard_exported'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION @extschema@._exported(value anyelement, base regclass, row_key "any")
RETURNS anyelement
AS 'MODULE_PATHNAME', 'pii_guard_exported_row'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION @extschema@._exported(anyelement) IS
    'internal: counts a protected value leaving into an aggregate or a function';
COMMENT ON FUNCTION @extschema@._exported(anyelement, regclass, "any") IS
    'internal: counts a protected row leaving into an aggregate or a function';

--------------------------------------------------------------------------
-- Partitioned tables can be protected
--------------------------------------------------------------------------

-- protect_table() accepts a partitioned table (its row key is a unique
-- column, which PostgreSQL lets a partitioned table have when it is the
-- partition key), refuses a partition on its own (protect the table it
-- belongs to), and takes the privileges off every partition as well as
-- off the table.  The library treats the partitions (and any partition or
-- inheritance child attached later) as the protected table: the
-- fail-closed check refuses governed roles each of them, and reveal()'s
-- proof follows the masking view's scan into them.

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
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel
$$;

CREATE FUNCTION @extschema@._rolname(r regrole) RETURNS name
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.rolname FROM pg_roles a WHERE a.oid = r
$$;

-- ... and the same, evaluated where the statement is (STABLE: Citus
-- evaluates it on the coordinator and sends the name), for the values a
-- row is compared with.
CREATE FUNCTION @extschema@._relname_here(rel regclass) RETURNS text
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@._relname(rel)
$$;

CREATE FUNCTION @extschema@._rolname_here(r regrole) RETURNS name
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@._rolname(r)
$$;

-- Is tbl a Citus table (distributed, reference or local)?
CREATE FUNCTION @extschema@._citus_table(tbl regclass) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
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

REVOKE ALL ON FUNCTION @extschema@._citus_table(tbl regclass) FROM PUBLIC;

-- A table and all its partitions and inheritance children, at any depth.
CREATE FUNCTION @extschema@._descendants(tbl regclass)
RETURNS TABLE (rel regclass)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE d(rel) AS (
        SELECT tbl::oid
        UNION
        SELECT i.inhrelid FROM pg_inherits i JOIN d ON i.inhparent = d.rel
    )
    SELECT rel::regclass FROM d
$$;
REVOKE ALL ON FUNCTION @extschema@._descendants(regclass) FROM PUBLIC;
-- protect_table() in steps (they run with its rights; no one else may call
-- them).  First: tbl may be protected (an ordinary or partitioned table,
-- not a partition or child, not in a system schema), and its row key (the
-- one named, else its one-column primary key) is a NOT NULL column with a
-- unique index of its own.
CREATE FUNCTION @extschema@._protectable(tbl regclass, row_key name)
RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._companion_schema(nsp name, relname name)
RETURNS name
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._seclude(tbl regclass, comp name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._protectable(regclass, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._companion_schema(name, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._seclude(regclass, name) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.protect_table(tbl regclass, row_key name DEFAULT NULL)
RETURNS regclass
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET "citus.multi_shard_modify_mode" = sequential
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

--------------------------------------------------------------------------
-- Backups by the tables' owner: pg_dump without superuser
--------------------------------------------------------------------------

-- pg_dump dumps the data of every table and sequence an extension
-- registered with pg_extension_config_dump whenever it dumps the
-- extension, whoever runs it, and stops at the first it may not read.
-- The owner of the protected tables (not a superuser) got
-- "permission denied for sequence audit_log_event_id_seq", and after that
-- would have got the same for grants_grant_id_seq, data_keys and
-- audit_log.  A sequence's data is read with SELECT last_value, is_called
-- FROM the sequence, which needs SELECT on it: USAGE (nextval) is not
-- enough.  Nothing an extension does can make pg_dump skip a table it
-- cannot read: the COPY of a configuration table needs SELECT on all of
-- its columns, a filter condition runs inside that same COPY, and under
-- row-level security pg_dump fails (it sets row_security = off).  So what
-- a role may not read is left out with pg_dump's --exclude-table-data,
-- and README.md ("Recipe: backups by the tables' owner") says which
-- patterns each kind of role gives:
--   * the data keys stay readable by the extension owner (superuser) only,
--     and the audit trail by pii_guard_auditor only: neither is widened
--     for backups.  An owner's dump leaves them out; a superuser supplies
--     the keys at restore (pg_dump -a -t pii_guard.data_keys), and the
--     audit trail is kept by superusers' and auditors' dumps;
--   * the sequences behind the policy and the audit trail become readable
--     by exactly the roles that read their tables, so that whoever may
--     dump a table may dump its sequence with it -- and must: restored
--     grants without their sequence would make the next approve() collide
--     with a restored grant id.  SELECT on a sequence shows its last
--     value (the last grant id or event id handed out, which max() over
--     the table shows those roles anyway, but for rolled-back ones) and
--     gives neither nextval() nor setval().  Not to PUBLIC: the audit
--     sequence counts the events written -- how much is being read and
--     refused -- which only auditors are to see.
-- (Privileges given in an extension script are recorded in pg_init_privs:
-- a dump holds no GRANT for them, and a restore re-creates them with
-- CREATE EXTENSION.)
GRANT SELECT ON SEQUENCE @extschema@.grants_grant_id_seq
   TO pii_guard_admin, pii_guard_approver, pii_guard_auditor;
GRANT SELECT ON SEQUENCE @extschema@.audit_log_event_id_seq TO pii_guard_auditor;

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
CREATE FUNCTION @extschema@.policy_script(tbl regclass)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
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
COMMENT ON FUNCTION @extschema@.policy_script(regclass) IS
    'the pii_guard policy of one protected table as SQL, to restore it with a pg_dump -t dump of the table';
REVOKE ALL ON FUNCTION @extschema@.policy_script(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.policy_script(regclass) TO pii_guard_admin;

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

--------------------------------------------------------------------------
-- Writes through a masking view, rewritten onto the base table
--------------------------------------------------------------------------

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

-- The envelope of a value written to an encrypted column.
CREATE FUNCTION @extschema@._write_seal(value text, base regclass, col name)
RETURNS @extschema@.encrypted_text
AS 'MODULE_PATHNAME', 'pii_guard_write_seal'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@._write_seal(value bytea, base regclass, col name)
RETURNS @extschema@.encrypted_bytea
AS 'MODULE_PATHNAME', 'pii_guard_write_seal'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- What an UPDATE stores in a column: the stored value when the new one is
-- what the role was shown for the row (masks are never written back, and
-- a value sent back unchanged needs no privilege on its column), else the
-- new value (sealed for an encrypted column), if the role may update the
-- column (a governed role never changes a row key).
CREATE FUNCTION @extschema@._write_set(stored anyelement, base regclass, col name,
                                       row_key "any", value "any")
RETURNS anyelement
AS 'MODULE_PATHNAME', 'pii_guard_write_set'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@._write_seal(text, regclass, name) IS
    'internal: seals a value written through a masking view';
COMMENT ON FUNCTION @extschema@._write_seal(bytea, regclass, name) IS
    'internal: seals a value written through a masking view';
COMMENT ON FUNCTION @extschema@._write_set(anyelement, regclass, name, "any", "any") IS
    'internal: the value an UPDATE through a masking view stores';

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
CREATE FUNCTION @extschema@._write_conflict(base regclass, pass boolean)
RETURNS boolean
AS 'MODULE_PATHNAME', 'pii_guard_write_conflict'
LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@._write_conflict(regclass, boolean) IS
    'internal: counts a conflict of an INSERT ... ON CONFLICT through a masking view as a probe';

-- Identical deny events close together (same role, application, object,
-- operation, query and reason) are one row, its detail ending "; N times":
-- a loop of refused statements does not flood the log.  attempts is N (1
-- for a row that stands for one refusal).
CREATE OR REPLACE VIEW @extschema@.audit_denials AS
SELECT event_id, event_time, session_role, acting_role, client_addr, application_name,
       relation, operation, rows, detail,
       coalesce(pg_catalog.substring(detail, '; ([0-9]+) times$')::bigint, 1) AS attempts
  FROM @extschema@.audit_log WHERE kind = 'deny';

-- The chain checked against an anchor kept outside the database: the head
-- (SEQ:HASH) that the audit worker logs after each sealing ("pii_guard
-- audit anchor: ...") and gives to pii_guard.audit_anchor_command.  A
-- chain that verifies by itself may still have lost its newest rows and
-- their seals, or been reset; kept against an anchor taken earlier, it
-- must still hold that seal with that hash (or, when that seal has been
-- archived -- see Retention below -- the archive that holds it must).
CREATE FUNCTION @extschema@.verify_audit(anchor text)
RETURNS TABLE (event_id bigint, seal_seq bigint, problem text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@.verify_audit(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.verify_audit(text) TO pii_guard_auditor;
COMMENT ON FUNCTION @extschema@.verify_audit(text) IS
    'verify_audit(), and the chain against an anchor kept outside the database (SEQ:HASH)';

-- Alerts.  A compliance officer sets, per profile, thresholds whose
-- crossing is an alert: refusals per minute, protected rows read or
-- exported per hour, reading outside working hours, a role reading again
-- after a dormant period.  The audit worker looks at each batch of events
-- it writes (_alerts_due) and records an alert event (kind 'alert', the
-- rule in operation), sends NOTIFY pii_guard_alert with its event id, and
-- runs pii_guard.alert_command if set.  An alert of a rule is raised at
-- most once per role per window (a minute, an hour, a day).
ALTER TABLE @extschema@.profiles
    ADD COLUMN alert_denials_per_minute integer CHECK (alert_denials_per_minute > 0),
    ADD COLUMN alert_rows_per_hour bigint CHECK (alert_rows_per_hour > 0),
    ADD COLUMN alert_work_from time,
    ADD COLUMN alert_work_to time,
    ADD COLUMN alert_dormant_after interval CHECK (alert_dormant_after > interval '0');

CREATE FUNCTION @extschema@.set_alerts(role regrole,
                                       denials_per_minute integer DEFAULT NULL,
                                       rows_per_hour bigint DEFAULT NULL,
                                       work_from time DEFAULT NULL,
                                       work_to time DEFAULT NULL,
                                       dormant_after interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@.set_alerts(regrole, integer, bigint, time, time, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.set_alerts(regrole, integer, bigint, time, time, interval) TO pii_guard_admin;

-- The alerts due for the events first_id .. last_id just written: one row
-- per (role, rule) crossed, unless the same alert was raised in its window.
CREATE FUNCTION @extschema@._alerts_due(first_id bigint, last_id bigint)
RETURNS TABLE (session_role text, acting_role text, rule text, detail text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._alerts_due(bigint, bigint) FROM PUBLIC;

CREATE VIEW @extschema@.alerts AS
SELECT event_id, event_time, session_role, acting_role, operation AS rule, detail
  FROM @extschema@.audit_log WHERE kind = 'alert';
REVOKE ALL ON @extschema@.alerts FROM PUBLIC;
GRANT SELECT ON @extschema@.alerts TO pii_guard_auditor;

-- Retention.  pii_guard.audit_retention (e.g. '3 years') says how long
-- events stay in audit_log; the audit worker's archive step (hourly, or
-- archive_audit() now) moves the sealed events older than that -- a prefix
-- of the chain, checked on the way out -- to a JSON-lines file in
-- pii_guard.audit_archive_directory, then deletes them.  Each archive is
-- recorded here: which seals it holds, the chain hash it continues from
-- and ends with, and the file's SHA-256.  Like audit_seal, not dumped (a
-- restored database starts a chain of its own); append-only.
CREATE TABLE @extschema@.audit_archives (
    file             text PRIMARY KEY,
    first_seal       bigint NOT NULL UNIQUE,
    last_seal        bigint NOT NULL,
    first_event      bigint NOT NULL,
    last_event       bigint NOT NULL,
    events           bigint NOT NULL,
    prev_chain_hash  bytea,
    last_chain_hash  bytea NOT NULL,
    sha256           bytea NOT NULL,
    older_than       timestamptz NOT NULL,
    archived_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE @extschema@.audit_archives IS
    'pii_guard audit archives: sealed events moved out of audit_log to JSON-lines files, by seal range';
CREATE TRIGGER audit_archives_guard BEFORE INSERT OR UPDATE OR DELETE ON @extschema@.audit_archives
    FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_log_guard();
CREATE TRIGGER audit_archives_no_truncate BEFORE TRUNCATE ON @extschema@.audit_archives
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.audit_log_guard();
REVOKE ALL ON @extschema@.audit_archives FROM PUBLIC;
GRANT SELECT ON @extschema@.audit_archives TO pii_guard_auditor;

-- The archive step now: events older than older_than (default: the
-- pii_guard.audit_retention setting), at most max_events into one file.
-- Superusers only (the audit worker runs it by itself).
CREATE FUNCTION @extschema@.archive_audit(older_than interval DEFAULT NULL,
                                          max_events integer DEFAULT 100000,
                                          OUT file text, OUT first_seal bigint,
                                          OUT last_seal bigint, OUT events bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'pii_guard_archive_audit'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.archive_audit(interval, integer) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.archive_audit(interval, integer) IS
    'moves sealed audit events older than older_than (default pii_guard.audit_retention) to an archive file';

-- verify_audit() over archives and table: the archives link up from seal
-- 1, each continuing the chain of the one before, and the table's chain
-- continues from the last archive.  (The files themselves:
-- verify_audit_archive().)
CREATE OR REPLACE FUNCTION @extschema@.verify_audit()
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

-- One archive file checked (verify_audit_archive() below says what is
-- checked); anchor_seq, anchor_hash: the anchor's, or NULL.
CREATE FUNCTION @extschema@._verify_archive_file(r @extschema@.audit_archives, anchor_seq bigint, anchor_hash bytea)
RETURNS TABLE (file text, event_id bigint, seal_seq bigint, problem text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._verify_archive_file(@extschema@.audit_archives, bigint, bytea) FROM PUBLIC;


-- An archive file (or every archive, in seal order) checked line by line:
-- its header, each event against its row MAC and its chain link, no seal
-- missing, the trailer (a file without one was cut), the file against the
-- SHA-256 recorded when it was written; with an anchor (SEQ:HASH) whose
-- seal the archive holds, that seal's hash against the anchor.  No rows:
-- the archives verify.  Reads the files as the extension owner, by the
-- names pii_guard.audit_archives records only.
CREATE FUNCTION @extschema@.verify_audit_archive(archive text DEFAULT NULL, anchor text DEFAULT NULL)
RETURNS TABLE (file text, event_id bigint, seal_seq bigint, problem text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@.verify_audit_archive(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.verify_audit_archive(text, text) TO pii_guard_auditor;
COMMENT ON FUNCTION @extschema@.verify_audit_archive(text, text) IS
    'checks audit archive files (all, or one) line by line, against their records and optionally an anchor';


-- The cost of an event's row.  event_time grows with the log's physical
-- order, so a BRIN index finds a time range as well as a B-tree did, at a
-- fraction of the cost per event (a B-tree insert into the rightmost leaf
-- that every writing session shares, against nothing at all until the
-- range is summarized by VACUUM).  And no statistics are gathered on the
-- columns no query plans by (MACs, row key lists, free text), which made
-- every autovacuum ANALYZE of a busy log sort thousands of arrays.
DROP INDEX @extschema@.audit_log_time;
CREATE INDEX audit_log_time ON @extschema@.audit_log USING brin (event_time);
ALTER TABLE @extschema@.audit_log
    ALTER COLUMN row_mac SET STATISTICS 0,
    ALTER COLUMN row_keys SET STATISTICS 0,
    ALTER COLUMN row_keys_masked SET STATISTICS 0,
    ALTER COLUMN detail SET STATISTICS 0;

-- Detectors: the kind of personal data a text value looks like, by its
-- content (cn_id with its check digit and birth date, mobile, bank_card
-- with a network prefix and the Luhn digit, email, landline, passport,
-- ipv4, plate, cn_name, address), or NULL.  Raises no error for any input.
CREATE FUNCTION @extschema@.detect_kind(value text)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_detect_kind'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.detect_kind(text) IS
    'the kind of personal data a value looks like by its content (cn_id, mobile, bank_card, email, landline, passport, ipv4, plate, cn_name, address), or NULL';

-- Discovery: per column not yet protected, of a table or of every table of
-- a schema (with the base tables of its protected ones), what kind of
-- personal data it holds -- by content (detect_kind over a sample: the
-- whole table up to sample_rows rows, a TABLESAMPLE of larger ones) and by
-- its name (English, pinyin and Chinese names) -- the share of sampled
-- values that match, a suggested level and mask, and the protect_column
-- call to run.  Reads the tables with the caller's privileges; returns no
-- value of them; an admin event records each run.
CREATE FUNCTION @extschema@._name_kind(col name)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
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

CREATE FUNCTION @extschema@._kind_policy(kind text, OUT level @extschema@.level, OUT mask text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
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

-- What the last discovery found in each table's unprotected columns
-- (pii_guard.inventory shows it); each run of discover() replaces the rows
-- of the tables it read.
CREATE TABLE @extschema@.discovered_columns (
    relation       regclass NOT NULL,
    column_name    name NOT NULL,
    kind           text NOT NULL,
    matched_by     text NOT NULL,
    share          numeric NOT NULL,
    sampled        bigint NOT NULL,
    discovered_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (relation, column_name)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.discovered_columns', '');
REVOKE ALL ON @extschema@.discovered_columns FROM PUBLIC;
GRANT SELECT ON @extschema@.discovered_columns TO pii_guard_admin, pii_guard_auditor;

-- Columns added to protected tables under pii_guard.protect_new_columns
-- (see _protect_new_column below).
CREATE TABLE @extschema@.new_columns (
    base           regclass NOT NULL,
    column_name    name NOT NULL,
    added_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    added_by       name NOT NULL DEFAULT session_user,
    decision       text NOT NULL,
    kind           text,
    classified_at  timestamptz,
    classified_by  name,
    PRIMARY KEY (base, column_name)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.new_columns', '');
REVOKE ALL ON @extschema@.new_columns FROM PUBLIC;
GRANT SELECT ON @extschema@.new_columns TO pii_guard_admin, pii_guard_auditor;

CREATE FUNCTION @extschema@._record_discovery(rel regclass, found jsonb)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM @extschema@.discovered_columns WHERE relation = rel;
    INSERT INTO @extschema@.discovered_columns (relation, column_name, kind, matched_by, share, sampled)
    SELECT rel, e->>'column', e->>'kind', e->>'matched_by', (e->>'share')::numeric, (e->>'sampled')::bigint
      FROM jsonb_array_elements(found) e;
$$;
REVOKE ALL ON FUNCTION @extschema@._record_discovery(regclass, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._record_discovery(regclass, jsonb) TO pii_guard_admin;

-- (discover() reads with its caller's privileges; its admin event is
-- written by this definer-rights helper, which records nothing else.)
CREATE FUNCTION @extschema@._audit_discover(target text, tables integer, sample_rows integer)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NULL::void FROM @extschema@._audit_admin('discover',
        format('discovery over %s (%s tables, up to %s rows each)', target, tables, sample_rows))
$$;
REVOKE ALL ON FUNCTION @extschema@._audit_discover(text, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._audit_discover(text, integer, integer) TO pii_guard_admin;

-- discover() in steps (run with its caller's rights, as discover() is;
-- executable by those who may run discover()).

-- The tables discovery looks at: those of a schema (and the base tables of
-- the masking views in it), or one table (a masking view stands for its
-- base table).  NULL: none.
CREATE FUNCTION @extschema@._discover_tables(target text)
RETURNS regclass[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._discover_sample(rel regclass, names name[], types text[], sample_rows integer,
                                             OUT nn bigint[], OUT kinds jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._discover_table(rel regclass, sample_rows integer)
RETURNS TABLE (relation regclass, column_name name, data_type text, kind text, matched_by text,
               share numeric, sampled bigint, suggested_level @extschema@.level,
               suggested_mask text, protect_call text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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

CREATE FUNCTION @extschema@.discover(target text, sample_rows integer DEFAULT 10000)
RETURNS TABLE (relation regclass, column_name name, data_type text, kind text, matched_by text,
               share numeric, sampled bigint, suggested_level @extschema@.level,
               suggested_mask text, protect_call text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._discover_tables(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._discover_sample(regclass, name[], text[], integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._discover_table(regclass, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._discover_tables(text), @extschema@._discover_table(regclass, integer),
    @extschema@._discover_sample(regclass, name[], text[], integer) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@.discover(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.discover(text, integer) TO pii_guard_admin;
REVOKE ALL ON FUNCTION @extschema@._name_kind(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._kind_policy(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._name_kind(name), @extschema@._kind_policy(text) TO pii_guard_admin;
COMMENT ON FUNCTION @extschema@.discover(text, integer) IS
    'personal data found in the unprotected columns of a table or schema, by content and by name, with the protect_column call to run';

-- Masked copies for development, test and analytics: anonymize_into()
-- copies the tables of the application's schemas into a new schema in
-- which every protected column holds a format-preserving pseudonym (phone,
-- resident ID, bank card, e-mail, Chinese name: _fake, src/fake.c) or its
-- mask (the others; hidden columns: NULL) -- no ciphertext, no key, and,
-- checked before it returns, no real value of a protected column anywhere.
CREATE FUNCTION @extschema@._fake(kind text, value text, secret bytea, attempt integer)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_fake'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION @extschema@._fake(text, text, bytea, integer) FROM PUBLIC;

-- The kind of personal data a protected column holds: by its mask (the
-- masks of one kind), else by what discovery found in it, else by its name.
CREATE FUNCTION @extschema@._column_kind(base regclass, col name, fn text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._column_kind(regclass, name, text) FROM PUBLIC;

-- A definer function told by its invoker-rights wrapper whom it acts for
-- checks that the session may be that role (called directly, it could be
-- told anyone).
CREATE FUNCTION @extschema@._acting_as(caller regrole, what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF caller IS NULL OR NOT pg_has_role(session_user, caller, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to % as role %', what, caller
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION @extschema@._acting_as(regrole, text) FROM PUBLIC;

-- The type of a column in a masked copy: a domain's base type (its
-- checks would run the functions of whoever made it, as the definer),
-- arrays of domains likewise; composite types are not copied.
CREATE FUNCTION @extschema@._copy_type(typ oid, typmod integer)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._copy_type(oid, integer) FROM PUBLIC;

-- anonymize_into() in steps (_anonymize_into calls them in order; they run
-- with its rights and no one else may call them).

-- The schemas to copy (NULL: every schema a masking view is in), checked:
-- the target is new and not reserved, each source exists and is one
-- applications use.
CREATE FUNCTION @extschema@._anon_sources(target name, sources name[])
RETURNS name[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._anon_inventory(caller regrole, sources name[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._anon_pseudonyms(secret bytea)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._anon_copy_table(caller regrole, target name, src regclass,
                                             OUT rows bigint, OUT pseudonymised name[],
                                             OUT masked name[], OUT hidden name[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._anon_constraints(target name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._anon_leak_check(target name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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

CREATE FUNCTION @extschema@._anonymize_into(caller regrole, target name, sources name[])
RETURNS TABLE (source regclass, copy regclass, rows bigint, pseudonymised name[],
               masked name[], hidden name[])
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET work_mem = '64MB'
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
REVOKE ALL ON FUNCTION @extschema@._anon_sources(name, name[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anon_inventory(regrole, name[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anon_pseudonyms(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anon_copy_table(regrole, name, regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anon_constraints(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anon_leak_check(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anonymize_into(regrole, name, name[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._anonymize_into(regrole, name, name[]) TO pii_guard_admin;

CREATE FUNCTION @extschema@.anonymize_into(target_schema name, source_schemas name[] DEFAULT NULL)
RETURNS TABLE (source regclass, copy regclass, rows bigint, pseudonymised name[],
               masked name[], hidden name[])
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM @extschema@._anonymize_into(current_user::regrole, target_schema, source_schemas)
$$;
REVOKE ALL ON FUNCTION @extschema@.anonymize_into(name, name[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.anonymize_into(name, name[]) TO pii_guard_admin;
COMMENT ON FUNCTION @extschema@.anonymize_into(name, name[]) IS
    'a masked copy of the application''s tables in a new schema: protected columns pseudonymised (format-preserving, consistent across tables) or masked, checked to hold no real value';

-- column_access() takes its role as regrole, like its siblings
-- (effective_access, set_column_access, approve: a role's name or oid
-- both work, as before), and accepts a masking view's name for its table
-- (before, it answered 'clear' for a view, which is no protected table).
DO $drop$
DECLARE
    dependents text;
BEGIN
    DROP FUNCTION @extschema@.column_access(oid, regclass, name);
EXCEPTION WHEN dependent_objects_still_exist THEN
    GET STACKED DIAGNOSTICS dependents = PG_EXCEPTION_DETAIL;
    RAISE EXCEPTION 'objects outside pii_guard call pii_guard.column_access(oid, regclass, name), whose role argument is a regrole from 0.3 on'
        USING ERRCODE = 'dependent_objects_still_exist',
              DETAIL = dependents,
              HINT = 'Drop them, update, then create them again (a role''s oid still works as the first argument).';
END
$drop$;
CREATE FUNCTION @extschema@.column_access(role regrole, tbl regclass, col name)
RETURNS text
AS 'MODULE_PATHNAME', 'pii_guard_column_access'
LANGUAGE C STRICT STABLE;
REVOKE ALL ON FUNCTION @extschema@.column_access(regrole, regclass, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.column_access(regrole, regclass, name)
   TO pii_guard_admin, pii_guard_approver, pii_guard_auditor;
CREATE OR REPLACE FUNCTION @extschema@.effective_access(role regrole)
RETURNS TABLE (table_name text, column_name name, level @extschema@.level, access text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', p.view_schema, p.view_name), r.column_name, r.level,
           @extschema@.column_access(role, r.base, r.column_name)
      FROM @extschema@.column_rules r
      JOIN @extschema@.protected_tables p ON p.base = r.base
     ORDER BY 1, (SELECT att.attnum FROM pg_attribute att
                   WHERE att.attrelid = r.base AND att.attname = r.column_name)
$$;

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
REVOKE ALL ON @extschema@.inventory FROM PUBLIC;
GRANT SELECT ON @extschema@.inventory TO pii_guard_admin, pii_guard_auditor;
-- (the functions a view calls are called with its reader's privileges)
GRANT EXECUTE ON FUNCTION @extschema@._column_kind(regclass, name, text), @extschema@._name_kind(name),
    @extschema@._kind_policy(text) TO pii_guard_admin, pii_guard_auditor;
COMMENT ON VIEW @extschema@.inventory IS
    'every protected column and every detected but unprotected one: kind, level, mask, who sees it in clear, when it was last read';

-- Policy lint in pieces: check_policy() runs one function per check, in
-- order, over the access table _lint_prepare() builds; a later version
-- changes or adds a check without re-declaring the others.  They run with
-- check_policy()'s rights; no one else may call them.

-- _lint_access: every column of every protected table, with its kind, and
-- each profile's access to it ('none': no SELECT privilege on it).  A
-- table of that name the caller made in its temporary schema is dropped,
-- not used: its triggers would run with the definer's rights.
CREATE FUNCTION @extschema@._lint_prepare()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._lint_rebuild_from_clear()
RETURNS TABLE (severity text, check_name text, object text, problem text, hint text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._lint_no_export_limit()
RETURNS TABLE (severity text, check_name text, object text, problem text, hint text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._lint_long_grant(max_grant interval)
RETURNS TABLE (severity text, check_name text, object text, problem text, hint text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._lint_encrypted_unmasked()
RETURNS TABLE (severity text, check_name text, object text, problem text, hint text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._lint_unclassified()
RETURNS TABLE (severity text, check_name text, object text, problem text, hint text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._lint_companion_privilege()
RETURNS TABLE (severity text, check_name text, object text, problem text, hint text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._lint_masks()
RETURNS TABLE (severity text, check_name text, object text, problem text, hint text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@.check_policy(max_grant interval DEFAULT '1 day')
RETURNS TABLE (severity text, check_name text, object text, problem text, hint text)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._lint_prepare() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_rebuild_from_clear() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_no_export_limit() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_long_grant(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_encrypted_unmasked() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_unclassified() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_companion_privilege() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._lint_masks() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.check_policy(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.check_policy(interval) TO pii_guard_admin, pii_guard_auditor;
COMMENT ON FUNCTION @extschema@.check_policy(interval) IS
    'policy lint: what a reviewer would flag (masks undone by clear columns, profiles without export limits, long or broad approvals, encrypted columns without a view, privileges on companion schemas, masks that keep length)';

-- Protection by default (pii_guard.protect_new_columns): a column added to
-- a protected table is classified in the statement that adds it -- by what
-- its name and content (a sample, when it is added with values) say it
-- holds, protected at that kind's level with its mask; when neither says,
-- or with protect_new_columns = hide, hidden (core, no mask) until an
-- administrator classifies it with protect_column() or unprotect_column().
-- Each decision is an admin event and a row here.
-- (the table new_columns is created with discovered_columns, above)

-- (called by ddl.c after the ALTER TABLE, as the extension owner)
CREATE FUNCTION @extschema@._protect_new_column(tbl oid, col text, mode text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._protect_new_column(oid, text, text) FROM PUBLIC;

-- An administrator's later protect_column() or unprotect_column() of a
-- new column classifies it.
CREATE FUNCTION @extschema@._new_column_classified()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.new_columns n
       SET classified_at = now(), classified_by = session_user
     WHERE n.base = OLD.base AND n.column_name = OLD.column_name AND n.classified_at IS NULL;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION @extschema@._new_column_classified() FROM PUBLIC;
CREATE TRIGGER column_rules_classified AFTER UPDATE OR DELETE ON @extschema@.column_rules
    FOR EACH ROW EXECUTE FUNCTION @extschema@._new_column_classified();

-- A mask function's call on the SQL expression val, with its constant
-- extra arguments typed as the function declares them.
CREATE FUNCTION @extschema@._mask_expr(fn regprocedure, args text[], val text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%s(%s%s)', fn::oid::regproc, val,
                  coalesce((SELECT string_agg(format(', %L::%s', args[i], format_type(p.proargtypes[i], NULL)), '' ORDER BY i)
                              FROM pg_proc p, generate_subscripts(args, 1) i WHERE p.oid = fn), ''))
$$;
REVOKE ALL ON FUNCTION @extschema@._mask_expr(regprocedure, text[], text) FROM PUBLIC;

-- The protected base table tbl names (itself, or its masking view), or an
-- error; its row key column and that column's type (a domain's base type:
-- a domain's check would run its maker's functions); and, when subject is
-- given, whether a row has that row key (read with the caller's rights).
CREATE FUNCTION @extschema@._subject_table(tbl regclass, subject text DEFAULT NULL,
                                           OUT base regclass, OUT relation text,
                                           OUT key_col name, OUT key_type text, OUT present boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._subject_table(regclass, text) FROM PUBLIC;

-- subject_report() in sections, one function each (they run with its
-- rights; no one else may call them).  t: _subject_table(tbl): the report
-- has checked that the row is there, once.

-- every column of the row, as the caller sees it (clear, masked or hidden,
-- by its clearance and approvals); an admin event names the columns shown
-- in clear.
CREATE FUNCTION @extschema@._subject_held(caller regrole, tbl regclass, subject text)
RETURNS TABLE (section text, item text, value text, at timestamptz, by_role text, detail text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._subject_held(regrole, regclass, text) FROM PUBLIC;

-- the approvals that named the row.
CREATE FUNCTION @extschema@._subject_approvals(tbl regclass, subject text)
RETURNS TABLE (section text, item text, value text, at timestamptz, by_role text, detail text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._subject_approvals(regclass, text) FROM PUBLIC;

-- the customer's consents, live and withdrawn.
CREATE FUNCTION @extschema@._subject_consents(tbl regclass, subject text)
RETURNS TABLE (section text, item text, value text, at timestamptz, by_role text, detail text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._subject_consents(regclass, text) FROM PUBLIC;

-- how many rows of other tables refer to it (one-column foreign keys).
CREATE FUNCTION @extschema@._subject_related(tbl regclass, subject text)
RETURNS TABLE (section text, item text, value text, at timestamptz, by_role text, detail text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._subject_related(regclass, text) FROM PUBLIC;

-- every read, export and change the audit trail records of it.
CREATE FUNCTION @extschema@._subject_events(tbl regclass, subject text)
RETURNS TABLE (section text, item text, value text, at timestamptz, by_role text, detail text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._subject_events(regclass, text) FROM PUBLIC;

-- The customer's request to know what is held and who saw it: for the row
-- of tbl whose row key is row_key -- what is held, column by column (its
-- level, and its value as the caller sees it: clear, masked or hidden, by
-- the caller's clearance and approvals), the approvals that named the row,
-- the rows of other protected tables that refer to it, and from the audit
-- trail every read, export and change of it: when, by whom, which
-- columns, clear or masked.  For pii_guard_auditor (the person who answers
-- such requests; administrators do not read the audit trail); each report
-- is an admin event naming the columns it showed in clear.
CREATE FUNCTION @extschema@._subject_report(caller regrole, tbl regclass, subject text)
RETURNS TABLE (section text, item text, value text, at timestamptz, by_role text, detail text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._subject_report(regrole, regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._subject_report(regrole, regclass, text) TO pii_guard_auditor;

CREATE FUNCTION @extschema@.subject_report(tbl regclass, row_key text)
RETURNS TABLE (section text, item text, value text, at timestamptz, by_role text, detail text)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM @extschema@._subject_report(current_user::regrole, tbl, row_key)
$$;
REVOKE ALL ON FUNCTION @extschema@.subject_report(regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.subject_report(regclass, text) TO pii_guard_auditor;
COMMENT ON FUNCTION @extschema@.subject_report(regclass, text) IS
    'a data subject''s request: what is held about the row (as the caller sees it), its approvals, related rows, and every read, export and change of it in the audit trail';

-- The right to deletion: the row of tbl whose row key is row_key is
-- deleted through its masking view, with the caller's own privileges (the
-- DELETE privilege, row-level security, the view's write path; what its
-- foreign keys cascade to goes too, a foreign key that restricts stops it,
-- 23503), then recorded as an admin event with the reason and the count,
-- once _audit_erasure has seen that the row is gone.  Its row key stays in
-- the audit trail, as the record of the erasure and of what was done with
-- the data before.  (Not with the definer's rights: triggers the table's
-- owner put on it would run with them.)
CREATE FUNCTION @extschema@._audit_erasure(caller regrole, tbl regclass, subject text, reason text, n bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._audit_erasure(regrole, regclass, text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._audit_erasure(regrole, regclass, text, text, bigint) TO pii_guard_admin;
GRANT EXECUTE ON FUNCTION @extschema@._subject_table(regclass, text), @extschema@._copy_type(oid, integer) TO pii_guard_admin;

CREATE FUNCTION @extschema@.erase_subject(tbl regclass, row_key text, reason text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@.erase_subject(regclass, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.erase_subject(regclass, text, text) TO pii_guard_admin;
COMMENT ON FUNCTION @extschema@.erase_subject(regclass, text, text) IS
    'the right to deletion: the person''s row deleted (with what its foreign keys cascade to), audited with the reason';

-- Retention: how long the rows of a protected table are kept -- keep after
-- the date in date_column -- and what happens to them then: deleted, or
-- anonymised (every protected column set to NULL, a NOT NULL text column
-- to ''; the row stays for the statistics and foreign keys that need it).
-- CALL pii_guard.apply_retention() does it in batches,
-- committing each and recording it as an admin event with its count, so
-- that an interrupted run loses nothing and the next one goes on.
CREATE TABLE @extschema@.retention_rules (
    base          regclass PRIMARY KEY REFERENCES @extschema@.protected_tables ON DELETE CASCADE,
    date_column   name NOT NULL,
    keep          interval NOT NULL CHECK (keep > interval '0'),
    action        text NOT NULL CHECK (action IN ('delete', 'anonymize')),
    batch_rows    integer NOT NULL DEFAULT 1000 CHECK (batch_rows > 0),
    last_applied  timestamptz,
    -- or kept `keep` after the latest activity_column of the rows of
    -- activity that refer to it (its foreign key activity_key), when later
    activity         regclass,
    activity_column  name,
    activity_key     name,
    CHECK ((activity IS NULL) = (activity_column IS NULL) AND (activity IS NULL) = (activity_key IS NULL))
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.retention_rules', '');
REVOKE ALL ON @extschema@.retention_rules FROM PUBLIC;
GRANT SELECT ON @extschema@.retention_rules TO pii_guard_admin, pii_guard_auditor;

-- The one-column foreign keys of rel that name a protected table's row key:
-- the column, and that table.  (Whose each row of rel is: retention by
-- activity, crypto-shredding by a foreign key.)
CREATE FUNCTION @extschema@._row_key_fks(rel regclass, OUT col name, OUT base regclass)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.attname, p.base
      FROM pg_constraint k
      JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
      JOIN pg_attribute f ON f.attrelid = k.confrelid AND f.attnum = k.confkey[1]
      JOIN @extschema@.protected_tables p ON p.base = k.confrelid AND p.row_key = f.attname
     WHERE k.conrelid = rel AND k.contype = 'f' AND cardinality(k.conkey) = 1
     ORDER BY k.conname
$$;
REVOKE ALL ON FUNCTION @extschema@._row_key_fks(regclass) FROM PUBLIC;

CREATE FUNCTION @extschema@.set_retention(tbl regclass, date_column name, keep interval,
                                          action text DEFAULT 'delete', batch_rows integer DEFAULT 1000,
                                          activity regclass DEFAULT NULL, activity_column name DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@.set_retention(regclass, name, interval, text, integer, regclass, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.set_retention(regclass, name, interval, text, integer, regclass, name) TO pii_guard_admin;
COMMENT ON FUNCTION @extschema@.set_retention(regclass, name, interval, text, integer, regclass, name) IS
    'the retention rule of a protected table: delete or anonymize its rows keep after date_column (keep NULL: no rule)';

-- One batch of one rule, with the caller's privileges on the base table
-- (the table's owner, or whoever it let): at most batch_rows of the rows
-- expired at cutoff (anonymise: those not anonymised yet); how many.
CREATE FUNCTION @extschema@._retention_batch(tbl regclass, cutoff timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._retention_batch(regclass, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._retention_batch(regclass, timestamptz) TO pii_guard_admin;

-- (the admin event of a committed batch, and the rule's last run)
CREATE FUNCTION @extschema@._audit_retention(tbl regclass, n bigint, cutoff timestamptz)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._audit_retention(regclass, bigint, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._audit_retention(regclass, bigint, timestamptz) TO pii_guard_admin;

CREATE PROCEDURE @extschema@.apply_retention(max_rows bigint DEFAULT NULL)
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
REVOKE ALL ON PROCEDURE @extschema@.apply_retention(bigint) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@.apply_retention(bigint) TO pii_guard_admin;
COMMENT ON PROCEDURE @extschema@.apply_retention(bigint) IS
    'the retention rules applied: expired rows deleted or anonymised in batches, each committed and audited with its count (max_rows: stop after about that many)';

-- Purposes and consents: the purposes personal data may be used for
-- (whether using it for one needs the customer's consent), and each
-- customer's consent to a purpose -- row key, purpose, the columns it
-- covers (NULL: all), when, how it was given, who recorded it, and when and
-- how it was withdrawn.  Written only through record_consent() and
-- withdraw_consent(), each an admin event.  What masking views do with
-- them: see "Purposes on profiles and approvals" below.
CREATE TABLE @extschema@.purposes (
    purpose           text PRIMARY KEY CHECK (purpose ~ '^[a-z][a-z0-9_]*$' AND length(purpose) < 64),
    description       text NOT NULL,
    requires_consent  boolean NOT NULL DEFAULT true
);
CREATE TABLE @extschema@.consents (
    consent_id     bigserial PRIMARY KEY,
    base           regclass NOT NULL REFERENCES @extschema@.protected_tables ON DELETE CASCADE,
    row_key        text NOT NULL,
    purpose        text NOT NULL REFERENCES @extschema@.purposes,
    columns        name[],
    given_at       timestamptz NOT NULL,
    how            text NOT NULL CHECK (how <> ''),
    recorded_by    name NOT NULL DEFAULT session_user,
    withdrawn_at   timestamptz,
    withdrawn_how  text,
    CHECK (withdrawn_at IS NULL OR withdrawn_at >= given_at)
);
CREATE INDEX consents_subject ON @extschema@.consents (base, row_key);
-- (what a masking view's decision reads: the live consents to a purpose,
-- index-only once vacuumed)
CREATE INDEX consents_live ON @extschema@.consents (base, purpose, given_at) INCLUDE (row_key)
    WHERE withdrawn_at IS NULL AND columns IS NULL;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.purposes', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.consents', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.consents_consent_id_seq', '');
REVOKE ALL ON @extschema@.purposes, @extschema@.consents FROM PUBLIC;
GRANT SELECT ON @extschema@.purposes, @extschema@.consents TO pii_guard_admin, pii_guard_auditor;
GRANT SELECT ON @extschema@.purposes TO pii_guard_approver;
-- (pg_dump reads the sequences of the tables it dumps: see the owner's recipe)
GRANT SELECT ON SEQUENCE @extschema@.consents_consent_id_seq TO pii_guard_admin, pii_guard_auditor;

CREATE FUNCTION @extschema@.define_purpose(purpose text, description text,
                                           requires_consent boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@.define_purpose(text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.define_purpose(text, text, boolean) TO pii_guard_admin;

-- (whoever the DBA lets record consents -- the application's role that
-- collects them, say -- is granted EXECUTE on these two)
CREATE FUNCTION @extschema@.record_consent(tbl regclass, row_key text, purpose text, how text,
                                           columns name[] DEFAULT NULL, given_at timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@.record_consent(regclass, text, text, text, name[], timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.record_consent(regclass, text, text, text, name[], timestamptz) TO pii_guard_admin;

CREATE FUNCTION @extschema@.withdraw_consent(tbl regclass, row_key text, purpose text, how text)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@.withdraw_consent(regclass, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.withdraw_consent(regclass, text, text, text) TO pii_guard_admin;

-- Purposes on profiles and approvals.  A profile may be limited to the
-- purposes its members may declare (profiles.purposes; NULL: not limited,
-- as before): its clearance then applies only while the session's
-- pii_guard.purpose is one of them (or, undeclared, when it lists just
-- one), and when that purpose needs consent a column it would show in clear
-- is clear only on the rows whose customer consented to that purpose for
-- that column (pii_guard.consents, live), masked or hidden on the others as
-- the column's rule says.  An approval may name a purpose (it then counts
-- only while the session declares it).  A session declares its purpose with
-- SET pii_guard.purpose, which refuses a purpose the role may not declare.
-- Consents and purposes are policy: a change reaches every session at its
-- next statement.
ALTER TABLE @extschema@.profiles ADD COLUMN purposes text[]
    CHECK (purposes IS NULL OR (cardinality(purposes) > 0 AND array_position(purposes, NULL) IS NULL));
ALTER TABLE @extschema@.grants ADD COLUMN purpose text REFERENCES @extschema@.purposes;

DO $trg$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['purposes', 'consents']
    LOOP
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER policy_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE '
            'ON @extschema@.%I FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.policy_changed()', t);
    END LOOP;
END
$trg$;

-- The purposes a profile's members may declare (NULL: the profile is not
-- limited to purposes).
CREATE FUNCTION @extschema@.set_purposes(role regrole, purposes text[])
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@.set_purposes(regrole, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.set_purposes(regrole, text[]) TO pii_guard_admin;

-- May role declare purpose?  (Checked by SET pii_guard.purpose.)  Yes when
-- a profile whose privileges it has lists it, or a live approval for it
-- names it.
CREATE FUNCTION @extschema@.may_declare(role regrole, purpose text)
RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM @extschema@.profiles p
                    WHERE may_declare.purpose = ANY (p.purposes)
                      AND pg_has_role(may_declare.role, p.role, 'USAGE'))
        OR EXISTS (SELECT 1 FROM @extschema@.grants g
                    WHERE g.purpose = may_declare.purpose AND g.kind = 'unmask'
                      AND g.revoked_at IS NULL AND g.valid_until > now()
                      AND pg_has_role(may_declare.role, g.role, 'USAGE'))
$$;
REVOKE ALL ON FUNCTION @extschema@.may_declare(regrole, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.may_declare(regrole, text)
   TO pii_guard_admin, pii_guard_approver, pii_guard_auditor;

-- approve() takes the purpose the approval is for (NULL: any).
DROP FUNCTION @extschema@.approve(regrole, regclass, timestamptz, text, name[], text[]);
CREATE FUNCTION @extschema@.approve(role regrole, tbl regclass, valid_until timestamptz,
                                    reason text, columns name[] DEFAULT NULL,
                                    row_keys text[] DEFAULT NULL, purpose text DEFAULT NULL)
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
REVOKE ALL ON FUNCTION @extschema@.approve(regrole, regclass, timestamptz, text, name[], text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.approve(regrole, regclass, timestamptz, text, name[], text[], text)
   TO pii_guard_approver;
COMMENT ON FUNCTION @extschema@.approve(regrole, regclass, timestamptz, text, name[], text[], text) IS
    'time-boxed approval: role sees the columns (all when NULL) of the rows (all when NULL) in clear until valid_until, for purpose (any when NULL)';

-- A grant's purpose is fixed like the rest of it.
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
CREATE SEQUENCE @extschema@.subject_key_ids AS bigint
    MINVALUE 2147483648 MAXVALUE 4294967295 NO CYCLE;
-- (a random start, as for data keys: ids of different databases rarely meet)
SELECT pg_catalog.setval('@extschema@.subject_key_ids',
                         2147483648 + pg_catalog.floor(pg_catalog.random() * 1073741824)::bigint);
CREATE TABLE @extschema@.subject_keys (
    key_id                  bigint PRIMARY KEY CHECK (key_id BETWEEN 2147483648 AND 4294967295),
    subject_base            regclass NOT NULL,
    row_key                 text NOT NULL,
    wrapped_key             bytea,
    master_key_fingerprint  bytea,
    created_at              timestamptz NOT NULL DEFAULT pg_catalog.now(),
    shredded_at             timestamptz,
    shredded_by             name,
    reason                  text,
    CHECK ((shredded_at IS NULL) = (wrapped_key IS NOT NULL AND master_key_fingerprint IS NOT NULL))
);
CREATE UNIQUE INDEX subject_keys_live ON @extschema@.subject_keys (subject_base, row_key)
    WHERE shredded_at IS NULL;
REVOKE ALL ON @extschema@.subject_keys, @extschema@.subject_key_ids FROM PUBLIC;
GRANT SELECT (key_id, subject_base, row_key, created_at, shredded_at, shredded_by, reason)
   ON @extschema@.subject_keys TO pii_guard_admin, pii_guard_auditor;
-- a key destroyed (or deleted) reaches every session's key cache at once
CREATE TRIGGER subject_keys_changed AFTER UPDATE OR DELETE OR TRUNCATE ON @extschema@.subject_keys
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.data_keys_changed();

-- Which tables keep values under subject keys, and whose: the subject is
-- the row of subject_base whose row key is the value of subject_column
-- (the table's own row key, or a foreign key to the subject's table).
CREATE TABLE @extschema@.shredding (
    base            regclass PRIMARY KEY REFERENCES @extschema@.protected_tables ON DELETE CASCADE,
    subject_column  name NOT NULL,
    subject_base    regclass NOT NULL REFERENCES @extschema@.protected_tables ON DELETE CASCADE
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.shredding', '');
REVOKE ALL ON @extschema@.shredding FROM PUBLIC;
GRANT SELECT ON @extschema@.shredding TO pii_guard_admin, pii_guard_auditor;

-- The row trigger that seals a row's encrypted values under its subject's
-- key (created by shred_by(); named to run after the table's own BEFORE
-- triggers).
CREATE FUNCTION @extschema@._subject_seal()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pii_guard_subject_seal'
LANGUAGE C;
REVOKE ALL ON FUNCTION @extschema@._subject_seal() FROM PUBLIC;

CREATE FUNCTION @extschema@._shred_by(caller regrole, tbl regclass, subject_column name)
RETURNS TABLE (base regclass, encrypted name[])
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._shred_by(regrole, regclass, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._shred_by(regrole, regclass, name) TO pii_guard_admin;

-- Keep tbl's encrypted values under per-subject keys, from now on and for
-- the rows it has (re-sealed here, with the caller's privileges: the
-- table's owner, or a superuser, runs it).  subject_column: whose values
-- they are (default: the table's own row key).
CREATE FUNCTION @extschema@.shred_by(tbl regclass, subject_column name DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@.shred_by(regclass, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.shred_by(regclass, name) TO pii_guard_admin;
COMMENT ON FUNCTION @extschema@.shred_by(regclass, name) IS
    'crypto-shredding: tbl''s encrypted values kept under a key per subject (the row of the subject''s table named by subject_column, default the row key); returns the rows re-sealed';

-- Destroy the key of the subject row_key of tbl (a subject table): its
-- values, in this database and in every dump, backup or copy, no longer
-- decrypt.  Returns the key id, or NULL when the subject had no key.
CREATE FUNCTION @extschema@._shred(tbl regclass, row_key text, reason text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._shred(regclass, text, text) FROM PUBLIC;

CREATE FUNCTION @extschema@.shred_subject(tbl regclass, row_key text, reason text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@.shred_subject(regclass, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.shred_subject(regclass, text, text) TO pii_guard_admin;
COMMENT ON FUNCTION @extschema@.shred_subject(regclass, text, text) IS
    'crypto-shredding: the subject''s key destroyed, so that its values in every dump and copy no longer decrypt; audited with the reason';


-- key_id() names subject keys too (2^31 and up): bigint.  reencrypt_column
-- leaves values under subject keys alone (they are under their subject's
-- key, as they should be; the row trigger would seal them so again).
DROP FUNCTION @extschema@.key_id(@extschema@.encrypted_text);
DROP FUNCTION @extschema@.key_id(@extschema@.encrypted_bytea);
CREATE FUNCTION @extschema@.key_id(@extschema@.encrypted_text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pii_guard_envelope_key_id'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@.key_id(@extschema@.encrypted_bytea)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pii_guard_envelope_key_id'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
-- reencrypt_column() in steps.  The tables that hold the rows of tbl: tbl
-- and everything that inherits from it (partitions included), each
-- processed by itself (UPDATE ONLY); checked: col is an encrypted column,
-- no foreign table is among them, no row-level security hides rows (they
-- would stay under their old key).
CREATE FUNCTION @extschema@._reencrypt_tables(tbl regclass, col name)
RETURNS regclass[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
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
CREATE PROCEDURE @extschema@._reencrypt_table(rel regclass, col name, active integer,
                                              batch_rows integer, INOUT done bigint)
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

CREATE OR REPLACE PROCEDURE @extschema@.reencrypt_column(
    tbl regclass, col name, batch_rows integer DEFAULT 10000)
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
REVOKE ALL ON FUNCTION @extschema@._reencrypt_tables(regclass, name) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@._reencrypt_table(regclass, name, integer, integer, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._reencrypt_tables(regclass, name),
    @extschema@._descendants(regclass) TO pii_guard_admin;
GRANT EXECUTE ON PROCEDURE @extschema@._reencrypt_table(regclass, name, integer, integer, bigint) TO pii_guard_admin;

-- The subject keys of rows of tbl that are gone (of the keys given: the
-- rows a retention batch deleted), destroyed; how many.
CREATE FUNCTION @extschema@._shred_gone(tbl regclass, keys text[], reason text)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._shred_gone(regclass, text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._shred_gone(regclass, text[], text) TO pii_guard_admin;

-- reveal() was declared COST 1000: a masking view's scan of 15,000 rows
-- then cost more than jit_above_cost, and every such query paid for JIT
-- compilation (about 100 ms, more than the scan) where the same query on
-- the table did not.  COST 10 is about what a call costs against an
-- operator's (a mask function's work included); it still sorts a filter on
-- a protected column after the filters on the others.
ALTER FUNCTION @extschema@.reveal(anyelement, regclass, name, "any") COST 10;
ALTER FUNCTION @extschema@.reveal(@extschema@.encrypted_text, regclass, name, "any") COST 10;
ALTER FUNCTION @extschema@.reveal(@extschema@.encrypted_bytea, regclass, name, "any") COST 10;

--------------------------------------------------------------------------
-- _attach_views in steps
--------------------------------------------------------------------------

-- _attach_views() was one 215-line body, re-declared whole by any change to
-- any of its steps.  It is now the sequence of its steps, one function
-- each; a later version replaces only the step it changes.  The steps run
-- with the rights of _attach_views() (they are not SECURITY DEFINER, and
-- no one else may call them).

-- The names of a protected table and of its two views, quoted.
CREATE FUNCTION @extschema@._view_names(base oid, OUT base_q text, OUT view_q text, OUT write_q text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._views_follow_rename(tbl oid, rename_from text, rename_to text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._reconcile_rules(tbl oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._view_queries(tbl oid, OUT view_sql text, OUT write_sql text, OUT keep_out text[])
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._put_views(tbl oid, view_sql text, write_sql text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._view_write_path(tbl oid, keep_out text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._restore_view_grants(tbl oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
SET "citus.enable_ddl_propagation" = off
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
REVOKE ALL ON FUNCTION @extschema@._view_names(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._views_follow_rename(oid, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._reconcile_rules(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._view_queries(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._put_views(oid, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._view_write_path(oid, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._restore_view_grants(oid) FROM PUBLIC;

--------------------------------------------------------------------------
-- _sync_write_grants in steps
--------------------------------------------------------------------------

-- A grantee as GRANT and REVOKE name it: PUBLIC (0) or the role's name.
CREATE FUNCTION @extschema@._grantee(role oid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._mirror_write_grants(tbl oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
CREATE FUNCTION @extschema@._sync_sequence_usage(tbl oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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

-- Mirror the masking view's write privileges onto the write view, give
-- INSERT grantees USAGE on the sequences behind the defaults, and keep a
-- copy of the masking view's grants in saved_grants, so that the view can
-- be rebuilt with them whoever dropped it.
CREATE OR REPLACE FUNCTION @extschema@._sync_write_grants(base oid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
REVOKE ALL ON FUNCTION @extschema@._grantee(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._mirror_write_grants(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._sync_sequence_usage(oid) FROM PUBLIC;

-- Scale-out on Citus: one set of data keys for the cluster.
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
REVOKE ALL ON FUNCTION @extschema@._ensure_data_keys() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.citus_setup() FROM PUBLIC;

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
REVOKE ALL ON FUNCTION @extschema@._cluster_json(what text, since timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._cluster_json(what text, since timestamptz) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.cluster_audit_log(since timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.cluster_audit_log(since timestamptz) TO pii_guard_auditor;
REVOKE ALL ON FUNCTION @extschema@.verify_cluster_audit() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.verify_cluster_audit() TO pii_guard_auditor;

-- Citus: the event triggers leave the coordinator's DDL alone on a worker.
CREATE OR REPLACE FUNCTION @extschema@._on_grant() RETURNS event_trigger
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

-- On Citus, a query on a masking view of a distributed table gets its rows
-- from the workers, where reveal() runs; the coordinator's plan hands them
-- out through this identity, around the columns that carry protected
-- values, so that export limits count them where they leave (exports.c).
-- Only pii_guard's own calls of it count; calling it does nothing.
CREATE FUNCTION @extschema@._protected(value anyelement, base regclass) RETURNS anyelement
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pii_guard_protected';
COMMENT ON FUNCTION @extschema@._protected(value anyelement, base regclass) IS 'internal: marks a protected value a Citus query hands out';

-- Citus: a table moved back to its schema on the shards, then the policy
-- changed, in one connection per node.
CREATE OR REPLACE FUNCTION @extschema@.unprotect_table(tbl regclass) RETURNS void
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


-- Citus: NOLOGIN profiles may log in on the workers behind the login gate.
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

REVOKE ALL ON FUNCTION @extschema@._citus_profile_logins(roles regrole[], login boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.set_clearance(role regrole, clearance @extschema@.level, description text DEFAULT NULL::text) RETURNS void
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

-- Citus: rows of the policy tables found by name, not OID (_relname, _rolname).

CREATE OR REPLACE FUNCTION @extschema@.unprotect_column(tbl regclass, col name) RETURNS void
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

CREATE OR REPLACE FUNCTION @extschema@.reset_column_access(role regrole, tbl regclass, col name) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    DELETE FROM @extschema@.profile_overrides o
     WHERE @extschema@._rolname(o.role) = @extschema@._rolname_here(reset_column_access.role) AND @extschema@._relname(o.base) = @extschema@._relname_here(@extschema@._base_of(tbl))
       AND o.column_name = col;
    SELECT @extschema@._audit_admin('reset_column_access', format('%s on %s.%I', role, tbl, col));
$$;

CREATE OR REPLACE FUNCTION @extschema@.drop_profile(role regrole) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    DELETE FROM @extschema@.profiles p WHERE @extschema@._rolname(p.role) = @extschema@._rolname_here(drop_profile.role);
    SELECT @extschema@._citus_profile_logins(ARRAY[role], false);
    SELECT @extschema@._audit_admin('drop_profile', role::text);
$$;

CREATE OR REPLACE FUNCTION @extschema@.set_export_limits(role regrole, max_rows_per_statement bigint, max_rows_per_day bigint) RETURNS void
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

CREATE OR REPLACE FUNCTION @extschema@._detach_views(base oid, rename_from text, rename_to text) RETURNS void
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
