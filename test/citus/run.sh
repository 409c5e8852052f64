#!/usr/bin/env bash
# test/citus/run.sh -- what `make test-citus` runs: pii_guard on a Citus
# cluster (a coordinator and two workers on this machine; see
# test/citus/lib.sh for the build and the cluster).
#
# Stages, each reported as "ok"/"not ok" lines:
#   setup      pii_guard.citus_setup() refused while a worker has keys of its
#              own, refused on a worker, then done on the coordinator;
#   suites     the pgTAP suites test/citus/*.sql, run by pg_prove on the
#              coordinator;
#   protection protect_table refused on distributed and reference tables
#              (not supported yet), working on a coordinator-local table;
#   audit      a refusal on a worker and an admin event on the coordinator,
#              both seen by the auditor from the coordinator
#              (cluster_audit_log), every node's chain verified
#              (verify_cluster_audit), a changed event found on its node;
#   new worker a fourth node added with citus_add_node and the shards
#              rebalanced onto it: it gets pii_guard and the keys, and
#              decrypts what moved;
#   worker logins  TLS between the nodes with a cluster certificate; a role
#              connecting straight to a worker refused (no, another, or a
#              forged certificate), through the coordinator admitted;
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
pgg_is "citus_setup() on the coordinator: both key tables on all three nodes" \
	"$(q coord -c "SELECT string_agg(relation || '=' || placements, ' ' ORDER BY relation::text) FROM pii_guard.citus_setup()")" \
	"pii_guard.data_keys=3 pii_guard.subject_keys=3"
pgg_is "... and again: nothing more to do" \
	"$(q coord -c "SELECT count(*) FROM pii_guard.citus_setup()")" 2

echo "suites"
q coord -c "CREATE EXTENSION pgtap" -c "SELECT run_command_on_workers('CREATE EXTENSION IF NOT EXISTS pgtap')" >/dev/null
suites=()
for s in ${SUITES:-$(cd test/citus && ls ./*.sql | sed 's|^\./||; s|\.sql$||')}; do
	suites+=("test/citus/$s.sql")
done
if pg_prove --host localhost --port "$(citus_port coord)" --username postgres --dbname crm \
	"${suites[@]}"; then
	echo "  ok - pgTAP suites"
else
	echo "  not ok - pgTAP suites"
	PGG_FAILS=$((PGG_FAILS + 1))
fi

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
q coord -c "CREATE TABLE prot_dist (id bigint PRIMARY KEY, phone text)" \
	-c "SELECT create_distributed_table('prot_dist', 'id')" \
	-c "CREATE TABLE prot_ref (id bigint PRIMARY KEY, phone text)" \
	-c "SELECT create_reference_table('prot_ref')" >/dev/null
for t in prot_dist prot_ref; do
	err=$(q coord -c "SELECT pii_guard.protect_table('$t')" 2>&1 || true)
	pgg_ok "protect_table refuses the Citus table $t, saying why (0A000)" \
		grep -q "is a Citus distributed or reference table" <<<"$err"
done
pgg_is "... and leaves them as they were (in their schema, no views)" \
	"$(q coord -c "SELECT count(*) FROM pii_guard.protected_tables")/$(q coord -c "SELECT string_agg(c.relnamespace::regnamespace || '.' || c.relname || ':' || c.relkind::text, ',' ORDER BY c.relname) FROM pg_class c WHERE c.relname IN ('prot_dist', 'prot_ref')")" \
	"0/public.prot_dist:r,public.prot_ref:r"
q coord -c "CREATE TABLE prot_local (id bigint PRIMARY KEY, phone text)" \
	-c "INSERT INTO prot_local VALUES (1, '13812345678')" \
	-c "SELECT pii_guard.protect_table('prot_local')" \
	-c "SELECT pii_guard.protect_column('prot_local', 'phone', 'sensitive', 'pii_guard.mask_phone(text)')" \
	-c "CREATE ROLE ivy LOGIN" -c "GRANT SELECT ON prot_local TO ivy" \
	-c "SELECT pii_guard.set_clearance('ivy', 'public')" >/dev/null 2>&1
pgg_is "a table kept on the coordinator is protected as on one server" \
	"$(psql -X -tA -h localhost -p "$(citus_port coord)" -U ivy -d crm -c "SELECT phone FROM prot_local")" "138****5678"

echo "audit"
# A refusal on a worker, an admin event on the coordinator: the auditor
# sees both from the coordinator, and each node's chain verifies.
q coord -c "CREATE ROLE aud_ann LOGIN IN ROLE pii_guard_auditor" -c "CREATE ROLE gus LOGIN"
envelope=$(q coord -c "SELECT phone FROM keys_customers WHERE id = 5")
err=$(psql -X -tA -h localhost -p "$(citus_port w1)" -U gus -d crm \
	-c "SELECT pii_guard.decrypt('$envelope'::pii_guard.encrypted_text)" 2>&1 || true)
pgg_ok "a role connecting to a worker cannot decrypt there (42501)" grep -q "permission denied" <<<"$err"
err=$(psql -X -tA -h localhost -p "$(citus_port w1)" -U gus -d crm \
	-c "SELECT count(*) FROM pii_guard.data_keys_$(q w1 -c "SELECT shardid FROM pg_dist_shard WHERE logicalrelid = 'pii_guard.data_keys'::regclass")" 2>&1 || true)
pgg_ok "... nor read the worker's placement of the data keys" grep -q "permission denied" <<<"$err"
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
# The nodes speak TLS to each other with a cluster client certificate
# (citus.node_conninfo); the workers admit roles other than superusers only
# with it (pii_guard.cluster_peer_cn).
tls=$PGG_WORK/tls
mkdir -p "$tls"
cert() {	# cert NAME CN [CA]: a key and a certificate signed by CA (default ca)
	openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$tls/$1.key" -out "$tls/$1.csr" 2>/dev/null
	openssl x509 -req -in "$tls/$1.csr" -CA "$tls/${3:-ca}.crt" -CAkey "$tls/${3:-ca}.key" \
		-CAcreateserial -days 2 -out "$tls/$1.crt" 2>/dev/null
	chmod 600 "$tls/$1.key"
}
for ca in ca other_ca; do
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=pii_guard test $ca" \
		-keyout "$tls/$ca.key" -out "$tls/$ca.crt" 2>/dev/null
done
cert server localhost
cert cluster pii_guard-cluster
cert rogue gus
cert forged pii_guard-cluster other_ca
if [ "$(id -u)" -eq 0 ]; then chown postgres "$tls"/server.key "$tls"/cluster.key; fi
for node in coord w1 w2 w3; do
	pgg_conf "$node" "ssl = on" "ssl_cert_file = '$tls/server.crt'" "ssl_key_file = '$tls/server.key'" \
		"ssl_ca_file = '$tls/ca.crt'" \
		"citus.node_conninfo = 'sslmode=require sslcert=$tls/cluster.crt sslkey=$tls/cluster.key'"
	[ "$node" = coord ] || pgg_conf "$node" "pii_guard.cluster_peer_cn = 'pii_guard-cluster'"
	pgg_stop "$node"
	pgg_start "$node"
done
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

if pgg_done; then
	echo "pii_guard on Citus: all passed"
else
	echo "pii_guard on Citus: $PGG_FAILS failed" >&2
	exit 1
fi
