# test/scenario/audit_worker.sh -- the audit worker keeps working.  Settings a database owner (or
# a superuser, by mistake) gives the database do not break it; an ERROR in
# one of its cycles is logged and retried, and no queued event is lost;
# a worker that exits is started again by the next backend that needs it.
name=worker
pgg_new_cluster $name
pgg_start $name
pgg_new_db $name wdb
# Client sessions here undo the database's settings below for themselves.
client_opts="-c default_transaction_read_only=off -c statement_timeout=0 -c lock_timeout=0 -c exit_on_error=off -c idle_in_transaction_session_timeout=0"
wpsql() { PGOPTIONS="$client_opts -c session_replication_role=origin" pgg_psql $name -d wdb "$@"; }
wpsql <<'SQL'
CREATE ROLE w_reader LOGIN;
CREATE TABLE w (id int PRIMARY KEY, phone pii_guard.encrypted_text);
INSERT INTO w SELECT g, '1380000' || lpad(g::text, 4, '0') FROM generate_series(1, 5) g;
GRANT SELECT ON w TO w_reader;
SELECT pii_guard.protect_table('w');
SELECT pii_guard.set_clearance('w_reader', 'sensitive');
SQL
dboid=$(pgg_db_oid $name wdb)
worker_pid() { pgg_worker_pid $name "$dboid"; }
stop_worker() {	# SIGTERM the worker and wait until it is gone
	kill -TERM "$1"
	pgg_gone "$1"
}
# n refused decrypt() calls by w_reader: n deny events.
deny() {
	# (each under its own application_name: distinct events, which do not
	# coalesce; the queue's behaviour is what is looked at here)
	for i in $(seq "$1"); do
		echo "SET application_name = 'deny_$i'; SELECT pii_guard.decrypt(pii_guard.encrypt('x'));"
	done |
		PGOPTIONS="$client_opts" psql -X -q -h "$(pgg_sock $name)" -p 5432 -U w_reader -d wdb >/dev/null 2>&1
}
denials() { wpsql -tAc "SELECT count(*) FROM pii_guard.audit_log WHERE kind = 'deny' AND acting_role = 'w_reader'"; }
denials_at_least() { [ "$(denials)" -ge "$1" ]; }
wait_denials() {	# wait_denials N: until N deny events are in, or 20 s
	pgg_wait 20 denials_at_least "$1"
	denials
}

# 1. Database settings that would make every cycle fail or misbehave.
wpsql <<'SQL'
ALTER DATABASE wdb SET default_transaction_read_only = on;
ALTER DATABASE wdb SET default_transaction_isolation = 'serializable';
ALTER DATABASE wdb SET statement_timeout = '1ms';
ALTER DATABASE wdb SET lock_timeout = '1ms';
ALTER DATABASE wdb SET idle_in_transaction_session_timeout = '1ms';
ALTER DATABASE wdb SET exit_on_error = on;
ALTER DATABASE wdb SET session_replication_role = 'replica';
SQL
worker=$(worker_pid)
pgg_ok "the audit worker runs" test -n "$worker"
pgg_ok "it stops on SIGTERM" stop_worker "$worker"
deny 10
pgg_is "with hostile database settings, every deny event arrives" "$(wait_denials 10)" 10
worker=$(worker_pid)
pgg_ok "a new worker runs" test -n "$worker"
pgg_is "its rows carry their MAC (triggers fired)" \
	"$(wpsql -tAc "SELECT count(*) FROM pii_guard.audit_log WHERE row_mac IS NULL")" 0
wpsql -c "ALTER DATABASE wdb RESET ALL"

# 2. ERRORs in the worker's cycles: a trigger on audit_log refuses inserts
# while a switch is on.
wpsql <<'SQL'
CREATE TABLE public.audit_switch (on_ boolean);
INSERT INTO public.audit_switch VALUES (true);
CREATE FUNCTION public.audit_boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM public.audit_switch) THEN
        RAISE EXCEPTION 'induced audit failure';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER zz_boom BEFORE INSERT ON pii_guard.audit_log
    FOR EACH ROW EXECUTE FUNCTION public.audit_boom();
SQL
before=$(denials)
log_lines_before=$(wc -l <"$(pgg_log $name)")
deny 10
failed_cycles() {	# the worker's failed cycles logged since then
	tail -n +"$((log_lines_before + 1))" "$(pgg_log $name)" | grep -c "\[$worker\] .*ERROR:  induced audit failure"
}
failed_cycles_at_least() { [ "$(failed_cycles)" -ge "$1" ]; }
pgg_wait 20 failed_cycles_at_least 2
failures=$(failed_cycles)
pgg_ok "the worker logs the failing cycles and retries ($failures)" test "$failures" -ge 2
# Five lookups of one shape become one pending read event, which the
# worker takes out of shared memory at its next attempt while the session
# is still open: the failed cycle must hand it back.
start=$(wpsql -tAc "SELECT coalesce(max(event_id), 0) FROM pii_guard.audit_log")
{ for i in 1 2 3 4 5; do echo "SELECT phone FROM w WHERE id = $i;"; done; echo "SELECT pg_sleep(60);"; } |
	PGOPTIONS="$client_opts" psql -X -q -h "$(pgg_sock $name)" -p 5432 -U w_reader -d wdb >/dev/null 2>&1 &
reader=$!
sleeping_reader() { wpsql -tAc "SELECT pid FROM pg_stat_activity WHERE usename = 'w_reader' AND query = 'SELECT pg_sleep(60);'"; }
reader_sleeps() { [ -n "$(sleeping_reader)" ]; }
pgg_wait 10 reader_sleeps
sleeping=$(sleeping_reader)
lines=$(wc -l <"$(pgg_log $name)")
induced_since() { tail -n +"$((lines + 1))" "$(pgg_log $name)" | grep -q "\[$worker\] .*ERROR:  induced audit failure"; }
pgg_wait 20 induced_since
pgg_ok "a cycle failed while the reads were pending" \
	bash -c "tail -n +$((lines + 1)) '$(pgg_log $name)' | grep -q '\[$worker\] .*ERROR:  induced audit failure'"
wpsql -tAc "SELECT pg_terminate_backend($sleeping)" >/dev/null
wait $reader
pgg_ok "... and is still the same process" kill -0 "$worker"
pgg_is "... and nothing reached the table meanwhile" "$(denials)" "$before"
wpsql -c "DELETE FROM public.audit_switch"
pgg_is "once inserts work again, every queued event arrives" "$(wait_denials $((before + 10)))" $((before + 10))
read_keys_since_start() {	# the row keys of the read events after $start
	wpsql -tAc "SELECT string_agg(k, ',' ORDER BY k) FROM pii_guard.audit_log a, unnest(a.row_keys) k
		WHERE a.event_id > $start AND a.kind = 'read'"
}
read_keys_since_start_are() { [ "$(read_keys_since_start)" = "$1" ]; }
pgg_wait 10 read_keys_since_start_are "1,2,3,4,5"
pgg_is "... and so does the pending read event, with every row key" "$(read_keys_since_start)" "1,2,3,4,5"
pgg_is "nothing is left queued" "$(wpsql -tAc "SELECT queued FROM pii_guard.audit_queue_status()")" 0
wpsql -c "DROP TRIGGER zz_boom ON pii_guard.audit_log"

# 3. A worker that exits is started again when a backend needs it.
pgg_ok "the worker stops on SIGTERM" stop_worker "$worker"
before=$(denials)
deny 3
pgg_is "a new worker writes the next events" "$(wait_denials $((before + 3)))" $((before + 3))
pgg_ok "... and it is another process" test "$(worker_pid)" != "$worker"

# 4. Asked to stop (SIGTERM: server shutdown, DROP DATABASE, pg_terminate_
# backend), the worker first writes what is queued, and exits with code 0.
# Frozen, it sees the SIGTERM only after the events are queued.
worker=$(worker_pid)
before=$(denials)
kill -STOP "$worker"
deny 7
kill -TERM "$worker"
kill -CONT "$worker"
pgg_gone "$worker"
# What is still only in shared memory is gone after a restart.
pgg_restart $name
postmaster=$(head -1 "$(pgg_data $name)/postmaster.pid")
pgg_is "events queued when the worker was asked to stop survive a restart" "$(denials)" $((before + 7))
pgg_is "a requested stop is not an exit with code 1" \
	"$(grep -c "audit worker\" (PID $worker) exited with exit code 1" "$(pgg_log $name)")" 0

# 5. A spill file whose writer died before renaming it into place is
# removed when a worker starts.
worker=$(worker_pid)
stray="$(pgg_data $name)/pg_pii_guard/$dboid.999999.1.tmp"
pgg_ok "the worker runs" test -n "$worker"
pgg_ok "... and stops" stop_worker "$worker"
pgg_as_server bash -c "mkdir -p '$(dirname "$stray")' && printf 'half an event' > '$stray'"
deny 1
worker=$(worker_pid)
pgg_wait 10 test ! -e "$stray"
pgg_ok "a new worker removes the stale .tmp spill file" test ! -e "$stray"
pgg_ok "... and says so in the server log" grep -q "removed stale audit spill file .*$dboid.999999.1.tmp" "$(pgg_log $name)"

# 6. Statements that need a database to themselves -- CREATE DATABASE ...
# TEMPLATE, DROP DATABASE -- work while its worker is connected, when the
# database's owner (not a superuser) issues them; a role that does not own
# it cannot stop its worker that way.
pgg_psql $name -d postgres -c "CREATE ROLE w_owner LOGIN CREATEDB" -c "CREATE DATABASE wdrop OWNER w_owner"
pgg_psql $name -d wdrop -c "CREATE EXTENSION pii_guard" -c "SELECT pii_guard.rotate_data_key()" >/dev/null
as_owner() { psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock $name)" -p 5432 -U w_owner -d postgres "$@"; }
wdrop_worker() { pgg_worker_pid $name "$(pgg_db_oid $name wdrop)"; }
pgg_ok "wdrop's worker runs" test -n "$(wdrop_worker)"
pgg_ok "its owner copies it with CREATE DATABASE ... TEMPLATE" as_owner -c "CREATE DATABASE wcopy TEMPLATE wdrop"
pgg_psql $name -d wdrop -c "SELECT pii_guard.rotate_data_key()" >/dev/null
pgg_ok "wdrop's worker runs again" test -n "$(wdrop_worker)"
worker=$(worker_pid)
pgg_ok "a role that does not own wdb cannot drop it" bash -c "! psql -X -q -h '$(pgg_sock $name)' -p 5432 -U w_owner -d postgres -c 'DROP DATABASE wdb' 2>/dev/null"
pgg_ok "... nor stop its worker trying" kill -0 "$worker"
pgg_ok "wdrop's owner drops it" as_owner -c "DROP DATABASE wdrop"
pgg_ok "... and wcopy" as_owner -c "DROP DATABASE wcopy"
pgg_is "the chain verifies" "$(wpsql -tAc "SELECT count(*) FROM pii_guard.verify_audit()")" 0

# The chain's head, anchored outside: in the server log after each sealing,
# and given to pii_guard.audit_anchor_command; the newest anchor kept
# verifies, and no longer does once the newest rows and seals are cut.
anchors="$(pgg_data $name)/anchors.txt"	# (where the server may write)
rm -f "$anchors"
wpsql -c "ALTER SYSTEM SET pii_guard.audit_anchor_command = 'echo \"%d %a %s %e\" >> $anchors'" \
	-c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
deny 3
pgg_wait 10 test -s "$anchors"
pgg_ok "the anchor command was run" test -s "$anchors"
last=$(tail -1 "$anchors")
anchor=$(awk '{print $2}' <<<"$last")
pgg_ok "... with the database, the anchor, its sequence and event" \
	grep -Eq "^wdb [0-9]+:[0-9a-f]{64} [0-9]+ [0-9]+\$" <<<"$last"
pgg_ok "the server log has it too" grep -q "pii_guard audit anchor: database \"wdb\" anchor $anchor" "$(pgg_log $name)"
pgg_is "the chain verifies against the anchor" "$(wpsql -tAc "SELECT count(*) FROM pii_guard.verify_audit('$anchor')")" 0
wpsql -c "ALTER SYSTEM RESET pii_guard.audit_anchor_command" -c "SELECT pg_reload_conf()" >/dev/null
cut=$(wpsql -tA <<SQL
BEGIN;
ALTER TABLE pii_guard.audit_seal DISABLE TRIGGER audit_seal_guard;
ALTER TABLE pii_guard.audit_log DISABLE TRIGGER audit_log_guard;
DELETE FROM pii_guard.audit_seal WHERE seal_seq >= split_part('$anchor', ':', 1)::bigint;
DELETE FROM pii_guard.audit_log a WHERE NOT EXISTS (SELECT 1 FROM pii_guard.audit_seal s WHERE s.event_id = a.event_id);
SELECT 'alone:' || count(*) FROM pii_guard.verify_audit();
SELECT 'anchored:' || count(*) FROM pii_guard.verify_audit('$anchor');
ROLLBACK;
SQL
)
pgg_is "a cut tail: verify_audit() alone finds nothing, against the anchor it does" \
	"$(grep -E '^(alone|anchored):' <<<"$cut" | tr '\n' ' ')" "alone:0 anchored:1 "
pgg_stop $name
