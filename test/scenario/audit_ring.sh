# test/scenario/audit_ring.sh -- one database's events never wedge the shared queue for the
# others.  The queue has four slots and the server room for one background
# worker, so while ringa's worker runs, ringb's cannot start and its events
# sit at the head of the ring.  ringa's worker moves them into ringb's
# spill files; ringb's worker ingests them when it can run; and once ringb
# is dropped, a worker removes its spill files.
# Runs alone.  (That ringa's events go through the queue without waiting
# and spilling is a matter of its worker keeping up within 100 ms: another
# scenario beside it on two cores made one spill in a CI run.)
name=ring
pgg_new_cluster $name "max_worker_processes = 1" "max_logical_replication_workers = 0" \
	"max_parallel_workers_per_gather = 0" \
	"pii_guard.audit_queue_size = 4" "pii_guard.audit_enqueue_timeout = 100"
pgg_start $name
pgg_psql $name -d postgres -c "CREATE ROLE r_user LOGIN" -c "CREATE DATABASE ringa" -c "CREATE DATABASE ringb"
spill_dir="$(pgg_data $name)/pg_pii_guard"
oid_of() { pgg_db_oid $name "$1"; }
worker_of() { pgg_worker_pid $name "$1"; }	# worker_of OID: its worker's pid
stop_pid() {
	kill -TERM "$1"
	pgg_gone "$1"
}
deny_in() {	# deny_in DB N: N refused decrypt() calls there
	# (each under its own application_name: distinct events, which do not
	# coalesce; the queue's behaviour is what is looked at here)
	for i in $(seq "$2"); do
		echo "SET application_name = 'deny_$i'; SELECT pii_guard.decrypt(pii_guard.encrypt('x'));"
	done |
		psql -X -q -h "$(pgg_sock $name)" -p 5432 -U r_user -d "$1" >/dev/null 2>&1
}
# start_in DB OID: one denial a second in DB until its worker runs (with a
# single worker slot, the postmaster may not have freed the last worker's
# slot yet); sets $issued to the denials it made.
start_in() {
	issued=0
	for _ in $(seq 10); do
		deny_in "$1" 1
		issued=$((issued + 1))
		pgg_wait 1.2 pgg_worker_now $name "$2" >/dev/null && return 0
	done
	return 1
}
denials_in() { pgg_psql $name -d "$1" -tAc "SELECT count(*) FROM pii_guard.audit_log WHERE kind = 'deny'"; }
spill_files() { find "$spill_dir" -maxdepth 1 -name "$1.*.event" 2>/dev/null | wc -l; }
status() { pgg_psql $name -d ringa -tAc "SELECT $1 FROM pii_guard.audit_queue_status()"; }
a=$(oid_of ringa)
b=$(oid_of ringb)

pgg_psql $name -d ringa -c "CREATE EXTENSION pii_guard" -c "SELECT pii_guard.rotate_data_key()" >/dev/null
worker_a=$(worker_of "$a")
pgg_ok "ringa's worker runs" test -n "$worker_a"
warning=$(pgg_psql $name -d ringb -v VERBOSITY=verbose -c "CREATE EXTENSION pii_guard" \
	-c "SELECT pii_guard.rotate_data_key()" 2>&1 >/dev/null)
pgg_ok "ringb's worker cannot start: a WARNING with SQLSTATE 53400" \
	grep -q "WARNING:  53400: pii_guard could not start the audit worker" <<<"$warning"

# 1. ringb's events, with no worker to write them.
denials_are() { [ "$(denials_in "$1")" = "$2" ]; }		# denials_are DB N
spill_files_are() { [ "$(spill_files "$1")" = "$2" ]; }	# spill_files_are OID N
all_spilled() { [ "$(status queued)" = 0 ] && spill_files_are "$b" 12; }
deny_in ringb 12
pgg_wait 10 all_spilled
pgg_is "ringb's events do not stay in the queue" "$(status queued)" 0
pgg_is "... they are all in ringb's spill files" "$(spill_files "$b")" 12
spilled=$(status spilled)
deny_in ringa 5
pgg_wait 10 denials_are ringa 5
pgg_is "ringa's events arrive" "$(denials_in ringa)" 5
pgg_is "... through the queue, without waiting and spilling" "$(status spilled)" "$spilled"

# A spill file damaged meanwhile (one byte changed) is recognised by its
# checksum and set aside, not written as an event nor silently dropped.
victim=$(find "$spill_dir" -maxdepth 1 -name "$b.*.event" | head -1)
printf 'X' | dd of="$victim" bs=1 seek=200 conv=notrunc status=none

# 2. Once ringb's worker can run, it writes them.
pgg_ok "ringa's worker stops" stop_pid "$worker_a"
pgg_ok "ringb's worker starts" start_in ringb "$b"
worker_b=$(worker_of "$b")
pgg_wait 10 denials_are ringb $((11 + issued))
pgg_is "every one of ringb's intact events reached its table" "$(denials_in ringb)" $((11 + issued))
pgg_is "... and its spill files are gone" "$(spill_files "$b")" 0
pgg_ok "the damaged one was set aside as .bad" test -f "$victim.bad"
pgg_ok "... with a WARNING that says why" \
	grep -q "audit spill file \"$victim\" was set aside: its checksum does not match" "$(pgg_log $name)"

# 3. A dropped database's spill files are removed by another database's worker.
pgg_ok "ringb's worker stops" stop_pid "$worker_b"
pgg_ok "ringa's worker starts again" start_in ringa "$a"
deny_in ringb 3
pgg_wait 10 spill_files_are "$b" 3
pgg_is "ringb's new events went to its spill files" "$(spill_files "$b")" 3
pgg_psql $name -d postgres -c "DROP DATABASE ringb"
pgg_wait 15 spill_files_are "$b" 0
pgg_is "once ringb is dropped, its spill files are removed" "$(spill_files "$b")" 0
pgg_ok "... with a LOG line" grep -q "removed 3 audit spill files of database $b, which no longer exists" "$(pgg_log $name)"
pgg_is "nothing is left queued" "$(status queued)" 0
pgg_is "ringa's chain verifies" "$(pgg_psql $name -d ringa -tAc "SELECT count(*) FROM pii_guard.verify_audit()")" 0
pgg_stop $name
