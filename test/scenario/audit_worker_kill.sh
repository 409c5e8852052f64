# test/scenario/audit_worker_kill.sh -- the audit worker under SIGKILL and
# under disk-full errors in its inserts (SIGTERM and a generic ERROR per
# cycle are in audit_worker.sh; kill -9 of a backend and of the postmaster
# in audit_crash.sh).
#
# Proves:
#  - kill -9 of the worker makes the postmaster reinitialize: every other
#    backend is terminated, the server comes back, a new worker starts;
#    every event written before is still there, the chain verifies, and new
#    events arrive and verify too;
#  - while every insert of the worker fails with SQLSTATE 53100 (disk_full),
#    deny and read events keep being produced; none reaches the table, the
#    failure is logged with its SQLSTATE-naming message and without any
#    plaintext; once the failure clears, every one of them arrives.
name=wkill
pgg_new_cluster $name
pgg_start $name
pgg_new_db $name kdb >/dev/null
kpsql() { pgg_psql $name -d kdb "$@"; }
kpsql -q <<'SQL' >/dev/null
CREATE ROLE k_reader LOGIN;
CREATE TABLE k (id int PRIMARY KEY, phone pii_guard.encrypted_text);
INSERT INTO k SELECT g, '1385550' || lpad(g::text, 4, '0') FROM generate_series(1, 5) g;
GRANT SELECT ON k TO k_reader;
SELECT pii_guard.protect_table('k');
SELECT pii_guard.set_clearance('k_reader', 'sensitive');
SQL
dboid=$(kpsql -tAc "SELECT oid FROM pg_database WHERE datname = 'kdb'")
worker_pid() { pgg_worker_pid $name "$dboid"; }
deny() {	# n refused decrypt() calls by k_reader: n deny events
	# (each under its own application_name: distinct events, which do not
	# coalesce; the queue's behaviour is what is looked at here)
	for i in $(seq "$1"); do
		echo "SET application_name = 'deny_$i'; SELECT pii_guard.decrypt(pii_guard.encrypt('x'));"
	done |
		psql -X -q -h "$(pgg_sock $name)" -p 5432 -U k_reader -d kdb >/dev/null 2>&1
}
denials() { kpsql -tAc "SELECT count(*) FROM pii_guard.audit_log WHERE kind = 'deny' AND acting_role = 'k_reader'" 2>/dev/null; }
denials_at_least() { local got; got=$(denials); [ -n "$got" ] && [ "$got" -ge "$1" ]; }
wait_denials() {	# wait_denials N: until N deny events are in, or 20 s
	pgg_wait 20 denials_at_least "$1"
	denials
}
settled() { pgg_wait 15 pgg_audit_settled $name kdb 2>/dev/null; }

# 1. kill -9 of the worker.
deny 5
pgg_is "5 deny events are written" "$(wait_denials 5)" 5
pgg_ok "... and sealed" settled
events=$(kpsql -tAc "SELECT count(*) FROM pii_guard.audit_log")
worker=$(worker_pid)
pgg_ok "the worker runs" test -n "$worker"
{ echo "SELECT 1;"; echo "SELECT pg_sleep(60);"; } |
	PGAPPNAME=bystander psql -X -q -h "$(pgg_sock $name)" -p 5432 -U postgres -d kdb >/dev/null 2>&1 &
bystander=$!
bystander_sleeps() {
	[ "$(kpsql -tAc "SELECT count(*) FROM pg_stat_activity
	                   WHERE application_name = 'bystander' AND wait_event = 'PgSleep'")" = 1 ]
}
pgg_wait 10 bystander_sleeps
kill -9 "$worker"
pgg_gone "$bystander"
pgg_ok "the postmaster terminates the other backends (a session in pg_sleep ends)" \
	bash -c "! kill -0 $bystander 2>/dev/null"
wait "$bystander" 2>/dev/null
pgg_wait 15 pgg_accepts $name kdb
pgg_is "the server reinitializes and accepts connections" "$(kpsql -tAc "SELECT 1")" 1
pgg_ok "... it logged the worker's death and the reinitialization" \
	grep -q "terminated by signal 9" "$(pgg_log $name)"
pgg_is "every event written before is still there" "$(kpsql -tAc "SELECT count(*) FROM pii_guard.audit_log")" "$events"
deny 4
pgg_is "a new worker writes the next events" "$(wait_denials 9)" 9
pgg_ok "... and it is another process" test "$(worker_pid)" != "$worker"
pgg_ok "... they are sealed" settled
pgg_is "the chain verifies across the kill" "$(kpsql -tAc "SELECT count(*) FROM pii_guard.verify_audit()")" 0

# 2. Disk full in every insert of the worker.
kpsql -q <<'SQL' >/dev/null
CREATE TABLE public.disk_switch (on_ boolean);
INSERT INTO public.disk_switch VALUES (true);
CREATE FUNCTION public.disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM public.disk_switch) THEN
        RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER zz_disk_full BEFORE INSERT ON pii_guard.audit_log
    FOR EACH ROW EXECUTE FUNCTION public.disk_full();
SQL
worker=$(worker_pid)
lines=$(wc -l <"$(pgg_log $name)")
before=$(denials)
deny 10
for i in 1 2 3; do
	psql -X -q -h "$(pgg_sock $name)" -p 5432 -U k_reader -d kdb -c "SELECT phone FROM k WHERE id = $i" >/dev/null 2>&1
done
disk_full_logged() { tail -n +"$((lines + 1))" "$(pgg_log $name)" | grep -c "No space left on device"; }
disk_full_logged_at_least() { [ "$(disk_full_logged)" -ge "$1" ]; }
pgg_ok "the failing inserts are logged, cycle after cycle" pgg_wait 20 disk_full_logged_at_least 2
pgg_is "... and nothing reached the table meanwhile" "$(denials)" "$before"
pgg_ok "... the events wait in the queue" \
	test "$(kpsql -tAc "SELECT queued FROM pii_guard.audit_queue_status()")" -gt 0
pgg_ok "the worker is still the same process" kill -0 "$worker"
kpsql -c "DELETE FROM public.disk_switch" >/dev/null
pgg_is "once the disk has room, every deny event arrives" "$(wait_denials $((before + 10)))" $((before + 10))
reads_at_least() {
	[ "$(kpsql -tAc "SELECT count(*) FROM pii_guard.audit_log WHERE kind = 'read' AND acting_role = 'k_reader'")" -ge "$1" ]
}
pgg_ok "... and the read events too" pgg_wait 10 reads_at_least 1
pgg_ok "... sealed" settled
pgg_is "the chain verifies" "$(kpsql -tAc "SELECT count(*) FROM pii_guard.verify_audit()")" 0
pgg_is "no plaintext phone in the server log" "$(grep -c '1385550' "$(pgg_log $name)")" 0
kpsql -c "DROP TRIGGER zz_disk_full ON pii_guard.audit_log" >/dev/null
pgg_stop $name
