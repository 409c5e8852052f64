# test/scenario/audit_worker_cost.sh -- the audit worker's periodic work does not grow with audit_log.
# With 300,000 rows in audit_log, all sealed, and 200 ended grants whose
# ends are recorded, an idle worker must stay nearly idle: each of its
# queries reads a bounded range (the seal window and sweep by event_id on
# both tables, a grant's recorded end by a partial index), and the seal,
# sweep and expiry checks run at their own rates, not per cycle.  (Before,
# every cycle's seal query read all of audit_seal and every fifth cycle's
# expiry query all of audit_log: some 870 ms of CPU in these 10 s.)
# Parallel query is off so that all of the work is the worker's own CPU.
name=wcost
pgg_new_cluster $name "max_parallel_workers_per_gather = 0"
pgg_start $name
pgg_psql $name -d postgres >/dev/null <<'SQL'
CREATE EXTENSION pii_guard;
CREATE ROLE c_reader;
CREATE TABLE c (id int PRIMARY KEY, phone pii_guard.encrypted_text);
SELECT pii_guard.protect_column('c', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
-- Bulk history, written behind the guards (with placeholder MACs: this
-- measures the worker, not the chain).
BEGIN;
ALTER TABLE pii_guard.audit_log DISABLE TRIGGER USER;
ALTER TABLE pii_guard.audit_seal DISABLE TRIGGER USER;
ALTER TABLE pii_guard.grants DISABLE TRIGGER USER;
LOCK pii_guard.audit_log, pii_guard.audit_seal;
INSERT INTO pii_guard.audit_log (event_time, kind, session_role, acting_role, relation, operation, rows, row_keys, row_mac)
SELECT now() - interval '30 days' + g * interval '1 second', 'read', 'app', 'app', 'public.c', 'SELECT', 1, ARRAY[g::text], '\x00'
  FROM generate_series(1, 300000) g;
INSERT INTO pii_guard.grants (kind, role, base, valid_from, valid_until, reason, approver)
SELECT 'unmask', 'c_reader', 'public_pii.c', now() - interval '10 days', now() - interval '1 day' + g * interval '1 minute', 'history', 'postgres'
  FROM generate_series(1, 200) g;
INSERT INTO pii_guard.audit_log (event_time, kind, session_role, acting_role, operation, detail, row_mac)
SELECT now(), 'admin', 'postgres', 'postgres', 'grant_expired', 'grant ' || g.grant_id || ': ended', '\x00'
  FROM pii_guard.grants g;
INSERT INTO pii_guard.audit_seal (seal_seq, event_id, chain_hash)
SELECT (SELECT coalesce(max(seal_seq), 0) FROM pii_guard.audit_seal) + row_number() OVER (ORDER BY event_id),
       event_id, '\x00'
  FROM pii_guard.audit_log a
 WHERE NOT EXISTS (SELECT FROM pii_guard.audit_seal s WHERE s.event_id = a.event_id);
ALTER TABLE pii_guard.audit_log ENABLE TRIGGER USER;
ALTER TABLE pii_guard.audit_seal ENABLE TRIGGER USER;
ALTER TABLE pii_guard.grants ENABLE TRIGGER USER;
COMMIT;
SQL
pgg_psql $name -d postgres -c "VACUUM ANALYZE pii_guard.audit_log, pii_guard.audit_seal, pii_guard.grants" >/dev/null
worker=$(pgg_wait 10 pgg_worker_now $name)
pgg_ok "the audit worker runs" test -n "$worker"
pgg_ok "audit_log holds the history" test "$(pgg_psql $name -d postgres -tAc "SELECT count(*) FROM pii_guard.audit_log")" -ge 300200
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$worker/stat"; }
sleep 2	# (its first cycles: the first sweep and the full look at the grants)
# (A cycle that raced with the bulk load above may have failed once.)
log_lines=$(wc -l <"$(pgg_log $name)")
c0=$(cpu_ms)
sleep 10
c1=$(cpu_ms)
used=$((c1 - c0))
pgg_ok "an idle worker over 300,000 audit rows used ${used} ms of CPU in 10 s (< 400)" test "$used" -lt 400
pgg_is "no expiry was recorded twice" "$(pgg_psql $name -d postgres -tAc "SELECT count(*) FROM pii_guard.audit_log WHERE operation = 'grant_expired'")" 200
pgg_is "every row is sealed, once" "$(pgg_psql $name -d postgres -tAc "SELECT count(*) || '/' || count(DISTINCT s.event_id) FROM pii_guard.audit_seal s")" \
	"$(pgg_psql $name -d postgres -tAc "SELECT count(*) || '/' || count(*) FROM pii_guard.audit_log")"
pgg_is "no ERROR in the server log since" "$(tail -n +"$((log_lines + 1))" "$(pgg_log $name)" | grep -c 'ERROR:')" 0
pgg_stop $name
