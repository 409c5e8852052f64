#!/usr/bin/env bash
# bench/citus.sh -- what `make bench-citus` runs: pii_guard on Citus, as
# ratios measured side by side in one run, on this machine's coordinator and
# two workers (test/citus/lib.sh builds Citus and starts them).
#
#   single   the coordinator's server, a database without Citus: one node
#   citus    database crm: the same tables distributed over the two workers
#            (pii_guard.citus_setup() done)
#
# Each side has customers(id, phone, national_id) twice: with encrypted
# columns (pii_guard) and with text columns (Citus alone, or plain).
# Measured:
#   - a decrypting scan: every row's phone and national ID decrypted and
#     filtered, milliseconds, best of BENCH_RUNS (default 3);
#   - point reads by id, decrypted: pgbench, BENCH_SECONDS (default 10) per
#     run, 2 clients, best of two runs, interleaved;
#   - point reads by an encrypted distribution column (the blind index as
#     the shard key) against the text column as the key.
#   - through a masking view (table masked: the same rows, protected, read
#     by a role that sees phone, national ID and e-mail masked): a masked
#     scan of every row, and point reads by id, against the plain table
#     read by the same role (Citus alone, or plain on one node);
#   - point updates by id through the masking view (a new phone, sealed, by
#     the same role) against the same update of the plain table.
# Printed: distributed vs single node, and pii_guard on Citus vs Citus
# alone.  The nodes speak TLS with the login gate on, as pii_guard needs
# for reads through masking views (citus_tls): every Citus figure,
# Citus alone's too, is over TLS.
#
# CITUS_ROWS (default 200000), BENCH_RUNS, BENCH_SECONDS, KEEP=1.
# Results also go to bench/results/citus.txt.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
. test/lib.sh
. test/citus/lib.sh

citus_deps
ROWS=${CITUS_ROWS:-200000}
RUNS=${BENCH_RUNS:-3}
SECS=${BENCH_SECONDS:-10}
mkdir -p bench/results
OUT=bench/results/citus.txt
: >"$OUT"
say() { echo "$*" | tee -a "$OUT"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

pgg_init
pgg_install
citus_build
# (as in make bench: every table cached, no parallel query, no JIT)
citus_cluster_tuned() {
	local node
	for node in coord w1 w2; do
		pgg_conf "$node" "shared_buffers = '512MB'" "max_parallel_workers_per_gather = 0" "jit = off" \
			"synchronous_commit = off" "checkpoint_timeout = '30min'" "max_wal_size = '4GB'"
		pgg_stop "$node"
		pgg_start "$node"
	done
}
citus_cluster
citus_cluster_tuned
citus_tls coord w1 w2
sql() { citus_psql "$@" -tA; }

CUSTOMERS="
CREATE TABLE enc (id bigint PRIMARY KEY, phone pii_guard.encrypted_text, national_id pii_guard.encrypted_text);
CREATE TABLE plain (id bigint PRIMARY KEY, phone text, national_id text);
CREATE TABLE enc_by_phone (phone pii_guard.encrypted_text, id bigint);
CREATE TABLE plain_by_phone (phone text, id bigint);
CREATE INDEX ON enc_by_phone USING hash (phone);
CREATE INDEX ON plain_by_phone USING hash (phone);
CREATE TABLE masked (id bigint PRIMARY KEY, phone pii_guard.encrypted_text, national_id pii_guard.encrypted_text,
                     email text);"
# (a role that sees the protected columns masked, without export limits)
PROTECT="
SELECT pii_guard.protect_column('masked', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('masked', 'national_id', 'core', 'pii_guard.mask_cn_id(text)');
SELECT pii_guard.protect_column('masked', 'email', 'sensitive', 'pii_guard.mask_email(text)');
DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_reader') THEN
    CREATE ROLE bench_reader LOGIN; END IF; END \$\$;
GRANT SELECT ON masked, plain TO bench_reader;
GRANT UPDATE (phone) ON masked, plain TO bench_reader;
SELECT pii_guard.set_clearance('bench_reader', 'public');"
FILL="
INSERT INTO plain SELECT g, (13000000000 + g * 7919 % 1000000000)::text,
       '1101011990' || lpad(g::text, 8, '0') FROM generate_series(1, $ROWS) g;
INSERT INTO enc SELECT id, phone, national_id FROM plain;
INSERT INTO plain_by_phone SELECT phone, id FROM plain;
INSERT INTO enc_by_phone SELECT phone, id FROM plain;
INSERT INTO masked SELECT id, phone, national_id, 'u' || id || '@example.com' FROM plain;"

sql coord -c "SET client_min_messages = warning" -c "CREATE EXTENSION pii_guard" \
	-c "SELECT * FROM pii_guard.citus_setup()" -c "$CUSTOMERS" \
	-c "SELECT create_distributed_table('plain', 'id', shard_count => 32)" \
	-c "SELECT create_distributed_table('enc', 'id', colocate_with => 'plain')" \
	-c "SELECT create_distributed_table('plain_by_phone', 'phone', shard_count => 32)" \
	-c "SELECT create_distributed_table('enc_by_phone', 'phone', shard_count => 32, colocate_with => 'none')" \
	-c "SELECT create_distributed_table('masked', 'id', colocate_with => 'plain')" \
	-c "$FILL" -c "$PROTECT" -c "VACUUM ANALYZE" >/dev/null
# (after the Citus database: Citus creates bench_reader on the workers too)
CITUS_DB=postgres sql coord -c "CREATE DATABASE single" >/dev/null
CITUS_DB=single sql coord -c "CREATE EXTENSION pii_guard" -c "$CUSTOMERS" -c "$FILL" -c "$PROTECT" \
	-c "VACUUM ANALYZE" >/dev/null

# ms DB QUERY [ROLE]: the best of RUNS wall-clock milliseconds (after a
# warm-up), through the coordinator, as ROLE (default the superuser).
ms() {
	local db=$1 q=$2 role=${3:-} best='' t i
	local set_role=${role:+SET ROLE $role}
	CITUS_DB=$db sql coord -c "${set_role:-SELECT 1}" -c "$q" >/dev/null
	for ((i = 0; i < RUNS; i++)); do
		t=$(CITUS_DB=$db sql coord -c "${set_role:-SELECT 1}" -c '\timing on' -c "$q" | awk '/^Time: / { print $2 }')
		if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$t; fi
	done
	echo "$best"
}
SCAN_ENC="SELECT count(*) FROM enc WHERE pii_guard.decrypt(phone) LIKE '139%' OR pii_guard.decrypt(national_id) LIKE '%0007'"
SCAN_PLAIN="SELECT count(*) FROM plain WHERE phone LIKE '139%' OR national_id LIKE '%0007'"

SCAN_MASKED="SELECT count(*) FROM masked WHERE phone LIKE '139%' OR national_id LIKE '%0007' OR email LIKE 'u7%'"
SCAN_MASKED_PLAIN="SELECT count(*) FROM plain WHERE phone LIKE '139%' OR national_id LIKE '%0007' OR id::text LIKE '7%'"

# scan TITLE PII_QUERY PLAIN_QUERY [ROLE]: both queries on both sides, and
# the ratios.
scan() {
	local title=$1 q=$2 plain=$3 role=${4:-} side
	declare -A t
	for side in single crm; do
		t[$side.pii]=$(ms "$side" "$q" "$role")
		t[$side.plain]=$(ms "$side" "$plain" "$role")
	done
	say ""
	say "$title (ms, best of $RUNS)"
	say "  single node: pii_guard ${t[single.pii]}, plain ${t[single.plain]}"
	say "  Citus:       pii_guard ${t[crm.pii]}, Citus alone ${t[crm.plain]}"
	say "  distributed / single node, pii_guard:       $(ratio "${t[crm.pii]}" "${t[single.pii]}")x"
	say "  pii_guard on Citus / Citus alone:            $(ratio "${t[crm.pii]}" "${t[crm.plain]}")x"
	say "  (pii_guard / plain on a single node:         $(ratio "${t[single.pii]}" "${t[single.plain]}")x)"
}

say "pii_guard on Citus $CITUS_VERSION: coordinator + 2 workers on this machine, $ROWS customers"
scan "decrypting scan: phone and national ID of every row" "$SCAN_ENC" "$SCAN_PLAIN"
scan "masked scan through the masking view: phone, national ID and e-mail of every row masked" \
	"$SCAN_MASKED" "$SCAN_MASKED_PLAIN" bench_reader

# Point reads: pgbench scripts, interleaved round by round, best kept.
dir=$PGG_WORK/pgbench
mkdir -p "$dir"
echo "\\set id random(1, $ROWS)
SELECT pii_guard.decrypt(phone), pii_guard.decrypt(national_id) FROM enc WHERE id = :id;" >"$dir/enc.sql"
echo "\\set id random(1, $ROWS)
SELECT phone, national_id FROM plain WHERE id = :id;" >"$dir/plain.sql"
# (The phone as a parameter of no declared type, as most drivers send one:
# it takes the column's type, so Citus hashes it to its one shard.  A
# parameter typed text would be compared across types and go to every
# shard: README, Scale-out on Citus.)
echo "\\set ph 13000000000 + random(1, $ROWS) * 7919 % 1000000000
SELECT id FROM enc_by_phone WHERE phone = :ph;" >"$dir/enc_key.sql"
echo "\\set ph 13000000000 + random(1, $ROWS) * 7919 % 1000000000
SELECT id FROM plain_by_phone WHERE phone = :ph;" >"$dir/plain_key.sql"
echo "\\set id random(1, $ROWS)
SELECT phone, national_id, email FROM masked WHERE id = :id;" >"$dir/masked.sql"
for t in masked plain; do
	echo "\\set id random(1, $ROWS)
\\set ph 13000000000 + random(1, $ROWS)
UPDATE $t SET phone = :ph WHERE id = :id;" >"$dir/${t}_upd.sql"
done
tps() {	# tps DB SCRIPT [ROLE]
	pgbench -n -h localhost -p "$(citus_port coord)" -U "${3:-postgres}" -M prepared -c 2 -j 2 -T "$SECS" \
		-f "$dir/$2.sql" "$1" 2>/dev/null | awk '/^tps = / { printf "%.0f", $3 }'
}
declare -A TPS
for round in 1 2; do
	for side in single crm; do
		# (name:script:role -- the plain table read by the masked view's reader too)
		for run in enc:enc:postgres plain:plain:postgres enc_key:enc_key:postgres \
			plain_key:plain_key:postgres masked:masked:bench_reader masked_plain:plain:bench_reader \
			masked_upd:masked_upd:bench_reader plain_upd:plain_upd:bench_reader; do
			IFS=: read -r s script role <<<"$run"
			t=$(tps "$side" "$script" "$role")
			if [ -z "${TPS[$side.$s]:-}" ] || [ "${t:-0}" -gt "${TPS[$side.$s]}" ]; then TPS[$side.$s]=${t:-0}; fi
		done
	done
done
say ""
say "point reads (transactions/s, pgbench -c 2, best of 2 runs of ${SECS} s)"
say "  by id, decrypted:     single node: pii_guard ${TPS[single.enc]}, plain ${TPS[single.plain]}"
say "                        Citus:       pii_guard ${TPS[crm.enc]}, Citus alone ${TPS[crm.plain]}"
say "  by phone (the key):   single node: pii_guard ${TPS[single.enc_key]}, plain ${TPS[single.plain_key]}"
say "                        Citus:       pii_guard ${TPS[crm.enc_key]}, Citus alone ${TPS[crm.plain_key]}"
say "  distributed / single node, pii_guard, by id:      $(ratio "${TPS[crm.enc]}" "${TPS[single.enc]}")x throughput"
say "  pii_guard on Citus / Citus alone, by id:          $(ratio "${TPS[crm.enc]}" "${TPS[crm.plain]}")x throughput"
say "  pii_guard on Citus / Citus alone, by phone key:   $(ratio "${TPS[crm.enc_key]}" "${TPS[crm.plain_key]}")x throughput"
say "  through the masking view, by id, as a role that sees them masked:"
say "                        single node: pii_guard ${TPS[single.masked]}, plain ${TPS[single.masked_plain]}"
say "                        Citus:       pii_guard ${TPS[crm.masked]}, Citus alone ${TPS[crm.masked_plain]}"
say "  distributed / single node, masking view, by id:   $(ratio "${TPS[crm.masked]}" "${TPS[single.masked]}")x throughput"
say "  pii_guard on Citus / Citus alone, masking view:   $(ratio "${TPS[crm.masked]}" "${TPS[crm.masked_plain]}")x throughput"
say ""
say "point updates by id (a new phone; transactions/s, pgbench -c 2, best of 2 runs of ${SECS} s)"
say "  through the masking view: single node: pii_guard ${TPS[single.masked_upd]}, plain ${TPS[single.plain_upd]}"
say "                            Citus:       pii_guard ${TPS[crm.masked_upd]}, Citus alone ${TPS[crm.plain_upd]}"
say "  distributed / single node, masking view:          $(ratio "${TPS[crm.masked_upd]}" "${TPS[single.masked_upd]}")x throughput"
say "  pii_guard on Citus / Citus alone, masking view:   $(ratio "${TPS[crm.masked_upd]}" "${TPS[crm.plain_upd]}")x throughput"
say "  (pii_guard / plain on a single node:              $(ratio "${TPS[single.masked_upd]}" "${TPS[single.plain_upd]}")x throughput)"
say "Results: $OUT"
