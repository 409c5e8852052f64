-- pgTAP: attacks on the fast write path through masking views.
--
-- An INSERT, UPDATE or DELETE on a masking view is rewritten when it is
-- analysed (src/write.c) into the same statement on the base table,
-- reached as pii_guard_owner.  Values for encrypted columns are sealed by
-- pii_guard._write_seal(value, base, col); each UPDATE SET column stores
-- pii_guard._write_set(stored, base, col, row_key, value), which keeps the
-- stored value when the new value is what the role is shown, checks the
-- role's UPDATE privilege on the view column only when the value changes,
-- refuses a governed role's change of the row key and seals new values.
-- RETURNING is the view's reveal() expressions over the written row.  The
-- INSTEAD OF trigger stays for what is not rewritten (rules, COPY FROM, a
-- role's own view over the masking view, ...).
--
-- What an attacker wants from that: an envelope of a plaintext of its
-- choosing (its blind index answers guesses against a stolen dump), a
-- comparison of a guess with a stored value, a plaintext it is only shown
-- masked, the existence of rows row-level security hides, a row key moved
-- under an approval, or a write nobody notices.
--
-- Required behaviour, for every governed role (by section):
--   1. _write_seal() and _write_set() answer only at the call sites the
--      rewrite marks: called anywhere else -- typed, prepared, in a DO
--      block, a PL/pgSQL or SQL function (inlined or not, BEGIN ATOMIC), a
--      view, a rule (action or WHERE), a column DEFAULT, a CHECK or domain
--      constraint, a trigger WHEN, an index expression, a generated column,
--      a policy, EXPLAIN ANALYZE, a writable CTE, or typed inside a write
--      through the masking view -- they refuse with 42501 '... can only be
--      used by masking views' (audited), also for the table's owner, and
--      nothing (no envelope, no comparison) reaches the role; a superuser
--      may call them (24 variants x 2 functions x 6 roles x 2 assertions);
--   2. (what the rewrite does with them) a write stores envelopes of what
--      the role wrote;
--   3. no envelope leaves a write: RETURNING, writable CTEs, INSERT ...
--      SELECT, a trigger of the role's own, EXPLAIN ANALYZE output and the
--      text of errors hold plaintext the role wrote or values it may see;
--   4. what a write shows -- UPDATE/DELETE ... RETURNING, the whole row,
--      old values through UPDATE ... FROM, a column copied into another, a
--      WHERE clause -- is what the role reads through the view, and what
--      it copies stores what it was shown;
--   5. the privilege relaxation is no oracle: a right and a wrong guess of
--      a value the role cannot select, or sees masked or hidden, give the
--      same outcome (error or not, row count, RETURNING);
--   6. a governed role never changes a row key (42501, audited), whatever
--      the shape of the UPDATE -- DEFAULT included;
--   7. rows row-level security hides are never touched or shown, and
--      EXPLAIN ANALYZE does not tell them; a unique violation of a write
--      through the view is a 'probe' deny event and counts one row against
--      the export limits, whatever the constraint;
--   8. a prepared write used after SET ROLE / SET SESSION AUTHORIZATION
--      runs with the current role's privileges, masks and policy;
--   9. RETURNING counts against the export limits;
--  10. one write event per statement, with its row keys, the columns it
--      changed and the acting role;
--  11. what must keep working, as through the trigger;
--  12. the essentials again on a partitioned table.
--
-- At commit 615a8bb (the first fast write path) 17 of these assertions
-- failed, each fixed since:
--   3.7-3.11  a write that failed on a NOT NULL or CHECK constraint of a
--             base table without row-level security showed in its DETAIL
--             the columns it wrote, as stored ("Failing row contains (...,
--             pii_guard:AXQU5Q4n...)": the envelope of the role's chosen
--             plaintext, whose blind index tests a guess, and the stored
--             envelopes an UPDATE keeps) -- through the trigger too.  Now
--             a constraint violation of a governed write to a protected
--             table loses its DETAIL, wherever it is raised (views.c);
--   6.1-6.7   UPDATE ... SET id = DEFAULT (in every shape) changed the row
--             key, moving customer 3 under the key of mgr_eve's approval;
--             now such an UPDATE goes through the trigger, which refuses;
--   7.19-7.24 a unique violation raised outside the write -- a deferrable
--             constraint at the end of the statement, SET CONSTRAINTS ...
--             IMMEDIATE -- was no probe; now every unique or exclusion
--             violation of a protected table in a transaction a governed
--             role wrote one is, once;
--   11.1-11.2 (functional) a correlated subquery over the written row's
--             protected column was refused; reveal()'s proof now follows
--             a correlated subplan's parameters to its parent's row.
-- And 7.9 now expects ON CONFLICT DO NOTHING to work (each conflict a
-- probe) where it was refused.
-- Everything else pins the behaviour.
BEGIN;
SELECT plan(738);
\ir tap/undone.sql

-----------------------------------------------------------------------------
-- Set-up, as the superuser.
-----------------------------------------------------------------------------
SET LOCAL client_min_messages = warning;

-- Envelopes as a stolen dump holds them: customer 3's phone (13711112222)
-- and national ID.
SELECT phone::text AS phone3, national_id::text AS nid3 FROM public_pii.customers WHERE id = 3 \gset
-- The part of an envelope's text that carries its blind index: bytes 18-32
-- of the envelope (after the 'pii_guard:' prefix, base64 characters 25-44).
SELECT substr(:'phone3', 11 + 24, 20) AS blind3 \gset

CREATE ROLE tap_aw_owner;                       -- a table owner (not a superuser)
CREATE ROLE tap_aw_approver IN ROLE pii_guard_approver;

-- The attackers of section 1: the five seed roles and the table's owner.
CREATE TEMP TABLE attackers (n int, who name, sch name, is_owner bool);
INSERT INTO attackers VALUES
    (1, 'sales_bob',    'tap_aw_bob', false), (2, 'mgr_eve',     'tap_aw_eve', false),
    (3, 'intern_fay',   'tap_aw_fay', false), (4, 'mkt_amy',     'tap_aw_amy', false),
    (5, 'support_dan',  'tap_aw_dan', false), (6, 'tap_aw_owner', 'tap_aw_own', true);
GRANT SELECT ON attackers TO PUBLIC;

-- Each attacker's schema: its loot (customer 3's phone envelope with a
-- right and a wrong guess, customer 1's with a right one: k, v, g) and a
-- harvest table for whatever it gets out.
DO $setup$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT * FROM pg_temp.attackers LOOP
        EXECUTE format('CREATE SCHEMA %I AUTHORIZATION %I', a.sch, a.who);
        EXECUTE format('CREATE TABLE %I.loot (k bigint, v pii_guard.encrypted_text, g text)', a.sch);
        EXECUTE format($q$INSERT INTO %1$I.loot
                          SELECT 3, phone, '13711112222' FROM public_pii.customers WHERE id = 3
                          UNION ALL SELECT 3, phone, '13711112223' FROM public_pii.customers WHERE id = 3
                          UNION ALL SELECT 1, phone, '13812345678' FROM public_pii.customers WHERE id = 1$q$,
                       a.sch);
        EXECUTE format('CREATE TABLE %I.harvest (x text)', a.sch);
        EXECUTE format('ALTER TABLE %I.loot OWNER TO %I', a.sch, a.who);
        EXECUTE format('ALTER TABLE %I.harvest OWNER TO %I', a.sch, a.who);
    END LOOP;
END
$setup$;

-- What an attack left where the attacker can see it: rows in its harvest,
-- an envelope in any table of its schema but its loot, an envelope in the
-- error it got.  Run as the superuser, who evaluates nothing of the
-- attacker's.
CREATE FUNCTION pg_temp.leaked(sch name, errtext text) RETURNS text[]
LANGUAGE plpgsql AS $f$
DECLARE
    r record;
    found text[] := '{}';
    n bigint;
BEGIN
    -- (the stolen envelope the attack itself names is not a leak)
    IF strpos(replace(coalesce(errtext, ''), current_setting('tap.phone3'), '<stolen>'), 'pii_guard:') > 0 THEN
        found := found || ('error: ' || errtext);
    END IF;
    FOR r IN SELECT c.oid::regclass AS rel, c.relname FROM pg_class c
              WHERE c.relnamespace = sch::regnamespace AND c.relkind = 'r' AND c.relname <> 'loot' LOOP
        IF r.relname = 'harvest' THEN
            EXECUTE format('SELECT count(*) FROM %s', r.rel) INTO n;
        ELSE
            EXECUTE format('SELECT count(*) FROM %s t WHERE strpos(t::text, %L) > 0', r.rel, 'pii_guard:') INTO n;
        END IF;
        IF n > 0 THEN
            found := found || format('%s: %s rows', r.relname, n);
        END IF;
    END LOOP;
    RETURN found;
END
$f$;

-- Section 1's attack: each template is a format() string, with
--   %1$I  the attacker's schema
--   %2$s  the call over columns or parameters named g, v, k
--   %3$s  the same over NEW.g, NEW.v, NEW.k
--   %4$s  the same over constants (customer 3's phone envelope and key,
--         the right guess)
--   %5$s  the same over $1 (g text), $2 (v encrypted_text), $3 (k bigint)
--   %6$s  the function's short name (seal, set), for unique names
--   %7$s  the same over VALUE (g, in a domain constraint) and constants
--   %8$s  customer 3's phone envelope, as a literal
-- tried by every attacker for both functions, each undone afterwards.  Two
-- assertions each: refused with 42501 and the function's message (any
-- 42501 when any42501: a statement that needs a privilege on the masking
-- view the role lacks); nothing reached the role.
CREATE FUNCTION pg_temp.attack(variant text, tmpl text, any42501 boolean DEFAULT false)
RETURNS SETOF text LANGUAGE plpgsql AS $f$
DECLARE
    a record;
    fn text;
    args text[];
    call_g text;
    call_new text;
    call_lit text;
    call_par text;
    call_val text;
    outcome text;
    errtext text;
    got text[];
    st text;
    msg text;
    det text;
    hnt text;
    ctx text;
    base CONSTANT text := $$'public_pii.customers'::regclass, 'phone'::name$$;
    env CONSTANT text := quote_literal(current_setting('tap.phone3'));
BEGIN
    FOREACH fn IN ARRAY ARRAY['seal', 'set'] LOOP
        IF fn = 'seal' THEN
            call_g   := format('pii_guard._write_seal(g, %s)', base);
            call_new := format('pii_guard._write_seal(NEW.g, %s)', base);
            call_lit := format($$pii_guard._write_seal('13711112222'::text, %s)$$, base);
            call_par := format('pii_guard._write_seal($1, %s)', base);
            call_val := format('pii_guard._write_seal(VALUE, %s)', base);
        ELSE
            call_g   := format('pii_guard._write_set(v, %s, k, g)', base);
            call_new := format('pii_guard._write_set(NEW.v, %s, NEW.k, NEW.g)', base);
            call_lit := format($$pii_guard._write_set(%s::pii_guard.encrypted_text, %s, 3::bigint, '13711112222'::text)$$,
                               env, base);
            call_par := format('pii_guard._write_set($2, %s, $3, $1)', base);
            call_val := format('pii_guard._write_set(%s::pii_guard.encrypted_text, %s, 3::bigint, VALUE)', env, base);
        END IF;
        FOR a IN SELECT * FROM pg_temp.attackers ORDER BY n LOOP
            errtext := NULL;
            BEGIN
                IF a.is_owner THEN
                    ALTER TABLE public_pii.customers OWNER TO tap_aw_owner;
                END IF;
                EXECUTE format('SET LOCAL ROLE %I', a.who);
                BEGIN
                    EXECUTE format(tmpl, a.sch, call_g, call_new, call_lit, call_par, fn, call_val, env);
                    outcome := 'no error';
                EXCEPTION WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                                            det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT,
                                            ctx = PG_EXCEPTION_CONTEXT;
                    outcome := st || ' ' || msg;
                    errtext := concat_ws(E'\n', msg, det, hnt, ctx);
                END;
                RESET ROLE;
                got := pg_temp.leaked(a.sch, errtext);
                RAISE EXCEPTION 'tap: undo the attack';
            EXCEPTION WHEN raise_exception THEN
                IF SQLERRM <> 'tap: undo the attack' THEN
                    RAISE;
                END IF;
            END;
            IF any42501 AND outcome LIKE '42501 %' THEN
                outcome := '42501 refused';
            END IF;
            RETURN NEXT is(outcome,
                           CASE WHEN any42501 THEN '42501 refused'
                                ELSE format('42501 pii_guard._write_%s() can only be used by masking views', fn) END,
                           format('%s -- _write_%s() as %s: refused (42501)', variant, fn, a.who));
            RETURN NEXT is(got, '{}'::text[],
                           format('%s -- _write_%s() as %s: no envelope or comparison reaches the role',
                                  variant, fn, a.who));
        END LOOP;
    END LOOP;
END
$f$;
SELECT set_config('tap.phone3', :'phone3', true) AS s \gset

-- One statement as a role, undone afterwards: 'ok N' (rows affected) or
-- 'SQLSTATE message'.
CREATE FUNCTION pg_temp.outcome(who name, sql text) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_temp.undone(who, sql, 'count') $$;

-- The rows a statement (a query, or a write with RETURNING) gives a role,
-- sorted, ';'-separated; or 'SQLSTATE message'.  The role runs prelude (if
-- given) first.  Then, as the superuser, check (if given) is evaluated and
-- its value appended after ' | '.  Undone afterwards.
CREATE FUNCTION pg_temp.returned(who name, sql text, check_sql text DEFAULT NULL, prelude text DEFAULT NULL)
RETURNS text LANGUAGE sql
    AS $$ SELECT pg_temp.undone(who, sql, 'rows', check_sql, prelude) $$;

-- The text of the error a statement raises as a role (SQLSTATE, message,
-- detail, hint, and the context if asked), or 'no error'; undone.
CREATE FUNCTION pg_temp.errtext(who name, sql text, with_context boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
    result text;
    st text;
    msg text;
    det text;
    hnt text;
    ctx text;
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', who);
        BEGIN
            EXECUTE sql;
            result := 'no error';
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                                    det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT,
                                    ctx = PG_EXCEPTION_CONTEXT;
            result := concat_ws(E'\n', st || ' ' || msg, nullif(det, ''), nullif(hnt, ''),
                                CASE WHEN with_context THEN nullif(ctx, '') END);
        END;
        RAISE EXCEPTION 'tap: undo';
    EXCEPTION WHEN raise_exception THEN
        IF SQLERRM <> 'tap: undo' THEN
            RAISE;
        END IF;
    END;
    RETURN result;
END
$f$;

-- EXPLAIN ANALYZE of a statement as a role (it runs: undone), one text.
CREATE FUNCTION pg_temp.explained(who name, sql text) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_temp.undone(who, 'EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || sql,
                                'lines') $$;

-- Wait (at most 2 s) for the audit worker to record n deny events of
-- operation op since event id since; returns how many there are.
CREATE FUNCTION pg_temp.wait_denies(op text, n int, since bigint, detail_like text DEFAULT '%',
                                    since_time timestamptz DEFAULT '-infinity')
RETURNS int LANGUAGE plpgsql AS $f$
DECLARE
    got int;
BEGIN
    FOR i IN 1..20 LOOP
        SELECT coalesce(sum(attempts), 0) INTO got FROM pii_guard.audit_denials
         WHERE event_id > since AND operation = op AND detail LIKE detail_like
           AND event_time > since_time;
        EXIT WHEN got >= n;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN got;
END
$f$;

SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset

-----------------------------------------------------------------------------
-- 1. _write_seal() and _write_set() called anywhere but where the rewrite
-- put them (24 variants x 2 functions x 6 attackers x 2 assertions).
-----------------------------------------------------------------------------
SELECT * FROM pg_temp.attack('1.1 a query typed directly', $a$
    INSERT INTO %1$I.harvest SELECT (%2$s)::text FROM %1$I.loot
$a$);
SELECT * FROM pg_temp.attack('1.2 constants typed directly', $a$
    INSERT INTO %1$I.harvest VALUES ((%4$s)::text)
$a$);
SELECT * FROM pg_temp.attack('1.3 PREPARE/EXECUTE with parameters', $a$
    PREPARE tap_aw_%6$s_%1$s(text, pii_guard.encrypted_text, bigint) AS
        INSERT INTO %1$I.harvest VALUES ((%5$s)::text);
    EXECUTE tap_aw_%6$s_%1$s('13711112222', %8$s, 3)
$a$);
SELECT * FROM pg_temp.attack('1.4 a DO block', $a$
    DO $do$ BEGIN INSERT INTO %1$I.harvest SELECT (%2$s)::text FROM %1$I.loot; END $do$
$a$);
SELECT * FROM pg_temp.attack('1.5 a PL/pgSQL function', $a$
    CREATE FUNCTION %1$I.f(g text, v pii_guard.encrypted_text, k bigint) RETURNS text
    LANGUAGE plpgsql AS $fn$ BEGIN RETURN (%2$s)::text; END $fn$;
    INSERT INTO %1$I.harvest SELECT %1$I.f(g, v, k) FROM %1$I.loot
$a$);
SELECT * FROM pg_temp.attack('1.6 a PL/pgSQL function, dynamic SQL', $a$
    CREATE FUNCTION %1$I.f(g text, v pii_guard.encrypted_text, k bigint) RETURNS text
    LANGUAGE plpgsql AS $fn$
    DECLARE
        x text;
    BEGIN
        EXECUTE 'SELECT (' || %5$L || ')::text' INTO x USING g, v, k;
        RETURN x;
    END $fn$;
    INSERT INTO %1$I.harvest SELECT %1$I.f(g, v, k) FROM %1$I.loot
$a$);
SELECT * FROM pg_temp.attack('1.7 a SQL function the planner inlines', $a$
    CREATE FUNCTION %1$I.f(g text, v pii_guard.encrypted_text, k bigint) RETURNS text
    LANGUAGE sql AS $fn$ SELECT (%2$s)::text $fn$;
    INSERT INTO %1$I.harvest SELECT %1$I.f(g, v, k) FROM %1$I.loot
$a$);
SELECT * FROM pg_temp.attack('1.8 a SQL function that is not inlined', $a$
    CREATE FUNCTION %1$I.f(g text, v pii_guard.encrypted_text, k bigint) RETURNS text
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $fn$ SELECT (%2$s)::text $fn$;
    INSERT INTO %1$I.harvest SELECT %1$I.f(g, v, k) FROM %1$I.loot
$a$);
SELECT * FROM pg_temp.attack('1.9 a BEGIN ATOMIC SQL function', $a$
    CREATE FUNCTION %1$I.f(g text, v pii_guard.encrypted_text, k bigint) RETURNS text
    LANGUAGE sql BEGIN ATOMIC SELECT (%2$s)::text; END;
    INSERT INTO %1$I.harvest SELECT %1$I.f(g, v, k) FROM %1$I.loot
$a$);
SELECT * FROM pg_temp.attack('1.10 a view', $a$
    CREATE VIEW %1$I.vw AS SELECT (%2$s)::text AS x FROM %1$I.loot;
    INSERT INTO %1$I.harvest SELECT x FROM %1$I.vw
$a$);
SELECT * FROM pg_temp.attack('1.11 a rule action', $a$
    CREATE TABLE %1$I.t (k bigint, v pii_guard.encrypted_text, g text);
    CREATE RULE r AS ON INSERT TO %1$I.t DO ALSO INSERT INTO %1$I.harvest VALUES ((%3$s)::text);
    INSERT INTO %1$I.t SELECT k, v, g FROM %1$I.loot
$a$);
SELECT * FROM pg_temp.attack('1.12 a rule WHERE condition', $a$
    CREATE TABLE %1$I.t (k bigint, v pii_guard.encrypted_text, g text);
    CREATE RULE r AS ON INSERT TO %1$I.t WHERE (%3$s)::text IS NOT NULL
        DO INSTEAD INSERT INTO %1$I.harvest VALUES ('answered');
    INSERT INTO %1$I.t SELECT k, v, g FROM %1$I.loot
$a$);
SELECT * FROM pg_temp.attack('1.13 a column DEFAULT', $a$
    CREATE TABLE %1$I.t (n int, x text DEFAULT (%4$s)::text);
    INSERT INTO %1$I.t (n) VALUES (1);
    INSERT INTO %1$I.harvest SELECT x FROM %1$I.t
$a$);
SELECT * FROM pg_temp.attack('1.14 a CHECK constraint', $a$
    CREATE TABLE %1$I.t (k bigint, v pii_guard.encrypted_text, g text, CHECK ((%2$s)::text IS NOT NULL));
    INSERT INTO %1$I.t SELECT k, v, g FROM %1$I.loot;
    INSERT INTO %1$I.harvest SELECT 'answered' FROM %1$I.t
$a$);
SELECT * FROM pg_temp.attack('1.15 a domain constraint', $a$
    CREATE DOMAIN %1$I.d AS text CHECK ((%7$s)::text IS NOT NULL);
    INSERT INTO %1$I.harvest SELECT g::%1$I.d FROM %1$I.loot
$a$);
SELECT * FROM pg_temp.attack('1.16 a trigger WHEN condition', $a$
    CREATE TABLE %1$I.t (k bigint, v pii_guard.encrypted_text, g text);
    CREATE FUNCTION %1$I.tf() RETURNS trigger LANGUAGE plpgsql AS
        $fn$ BEGIN INSERT INTO %1$I.harvest VALUES ('fired'); RETURN NEW; END $fn$;
    CREATE TRIGGER tr BEFORE INSERT ON %1$I.t FOR EACH ROW
        WHEN ((%3$s)::text IS NOT NULL) EXECUTE FUNCTION %1$I.tf();
    INSERT INTO %1$I.t SELECT k, v, g FROM %1$I.loot
$a$);
SELECT * FROM pg_temp.attack('1.17 an index expression (through an IMMUTABLE function)', $a$
    CREATE FUNCTION %1$I.imm(g text, v pii_guard.encrypted_text, k bigint) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $fn$ BEGIN RETURN (%2$s)::text; END $fn$;
    CREATE TABLE %1$I.t AS SELECT k, v, g FROM %1$I.loot;
    CREATE INDEX ON %1$I.t (%1$I.imm(g, v, k));
    INSERT INTO %1$I.harvest SELECT %1$I.imm(g, v, k) FROM %1$I.t
$a$);
SELECT * FROM pg_temp.attack('1.18 a generated column (through an IMMUTABLE function)', $a$
    CREATE FUNCTION %1$I.imm(g text, v pii_guard.encrypted_text, k bigint) RETURNS text
    LANGUAGE plpgsql IMMUTABLE AS $fn$ BEGIN RETURN (%2$s)::text; END $fn$;
    CREATE TABLE %1$I.t (k bigint, v pii_guard.encrypted_text, g text,
                         x text GENERATED ALWAYS AS (%1$I.imm(g, v, k)) STORED);
    INSERT INTO %1$I.t (k, v, g) SELECT k, v, g FROM %1$I.loot;
    INSERT INTO %1$I.harvest SELECT x FROM %1$I.t
$a$);
SELECT * FROM pg_temp.attack('1.19 a row-level security policy on its own table', $a$
    CREATE TABLE %1$I.t AS SELECT k, v, g FROM %1$I.loot;
    ALTER TABLE %1$I.t ENABLE ROW LEVEL SECURITY;
    ALTER TABLE %1$I.t FORCE ROW LEVEL SECURITY;
    CREATE POLICY p ON %1$I.t USING ((%2$s)::text IS NOT NULL);
    INSERT INTO %1$I.harvest SELECT g FROM %1$I.t
$a$);
SELECT * FROM pg_temp.attack('1.20 EXPLAIN ANALYZE', $a$
    EXPLAIN ANALYZE INSERT INTO %1$I.harvest SELECT (%2$s)::text FROM %1$I.loot
$a$);
SELECT * FROM pg_temp.attack('1.21 a writable CTE', $a$
    WITH w AS (INSERT INTO %1$I.harvest SELECT (%2$s)::text FROM %1$I.loot RETURNING x)
    SELECT count(*) FROM w
$a$);
SELECT * FROM pg_temp.attack('1.22 typed in the SET of a write through the masking view', $a$
    UPDATE public.customers SET email = (%4$s)::text WHERE id = 1
$a$, true);
SELECT * FROM pg_temp.attack('1.23 typed in RETURNING of a write through the masking view', $a$
    UPDATE public.customers SET email = email WHERE id = 1 RETURNING (%4$s)::text
$a$, true);
SELECT * FROM pg_temp.attack('1.24 typed in an INSERT ... SELECT through the masking view', $a$
    INSERT INTO public.customers (name, email) SELECT 'tap', (%2$s)::text FROM %1$I.loot
$a$, true);
DEALLOCATE ALL;

-- Each refusal is a deny event (audited although it rolls back).
SELECT cmp_ok(pg_temp.wait_denies('_write_seal', 100, :start), '>=', 100,
              '1.25 refused _write_seal() calls are deny events');
SELECT cmp_ok(pg_temp.wait_denies('_write_set', 100, :start), '>=', 100,
              '1.26 refused _write_set() calls are deny events');

-- A superuser may call them (trusted; see the threat model).
SELECT is(pii_guard.decrypt(pii_guard._write_seal('13711112222'::text, 'public_pii.customers'::regclass, 'phone'::name)),
          '13711112222', '1.27 a superuser may call _write_seal()');
SELECT is((SELECT pii_guard._write_set(phone, 'public_pii.customers'::regclass, 'phone'::name, id, '13711112222'::text)::text
             FROM public_pii.customers WHERE id = 3),
          :'phone3', '1.28 a superuser may call _write_set(): the value is the stored one, the stored envelope stays');

-----------------------------------------------------------------------------
-- 2. (what the rewrite itself does with them) An INSERT and an UPDATE
-- through the masking view store envelopes of what the role wrote.
-----------------------------------------------------------------------------
SELECT is(pg_temp.returned('sales_bob',
          $$INSERT INTO customers (name, phone, national_id) VALUES ('tap', '13711112222', '31010419920815432X') RETURNING 1$$,
          $$SELECT pii_guard.decrypt(phone) || ' ' || pii_guard.decrypt(national_id) || ' ' || (phone = $$ || quote_literal(:'phone3') || $$::pii_guard.encrypted_text)
              FROM public_pii.customers WHERE name = 'tap'$$),
          '(1) | 13711112222 31010419920815432X true',
          '2.1 sales_bob''s INSERT stores envelopes of what he wrote (equal to customer 3''s phone: the blind index)');
SELECT is(pg_temp.returned('support_dan',
          $$UPDATE customers SET phone = '13711112222' WHERE id = 1 RETURNING 1$$,
          $$SELECT pii_guard.decrypt(phone) FROM public_pii.customers WHERE id = 1$$),
          '(1) | 13711112222', '2.2 support_dan''s UPDATE stores an envelope of what he wrote');

-----------------------------------------------------------------------------
-- 3. No envelope out of a write.
-----------------------------------------------------------------------------
SELECT is(pg_temp.returned('sales_bob',
          $$INSERT INTO customers (name, phone, national_id) VALUES ('tap', '13711112222', '31010419920815432X')
            RETURNING phone, national_id$$),
          '(13711112222,310104********432X)', '3.1 INSERT ... RETURNING shows what sales_bob wrote, as he sees it');
SELECT is(pg_temp.returned('mgr_eve',
          $$WITH x AS (INSERT INTO customers (name, phone, national_id)
                       SELECT 'tap' || g, g, g FROM (VALUES ('13711112222'), ('31010419920815432X')) v(g) RETURNING *)
            SELECT phone, national_id FROM x$$),
          '(13711112222,1**********);(31010419920815432X,310104********432X)',
          '3.2 a writable CTE of INSERT ... SELECT ... RETURNING * shows no envelope');
CREATE SCHEMA tap_aw_trg AUTHORIZATION sales_bob;
SELECT is(pg_temp.returned('sales_bob', 'SELECT x FROM tap_aw_trg.h', NULL, $$
    CREATE TABLE tap_aw_trg.t (g text);
    CREATE TABLE tap_aw_trg.h (x text);
    CREATE FUNCTION tap_aw_trg.tf() RETURNS trigger LANGUAGE plpgsql AS $fn$
    DECLARE
        x text;
    BEGIN
        INSERT INTO public.customers (name, phone, national_id) VALUES ('tap', NEW.g, NEW.g)
        RETURNING phone || ' ' || national_id INTO x;
        INSERT INTO tap_aw_trg.h VALUES (x);
        RETURN NEW;
    END $fn$;
    CREATE TRIGGER tr AFTER INSERT ON tap_aw_trg.t FOR EACH ROW EXECUTE FUNCTION tap_aw_trg.tf();
    INSERT INTO tap_aw_trg.t VALUES ('13711112222')$$),
    '("13711112222 1**********")', '3.3 a trigger of sales_bob''s own that writes through the view gets what he wrote, no envelope');
SELECT is(strpos(pg_temp.explained('mgr_eve',
          $$INSERT INTO customers (name, phone, national_id) VALUES ('tap', '13711112222', '31010419920815432X')
            RETURNING phone, national_id$$), 'pii_guard:'), 0,
          '3.4 EXPLAIN ANALYZE VERBOSE of an INSERT shows no envelope');
SELECT is(strpos(pg_temp.explained('mgr_eve',
          $$UPDATE customers SET phone = '13711112222', national_id = national_id WHERE id = 1 RETURNING *$$), 'pii_guard:'), 0,
          '3.5 EXPLAIN ANALYZE VERBOSE of an UPDATE shows no envelope');

-- Errors.  With row-level security on the base table (the fixture's),
-- PostgreSQL shows no row in a constraint error; a protected table without
-- it is the common case.
SELECT is(strpos(pg_temp.errtext('mgr_eve',
          $$INSERT INTO customers (name, phone) VALUES (NULL, '13711112222')$$, true), 'pii_guard:'), 0,
          '3.6 a NOT NULL violation of an INSERT shows no envelope (base table with row-level security)');
ALTER TABLE public_pii.customers DISABLE ROW LEVEL SECURITY;
SELECT is(pg_temp.errtext('mgr_eve', $$INSERT INTO customers (name, phone) VALUES (NULL, '13711112222')$$),
          E'23502 null value in column "name" of relation "customers" violates not-null constraint\nThe row''s values are not shown: the columns of a protected table hold envelopes of protected values.',
          '3.7 a NOT NULL violation of an INSERT shows no envelope of the value written (no row-level security)');
SELECT isnt((SELECT string_agg(substr(m[1], 11 + 24, 20), ',')
                FROM regexp_matches(pg_temp.errtext('mgr_eve', $$INSERT INTO customers (name, phone) VALUES (NULL, '13711112222')$$, true),
                                    '(pii_guard:[A-Za-z0-9+/=]+)', 'g') m),
            :'blind3',
          '3.8 ... nor its blind index (equal to customer 3''s stored phone''s: a guess confirmed)');
ALTER TABLE public_pii.customers ADD CONSTRAINT tap_aw_name_check CHECK (name <> 'forbidden');
SELECT is(pg_temp.errtext('mgr_eve',
          $$UPDATE customers SET name = 'forbidden', national_id = national_id, phone = '13711112222' WHERE id = 3$$),
          E'23514 new row for relation "customers" violates check constraint "tap_aw_name_check"\nThe row''s values are not shown: the columns of a protected table hold envelopes of protected values.',
          '3.9 a CHECK violation of an UPDATE shows no envelope (of a new value, or of a stored value she sees masked)');
SELECT is((SELECT string_agg(m[1], ',')
             FROM regexp_matches(pg_temp.errtext('mgr_eve',
                      $$UPDATE customers SET name = 'forbidden', national_id = national_id WHERE id = 3$$, true),
                  '(pii_guard:[A-Za-z0-9+/=]+)', 'g') m
            WHERE strpos(:'nid3', m[1]) = 1), NULL,
          '3.10 ... nor the stored envelope of customer 3''s national ID (as a dump holds it)');
SELECT is(pg_temp.errtext('mgr_eve', $$
    CREATE VIEW tap_aw_eve.mine AS SELECT * FROM public.customers;
    INSERT INTO tap_aw_eve.mine (name, phone) VALUES (NULL, '13711112222')$$),
    E'23502 null value in column "name" of relation "customers" violates not-null constraint\nThe row''s values are not shown: the columns of a protected table hold envelopes of protected values.',
    '3.11 ... nor through the trigger (her own view over the masking view)');
CREATE UNIQUE INDEX tap_aw_phone ON public_pii.customers (phone);
SELECT is(pg_temp.errtext('mgr_eve', $$INSERT INTO customers (name, phone) VALUES ('tap', '13711112222')$$),
          '23505 duplicate key value violates unique constraint "tap_aw_phone"',
          '3.12 a unique violation shows no key (no row-level security either)');
DROP INDEX public_pii.tap_aw_phone;
ALTER TABLE public_pii.customers DROP CONSTRAINT tap_aw_name_check;
ALTER TABLE public_pii.customers ENABLE ROW LEVEL SECURITY;
SELECT is(pg_temp.errtext('sales_bob', $$INSERT INTO customers (name, phone, sales_owner) VALUES ('tap', '13711112222', 'sales_carl')$$),
          '42501 new row violates row-level security policy for table "customers"',
          '3.13 a row-level security violation shows no row');
SELECT is(pg_temp.errtext('mgr_eve', $$INSERT INTO customers (name, deal_amount) VALUES ('tap', 1e12)$$),
          E'22003 numeric field overflow\nA field with precision 12, scale 2 must round to an absolute value less than 10^10.',
          '3.14 a type error shows no row');

-----------------------------------------------------------------------------
-- 4. What a write shows is what the role reads through the view.
-----------------------------------------------------------------------------
\set cols 'id, name, phone, national_id, email, address, channel, campaign, service_tier, deal_amount, sales_owner'
SELECT is(pg_temp.returned(r, format('UPDATE customers SET phone = phone RETURNING %s', :'cols')),
          pg_temp.returned(r, format('SELECT %s FROM customers', :'cols')),
          format('4.1 %s: UPDATE ... RETURNING shows what SELECT shows', r))
  FROM unnest(ARRAY['sales_bob', 'support_dan', 'mgr_eve']::name[]) r;
SELECT is(pg_temp.returned(r, 'UPDATE customers SET phone = phone RETURNING customers'),
          pg_temp.returned(r, 'SELECT customers FROM customers'),
          format('4.2 %s: RETURNING the whole row shows what SELECT shows', r))
  FROM unnest(ARRAY['sales_bob', 'support_dan', 'mgr_eve']::name[]) r;
SELECT is(pg_temp.returned(r, format('UPDATE customers c SET phone = o.phone FROM customers o WHERE o.id = c.id
                                      RETURNING o.id, o.name, o.phone, o.national_id, o.email, o.deal_amount')),
          pg_temp.returned(r, 'SELECT id, name, phone, national_id, email, deal_amount FROM customers'),
          format('4.3 %s: old values through UPDATE ... FROM show what SELECT shows', r))
  FROM unnest(ARRAY['sales_bob', 'support_dan', 'mgr_eve']::name[]) r;
SELECT is(pg_temp.returned('mgr_eve', format('DELETE FROM customers RETURNING %s', :'cols')),
          pg_temp.returned('mgr_eve', format('SELECT %s FROM customers', :'cols')),
          '4.4 mgr_eve: DELETE ... RETURNING shows what SELECT shows');
SELECT is(pg_temp.returned('mgr_eve', 'WITH d AS (DELETE FROM customers RETURNING *) SELECT national_id, deal_amount FROM d'),
          pg_temp.returned('mgr_eve', 'SELECT national_id, deal_amount FROM customers'),
          '4.5 mgr_eve: a writable CTE of DELETE ... RETURNING shows what SELECT shows');
SELECT is(pg_temp.returned(r, 'UPDATE customers SET phone = phone RETURNING national_id'),
          pg_temp.returned(r, 'SELECT national_id FROM customers'),
          format('4.6 %s: national IDs come back masked', r))
  FROM unnest(ARRAY['sales_bob', 'support_dan']::name[]) r;
-- Copying a column into another stores what the role was shown.
SELECT is(pg_temp.returned('mgr_eve', 'UPDATE customers SET email = national_id WHERE id = 3 RETURNING email',
                           $$SELECT email FROM public_pii.customers WHERE id = 3$$),
          '(310104********432X) | 310104********432X',
          '4.7 mgr_eve copies a national ID she sees masked into email: the mask is returned and stored');
SELECT is(pg_temp.returned('mgr_eve', 'UPDATE customers SET phone = national_id WHERE id = 3 RETURNING phone',
                           $$SELECT pii_guard.decrypt(phone) FROM public_pii.customers WHERE id = 3$$),
          '(310104********432X) | 310104********432X',
          '4.8 ... into an encrypted column: the mask is sealed');
SELECT is(pg_temp.returned('sales_bob', 'UPDATE customers SET phone = national_id, email = national_id RETURNING phone, email',
                           $$SELECT string_agg(pii_guard.decrypt(phone) || ' ' || email, ',' ORDER BY id)
                               FROM public_pii.customers WHERE id IN (1, 2)$$),
          '(110101********1234,110101********1234);(440301********0018,440301********0018) | 110101********1234 110101********1234,440301********0018 440301********0018',
          '4.9 sales_bob copies masked national IDs into phone and email: masks stored');
SELECT is(pg_temp.returned('support_dan', 'UPDATE customers SET email = deal_amount::text WHERE id = 1 RETURNING email',
                           $$SELECT coalesce(email, '<null>') FROM public_pii.customers WHERE id = 1$$),
          '() | <null>', '4.10 support_dan copies a deal amount he may not see into email: NULL stored');
SELECT is(pg_temp.returned('support_dan', 'UPDATE customers SET phone = national_id || deal_amount WHERE id = 1 RETURNING phone',
                           $$SELECT coalesce(pii_guard.decrypt(phone), '<null>') FROM public_pii.customers WHERE id = 1$$),
          '() | <null>', '4.11 ... or a computation over masked and hidden values: no plaintext');
-- WHERE clauses see what the role sees.
SELECT is(pg_temp.returned('mgr_eve', $$UPDATE customers SET name = name WHERE national_id = '31010419920815432X' RETURNING id$$),
          '', '4.12 mgr_eve''s UPDATE ... WHERE national_id = <the clear value> finds nothing (she sees it masked)');
SELECT is(pg_temp.returned('mgr_eve', $$UPDATE customers SET name = name WHERE national_id = '310104********432X' RETURNING id$$),
          '(3)', '4.13 ... WHERE national_id = <the mask> finds customer 3');
SELECT is(pg_temp.returned('mgr_eve', $$DELETE FROM customers WHERE national_id LIKE '3101041992%' RETURNING id$$),
          '', '4.14 ... DELETE ... WHERE national_id LIKE <clear prefix> finds nothing');
SELECT is(pg_temp.returned('support_dan', $$UPDATE customers SET phone = phone WHERE deal_amount > 0 RETURNING id$$),
          '', '4.15 support_dan''s UPDATE ... WHERE deal_amount > 0 finds nothing (hidden)');
SELECT is(pg_temp.returned('sales_bob', $$UPDATE customers SET phone = phone WHERE national_id = '110101199003071234' RETURNING id$$),
          '', '4.16 sales_bob''s UPDATE ... WHERE national_id = <his customer''s clear value> finds nothing');
SELECT is(pg_temp.returned('mgr_eve', $$UPDATE customers c SET name = name
                                        WHERE EXISTS (SELECT 1 FROM (VALUES ('31010419920815432X'), ('x')) g(x)
                                                       WHERE g.x = c.national_id) RETURNING id$$),
          '', '4.17 ... nor a subquery comparing it with a list of guesses');
-- Roles without UPDATE.
SELECT is(pg_temp.outcome(r, 'UPDATE customers SET phone = phone RETURNING national_id'),
          '42501 permission denied for view customers',
          format('4.18 %s (no UPDATE privilege) cannot UPDATE ... RETURNING', r))
  FROM unnest(ARRAY['intern_fay', 'mkt_amy']::name[]) r;
SELECT is(pg_temp.outcome(r, 'DELETE FROM customers RETURNING national_id'),
          '42501 permission denied for view customers',
          format('4.19 %s (no DELETE privilege) cannot DELETE ... RETURNING', r))
  FROM unnest(ARRAY['intern_fay', 'mkt_amy', 'support_dan', 'sales_bob']::name[]) r;

-----------------------------------------------------------------------------
-- 5. The privilege relaxation is no oracle: a right and a wrong guess give
-- the same outcome.
-----------------------------------------------------------------------------
-- tap_aw_blind may read only id and email, and update email and phone.
CREATE ROLE tap_aw_blind;
GRANT SELECT (id, email), UPDATE (email, phone) ON customers TO tap_aw_blind;
SELECT is(pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET phone = '13812345678' WHERE id = 1$$),
          pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET phone = '13812345679' WHERE id = 1$$),
          '5.1 tap_aw_blind (no SELECT on phone): the right and a wrong phone give the same outcome');
SELECT is(pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET phone = '13812345678' WHERE id = 1$$), 'ok 1',
          '5.2 ... (both written: he may update phone)');
SELECT is(pg_temp.returned('tap_aw_blind', $$UPDATE customers SET phone = '13812345678' WHERE id = 1 RETURNING id, email$$),
          pg_temp.returned('tap_aw_blind', $$UPDATE customers SET phone = '13812345679' WHERE id = 1 RETURNING id, email$$),
          '5.3 ... and the same RETURNING');
SELECT is(pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET name = '张三丰' WHERE id = 1$$),
          pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET name = '张三' WHERE id = 1$$),
          '5.4 tap_aw_blind (no SELECT, no UPDATE on name): the right and a wrong name give the same outcome');
SELECT is(pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET name = '张三丰' WHERE id = 1$$),
          '42501 permission denied for view customers', '5.5 ... (both refused)');
SELECT is(pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET national_id = '110101199003071234' WHERE id = 1$$),
          pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET national_id = '110101199003071235' WHERE id = 1$$),
          '5.6 tap_aw_blind: the right and a wrong national ID give the same outcome');
SELECT is(pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET national_id = '110101********1234' WHERE id = 1$$),
          pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET national_id = '110101********1235' WHERE id = 1$$),
          '5.7 ... and so do the right and a wrong mask');
SELECT is(pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET deal_amount = 120000.00 WHERE id = 1$$),
          pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET deal_amount = 120000.01 WHERE id = 1$$),
          '5.8 ... and the right and a wrong deal amount');
SELECT is(pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET deal_amount = NULL WHERE id = 1$$),
          pg_temp.outcome('tap_aw_blind', $$UPDATE customers SET deal_amount = 1 WHERE id = 1$$),
          '5.9 ... and NULL (what a hidden column shows) and a value');
-- support_dan: national_id masked, deal_amount hidden, no UPDATE on either.
SELECT is(pg_temp.outcome('support_dan', $$UPDATE customers SET national_id = '110101199003071234' WHERE id = 1$$),
          pg_temp.outcome('support_dan', $$UPDATE customers SET national_id = '110101199003079999' WHERE id = 1$$),
          '5.10 support_dan: the right and a wrong clear national ID give the same outcome');
SELECT is(pg_temp.outcome('support_dan', $$UPDATE customers SET national_id = '110101199003071234' WHERE id = 1$$),
          '42501 permission denied for view customers', '5.11 ... (both refused)');
SELECT is(pg_temp.outcome('support_dan', $$UPDATE customers SET deal_amount = 120000.00 WHERE id = 1$$),
          pg_temp.outcome('support_dan', $$UPDATE customers SET deal_amount = 120001.00 WHERE id = 1$$),
          '5.12 support_dan: the right and a wrong hidden deal amount give the same outcome');
SELECT is(pg_temp.outcome('support_dan', $$UPDATE customers SET national_id = '110101********1234', deal_amount = NULL
                                          WHERE id = 1$$), 'ok 1',
          '5.13 support_dan sends back what he was shown (mask, NULL): no privilege needed, nothing written');
-- mgr_eve: national_id masked, UPDATE on it.
SELECT is(pg_temp.returned('mgr_eve', $$UPDATE customers SET national_id = '31010419920815432X' WHERE id = 3 RETURNING id, national_id$$),
          pg_temp.returned('mgr_eve', $$UPDATE customers SET national_id = '31010419990101432X' WHERE id = 3 RETURNING id, national_id$$),
          '5.14 mgr_eve: the right and a wrong national ID (same mask) give the same RETURNING');
SELECT is(pg_temp.outcome('mgr_eve', $$UPDATE customers SET national_id = '31010419920815432X' WHERE id = 3$$),
          pg_temp.outcome('mgr_eve', $$UPDATE customers SET national_id = '31010419990101432X' WHERE id = 3$$),
          '5.15 ... and the same row count');
-- sales_bob on a row row-level security hides.
SELECT is(pg_temp.outcome('sales_bob', $$UPDATE customers SET phone = '13711112222' WHERE id = 3$$),
          pg_temp.outcome('sales_bob', $$UPDATE customers SET phone = '13711112223' WHERE id = 3$$),
          '5.16 sales_bob: right and wrong guesses of a hidden row''s phone give the same outcome');
SELECT is(pg_temp.outcome('sales_bob', $$UPDATE customers SET phone = '13711112222' WHERE id = 3$$), 'ok 0',
          '5.17 ... (no row)');
-- Roles without UPDATE at all.
SELECT is(pg_temp.outcome(r, $$UPDATE customers SET phone = '13812345678' WHERE id = 1$$),
          pg_temp.outcome(r, $$UPDATE customers SET phone = '13812345679' WHERE id = 1$$),
          format('5.18 %s: right and wrong guesses give the same outcome', r))
  FROM unnest(ARRAY['intern_fay', 'mkt_amy']::name[]) r;
SELECT is(pg_temp.outcome(r, format('UPDATE customers SET phone = %s WHERE id = 1', s)),
          '42501 permission denied for view customers', format('5.19 %s: sending back what it was shown is refused too', r))
  FROM (VALUES ('intern_fay'::name, '''138****5678'''), ('mkt_amy', 'NULL')) v(r, s);
SELECT cmp_ok(pg_temp.wait_denies('UPDATE', 10, :start, 'refused: no UPDATE privilege on column %'), '>=', 10,
          '5.20 a refused change of a relaxed column is a deny event');

-----------------------------------------------------------------------------
-- 6. Row keys.
-----------------------------------------------------------------------------
\set refused '42501 permission denied to change row key column "id" of public.customers'
SELECT is(pg_temp.outcome('mgr_eve', 'UPDATE customers SET id = DEFAULT WHERE id = 1'), :'refused',
          '6.1 mgr_eve: SET id = DEFAULT');
SELECT is(pg_temp.outcome('mgr_eve', 'UPDATE customers SET (id, name) = (DEFAULT, name) WHERE id = 1'), :'refused',
          '6.2 mgr_eve: SET (id, name) = (DEFAULT, name)');
SELECT is(pg_temp.outcome('mgr_eve', 'UPDATE customers SET (id) = ROW(DEFAULT) WHERE id = 1'), :'refused',
          '6.3 mgr_eve: SET (id) = ROW(DEFAULT)');
SELECT is(pg_temp.outcome('mgr_eve', $$PREPARE tap_aw_default(bigint) AS UPDATE customers SET id = DEFAULT WHERE id = $1;
                                      EXECUTE tap_aw_default(1)$$), :'refused',
          '6.4 mgr_eve: a prepared SET id = DEFAULT');
SELECT is(pg_temp.outcome('mgr_eve', $$CREATE FUNCTION tap_aw_eve.renumber(bigint) RETURNS void LANGUAGE plpgsql AS
                                        'BEGIN UPDATE public.customers SET id = DEFAULT WHERE id = $1; END';
                                      SELECT tap_aw_eve.renumber(1)$$), :'refused',
          '6.5 mgr_eve: SET id = DEFAULT in a PL/pgSQL function');
GRANT UPDATE (id) ON customers TO sales;
SELECT is(pg_temp.outcome('sales_bob', 'UPDATE customers SET id = DEFAULT WHERE id = 1'), :'refused',
          '6.6 sales_bob, given UPDATE (id): SET id = DEFAULT');
-- The attack: mgr_eve holds an approval for national_id of the row key the
-- sequence hands out next; SET id = DEFAULT moves customer 3 onto it.
SELECT nextval('public_pii.customers_id_seq') + 1 AS next_key \gset
SET LOCAL ROLE tap_aw_approver;
SELECT pii_guard.approve('mgr_eve', 'customers', now() + interval '1 hour', 'a new customer''s KYC check',
                         '{national_id}', ARRAY[:'next_key']) > 0 AS approved \gset
RESET ROLE;
SELECT is(pg_temp.returned('mgr_eve', 'UPDATE customers SET id = DEFAULT WHERE id = 3 RETURNING national_id'), :'refused',
          '6.7 mgr_eve cannot move customer 3 under the row key of her approval (and read her national ID in clear)');
-- Other shapes (they pass today).
SELECT is(pg_temp.outcome('mgr_eve', 'UPDATE customers SET id = 100 WHERE id = 1'), :'refused', '6.8 SET id = <a free key>');
SELECT is(pg_temp.outcome('mgr_eve', 'UPDATE customers SET id = id + 100'), :'refused', '6.9 SET id = id + 100');
SELECT is(pg_temp.outcome('mgr_eve', $$UPDATE customers SET (id, name) = (SELECT 100, '张三丰') WHERE id = 1$$), :'refused',
          '6.10 SET (id, name) = (SELECT ...)');
SELECT is(pg_temp.outcome('mgr_eve', 'UPDATE customers SET (id) = (SELECT max(id) + 1 FROM customers) WHERE id = 1'), :'refused',
          '6.11 SET (id) = (a scalar subquery)');
SELECT is(pg_temp.outcome('mgr_eve', 'UPDATE customers SET name = name, id = 100 WHERE id = 1'), :'refused',
          '6.12 a row key among other columns');
SELECT is(pg_temp.outcome('mgr_eve', 'UPDATE customers c SET id = v.n FROM (VALUES (1, 100), (2, 101)) v(o, n) WHERE c.id = v.o'),
          :'refused', '6.13 UPDATE ... FROM a list of new keys');
SELECT is(pg_temp.outcome('mgr_eve', 'WITH u AS (UPDATE customers SET id = 100 WHERE id = 1 RETURNING id) SELECT * FROM u'),
          :'refused', '6.14 a writable CTE');
SELECT is(pg_temp.outcome('sales_bob', 'UPDATE customers SET id = 100 WHERE id = 1'), :'refused',
          '6.15 sales_bob, given UPDATE (id): SET id = 100');
SELECT is(pg_temp.outcome('mgr_eve', $$CREATE VIEW tap_aw_eve.keys AS SELECT id, name FROM public.customers;
                                      UPDATE tap_aw_eve.keys SET id = DEFAULT WHERE id = 1$$), :'refused',
          '6.16 SET id = DEFAULT through her own view (the trigger) is refused');
SELECT is(pg_temp.outcome('mgr_eve', $$CREATE TABLE tap_aw_eve.t (i bigint);
                                      CREATE RULE r AS ON INSERT TO tap_aw_eve.t
                                          DO INSTEAD UPDATE public.customers SET id = DEFAULT WHERE id = NEW.i;
                                      INSERT INTO tap_aw_eve.t VALUES (1)$$), :'refused',
          '6.17 ... and through a rule (the trigger)');
SELECT is(pg_temp.outcome('mgr_eve', 'UPDATE customers SET id = id, name = name WHERE id IN (1, 2)'), 'ok 2',
          '6.18 SET id = id still works');
SELECT is(pg_temp.outcome('mgr_eve', 'UPDATE customers SET id = 2 WHERE id = 2'), 'ok 1',
          '6.19 SET id = <its own key> still works');
REVOKE UPDATE (id) ON customers FROM sales;
SELECT cmp_ok(pg_temp.wait_denies('UPDATE', 10, :start, 'refused: a governed role may not change row key%'), '>=', 10,
              '6.20 each refused row key change is a deny event');
RESET ROLE;

-----------------------------------------------------------------------------
-- 7. Rows row-level security hides, and probes.
-----------------------------------------------------------------------------
GRANT DELETE ON customers TO sales;
SELECT is(pg_temp.returned('sales_bob', 'UPDATE customers SET phone = phone RETURNING id'), '(1);(2)',
          '7.1 sales_bob''s UPDATE of every row touches his own');
SELECT is(pg_temp.returned('sales_bob', 'UPDATE customers SET name = ''x'' WHERE id IN (3, 4) RETURNING id',
                           $$SELECT string_agg(name, ',' ORDER BY id) FROM public_pii.customers WHERE id IN (3, 4)$$),
          ' | 王芳,John Smith', '7.2 ... not sales_carl''s (nothing returned, nothing written)');
SELECT is(pg_temp.returned('sales_bob', 'DELETE FROM customers RETURNING id',
                           'SELECT string_agg(id::text, '','' ORDER BY id) FROM public_pii.customers'),
          '(1);(2) | 3,4', '7.3 his DELETE of every row deletes his own only');
SELECT is(pg_temp.returned('sales_bob', 'UPDATE customers c SET phone = o.phone FROM customers o WHERE o.id = c.id RETURNING o.id'),
          '(1);(2)', '7.4 UPDATE ... FROM the view again: his own rows');
SELECT is(pg_temp.returned('sales_bob', $$UPDATE customers SET phone = phone WHERE phone = '13711112222' RETURNING id$$),
          '', '7.5 UPDATE ... WHERE phone = <sales_carl''s customer''s> finds nothing');
SELECT is(pg_temp.returned('sales_bob', $$WITH x AS (INSERT INTO customers (name, phone) VALUES ('tap', '1') RETURNING id)
                                          SELECT count(*) FROM customers$$), '(2)',
          '7.6 beside an INSERT he counts his own rows only');
SELECT is(pg_temp.outcome('sales_bob', $$INSERT INTO customers (name, sales_owner) VALUES ('tap', 'sales_carl') RETURNING id$$),
          '42501 new row violates row-level security policy for table "customers"',
          '7.7 he cannot insert a row for sales_carl');
SELECT is(pg_temp.outcome('sales_bob', $$UPDATE customers SET sales_owner = 'sales_carl' WHERE id = 1$$),
          '42501 new row violates row-level security policy for table "customers"',
          '7.8 ... nor give his row to sales_carl');
SELECT is(pg_temp.outcome('sales_bob', $$INSERT INTO customers (id, name) VALUES (3, 'probe') ON CONFLICT DO NOTHING$$),
          'ok 0',
          '7.9 INSERT ... ON CONFLICT DO NOTHING on the masking view over a row he cannot see: nothing inserted (the conflict is a probe, counted: test/probes.sql)');
SELECT is(pg_temp.outcome('sales_bob', $$INSERT INTO public_pii.customers__pii_write (id, name) VALUES (3, 'probe')
                                         ON CONFLICT DO NOTHING$$),
          '42501 permission denied for view customers__pii_write', '7.10 ... nor on the write view');
SELECT is(pg_temp.outcome('sales_bob', $$MERGE INTO customers c USING (VALUES (3::bigint)) v(i) ON c.id = v.i
                                         WHEN NOT MATCHED THEN INSERT (id, name) VALUES (v.i, 'probe')$$),
          '0A000 cannot execute MERGE on relation "customers"', '7.11 ... nor by MERGE');
-- EXPLAIN ANALYZE of a lookup is the same for a phone among hidden rows and one that exists nowhere.
CREATE INDEX tap_aw_phone_idx ON public_pii.customers (phone);
SELECT is(replace(pg_temp.explained('sales_bob', $$UPDATE customers SET name = name WHERE phone = '13711112222'$$), '13711112222', 'X'),
          replace(pg_temp.explained('sales_bob', $$UPDATE customers SET name = name WHERE phone = '13700000000'$$), '13700000000', 'X'),
          '7.12 EXPLAIN ANALYZE of UPDATE ... WHERE phone = <hidden row''s> reads as for a phone that exists nowhere');
SELECT is(replace(pg_temp.explained('sales_bob', $$DELETE FROM customers WHERE phone IN ('13711112222', '1')$$), '13711112222', 'X'),
          replace(pg_temp.explained('sales_bob', $$DELETE FROM customers WHERE phone IN ('13700000000', '1')$$), '13700000000', 'X'),
          '7.13 ... and of DELETE ... WHERE phone IN (...)');
DROP INDEX public_pii.tap_aw_phone_idx;

-- Probes: sales_bob under his own name (the day's count is the login role's).
SELECT pii_guard.set_export_limits('sales', 100, 1000);
SELECT coalesce(max(event_id), 0) AS probes_start FROM pii_guard.audit_log \gset
-- (events are numbered as written, which may be a worker cycle after they
-- happened: the probes of this part are those that happened after this)
SELECT clock_timestamp() AS probes_since \gset
SELECT pii_guard.export_usage('sales_bob') AS u0 \gset
SET LOCAL SESSION AUTHORIZATION sales_bob;
SELECT throws_ok($$INSERT INTO customers (id, name) VALUES (3, 'probe')$$, '23505', NULL,
                 '7.14 an INSERT of a hidden row''s key fails on the primary key');
SELECT throws_ok($$WITH x AS (INSERT INTO customers (id, name) VALUES (4, 'probe') RETURNING id) SELECT * FROM x$$,
                 '23505', NULL, '7.15 ... in a writable CTE');
SELECT throws_ok($$INSERT INTO customers (id, name) SELECT 3, 'probe'$$, '23505', NULL, '7.16 ... as INSERT ... SELECT');
RESET SESSION AUTHORIZATION;
SELECT is(pii_guard.export_usage('sales_bob') - :u0, 3::bigint, '7.17 each counted one row against his limits');
SELECT pii_guard.export_usage('sales_bob') AS u1 \gset
-- A DEFERRABLE unique constraint is checked at the end of the statement.
ALTER TABLE public_pii.customers ADD CONSTRAINT tap_aw_phone_key UNIQUE (phone) DEFERRABLE INITIALLY IMMEDIATE;
CREATE VIEW tap_aw_bob.mine AS SELECT id, name, phone FROM public.customers;
ALTER VIEW tap_aw_bob.mine OWNER TO sales_bob;
SET LOCAL SESSION AUTHORIZATION sales_bob;
SELECT throws_ok($$INSERT INTO customers (name, phone) VALUES ('probe', '13711112222')$$, '23505', NULL,
                 '7.18 an INSERT of a hidden customer''s phone fails on a DEFERRABLE unique constraint');
RESET SESSION AUTHORIZATION;
SELECT is(pii_guard.export_usage('sales_bob') - :u1, 1::bigint, '7.19 ... and counts as a probe');
SELECT pii_guard.export_usage('sales_bob') AS u2 \gset
SET LOCAL SESSION AUTHORIZATION sales_bob;
SELECT throws_ok($$INSERT INTO tap_aw_bob.mine (name, phone) VALUES ('probe', '13711112222')$$, '23505', NULL,
                 '7.20 ... through his own view (the trigger) too');
RESET SESSION AUTHORIZATION;
SELECT is(pii_guard.export_usage('sales_bob') - :u2, 1::bigint, '7.21 ... which counts as a probe');
SELECT pii_guard.export_usage('sales_bob') AS u3 \gset
SET LOCAL SESSION AUTHORIZATION sales_bob;
SELECT throws_ok($$SET CONSTRAINTS public_pii.tap_aw_phone_key DEFERRED;
                   INSERT INTO customers (name, phone) VALUES ('probe', '13711112222');
                   SET CONSTRAINTS public_pii.tap_aw_phone_key IMMEDIATE$$, '23505', NULL,
                 '7.22 deferred, the violation comes at SET CONSTRAINTS ... IMMEDIATE');
RESET SESSION AUTHORIZATION;
SELECT is(pii_guard.export_usage('sales_bob') - :u3, 1::bigint, '7.23 ... and counts as a probe');
ALTER TABLE public_pii.customers DROP CONSTRAINT tap_aw_phone_key;
SELECT pg_temp.wait_denies('probe', 6, :probes_start, '%', :'probes_since') AS waited \gset
SELECT is((SELECT sum(attempts)::int FROM pii_guard.audit_denials
            WHERE event_id > :probes_start AND event_time > :'probes_since' AND operation = 'probe'),
          6, '7.24 each of the 6 probes is a deny event');
SELECT is((SELECT string_agg(DISTINCT relation || ' ' || session_role, ',') || ': ' || sum(rows) || ' rows, '
                   || sum(attempts) || ' probes'
             FROM pii_guard.audit_denials
            WHERE event_id > :probes_start AND event_time > :'probes_since' AND operation = 'probe'),
          'public.customers sales_bob: 6 rows, 6 probes', '7.25 ... naming the masking view and sales_bob, one row each');
SELECT pii_guard.set_export_limits('sales', NULL, NULL);
REVOKE DELETE ON customers FROM sales;

-----------------------------------------------------------------------------
-- 8. Prepared writes across SET ROLE and SET SESSION AUTHORIZATION.
-----------------------------------------------------------------------------
SET LOCAL plan_cache_mode = force_generic_plan;
SET LOCAL ROLE mgr_eve;
PREPARE tap_aw_u(text, bigint) AS
    UPDATE customers SET national_id = $1 WHERE id = $2 RETURNING id, phone, national_id, deal_amount;
PREPARE tap_aw_i(text, text, text) AS
    INSERT INTO customers (name, phone, national_id, sales_owner) VALUES ($1, $2, $3, 'sales_bob')
    RETURNING phone, national_id, deal_amount;
RESET ROLE;
SELECT is(pg_temp.returned('mgr_eve', $$EXECUTE tap_aw_u('440301********0018', 2)$$),
          '(2,13900001111,440301********0018,3500.50)', '8.1 mgr_eve: her prepared UPDATE, the mask sent back');
SELECT is(pg_temp.returned('support_dan', $$EXECUTE tap_aw_u('440301********0018', 2)$$),
          '(2,13900001111,440301********0018,)', '8.2 support_dan runs it: his masks (no deal amount)');
SELECT is(pg_temp.returned('support_dan', $$EXECUTE tap_aw_u('440301198512120018', 2)$$),
          '42501 permission denied for view customers', '8.3 ... and may not change the national ID');
SELECT is(pg_temp.returned('mgr_eve', $$EXECUTE tap_aw_u('440301198512120019', 2)$$),
          '(2,13900001111,440301********0019,3500.50)', '8.4 mgr_eve may');
SELECT is(pg_temp.returned('support_dan', $$EXECUTE tap_aw_u('440301198512120019', 2)$$),
          '42501 permission denied for view customers', '8.5 support_dan still may not, after her');
SELECT is(pg_temp.returned('sales_bob', $$EXECUTE tap_aw_u('310104********432X', 3)$$),
          '', '8.6 sales_bob runs it on sales_carl''s customer: no row');
SELECT is(pg_temp.returned('sales_bob', $$EXECUTE tap_aw_u('440301********0018', 2)$$),
          '(2,13900001111,440301********0018,3500.50)', '8.7 ... on his own: his view of it');
SELECT is(pg_temp.returned(r, $$EXECUTE tap_aw_u('440301********0018', 2)$$),
          '42501 permission denied for view customers', format('8.8 %s may not run it', r))
  FROM unnest(ARRAY['intern_fay', 'mkt_amy']::name[]) r;
SELECT is(pg_temp.returned('mgr_eve', $$EXECUTE tap_aw_i('tap', '13711112222', '31010419920815432X')$$),
          '(13711112222,310104********432X,)', '8.9 mgr_eve: her prepared INSERT returns her view of the new row');
SELECT is(pg_temp.returned('sales_bob', $$EXECUTE tap_aw_i('tap', '13711112222', '31010419920815432X')$$),
          '(13711112222,310104********432X,)', '8.10 sales_bob runs it: his view');
SELECT is(pg_temp.returned(r, $$EXECUTE tap_aw_i('tap', '13711112222', '31010419920815432X')$$),
          '42501 permission denied for view customers', format('8.11 %s (no INSERT) may not run it', r))
  FROM unnest(ARRAY['support_dan', 'intern_fay', 'mkt_amy']::name[]) r;
SET LOCAL SESSION AUTHORIZATION support_dan;
SELECT throws_ok($$EXECUTE tap_aw_u('440301198512120018', 2)$$, '42501', 'permission denied for view customers',
                 '8.12 under SET SESSION AUTHORIZATION support_dan: no change of the national ID');
SELECT results_eq($$EXECUTE tap_aw_u('440301********0018', 2)$$,
                  $$VALUES (2::bigint, '13900001111'::text, '440301********0018'::text, NULL::numeric)$$,
                  '8.13 ... the mask sent back is kept, and he sees his masks');
SELECT throws_ok($$EXECUTE tap_aw_i('tap', '1', '2')$$, '42501', 'permission denied for view customers',
                 '8.14 ... no INSERT');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT pii_guard.decrypt(national_id) FROM public_pii.customers WHERE id = 2), '440301198512120018',
          '8.15 customer 2''s national ID is as it was');
SET LOCAL ROLE sales_bob;
PREPARE tap_aw_r(bigint) AS UPDATE customers SET phone = phone WHERE id = $1 RETURNING id, phone, national_id;
RESET ROLE;
SELECT is(pg_temp.returned('sales_bob', 'EXECUTE tap_aw_r(3)'), '', '8.16 sales_bob''s prepared UPDATE of customer 3: no row');
SELECT is(pg_temp.returned('support_dan', 'EXECUTE tap_aw_r(3)'), '(3,13711112222,310104********432X)',
          '8.17 support_dan runs it: customer 3, as he sees her');
SELECT is(pg_temp.returned('sales_bob', 'EXECUTE tap_aw_r(3)'), '', '8.18 sales_bob again, after him: no row');
DEALLOCATE tap_aw_u;
DEALLOCATE tap_aw_i;
DEALLOCATE tap_aw_r;
RESET plan_cache_mode;

-----------------------------------------------------------------------------
-- 9. Export limits: RETURNING counts.
-----------------------------------------------------------------------------
SELECT pii_guard.set_export_limits('manager', 1, NULL);
CREATE TABLE tap_aw_eve.h (x text);
ALTER TABLE tap_aw_eve.h OWNER TO mgr_eve;
\set exceeded '54P01 pii_guard export limit exceeded'
SELECT is(pg_temp.outcome('mgr_eve', 'UPDATE customers SET name = name WHERE id IN (1, 2) RETURNING national_id'), :'exceeded',
          '9.1 UPDATE ... RETURNING two protected rows exceeds a limit of one');
SELECT is(pg_temp.outcome('mgr_eve', 'DELETE FROM customers WHERE id IN (1, 2) RETURNING phone'), :'exceeded',
          '9.2 DELETE ... RETURNING');
SELECT is(pg_temp.outcome('mgr_eve', 'INSERT INTO customers (name, phone) VALUES (''a'', ''1''), (''b'', ''2'') RETURNING phone'),
          :'exceeded', '9.3 INSERT ... RETURNING');
SELECT is(pg_temp.outcome('mgr_eve', 'WITH u AS (UPDATE customers SET name = name WHERE id IN (1, 2) RETURNING phone)
                                      SELECT string_agg(phone, '','') FROM u'), :'exceeded',
          '9.4 a writable CTE aggregated');
SELECT is(pg_temp.outcome('mgr_eve', 'WITH u AS (UPDATE customers SET name = name WHERE id IN (1, 2) RETURNING phone)
                                      INSERT INTO tap_aw_eve.h SELECT phone FROM u'), :'exceeded',
          '9.5 a writable CTE written to her own table');
SELECT is(pg_temp.outcome('mgr_eve', $$UPDATE customers SET name = name WHERE phone LIKE '1%' RETURNING id$$), :'exceeded',
          '9.6 RETURNING id of rows a protected value chose');
SELECT is(pg_temp.outcome('mgr_eve', 'UPDATE customers SET name = name WHERE id IN (1, 2) RETURNING id'), 'ok 2',
          '9.7 RETURNING id of rows chosen by id does not count');
SELECT is(pg_temp.outcome('mgr_eve', 'UPDATE customers SET name = name WHERE id = 1 RETURNING national_id'), 'ok 1',
          '9.8 one protected row is within the limit');
SELECT pii_guard.set_export_limits('manager', NULL, NULL);

-----------------------------------------------------------------------------
-- 10. The audit: one write event per statement.
-----------------------------------------------------------------------------
SELECT coalesce(max(event_id), 0) AS w0 FROM pii_guard.audit_log \gset
SET LOCAL ROLE mgr_eve;
INSERT INTO customers (name, phone, national_id, sales_owner)
VALUES ('tap_a', '1', '2', 'sales_bob'), ('tap_b', '3', '4', 'sales_bob'), ('tap_c', '5', '6', 'sales_bob');
RESET ROLE;
SELECT is((SELECT array_agg(operation || ' ' || rows) FROM pii_guard.audit_log WHERE event_id > :w0 AND kind = 'write'),
          ARRAY['INSERT 3'], '10.1 a three-row INSERT is one write event of three rows');
SELECT is((SELECT row_keys FROM pii_guard.audit_log WHERE event_id > :w0 AND kind = 'write'),
          (SELECT array_agg(id::text ORDER BY id) FROM public_pii.customers WHERE name LIKE 'tap\_%'),
          '10.2 ... with the new rows'' keys');
SELECT ok((SELECT columns_changed @> '{name,phone,national_id}' FROM pii_guard.audit_log WHERE event_id > :w0 AND kind = 'write'),
          '10.3 ... and the columns written');
SELECT coalesce(max(event_id), 0) AS w1 FROM pii_guard.audit_log \gset
SELECT array_agg(id::text ORDER BY id)::text AS tap_keys FROM public_pii.customers WHERE name LIKE 'tap\_%' \gset
SET LOCAL ROLE mgr_eve;
UPDATE customers SET phone = phone, national_id = national_id, email = 'tap@example.com' WHERE id IN (1, 2);
UPDATE customers SET phone = phone, national_id = national_id WHERE id IN (1, 2);
DELETE FROM customers WHERE name LIKE 'tap\_%';
WITH a AS (UPDATE customers SET email = 'tap2@example.com' WHERE id = 1 RETURNING id),
     b AS (UPDATE customers SET email = 'tap3@example.com' WHERE id = 3 RETURNING id)
SELECT count(*) FROM a, b;
RESET ROLE;
-- (A statement's row keys in the order it met the rows: sorted here, the
-- order of rows in the table is not the test's business.)
SELECT results_eq(format($$SELECT operation, rows,
                                  (SELECT array_agg(k ORDER BY k::numeric) FROM unnest(row_keys) k),
                                  coalesce(columns_changed, '{}') FROM pii_guard.audit_log
                           WHERE event_id > %s AND kind = 'write' ORDER BY event_id$$, :w1),
                  format($$VALUES ('UPDATE', 2::bigint, '{1,2}'::text[], '{email}'::text[]),
                                  ('UPDATE', 2, '{1,2}', '{}'),
                                  ('DELETE', 3, %L, '{}'),
                                  ('UPDATE', 2, '{1,3}', '{email}')$$, :'tap_keys'),
                  '10.4 one write event per statement: the columns changed (not those sent back as shown), the row keys');
SELECT is((SELECT array_agg(DISTINCT session_role || '/' || acting_role) FROM pii_guard.audit_log
            WHERE event_id > :w0 AND kind = 'write'),
          ARRAY['postgres/mgr_eve'], '10.5 ... each naming the acting role');
SELECT is((SELECT count(*)::int FROM pii_guard.audit_log
            WHERE event_id > :start AND (detail ~ '13711112222|31010419920815432X|pii_guard:'
                                         OR row_keys::text ~ '13711112222|31010419920815432X')), 0,
          '10.6 no audit event holds a value written or an envelope');

-----------------------------------------------------------------------------
-- 11. What must keep working (as through the trigger).
-----------------------------------------------------------------------------
SELECT is(pg_temp.returned('mgr_eve', 'UPDATE customers SET name = name WHERE id = 1 RETURNING (SELECT national_id)'),
          pg_temp.returned('mgr_eve', 'UPDATE tap_aw_eve.mine2 SET name = name WHERE id = 1 RETURNING (SELECT national_id)',
                           NULL, 'CREATE VIEW tap_aw_eve.mine2 AS SELECT * FROM public.customers'),
          '11.1 RETURNING a subquery over the row written works as through the trigger');
SELECT is(pg_temp.returned('mgr_eve', $$UPDATE customers c SET email = (SELECT c.phone || '@example.com') WHERE id = 1 RETURNING email$$),
          '(13812345678@example.com)', '11.2 SET a column from a subquery over the row''s protected column');
SELECT is(pg_temp.returned('mgr_eve', $$UPDATE customers c SET email = (SELECT max(o.phone) FROM customers o WHERE o.id = c.id)
                                        WHERE id = 1 RETURNING email$$),
          '(13812345678)', '11.3 SET a column from another read of the view');
SELECT is(pg_temp.returned('sales_bob', $$INSERT INTO customers (name, phone) VALUES ('tap', DEFAULT) RETURNING name, phone$$),
          '(tap,)', '11.4 INSERT ... DEFAULT for an encrypted column');
SELECT is(pg_temp.returned('sales_bob', $$INSERT INTO customers (name, phone) VALUES ('tap1', DEFAULT), ('tap2', '1') RETURNING name, phone$$),
          '(tap1,);(tap2,1)', '11.5 ... in a multi-row VALUES (the trigger)');


-----------------------------------------------------------------------------
-- 12. A partitioned protected table (protected at its root).
-----------------------------------------------------------------------------
CREATE TABLE public.tap_aw_orders (id bigint PRIMARY KEY, card pii_guard.encrypted_text, note text) PARTITION BY RANGE (id);
CREATE TABLE public.tap_aw_orders_a PARTITION OF public.tap_aw_orders FOR VALUES FROM (0) TO (100);
CREATE TABLE public.tap_aw_orders_b PARTITION OF public.tap_aw_orders FOR VALUES FROM (100) TO (1000);
INSERT INTO tap_aw_orders VALUES (1, '6222020000001234567', 'a'), (150, '6222020000007654321', 'b');
GRANT SELECT, INSERT, UPDATE ON tap_aw_orders TO sales;
SELECT pii_guard.protect_table('public.tap_aw_orders') IS NOT NULL AS protected \gset
SELECT pii_guard.protect_column('tap_aw_orders', 'card', 'core', 'pii_guard.mask_bank_card(text)') IS NULL AS classified \gset
SELECT is(pg_temp.returned('sales_bob', 'UPDATE tap_aw_orders SET note = note, card = card RETURNING *'),
          pg_temp.returned('sales_bob', 'SELECT * FROM tap_aw_orders'),
          '12.1 an UPDATE of both partitions returns what sales_bob reads');
SELECT is(pg_temp.returned('sales_bob', $$INSERT INTO tap_aw_orders VALUES (3, '6222020000001111111', 'c'), (300, '6222020000002222222', 'd')
                                         RETURNING *$$,
                           'SELECT string_agg(pii_guard.decrypt(card), '','' ORDER BY id) FROM public_pii.tap_aw_orders WHERE id IN (3, 300)'),
          '(3,622202*********1111,c);(300,622202*********2222,d) | 6222020000001111111,6222020000002222222',
          '12.2 an INSERT into both partitions seals the cards and returns them masked');
SELECT is(pg_temp.outcome('sales_bob', 'UPDATE tap_aw_orders SET id = 200 WHERE id = 1'),
          '42501 permission denied to change row key column "id" of public.tap_aw_orders',
          '12.3 moving a row to the other partition by its key is refused');
SELECT is(pg_temp.outcome(r, $$SELECT pii_guard._write_seal('6222020000001234567'::text, 'public.tap_aw_orders_a'::regclass, 'card'::name)$$),
          '42501 pii_guard._write_seal() can only be used by masking views',
          format('12.4 %s: _write_seal() on a partition is refused', r))
  FROM unnest(ARRAY['sales_bob', 'mgr_eve']::name[]) r;

SELECT * FROM finish();
ROLLBACK;
