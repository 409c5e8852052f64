-- pgTAP: attacks on INSERT ... ON CONFLICT through masking views, on the
-- constraint errors of governed upserts, and on reveal()'s proof through
-- correlated subplans.
--
-- What is attacked (commits 255f4bf and a0fe769):
--
--  * An INSERT ... ON CONFLICT on a masking view is rewritten onto the base
--    table (src/write.c, write_rewrite_conflict / write_check_conflict).
--    The conflict target is the view's columns, mapped to the base table's;
--    DO UPDATE gets the base table's EXCLUDED, whose encrypted columns hold
--    the envelopes just sealed, and follows the UPDATE rules (masks are
--    never written back, privilege only for the columns that change, no
--    row key change); an encrypted column may be set from EXCLUDED only as
--    SET col = EXCLUDED.col, any other use of EXCLUDED's encrypted columns
--    is refused with 0A000 and the reason.  Every conflict is a probe (a
--    deny event, operation 'probe', one row against the role's export
--    limits): DO UPDATE counts it in a marked _write_conflict(base, WHERE) that
--    holds its WHERE, or where row-level security refuses the existing row;
--    DO NOTHING counts rows fed minus rows inserted, and is refused in WITH.
--  * A constraint violation of a protected table in a transaction where a
--    governed role wrote one loses its DETAIL, and a unique or exclusion
--    violation is a probe, once, wherever it is raised (views.c
--    views_constraint_error, hooks.c hooks_error_passing, emit_log_hook).
--  * reveal()'s proof follows a correlated SubPlan's PARAM_EXEC parameters
--    to the SubPlan's arguments in its parent node (reveal.c
--    reveal_prove_params).
--
-- What an attacker wants: an envelope of a plaintext of its choosing (its
-- blind index answers guesses against a stolen dump), a plaintext it is
-- shown masked or not at all, the existence of values among rows it cannot
-- see (or in columns it sees masked or not at all) without being counted,
-- a row key moved, or reveal() answering for something that is not the
-- masking view's own row.  The attackers: sales_bob (row-level security:
-- his own customers only), mgr_eve, intern_fay, mkt_amy, support_dan (the
-- last three given INSERT and one UPDATE column here, as data entry), and
-- a table's owner.
--
-- Sections:
--   1. commit time and the top level, seen by a real client (dblink, as
--      sales_bob): deferred unique violations at COMMIT -- of a
--      transaction, of a DO block, of a procedure -- are probes; errors'
--      DETAIL at the top level;
--   2. upserts as each role: masks never written back (ORM upserts sending
--      back what they loaded), privilege only for changed columns, no
--      oracle from the relaxation, no row key change;
--   3. every conflict is one probe: rows row-level security hides, DO
--      NOTHING, DO UPDATE, DO UPDATE WHERE, RETURNING, multi-row, prepared
--      and generic plans, PL/pgSQL, statements that fail after a conflict,
--      writable CTEs;
--   4. unique indexes on protected columns: an encrypted column
--      (ON CONFLICT (phone)) as an oracle of a phone seen masked or not at
--      all, a partial unique index with an arbiter WHERE, ON CONSTRAINT,
--      expressions, the DO UPDATE's WHERE and RETURNING over a masked row,
--      EXPLAIN ANALYZE, probes spending the day's export limit;
--   5. EXCLUDED and the refusals (0A000 and the reason);
--   6. constraint errors of upserts: message, DETAIL, HINT and CONTEXT for
--      every kind, with and without row-level security, in PL/pgSQL (GET
--      STACKED DIAGNOSTICS); statement end and SET CONSTRAINTS; partitions;
--   7. reveal() through correlated subplans, lateral joins, CTEs, SRFs,
--      windows, GROUP BY, DISTINCT, UNION with a table of stolen envelopes,
--      initplans, and reveal() typed in a correlated subquery;
--   8. prepared upserts across SET SESSION AUTHORIZATION and SET ROLE;
--   9. a partitioned protected table with row-level security;
--  10. what ORMs send (Django, Sequelize, Prisma, Rails), CTEs wrapping an
--      upsert, INSERT ... SELECT from the view, a role's own view;
--  11. the table's owner, and _write_conflict() typed;
--  12. deny events: one per counted statement, as many rows as conflicts.
--
-- Assertions that failed on 5e02c52 (23 of 327), each weakness closed as a
-- class since (write.c: the DO UPDATE's WHERE is held by _write_conflict(),
-- every SET entry is checked, DO NOTHING's skipped rows are counted as
-- they come, a 42501 is a probe only from the existing row's policy;
-- views.c: an error of an aborted governed transaction is looked at until
-- the next statement):
--   3.14-3.16  ON CONFLICT ... DO UPDATE ... WHERE false (any WHERE that
--   4.18-4.19  folds to a constant false: WHERE 1 = 0, a custom plan's
--   12.12      bound parameter): the planner folds the marked
--   12.21      _write_conflict() away with it (AND false), and the conflict
--              is not counted -- an unmetered oracle: 'ok 0' / 'ok 1' tells
--              whether a phone intern_fay sees masked, or mkt_amy cannot
--              see at all, is stored (ON CONFLICT (phone));
--   3.19-3.21  ON CONFLICT DO NOTHING conflicts of a statement that fails
--   12.13-15   later (an error in a later row, in RETURNING, RETURNING ...
--              INTO in PL/pgSQL stopping at its second row) are not
--              counted (DO NOTHING counts only when its node runs to the
--              end), while RETURNING nextval() of the role's own sequence
--              (not undone) tells which rows conflicted;
--   3.22,      an upsert refused by row-level security's WITH CHECK on its
--   12.16      new row, with no conflict at all, is counted a probe (any
--              42501 of a DO UPDATE before _write_conflict ran is taken for
--              the existing row's refusal): a false deny event and a row
--              charged (accounting);
--   5.10-5.15  SET (a, b) = (SELECT EXCLUDED.phone, ...): a multiple-column
--              assignment's sub-SELECT (a resjunk MULTIEXPR entry) escapes
--              the EXCLUDED check, and EXCLUDED's view columns are replaced
--              by the base table's envelopes: the text column gets the
--              envelope's bytes -- the blind index of the role's chosen
--              plaintext, readable at once through RETURNING (5.15);
--   12.4-12.5  a deferred unique violation raised at a COMMIT inside a DO
--              block or a procedure is no probe (no deny event), while the
--              client gets the duplicate key error.
-- Everything else pins the behaviour.

-----------------------------------------------------------------------------
-- Committed set-up for section 1 (a real client needs committed objects):
-- a protected table of its own, so that nothing else is touched.  Undone
-- at the end of the file.
-----------------------------------------------------------------------------
\ir tap/upsert_reset.sql
DO $setup$
BEGIN
    CREATE TABLE public.tap_au_ref (p pii_guard.encrypted_text PRIMARY KEY);
    INSERT INTO public.tap_au_ref VALUES ('13711112222');
    CREATE TABLE public.tap_au_dc (
        id bigserial PRIMARY KEY,
        name text NOT NULL CHECK (length(name) < 20),
        phone pii_guard.encrypted_text,
        ref pii_guard.encrypted_text,
        CONSTRAINT tap_au_dc_phone UNIQUE (phone) DEFERRABLE INITIALLY DEFERRED,
        CONSTRAINT tap_au_dc_ref FOREIGN KEY (ref) REFERENCES public.tap_au_ref (p)
            DEFERRABLE INITIALLY DEFERRED);
    INSERT INTO public.tap_au_dc (id, name, phone, ref) VALUES (1, 'Wang', '13711112222', '13711112222');
    PERFORM setval('public.tap_au_dc_id_seq', 100);
    PERFORM pii_guard.protect_table('public.tap_au_dc');
    PERFORM pii_guard.protect_column('tap_au_dc', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
    PERFORM pii_guard.protect_column('tap_au_dc', 'ref', 'sensitive', 'pii_guard.mask_phone(text)');
    GRANT SELECT, INSERT, UPDATE ON public.tap_au_dc TO sales;
    GRANT USAGE ON SEQUENCE public_pii.tap_au_dc_id_seq TO sales;
    -- (a procedure anyone may write in a schema of its own; here, public)
    CREATE PROCEDURE public.tap_au_commit(p text) LANGUAGE plpgsql AS $p$
    BEGIN
        INSERT INTO public.tap_au_dc (name, phone) VALUES ('probe', p);
        COMMIT;
    END $p$;
    GRANT EXECUTE ON PROCEDURE public.tap_au_commit(text) TO PUBLIC;
END
$setup$;
RESET client_min_messages;

BEGIN;
SELECT plan(327);
\ir tap/undone.sql

-----------------------------------------------------------------------------
-- Set-up, as the superuser.
-----------------------------------------------------------------------------
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dblink;

-- Every profile gets export limits, so that probes count (the day's count
-- is the session role's: counted tests run under SET SESSION AUTHORIZATION).
SELECT pii_guard.set_export_limits(to_regrole(p), 1000, 100000)
  FROM unnest(ARRAY['sales', 'intern', 'manager', 'support', 'marketing']::name[]) p;

CREATE TEMP TABLE tap_usage (who name PRIMARY KEY, n bigint);
CREATE FUNCTION pg_temp.mark() RETURNS void LANGUAGE sql AS $$
    DELETE FROM pg_temp.tap_usage;
    INSERT INTO pg_temp.tap_usage
    SELECT r, pii_guard.export_usage(to_regrole(r))
      FROM unnest(ARRAY['sales_bob', 'intern_fay', 'mgr_eve', 'support_dan', 'mkt_amy']::name[]) r;
$$;
CREATE FUNCTION pg_temp.used(who name) RETURNS bigint LANGUAGE sql AS $$
    SELECT pii_guard.export_usage(to_regrole(who)) - n FROM pg_temp.tap_usage WHERE tap_usage.who = used.who;
$$;

-- A statement as the current role (counted tests), undone: 'ok N', 'ok N:
-- rows' for a statement with RETURNING, or 'SQLSTATE message'.  (An
-- EXECUTE of a prepared statement is read as a query -- PL/pgSQL gets no
-- row count for it -- so the prepared writes below have RETURNING id.)
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_temp.undone(NULL, sql, 'auto') $$;

-- The same as a role (SET LOCAL ROLE), with check_sql evaluated afterwards
-- as the superuser, in the same (undone) subtransaction: 'outcome | check'.
CREATE FUNCTION pg_temp.run(who name, sql text, check_sql text DEFAULT NULL) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_temp.undone(who, sql, 'auto', check_sql) $$;

-- The rows of a query as a role, sorted, ';'-separated, or 'SQLSTATE message'.
CREATE FUNCTION pg_temp.q(who name, sql text) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_temp.undone(who, sql, 'rows') $$;

-- EXPLAIN output of a statement as the current role, lines joined, undone.
CREATE FUNCTION pg_temp.explain(sql text) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_temp.undone(NULL, sql, 'lines') $$;

-- The error a statement raises as a role, caught in PL/pgSQL with GET
-- STACKED DIAGNOSTICS: 'SQLSTATE' || E'\n' || detail || E'\n' || hint ||
-- E'\n' || message || E'\n' || context (the context's lines about this
-- function dropped), or 'no error'; undone.
CREATE FUNCTION pg_temp.err(who name, sql text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    result text;
    st text;
    det text;
    hnt text;
    ctx text;
    msg text;
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', who);
        BEGIN
            EXECUTE sql;
            result := 'no error';
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL,
                                    hnt = PG_EXCEPTION_HINT, ctx = PG_EXCEPTION_CONTEXT, msg = MESSAGE_TEXT;
            result := concat_ws(E'\n', st, coalesce(det, ''), coalesce(hnt, ''), msg,
                                regexp_replace(coalesce(ctx, ''), 'PL/pgSQL function pg_temp[^\n]*', '', 'g'));
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

-- Does text t carry an envelope or a stored plaintext the roles may not
-- all see (national IDs, customer 3's phone)?  For errors.
CREATE FUNCTION pg_temp.secret_in(t text) RETURNS boolean LANGUAGE sql AS $$
    SELECT t ~ 'pii_guard:|110101199003071234|440301198512120018|31010419920815432X|110105198001010011|13711112222|0000 3333|120000|3500\.5'
$$;

SELECT coalesce(max(event_id), 0) AS start FROM pii_guard.audit_log \gset

-- Stored envelopes of customers 1 and 3, as a stolen dump holds them.
SELECT phone::text AS p1, national_id::text AS n1 FROM public_pii.customers WHERE id = 1 \gset
SELECT phone::text AS p3, national_id::text AS n3 FROM public_pii.customers WHERE id = 3 \gset
-- The blind index of the plaintext 13800000000 (bytes 18-32 of its
-- envelope), which only an encryptor may compute.
SELECT encode(substring(decode(substr(pii_guard.encrypt('13800000000')::text, 11), 'base64') FROM 19 FOR 15), 'hex') AS blind_138
\gset

-----------------------------------------------------------------------------
-- 1. Commit time and the top level, through a real client (dblink) as
-- sales_bob, on public.tap_au_dc (phone: UNIQUE DEFERRABLE INITIALLY
-- DEFERRED; ref: a deferrable foreign key; customer 1's phone 13711112222).
-- Each statement is tagged with its application_name; its deny events are
-- looked at in section 12.  (First, before this transaction takes locks the
-- client could wait for.)
-----------------------------------------------------------------------------
SELECT format('host=%s port=%s dbname=%s options=''-c lock_timeout=3000 -c statement_timeout=10000''',
              split_part(current_setting('unix_socket_directories'), ',', 1),
              current_setting('port'), current_database()) AS connstr \gset
SELECT dblink_connect('tap_au_bob', :'connstr' || ' user=sales_bob application_name=tap_au:1') IS NOT NULL AS connected \gset

-- A remote statement: 'ok' or its error as the client gets it (message,
-- DETAIL, HINT, CONTEXT); run under application_name tag.
CREATE FUNCTION pg_temp.remote(tag text, sql text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    rc text;
BEGIN
    PERFORM dblink_exec('tap_au_bob', format('SET application_name = %L', tag));
    rc := dblink_exec('tap_au_bob', sql, false);
    IF rc = 'ERROR' THEN
        rc := dblink_error_message('tap_au_bob');
        PERFORM dblink_exec('tap_au_bob', 'ROLLBACK', false);
        RETURN rc;
    END IF;
    RETURN 'ok';
END
$f$;

SELECT alike(pg_temp.remote('tap_au:1.1', $$BEGIN; INSERT INTO tap_au_dc (name, phone) VALUES ('probe', '13711112222'); COMMIT$$),
            '%duplicate key value violates unique constraint "tap_au_dc_phone"%',
            '1.1 a deferred unique violation fails at the COMMIT of sales_bob''s transaction');
SELECT ok(NOT pg_temp.secret_in(pg_temp.remote('tap_au:1.2', $$BEGIN; INSERT INTO tap_au_dc (name, phone) VALUES ('probe', '13711112222'); COMMIT$$)),
          '1.2 ... and the client sees no envelope in it');
SELECT alike(pg_temp.remote('tap_au:1.3', $$BEGIN; INSERT INTO tap_au_dc (id, name, phone) VALUES (1, 'x', '13711112222') ON CONFLICT (id) DO NOTHING;
                                         INSERT INTO tap_au_dc (name, phone) VALUES ('probe', '13711112222'); COMMIT$$),
            '%duplicate key value violates unique constraint "tap_au_dc_phone"%',
            '1.3 an upsert''s conflict and a deferred violation at COMMIT in one transaction (two probes)');
-- Section 12 asserts that 1.4 and 1.5 are probes: today they are not.
SELECT alike(pg_temp.remote('tap_au:1.4', $q$DO $do$ BEGIN INSERT INTO tap_au_dc (name, phone) VALUES ('probe', '13711112222'); COMMIT; END $do$$q$),
            '%duplicate key value violates unique constraint "tap_au_dc_phone"%',
            '1.4 ... at the COMMIT of a DO block: the client learns that the phone exists');
SELECT alike(pg_temp.remote('tap_au:1.5', $$CALL public.tap_au_commit('13711112222')$$),
            '%duplicate key value violates unique constraint "tap_au_dc_phone"%',
            '1.5 ... at the COMMIT of a procedure');
SELECT is(pg_temp.remote('tap_au:1.6', $$CALL public.tap_au_commit('13799999999')$$), 'ok',
          '1.6 (a phone that exists nowhere commits)');
SELECT ok(NOT pg_temp.secret_in(pg_temp.remote('tap_au:1.7', $q$DO $do$ BEGIN INSERT INTO tap_au_dc (name, phone, ref) VALUES ('probe', '13700000001', '13800000000'); COMMIT; END $do$$q$))
          AND pg_temp.remote('tap_au:1.7', $q$DO $do$ BEGIN INSERT INTO tap_au_dc (name, phone, ref) VALUES ('probe', '13700000001', '13800000000'); COMMIT; END $do$$q$)
              LIKE '%violates foreign key constraint "tap_au_dc_ref"%',
          '1.7 a deferred foreign key violation at a DO block''s COMMIT: no envelope of the value written');
SELECT ok(pg_temp.remote('tap_au:1.8', $$INSERT INTO tap_au_dc (name, phone) VALUES (NULL, '13800000000')$$)
              LIKE '%null value in column "name"%'
          AND NOT pg_temp.secret_in(pg_temp.remote('tap_au:1.8', $$INSERT INTO tap_au_dc (name, phone) VALUES (NULL, '13800000000')$$)),
          '1.8 top level, NOT NULL, no row-level security: no envelope in what the client gets');
SELECT ok(pg_temp.remote('tap_au:1.9', $$INSERT INTO tap_au_dc (id, name, phone) VALUES (1, 'x', '13800000000')
                                         ON CONFLICT (id) DO UPDATE SET name = repeat('y', 30), phone = EXCLUDED.phone$$)
              LIKE '%violates check constraint%'
          AND NOT pg_temp.secret_in(pg_temp.remote('tap_au:1.9', $$INSERT INTO tap_au_dc (id, name, phone) VALUES (1, 'x', '13800000000')
                                         ON CONFLICT (id) DO UPDATE SET name = repeat('y', 30), phone = EXCLUDED.phone$$)),
          '1.9 top level, CHECK broken by DO UPDATE (the stored and the sealed envelopes in the row): none shown');
SELECT ok(NOT pg_temp.secret_in(pg_temp.remote('tap_au:1.10', $$INSERT INTO customers (id, name, phone) VALUES (1, NULL, '13800000000')
                                                              ON CONFLICT (id) DO UPDATE SET name = NULL$$)),
          '1.10 top level, NOT NULL on customers (row-level security): nothing shown');
SELECT dblink_disconnect('tap_au_bob') IS NOT NULL AS disconnected \gset

-----------------------------------------------------------------------------
-- 2. Upserts as each role (SET ROLE; each undone).  The seed roles holding
-- INSERT are sales (own customers 1, 2) and the manager; for this section
-- the intern, marketing and support also get INSERT and one UPDATE column
-- (data entry): intern UPDATE (name), marketing UPDATE (campaign); support
-- already has UPDATE (phone, email, address, service_tier).
-----------------------------------------------------------------------------
SELECT is(pg_temp.run(r, $$INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) DO NOTHING$$),
          '42501 permission denied for view customers',
          format('2.1 %s holds no INSERT: no upsert (and no probe)', r))
  FROM unnest(ARRAY['intern_fay', 'mkt_amy', 'support_dan']::name[]) r;
GRANT INSERT ON customers TO intern, marketing, support;
GRANT UPDATE (name) ON customers TO intern;
GRANT UPDATE (campaign) ON customers TO marketing;
GRANT USAGE ON SEQUENCE public_pii.customers_id_seq TO intern, marketing, support;

-- What a row stores, for comparisons (as the superuser).
CREATE FUNCTION pg_temp.stored(k bigint) RETURNS text LANGUAGE sql AS $$
    SELECT (c.id, c.name, c.phone::text, c.national_id::text, c.email, c.address, c.channel, c.campaign,
            c.service_tier, c.deal_amount, c.sales_owner)::text
      FROM public_pii.customers c WHERE c.id = k
$$;
SELECT pg_temp.stored(1) AS stored1, pg_temp.stored(3) AS stored3 \gset

-- An ORM's upsert: the whole row as the role loaded it, every column set
-- from EXCLUDED (the statement built from the role's own read).
CREATE FUNCTION pg_temp.orm_upsert(k bigint, changes text DEFAULT '') RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM public.customers WHERE id = k;
    RETURN format($s$INSERT INTO customers (id, name, phone, national_id, email, address, channel, campaign,
                                            service_tier, deal_amount, sales_owner)
                     VALUES (%s, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L)
                     ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone,
                        national_id = EXCLUDED.national_id, email = EXCLUDED.email, address = EXCLUDED.address,
                        channel = EXCLUDED.channel, campaign = EXCLUDED.campaign, service_tier = EXCLUDED.service_tier,
                        deal_amount = EXCLUDED.deal_amount, sales_owner = EXCLUDED.sales_owner%s$s$,
                  r.id, r.name, r.phone, r.national_id, r.email, r.address, r.channel, r.campaign,
                  r.service_tier, r.deal_amount, r.sales_owner, changes);
END
$f$;
GRANT EXECUTE ON FUNCTION pg_temp.orm_upsert(bigint, text) TO PUBLIC;

-- The upsert statement as each role builds it from its own read.
CREATE FUNCTION pg_temp.orm_sql(who name, k bigint) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    s text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', who);
    s := pg_temp.orm_upsert(k);
    RESET ROLE;
    RETURN s;
END
$f$;

SELECT is(pg_temp.run('sales_bob', pg_temp.orm_sql('sales_bob', 1), 'SELECT pg_temp.stored(1)'),
          'ok 1 | ' || :'stored1',
          '2.2 sales_bob''s ORM upsert of customer 1 as loaded (national ID masked): nothing changes, no UPDATE privilege needed for national_id or service_tier');
SELECT is(pg_temp.run('mgr_eve', pg_temp.orm_sql('mgr_eve', 3), 'SELECT pg_temp.stored(3)'),
          'ok 1 | ' || :'stored3',
          '2.3 mgr_eve''s ORM upsert of customer 3 (national ID masked): nothing changes');
SELECT is(pg_temp.run('intern_fay', pg_temp.orm_sql('intern_fay', 3), 'SELECT pg_temp.stored(3)'),
          'ok 1 | ' || :'stored3',
          '2.4 intern_fay''s ORM upsert of customer 3 (every column masked, deal amount noised): nothing changes');
SELECT is(pg_temp.run('support_dan', pg_temp.orm_sql('support_dan', 3), 'SELECT pg_temp.stored(3)'),
          'ok 1 | ' || :'stored3',
          '2.5 support_dan''s (deal amount hidden, national ID masked): nothing changes');
SELECT is(pg_temp.run('mkt_amy',
                      $$INSERT INTO customers (id, name, phone, national_id, email, campaign) VALUES (3, 'x', NULL, NULL, NULL, 'spring2026')
                        ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone, national_id = EXCLUDED.national_id,
                                                       email = EXCLUDED.email, campaign = EXCLUDED.campaign$$,
                      'SELECT pg_temp.stored(3)'),
          'ok 1 | ' || :'stored3',
          '2.6 mkt_amy sends her hidden columns back as NULL: nothing changes');
SELECT is(pg_temp.run('intern_fay', replace(pg_temp.orm_sql('intern_fay', 3), 'SET name = EXCLUDED.name', 'SET name = ''Wang F.'''),
                      'SELECT (pg_temp.stored(3) = replace(' || quote_literal(:'stored3') || $$, '王芳', '"Wang F."'))::text$$),
          'ok 1 | true',
          '2.7 intern_fay changes the name only (she may): only the name is written');
SELECT is(pg_temp.run('support_dan',
                      replace(pg_temp.orm_sql('support_dan', 3), 'address = EXCLUDED.address', $$address = '上海市徐汇区'$$),
                      $$SELECT address || ' ' || (deal_amount = 800.00)::text || ' ' || (national_id::text = $$ || quote_literal(:'n3') || ')::text FROM public_pii.customers WHERE id = 3'),
          'ok 1 | 上海市徐汇区 true true',
          '2.8 support_dan changes the address: the hidden deal amount and the masked national ID stay');
-- Privilege only for the columns that change.
SELECT is(pg_temp.run('intern_fay', $$INSERT INTO customers (id, name, phone) VALUES (3, 'x', '13700000000')
                                      ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone$$),
          '42501 permission denied for view customers', '2.9 intern_fay may not change a phone through DO UPDATE');
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO customers (id, name, national_id) VALUES (1, 'x', '110101199003079999')
                                     ON CONFLICT (id) DO UPDATE SET national_id = EXCLUDED.national_id$$,
                      format('SELECT (national_id::text = %L)::text FROM public_pii.customers WHERE id = 1', :'n1')),
          '42501 permission denied for view customers | true', '2.10 sales_bob may not change a national ID; it stays');
SELECT is(pg_temp.run('support_dan', $$INSERT INTO customers (id, name, deal_amount) VALUES (3, 'x', 1.00)
                                       ON CONFLICT (id) DO UPDATE SET deal_amount = EXCLUDED.deal_amount$$),
          '42501 permission denied for view customers', '2.11 support_dan may not set the deal amount he cannot see');
SELECT is(pg_temp.run('mkt_amy', $$INSERT INTO customers (id, name, phone) VALUES (3, 'x', '13700000000')
                                   ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone$$),
          '42501 permission denied for view customers', '2.12 mkt_amy may not set a phone she cannot see');
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000009')
                                     ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone RETURNING id, phone$$,
                      $$SELECT pii_guard.decrypt(phone) FROM public_pii.customers WHERE id = 1$$),
          'ok 1: (1,13800000009) | 13800000009', '2.13 sales_bob may change his customer''s phone: sealed, returned as he sees it');
SELECT is(pg_temp.run('mgr_eve', $$INSERT INTO customers (id, name, national_id) VALUES (3, 'x', '310104199208154329')
                                   ON CONFLICT (id) DO UPDATE SET national_id = EXCLUDED.national_id RETURNING id, national_id$$,
                      $$SELECT pii_guard.decrypt(national_id) FROM public_pii.customers WHERE id = 3$$),
          'ok 1: (3,310104********4329) | 310104199208154329', '2.14 mgr_eve may change a national ID she sees masked');

-- The relaxation is no oracle: a right and a wrong guess of a value the
-- role sees masked or not at all give the same outcome.
CREATE TEMP TABLE guesses (n text, who name, k bigint, col name, right_guess text, wrong_guess text, what text);
INSERT INTO guesses VALUES
    ('2.15', 'sales_bob',   1, 'national_id', '110101199003071234', '110101199903071234', 'a national ID he sees masked'),
    ('2.16', 'mgr_eve',     3, 'national_id', '31010419920815432X', '31010419990815432X', 'a national ID she sees masked (she may write it)'),
    ('2.17', 'intern_fay',  3, 'phone',       '13711112222',        '13799992222',        'a phone she sees masked'),
    ('2.18', 'intern_fay',  3, 'deal_amount', '800.00',             '801.00',             'a deal amount she sees noised'),
    ('2.19', 'mkt_amy',     3, 'phone',       '13711112222',        '13799992222',        'a phone she cannot see'),
    ('2.20', 'mkt_amy',     3, 'name',        '王芳',               '王红',               'a name she cannot see'),
    ('2.21', 'support_dan', 3, 'deal_amount', '800.00',             '801.00',             'a deal amount he cannot see'),
    ('2.22', 'sales_bob',   3, 'national_id', '31010419920815432X', '31010419990815432X', 'a hidden customer''s national ID');
GRANT SELECT ON guesses TO PUBLIC;
CREATE FUNCTION pg_temp.guess_sql(k bigint, col name, v text, ret boolean) RETURNS text LANGUAGE sql AS $$
    SELECT format('INSERT INTO customers (id, name, %1$I) VALUES (%2$s, %3$L, %4$L) ON CONFLICT (id) DO UPDATE SET %1$I = EXCLUDED.%1$I%5$s',
                  col, k, 'x', v, CASE WHEN ret THEN format(' RETURNING id, %I', col) ELSE '' END)
$$;
SELECT is(pg_temp.run(g.who, pg_temp.guess_sql(g.k, g.col, g.right_guess, true)),
          pg_temp.run(g.who, pg_temp.guess_sql(g.k, g.col, g.wrong_guess, true)),
          format('%s %s: DO UPDATE SET %s = EXCLUDED.%s with the right and a wrong value, the same outcome (%s)',
                 g.n, g.who, g.col, g.col, g.what))
  FROM guesses g ORDER BY g.n;
SELECT is(pg_temp.run('intern_fay', $$INSERT INTO customers (id, name, phone) VALUES (3, 'x', '137****2222')
                                      ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone$$, 'SELECT pg_temp.stored(3)'),
          'ok 1 | ' || :'stored3', '2.23 (the mask itself sent back is kept, without the privilege)');

-- Row keys: a governed role never changes one through DO UPDATE.
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id, name = customers.name$$,
                      'SELECT count(*)::text FROM public_pii.customers WHERE id = 1'),
          'ok 1 | 1', '2.24 SET id = EXCLUDED.id (the same key): fine');
SELECT is(pg_temp.run(r, $$INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET id = customers.id + 100$$),
          '42501 permission denied to change row key column "id" of public.customers',
          format('2.25 %s: SET id = customers.id + 100 refused', r))
  FROM unnest(ARRAY['sales_bob', 'mgr_eve']::name[]) r;
SELECT is(pg_temp.run('mgr_eve', $$INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET id = DEFAULT$$),
          '0A000 this INSERT ... ON CONFLICT is not supported on masking view customers', '2.26 SET id = DEFAULT refused');
SELECT is(pg_temp.run('mgr_eve', $$INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET (id, name) = (SELECT 777, 'x')$$),
          '42501 permission denied to change row key column "id" of public.customers', '2.27 SET (id, name) = (SELECT 777, ...) refused');
SELECT is(pg_temp.run('mgr_eve', $$INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET (id, name) = (customers.id * 1, 'y')$$,
                      $$SELECT name FROM public_pii.customers WHERE id = 1$$),
          'ok 1 | y', '2.28 SET (id, name) = (customers.id * 1, ...): the same key, fine');
SELECT is(pg_temp.run('mgr_eve', $$INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET id = (SELECT max(id) + 1 FROM customers)$$),
          '42501 permission denied to change row key column "id" of public.customers', '2.29 SET id = (SELECT ...) refused');

-----------------------------------------------------------------------------
-- 3. Every conflict is one probe (SET SESSION AUTHORIZATION: the day's
-- count is the session role's; each statement undone, tagged tap_au:3.N).
-- sales_bob cannot see customers 3 and 4 (sales_carl's).
-----------------------------------------------------------------------------
CREATE FUNCTION pg_temp.leak(x text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'leaked: %', x;
END $$;
CREATE SEQUENCE public.tap_au_seq;
GRANT ALL ON SEQUENCE public.tap_au_seq TO PUBLIC;

SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.1';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (3, 'probe') ON CONFLICT (id) DO NOTHING$$), 'ok 0',
          '3.1 DO NOTHING on a hidden customer''s key: nothing inserted');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 1::bigint, '3.2 ... one probe');

SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.3';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (3, 'probe') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name RETURNING *$$),
          '42501 new row violates row-level security policy (USING expression) for table "customers"',
          '3.3 DO UPDATE ... RETURNING on a hidden customer: refused by row-level security, no row');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 1::bigint, '3.4 ... one probe');

-- The DO UPDATE's WHERE about the hidden row: right and wrong give the same.
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.5';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (3, 'probe') ON CONFLICT (id) DO UPDATE SET name = 'x' WHERE customers.phone = '13711112222'$$),
          pg_temp.try($$INSERT INTO customers (id, name) VALUES (3, 'probe') ON CONFLICT (id) DO UPDATE SET name = 'x' WHERE customers.phone = '13700000000'$$),
          '3.5 DO UPDATE WHERE <the hidden row''s phone> and WHERE <another>: the same outcome');
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (3, 'probe') ON CONFLICT (id) DO UPDATE SET name = 'x' WHERE pg_temp.leak(customers::text)$$),
          '42501 new row violates row-level security policy (USING expression) for table "customers"',
          '3.6 a function of the hidden row in the DO UPDATE''s WHERE never sees it');
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (3, 'probe') ON CONFLICT (id) DO UPDATE SET name = 'x' WHERE EXCLUDED.name = 'nope'$$),
          '42501 new row violates row-level security policy (USING expression) for table "customers"',
          '3.7 ... nor does a WHERE that would skip it');
RESET SESSION AUTHORIZATION;

-- Several rows: each conflict once.
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.8';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (3, 'a'), (4, 'b'), (1, 'c'), (2000000, 'd') ON CONFLICT (id) DO NOTHING$$),
          'ok 1', '3.8 DO NOTHING with two hidden keys, one of his own and a new one: one row inserted');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 3::bigint, '3.9 ... three probes');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.10';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (1, 'a'), (2, 'b'), (2000000, 'd') ON CONFLICT (id) DO UPDATE SET name = customers.name$$),
          'ok 3', '3.10 DO UPDATE of his two customers and a new one');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 2::bigint, '3.11 ... two probes');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.12';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET name = 'x' WHERE customers.id < 0$$),
          'ok 0', '3.12 DO UPDATE whose WHERE skips the row');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 1::bigint, '3.13 ... one probe');

-- A WHERE that folds to false takes _write_conflict() with it.
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.14';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET name = 'x' WHERE false$$)
          || ' ' || pg_temp.try($$INSERT INTO customers (id, name) VALUES (2000000, 'a') ON CONFLICT (id) DO UPDATE SET name = 'x' WHERE false$$),
          'ok 0 ok 1', '(DO UPDATE ... WHERE false answers as DO NOTHING would: 0 rows on a conflict, 1 without)');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 1::bigint, '3.14 DO UPDATE ... WHERE false: the conflict is one probe');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.15';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (1, 'a'), (2, 'b') ON CONFLICT (id) DO UPDATE SET name = 'x' WHERE 1 = 0$$),
          'ok 0', '(WHERE 1 = 0 on two conflicts)');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 2::bigint, '3.15 DO UPDATE ... WHERE 1 = 0: two conflicts, two probes');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.16';
PREPARE tap_au_w(bigint, boolean) AS
    INSERT INTO customers (id, name) VALUES ($1, 'a') ON CONFLICT (id) DO UPDATE SET name = 'x' WHERE $2 RETURNING id;
SELECT is(pg_temp.try($$EXECUTE tap_au_w(1, false)$$), 'ok 0: ', '(a prepared DO UPDATE ... WHERE $2, custom plan, $2 false)');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 1::bigint, '3.16 ... the conflict is one probe');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.17';
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT is(pg_temp.try($$EXECUTE tap_au_w(1, false)$$) || ' ' || pg_temp.try($$EXECUTE tap_au_w(1, true)$$)
          || ' ' || pg_temp.try($$EXECUTE tap_au_w(3, true)$$),
          'ok 0:  ok 1: (1) 42501 new row violates row-level security policy (USING expression) for table "customers"',
          '(the generic plan, three times)');
RESET plan_cache_mode;
DEALLOCATE tap_au_w;
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 3::bigint, '3.17 the generic plan: three conflicts, three probes');

-- PL/pgSQL, with a cached plan: each call's conflict.
CREATE FUNCTION public.tap_au_upsert(k bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO customers (id, name) VALUES (k, 'f') ON CONFLICT (id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.18';
SELECT is(pg_temp.try($$SELECT public.tap_au_upsert(k) FROM unnest(ARRAY[3, 4, 1, 2000001]::bigint[]) k$$), 'ok 4',
          '(a PL/pgSQL upsert called for 4 keys, 3 of them taken)');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 3::bigint, '3.18 PL/pgSQL: three probes');

-- A DO NOTHING statement that fails after its conflicts: the role learns
-- which rows conflicted (RETURNING nextval() of its own sequence is not
-- undone), so the conflicts must count.
SELECT pg_temp.mark();
SELECT setval('public.tap_au_seq', 1, false) IS NOT NULL AS reset \gset
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.19';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name)
                        SELECT CASE g WHEN 1 THEN 3 WHEN 2 THEN 2000002 ELSE 1 / (g - 3) END, 'p' FROM generate_series(1, 3) g
                        ON CONFLICT (id) DO NOTHING RETURNING nextval('public.tap_au_seq')$$),
          '22012 division by zero', '(DO NOTHING: a hidden key, a new key, then a division by zero)');
SELECT is((SELECT last_value FROM public.tap_au_seq), 1::bigint,
          '(... and its own sequence says that one row of two was inserted: customer 3 exists)');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 1::bigint, '3.19 ... the conflict before the error is one probe');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.20';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (3, 'p'), (4, 'p'), (2000003, 'p'), (2000004, 'p')
                        ON CONFLICT (id) DO NOTHING RETURNING 1 / (id - 2000004)$$),
          '22012 division by zero', '(DO NOTHING with two hidden keys, failing in RETURNING on the last row)');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 2::bigint, '3.20 ... two probes');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.21';
SELECT is(pg_temp.try($q$DO $do$ DECLARE x bigint; BEGIN
                            INSERT INTO customers (id, name) VALUES (3, 'p'), (2000005, 'p'), (2000006, 'p')
                            ON CONFLICT (id) DO NOTHING RETURNING id INTO x;
                        END $do$$q$),
          'P0003 query returned more than one row', '(PL/pgSQL: DO NOTHING ... RETURNING id INTO x, stopping at the second row)');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 1::bigint, '3.21 ... the conflict is one probe');
-- Row-level security's WITH CHECK refusing the proposed row, no conflict.
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.22';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name, sales_owner) VALUES (2000007, 'p', 'sales_carl')
                        ON CONFLICT (id) DO UPDATE SET name = 'x'$$),
          '42501 new row violates row-level security policy for table "customers"',
          '(an upsert of a new key for sales_carl: refused by WITH CHECK)');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 0::bigint, '3.22 ... no conflict, no probe');
-- Writable CTEs, loops, prepared DO NOTHING.
SET LOCAL SESSION AUTHORIZATION sales_bob;
SELECT is(pg_temp.try($$WITH x AS (INSERT INTO customers (id, name) VALUES (3, 'p') ON CONFLICT (id) DO NOTHING RETURNING id) SELECT count(*) FROM x$$),
          '0A000 this INSERT ... ON CONFLICT is not supported on masking view customers',
          '3.23 DO NOTHING in a WITH query is refused');
SELECT is(pg_temp.try($$WITH x AS (INSERT INTO customers (id, name) VALUES (1, 'p') ON CONFLICT DO NOTHING) SELECT 1$$),
          '0A000 this INSERT ... ON CONFLICT is not supported on masking view customers',
          '3.24 ... also unread');
RESET SESSION AUTHORIZATION;
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.25';
SELECT is(pg_temp.try($$WITH x AS (INSERT INTO customers (id, name) VALUES (1, 'p'), (2, 'q') ON CONFLICT (id) DO UPDATE SET name = customers.name RETURNING id)
                        SELECT count(*) FROM x WHERE false$$),
          'ok 1: (0)', '3.25 DO UPDATE in a WITH query nobody reads');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 2::bigint, '3.26 ... two probes');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.27';
SELECT is(pg_temp.try($q$DO $do$ DECLARE r record; BEGIN
                            FOR r IN INSERT INTO customers (id, name) VALUES (2000008, 'p'), (3, 'p'), (4, 'p') ON CONFLICT (id) DO NOTHING RETURNING id LOOP
                                EXIT;
                            END LOOP;
                        END $do$$q$),
          'ok 0', '3.27 a PL/pgSQL loop over DO NOTHING ... RETURNING leaving at its first row');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 2::bigint, '3.28 ... two probes');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:3.29';
PREPARE tap_au_n(bigint) AS INSERT INTO customers (id, name) VALUES ($1, 'p') ON CONFLICT (id) DO NOTHING RETURNING id;
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT is(pg_temp.try('EXECUTE tap_au_n(3)') || ' ' || pg_temp.try('EXECUTE tap_au_n(4)') || ' ' || pg_temp.try('EXECUTE tap_au_n(2000009)'),
          'ok 0:  ok 0:  ok 1: (2000009)', '3.29 a prepared DO NOTHING ... RETURNING id, generic plan, three times');
RESET plan_cache_mode;
DEALLOCATE tap_au_n;
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 2::bigint, '3.30 ... two probes');
-- Other roles, on rows they see.
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION mgr_eve;
SET LOCAL application_name = 'tap_au:3.31';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (3, 'p'), (4, 'p') ON CONFLICT (id) DO UPDATE SET name = customers.name$$),
          'ok 2', '3.31 mgr_eve: DO UPDATE of two customers');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('mgr_eve'), 2::bigint, '3.32 ... two probes');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION intern_fay;
SET LOCAL application_name = 'tap_au:3.33';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (3, 'p') ON CONFLICT (id) DO NOTHING$$),
          'ok 0', '3.33 intern_fay: DO NOTHING on a taken key');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('intern_fay'), 1::bigint, '3.34 ... one probe');

-----------------------------------------------------------------------------
-- 4. Unique indexes on protected columns.
-----------------------------------------------------------------------------
CREATE UNIQUE INDEX tap_au_phone ON public_pii.customers (phone);
CREATE UNIQUE INDEX tap_au_email_web ON public_pii.customers (email) WHERE channel = 'web';

SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:4.1';
SELECT is(pg_temp.try($$INSERT INTO customers (name, phone) VALUES ('p', '13711112222') ON CONFLICT (phone) DO NOTHING$$)
          || ' ' || pg_temp.try($$INSERT INTO customers (name, phone) VALUES ('p', '13711119999') ON CONFLICT (phone) DO NOTHING$$),
          'ok 0 ok 1', '4.1 ON CONFLICT (phone) DO NOTHING: a hidden customer''s phone conflicts, another does not');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 1::bigint, '4.2 ... one probe');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:4.3';
SELECT is(pg_temp.try($$INSERT INTO customers (name, phone) VALUES ('p', '+86 136 0000 3333') ON CONFLICT (phone) DO UPDATE SET name = EXCLUDED.name RETURNING id$$),
          '42501 new row violates row-level security policy (USING expression) for table "customers"',
          '4.3 ON CONFLICT (phone) DO UPDATE ... RETURNING id on a hidden customer''s phone: refused, no id');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 1::bigint, '4.4 ... one probe');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION intern_fay;
SET LOCAL application_name = 'tap_au:4.5';
SELECT is(pg_temp.try($$INSERT INTO customers (name, phone) VALUES ('p', '13711112222') ON CONFLICT (phone) DO UPDATE SET name = customers.name RETURNING id, phone$$),
          'ok 1: (3,137****2222)', '4.5 intern_fay: ON CONFLICT (phone) DO UPDATE ... RETURNING shows the row masked');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('intern_fay'), 2::bigint, '4.6 ... one probe and one row returned');
SET LOCAL application_name = 'tap_au:4.7';
SELECT is(pg_temp.run('intern_fay', $$INSERT INTO customers (id, name, phone) VALUES (900, 'p', '13711112222') ON CONFLICT (phone) DO UPDATE SET id = EXCLUDED.id$$,
                      'SELECT id::text FROM public_pii.customers WHERE name = ''王芳'''),
          '42501 permission denied to change row key column "id" of public.customers | 3',
          '4.7 ON CONFLICT (phone) DO UPDATE SET id = EXCLUDED.id: refused, the key stays');
SELECT is(pg_temp.run('mgr_eve', $$INSERT INTO customers (id, name, phone) VALUES (3, 'p', '13711112222') ON CONFLICT (phone) DO UPDATE SET id = EXCLUDED.id$$),
          'ok 1', '4.8 ... with the key it has: fine');
SELECT is(pg_temp.run('intern_fay', $$INSERT INTO customers (name, phone) VALUES ('p', '13711112222') ON CONFLICT (phone) DO UPDATE SET phone = EXCLUDED.phone$$),
          pg_temp.run('intern_fay', $$INSERT INTO customers (name, phone) VALUES ('p', '13711112222') ON CONFLICT (phone) DO UPDATE SET phone = '13711112223'$$),
          '4.9 intern_fay: SET phone = EXCLUDED.phone on the phone''s own conflict as any other new phone (she may not)');
-- A partial unique index, named with an arbiter WHERE (email of web customers).
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:4.10';
SELECT is(pg_temp.try($$INSERT INTO customers (name, email, channel) VALUES ('p', 'john.smith@example.com', 'web')
                        ON CONFLICT (email) WHERE channel = 'web' DO NOTHING$$)
          || ' ' || pg_temp.try($$INSERT INTO customers (name, email, channel) VALUES ('p', 'john.smith@example.com', 'store')
                        ON CONFLICT (email) WHERE channel = 'web' DO NOTHING$$),
          'ok 0 ok 1', '4.10 ON CONFLICT (email) WHERE channel = ''web'': a hidden web customer''s e-mail conflicts');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 1::bigint, '4.11 ... one probe');
SET LOCAL SESSION AUTHORIZATION sales_bob;
SELECT is(pg_temp.try($$INSERT INTO customers (name, email, channel) VALUES ('p', 'x@example.com', 'web')
                        ON CONFLICT (email) WHERE channel = (SELECT 'web') DO NOTHING$$),
          '0A000 cannot use subquery in index predicate', '4.12 an arbiter WHERE with a subquery is refused (by PostgreSQL)');
SELECT is(pg_temp.try($$INSERT INTO customers (name, email) VALUES ('p', 'x@example.com') ON CONFLICT (lower(email)) DO NOTHING$$),
          '0A000 this INSERT ... ON CONFLICT is not supported on masking view customers', '4.13 an expression as conflict target is refused');
SELECT is(pg_temp.try($$INSERT INTO customers (name, phone) VALUES ('p', '13711112222') ON CONFLICT ON CONSTRAINT customers_pkey DO NOTHING$$),
          '42704 constraint "customers_pkey" for table "customers" does not exist',
          '4.14 ON CONSTRAINT <the base table''s primary key> is refused (a view has no constraints)');
SELECT is(pg_temp.try($$INSERT INTO customers (name, phone) VALUES ('p', '13711112222') ON CONFLICT (phone COLLATE "C") DO NOTHING$$),
          '42P10 there is no unique or exclusion constraint matching the ON CONFLICT specification',
          '4.15 ON CONFLICT (phone COLLATE "C"): no index answers (the envelope column has no collation)');
RESET SESSION AUTHORIZATION;
-- Conflicts on a phone the role sees masked (intern_fay) or not at all
-- (mkt_amy): PostgreSQL answers, so each is a counted probe -- whatever
-- the DO UPDATE's WHERE.
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION mkt_amy;
SET LOCAL application_name = 'tap_au:4.16';
SELECT is(pg_temp.try($$INSERT INTO customers (name, campaign, phone) VALUES ('p', 'x', '13711112222') ON CONFLICT (phone) DO NOTHING$$)
          || ' ' || pg_temp.try($$INSERT INTO customers (name, campaign, phone) VALUES ('p', 'x', '13711112223') ON CONFLICT (phone) DO NOTHING$$),
          'ok 0 ok 1', '4.16 mkt_amy: ON CONFLICT (phone) DO NOTHING tells whether a phone she cannot see exists');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('mkt_amy'), 1::bigint, '4.17 ... one probe');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION intern_fay;
SET LOCAL application_name = 'tap_au:4.18';
SELECT is(pg_temp.try($$INSERT INTO customers (name, phone) VALUES ('p', '13711112222') ON CONFLICT (phone) DO UPDATE SET name = customers.name WHERE false$$)
          || ' ' || pg_temp.try($$INSERT INTO customers (name, phone) VALUES ('p', '13711112223') ON CONFLICT (phone) DO UPDATE SET name = customers.name WHERE false$$),
          'ok 0 ok 1', '(intern_fay: ON CONFLICT (phone) DO UPDATE ... WHERE false, with a phone she sees masked and another)');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('intern_fay'), 1::bigint, '4.18 ... the conflict is one probe (WHERE false takes nothing away)');
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION mkt_amy;
SET LOCAL application_name = 'tap_au:4.19';
SELECT is(pg_temp.try($$INSERT INTO customers (name, phone) VALUES ('p', '13711112222') ON CONFLICT (phone) DO UPDATE SET campaign = customers.campaign WHERE 1 = 0 RETURNING id$$),
          'ok 0: ', '(mkt_amy: ON CONFLICT (phone) DO UPDATE ... WHERE 1 = 0 on a phone she cannot see)');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('mkt_amy'), 1::bigint, '4.19 ... one probe');
-- The DO UPDATE's WHERE on the existing row compares what the role sees.
SET LOCAL SESSION AUTHORIZATION intern_fay;
SET LOCAL application_name = 'tap_au:4.20';
SELECT is(pg_temp.try($$INSERT INTO customers AS c (id, name) VALUES (3, 'p') ON CONFLICT (id) DO UPDATE SET name = c.name WHERE c.phone = '13711112222' RETURNING id$$),
          pg_temp.try($$INSERT INTO customers AS c (id, name) VALUES (3, 'p') ON CONFLICT (id) DO UPDATE SET name = c.name WHERE c.phone = '13711112229' RETURNING id$$),
          '4.20 intern_fay: DO UPDATE ... WHERE c.phone = <the right phone> and <a wrong one>: the same outcome');
SELECT is(pg_temp.try($$INSERT INTO customers AS c (id, name) VALUES (3, 'p') ON CONFLICT (id) DO UPDATE SET name = c.name
                        RETURNING id, c.phone = '13711112222', c.phone LIKE '1371111222%', c.deal_amount = 800.00$$),
          'ok 1: (3,f,f,f)', '4.21 ... and RETURNING compares the mask and the noised amount');
SELECT ok(NOT pg_temp.secret_in(pg_temp.try($$INSERT INTO customers AS c (id, name) VALUES (3, 'p') ON CONFLICT (id) DO UPDATE SET name = c.national_id::numeric::text$$))
          AND NOT pg_temp.secret_in(pg_temp.try($$INSERT INTO customers AS c (id, name) VALUES (3, 'p') ON CONFLICT (id) DO UPDATE SET name = c.phone::int::text$$)),
          '4.22 a cast of the existing row''s column that fails shows her the mask in the error, never the value');
RESET SESSION AUTHORIZATION;
-- EXPLAIN ANALYZE shows the conflicts: it runs the statement, which counts them.
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:4.23';
SELECT alike(pg_temp.explain($$EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
                               INSERT INTO customers (name, phone) VALUES ('p', '13711112222'), ('q', '13711119998') ON CONFLICT (phone) DO NOTHING$$),
             '%Conflicting Tuples: 1%', '(EXPLAIN ANALYZE of DO NOTHING shows one conflicting tuple, a hidden customer''s phone)');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 1::bigint, '4.23 ... one probe');
-- Probes spend the day: a role whose day is spent by conflicts reads no more.
SELECT pii_guard.set_export_limits('marketing', 1000, pii_guard.export_usage('mkt_amy') + 2) IS NULL AS limited \gset
SET LOCAL SESSION AUTHORIZATION mkt_amy;
SET LOCAL application_name = 'tap_au:4.24';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name, campaign) VALUES (3, 'p', 'x'), (4, 'p', 'x') ON CONFLICT (id) DO NOTHING$$), 'ok 0',
          '(mkt_amy, two rows of the day left: two conflicts)');
RESET SESSION AUTHORIZATION;
SET LOCAL SESSION AUTHORIZATION mkt_amy;
SELECT is(pg_temp.q('mkt_amy', 'SELECT campaign FROM customers WHERE id = 1'), '54P01 pii_guard export limit exceeded',
          '4.24 ... then her next protected row is refused (54P01)');
RESET SESSION AUTHORIZATION;
SELECT pii_guard.set_export_limits('marketing', 1000, 100000) IS NULL AS unlimited \gset
SET LOCAL application_name = 'pg_prove';

-----------------------------------------------------------------------------
-- 5. EXCLUDED's encrypted columns, and the other refusals (as sales_bob,
-- on his customer 1; his chosen plaintext: 13800000000).
-----------------------------------------------------------------------------
CREATE TEMP TABLE excl_attempts (n text, sql text, what text);
INSERT INTO excl_attempts VALUES
  ('5.1', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.phone$$,
   'SET name = EXCLUDED.phone'),
  ('5.2', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone || ''$$,
   'SET phone = EXCLUDED.phone || '''''),
  ('5.3', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET name = 'y' WHERE EXCLUDED.phone IS NOT NULL$$,
   'EXCLUDED.phone in the WHERE'),
  ('5.4', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED::text$$,
   'the whole row EXCLUDED'),
  ('5.5', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET name = row_to_json(EXCLUDED)::text$$,
   'row_to_json(EXCLUDED)'),
  ('5.6', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET name = (SELECT EXCLUDED.phone)$$,
   'SET name = (SELECT EXCLUDED.phone)'),
  ('5.7', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET (name, email) = (EXCLUDED.phone, 'e')$$,
   'SET (name, email) = (EXCLUDED.phone, ...)'),
  ('5.8', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET name = 'y' WHERE EXISTS (SELECT 1 WHERE EXCLUDED.phone = '1')$$,
   'EXCLUDED.phone in a subquery of the WHERE'),
  ('5.9', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.national_id$$,
   'SET phone = EXCLUDED.national_id'),
  ('5.10', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET (name, email) = (SELECT EXCLUDED.phone, 'e')$$,
   'SET (name, email) = (SELECT EXCLUDED.phone, ...)'),
  ('5.11', $$INSERT INTO customers (id, name, national_id) VALUES (1, 'x', '110101199003071234') ON CONFLICT (id) DO UPDATE SET (name, email) = (SELECT 'n', EXCLUDED.national_id)$$,
   'SET (name, email) = (SELECT ..., EXCLUDED.national_id)'),
  ('5.12', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET (name, email) = (SELECT 'n', x FROM (SELECT EXCLUDED.phone AS x) s)$$,
   'SET (name, email) = (SELECT ... FROM (SELECT EXCLUDED.phone) s)'),
  ('5.13', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET (name, email) = (SELECT EXCLUDED::text, 'e')$$,
   'SET (name, email) = (SELECT EXCLUDED::text, ...)'),
  ('5.14', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET (phone, name) = (SELECT EXCLUDED.phone, 'n')$$,
   'SET (phone, name) = (SELECT EXCLUDED.phone, ...)');
SELECT is(pg_temp.run('sales_bob', a.sql), '0A000 this INSERT ... ON CONFLICT is not supported on masking view customers',
          format('%s %s: refused', a.n, a.what))
  FROM excl_attempts a ORDER BY split_part(a.n, '.', 2)::int;
-- ... each with its reason (DETAIL) and the hint.
SELECT is(string_agg(a.n || ' ' || split_part(pg_temp.err('sales_bob', a.sql), E'\n', 2), E'\n' ORDER BY split_part(a.n, '.', 2)::int),
          $$5.1 EXCLUDED's value of an encrypted column is used other than to set the same column.
5.2 EXCLUDED's value of an encrypted column is used other than to set the same column.
5.3 EXCLUDED's value of an encrypted column is used in the DO UPDATE's WHERE.
5.4 EXCLUDED's value of an encrypted column is used other than to set the same column.
5.5 EXCLUDED's value of an encrypted column is used other than to set the same column.
5.6 EXCLUDED's value of an encrypted column is used other than to set the same column.
5.7 EXCLUDED's value of an encrypted column is used other than to set the same column.
5.8 EXCLUDED's value of an encrypted column is used in the DO UPDATE's WHERE.
5.9 EXCLUDED's value of an encrypted column is used other than to set the same column.$$,
          '5.20 (5.1-5.9) every refusal says why: EXCLUDED''s encrypted column used other than as SET col = EXCLUDED.col')
  FROM excl_attempts a WHERE split_part(a.n, '.', 2)::int <= 9;
-- What 5.10 gives: the envelope of his chosen plaintext, read back at once.
SELECT isnt(pg_temp.run('sales_bob', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000')
                                       ON CONFLICT (id) DO UPDATE SET (name, email) = (SELECT EXCLUDED.phone, 'e')
                                       RETURNING encode(substring(textsend(name) FROM 19 FOR 15), 'hex')$$),
            'ok 1: (' || :'blind_138' || ')',
            '5.15 ... and no blind index of a plaintext of his choosing comes back in RETURNING');
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000')
                                     ON CONFLICT (id) DO UPDATE SET name = 'y' RETURNING EXCLUDED.phone$$),
          '42P01 invalid reference to FROM-clause entry for table "excluded"', '5.16 EXCLUDED in RETURNING (PostgreSQL refuses it)');
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000')
                                     ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone, name = EXCLUDED.name RETURNING phone, name$$,
                      $$SELECT pii_guard.decrypt(phone) FROM public_pii.customers WHERE id = 1$$),
          'ok 1: (13800000000,x) | 13800000000', '5.17 SET phone = EXCLUDED.phone itself works: his plaintext, sealed');
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000')
                                     ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name || '!' RETURNING name$$),
          'ok 1: (x!)', '5.18 a plain column of EXCLUDED in an expression works');
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000')
                                     ON CONFLICT (id) DO UPDATE SET name = (SELECT customers.phone)$$),
          '0A000 this INSERT ... ON CONFLICT is not supported on masking view customers', '5.19 a subquery over the existing row is refused');

-----------------------------------------------------------------------------
-- 6. Constraint errors of upserts: message, DETAIL, HINT and CONTEXT
-- (caught in PL/pgSQL with GET STACKED DIAGNOSTICS), with row-level
-- security and without.
-----------------------------------------------------------------------------
ALTER TABLE public_pii.customers ADD CONSTRAINT tap_au_chk CHECK (length(email) < 40);
CREATE UNIQUE INDEX tap_au_email ON public_pii.customers (email);
ALTER TABLE public_pii.customers ADD CONSTRAINT tap_au_excl EXCLUDE USING btree (address WITH =);
CREATE TABLE public.tap_au_codes (code text PRIMARY KEY);
INSERT INTO public.tap_au_codes VALUES ('web'), ('store'), ('referral');
ALTER TABLE public_pii.customers ADD CONSTRAINT tap_au_fk FOREIGN KEY (channel) REFERENCES public.tap_au_codes (code);
-- (phones: unique, checked at the statement's end -- its DETAIL would name
-- the envelope)
DROP INDEX public_pii.tap_au_phone;
ALTER TABLE public_pii.customers ADD CONSTRAINT tap_au_dphone UNIQUE (phone) DEFERRABLE INITIALLY IMMEDIATE;
-- A partitioned protected table whose partition's trigger moves a row out
-- of it (a partition constraint violation, raised on the partition).
CREATE TABLE public.tap_au_orders (id bigint PRIMARY KEY, card pii_guard.encrypted_text, note text NOT NULL) PARTITION BY RANGE (id);
CREATE TABLE public.tap_au_orders_a PARTITION OF public.tap_au_orders FOR VALUES FROM (0) TO (100);
CREATE TABLE public.tap_au_orders_b PARTITION OF public.tap_au_orders FOR VALUES FROM (100) TO (1000);
INSERT INTO public.tap_au_orders VALUES (1, '6222020000001234567', 'a'), (150, '6222020000007654321', 'b');
CREATE FUNCTION public.tap_au_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.note = 'move' THEN NEW.id := NEW.id + 100; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER tap_au_move BEFORE INSERT OR UPDATE ON public.tap_au_orders_a FOR EACH ROW EXECUTE FUNCTION public.tap_au_move();
GRANT SELECT, INSERT, UPDATE ON public.tap_au_orders TO sales, manager;
SELECT pii_guard.protect_table('public.tap_au_orders') IS NOT NULL AS protected \gset
SELECT pii_guard.protect_column('tap_au_orders', 'card', 'core', 'pii_guard.mask_bank_card(text)') IS NULL AS classified \gset

CREATE TEMP TABLE errs (n int, what text, sql text, code text);
GRANT SELECT ON errs TO PUBLIC;
INSERT INTO errs VALUES
  (1, 'NOT NULL (DO UPDATE SET name = NULL)',
   $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET name = NULL, phone = EXCLUDED.phone$$, '23502'),
  (2, 'NOT NULL (the proposed row)',
   $$INSERT INTO customers (id, name, phone) VALUES (1, NULL, '13800000000') ON CONFLICT (id) DO NOTHING$$, '23502'),
  (3, 'CHECK (DO UPDATE)',
   $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET email = repeat('e', 50), phone = EXCLUDED.phone$$, '23514'),
  (4, 'CHECK (the proposed row)',
   $$INSERT INTO customers (id, name, phone, email) VALUES (2000010, 'x', '13800000000', repeat('e', 50)) ON CONFLICT (id) DO NOTHING$$, '23514'),
  (5, 'unique, not the arbiter (DO UPDATE)',
   $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET email = 'lixiaolong@example.com', phone = EXCLUDED.phone$$, '23505'),
  (6, 'exclusion (DO UPDATE)',
   $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET address = '广东省深圳市南山区科技园南区8栋', phone = EXCLUDED.phone$$, '23P01'),
  (7, 'foreign key (DO UPDATE)',
   $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13800000000') ON CONFLICT (id) DO UPDATE SET channel = 'nowhere', phone = EXCLUDED.phone$$, '23503'),
  (8, 'deferrable unique on an encrypted column at the statement''s end (DO UPDATE)',
   $$INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13900001111') ON CONFLICT (id) DO UPDATE SET name = 'y', phone = EXCLUDED.phone$$, '23505'),
  (9, 'deferrable unique on an encrypted column at SET CONSTRAINTS',
   $$SET CONSTRAINTS public_pii.tap_au_dphone DEFERRED;
     INSERT INTO customers (id, name, phone) VALUES (1, 'x', '13900001111') ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone;
     SET CONSTRAINTS public_pii.tap_au_dphone IMMEDIATE$$, '23505'),
  (10, 'DO UPDATE moving the row to another partition (a partition''s trigger)',
   $$INSERT INTO tap_au_orders (id, card, note) VALUES (1, '6222020000009999999', 'x') ON CONFLICT (id) DO UPDATE SET card = EXCLUDED.card, note = 'move'$$, '0A000'),
  (11, 'NOT NULL on a partition (DO UPDATE)',
   $$INSERT INTO tap_au_orders (id, card, note) VALUES (1, '6222020000009999999', 'x') ON CONFLICT (id) DO UPDATE SET card = EXCLUDED.card, note = NULL$$, '23502'),
  (12, 'no partition for the row',
   $$INSERT INTO tap_au_orders (id, card, note) VALUES (5000, '6222020000009999999', 'x') ON CONFLICT (id) DO NOTHING$$, '23514'),
  (13, 'partition constraint (a partition''s trigger moves the inserted row)',
   $$INSERT INTO tap_au_orders (id, card, note) VALUES (2, '6222020000009999999', 'move') ON CONFLICT (id) DO NOTHING$$, '23514');

-- With row-level security (customers) and without (tap_au_orders has
-- none; customers' is disabled below): the SQLSTATE, and nothing stored in
-- the message, DETAIL, HINT or CONTEXT -- neither an envelope nor a value
-- the role cannot see (customer 2's phone and the cards excepted: the
-- role wrote those itself).
SELECT is(split_part(pg_temp.err('sales_bob', e.sql), E'\n', 1), e.code,
          format('6.%s sales_bob, row-level security: %s fails with %s', e.n, e.what, e.code))
  FROM errs e ORDER BY e.n;
SELECT ok(NOT pg_temp.secret_in(substr(pg_temp.err('sales_bob', e.sql), 6)),
          format('6.%s ... no envelope or stored value in its message, DETAIL, HINT or CONTEXT', e.n + 13))
  FROM errs e ORDER BY e.n;
ALTER TABLE public_pii.customers DISABLE ROW LEVEL SECURITY;
SELECT is(split_part(pg_temp.err('sales_bob', e.sql), E'\n', 1), e.code,
          format('6.%s sales_bob, no row-level security: %s fails with %s', e.n + 26, e.what, e.code))
  FROM errs e ORDER BY e.n;
SELECT ok(NOT pg_temp.secret_in(substr(pg_temp.err('sales_bob', e.sql), 6)),
          format('6.%s ... no envelope or stored value in its message, DETAIL, HINT or CONTEXT', e.n + 39))
  FROM errs e ORDER BY e.n;
-- The DETAIL: none, or one that tells why (never "Failing row contains",
-- nor a key's value).
SELECT is(split_part(pg_temp.err('mgr_eve', e.sql), E'\n', 2),
          CASE WHEN e.n IN (1, 2, 3, 4, 6, 7, 11, 13) THEN 'The row''s values are not shown: the columns of a protected table hold envelopes of protected values.'
               WHEN e.n = 10 THEN 'The result tuple would appear in a different partition than the original tuple.'
               ELSE '' END,
          format('6.%s mgr_eve, no row-level security, %s: DETAIL as expected', e.n + 52, e.what))
  FROM errs e ORDER BY e.n;
ALTER TABLE public_pii.customers ENABLE ROW LEVEL SECURITY;
-- The unique and exclusion violations among them are one probe each.
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:6.66';
SELECT is(string_agg(left(pg_temp.try(e.sql), 5), ',' ORDER BY e.n), '23505,23P01,23505,23505',
          '6.66 (the unique, exclusion and deferrable unique violations again, as sales_bob)')
  FROM errs e WHERE e.n IN (5, 6, 8, 9);
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 8::bigint, '6.67 ... each a probe, and each upsert''s conflict on customer 1 another');

-----------------------------------------------------------------------------
-- 7. reveal() through correlated subplans.  intern_fay holds a table of
-- envelopes a superuser copied for her from public_pii.customers (her
-- loot), and an approval for customer 1's national ID (so that the row key
-- decides what she sees).  Each statement must either be refused (42501)
-- or show her exactly what a plain SELECT on the view shows.
-----------------------------------------------------------------------------
CREATE SCHEMA tap_au_fay AUTHORIZATION intern_fay;
CREATE TABLE tap_au_fay.loot (k bigint, v pii_guard.encrypted_text, n pii_guard.encrypted_text);
INSERT INTO tap_au_fay.loot SELECT id, phone, national_id FROM public_pii.customers;
ALTER TABLE tap_au_fay.loot OWNER TO intern_fay;
SET LOCAL ROLE mgr_eve;
SELECT pii_guard.approve('intern_fay', 'customers', now() + interval '1 hour', 'tap: row-key test',
                         '{national_id}', '{1}') > 0 AS approved \gset
RESET ROLE;
-- What the view shows her: id -> phone, national ID.
SELECT pg_temp.q('intern_fay', 'SELECT id, phone, national_id FROM customers') AS shown \gset
SELECT is(:'shown'::text, '(1,138****5678,110101199003071234);(2,139****1111,440301********0018);(3,137****2222,310104********432X);(4,"+86 136****3333",110105********0011)',
          '7.1 (the view: customer 1''s national ID clear for her, the rest masked)');

CREATE TEMP TABLE proofs (n text, sql text, what text);
INSERT INTO proofs VALUES
  ('7.2',  $$SELECT c.id, (SELECT c.phone), (SELECT c.national_id) FROM customers c$$, 'a correlated subquery per column'),
  ('7.3',  $$SELECT c.id, (SELECT (SELECT c.phone)), (SELECT (SELECT (SELECT c.national_id))) FROM customers c$$, 'nested correlated subqueries'),
  ('7.4',  $$SELECT c.id, (SELECT c.phone FROM customers c2 WHERE c2.id = 1), (SELECT (SELECT c.national_id) FROM customers c2 WHERE c2.id = 1) FROM customers c$$,
   'a subquery over another row (customer 1, approved) around the outer row''s column'),
  ('7.5',  $$SELECT c.id, (SELECT c.phone FROM tap_au_fay.loot l WHERE l.k = c.id), (SELECT c.national_id FROM tap_au_fay.loot l WHERE l.k = 1) FROM customers c$$,
   'a subquery over her loot around the outer row''s column'),
  ('7.6',  $$SELECT l.k, (SELECT c.phone FROM customers c WHERE c.id = l.k), (SELECT c.national_id FROM customers c WHERE c.id = l.k) FROM tap_au_fay.loot l$$,
   'a subquery per loot row (key from her table)'),
  ('7.7',  $$SELECT c.id, x.p, x.n FROM customers c, LATERAL (SELECT c.phone AS p, c.national_id AS n OFFSET 0) x$$, 'a lateral subquery'),
  ('7.8',  $$SELECT c.id, x.p, x.n FROM customers c CROSS JOIN LATERAL (SELECT c.phone AS p, c.national_id AS n FROM tap_au_fay.loot l WHERE l.k = 1) x$$,
   'a lateral join with her loot'),
  ('7.9',  $$WITH x AS MATERIALIZED (SELECT c.id, (SELECT c.phone) AS p, (SELECT c.national_id) AS n FROM customers c) SELECT * FROM x$$, 'in a CTE'),
  ('7.10', $$SELECT c.id, (WITH y AS MATERIALIZED (SELECT c.phone AS p) SELECT p FROM y), (WITH y AS (SELECT c.national_id AS n) SELECT n FROM y) FROM customers c$$,
   'a CTE inside the correlated subquery'),
  ('7.11', $$SELECT c.id, (SELECT c.phone FROM generate_series(1, 3) g LIMIT 1), (SELECT max(left(c.national_id || g, -1)) FROM generate_series(1, 1) g) FROM customers c$$,
   'a set-returning function inside the subquery'),
  ('7.12', $$SELECT id, p, n FROM (SELECT DISTINCT c.id, (SELECT c.phone) AS p, (SELECT c.national_id) AS n, generate_series(1, 2) > 0 AS g FROM customers c) x$$,
   'a set-returning function beside it'),
  ('7.13', $$SELECT c.id, lag((SELECT c.phone), 0) OVER (ORDER BY c.id), first_value((SELECT c.national_id)) OVER (PARTITION BY c.id) FROM customers c$$,
   'window functions over it'),
  ('7.14', $$SELECT c.id, min((SELECT c.phone)), max((SELECT c.national_id)) FROM customers c GROUP BY c.id$$, 'aggregates, GROUP BY the key'),
  ('7.15', $$SELECT DISTINCT c.id, (SELECT c.phone), (SELECT c.national_id) FROM customers c, generate_series(1, 3)$$, 'DISTINCT'),
  ('7.16', $$SELECT u.id, (SELECT u.phone), (SELECT u.national_id) FROM (SELECT id, phone, national_id FROM customers UNION ALL SELECT -k, v::text, n::text FROM tap_au_fay.loot) u WHERE u.id > 0$$,
   'UNION ALL of the view with her loot'),
  ('7.17', $$SELECT u.id, (SELECT u.phone), (SELECT u.national_id) FROM (SELECT id, phone, national_id FROM customers UNION SELECT -k, v::text, n::text FROM tap_au_fay.loot) u WHERE u.id > 0$$,
   'UNION of the view with her loot'),
  ('7.18', $$SELECT c.id, (SELECT phone FROM customers WHERE id = c.id), (SELECT national_id FROM customers WHERE id = (SELECT 1) + c.id - 1) FROM customers c$$,
   'parameters set by an initplan'),
  ('7.19', $$SELECT c.id, (SELECT c.phone WHERE c.id IN (SELECT k FROM tap_au_fay.loot)), (SELECT c.national_id WHERE EXISTS (SELECT 1 FROM tap_au_fay.loot l WHERE l.k = c.id)) FROM customers c$$,
   'subqueries inside the subquery'),
  ('7.20', $$SELECT c.id, (SELECT c.phone ORDER BY l.k LIMIT 1) AS p, (SELECT c.national_id FROM tap_au_fay.loot l2 WHERE l2.k = l.k) FROM customers c JOIN tap_au_fay.loot l ON l.k = c.id$$,
   'a join with her loot, parameters from both'),
  ('7.21', $$SELECT c.id, (SELECT c.phone FROM customers c2 WHERE c2.id = c.id % 4 + 1), (SELECT c2.national_id FROM customers c2 WHERE c2.id = c.id) FROM customers c$$,
   'a subquery whose own row differs'),
  ('7.22', $$WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 2) SELECT DISTINCT c.id, (SELECT c.phone FROM r LIMIT 1), (SELECT c.national_id FROM r WHERE r.i = 2) FROM customers c$$,
   'a recursive CTE inside'),
  ('7.23', $$SELECT c.id, (SELECT c.phone), (SELECT c.national_id) FROM customers c JOIN tap_au_fay.loot l ON (SELECT c.phone) IS DISTINCT FROM l.v::text AND l.k = c.id$$,
   'a join condition over it'),
  ('7.24', $$SELECT c.id, (SELECT c.phone), (SELECT c.national_id) FROM customers c ORDER BY (SELECT c.national_id) DESC, (SELECT c.phone)$$, 'ORDER BY over it');
SELECT ok(pg_temp.q('intern_fay', p.sql) IN (:'shown', '42501 pii_guard.reveal() can only be used by masking views'),
          format('%s %s: refused or what the view shows (got: %s)', p.n, p.what, left(pg_temp.q('intern_fay', p.sql), 60)))
  FROM proofs p ORDER BY split_part(p.n, '.', 2)::int;

-- reveal() typed by her, in a correlated subquery.
CREATE TEMP TABLE typed (n text, sql text, what text);
INSERT INTO typed VALUES
  ('7.25', $$SELECT (SELECT pii_guard.reveal(l.n, 'public_pii.customers'::regclass, 'national_id', l.k)) FROM tap_au_fay.loot l$$, 'over her loot'),
  ('7.26', $$SELECT (SELECT pii_guard.reveal(l.n, 'public_pii.customers'::regclass, 'national_id', c.id)) FROM customers c JOIN tap_au_fay.loot l ON l.k = 3 WHERE c.id = 1$$,
   'her loot''s value with an approved row''s key'),
  ('7.27', $$SELECT (SELECT pii_guard.reveal(c.name, 'public_pii.customers'::regclass, 'name', c.id)) FROM customers c$$, 'over the outer row''s (masked) column'),
  ('7.28', $$SELECT (SELECT pii_guard.reveal(c.sales_owner::text, 'public_pii.customers'::regclass, 'name', c.id)) FROM customers c$$,
   'over an unprotected column of the outer row, named as another'),
  ('7.29', $$SELECT (SELECT (SELECT pii_guard.reveal(l.n, 'public_pii.customers'::regclass, 'national_id', k.id) FROM customers k WHERE k.id = 1)) FROM tap_au_fay.loot l$$,
   'nested, her value with an approved key'),
  ('7.30', $$SELECT x.r FROM tap_au_fay.loot l, LATERAL (SELECT pii_guard.reveal(l.n, 'public_pii.customers'::regclass, 'national_id', l.k) AS r OFFSET 0) x$$, 'in a lateral subquery');
SELECT is(left(pg_temp.q('intern_fay', t.sql), 5), '42501', format('%s reveal() typed in a correlated subquery %s: refused', t.n, t.what))
  FROM typed t ORDER BY split_part(t.n, '.', 2)::int;
SELECT is(pg_temp.q('intern_fay', $$SELECT c.id FROM customers c WHERE (SELECT c.national_id) = '31010419920815432X' OR (SELECT c.phone) = '13711112222'$$),
          '', '7.31 a filter on the subquery compares what she sees');

-- Writes through correlated subqueries: what the role sees is stored.
SELECT is(pg_temp.run('sales_bob', $$UPDATE customers c SET email = (SELECT c.phone || '@x') WHERE id = 1 RETURNING email$$,
                      $$SELECT email FROM public_pii.customers WHERE id = 1$$),
          'ok 1: (13812345678@x) | 13812345678@x', '7.32 sales_bob: UPDATE ... SET email = (SELECT c.phone || ''@x'') (he sees the phone)');
SELECT is(pg_temp.run('sales_bob', $$UPDATE customers c SET email = (SELECT c.national_id) WHERE id = 1 RETURNING email$$,
                      $$SELECT email FROM public_pii.customers WHERE id = 1$$),
          'ok 1: (110101********1234) | 110101********1234', '7.33 ... SET email = (SELECT c.national_id): the mask he sees is stored');
SELECT is(pg_temp.run('mgr_eve', $$UPDATE customers c SET address = (SELECT c2.national_id FROM customers c2 WHERE c2.id = c.id) WHERE id = 3 RETURNING address$$,
                      $$SELECT address FROM public_pii.customers WHERE id = 3$$),
          'ok 1: (310104********432X) | 310104********432X', '7.34 mgr_eve: a subquery over the row by its key stores the mask');
-- A prepared statement follows the current role.
PREPARE tap_au_sub AS SELECT c.id, (SELECT c.national_id) FROM customers c WHERE c.id IN (1, 3);
SELECT is(pg_temp.q(r, 'EXECUTE tap_au_sub'), v, format('7.35 the prepared correlated subquery, executed by %s', r))
  FROM (VALUES ('intern_fay'::name, '(1,110101199003071234);(3,310104********432X)'),
               ('mgr_eve', '(1,110101********1234);(3,310104********432X)'),
               ('mkt_amy', '(1,);(3,)')) v(r, v);
DEALLOCATE tap_au_sub;

-----------------------------------------------------------------------------
-- 8. Prepared upserts across SET SESSION AUTHORIZATION and SET ROLE: the
-- role that executes one is the one whose privileges, row-level security,
-- masks and probes apply, whoever prepared it, custom and generic plans.
-----------------------------------------------------------------------------
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION mgr_eve;
SET LOCAL application_name = 'tap_au:8.1';
PREPARE tap_au_p(bigint, text) AS
    INSERT INTO customers (id, name, national_id) VALUES ($1, 'x', $2)
    ON CONFLICT (id) DO UPDATE SET national_id = EXCLUDED.national_id RETURNING id, national_id;
SELECT is(pg_temp.try($$EXECUTE tap_au_p(3, '310104199208154329')$$), 'ok 1: (3,310104********4329)',
          '8.1 mgr_eve prepares an upsert of a national ID and executes it (she may; shown masked)');
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:8.2';
SELECT is(pg_temp.try($$EXECUTE tap_au_p(3, '310104199208154329')$$),
          '42501 new row violates row-level security policy (USING expression) for table "customers"',
          '8.2 sales_bob executes her statement on a customer hidden from him: refused by row-level security');
SELECT is(pg_temp.try($$EXECUTE tap_au_p(1, '110101199003079999')$$), '42501 permission denied for view customers',
          '8.3 ... on his own customer: he may not change a national ID');
SELECT is(pg_temp.try($$EXECUTE tap_au_p(1, '110101********1234')$$), 'ok 1: (1,110101********1234)',
          '8.4 ... sent back as he sees it: kept, shown masked');
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT is(pg_temp.try($$EXECUTE tap_au_p(3, '310104199208154329')$$) || ' | ' || pg_temp.try($$EXECUTE tap_au_p(1, '110101199003079999')$$),
          '42501 new row violates row-level security policy (USING expression) for table "customers" | 42501 permission denied for view customers',
          '8.5 ... the same with the generic plan');
RESET plan_cache_mode;
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('mgr_eve') || ' ' || pg_temp.used('sales_bob'), '2 6',
          '8.6 each execution''s conflict is the executing role''s probe (mgr_eve 1 + 1 row returned; sales_bob 5 + 1 row returned)');
SET LOCAL application_name = 'pg_prove';
SELECT is(pg_temp.run(r, $$EXECUTE tap_au_p(3, NULL)$$, 'SELECT (national_id::text = ' || quote_literal(:'n3') || ')::text FROM public_pii.customers WHERE id = 3'), v,
          format('8.7 executed under SET ROLE %s', r))
  FROM (VALUES ('intern_fay'::name, '42501 permission denied for view customers | true'),
               ('mkt_amy', 'ok 1: (3,) | true'),
               ('support_dan', '42501 permission denied for view customers | true')) v(r, v);
DEALLOCATE tap_au_p;
-- Prepared by sales_bob (who sees his own customers), executed by others.
SET LOCAL SESSION AUTHORIZATION sales_bob;
PREPARE tap_au_r(bigint) AS
    INSERT INTO customers (id, name) VALUES ($1, 'r') ON CONFLICT (id) DO UPDATE SET name = customers.name RETURNING id, name, phone, national_id;
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.run(r, $$EXECUTE tap_au_r(3)$$), v, format('8.8 sales_bob''s prepared upsert executed under SET ROLE %s', r))
  FROM (VALUES ('sales_bob'::name, '42501 new row violates row-level security policy (USING expression) for table "customers"'),
               ('mgr_eve', 'ok 1: (3,王芳,13711112222,310104********432X)'),
               ('intern_fay', 'ok 1: (3,王*,137****2222,310104********432X)'),
               ('mkt_amy', 'ok 1: (3,,,)')) v(r, v);
DEALLOCATE tap_au_r;
-- Prepared by the superuser (exempt), executed by a governed role: counted.
PREPARE tap_au_s(bigint) AS INSERT INTO customers (id, name) VALUES ($1, 's') ON CONFLICT (id) DO NOTHING RETURNING id;
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:8.9';
SELECT is(pg_temp.try('EXECUTE tap_au_s(3)') || ' ' || pg_temp.try('EXECUTE tap_au_s(4)'), 'ok 0:  ok 0: ',
          '8.9 a DO NOTHING the superuser prepared, executed by sales_bob on two hidden customers');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 2::bigint, '8.10 ... two probes');
SET LOCAL application_name = 'pg_prove';
DEALLOCATE tap_au_s;

-----------------------------------------------------------------------------
-- 9. A partitioned protected table (tap_au_orders, section 6: card
-- encrypted, 'core', masked for sales and the manager), with row-level
-- security now: sales do not see sales_carl's orders 2 and 152 (one in
-- each partition), and may insert any order.
-----------------------------------------------------------------------------
INSERT INTO public_pii.tap_au_orders VALUES (2, '6222020000000000002', 'carl'), (152, '6222020000000000152', 'carl');
ALTER TABLE public_pii.tap_au_orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY tap_au_orders_sales ON public_pii.tap_au_orders
    USING (note <> 'carl' OR NOT pg_has_role(current_user, 'sales', 'USAGE')
           OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user))
    WITH CHECK (true);
SELECT pii_guard.decrypt(card) AS card1 FROM public_pii.tap_au_orders WHERE id = 1 \gset
SELECT card::text AS card1_env FROM public_pii.tap_au_orders WHERE id = 1 \gset
SELECT pg_temp.q('sales_bob', 'SELECT id, card, note FROM tap_au_orders') AS orders_bob \gset
SELECT is(:'orders_bob'::text, '(1,622202*********4567,a);(150,622202*********4321,b)', '9.1 (sales_bob sees orders 1 and 150, their cards masked)');

SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:9.2';
SELECT is(pg_temp.try($$INSERT INTO tap_au_orders (id, card, note) VALUES (152, '6222020000000000000', 'p') ON CONFLICT (id) DO NOTHING$$)
          || ' ' || pg_temp.try($$INSERT INTO tap_au_orders (id, card, note) VALUES (2, '6222020000000000000', 'p') ON CONFLICT (id) DO NOTHING$$)
          || ' ' || pg_temp.try($$INSERT INTO tap_au_orders (id, card, note) VALUES (151, '6222020000000000000', 'p') ON CONFLICT (id) DO NOTHING$$),
          'ok 0 ok 0 ok 1', '9.2 DO NOTHING on the hidden orders of each partition, and on a free key');
SELECT is(pg_temp.try($$INSERT INTO tap_au_orders (id, card, note) VALUES (152, '6222020000000000000', 'p') ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note RETURNING id, card$$),
          '42501 new row violates row-level security policy (USING expression) for table "tap_au_orders"',
          '9.3 DO UPDATE ... RETURNING card on the hidden order: refused, nothing returned');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 3::bigint, '9.4 ... each conflict a probe');
SET LOCAL application_name = 'pg_prove';
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO tap_au_orders (id, card, note) VALUES (1, '6222020000009999999', 'p') ON CONFLICT (id) DO UPDATE SET card = EXCLUDED.card RETURNING id, card$$,
                      'SELECT pii_guard.decrypt(card) || '' '' || (card::text LIKE ''pii_guard:%'')::text FROM public_pii.tap_au_orders WHERE id = 1'),
          'ok 1: (1,622202*********9999) | 6222020000009999999 true', '9.5 SET card = EXCLUDED.card on order 1: sealed, returned masked');
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO tap_au_orders (id, card, note) VALUES (1, '622202*********4567', 'p') ON CONFLICT (id) DO UPDATE SET card = EXCLUDED.card, note = EXCLUDED.note$$,
                      'SELECT (card::text = ' || quote_literal(:'card1_env') || ')::text || '' '' || note FROM public_pii.tap_au_orders WHERE id = 1'),
          'ok 1 | true p', '9.6 the card sent back masked, as loaded: kept as stored');
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO tap_au_orders (id, card, note) VALUES (1, '6222020000009999999', 'p') ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.card$$),
          '0A000 this INSERT ... ON CONFLICT is not supported on masking view tap_au_orders', '9.7 SET note = EXCLUDED.card: refused');
SELECT is(split_part(pg_temp.err('sales_bob', $$INSERT INTO tap_au_orders (id, card, note) VALUES (1, '6222020000009999999', 'p') ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.card$$), E'\n', 2),
          'EXCLUDED''s value of an encrypted column is used other than to set the same column.', '9.8 ... with the reason');
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO tap_au_orders (id, card, note) VALUES (1, NULL, 'p') ON CONFLICT (id) DO UPDATE SET id = tap_au_orders.id + 200$$),
          '42501 permission denied to change row key column "id" of public.tap_au_orders', '9.9 DO UPDATE moving the row key (and the row to the other partition): refused');
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO tap_au_orders (id, card, note) VALUES (500, '6222020000005555555', 'new') ON CONFLICT (id) DO UPDATE SET note = 'x' RETURNING id, card$$,
                      'SELECT pii_guard.decrypt(card) FROM public.tap_au_orders_b WHERE id = 500'),
          'ok 1: (500,622202*********5555) | 6222020000005555555', '9.10 a new order, routed to tap_au_orders_b, sealed, returned masked');
SELECT is(pg_temp.run('mgr_eve', $$INSERT INTO tap_au_orders (id, card, note) VALUES (152, '6222020000005555555', 'new') ON CONFLICT (id) DO UPDATE SET card = EXCLUDED.card RETURNING id, card$$,
                      'SELECT pii_guard.decrypt(card) FROM public.tap_au_orders_b WHERE id = 152'),
          'ok 1: (152,622202*********5555) | 6222020000005555555', '9.11 mgr_eve (no row-level security for her): DO UPDATE of order 152, sealed');
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO public.tap_au_orders_a (id, card, note) VALUES (1, '6222020000009999999', 'p') ON CONFLICT (id) DO UPDATE SET card = EXCLUDED.card$$),
          '42501 permission denied to encrypt pii_guard values', '9.12 an upsert straight into a partition, with a card: refused');
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO public.tap_au_orders_a (id, note) VALUES (2, 'p') ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note RETURNING card$$),
          '42501 permission denied for table tap_au_orders_a', '9.13 ... without one (a probe of hidden order 2, and its envelope back): refused');
SELECT is(pg_temp.run('intern_fay', $$INSERT INTO tap_au_orders (id, card, note) VALUES (1, '6222020000009999999', 'p') ON CONFLICT (id) DO NOTHING$$),
          '42501 permission denied for view tap_au_orders', '9.14 intern_fay holds no INSERT on it: no upsert, no probe');

-----------------------------------------------------------------------------
-- 10. What ORMs send (Django, Sequelize, Prisma, Rails), CTEs wrapping an
-- upsert, INSERT ... SELECT from the view, a role's own view.
-----------------------------------------------------------------------------
CREATE SCHEMA tap_au_bob AUTHORIZATION sales_bob;
-- (a deferrable unique constraint cannot be an arbiter: PostgreSQL refuses
-- ON CONFLICT DO NOTHING without a target on such a table)
ALTER TABLE public_pii.customers DROP CONSTRAINT tap_au_dphone;
CREATE TABLE tap_au_bob.harvest (x text);
ALTER TABLE tap_au_bob.harvest OWNER TO sales_bob;
-- Django bulk_create(ignore_conflicts=True).
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:10.1';
SELECT is(pg_temp.try($$INSERT INTO "customers" ("id", "name", "phone", "sales_owner") VALUES (3, 'a', '13700000001', 'sales_bob'), (2000030, 'b', '13700000002', 'sales_bob') ON CONFLICT DO NOTHING$$),
          'ok 1', '10.1 Django bulk_create(ignore_conflicts=True) with a hidden customer''s key: the other row is inserted');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 1::bigint, '10.2 ... one probe');
SET LOCAL application_name = 'pg_prove';
-- Django bulk_create(update_conflicts=True, unique_fields=['id'], update_fields=[...]).
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO "customers" ("id", "name", "phone", "national_id") VALUES (1, 'Zhang', '13812345678', '110101********1234')
                                     ON CONFLICT("id") DO UPDATE SET "name" = EXCLUDED."name", "phone" = EXCLUDED."phone", "national_id" = EXCLUDED."national_id" RETURNING "customers"."id"$$,
                      'SELECT name || '' '' || (phone::text = ' || quote_literal(:'p1') || ')::text || '' '' || (national_id::text = ' || quote_literal(:'n1') || ')::text FROM public_pii.customers WHERE id = 1'),
          'ok 1: (1) | Zhang true true', '10.3 Django update_conflicts as sales_bob: the name changes, the phone and the masked national ID are kept as stored');
SELECT is(pg_temp.run('intern_fay', $$INSERT INTO "customers" ("id", "name", "phone") VALUES (3, 'Wang', '137****2222')
                                      ON CONFLICT("id") DO UPDATE SET "name" = EXCLUDED."name", "phone" = EXCLUDED."phone" RETURNING "customers"."id"$$,
                      'SELECT name || '' '' || (phone::text = ' || quote_literal(:'p3') || ')::text FROM public_pii.customers WHERE id = 3'),
          'ok 1: (3) | Wang true', '10.4 ... as intern_fay, with the phone she loaded masked: kept');
-- Sequelize Model.upsert() (bind parameters, every field in SET, RETURNING every field).
SET LOCAL SESSION AUTHORIZATION sales_bob;
PREPARE tap_au_sq(bigint, text, text, text, name) AS
    INSERT INTO "customers" ("id","name","phone","national_id","sales_owner") VALUES ($1,$2,$3,$4,$5)
    ON CONFLICT ("id") DO UPDATE SET "id"=EXCLUDED."id","name"=EXCLUDED."name","phone"=EXCLUDED."phone","national_id"=EXCLUDED."national_id","sales_owner"=EXCLUDED."sales_owner"
    RETURNING "id","name","phone","national_id","sales_owner";
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.run('sales_bob', $$EXECUTE tap_au_sq(1, '张三丰', '13800000009', '110101********1234', 'sales_bob')$$,
                      'SELECT pii_guard.decrypt(phone) || '' '' || (national_id::text = ' || quote_literal(:'n1') || ')::text FROM public_pii.customers WHERE id = 1'),
          'ok 1: (1,张三丰,13800000009,110101********1234,sales_bob) | 13800000009 true',
          '10.5 Sequelize upsert of sales_bob''s customer with a new phone: the phone sealed, the masked national ID kept, RETURNING as he sees it');
SELECT is(pg_temp.run('sales_bob', $$EXECUTE tap_au_sq(3, 'x', '13711112222', '31010419920815432X', 'sales_bob')$$),
          '42501 new row violates row-level security policy (USING expression) for table "customers"',
          '10.6 ... of a hidden customer: refused, nothing returned');
SELECT is(pg_temp.run('sales_bob', $$EXECUTE tap_au_sq(2000031, 'new', '13700000003', '110101200001010000', 'sales_bob')$$),
          'ok 1: (2000031,new,13700000003,110101********0000,sales_bob)', '10.7 ... of a new customer: inserted');
DEALLOCATE tap_au_sq;
-- Prisma upsert (schema-qualified, WHERE on the target, 1=1).
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO "public"."customers" ("id","name","email") VALUES (1,'y','y@example.com')
                                     ON CONFLICT ("id") DO UPDATE SET "email" = 'z@example.com' WHERE ("public"."customers"."id" = 1 AND 1=1)
                                     RETURNING "public"."customers"."id", "public"."customers"."email", "public"."customers"."national_id"$$),
          'ok 1: (1,z@example.com,110101********1234)', '10.8 Prisma upsert: works, RETURNING masked');
-- Rails upsert_all: SET col = excluded.col works; its timestamp CASE over an
-- encrypted column of EXCLUDED is refused, with the reason.
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO "customers" ("id","name","phone") VALUES (1, '张三丰', '13800000009')
                                     ON CONFLICT ("id") DO UPDATE SET "name"=excluded."name","phone"=excluded."phone" RETURNING "id"$$),
          'ok 1: (1)', '10.9 Rails upsert_all');
SELECT is(array_to_string((string_to_array(pg_temp.err('sales_bob', $$INSERT INTO "customers" ("id","name","phone") VALUES (1, '张三丰', '13800000009')
                                     ON CONFLICT ("id") DO UPDATE SET "campaign"=(CASE WHEN ("customers"."phone" IS NOT DISTINCT FROM excluded."phone") THEN "customers"."campaign" ELSE 'changed' END),
                                     "name"=excluded."name","phone"=excluded."phone" RETURNING "id"$$), E'\n'))[1:4], E'\n'),
          E'0A000\nEXCLUDED''s value of an encrypted column is used other than to set the same column.\nName the conflict target by its columns, and set an encrypted column from EXCLUDED only as SET col = EXCLUDED.col.\nthis INSERT ... ON CONFLICT is not supported on masking view customers',
          '10.10 Rails'' record_timestamps CASE over excluded.phone: 0A000, the reason and a hint');
-- CTEs wrapping an upsert: what leaves is what the role sees, and counts.
SELECT pg_temp.mark();
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:10.11';
SELECT is(pg_temp.try($$WITH u AS (INSERT INTO customers (id, name) VALUES (1, 'w') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name RETURNING id, national_id)
                        SELECT id, national_id FROM u$$),
          'ok 1: (1,110101********1234)', '10.11 a CTE''s DO UPDATE ... RETURNING national_id read by the outer query: masked');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.used('sales_bob'), 2::bigint, '10.12 ... one probe and one row exported');
SET LOCAL application_name = 'pg_prove';
SELECT is(pg_temp.run('sales_bob', $$WITH u AS (INSERT INTO customers (id, name) VALUES (1, 'w') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name RETURNING national_id, phone)
                                     INSERT INTO tap_au_bob.harvest SELECT national_id || ' ' || phone FROM u RETURNING x$$,
                      'SELECT string_agg(x, '','') FROM tap_au_bob.harvest'),
          'ok 1: ("110101********1234 13812345678") | 110101********1234 13812345678', '10.13 ... written into his own table: the mask, no envelope');
-- INSERT ... SELECT from the view itself: what the role reads is what it writes.
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO customers (id, name, national_id) SELECT id, name, national_id FROM customers WHERE id = 1
                                     ON CONFLICT (id) DO UPDATE SET national_id = EXCLUDED.national_id$$,
                      'SELECT (national_id::text = ' || quote_literal(:'n1') || ')::text FROM public_pii.customers WHERE id = 1'),
          'ok 1 | true', '10.14 INSERT ... SELECT of his customer''s row from the view, DO UPDATE SET national_id = EXCLUDED.national_id: kept');
SELECT is(pg_temp.run('mgr_eve', $$INSERT INTO customers (id, name, national_id) SELECT 1, 'x', national_id FROM customers WHERE id = 3
                                   ON CONFLICT (id) DO UPDATE SET national_id = EXCLUDED.national_id$$,
                      'SELECT pii_guard.decrypt(national_id) FROM public_pii.customers WHERE id = 1'),
          'ok 1 | 310104********432X', '10.15 mgr_eve copies customer 3''s national ID into customer 1: the mask she saw is stored, never the value');
-- A role's own view over the masking view: not rewritten, so refused.
SET LOCAL ROLE sales_bob;
CREATE VIEW tap_au_bob.v AS SELECT * FROM public.customers;
RESET ROLE;
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO tap_au_bob.v (id, name) VALUES (3, 'v') ON CONFLICT DO NOTHING$$),
          '0A000 INSERT ... ON CONFLICT is not supported on masking view public.customers', '10.16 an upsert through his own view: refused');
SELECT is(pg_temp.run('sales_bob', $$INSERT INTO tap_au_bob.v (id, name) VALUES (1, 'v') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name$$),
          '42P10 there is no unique or exclusion constraint matching the ON CONFLICT specification', '10.17 ... with a conflict target: no index answers');

-----------------------------------------------------------------------------
-- 11. The table's owner (exempt: sees everything, no probes), and the
-- marked function typed by anyone.
-----------------------------------------------------------------------------
CREATE ROLE tap_au_owner;
ALTER TABLE public_pii.tap_au_orders OWNER TO tap_au_owner;
GRANT SELECT, INSERT, UPDATE ON public.tap_au_orders TO tap_au_owner;
SELECT pii_guard.export_usage('tap_au_owner') AS owner_before \gset
SET LOCAL SESSION AUTHORIZATION tap_au_owner;
SELECT is(pg_temp.try($$INSERT INTO tap_au_orders (id, card, note) VALUES (150, '6222020000000000150', 'o') ON CONFLICT (id) DO UPDATE SET card = EXCLUDED.card RETURNING id, card$$),
          'ok 1: (150,6222020000000000150)', '11.1 the owner''s upsert: sealed, returned in clear');
SELECT is(pg_temp.try($$INSERT INTO tap_au_orders (id, card, note) VALUES (150, '6222020000000000150', 'o') ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.card$$),
          '0A000 this INSERT ... ON CONFLICT is not supported on masking view tap_au_orders', '11.2 the EXCLUDED rule holds for the owner too');
SELECT is(pg_temp.try($$INSERT INTO tap_au_orders (id, card, note) VALUES (150, NULL, 'o') ON CONFLICT (id) DO UPDATE SET id = 160 RETURNING id$$),
          'ok 1: (160)', '11.3 the owner may change a row key');
RESET SESSION AUTHORIZATION;
SELECT is(pii_guard.export_usage('tap_au_owner') - :owner_before, 0::bigint, '11.4 the owner''s conflicts are no probes (exempt)');
SELECT is(left(pg_temp.q(r, $$SELECT pii_guard._write_conflict('public_pii.customers'::regclass, true)$$), 5), '42501',
          format('11.5 %s: _write_conflict() typed is refused', r))
  FROM unnest(ARRAY['sales_bob', 'mgr_eve', 'intern_fay', 'mkt_amy', 'support_dan', 'tap_au_owner']::name[]) r;
SELECT is(left(pg_temp.run(r, $$INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET name = 'y' WHERE pii_guard._write_conflict('public_pii.customers'::regclass, true)$$), 5),
          '42501', format('11.6 %s: _write_conflict() typed in an upsert''s WHERE is refused', r))
  FROM unnest(ARRAY['sales_bob', 'mgr_eve']::name[]) r;

-----------------------------------------------------------------------------
-- 12. Deny events: every statement counted above is one 'probe' event with
-- as many rows as it had conflicts, also those seen by the real client in
-- section 1.  (A last probe marks the end of the queue.)
-----------------------------------------------------------------------------
SET LOCAL SESSION AUTHORIZATION sales_bob;
SET LOCAL application_name = 'tap_au:end';
SELECT is(pg_temp.try($$INSERT INTO customers (id, name) VALUES (3, 'end') ON CONFLICT (id) DO NOTHING$$), 'ok 0', '(the last probe)');
RESET SESSION AUTHORIZATION;
SET LOCAL application_name = 'pg_prove';
CREATE FUNCTION pg_temp.wait_end(since bigint) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    FOR i IN 1..50 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pii_guard.audit_log WHERE event_id > since AND application_name = 'tap_au:end');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$f$;
SELECT pg_temp.wait_end(:start);
CREATE FUNCTION pg_temp.probes(tag text, since bigint) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(sum(attempts), 0) || ' events, ' || coalesce(sum(rows), 0) || ' rows'
      FROM pii_guard.audit_denials
     WHERE event_id > since AND operation = 'probe' AND application_name = tag
$$;
SELECT is(pg_temp.probes(t, :start), v, format('12.%s deny events of %s', n, t))
  FROM (VALUES (1, 'tap_au:1.1', '1 events, 1 rows'),
               (2, 'tap_au:1.2', '1 events, 1 rows'),
               (3, 'tap_au:1.3', '2 events, 2 rows'),
               (4, 'tap_au:1.4', '1 events, 1 rows'),
               (5, 'tap_au:1.5', '1 events, 1 rows'),
               (6, 'tap_au:1.8', '0 events, 0 rows'),
               (7, 'tap_au:1.9', '2 events, 2 rows'),
               (8, 'tap_au:3.1', '1 events, 1 rows'),
               (9, 'tap_au:3.3', '1 events, 1 rows'),
               (10, 'tap_au:3.8', '1 events, 3 rows'),
               (11, 'tap_au:3.10', '1 events, 2 rows'),
               (12, 'tap_au:3.14', '1 events, 1 rows'),
               (13, 'tap_au:3.19', '1 events, 1 rows'),
               (14, 'tap_au:3.20', '1 events, 2 rows'),
               (15, 'tap_au:3.21', '1 events, 1 rows'),
               (16, 'tap_au:3.22', '0 events, 0 rows'),
               (17, 'tap_au:4.1', '1 events, 1 rows'),
               (18, 'tap_au:4.5', '1 events, 1 rows'),
               (19, 'tap_au:6.66', '4 events, 8 rows'),
               (20, 'tap_au:4.16', '1 events, 1 rows'),
               (21, 'tap_au:4.18', '1 events, 1 rows'),
               (22, 'tap_au:4.23', '1 events, 1 rows'),
               (23, 'tap_au:4.24', '1 events, 2 rows'),
               (24, 'tap_au:8.1', '1 events, 1 rows'),
               (25, 'tap_au:8.2', '5 events, 5 rows'),
               (26, 'tap_au:8.9', '2 events, 2 rows'),
               (27, 'tap_au:9.2', '3 events, 3 rows'),
               (28, 'tap_au:10.1', '1 events, 1 rows'),
               (29, 'tap_au:10.11', '1 events, 1 rows')) v(n, t, v)
 ORDER BY n;
SELECT is((SELECT count(*)::int FROM pii_guard.audit_log
            WHERE event_id > :start AND kind = 'deny' AND operation = 'probe'
              AND (detail ~ '1371111|0000 3333|13800000000|john' OR row_keys::text ~ '1371111|0000 3333')), 0,
          '12.30 no probe event names the value probed');

SELECT * FROM finish();
ROLLBACK;

-- The committed set-up of section 1, undone.
\ir tap/upsert_reset.sql
