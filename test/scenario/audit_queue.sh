# test/scenario/audit_queue.sh -- the audit queue never loses an event.  With a queue of two
# slots and its worker frozen (SIGSTOP), backends wait briefly and then
# spill events to disk; once the worker runs again every event reaches the
# table.  Also: the JSON-lines mirror to the server log, without values.
name=auditq
pgg_new_cluster $name "pii_guard.audit_queue_size = 2" "pii_guard.audit_enqueue_timeout = 20"
pgg_start $name
pgg_psql $name -d postgres <<'SQL'
CREATE EXTENSION pii_guard;
CREATE ROLE q_reader LOGIN;
CREATE TABLE q (id int PRIMARY KEY, phone pii_guard.encrypted_text);
INSERT INTO q SELECT g, '1380000' || lpad(g::text, 4, '0') FROM generate_series(1, 5) g;
CREATE TABLE q2 (id int PRIMARY KEY, phone pii_guard.encrypted_text);
INSERT INTO q2 SELECT g, '1390000' || lpad(g::text, 4, '0') FROM generate_series(1, 5) g;
GRANT SELECT ON q, q2 TO q_reader;
SELECT pii_guard.protect_table('q');
SELECT pii_guard.protect_table('q2');
SELECT pii_guard.set_clearance('q_reader', 'sensitive');
SQL
# Wait for the worker, then freeze it.
worker=$(pgg_worker_pid $name)
pgg_ok "the audit worker runs" test -n "$worker"
rows_read() {
	pgg_psql $name -d postgres -tAc "SELECT coalesce(sum(rows), 0) FROM pii_guard.audit_log WHERE kind = 'read'"
}
before=$(rows_read)
kill -STOP "$worker"
# Six statements in turn (two tables, three shapes), more than the four
# read events a session keeps pending, so that reads are never coalesced:
# every statement's event goes to the queue.
shapes=("phone" "id, phone" "phone, 1")
for i in $(seq 42); do
	t=q; [ $((i % 2)) = 0 ] && t=q2
	echo "SELECT ${shapes[$((i / 2 % 3))]} FROM $t WHERE id = $((i % 5 + 1));"
done | psql -X -q -h "$(pgg_sock $name)" -p 5432 -U q_reader -d postgres >/dev/null
spilled=$(pgg_psql $name -d postgres -tAc "SELECT spilled FROM pii_guard.audit_queue_status()")
pgg_ok "a full queue spilled events to disk ($spilled)" test "$spilled" -gt 0
# A statement cancelled (here: its statement_timeout) while its denial
# waits for room in the full queue: the denial is spilled, not lost.
psql -X -q -h "$(pgg_sock $name)" -p 5432 -U postgres -d postgres >/dev/null 2>&1 <<'SQL'
SELECT pii_guard.encrypt('x')::text AS envelope \gset
SET pii_guard.audit_enqueue_timeout = 10000;
SET statement_timeout = 300;
SET ROLE q_reader;
SELECT pii_guard.decrypt(:'envelope'::pii_guard.encrypted_text);
SQL
kill -CONT "$worker"
rows_read_since_freeze() { echo $(($(rows_read) - before)); }
rows_read_since_freeze_at_least() { [ "$(rows_read_since_freeze)" -ge "$1" ]; }
pgg_wait 10 rows_read_since_freeze_at_least 42
pgg_is "all 42 reads reached the table" "$(rows_read_since_freeze)" 42
pgg_is "nothing is left queued" \
	"$(pgg_psql $name -d postgres -tAc "SELECT queued FROM pii_guard.audit_queue_status()")" 0
decrypt_denials() {
	pgg_psql $name -d postgres -tAc "SELECT count(*) FROM pii_guard.audit_log
		WHERE kind = 'deny' AND acting_role = 'q_reader' AND operation = 'decrypt'"
}
decrypt_denials_are() { [ "$(decrypt_denials)" = "$1" ]; }
pgg_wait 10 decrypt_denials_are 1
pgg_is "the denial of the cancelled statement reached the table" "$(decrypt_denials)" 1

# Consecutive reads of the same shape are coalesced into one event, with
# every row key kept.
start=$(pgg_psql $name -d postgres -tAc "SELECT coalesce(max(event_id), 0) FROM pii_guard.audit_log")
for i in 1 2 3 4 5; do echo "SELECT phone FROM q WHERE id = $i;"; done |
	psql -X -q -h "$(pgg_sock $name)" -p 5432 -U q_reader -d postgres >/dev/null
read_keys_since_start() {	# the row keys of the read events after $start
	pgg_psql $name -d postgres -tAc "SELECT string_agg(k, ',' ORDER BY k) FROM pii_guard.audit_log a, unnest(a.row_keys) k WHERE a.event_id > $start AND a.kind = 'read'"
}
read_keys_since_start_are() { [ "$(read_keys_since_start)" = "$1" ]; }
pgg_wait 5 read_keys_since_start_are "1,2,3,4,5"
pgg_is "five lookups: every row key is in the audit" "$(read_keys_since_start)" "1,2,3,4,5"
pgg_ok "... in fewer events than statements" test "$(pgg_psql $name -d postgres -tAc \
	"SELECT count(*) FROM pii_guard.audit_log WHERE event_id > $start AND kind = 'read'")" -lt 5

# Statements that alternate -- a transaction's UPDATE and SELECT of the same
# table, say -- coalesce each in a pending slot of its own, instead of
# displacing each other (which made every one an event, and woke the
# worker for each): 2 x 20 statements, a few events.
start=$(pgg_psql $name -d postgres -tAc "SELECT coalesce(max(event_id), 0) FROM pii_guard.audit_log")
for i in $(seq 20); do
	echo "SELECT phone FROM q WHERE id = $((i % 5 + 1));"
	echo "SELECT id, phone FROM q2 WHERE id = $((i % 5 + 1));"
done | psql -X -q -h "$(pgg_sock $name)" -p 5432 -U q_reader -d postgres >/dev/null
rows_read_since_start() {
	pgg_psql $name -d postgres -tAc "SELECT coalesce(sum(rows), 0) FROM pii_guard.audit_log WHERE event_id > $start AND kind = 'read'"
}
rows_read_since_start_at_least() { [ "$(rows_read_since_start)" -ge "$1" ]; }
pgg_wait 5 rows_read_since_start_at_least 40
pgg_is "40 alternating lookups: every row counted" "$(rows_read_since_start)" 40
pgg_ok "... in a few events, not 40" test "$(pgg_psql $name -d postgres -tAc \
	"SELECT count(*) FROM pii_guard.audit_log WHERE event_id > $start AND kind = 'read'")" -le 8

# The JSON-lines mirror.
pgg_psql $name -d postgres -c "ALTER SYSTEM SET pii_guard.audit_log_destination = 'table,log'" \
	-c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
psql -X -q -h "$(pgg_sock $name)" -p 5432 -U q_reader -d postgres \
	-c "SELECT phone FROM q WHERE phone = '13800000003'" >/dev/null
pgg_wait 5 grep -q 'pii_guard audit: {"event_id":' "$(pgg_log $name)"
pgg_ok "events are mirrored to the server log as JSON lines" \
	grep -q 'pii_guard audit: {"event_id":[0-9]*,"kind":"read"' "$(pgg_log $name)"
pgg_is "no phone number in the server log" "$(grep -c '1380000000' "$(pgg_log $name)")" 0
pgg_ok "no phone number in the audit log" test "$(pgg_psql $name -d postgres -tAc \
	"SELECT count(*) FROM pii_guard.audit_log a WHERE a::text LIKE '%1380000000%'")" = 0
pgg_is "the log verifies" "$(pgg_psql $name -d postgres -tAc "SELECT count(*) FROM pii_guard.verify_audit()")" 0
pgg_stop $name
