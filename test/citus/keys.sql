-- pgTAP on a Citus coordinator: one set of data keys for the cluster
-- (pii_guard.citus_setup() has run).  Encrypted columns in distributed,
-- co-located and reference tables, as values and as the distribution
-- column; keys rotated on the coordinator and used on the workers;
-- reencrypt_column on a distributed table.  Runs outside a transaction
-- block (reencrypt_column commits); leaves table keys_master behind for
-- test/citus/run.sh's master key stage.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT plan(21);

-- The same keys on every node.
SELECT is((SELECT count(DISTINCT result) || '/' || bool_and(success) FROM run_command_on_all_nodes(
              $$SELECT md5(string_agg(key_id || ':' || encode(wrapped_key, 'hex'), ',' ORDER BY key_id))
                  FROM pii_guard.data_keys$$)),
          '1/true', 'every node holds the same wrapped data keys');
SELECT is((SELECT count(*)::int FROM pii_guard.data_keys WHERE state = 'active'), 4,
          'an active key of each purpose exists before any value is encrypted');

-- A distributed table and a co-located one.
CREATE TABLE keys_customers (id bigint PRIMARY KEY, phone pii_guard.encrypted_text,
                             national_id pii_guard.encrypted_text);
SELECT create_distributed_table('keys_customers', 'id', shard_count => 8);
CREATE TABLE keys_orders (customer_id bigint, order_no int, card pii_guard.encrypted_text);
SELECT create_distributed_table('keys_orders', 'customer_id', colocate_with => 'keys_customers');
INSERT INTO keys_customers SELECT g, '1380000' || lpad(g::text, 4, '0'), '1101011990' || lpad(g::text, 8, '0')
  FROM generate_series(1, 200) g;
INSERT INTO keys_orders SELECT g % 200 + 1, g, '6222020' || lpad(g::text, 9, '0') FROM generate_series(1, 400) g;

SELECT is((SELECT count(DISTINCT nodeport)::int FROM citus_shards WHERE table_name = 'keys_customers'::regclass),
          2, 'the customers are on both workers');
SELECT is((SELECT count(DISTINCT pii_guard.decrypt(phone))::int FROM keys_customers WHERE pii_guard.decrypt(phone) LIKE '138%'),
          200, 'a multi-shard query decrypts every value on the workers');
-- (A router query goes to its worker whole, test function and all: such
-- queries are given to results_eq as text.)
SELECT results_eq($$SELECT pii_guard.decrypt(national_id) FROM keys_customers WHERE id = 77$$,
                  $$VALUES ('110101199000000077')$$, 'a router query decrypts on the worker that has the row');
SELECT is((SELECT count(*)::int FROM keys_customers c JOIN keys_orders o ON o.customer_id = c.id
            WHERE pii_guard.decrypt(o.card) LIKE '6222020%' AND pii_guard.decrypt(c.phone) LIKE '1380%'),
          400, 'a co-located join decrypts both tables on the workers');
SELECT is((SELECT id FROM keys_customers WHERE phone = '13800000150'), 150::bigint,
          'an equality search on an encrypted value (blind index) on every shard');

-- The encrypted column as the distribution column: its hash is the blind
-- index's, the same for the same plaintext under every data key.
CREATE TABLE keys_by_phone (phone pii_guard.encrypted_text, note text);
SELECT create_distributed_table('keys_by_phone', 'phone', colocate_with => 'none', shard_count => 8);
INSERT INTO keys_by_phone SELECT '1390000' || (g % 10), 'before ' || g FROM generate_series(1, 50) g;
SELECT results_eq($$SELECT count(*)::int FROM keys_by_phone WHERE phone = '13900003'$$, ARRAY[5],
                  'rows found by their encrypted distribution column');
CREATE TEMP TABLE plan_lines AS SELECT 1 AS n;
DO $$
DECLARE l text; tasks int;
BEGIN
    FOR l IN EXPLAIN (COSTS OFF) SELECT * FROM keys_by_phone WHERE phone = '13900003' LOOP
        IF l ~ 'Task Count: ' THEN tasks := substring(l from 'Task Count: (\d+)')::int; END IF;
    END LOOP;
    UPDATE plan_lines SET n = tasks;
END $$;
SELECT is((SELECT n FROM plan_lines), 1, '... by a router query to the one shard (Task Count: 1)');

SELECT ok(pii_guard.rotate_data_key() > 0, 'rotate_data_key() on the coordinator');
SELECT is((SELECT string_agg(DISTINCT result, ',') || '/' || bool_and(success) FROM run_command_on_all_nodes(
              $$SELECT pii_guard.key_id(pii_guard.encrypt('x'::text))$$)),
          (SELECT key_id || '/true' FROM pii_guard.data_keys WHERE purpose = 'encrypt' AND state = 'active'),
          '... every node now encrypts under the new key');
INSERT INTO keys_by_phone SELECT '1390000' || (g % 10), 'after ' || g FROM generate_series(1, 50) g;
-- (Not count(DISTINCT key_id(phone)): Citus computes that from one value
-- per group of equal plaintexts -- equality is the blind index's.)
SELECT is((SELECT count(*)::int FROM keys_by_phone
            WHERE pii_guard.key_id(phone) = (SELECT key_id FROM pii_guard.data_keys
                                              WHERE purpose = 'encrypt' AND state = 'active')),
          50, 'the rows written after the rotation are under the new key');
SELECT results_eq($$SELECT count(*)::int FROM keys_by_phone WHERE phone = '13900003'$$, ARRAY[10],
                  'the same plaintext goes to the same shard under either key');
SELECT is((SELECT count(DISTINCT get_shard_id_for_distribution_column('keys_by_phone', phone))::int
             FROM keys_by_phone WHERE pii_guard.decrypt(phone) = '13900003'), 1,
          '... one shard holds them all');

-- reencrypt_column on a distributed table: on the shards, in batches.
CALL pii_guard.reencrypt_column('keys_by_phone', 'phone', 7);
SELECT is((SELECT count(*)::int FROM keys_by_phone
            WHERE pii_guard.key_id(phone) = (SELECT key_id FROM pii_guard.data_keys
                                              WHERE purpose = 'encrypt' AND state = 'active')),
          100, 'reencrypt_column moved every value of a distributed table to the active key');
SELECT is((SELECT string_agg(DISTINCT pii_guard.decrypt(phone), ',' ORDER BY pii_guard.decrypt(phone)) FROM keys_by_phone),
          '13900000,13900001,13900002,13900003,13900004,13900005,13900006,13900007,13900008,13900009',
          '... every value still decrypts to what it was');
SELECT results_eq($$SELECT count(*)::int FROM keys_by_phone WHERE phone = '13900003'$$, ARRAY[10],
                  '... and is where its distribution column says');

-- Column names that Citus's own format() would read as placeholders.
CREATE TABLE keys_odd (id int, "growth%" pii_guard.encrypted_text, "a%1$s" pii_guard.encrypted_text);
SELECT create_distributed_table('keys_odd', 'id', colocate_with => 'none', shard_count => 4);
INSERT INTO keys_odd SELECT g, 'g' || g, 'a' || g FROM generate_series(1, 20) g;
SELECT ok(pii_guard.rotate_data_key() > 0, 'another rotation');
CALL pii_guard.reencrypt_column('keys_odd', 'growth%');
CALL pii_guard.reencrypt_column('keys_odd', 'a%1$s');
SELECT is((SELECT count(*)::int FROM keys_odd
            WHERE pii_guard.key_id("growth%") = pii_guard.key_id("a%1$s")
              AND pii_guard.key_id("a%1$s") = (SELECT key_id FROM pii_guard.data_keys
                                                WHERE purpose = 'encrypt' AND state = 'active')
              AND pii_guard.decrypt("growth%") = 'g' || id AND pii_guard.decrypt("a%1$s") = 'a' || id),
          20, 'reencrypt_column on columns named "growth%" and "a%1$s"');

CREATE TABLE keys_ref (code int PRIMARY KEY, secret pii_guard.encrypted_text);
SELECT create_reference_table('keys_ref');
INSERT INTO keys_ref VALUES (1, 'ref-one');
SELECT is((SELECT string_agg(result, ',') FROM run_command_on_workers(
              $$SELECT pii_guard.decrypt(secret) FROM keys_ref_$$ ||
              (SELECT shardid FROM pg_dist_shard WHERE logicalrelid = 'keys_ref'::regclass))),
          'ref-one,ref-one', 'a reference table''s placement decrypts on every worker');
SELECT throws_ok($$CALL pii_guard.reencrypt_column('keys_ref', 'secret')$$, '0A000', NULL,
                 'reencrypt_column refuses a reference table (each placement would differ)');

-- For the master key stage of test/citus/run.sh.
CREATE TABLE keys_master AS SELECT id, phone FROM keys_customers WHERE id <= 20;
SELECT create_distributed_table('keys_master', 'id');
SELECT * FROM finish();
