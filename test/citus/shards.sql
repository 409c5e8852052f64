-- pgTAP on a Citus coordinator, after test/citus/fixture.sql: what a
-- governed role can try against the shards of protected distributed
-- tables -- naming a shard through Citus's run_command_on_* functions,
-- which connect to the workers as the calling role (with any
-- application_name she likes), reading the shard from a function of her
-- own pushed down to the workers or delegated to one, feeding a view's
-- column back into reveal(), writing a shard with the statement the
-- coordinator sends for a write through the view, calling that
-- statement's functions anywhere else -- and what this release refuses on
-- Citus tables: some writes through their masking views (ON CONFLICT, in
-- a WITH query), reference tables, folding protected values (or writing
-- or returning them) under export limits.  Everything is refused.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE SCHEMA tap_shards AUTHORIZATION intern_fay;
CREATE TABLE tap_shards.copied (id bigint, phone text);
SELECT create_distributed_table('tap_shards.copied', 'id', colocate_with => 'public_pii.customers');
ALTER TABLE tap_shards.copied OWNER TO intern_fay;
SELECT 'public_pii.customers_' || min(shardid) AS shard
  FROM pg_dist_shard WHERE logicalrelid = 'public_pii.customers'::regclass \gset
SELECT plan(42);

SET ROLE intern_fay;
SELECT throws_ok($$SELECT * FROM public_pii.customers$$, '42501', NULL,
                 'the protected table itself is refused on the coordinator');
SELECT is((SELECT string_agg(DISTINCT (success OR result NOT LIKE '%permission denied%')::text, ',')
             FROM run_command_on_shards('public_pii.customers',
                  $$SELECT string_agg(pii_guard.reveal(phone, 'public_pii.customers'::regclass, 'phone'::name, id)::text, ',') FROM %s$$)),
          'false', 'the view''s own query on every shard, through run_command_on_shards: refused on the workers');
SELECT is((SELECT string_agg(DISTINCT (success OR result NOT LIKE '%permission denied%')::text, ',')
             FROM run_command_on_shards('public_pii.customers', 'SELECT count(*) FROM %s')),
          'false', 'counting a shard''s rows through run_command_on_shards: refused');
-- (run_command_on_workers shows only the first result of a string of
-- statements -- here SET -- so the query after it is looked for in the
-- workers' audit logs, as a refusal of a role that tried nothing else.
-- A revealed value cast to a number would have failed with its text in
-- the error instead, and no refusal recorded.)
RESET ROLE;
CREATE ROLE tap_spoofer LOGIN IN ROLE intern;
SET ROLE tap_spoofer;
SELECT is((SELECT string_agg(DISTINCT success || ':' || result, ',')
             FROM run_command_on_workers(format(
                  $$SET application_name TO 'citus_internal gpid=10000000001'; SELECT pii_guard.reveal(phone, 'public_pii.customers'::regclass, 'phone'::name, id)::int FROM %s LIMIT 1$$,
                  :'shard'))),
          'true:SET', 'a query after setting application_name to what Citus''s executor uses ...');
RESET ROLE;
SET citus.enable_ddl_propagation = off;
CREATE FUNCTION pg_temp.refusals_of(who name) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
    n bigint;
BEGIN
    FOR i IN 1 .. 100 LOOP
        SELECT count(*) INTO n FROM pii_guard.cluster_audit_log()
         WHERE kind = 'deny' AND session_role = who AND relation = 'public_pii.customers';
        EXIT WHEN n > 0;
        PERFORM pg_sleep(0.2);
    END LOOP;
    RETURN n;
END
$f$;
RESET citus.enable_ddl_propagation;
SELECT ok(pg_temp.refusals_of('tap_spoofer') > 0, '... is refused on the worker that has the shard, and audited there');
SET ROLE intern_fay;
-- tap_delegate.peek(k): a function of hers that reads the value of key k
-- through reveal() straight from the shard that holds it (test/citus/run.sh
-- makes it, and distributes it for its own test of delegation).
SELECT throws_ok($$SELECT tap_delegate.peek(id) FROM customers WHERE id = 1$$, '42501', NULL,
                 'a function of hers pushed down with a query on the view reads no shard');
SELECT throws_ok($$SELECT tap_delegate.peek(id) FROM customers$$, '42501', NULL,
                 '... in a multi-shard query either');
-- (delegated to a worker: test/citus/run.sh, which calls it as a client
-- does -- Citus delegates no call made from inside a function)
SELECT throws_ok($$SELECT pii_guard.reveal(phone, 'public_pii.customers'::regclass, 'phone'::name, id) FROM customers WHERE id = 1$$,
                 '42804', NULL, 'the view''s masked column fed back into reveal() is refused');
SELECT throws_ok($$SELECT count(*) FROM customers c WHERE pii_guard.reveal(c.phone, 'public_pii.customers'::regclass, 'phone'::name, c.id) IS NOT NULL$$,
                 '42804', NULL, '... also in a pushed-down filter');
SELECT results_eq($$SELECT c::text FROM (SELECT id, phone FROM customers) c WHERE id = 1$$,
                  $$VALUES ('(1,138****5678)')$$, 'a whole row of the view is the view''s columns, masked');
SELECT throws_ok($$SELECT string_agg(phone, ',') FROM customers$$, '0A000', NULL,
                 'under export limits, folding protected values on a distributed table is refused');
SELECT throws_ok($$SELECT array_agg(national_id) FROM customers WHERE id = 1$$, '0A000', NULL,
                 '... in a router query too');
SELECT lives_ok($$SELECT count(*), max(id) FROM customers WHERE phone LIKE '138%'$$,
                '... while counting what a search finds is not folding');
SELECT throws_ok($$INSERT INTO tap_shards.copied SELECT id, phone FROM customers$$, '0A000', NULL,
                 '... nor copying protected values into a table of hers');
SELECT throws_ok($$INSERT INTO tap_shards.copied SELECT id, 'x' FROM customers WHERE phone LIKE '13%'$$, '0A000', NULL,
                 '... nor the rows a protected value chose');
SELECT throws_ok($$WITH c AS (INSERT INTO tap_shards.copied SELECT id, phone FROM customers RETURNING 1) SELECT count(*) FROM c$$,
                 '0A000', NULL, '... also in a CTE');
SELECT is((SELECT count(*)::int FROM tap_shards.copied), 0, '... nothing was copied');
SELECT throws_ok($$SELECT id FROM customers WHERE phone LIKE '13%'$$, '54P01', NULL,
                 'the ids of the 33 customers whose phone matches, rows chosen by a protected value: over her limit');
SELECT throws_ok($$SELECT FROM customers WHERE phone LIKE '13%'$$, '54P01', NULL,
                 '... also as rows of no column');
SELECT throws_ok($$SELECT NULL::int FROM customers WHERE phone LIKE '13%'$$, '54P01', NULL,
                 '... or of NULLs');
SELECT throws_ok($$SELECT c FROM (SELECT id, phone FROM customers) c$$, '54P01', NULL,
                 'whole rows with protected values count (34 of them: over her limit)');
SELECT results_eq($$WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3)
                     SELECT count(*)::int FROM r$$, $$VALUES (3)$$,
                  'a recursive CTE is planned on the coordinator (its analysis does not follow it forever)');
RESET ROLE;

-- Writes.  The statement the coordinator sends a worker for a write
-- through the view (test/citus/writes.sql), and its functions, anywhere
-- else.
SET ROLE intern_fay;
SELECT throws_ok($$SELECT pii_guard._write_set_shard(name, 'public_pii.customers'::regclass, 'name'::name, id, 'x'::text, 3) FROM customers WHERE id = 1$$,
                 '42501', NULL, 'the write function of a distributed table''s view, called in a query: refused');
SELECT throws_ok($$SELECT pii_guard._reveal_shard(name, 'public_pii.customers'::regclass, 'name'::name, id) FROM customers WHERE id = 1$$,
                 '42501', NULL, 'its reveal(), declared IMMUTABLE, fed the view''s column: refused');
SELECT throws_ok($$SELECT pii_guard._reveal_shard('张三丰'::text, 'public_pii.customers'::regclass, 'name'::name, 1)$$,
                 '42501', NULL, '... with constants, which the planner evaluates: refused');
CREATE TABLE tap_shards.own (id bigint, name text);
SELECT throws_ok($$CREATE INDEX ON tap_shards.own (pii_guard._reveal_shard(name, 'public_pii.customers'::regclass, 'name'::name, id));
                   INSERT INTO tap_shards.own VALUES (1, 'x')$$,
                 '42501', NULL, '... in an index expression on a table of hers: refused');
SELECT is((SELECT string_agg(DISTINCT (success OR result NOT LIKE '%permission denied%')::text, ',')
             FROM run_command_on_shards('public_pii.customers',
                  $$UPDATE %s customers SET email = pii_guard._write_set_shard(customers.email, 'public_pii.customers'::regclass, 'email'::name, customers.id, 'x'::text, 3) WHERE customers.id = 1$$)),
          'false', 'the statement the coordinator sends for a write through the view, through run_command_on_shards: refused on the workers');
-- tap_delegate.poke(k): a function of hers that runs that statement on the
-- shard that holds key k (test/citus/run.sh makes it).
SELECT throws_ok($$SELECT tap_delegate.poke(id) FROM customers WHERE id = 1$$, '42501', NULL,
                 '... and from a function of hers pushed down with a query on the view');
RESET ROLE;
-- What this release does not write through such a view: refused, saying so.
CREATE TABLE tap_shards.parted (id bigint PRIMARY KEY, phone text) PARTITION BY RANGE (id);
CREATE TABLE tap_shards.parted_1 PARTITION OF tap_shards.parted FOR VALUES FROM (0) TO (1000);
SELECT create_distributed_table('tap_shards.parted', 'id', colocate_with => 'public_pii.customers');
INSERT INTO tap_shards.parted VALUES (1, '13800000001');
SELECT pii_guard.protect_column('tap_shards.parted', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
GRANT USAGE ON SCHEMA tap_shards TO manager;
GRANT SELECT, UPDATE ON tap_shards.parted TO manager;
SET ROLE mgr_eve;
SELECT throws_ok($$UPDATE tap_shards.parted SET phone = '13800000002' WHERE id = 1$$, '0A000', NULL,
                 'a write through the masking view of a partitioned distributed table: refused (0A000)');
SELECT throws_ok($$INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) DO NOTHING$$, '0A000', NULL,
                 'INSERT ... ON CONFLICT through the masking view of a distributed table: refused (0A000)');
SELECT throws_ok($$WITH u AS (UPDATE customers SET email = email WHERE id = 1 RETURNING id) SELECT count(*) FROM u$$,
                 '0A000', NULL, '... a write on it in a WITH query too');
SELECT throws_ok($$INSERT INTO customers (name, sales_owner) SELECT name, sales_owner FROM customers WHERE id = 1$$,
                 '0A000', NULL, '... INSERT ... SELECT (Citus would copy the rows to the shards)');
SELECT throws_ok($$UPDATE customers SET service_tier = DEFAULT WHERE id = 1$$,
                 '0A000', NULL, '... a column set to its DEFAULT (evaluated on the worker)');
RESET ROLE;
SELECT throws_ok($$SELECT pii_guard._reveal_shard('张三丰'::text, 'public_pii.customers'::regclass, 'name'::name, 1)$$,
                 '42501', NULL, 'the IMMUTABLE reveal(), called by a superuser on the coordinator: refused (it could be in an index expression a COPY evaluates)');
-- (her table, whose generated column is that IMMUTABLE reveal() of an
-- envelope: a superuser's INSERT into it computes it on the workers)
CREATE TABLE tap_shards.gen (id bigint PRIMARY KEY, env pii_guard.encrypted_text,
    seen text GENERATED ALWAYS AS (pii_guard._reveal_shard(env, 'public_pii.customers'::regclass, 'phone'::name, id)) STORED);
SELECT create_distributed_table('tap_shards.gen', 'id', colocate_with => 'public_pii.customers');
ALTER TABLE tap_shards.gen OWNER TO intern_fay;
SELECT throws_ok($$INSERT INTO tap_shards.gen (id, env) SELECT id, phone FROM public_pii.customers WHERE id = 1$$,
                 '42501', NULL, '... or in a generated column of her table, computed by a superuser''s INSERT on the workers');
-- Under export limits: a write that stores elsewhere, returns, or chooses
-- by protected values what the workers read out of the coordinator's
-- sight is refused; one that keeps its rows and values to itself is not.
GRANT UPDATE (email) ON customers TO intern;
SET ROLE intern_fay;
SELECT throws_ok($$UPDATE customers SET email = email WHERE id = 1 RETURNING phone$$, '0A000', NULL,
                 'under export limits, a write returning protected values is refused');
SELECT throws_ok($$UPDATE customers SET email = phone WHERE id = 1$$, '0A000', NULL,
                 '... one storing a protected value in another column too');
SELECT throws_ok($$UPDATE customers SET email = email WHERE phone LIKE '138%' RETURNING id$$, '0A000', NULL,
                 '... and one returning rows a protected value chose');
SELECT lives_ok($$UPDATE customers SET email = email WHERE phone LIKE '138%'$$,
                '... while a search whose rows stay in the table is a write like any other');
SELECT lives_ok($$UPDATE customers SET email = 'kunde5@example.com' WHERE id = 9 RETURNING id$$,
                '... as is a value of her own, returning the row key');
RESET ROLE;
REVOKE UPDATE (email) ON customers FROM intern;
SELECT results_eq($$SELECT name, pii_guard.decrypt(phone) FROM public_pii.customers WHERE id = 1$$,
                  $$VALUES ('张三丰', '13812345678')$$, 'the row is as it was');

CREATE TABLE tap_ref (id bigint PRIMARY KEY, phone text);
SELECT create_reference_table('tap_ref');
SELECT throws_ok($$SELECT pii_guard.protect_table('tap_ref')$$, '0A000', NULL,
                 'protect_table refuses a reference table, saying why');
DROP TABLE tap_ref;

SELECT * FROM finish();
SELECT pii_guard.unprotect_table('tap_shards.parted') \g /dev/null
DROP SCHEMA tap_shards CASCADE;
DROP ROLE tap_spoofer;
