# test/scenario/audit_crash.sh -- crashes.  A write workload on a protected, audited table is hit
# by kill -9 of one backend and, separately, of the postmaster.  After
# recovery every committed row has its write event (write events commit
# with the data), and the chain verifies once the worker has sealed the
# rest.  What a crash loses is only what sat in the shared-memory queue:
# read and deny events of the last moments.
name=crash
pgg_new_cluster $name "max_connections = 40"
pgg_start $name
pgg_psql $name -d postgres <<'SQL'
CREATE EXTENSION pii_guard;
CREATE TABLE ledger (id bigserial PRIMARY KEY, phone pii_guard.encrypted_text, amount int);
SELECT pii_guard.protect_table('ledger');
SQL
cat > "$PGG_WORK/insert.sql" <<'SQL'
INSERT INTO ledger (phone, amount) VALUES ('13812345678', (random() * 1000)::int);
SQL

check_after_crash() {
	local what=$1 missing
	pgg_wait 20 pgg_accepts $name
	missing=$(pgg_psql $name -d postgres -tAc "
		WITH written AS (SELECT DISTINCT unnest(a.row_keys) AS key FROM pii_guard.audit_log a
		                  WHERE a.kind = 'write' AND a.operation = 'INSERT')
		SELECT count(*) FROM public_pii.ledger l
		 WHERE NOT EXISTS (SELECT 1 FROM written w WHERE w.key = l.id::text)")
	pgg_is "$what: every committed row has its write event" "$missing" 0
	pgg_ok "$what: rows were written ($(pgg_psql $name -d postgres -tAc "SELECT count(*) FROM public_pii.ledger"))" \
		test "$(pgg_psql $name -d postgres -tAc "SELECT count(*) FROM public_pii.ledger")" -gt 0
	# Any use of pii_guard starts the worker again; wait until all is sealed.
	pgg_psql $name -d postgres -tAc "SELECT count(*) FROM ledger" >/dev/null
	pgg_wait 30 pgg_all_sealed $name postgres
	pgg_is "$what: every row is sealed" "$(pgg_unsealed $name postgres)" 0
	pgg_is "$what: the chain verifies" \
		"$(pgg_psql $name -d postgres -tAc "SELECT count(*) FROM pii_guard.verify_audit()")" 0
}

# 1. kill -9 of one backend in the middle of the workload.
pgbench -n -h "$(pgg_sock $name)" -p 5432 -U postgres -c 4 -T 6 -f "$PGG_WORK/insert.sql" postgres \
	>"$PGG_WORK/pgbench1.log" 2>&1 &
bench=$!
sleep 2
victim=$(pgg_psql $name -d postgres -tAc \
	"SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' LIMIT 1")
pgg_ok "found a pgbench backend to kill" test -n "$victim"
kill -9 "$victim"
wait $bench
check_after_crash "backend killed"

# 2. kill -9 of the postmaster itself.
pgbench -n -h "$(pgg_sock $name)" -p 5432 -U postgres -c 4 -T 6 -f "$PGG_WORK/insert.sql" postgres \
	>"$PGG_WORK/pgbench2.log" 2>&1 &
bench=$!
sleep 2
postmaster=$(head -1 "$(pgg_data $name)/postmaster.pid")
children=$(pgrep -P "$postmaster" | tr '\n' ' ')
kill -9 "$postmaster"
wait $bench
# Orphaned backends and workers notice the postmaster's death and exit.
# shellcheck disable=SC2086
pgg_wait 20 pgg_not_running $children
pgg_start $name
check_after_crash "postmaster killed"
pgg_stop $name
