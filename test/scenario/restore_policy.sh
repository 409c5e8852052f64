# test/scenario/restore_policy.sh -- a whole database protected by
# pii_guard (masking views, policy, grants, export approvals, keys, audit)
# survives pg_dump and a plain pg_restore into a fresh cluster with the same
# master key, and behaves there exactly as before: every pgTAP suite of
# test/*.sql passes against the restored seed scenario.
#
# Proves:
#  - pg_restore (no --disable-triggers, no sections) of the seed scenario,
#    with an unmask grant, a revoked grant and a used export approval in
#    it, reports no error;
#  - the restored policy tables, grants (approvers, times, revocations),
#    export approval use, data keys and masking views equal the source's;
#  - the restored audit trail verifies, and restoring wrote no audit event;
#  - every pgTAP role suite passes on the restored database.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

rp_files=$PGG_WORK/restore_policy_files
mkdir -p "$rp_files"
chmod 777 "$rp_files"
rp_sql() { pgg_psql "$1" -d crm -tAc "$2"; }

# --- the source: the seed scenario, with some history ---------------------------
pgg_new_cluster rp_src
pgg_start rp_src
pgg_psql rp_src -d postgres -c "CREATE DATABASE crm" >/dev/null
pgg_psql rp_src -d crm -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION pii_guard" >/dev/null
pgg_psql rp_src -d crm -f "$PGG_REPO/test/fixtures/crm.sql" >/dev/null
# History on a table of its own (the suites assert the seed's customers):
# a live and a revoked unmask grant, and an export approval in use.
pgg_psql rp_src -d crm <<'SQL' >/dev/null
CREATE TABLE restore_probe (id int PRIMARY KEY, phone pii_guard.encrypted_text);
INSERT INTO restore_probe SELECT g, '1370000' || lpad(g::text, 4, '0') FROM generate_series(1, 30) g;
GRANT SELECT ON restore_probe TO intern, support;
SELECT pii_guard.protect_column('restore_probe', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
CREATE ROLE rp_approver LOGIN IN ROLE pii_guard_approver;
SET ROLE rp_approver;
SELECT pii_guard.approve('intern', 'restore_probe', now() + interval '2 hours',
                         'restore test: callback', '{phone}', '{1}');
SELECT pii_guard.revoke_grant(pii_guard.approve('intern', 'restore_probe', now() + interval '1 hour',
                                                'restore test: revoked at once'));
SELECT pii_guard.approve_export('intern', 40, now() + interval '3 hours', 'restore test: mailing');
RESET ROLE;
SQL
# The intern uses some of the approval (her own 20, then 10 approved ones).
psql -X -q -h "$(pgg_sock rp_src)" -p 5432 -U intern_fay -d crm \
	-c "SELECT phone FROM restore_probe" >/dev/null
# Let the audit worker write and seal, and persist the approval's use.
approval_use_persisted() { [ "$(rp_sql rp_src "SELECT EXISTS (SELECT 1 FROM pii_guard.export_grant_use)")" = t ]; }
src_settled() { pgg_audit_settled rp_src crm && approval_use_persisted; }
pgg_wait 10 src_settled

# What must come back the same.
rp_state() {
	rp_sql "$1" "SELECT 'rule', base::text, column_name, level::text, mask_function, mask_args::text FROM pii_guard.column_rules
	             UNION ALL SELECT 'profile', role::text, clearance::text, max_rows_per_statement::text, max_rows_per_day::text, description FROM pii_guard.profiles
	             UNION ALL SELECT 'override', role::text, base::text, column_name, access, NULL FROM pii_guard.profile_overrides
	             UNION ALL SELECT 'grant', grant_id::text, kind || ' ' || role || ' ' || coalesce(base::text, '-'),
	                              approver::text, valid_from || ' ' || valid_until || ' ' || created_at, coalesce(revoked_at::text, 'live')
	                         FROM pii_guard.grants
	             UNION ALL SELECT 'approval', grant_id::text, rows::text, used::text, NULL, NULL FROM pii_guard.export_approvals
	             UNION ALL SELECT 'key', key_id::text, purpose, state, master_key_fingerprint, NULL FROM pii_guard.key_status
	             UNION ALL SELECT 'view', c.oid::regclass::text, pg_get_userbyid(c.relowner), NULL, NULL, NULL
	                         FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace
	             ORDER BY 1, 2, 3"
}
rp_before=$(rp_state rp_src)
rp_events=$(rp_sql rp_src "SELECT count(*) FROM pii_guard.audit_log")
pgg_ok "source: it has grants, an approval in use and audit events (not vacuous)" \
	grep -q '^approval|[0-9]*|40|10' <<<"$rp_before"

pgg_env rp_src
pgg_ok "pg_dump -Fc succeeds" pg_dump -Fc -d crm -f "$rp_files/crm.dump"
pgg_ok "pg_dumpall --roles-only succeeds" pg_dumpall --roles-only -f "$rp_files/roles.sql"

# --- the target: a fresh cluster with the same master key --------------------------
pgg_new_cluster rp_dst
pgg_start rp_dst
# (The roles script re-creates the bootstrap superuser too: that one error
# is expected.)
pgg_as_server psql -X -q -h "$(pgg_sock rp_dst)" -p 5432 -U postgres -d postgres \
	-f "$rp_files/roles.sql" >/dev/null 2>"$rp_files/roles.err"
pgg_is "roles restored (only the existing bootstrap superuser complains)" \
	"$(grep -c 'ERROR' "$rp_files/roles.err")" 1
pgg_psql rp_dst -d postgres -c "CREATE DATABASE crm" >/dev/null
pgg_env rp_dst
pg_restore -d crm "$rp_files/crm.dump" >"$rp_files/restore.log" 2>&1
rp_rc=$?
sed 's/^/  # /' "$rp_files/restore.log" | head -20
pgg_is "pg_restore reports no error" "$rp_rc" 0
pgg_is "policy, grants, approval use, keys and views are the same" "$(rp_state rp_dst)" "$rp_before"
pgg_is "restoring wrote no audit event" "$(rp_sql rp_dst "SELECT count(*) FROM pii_guard.audit_log")" "$rp_events"
pgg_wait 10 pgg_all_sealed rp_dst crm
pgg_is "the restored audit trail verifies" "$(rp_sql rp_dst "SELECT count(*) FROM pii_guard.verify_audit()")" 0

# --- the role suites, on the restored database ----------------------------------------
for suite in "$PGG_REPO"/test/*.sql; do
	if pg_prove --host "$(pgg_sock rp_dst)" --port 5432 --username postgres --dbname crm \
		"$suite" >"$rp_files/prove.log" 2>&1; then
		echo "  ok - restored: $(basename "$suite" .sql) passes"
	else
		echo "  not ok - restored: $(basename "$suite" .sql) passes"
		sed 's/^/    # /' "$rp_files/prove.log" | grep -v '^    # ok' | head -20
		PGG_FAILS=$((PGG_FAILS + 1))
	fi
done
pgg_stop rp_dst
pgg_stop rp_src
