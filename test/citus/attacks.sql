-- pgTAP on a Citus coordinator: what a role that is not trusted with the
-- keys can try against encrypted columns on distributed tables -- on the
-- coordinator, in queries pushed down to the workers, and through Citus's
-- own run_command_on_* functions, which connect to the workers as the
-- calling role.  Everything is refused.  (The masking views of distributed
-- tables: test/citus/roles.sql, shards.sql and writes.sql.)
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE ROLE mallory LOGIN;
CREATE TABLE attack_people (id bigint PRIMARY KEY, phone pii_guard.encrypted_text);
SELECT create_distributed_table('attack_people', 'id', shard_count => 4);
INSERT INTO attack_people SELECT g, '1390000' || g FROM generate_series(1, 10) g;
GRANT SELECT ON attack_people TO mallory;
SELECT 'pii_guard.data_keys_' || shardid AS placement
  FROM pg_dist_shard WHERE logicalrelid = 'pii_guard.data_keys'::regclass \gset
SELECT phone::text AS envelope FROM attack_people WHERE id = 3 \gset

SELECT plan(12);
SET ROLE mallory;
SELECT is((SELECT count(*)::int FROM attack_people WHERE phone::text LIKE 'pii_guard:%'), 10,
          'mallory reads the envelopes she was granted, nothing more');
SELECT throws_ok($$SELECT pii_guard.decrypt(phone) FROM attack_people$$, '42501', NULL,
                 'decrypt() in a multi-shard query is refused (on the workers)');
SELECT throws_ok($$SELECT pii_guard.decrypt(phone) FROM attack_people WHERE id = 3$$, '42501', NULL,
                 'decrypt() in a router query is refused');
SELECT throws_ok($$SELECT pii_guard.reveal(phone, 'attack_people'::regclass, 'phone', id) FROM attack_people$$,
                 '42501', NULL, 'reveal() on a distributed table is refused (no masking view''s scan)');
SELECT throws_ok($$SELECT count(*) FROM attack_people WHERE pii_guard.decrypt(phone) = '13900003'$$, '42501', NULL,
                 'decrypt() in a pushed-down filter is refused');
SELECT throws_ok($$SELECT * FROM pii_guard.data_keys$$, '42501', NULL,
                 'the data keys are not hers to read on the coordinator');
SELECT is((SELECT string_agg(DISTINCT (success OR result NOT LIKE '%permission denied%')::text, ',')
             FROM run_command_on_workers(format('SELECT count(*) FROM %s', :'placement'))),
          'false', '... nor, through run_command_on_workers, on a worker''s placement');
SELECT is((SELECT string_agg(DISTINCT (success OR result NOT LIKE '%permission denied%')::text, ',')
             FROM run_command_on_workers(format('SELECT pii_guard.decrypt(%L::pii_guard.encrypted_text)', :'envelope'))),
          'false', 'decrypt() run on the workers through run_command_on_workers is refused');
SELECT throws_ok($$SELECT pii_guard.citus_setup()$$, '42501', NULL, 'citus_setup() is not hers');
SELECT throws_ok($$SELECT pii_guard.rotate_data_key()$$, '42501', NULL, 'nor rotate_data_key()');
SELECT throws_ok($$SELECT * FROM pii_guard.cluster_audit_log()$$, '42501', NULL,
                 'nor the cluster''s audit log');
SELECT throws_ok($$UPDATE attack_people SET phone = phone WHERE id = 3$$, '42501', NULL,
                 'nor writing the table she may only read');
RESET ROLE;
SELECT * FROM finish();

DROP TABLE attack_people;
DROP ROLE mallory;
