/* pii_guard--0.1--0.2.sql: the changes of version 0.2 over 0.1 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pii_guard UPDATE TO '0.2'" to load this file. \quit

-- 0.1 is released and its script is never edited: everything 0.2 changes
-- is here, and CREATE EXTENSION of 0.2 runs the 0.1 script and then this
-- one.  Each change says why.

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
