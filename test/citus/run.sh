#!/usr/bin/env bash
# test/citus/run.sh -- what `make test-citus` runs: pii_guard on a Citus
# cluster (a coordinator and two workers on this machine; see
# test/citus/lib.sh for the build and the cluster).
#
# Stages, each reported as "ok"/"not ok" lines:
#   setup      pii_guard.citus_setup() refused while a worker has keys of its
#              own, refused on a worker, then done on the coordinator: the
#              key and policy tables on every node; TLS between the nodes
#              and the workers' login gate (citus_tls);
#   suites     the pgTAP suites test/citus/keys.sql and attacks.sql, run by
#              pg_prove on the coordinator;
#   masking views  the seed CRM (test/citus/fixture.sql) distributed on the
#              cluster and kept on one server (database crm1), the role
#              suite test/citus/roles.sql against both, the attacks on
#              shards (test/citus/shards.sql), the policy the same on every
#              node, reads and refusals on the workers in the auditor's log;
#   writes     test/citus/writes.sql against both (an ORM's save, changes
#              of one column, INSERT ... RETURNING, multi-row INSERT, an
#              UPDATE found by an encrypted column, DELETE, a statement
#              prepared by another role), the write events the workers
#              recorded, no written value in any node's log;
#   protection protect_table refused on a reference table, working on a
#              distributed one and on a coordinator-local one;
#   audit      a refusal on a worker and an admin event on the coordinator,
#              both seen by the auditor from the coordinator
#              (cluster_audit_log), every node's chain verified
#              (verify_cluster_audit), a changed event found on its node;
#   new worker a fourth node added with citus_add_node and the shards
#              rebalanced onto it: it gets pii_guard and the keys, decrypts
#              what moved, and the masking views read it;
#   worker logins  a role connecting straight to a worker refused (no,
#              another, or a forged certificate), through the coordinator
#              admitted; without the login gate, a worker reveals no shard;
#   master key every node restarted with a new master key and the old one
#              as previous, the keys re-wrapped once on the coordinator, and
#              every node still decrypting with the new key alone.
#
# KEEP=1 keeps the work directory; SUITES="keys ..." runs only those suites.
set -euo pipefail
cd "$(dirname "$0")/../.."
. test/lib.sh
. test/citus/lib.sh

citus_deps
pgg_init
pgg_install
citus_build
citus_cluster

echo "pii_guard on Citus $CITUS_VERSION: coordinator :$(citus_port coord), workers :$(citus_port w1) :$(citus_port w2)"
q() { local node=$1; shift; citus_psql "$node" -tA "$@"; }

echo "setup"
q coord -c "CREATE EXTENSION pii_guard"
pgg_is "CREATE EXTENSION pii_guard on the coordinator reaches every worker" \
	"$(q w1 -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_guard'")/$(q w2 -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_guard'")" \
	"$(q coord -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_guard'")/$(q coord -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_guard'")"
# (a value encrypted on a worker before the setup: the worker has keys)
q w1 -c "SELECT pii_guard.key_id(pii_guard.encrypt('x'::text))" >/dev/null
err=$(q coord -c "SELECT * FROM pii_guard.citus_setup()" 2>&1 || true)
pgg_ok "citus_setup() refused while a worker has data keys of its own (55000)" \
	grep -q "has keys of its own in pii_guard.data_keys" <<<"$err"
q w1 -c "DELETE FROM pii_guard.data_keys"
err=$(q w2 -c "SELECT * FROM pii_guard.citus_setup()" 2>&1 || true)
pgg_ok "citus_setup() refused on a worker" grep -q "runs on the coordinator" <<<"$err"
q coord -c "CREATE TABLE early (id bigint PRIMARY KEY, phone text)" -c "SELECT create_distributed_table('early', 'id')" >/dev/null
err=$(q coord -c "SELECT pii_guard.protect_table('early')" 2>&1 || true)
pgg_ok "protect_table on a distributed table before citus_setup() is refused (55000)" \
	grep -q "policy is not shared across this Citus cluster yet" <<<"$err"
q coord -c "DROP TABLE early"
pgg_is "citus_setup() on the coordinator: the key and policy tables on all three nodes" \
	"$(q coord -c "SELECT count(*) || ' ' || bool_and(placements = 3) FROM pii_guard.citus_setup()")" "12 true"
pgg_is "... and again: nothing more to do" \
	"$(q coord -c "SELECT count(*) FROM pii_guard.citus_setup()")" 12
citus_tls coord w1 w2
pgg_is "TLS between the nodes, the workers' login gate on" \
	"$(q coord -c "SELECT string_agg(result, ',') FROM run_command_on_workers('SHOW pii_guard.cluster_peer_cn')")" \
	"pii_guard-cluster,pii_guard-cluster"

echo "suites"
q coord -c "CREATE EXTENSION pgtap" -c "SELECT run_command_on_workers('CREATE EXTENSION IF NOT EXISTS pgtap')" >/dev/null
prove() {	# prove DATABASE SUITE...: pg_prove on the coordinator
	local db=$1
	shift
	if pg_prove --host localhost --port "$(citus_port coord)" --username postgres --dbname "$db" "$@"; then
		echo "  ok - pgTAP: $* ($db)"
	else
		echo "  not ok - pgTAP: $* ($db)"
		PGG_FAILS=$((PGG_FAILS + 1))
	fi
}
suites=()
for s in ${SUITES:-keys attacks}; do
	suites+=("test/citus/$s.sql")
done
prove crm "${suites[@]}"

echo "masking views"
q coord -f test/citus/fixture.sql -c "CREATE SCHEMA tap_delegate AUTHORIZATION intern_fay" >/dev/null
CITUS_DB=postgres q coord -c "CREATE DATABASE crm1"
CITUS_DB=crm1 q coord -c "CREATE EXTENSION pii_guard" -c "CREATE EXTENSION pgtap" -f test/citus/fixture.sql >/dev/null
pgg_is "the seed CRM: customers, orders and tickets distributed and co-located, and protected" \
	"$(q coord -c "SELECT count(*) FROM pii_guard.protected_tables p JOIN pg_dist_partition d ON d.logicalrelid = p.base WHERE d.colocationid = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'public_pii.customers'::regclass)")" 3
prove crm1 test/citus/roles.sql
prove crm test/citus/roles.sql
# tap_delegate.peek(k): a function of intern_fay's that reads the value of
# key k through reveal() straight from the shard that holds it -- pushed
# down in shards.sql, then delegated by Citus to that shard's worker (a
# distributed function called as a client calls it).
psql -X -q -v ON_ERROR_STOP=1 -h localhost -p "$(citus_port coord)" -U intern_fay -d crm >/dev/null <<'SQL'
CREATE FUNCTION tap_delegate.peek(k bigint) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    r text;
BEGIN
    EXECUTE format('SELECT pii_guard.reveal(phone, %L::regclass, %L::name, id)::text FROM %s WHERE id = $1',
                   'public_pii.customers', 'phone', (SELECT 'public_pii.customers_' || shardid
                      FROM pg_dist_shard WHERE logicalrelid = 'public_pii.customers'::regclass
                       AND pg_catalog.hashint8(k) BETWEEN shardminvalue::int AND shardmaxvalue::int))
       INTO r USING k;
    RETURN r;
END
$f$;
-- tap_delegate.poke(k): the same, with the statement the coordinator sends
-- for an UPDATE through the view (test/citus/writes.sql).
CREATE FUNCTION tap_delegate.poke(k bigint) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('UPDATE %s customers SET email = pii_guard._write_set_shard(customers.email, %L::regclass, %L::name, customers.id, %L::text, 3) WHERE customers.id = $1',
                   (SELECT 'public_pii.customers_' || shardid
                      FROM pg_dist_shard WHERE logicalrelid = 'public_pii.customers'::regclass
                       AND pg_catalog.hashint8(k) BETWEEN shardminvalue::int AND shardmaxvalue::int),
                   'public_pii.customers', 'email', 'poked@example.com')
       USING k;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$f$;
SQL
prove crm test/citus/shards.sql
psql -X -q -v ON_ERROR_STOP=1 -h localhost -p "$(citus_port coord)" -U intern_fay -d crm \
	-c "SELECT create_distributed_function('tap_delegate.peek(bigint)', '\$1', colocate_with := 'public_pii.customers')" >/dev/null
out=$(psql -X -tA -h localhost -p "$(citus_port coord)" -U intern_fay -d crm -c "SELECT tap_delegate.peek(1)" 2>&1 || true)
pgg_ok "a function of hers delegated to the worker that has the shard reads nothing there" \
	grep -q "permission denied for table customers_" <<<"$out"
pgg_ok "... (it ran on that worker)" grep -q "while executing command on localhost" <<<"$out"
# What applications send, under intern_fay's limit of 20 protected rows
# per statement: a cursor fetched in parts, a prepared statement run
# again, COPY.
out=$(psql -X -h localhost -p "$(citus_port coord)" -U intern_fay -d crm 2>&1 <<'SQL'
BEGIN;
DECLARE c CURSOR FOR SELECT id, phone FROM customers ORDER BY id;
FETCH 15 FROM c;
FETCH 15 FROM c;
COMMIT;
SQL
)
pgg_ok "a cursor on the view delivers 15 rows, then is refused its 21st (54P01)" \
	grep -qz "(15 rows).*export limit exceeded" <<<"$out"
out=$(psql -X -h localhost -p "$(citus_port coord)" -U intern_fay -d crm 2>&1 <<'SQL'
PREPARE p(bigint) AS SELECT id, phone FROM customers WHERE id <= $1 ORDER BY id;
EXECUTE p(4);
EXECUTE p(100);
EXECUTE p(4);
SQL
)
pgg_ok "a prepared statement on the view: 4 rows, then 34 refused, then 4 again" \
	grep -qz "(4 rows).*export limit exceeded.*(4 rows)" <<<"$out"
out=$(psql -X -h localhost -p "$(citus_port coord)" -U postgres -d crm 2>&1 <<'SQL'
PREPARE agg AS SELECT length(string_agg(phone, ',')) FROM customers;
EXECUTE agg;
SET ROLE intern_fay;
EXECUTE agg;
SQL
)
pgg_ok "a plan made for a role without limits is made again for one with them: folding refused (0A000)" \
	grep -qz "(1 row).*cannot count protected values folded" <<<"$out"
out=$(psql -X -h localhost -p "$(citus_port coord)" -U intern_fay -d crm \
	-c "COPY (SELECT id, email FROM customers WHERE id <= 4) TO STDOUT" \
	-c "COPY (SELECT id, email FROM customers) TO STDOUT" 2>&1 || true)
pgg_ok "COPY of 4 customers' e-mail addresses, masked; of 34, refused" \
	grep -qz "1	z\*\*\*\*\*\*\*@example.com.*export limit exceeded" <<<"$out"
# (a write's RETURNING, as COPY's query: the same rule as the write)
q coord -c "GRANT UPDATE (email) ON customers TO intern" >/dev/null
out=$(psql -X -h localhost -p "$(citus_port coord)" -U intern_fay -d crm \
	-c "COPY (UPDATE customers SET email = email WHERE id = 1 RETURNING phone) TO STDOUT" \
	-c "COPY (UPDATE customers SET email = email WHERE id = 1 RETURNING id) TO STDOUT" 2>&1 || true)
q coord -c "REVOKE UPDATE (email) ON customers FROM intern" >/dev/null
pgg_ok "COPY (UPDATE ... RETURNING a phone) TO STDOUT under her limits: refused as the UPDATE is (0A000); RETURNING the id: 1" \
	grep -qz "cannot count the protected values a write on a Citus table takes or returns.*"$'\n'"1"$'\n' <<<"$out"

echo "writes"
# The seed roles write through the masking views, the same suite on one
# server and on the cluster; then what the workers recorded of it.
prove crm1 test/citus/writes.sql
prove crm test/citus/writes.sql
writes() {	# writes ROLE OPERATION CONDITION: sum of the rows of such write events, cluster-wide
	q coord -c "SELECT coalesce(sum(rows), 0) FROM pii_guard.cluster_audit_log()
	             WHERE kind = 'write' AND acting_role = '$1' AND relation = 'public.customers'
	               AND operation = '$2' AND $3"
}
pgg_is "support_dan's change of a phone and a tier: one write event, on the worker that wrote it, naming the row and the two columns" \
	"$(writes support_dan UPDATE "row_keys = '{3}' AND columns_changed = '{phone,service_tier}' AND node <> 'localhost:$(citus_port coord)'")" 1
pgg_is "... his ORM save of the row as he read it: a write that changed no column" \
	"$(writes support_dan UPDATE "row_keys = '{3}' AND columns_changed IS NULL")" 1
pgg_is "mgr_eve's inserts (one row, then three in one statement) and deletes: their rows, on the workers that hold them" \
	"$(writes mgr_eve INSERT "'{id,name,sales_owner}' <@ columns_changed")/$(writes mgr_eve DELETE true)" "4/4"
pgg_is "sales_bob's UPDATE of a customer row-level security hides from him: no row written, no event" \
	"$(writes sales_bob UPDATE "row_keys = '{3}'")" 0
out=$(printf 'zz\n\\.\n' | psql -X -h localhost -p "$(citus_port coord)" -U mgr_eve -d crm \
	-c "COPY customers (name) FROM STDIN" 2>&1 || true)
pgg_ok "COPY FROM through the view of a distributed table: refused, saying what to use (0A000)" \
	grep -q "COPY FROM through the masking view public.customers of a distributed table is not supported" <<<"$out"
q coord -c "UPDATE public_pii.customers SET deal_amount = deal_amount WHERE id = 4" \
	-c "UPDATE customers SET channel = 'web' WHERE id = 4" -c "DELETE FROM public_pii.customers WHERE id = 0" >/dev/null
pgg_is "a superuser's writes, on the table itself and through the view: audited on the worker, with the row key" \
	"$(writes postgres UPDATE "row_keys = '{4}'")" 2
q coord -c "CREATE TABLE prot_trunc (id bigint PRIMARY KEY, phone text)" \
	-c "SELECT create_distributed_table('prot_trunc', 'id', colocate_with => 'public_pii.customers')" \
	-c "SELECT pii_guard.protect_column('prot_trunc', 'phone', 'sensitive', 'pii_guard.mask_phone(text)')" >/dev/null
printf '1\t13800000001\n2\t13800000002\n\\.\n' | q coord -c "COPY public_pii.prot_trunc FROM STDIN" >/dev/null
q coord -c "TRUNCATE public_pii.prot_trunc" -c "SELECT pii_guard.unprotect_table('prot_trunc')" \
	-c "DROP TABLE prot_trunc" >/dev/null
pgg_is "a superuser's COPY FROM into the distributed table itself, and its TRUNCATE: write events on the coordinator" \
	"$(q coord -c "SELECT string_agg(operation || ' ' || rows, ',' ORDER BY event_id) FROM pii_guard.cluster_audit_log()
	               WHERE kind = 'write' AND relation = 'public.prot_trunc' AND node = 'localhost:$(citus_port coord)'")" \
	"INSERT 2,TRUNCATE 0"
# (not the values of the attacks in shards.sql: an attacker's own SQL is
# logged with its refusal)
leaked=$(grep -l -e '13711113333' -e 'Fang Wang' -e '310104199208154321' -e '13600006666' \
	-e '110101198801011111' -e '6222029876543210' -e 'zhaoliu@example.com' \
	"$(pgg_log coord)" "$(pgg_log w1)" "$(pgg_log w2)" || true)
pgg_is "no value the writes sent, refused ones included, is in any node's server log" "$leaked" ""
# The policy tables: one version on every node (compared by what they
# name, which every node spells the same; times a trigger sets are each
# node's own).
policy_versions() {
	q coord -c "SELECT string_agg(t || '=' || (SELECT count(DISTINCT result) FROM run_command_on_all_nodes(
		format('SELECT md5(coalesce(string_agg(x::text, %L ORDER BY x::text), %L)) FROM (SELECT %s FROM %s) x', ',', '', c, t))), ' ' ORDER BY t)
	  FROM (VALUES ('protected_tables', 'base, view_schema, view_name, write_view_name, row_key, saved_grants, names_masks'),
	               ('column_rules', '*'), ('profiles', '*'), ('profile_overrides', '*'),
	               ('grants', 'grant_id, kind, role, base, columns, row_keys, rows, valid_until, reason, approver, revoked_at IS NULL, purpose'),
	               ('purposes', '*'), ('consents', 'consent_id, base, row_key, purpose, columns, how, withdrawn_at IS NULL'),
	               ('sequence_grants', '*'), ('retention_rules', 'base, column_name'), ('shredding', '*')) v(t, c)"
}
all_one="column_rules=1 consents=1 grants=1 profile_overrides=1 profiles=1 protected_tables=1 purposes=1 retention_rules=1 sequence_grants=1 shredding=1"
pgg_is "the policy is the same on every node after the suites (approvals given and revoked)" "$(policy_versions)" "$all_one"
pgg_is "NOLOGIN profiles may log in on the workers (behind the login gate), not on the coordinator" \
	"$(q coord -c "SELECT string_agg(rolcanlogin::text, ',') FROM pg_roles WHERE rolname = 'support'")/$(q coord -c "SELECT string_agg(DISTINCT result, ',') FROM run_command_on_workers(\$\$SELECT rolcanlogin FROM pg_roles WHERE rolname = 'support'\$\$)")" \
	"false/t"
q coord -c "SELECT pii_guard.set_column_access('support', 'orders', 'card', 'clear')" \
	-c "SELECT pii_guard.reset_column_access('support', 'orders', 'card')" \
	-c "SELECT pii_guard.set_export_limits('support', 500, 5000)" \
	-c "SELECT pii_guard.protect_column('tickets', 'subject', 'internal')" \
	-c "SELECT pii_guard.unprotect_column('tickets', 'subject')" \
	-c "ALTER TABLE public_pii.tickets RENAME COLUMN body TO message" \
	-c "SELECT pii_guard.define_purpose('care', 'customer care', false)" \
	-c "SELECT pii_guard.set_purposes('support', ARRAY['care'])" \
	-c "SELECT pii_guard.drop_profile('marketing')" >/dev/null
err=$(q coord -c "ALTER TABLE tickets RENAME COLUMN subject TO topic" 2>&1 || true)
pgg_ok "DDL aimed at a distributed table's masking view is refused, naming the table (0A000)" \
	grep -q "Name the table itself: public_pii.tickets" <<<"$err"
pgg_is "... and after policy changes that find rows by table and role (renamed column, dropped profile)" \
	"$(policy_versions)" "$all_one"
pgg_is "... the rename reached the workers' rules" \
	"$(q coord -c "SELECT string_agg(DISTINCT result, ',') FROM run_command_on_workers(\$\$SELECT string_agg(column_name, ',' ORDER BY column_name) FROM pii_guard.column_rules WHERE base = 'public_pii.tickets'::regclass\$\$)")" \
	"callback,message"
pgg_is "... a dropped profile may not" \
	"$(q coord -c "SELECT string_agg(DISTINCT result, ',') FROM run_command_on_workers(\$\$SELECT rolcanlogin FROM pg_roles WHERE rolname = 'marketing'\$\$)")" "f"
q coord -c "SELECT pii_guard.set_clearance('marketing', 'internal', 'back')" \
	-c "SELECT pii_guard.set_purposes('support', NULL)" >/dev/null
as() {	# as ROLE SQL: through the coordinator
	psql -X -tA -h localhost -p "$(citus_port coord)" -U "$1" -d crm -c "$2" 2>&1
}
pgg_is "support reads the renamed column through the rebuilt view, on the workers" \
	"$(as support_dan "SELECT message FROM tickets WHERE customer_id = 4")" "New address: 1 Infinite Loop, Cupertino"
seen_on_worker() {	# seen_on_worker KIND ROLE RELATION: an event recorded on a worker, in the auditor's log
	[ "$(psql -X -tA -h localhost -p "$(citus_port coord)" -U postgres -d crm -c "SELECT count(*) FROM pii_guard.cluster_audit_log() WHERE node <> 'localhost:$(citus_port coord)' AND kind = '$1' AND session_role = '$2' AND relation = '$3'")" -ge 1 ]
}
pgg_ok "intern_fay's reads of the distributed customers are read events on the workers, in the auditor's log" \
	pgg_wait 20 seen_on_worker read intern_fay public.customers
pgg_ok "... her attempts on the shards, refusals on the workers" \
	pgg_wait 20 seen_on_worker deny intern_fay public_pii.customers

echo "key caches"
# A worker backend that has its keys cached follows a rotation made on the
# coordinator (the data_keys_changed trigger on its placement).
out=$(citus_psql w1 -tA <<SQL
SELECT pii_guard.key_id(pii_guard.encrypt('before'::text));
\\! psql -X -q -h localhost -p $(citus_port coord) -U postgres -d crm -c "SELECT pii_guard.rotate_data_key()" >/dev/null
SELECT pii_guard.key_id(pii_guard.encrypt('after'::text)) = (SELECT key_id FROM pii_guard.data_keys_$(q w1 -c "SELECT shardid FROM pg_dist_shard WHERE logicalrelid = 'pii_guard.data_keys'::regclass") WHERE purpose = 'encrypt' AND state = 'active');
SQL
)
pgg_is "a worker session with cached keys encrypts under the key rotated on the coordinator" "$(tail -1 <<<"$out")" t

echo "protection"
q coord -c "CREATE TABLE prot_ref (id bigint PRIMARY KEY, phone text)" \
	-c "SELECT create_reference_table('prot_ref')" >/dev/null
err=$(q coord -c "SELECT pii_guard.protect_table('prot_ref')" 2>&1 || true)
pgg_ok "protect_table refuses a reference table, saying why (0A000)" \
	grep -q "is a Citus reference or local table" <<<"$err"
pgg_is "... and leaves it as it was (in its schema, no view)" \
	"$(q coord -c "SELECT count(*) FROM pii_guard.protected_tables WHERE base::text LIKE '%prot_ref'")/$(q coord -c "SELECT c.relnamespace::regnamespace || '.' || c.relname || ':' || c.relkind::text FROM pg_class c WHERE c.relname = 'prot_ref'")" \
	"0/public.prot_ref:r"
q coord -c "CREATE TABLE prot_local (id bigint PRIMARY KEY, phone text)" >/dev/null
err=$(q coord -c "SELECT pii_guard.protect_table('prot_local')" 2>&1 || true)
pgg_ok "a table on the coordinator alone is refused once the policy is shared (0A000), saying to distribute it" \
	grep -q "Distribute the table (create_distributed_table), then protect it" <<<"$err"
q coord -c "SELECT create_distributed_table('prot_local', 'id')" \
	-c "INSERT INTO prot_local VALUES (1, '13812345678')" \
	-c "SELECT pii_guard.protect_column('prot_local', 'phone', 'sensitive', 'pii_guard.mask_phone(text)')" \
	-c "CREATE ROLE ivy LOGIN" -c "GRANT SELECT ON prot_local TO ivy" \
	-c "SELECT pii_guard.set_clearance('ivy', 'public')" >/dev/null 2>&1
pgg_is "... and protected once distributed" \
	"$(psql -X -tA -h localhost -p "$(citus_port coord)" -U ivy -d crm -c "SELECT phone FROM prot_local")" "138****5678"

echo "audit"
# A refusal on a worker, an admin event on the coordinator: the auditor
# sees both from the coordinator, and each node's chain verifies.
q coord -c "CREATE ROLE aud_ann LOGIN IN ROLE pii_guard_auditor" -c "CREATE ROLE gus LOGIN"
envelope=$(q coord -c "SELECT phone FROM keys_customers WHERE id = 5")
# (gus reaches the workers through run_command_on_workers: the login gate
# keeps him from connecting to one straight)
on_workers_as_gus() {
	psql -X -tA -h localhost -p "$(citus_port coord)" -U gus -d crm \
		-c "SELECT string_agg(result, ',') FROM run_command_on_workers(\$\$$1\$\$)" 2>&1
}
err=$(on_workers_as_gus "SELECT pii_guard.decrypt('$envelope'::pii_guard.encrypted_text)")
pgg_ok "a role cannot decrypt on a worker (42501)" grep -q "permission denied" <<<"$err"
err=$(on_workers_as_gus "SELECT count(*) FROM pii_guard.data_keys_$(q w1 -c "SELECT shardid FROM pg_dist_shard WHERE logicalrelid = 'pii_guard.data_keys'::regclass")")
pgg_ok "... nor read a worker's placement of the data keys" grep -q "permission denied" <<<"$err"
q coord -c "SELECT pii_guard.rotate_data_key()" >/dev/null
denied_on_w1() {
	[ "$(psql -X -tA -h localhost -p "$(citus_port coord)" -U aud_ann -d crm \
		-c "SELECT count(*) FROM pii_guard.cluster_audit_log() WHERE node = 'localhost:$(citus_port w1)' AND kind = 'deny' AND session_role = 'gus'")" -ge 1 ]
}
pgg_ok "the auditor sees, from the coordinator, the refusals recorded on the worker" pgg_wait 20 denied_on_w1
pgg_is "... and the rotation recorded on the coordinator" \
	"$(psql -X -tA -h localhost -p "$(citus_port coord)" -U aud_ann -d crm \
		-c "SELECT count(*) > 0 FROM pii_guard.cluster_audit_log() WHERE node = 'localhost:$(citus_port coord)' AND kind = 'admin' AND detail LIKE '%active encryption key%'")" t
pgg_ok "the worker's events are sealed into its chain" pgg_wait 30 pgg_all_sealed w1 crm
pgg_is "every node's chain verifies" \
	"$(psql -X -tA -h localhost -p "$(citus_port coord)" -U aud_ann -d crm -c "SELECT count(*) FROM pii_guard.verify_cluster_audit()")" 0
q w1 -c "ALTER TABLE pii_guard.audit_log DISABLE TRIGGER audit_log_guard" \
	-c "UPDATE pii_guard.audit_log SET session_role = 'someone_else' WHERE session_role = 'gus'" \
	-c "ALTER TABLE pii_guard.audit_log ENABLE TRIGGER audit_log_guard"
pgg_is "an event changed on a worker: verify_cluster_audit names that node" \
	"$(psql -X -tA -h localhost -p "$(citus_port coord)" -U aud_ann -d crm -c "SELECT string_agg(DISTINCT node, ',') FROM pii_guard.verify_cluster_audit()")" \
	"localhost:$(citus_port w1)"
err=$(psql -X -tA -h localhost -p "$(citus_port coord)" -U gus -d crm -c "SELECT * FROM pii_guard.cluster_audit_log()" 2>&1 || true)
pgg_ok "cluster_audit_log is the auditor's (42501 for others)" grep -q "permission denied" <<<"$err"

echo "a new worker"
citus_node w3
citus_tls w3
q coord -c "SELECT citus_add_node('localhost', $(citus_port w3))" >/dev/null
pgg_is "citus_add_node: Citus installs pii_guard on the new worker" \
	"$(q w3 -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_guard'")" \
	"$(q coord -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_guard'")"
q coord -c "SET client_min_messages = warning" -c "SELECT rebalance_table_shards(shard_transfer_mode => 'block_writes')" >/dev/null
pgg_is "after a rebalance the new worker holds shards of keys_customers" \
	"$(q coord -c "SELECT count(*) > 0 FROM citus_shards WHERE table_name = 'keys_customers'::regclass AND nodeport = $(citus_port w3)")" t
keys_md5="SELECT md5(string_agg(key_id || ':' || encode(wrapped_key, 'hex') || state, ',' ORDER BY key_id)) FROM pii_guard.data_keys"
pgg_is "... and the cluster's data keys" "$(q w3 -c "$keys_md5")" "$(q coord -c "$keys_md5")"
pgg_is "... and their trigger, which drops the nodes' key caches" \
	"$(q w3 -c "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'data\_keys\_changed%'")" 2
pgg_is "every value still decrypts, the moved shards' too" \
	"$(q coord -c "SELECT count(DISTINCT pii_guard.decrypt(phone)) FROM keys_customers")" 200
q coord -c "SELECT pii_guard.rotate_data_key()" >/dev/null
pgg_is "a key rotated on the coordinator reaches the new worker" "$(q w3 -c "$keys_md5")" "$(q coord -c "$keys_md5")"
pgg_is "citus_setup() again, after adding the node: the policy written there by name" \
	"$(q coord -c "SELECT count(*) || ' ' || bool_and(placements = 4) FROM pii_guard.citus_setup()")" "12 true"
pgg_is "... the same on every node" "$(policy_versions)" "$all_one"
pgg_is "the masking views read the shards that moved to it: every customer, masked" \
	"$(q coord -c "SELECT count(*) FROM citus_shards WHERE table_name = 'public_pii.customers'::regclass AND nodeport = $(citus_port w3)")/$(as intern_fay "SELECT count(*) FILTER (WHERE phone LIKE '%****%') FROM (SELECT phone FROM customers LIMIT 20) c")" \
	"$(q coord -c "SELECT count(*) FROM citus_shards WHERE table_name = 'public_pii.customers'::regclass AND nodeport = $(citus_port w3)")/20"
pgg_ok "... the new worker holds some of them" test "$(q coord -c "SELECT count(*) FROM citus_shards WHERE table_name = 'public_pii.customers'::regclass AND nodeport = $(citus_port w3)")" -gt 0

echo "master key"
# (test/citus/keys.sql left table keys_master: rows under two data keys)
before=$(q coord -c "SELECT string_agg(pii_guard.decrypt(phone), ',' ORDER BY id) FROM keys_master")
for node in "${CITUS_NODES[@]}"; do
	pgg_conf "$node" "pii_guard.master_key_command = 'cat $PGG_WORK/keys/test-master-2.hex'" \
		"pii_guard.previous_master_key_command = 'cat $PGG_WORK/keys/test-master-1.hex'"
	pgg_stop "$node"
	pgg_start "$node"
done
pgg_is "re-wrapped on the coordinator: every data key, once" \
	"$(q coord -c "SELECT pii_guard.rewrap_data_keys() = (SELECT count(*) FROM pii_guard.data_keys)")" t
for node in "${CITUS_NODES[@]}"; do
	pgg_conf "$node" "pii_guard.previous_master_key_command = ''"
	pgg_stop "$node"
	pgg_start "$node"
done
pgg_is "with the new master key alone, the workers decrypt every value as before" \
	"$(q coord -c "SELECT string_agg(pii_guard.decrypt(phone), ',' ORDER BY id) FROM keys_master")" "$before"
pgg_is "every node holds the same wrapped keys, all under the new master key" \
	"$(q coord -c "SELECT count(DISTINCT result) || '/' || bool_and(success) FROM run_command_on_all_nodes(\$\$SELECT md5(string_agg(key_id || encode(wrapped_key, 'hex') || encode(master_key_fingerprint, 'hex'), ',' ORDER BY key_id)) || (SELECT count(DISTINCT master_key_fingerprint) FROM pii_guard.data_keys) FROM pii_guard.data_keys\$\$)")" \
	"1/true"

echo "worker logins"
# (TLS and the login gate are on since the setup: citus_tls)
tls=$PGG_WORK/tls
citus_cert rogue gus
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=pii_guard test other_ca" \
	-keyout "$tls/other_ca.key" -out "$tls/other_ca.crt" 2>/dev/null
citus_cert forged pii_guard-cluster other_ca
q coord -c "GRANT SELECT ON keys_customers TO gus"
direct() {	# direct ROLE [conninfo...]: one query on w1, connected straight to it
	local role=$1
	shift
	psql -X -tA "host=localhost port=$(citus_port w1) user=$role dbname=crm $*" -c "SELECT 1" 2>&1
}
pgg_ok "a role connecting straight to a worker is refused" \
	grep -q "may connect to this node only through the Citus coordinator" <<<"$(direct gus)"
pgg_ok "... also over TLS" \
	grep -q "only through the Citus coordinator" <<<"$(direct gus sslmode=require)"
pgg_ok "... also with a worker's certificate (the workers' own connections are not the coordinator's)" \
	grep -q "only through the Citus coordinator" <<<"$(direct gus sslmode=require sslcert=$tls/worker.crt sslkey=$tls/worker.key)"
pgg_ok "... also with a certificate of the cluster's CA but another name" \
	grep -q "only through the Citus coordinator" <<<"$(direct gus sslmode=require sslcert=$tls/rogue.crt sslkey=$tls/rogue.key)"
out=$(direct gus sslmode=require sslcert="$tls/forged.crt" sslkey="$tls/forged.key" || true)
pgg_ok "... also with the cluster's name signed by another CA" test "$out" != 1
q coord -c "CREATE ROLE rita LOGIN REPLICATION"
pgg_ok "... also as a logical replication connection, which runs SQL too" \
	grep -q "only through the Citus coordinator" <<<"$(direct rita replication=database)"
pgg_is "a superuser still connects straight to a worker" "$(direct postgres)" 1
pgg_is "the same role reads the distributed table through the coordinator" \
	"$(psql -X -tA -h localhost -p "$(citus_port coord)" -U gus -d crm -c "SELECT count(*) FROM keys_customers")" 200
pgg_is "the auditor reaches every node's log through the coordinator" \
	"$(psql -X -tA -h localhost -p "$(citus_port coord)" -U aud_ann -d crm -c "SELECT count(*) FROM pii_guard._cluster_json('verify')")" 4
# Without the gate a worker cannot tell the coordinator's queries from a
# client's: it reveals no protected shard to a governed role.
for node in w1 w2 w3; do
	pgg_conf "$node" "pii_guard.cluster_peer_cn = ''"
	pgg_stop "$node"
	pgg_start "$node"
done
pgg_ok "without the login gate on the workers, a governed role's read of a masking view is refused there" \
	grep -q "permission denied for table customers_" <<<"$(as intern_fay "SELECT phone FROM customers WHERE id = 1")"
for node in w1 w2 w3; do
	pgg_conf "$node" "pii_guard.cluster_peer_cn = 'pii_guard-cluster'"
	pgg_stop "$node"
	pgg_start "$node"
done
pgg_is "... and read again with it" "$(as intern_fay "SELECT phone FROM customers WHERE id = 1")" "138****5678"

if pgg_done; then
	echo "pii_guard on Citus: all passed"
else
	echo "pii_guard on Citus: $PGG_FAILS failed" >&2
	exit 1
fi
