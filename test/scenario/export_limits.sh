# Scenario: export limits across sessions and a restart, and the seed
# story: an intern's attempt to export all customers is refused and logged;
# a manager approves 500 rows for 24 hours; the intern exports 500 and the
# 501st is refused.
name=limits
pgg_new_cluster $name
pgg_start $name
pgg_psql $name -d postgres <<'SQL' >/dev/null
CREATE EXTENSION pii_guard;
CREATE ROLE intern NOLOGIN;
CREATE ROLE intern_fay LOGIN IN ROLE intern;
CREATE ROLE mgr_eve LOGIN IN ROLE pii_guard_approver;
CREATE TABLE customers (id int PRIMARY KEY, phone pii_guard.encrypted_text, city text);
INSERT INTO customers SELECT g, '138' || lpad(g::text, 8, '0'), 'c' || g % 7
  FROM generate_series(1, 600) g;
GRANT SELECT ON customers TO intern;
SELECT pii_guard.protect_column('customers', 'phone', 'sensitive', 'pii_guard.partial(text,integer,text,integer)', '{3,****,4}');
SELECT pii_guard.set_clearance('intern', 'public');
SELECT pii_guard.set_export_limits('intern', 20, 100);
SQL
as_intern() {
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock $name)" -p 5432 -U intern_fay -d postgres "$@"
}

# The bulk export is refused, with its own SQLSTATE, and audited.
out=$(as_intern -c "\\set VERBOSITY verbose" -c "COPY (SELECT id, phone FROM customers) TO STDOUT" 2>&1)
pgg_ok "bulk export refused with 54P01" grep -q "ERROR:  54P01: pii_guard export limit exceeded" <<<"$out"
pgg_is "the client received exactly 20 rows before the error" "$(grep -c '138\*\*\*\*' <<<"$out")" 20
for _ in $(seq 50); do
	denied=$(pgg_psql $name -d postgres -tAc "SELECT count(*) FROM pii_guard.audit_denials WHERE session_role = 'intern_fay'")
	[ "$denied" -ge 1 ] && break
	sleep 0.1
done
pgg_ok "the refusal is in the audit log" test "$denied" -ge 1

# The day's budget holds across sessions and across a restart.
for i in 1 2 3; do as_intern -tAc "SELECT count(phone) FROM customers WHERE id BETWEEN $((i * 20 + 1)) AND $((i * 20 + 20))" >/dev/null; done
used=$(pgg_psql $name -d postgres -tAc "SELECT pii_guard.export_usage('intern_fay')")
pgg_is "rows used today, over four sessions" "$used" 80
sleep 0.5   # the audit worker persists the counters every cycle
pgg_restart $name
pgg_is "after a restart the day's usage is still there" \
	"$(pgg_psql $name -d postgres -tAc "SELECT pii_guard.export_usage('intern_fay')")" 80
pgg_is "the rest of the budget is all there is: 20 rows pass" \
	"$(as_intern -tAc "SELECT count(phone) FROM customers WHERE id BETWEEN 101 AND 120" 2>&1)" 20
pgg_ok "the 101st row of the day is refused" \
	grep -q "per 24 hours" <<<"$(as_intern -c "\\set VERBOSITY default" -c "SELECT phone FROM customers WHERE id = 200" 2>&1)"

# The intern cannot step into a role it is not a member of to get a fresh
# budget, nor change a pii_guard setting.
pgg_ok "SET ROLE to a role it is not a member of is refused" \
	grep -q "permission denied to set role" <<<"$(as_intern -c "SET ROLE mgr_eve" 2>&1)"
pgg_ok "SET of a pii_guard setting is refused" \
	grep -q "permission denied to set parameter" <<<"$(as_intern -c "SET pii_guard.audit_reads = off" 2>&1)"

# An approval for 500 rows for 24 hours: 500 pass, the 501st does not.
grant=$(psql -X -q -tA -h "$(pgg_sock $name)" -p 5432 -U mgr_eve -d postgres \
	-c "SELECT pii_guard.approve_export('intern', 500, now() + interval '24 hours', 'mailing to all customers')")
pgg_ok "the manager approved 500 rows (grant $grant)" test -n "$grant"
out=$(as_intern -c "COPY (SELECT id, phone FROM customers ORDER BY id) TO STDOUT" 2>&1)
pgg_is "the intern exported 500 rows" "$(grep -c '138\*\*\*\*' <<<"$out")" 500
pgg_ok "... and the 501st was refused" grep -q "export limit exceeded" <<<"$out"
pgg_is "the approval is used up" \
	"$(pgg_psql $name -d postgres -tAc "SELECT used || '/' || rows || ' ' || live FROM pii_guard.export_approvals WHERE grant_id = $grant")" "500/500 false"
pgg_ok "the use of the approval is audited" test "$(pgg_psql $name -d postgres -tAc \
	"SELECT count(*) FROM pii_guard.audit_exports WHERE session_role = 'intern_fay' AND detail LIKE '%export approval $grant%'")" -ge 1
pgg_is "no plaintext phone in the audit log" "$(pgg_psql $name -d postgres -tAc \
	"SELECT count(*) FROM pii_guard.audit_log a WHERE a::text ~ '138[0-9]{8}'")" 0
pgg_stop $name
