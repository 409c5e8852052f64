# test/scenario/audit_alerts.sh -- thresholds a compliance officer sets per
# profile (pii_guard.set_alerts) raise alerts: refusals per minute,
# protected rows per hour, reading outside working hours, a dormant role
# reading again.  Each alert is an audit event (kind 'alert', in
# pii_guard.alerts), a NOTIFY pii_guard_alert with its event id, and a run
# of pii_guard.alert_command; an alert of a rule is raised once per role
# in its window, however long the role goes on.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

name=alerts
pgg_new_cluster $name
pgg_start $name
al_psql() { psql -X -q -h "$(pgg_sock $name)" -p 5432 -U postgres -d postgres "$@"; }
as_clerk() { psql -X -q -h "$(pgg_sock $name)" -p 5432 -U al_clerk -d postgres "$@"; }
alerts_file="$(pgg_data $name)/alerts.txt"	# (where the server may write)
al_psql -v ON_ERROR_STOP=1 <<SQL >/dev/null
CREATE EXTENSION pii_guard;
CREATE ROLE al_staff;
CREATE ROLE al_clerk LOGIN IN ROLE al_staff;
CREATE TABLE clients (id int PRIMARY KEY, phone pii_guard.encrypted_text);
INSERT INTO clients SELECT g, '1380000' || lpad(g::text, 4, '0') FROM generate_series(1, 20) g;
GRANT SELECT ON clients TO al_staff;
SELECT pii_guard.protect_table('clients');
SELECT pii_guard.protect_column('clients', 'phone', 'sensitive');
SELECT pii_guard.set_clearance('al_staff', 'sensitive', 'clerks');
-- Working hours that do not hold now: 2 to 3 hours from now.
SELECT pii_guard.set_alerts('al_staff', denials_per_minute => 3, rows_per_hour => 5,
                            work_from => (localtime + interval '2 hours')::time(0),
                            work_to => (localtime + interval '3 hours')::time(0),
                            dormant_after => interval '1 second');
ALTER SYSTEM SET pii_guard.alert_command = 'echo "%i %a" >> $alerts_file';
SELECT pg_reload_conf();
SQL
pgg_ok "set_alerts is an admin event" test "$(al_psql -tAc \
	"SELECT count(*) FROM pii_guard.audit_log WHERE kind = 'admin' AND operation = 'set_alerts'")" = 1
out=$(al_psql -c "SELECT pii_guard.set_alerts('al_staff', work_from => '08:00')" 2>&1)
pgg_ok "working hours need both ends (22023)" grep -q "working hours need both ends" <<<"$out"

# A session listens for alerts while the clerk works.
listen_out="$PGG_WORK/alerts.listen"
( echo "LISTEN pii_guard_alert;"; for _ in $(seq 40); do echo "SELECT pg_sleep(0.25);"; done ) |
	PGAPPNAME=alert_listener al_psql >"$listen_out" 2>&1 &
listener=$!
listening() {	# the listener is past its LISTEN, in its pg_sleep() statements
	[ "$(al_psql -tAc "SELECT count(*) FROM pg_stat_activity
	                    WHERE application_name = 'alert_listener' AND query = 'SELECT pg_sleep(0.25);'")" = 1 ]
}
pgg_wait 5 listening

# One read (the first the clerk ever made), a pause longer than the
# dormant period, then 20 rows (more than 5 an hour, outside working
# hours, after a dormant second), and 6 refusals (more than 3 a minute).
as_clerk -c "SELECT phone FROM clients WHERE id = 1" >/dev/null
sleep 2
as_clerk -c "SELECT phone FROM clients" >/dev/null
for i in $(seq 6); do echo "SELECT role FROM pii_guard.profiles;"; done | as_clerk >/dev/null 2>&1
alerts_at_least() { [ "$(al_psql -tAc "SELECT count(*) FROM pii_guard.alerts")" -ge "$1" ]; }
wait_alerts() {	# wait_alerts N: until N alerts are in, or 10 s
	pgg_wait 10 alerts_at_least "$1"
}
pgg_ok "four alerts are raised" wait_alerts 4
pgg_is "one per rule, for the clerk" \
	"$(al_psql -tAc "SELECT string_agg(rule || ' ' || acting_role, ', ' ORDER BY rule) FROM pii_guard.alerts")" \
	"denials_per_minute al_clerk, dormant_role_reads al_clerk, outside_working_hours al_clerk, rows_per_hour al_clerk"
pgg_ok "... each saying what crossed which threshold" test "$(al_psql -tAc \
	"SELECT count(*) FROM pii_guard.alerts WHERE detail ~ '(threshold|outside working hours)'")" = 4

# The same again within the windows: no new alert.
for i in $(seq 6); do echo "SELECT role FROM pii_guard.profiles;"; done | as_clerk >/dev/null 2>&1
as_clerk -c "SELECT phone FROM clients" >/dev/null
sleep 1.5
pgg_is "going on within the windows raises no second alert" \
	"$(al_psql -tAc "SELECT count(*) FROM pii_guard.alerts")" 4

wait "$listener"
ids=$(al_psql -tAc "SELECT string_agg(event_id::text, ' ' ORDER BY event_id) FROM pii_guard.alerts")
got=$(grep -o 'notification "pii_guard_alert" with payload "[0-9]*"' "$listen_out" | grep -o '[0-9]*"$' |
	tr -d '"' | sort -n | tr '\n' ' ' | sed 's/ $//')
pgg_is "a listener got NOTIFY pii_guard_alert with each alert's event id" "$got" "$ids"
alert_lines_at_least() { [ "$(wc -l <"$alerts_file" 2>/dev/null || echo 0)" -ge "$1" ]; }
pgg_wait 5 alert_lines_at_least 4
pgg_is "pii_guard.alert_command ran for each, with its id and rule" \
	"$(sort -n "$alerts_file" | tr '\n' ',')" \
	"$(al_psql -tAc "SELECT string_agg(event_id || ' ' || rule, ',' ORDER BY event_id) || ',' FROM pii_guard.alerts")"
pgg_is "the auditor reads the alerts" \
	"$(al_psql -tAc "SELECT has_table_privilege('pii_guard_auditor', 'pii_guard.alerts', 'SELECT')")" t
pgg_is "the chain verifies" "$(al_psql -tAc "SELECT count(*) FROM pii_guard.verify_audit()")" 0
pgg_stop $name
