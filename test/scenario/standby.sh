# test/scenario/standby.sh -- a streaming-replication hot standby.  It cannot write
# audit_log, so reads through the masking views there must neither queue
# events nobody empties nor wait for room: each event goes at once to the
# standby's server log as a JSON line, without values; export limits are
# counted there in memory.  After a promotion the events land in audit_log
# again and the chain verifies.
#
# The queue is small and consecutive reads alternate between two tables
# (never coalesced), so that a standby that still queued its events would
# fill the queue within a few reads and wait out the enqueue timeout (1 s)
# for every read after that.
prim=sb_primary
stby=sb_standby
pgg_new_cluster $prim "wal_level = replica" "max_wal_senders = 4" "hot_standby = on" \
	"pii_guard.audit_queue_size = 8" "pii_guard.audit_enqueue_timeout = 1000"
echo "local replication all trust" | pgg_as_server tee -a "$(pgg_data $prim)/pg_hba.conf" >/dev/null
pgg_start $prim
pgg_psql $prim -d postgres >/dev/null <<'SQL'
CREATE EXTENSION pii_guard;
CREATE ROLE s_intern LOGIN;
CREATE TABLE s1 (id int PRIMARY KEY, phone pii_guard.encrypted_text);
CREATE TABLE s2 (id int PRIMARY KEY, phone pii_guard.encrypted_text);
INSERT INTO s1 SELECT g, '1380000' || lpad(g::text, 4, '0') FROM generate_series(1, 20) g;
INSERT INTO s2 SELECT g, '1390000' || lpad(g::text, 4, '0') FROM generate_series(1, 20) g;
GRANT SELECT ON s1, s2 TO s_intern;
SELECT pii_guard.protect_column('s1', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('s2', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.set_clearance('s_intern', 'internal');
SELECT pii_guard.set_export_limits('s_intern', 10, 1000);
SQL
reads() {	# reads CLUSTER: 60 single-row reads, alternating tables
	for i in $(seq 60); do
		echo "SELECT phone FROM s$((i % 2 + 1)) WHERE id = $((i % 20 + 1));"
	done | psql -X -q -tA -h "$(pgg_sock "$1")" -p 5432 -U s_intern -d postgres
}
primary_out=$(reads $prim)
pgg_ok "the primary shows masked phones" test "$(echo "$primary_out" | grep -c '^13[89]\*\*\*\*00[0-9][0-9]$')" = 60

# The standby: a base backup of the primary, with the same master key
# command (postgresql.conf is copied) and a socket of its own.
mkdir -p "$(pgg_sock $stby)"
if [ "$(id -u)" -eq 0 ]; then chown postgres "$(pgg_sock $stby)"; fi
pgg_as_server pg_basebackup -h "$(pgg_sock $prim)" -p 5432 -U postgres \
	-D "$(pgg_data $stby)" -R -X stream -c fast >"$(pgg_sock $stby)/basebackup.log" 2>&1 ||
	{ cat "$(pgg_sock $stby)/basebackup.log" >&2; pgg_die "pg_basebackup failed"; }
pgg_conf $stby "unix_socket_directories = '$(pgg_sock $stby)'"
pgg_start $stby
pgg_is "the standby is in recovery" "$(pgg_psql $stby -d postgres -tAc "SELECT pg_is_in_recovery()")" t

start=$(date +%s.%N)
standby_out=$(reads $stby)
rc=$?
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
pgg_is "60 reads on the standby succeed" "$rc" 0
pgg_ok "... in under 10 s (took ${elapsed} s)" test "$(echo "$elapsed < 10" | bc)" = 1
pgg_is "... masked exactly as on the primary" "$standby_out" "$primary_out"
# Over the per-statement limit: refused on the standby as on the primary.
refused=$(psql -X -q -tA -h "$(pgg_sock $stby)" -p 5432 -U s_intern -d postgres \
	-c "SELECT phone FROM s1" 2>&1)
pgg_ok "the per-statement export limit holds on the standby" \
	grep -q 'ERROR: .*limit' <<<"$refused"

slog=$(pgg_log $stby)
lines=$(grep -c 'pii_guard audit (standby): {' "$slog")
pgg_ok "the standby's log has an audit line per read ($lines)" test "$lines" -ge 60
pgg_is "... for s_intern's reads of both views" \
	"$(grep 'pii_guard audit (standby): {"event_id":null,"kind":"read"' "$slog" |
		grep '"session_role":"s_intern"' | grep '"operation":"SELECT",' |
		grep -c '"columns_masked":"phone"')" 60
pgg_ok "... and the refusal" grep -q 'pii_guard audit (standby): {"event_id":null,"kind":"deny".*"session_role":"s_intern"' "$slog"
pgg_is "... naming the role also in a failed statement" "$(grep -c 'pii_guard audit (standby): .*"session_role":"[0-9]' "$slog")" 0
pgg_ok "... each a JSON object" bash -c "grep -o 'pii_guard audit (standby): .*' '$slog' |
	sed 's/^pii_guard audit (standby): //' | python3 -c '
import json, sys
for line in sys.stdin:
    json.loads(line)
'"
pgg_is "no phone number in the standby's log" "$(grep -c '13[89]0000' "$slog")" 0
pgg_is "nothing queued or spilled on the standby" \
	"$(pgg_psql $stby -d postgres -tAc "SELECT queued || '/' || spilled FROM pii_guard.audit_queue_status()")" "0/0"
spm=$(head -1 "$(pgg_data $stby)/postmaster.pid")
pgg_ok "the standby's audit worker runs (and waits)" pgrep -P "$spm" -f "pii_guard audit worker"
pgg_is "no error in the standby's log" "$(grep -c 'ERROR:' "$slog")" 1	# (the refusal)

# Promotion: from now on the events go to audit_log, and the chain holds.
pgg_as_server "$PGG_SERVER_BIN/pg_ctl" -D "$(pgg_data $stby)" -w -t 60 promote >/dev/null
pgg_is "promoted" "$(pgg_psql $stby -d postgres -tAc "SELECT pg_is_in_recovery()")" f
before=$(pgg_psql $stby -d postgres -tAc "SELECT coalesce(max(event_id), 0) FROM pii_guard.audit_log")
after_out=$(reads $stby)
pgg_is "reads after the promotion are masked" "$after_out" "$primary_out"
rows_read_since_promotion() {
	pgg_psql $stby -d postgres -tAc "SELECT coalesce(sum(rows), 0) FROM pii_guard.audit_log
		WHERE event_id > $before AND kind = 'read' AND session_role = 's_intern'"
}
rows_read_since_promotion_at_least() { [ "$(rows_read_since_promotion)" -ge "$1" ]; }
pgg_wait 20 rows_read_since_promotion_at_least 60
pgg_is "... and land in audit_log (rows read)" "$(rows_read_since_promotion)" 60
pgg_is "no standby audit line after the promotion" "$(grep -c 'pii_guard audit (standby): {' "$slog")" "$lines"
# The worker seals what it wrote; then the whole log verifies.
pgg_wait 20 pgg_all_sealed $stby postgres
pgg_is "every row is sealed" "$(pgg_unsealed $stby postgres)" 0
pgg_is "verify_audit() is clean" "$(pgg_psql $stby -d postgres -tAc "SELECT count(*) FROM pii_guard.verify_audit()")" 0
pgg_stop $stby
pgg_stop $prim
