-- test/tap/undone.sql -- included (\ir tap/undone.sql) by the pgTAP suites
-- that try statements as a role: the statement runs in a subtransaction
-- that is rolled back, so that every attempt starts from the same state,
-- and what it did is returned as text.  (Not a suite: test/run.sh runs
-- test/*.sql only.)
--
-- report, what a statement that works gives:
--   'status'  'no error'
--   'count'   'ok N', N its row count
--   'value'   its single value as text ('no error' if none)
--   'rows'    its rows as text, sorted, ';'-separated
--   'lines'   its one-column rows in their order, each ended by a newline
--             (EXPLAIN)
--   'auto'    'ok N: rows' for a statement that returns rows (RETURNING,
--             or an EXECUTE of a prepared statement, for which PL/pgSQL
--             gets no row count), else 'ok N'
-- and a statement that fails: 'SQLSTATE message'.

-- What sql does as the current role, not undone (a caller undoes).
CREATE FUNCTION pg_temp.outcome_of(sql text, report text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
    result text;
    rows text[] := '{}';
    r record;
    line text;
    n bigint;
    st text;
    msg text;
BEGIN
    IF report = 'rows' OR
       (report = 'auto' AND (sql ~* '\mRETURNING\M' AND sql !~* '^\s*DO\M' OR sql ~* '^\s*EXECUTE\M')) THEN
        FOR r IN EXECUTE sql LOOP
            rows := rows || r::text;
        END LOOP;
        result := coalesce((SELECT string_agg(x, ';' ORDER BY x) FROM unnest(rows) x), '');
        RETURN CASE report WHEN 'auto' THEN 'ok ' || cardinality(rows) || ': ' || result ELSE result END;
    END IF;
    IF report = 'lines' THEN
        result := '';
        FOR line IN EXECUTE sql LOOP
            result := result || line || E'\n';
        END LOOP;
        RETURN result;
    END IF;
    IF report = 'value' THEN
        EXECUTE sql INTO result;
        RETURN coalesce(result, 'no error');
    END IF;
    EXECUTE sql;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN CASE report WHEN 'status' THEN 'no error' ELSE 'ok ' || n END;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ' ' || msg;
END
$f$;

-- What sql does as role who (NULL: the current role), undone.  The role
-- runs prelude first, if given (if it fails, that is the outcome); then,
-- as the superuser again, check_sql (if given) is evaluated in the same
-- subtransaction and its value appended: 'outcome | check'.
CREATE FUNCTION pg_temp.undone(who name, sql text, report text DEFAULT 'status',
                               check_sql text DEFAULT NULL, prelude text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    result text;
    extra text;
BEGIN
    BEGIN
        IF who IS NOT NULL THEN
            EXECUTE format('SET LOCAL ROLE %I', who);
        END IF;
        IF prelude IS NOT NULL THEN
            result := pg_temp.outcome_of(prelude, 'status');
        END IF;
        IF result IS NULL OR result = 'no error' THEN
            result := pg_temp.outcome_of(sql, report);
        END IF;
        IF check_sql IS NOT NULL THEN
            RESET ROLE;
            EXECUTE check_sql INTO extra;
            result := result || ' | ' || coalesce(extra, '<null>');
        END IF;
        RAISE EXCEPTION 'tap: undo';
    EXCEPTION WHEN raise_exception THEN
        IF SQLERRM <> 'tap: undo' THEN
            RAISE;
        END IF;
    END;
    RETURN result;
END
$f$;

-- Wait (up to 10 s) until the query cond returns true: for what the audit
-- worker writes asynchronously.  Returns whether it did.
CREATE FUNCTION pg_temp.wait_until(cond text) RETURNS boolean
LANGUAGE plpgsql AS $f$
DECLARE
    ok boolean;
BEGIN
    FOR i IN 1..100 LOOP
        EXECUTE cond INTO ok;
        IF ok THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$f$;
