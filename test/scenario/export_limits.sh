# test/scenario/export_limits.sh -- export limits across sessions, a restart and a crash, and the
# seed story: an intern's attempt to export all customers is refused and
# logged; a manager approves 500 rows for 24 hours; the intern exports 500
# and the 501st is refused.  Then what only a cluster of its own can show:
# named portals of the extended protocol, the window's edge in the
# persisted state, an approval's use surviving a dump and restore but not
# a reinstall, and full counter tables refusing instead of failing open.
name=limits
pgg_new_cluster $name
pgg_start $name
pgg_psql $name -d postgres <<'SQL' >/dev/null
CREATE EXTENSION pii_guard;
CREATE ROLE intern NOLOGIN;
CREATE ROLE intern_fay LOGIN IN ROLE intern;
CREATE ROLE intern_gus LOGIN IN ROLE intern;
CREATE ROLE intern_hal LOGIN IN ROLE intern;
CREATE ROLE mgr_eve LOGIN IN ROLE pii_guard_approver;
CREATE TABLE customers (id int PRIMARY KEY, phone pii_guard.encrypted_text, city text);
INSERT INTO customers SELECT g, '138' || lpad(g::text, 8, '0'), 'c' || g % 7
  FROM generate_series(1, 600) g;
GRANT SELECT ON customers TO intern;
SELECT pii_guard.protect_column('customers', 'phone', 'sensitive', 'pii_guard.partial(text,integer,text,integer)', '{3,****,4}');
SELECT pii_guard.set_clearance('intern', 'public');
SELECT pii_guard.set_export_limits('intern', 20, 100);
SQL
as_user() {	# as_user ROLE [DB] psql-args...
	local user=$1 db=postgres
	shift
	if [ "${1:-}" = "-d" ]; then db=$2; shift 2; fi
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock $name)" -p 5432 -U "$user" -d "$db" "$@"
}
as_intern() { as_user intern_fay "$@"; }
sql() { pgg_psql $name -d "${2:-postgres}" -tAc "$1"; }
state_file=$(pgg_data $name)/pg_pii_guard/limits.state
# Rows of a login role's day in limits.state (0 while the file lacks it).
persisted() {
	[ -f "$state_file" ] || { echo 0; return; }
	pgg_as_server perl test/limits_state.pl sum "$state_file" \
		"$(sql "SELECT oid FROM pg_database WHERE datname = current_database()" "${2:-postgres}")" \
		"$(sql "SELECT '$1'::regrole::oid")"
}
persisted_are() { [ "$(persisted "$1")" = "$2" ]; }
wait_persisted() {	# wait_persisted ROLE ROWS: until limits.state holds them
	pgg_wait 10 persisted_are "$1" "$2" && return 0
	echo "  # limits.state holds $(persisted "$1") rows of $1, not $2"
	return 1
}

# The bulk export is refused, with its own SQLSTATE, and audited.
out=$(as_intern -c "\\set VERBOSITY verbose" -c "COPY (SELECT id, phone FROM customers) TO STDOUT" 2>&1)
pgg_ok "bulk export refused with 54P01" grep -q "ERROR:  54P01: pii_guard export limit exceeded" <<<"$out"
pgg_is "the client received exactly 20 rows before the error" "$(grep -c '138\*\*\*\*' <<<"$out")" 20
refusals_of() { sql "SELECT count(*) FROM pii_guard.audit_denials WHERE session_role = '$1'"; }
refusals_of_at_least() { [ "$(refusals_of "$1")" -ge "$2" ]; }
pgg_ok "the refusal is in the audit log" pgg_wait 5 refusals_of_at_least intern_fay 1

# The day's budget holds across sessions and across a restart.
for i in 1 2 3; do as_intern -tAc "SELECT array_length(array_agg(phone), 1) FROM customers WHERE id BETWEEN $((i * 20 + 1)) AND $((i * 20 + 20))" >/dev/null; done
used=$(sql "SELECT pii_guard.export_usage('intern_fay')")
pgg_is "rows used today, over four sessions" "$used" 80
pgg_ok "the audit worker persisted them" wait_persisted intern_fay 80
pgg_restart $name
pgg_is "after a restart the day's usage is still there" \
	"$(sql "SELECT pii_guard.export_usage('intern_fay')")" 80
pgg_is "the rest of the budget is all there is: 20 rows pass" \
	"$(as_intern -tAc "SELECT array_length(array_agg(phone), 1) FROM customers WHERE id BETWEEN 101 AND 120" 2>&1)" 20
pgg_ok "the 101st row of the day is refused" \
	grep -q "per 24 hours" <<<"$(as_intern -c "\\set VERBOSITY default" -c "SELECT phone FROM customers WHERE id = 200" 2>&1)"

# A crash (immediate shutdown) loses only what changed after the audit
# worker last wrote limits.state, about 0.2 s: once written, it survives.
as_user intern_hal -tAc "SELECT array_length(array_agg(phone), 1) FROM customers WHERE id <= 15" >/dev/null
pgg_ok "the audit worker persisted the 15 rows" wait_persisted intern_hal 15
pgg_stop $name immediate
pgg_start $name
pgg_is "after a crash the persisted usage is still there" \
	"$(sql "SELECT pii_guard.export_usage('intern_hal')")" 15

# The intern cannot step into a role it is not a member of to get a fresh
# budget, nor change a pii_guard setting.
pgg_ok "SET ROLE to a role it is not a member of is refused" \
	grep -q "permission denied to set role" <<<"$(as_intern -c "SET ROLE mgr_eve" 2>&1)"
pgg_ok "SET of a pii_guard setting is refused" \
	grep -q "permission denied to set parameter" <<<"$(as_intern -c "SET pii_guard.audit_reads = off" 2>&1)"
pgg_ok "SET of a default limit is refused" \
	grep -q "permission denied to set parameter" <<<"$(as_intern -c "SET pii_guard.default_max_rows_per_day = -1" 2>&1)"

# An approval for 500 rows for 24 hours: 500 pass, the 501st does not.
grant=$(as_user mgr_eve -tA \
	-c "SELECT pii_guard.approve_export('intern', 500, now() + interval '24 hours', 'mailing to all customers')")
pgg_ok "the manager approved 500 rows (grant $grant)" test -n "$grant"
out=$(as_intern -c "COPY (SELECT id, phone FROM customers ORDER BY id) TO STDOUT" 2>&1)
pgg_is "the intern exported 500 rows" "$(grep -c '138\*\*\*\*' <<<"$out")" 500
pgg_ok "... and the 501st was refused" grep -q "export limit exceeded" <<<"$out"
pgg_is "the approval is used up" \
	"$(sql "SELECT used || '/' || rows || ' ' || live FROM pii_guard.export_approvals WHERE grant_id = $grant")" "500/500 false"
pgg_is "approved rows do not count toward the day" "$(sql "SELECT pii_guard.export_usage('intern_fay')")" 100
pgg_ok "the use of the approval is audited" test "$(sql \
	"SELECT count(*) FROM pii_guard.audit_exports WHERE session_role = 'intern_fay' AND detail LIKE '%export approval $grant'")" -ge 1
# (Text fields only: a query id, a transaction id or a MAC can hold eleven
# digits starting with 138 by chance.)
pgg_is "no plaintext phone in the audit log" "$(sql \
	"SELECT count(*) FROM pii_guard.audit_log a
	  WHERE (to_jsonb(a) - '{row_mac,query_id,xid,backend_pid,event_id,event_time}'::text[])::text
	        ~ '138[0-9]{8}'")" 0

# Named portals of the extended protocol, interleaved with another
# statement: the portal's count goes on across its Execute messages.
portals() { perl test/portals.pl "$(pgg_sock $name)" intern_gus postgres "$@"; }
out=$(portals "query:BEGIN" "parse:s1:SELECT id, phone FROM customers ORDER BY id" "bind:p1:s1" \
	"exec:p1:15" "parse:s2:SELECT 1" "bind:p2:s2" "exec:p2:0" "close:p2" "exec:p1:15" "exec:p1:15")
pgg_is "a named portal: 15 rows, another statement, then 5 more and the limit" \
	"$(tr '\n' ' ' <<<"$out")" "p1 15 suspended p2 1 done p1 5 54P01 "
out=$(portals "parse:s1:SELECT id, phone FROM customers ORDER BY id" "bind::s1" "exec::8" "exec::8" "exec::8")
pgg_is "the unnamed portal executed in pieces: 8, 8, then 4 and the limit" \
	"$(tr '\n' ' ' <<<"$out")" " 8 suspended  8 suspended  4 54P01 "
# A portal's reads are named by the statement that read, not by the one
# that closed the portal (its read event is written when it is closed).
start=$(sql "SELECT coalesce(max(event_id), 0) FROM pii_guard.audit_log")
portals "query:BEGIN" "parse:s3:SELECT id, phone FROM customers WHERE id <= 3" "bind:p3:s3" "exec:p3:2" \
	"query:ROLLBACK" >/dev/null
gus_read_since_start() {
	[ "$(sql "SELECT count(*) FROM pii_guard.audit_log WHERE event_id > $start AND kind = 'read' AND session_role = 'intern_gus'")" -ge 1 ]
}
pgg_ok "a portal closed by ROLLBACK: its read event is written" pgg_wait 10 gus_read_since_start
pgg_is "... named SELECT, with the 2 rows it read" \
	"$(sql "SELECT string_agg(operation || ' ' || rows, ',') FROM pii_guard.audit_log WHERE event_id > $start AND kind = 'read' AND session_role = 'intern_gus'")" "SELECT 2"

# What approvals used is recorded with the policy, so a restored copy does
# not bring a used-up approval back to life.
grant_use_recorded() {	# grant_use_recorded GRANT ROWS [DATABASE]: export_grant_use says so
	[ "$(sql "SELECT used FROM pii_guard.export_grant_use WHERE grant_id = $1" "${3:-postgres}")" = "$2" ]
}
pgg_ok "the audit worker recorded the approval's use in export_grant_use" \
	pgg_wait 10 grant_use_recorded "$grant" 500
pgg_ok "pg_dump succeeds" pg_dump -Fc -h "$(pgg_sock $name)" -p 5432 -U postgres -d postgres -f "$PGG_WORK/limits.dump"
sql "CREATE DATABASE restored" >/dev/null
# (In sections, the data without triggers: grants_guard refuses to insert
# grants as a superuser, who is a member of every role.)
restore() { pg_restore -h "$(pgg_sock $name)" -p 5432 -U postgres -d restored "$@" "$PGG_WORK/limits.dump"; }
pgg_ok "pg_restore into another database succeeds" \
	eval 'restore --section=pre-data && restore --section=data --disable-triggers && restore --section=post-data'
pgg_is "restored: the approval is used up" \
	"$(sql "SELECT used || '/' || rows || ' ' || live FROM pii_guard.export_approvals WHERE grant_id = $grant" restored)" "500/500 false"
out=$(as_user intern_gus -d restored -c "\\set VERBOSITY default" -c "SELECT array_length(array_agg(phone), 1) FROM customers WHERE id <= 30" 2>&1)
pgg_ok "restored: 30 rows, beyond the limit of 20, are refused" grep -q "per statement" <<<"$out"

# A reinstall starts the grant ids again: the new approval 1 is not the
# old approval 1.
pgg_new_db $name reinstall >/dev/null
pgg_psql $name -d reinstall <<'SQL' >/dev/null
CREATE TABLE customers (id int PRIMARY KEY, phone text);
INSERT INTO customers SELECT g, '139' || lpad(g::text, 8, '0') FROM generate_series(1, 100) g;
GRANT SELECT ON customers TO intern;
SELECT pii_guard.protect_column('customers', 'phone', 'sensitive', 'pii_guard.partial(text,integer,text,integer)', '{3,****,4}');
SELECT pii_guard.set_clearance('intern', 'public');
SELECT pii_guard.set_export_limits('intern', 20, NULL);
SQL
reinstall_approve() {
	as_user mgr_eve -d reinstall -tA \
		-c "SELECT pii_guard.approve_export('intern', 30, now() + interval '1 hour', 'before and after')"
}
first=$(reinstall_approve)
pgg_is "reinstall: 50 rows, 30 of them approved" \
	"$(as_user intern_gus -d reinstall -tAc "SELECT array_length(array_agg(phone), 1) FROM customers WHERE id <= 50")" 50
pgg_is "reinstall: the approval is used up" \
	"$(sql "SELECT pii_guard.export_grant_used($first)" reinstall)" 30
pgg_psql $name -d reinstall <<'SQL' >/dev/null
SELECT pii_guard.unprotect_table('customers');
DROP EXTENSION pii_guard;
CREATE EXTENSION pii_guard;
SELECT pii_guard.protect_column('customers', 'phone', 'sensitive', 'pii_guard.partial(text,integer,text,integer)', '{3,****,4}');
SELECT pii_guard.set_clearance('intern', 'public');
SELECT pii_guard.set_export_limits('intern', 20, NULL);
SQL
second=$(reinstall_approve)
pgg_is "reinstall: the new approval has the old one's id" "$second" "$first"
pgg_is "reinstall: ... but none of its use" "$(sql "SELECT pii_guard.export_grant_used($second)" reinstall)" 0
pgg_is "reinstall: 50 rows pass again" \
	"$(as_user intern_gus -d reinstall -tAc "SELECT array_length(array_agg(phone), 1) FROM customers WHERE id <= 50")" 50

# Upgrading from 0.1: approvals work before ALTER EXTENSION UPDATE (no
# export_grant_use yet), their use is recorded once it has run, and what
# 0.1's limits.state held is read back (24 buckets, and approval use keyed
# without the grant's created_at).
sql "CREATE DATABASE upgrade" >/dev/null
pgg_psql $name -d upgrade <<'SQL' >/dev/null
CREATE EXTENSION pii_guard VERSION '0.1';
CREATE TABLE customers (id int PRIMARY KEY, phone text);
INSERT INTO customers SELECT g, '136' || lpad(g::text, 8, '0') FROM generate_series(1, 100) g;
GRANT SELECT ON customers TO intern;
SELECT pii_guard.protect_column('customers', 'phone', 'sensitive', 'pii_guard.partial(text,integer,text,integer)', '{3,****,4}');
SELECT pii_guard.set_clearance('intern', 'public');
SELECT pii_guard.set_export_limits('intern', 20, NULL);
SQL
old_grant=$(as_user mgr_eve -d upgrade -tA \
	-c "SELECT pii_guard.approve_export('intern', 40, now() + interval '1 hour', 'across the upgrade')")
pgg_is "0.1 schema: 30 rows, 10 of them approved" \
	"$(as_user intern_gus -d upgrade -tAc "SELECT phone FROM customers WHERE id <= 30" | wc -l)" 30
sql "ALTER EXTENSION pii_guard UPDATE" upgrade >/dev/null
pgg_is "updated to $(sql "SELECT extversion FROM pg_extension WHERE extname = 'pii_guard'" upgrade)" \
	"$(sql "SELECT pii_guard.export_grant_used($old_grant)" upgrade)" 10
pgg_ok "... and the audit worker records its use" pgg_wait 10 grant_use_recorded "$old_grant" 10 upgrade
up_db=$(sql "SELECT oid FROM pg_database WHERE datname = 'upgrade'")
sql "CREATE ROLE old_probe LOGIN IN ROLE intern" >/dev/null
old_probe=$(sql "SELECT 'old_probe'::regrole::oid")
sql "DELETE FROM pii_guard.export_grant_use" upgrade >/dev/null
pgg_stop $name
hour=$(perl test/limits_state.pl hour)
pgg_as_server perl test/limits_state.pl v2 "$state_file" "$up_db" "$old_probe" "$((hour - 2)):6" "$old_grant:25"
pgg_start $name
pgg_is "0.1's state file: the day's rows are read back" \
	"$(sql "SELECT pii_guard.export_usage('old_probe')" upgrade)" 6
pgg_is "0.1's state file: so is the approval's use" \
	"$(sql "SELECT pii_guard.export_grant_used($old_grant)" upgrade)" 25
pgg_is "... which the next use goes on from: 35 rows, 15 approved" \
	"$(as_user intern_gus -d upgrade -tAc "SELECT array_length(array_agg(phone), 1) FROM customers WHERE id <= 35")" 35
pgg_is "... and the approval is used up" \
	"$(sql "SELECT used || '/' || rows || ' ' || live FROM pii_guard.export_approvals WHERE grant_id = $old_grant" upgrade)" "40/40 false"

# The window's edge, in the persisted state: rows of 24 hours ago (the
# oldest hour of the window) still count, rows of 25 hours ago do not.
# (Retried if the hour turns meanwhile.)
sql "CREATE ROLE clock_probe LOGIN IN ROLE intern" >/dev/null
dboid=$(sql "SELECT oid FROM pg_database WHERE datname = 'postgres'")
probe=$(sql "SELECT 'clock_probe'::regrole::oid")
for _ in 1 2 3; do
	pgg_stop $name
	hour=$(perl test/limits_state.pl hour)
	pgg_as_server perl test/limits_state.pl put "$state_file" "$dboid" "$probe" \
		"$((hour - 25)):1000" "$((hour - 24)):7" "$((hour - 1)):3"
	pgg_start $name
	edge=$(sql "SELECT pii_guard.export_usage('clock_probe')")
	[ "$(perl test/limits_state.pl hour)" = "$hour" ] && break
done
pgg_is "rows of the last 25 hours' buckets count, not older ones" "$edge" 10
pgg_is "the window's budget: 90 rows left of 100" \
	"$(as_user clock_probe -tAc "SELECT array_length(array_agg(phone), 1) FROM customers WHERE id <= 20" 2>&1)" 20
pgg_stop $name

# Full counter tables refuse (53400) rather than stop counting; day
# counters with nothing left in the window make room.
small=limits_small
pgg_new_cluster $small "pii_guard.max_export_approvals = 2" "pii_guard.max_export_counters = 2"
pgg_start $small
pgg_psql $small -d postgres <<'SQL' >/dev/null
CREATE EXTENSION pii_guard;
CREATE ROLE clerks NOLOGIN;
CREATE ROLE clerk_1 LOGIN IN ROLE clerks;
CREATE ROLE clerk_2 LOGIN IN ROLE clerks;
CREATE ROLE clerk_3 LOGIN IN ROLE clerks;
CREATE ROLE approver LOGIN IN ROLE pii_guard_approver;
CREATE TABLE t (id int PRIMARY KEY, phone pii_guard.encrypted_text);
INSERT INTO t SELECT g, '137' || lpad(g::text, 8, '0') FROM generate_series(1, 10) g;
GRANT SELECT ON t TO clerks;
SELECT pii_guard.protect_column('t', 'phone', 'sensitive', 'pii_guard.partial(text,integer,text,integer)', '{3,****,4}');
SELECT pii_guard.set_clearance('clerks', 'public');
SELECT pii_guard.set_export_limits('clerks', 2, 1000);
SET ROLE approver;
SELECT pii_guard.approve_export('clerks', 1, now() + interval '1 hour', 'one row') FROM generate_series(1, 3);
SQL
small_as() { psql -X -q -h "$(pgg_sock $small)" -p 5432 -U "$1" -d postgres -c "\\set VERBOSITY verbose" -c "$2" 2>&1; }
pgg_ok "a third approval in use does not fit: 53400" \
	grep -q "53400: too many pii_guard export approvals in use" <<<"$(small_as clerk_1 "SELECT array_length(array_agg(phone), 1) FROM t WHERE id <= 5")"
pgg_ok "two roles have day counters" grep -q "^ *2$" <<<"$(small_as clerk_2 "SELECT array_length(array_agg(phone), 1) FROM t WHERE id <= 2")"
pgg_ok "a third role's does not fit: 53400" \
	grep -q "53400: too many roles with pii_guard export counters" <<<"$(small_as clerk_3 "SELECT array_length(array_agg(phone), 1) FROM t WHERE id <= 2")"
# Age both counters out of the window (as if 30 hours had passed).
small_state=$(pgg_data $small)/pg_pii_guard/limits.state
small_db=$(pgg_psql $small -d postgres -tAc "SELECT oid FROM pg_database WHERE datname = 'postgres'")
roles_old=$(pgg_psql $small -d postgres -tAc "SELECT oid FROM pg_roles WHERE rolname IN ('clerk_1', 'clerk_2')")
pgg_stop $small
hour=$(perl test/limits_state.pl hour)
for oid in $roles_old; do
	pgg_as_server perl test/limits_state.pl put "$small_state" "$small_db" "$oid" "$((hour - 30)):1"
done
pgg_start $small
pgg_ok "once the others' rows left the window, the third role's counter fits" \
	grep -q "^ *2$" <<<"$(small_as clerk_3 "SELECT array_length(array_agg(phone), 1) FROM t WHERE id <= 2")"
pgg_stop $small
