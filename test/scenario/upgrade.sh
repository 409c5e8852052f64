# test/scenario/upgrade.sh -- ALTER EXTENSION pii_guard UPDATE from 0.1 to
# the current version (pii_guard.control's default_version) on a database in
# use: the seed scenario of the role suites, a table of 3,000 protected
# customers, writes, an unmask approval and audit events; and from 0.2, the
# previous release, on the seed scenario.
#
# Proves:
#  - after the update (and refresh_views(), as the upgrade notes ask), every
#    value decrypts to what it did, and each of the seed's people sees
#    exactly what they saw under 0.1;
#  - verify_audit() is clean, and events written after the update extend the
#    same chain and verify too;
#  - every pgTAP role suite passes on the upgraded database;
#  - the upgraded extension (from 0.1 and from 0.2) has the same objects as
#    a fresh install: members, function definitions and settings, columns,
#    constraints, indexes, triggers, policies, views and every ACL.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

ug=upgrade_full
ug_latest=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$PGG_REPO/pii_guard.control")
ug_files=$PGG_WORK/upgrade_files
mkdir -p "$ug_files"
pgg_new_cluster $ug
pgg_start $ug
ug_sql() { pgg_psql $ug -d "${2:-crm}" -tAc "$1"; }
ug_as() { local who=$1; shift; psql -X -q -tA -h "$(pgg_sock $ug)" -p 5432 -U "$who" -d crm "$@" 2>&1; }
ug_settle() {	# the worker has written and sealed everything queued
	pgg_wait 15 pgg_audit_settled $ug crm || true
}

pgg_psql $ug -d postgres -c "CREATE DATABASE crm" -c "CREATE DATABASE fresh" \
	-c "CREATE DATABASE from02" >/dev/null
pgg_psql $ug -d crm -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION pii_guard VERSION '0.1'" >/dev/null
pgg_is "installed as 0.1" "$(ug_sql "SELECT extversion FROM pg_extension WHERE extname = 'pii_guard'")" "0.1"
pgg_ok "the seed scenario loads under 0.1" pgg_psql $ug -d crm -q -o /dev/null -f "$PGG_REPO/test/fixtures/crm.sql"
pgg_psql $ug -d crm <<'SQL' >/dev/null
CREATE TABLE upgrade_probe (id int PRIMARY KEY, phone pii_guard.encrypted_text,
                            national_id pii_guard.encrypted_text, city text);
INSERT INTO upgrade_probe
SELECT g, '139' || lpad(g::text, 8, '0'), '1101011990' || lpad(g::text, 8, '0'), 'city' || g % 17
  FROM generate_series(1, 3000) g;
GRANT SELECT ON upgrade_probe TO marketing, sales, support, manager, intern;
GRANT UPDATE (phone) ON upgrade_probe TO support;
SELECT pii_guard.protect_column('upgrade_probe', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('upgrade_probe', 'national_id', 'core', 'pii_guard.mask_cn_id(text)');
SET ROLE mgr_eve;
SELECT pii_guard.approve('support', 'upgrade_probe', now() + interval '2 hours',
                         'upgrade test: callbacks', '{phone}', '{1,2,3}');
RESET ROLE;
SQL
ug_as support_dan -c "UPDATE upgrade_probe SET phone = '13700000000' WHERE id = 5" >/dev/null
ug_as intern_fay -c "SELECT count(phone) FROM upgrade_probe" >/dev/null

# What each person sees, and what every value decrypts to.
ug_people="mkt_amy sales_bob support_dan mgr_eve"
ug_seen() {
	for who in $ug_people; do
		printf '%s %s %s\n' "$who" \
			"$(ug_as "$who" -c "SELECT id, name, phone, national_id, email, address, channel, campaign, service_tier, sales_owner FROM customers ORDER BY id" | md5sum | cut -c1-32)" \
			"$(ug_as "$who" -c "SELECT * FROM upgrade_probe ORDER BY id" | md5sum | cut -c1-32)"
	done
}
ug_plain() {
	ug_sql "SELECT md5(string_agg(concat_ws('|', id, pii_guard.decrypt(phone), pii_guard.decrypt(national_id)), ',' ORDER BY id))
	          FROM public_pii.upgrade_probe"
	ug_sql "SELECT md5(string_agg(concat_ws('|', id, pii_guard.decrypt(phone), pii_guard.decrypt(national_id)), ',' ORDER BY id))
	          FROM public_pii.customers"
}
ug_seen_before=$(ug_seen)
ug_plain_before=$(ug_plain)
ug_settle
pgg_ok "0.1: the audit has events (not vacuous)" \
	test "$(ug_sql "SELECT count(*) FROM pii_guard.audit_log")" -gt 3
pgg_is "0.1: the audit verifies" "$(ug_sql "SELECT count(*) FROM pii_guard.verify_audit()")" 0
ug_events_before=$(ug_sql "SELECT count(*) FROM pii_guard.audit_log")

# (beside a transaction that reads the grants and then writes the audit
# log, as the audit worker's cycle does: see the update from 0.2 below; here
# the 0.1 -> 0.2 script has taken the log before the 0.2 -> 0.3 script locks
# everything, so that transaction is the one the deadlock detector may
# cancel, never the update)
ug_worker_like() {	# ug_worker_like DATABASE OUTPUT: in the background
	ug_as postgres -d "$1" -v ON_ERROR_STOP=1 -c "BEGIN" -c "SELECT count(*) FROM pii_guard.grants" \
		-c "SELECT pg_sleep(1.5) AS worker_like" -c "LOCK TABLE pii_guard.audit_log IN ROW EXCLUSIVE MODE" \
		-c "COMMIT" -c "SELECT 'committed'" >"$2" 2>&1 &
	ug_worker_like_pid=$!
	ug_sleeping() { [ "$(ug_sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%AS worker_like'
	                                AND wait_event = 'PgSleep'" "$1")" = 1 ]; }
	pgg_wait 10 ug_sleeping "$1"
}
ug_worker_like crm "$ug_files/worker_like_01.out"
pgg_ok "ALTER EXTENSION pii_guard UPDATE succeeds" ug_sql "ALTER EXTENSION pii_guard UPDATE"
wait $ug_worker_like_pid
pgg_is "now at $ug_latest" "$(ug_sql "SELECT extversion FROM pg_extension WHERE extname = 'pii_guard'")" "$ug_latest"
pgg_is "refresh_views() rebuilds both masking views" "$(ug_sql "SELECT pii_guard.refresh_views()")" 2
pgg_is "every value decrypts to what it did" "$(ug_plain)" "$ug_plain_before"
ug_seen_after=$(ug_seen)
sed 's/^/  # /' <<<"$ug_seen_after"
pgg_is "each person sees exactly what they saw" "$ug_seen_after" "$ug_seen_before"
pgg_ok "... (they do not all see the same: not vacuous)" \
	test "$(cut -d' ' -f2,3 <<<"$ug_seen_after" | sort -u | wc -l)" -ge 3
ug_settle
pgg_is "the audit written under 0.1 verifies after the update" \
	"$(ug_sql "SELECT count(*) FROM pii_guard.verify_audit()")" 0
ug_as support_dan -c "UPDATE upgrade_probe SET phone = '13700000001' WHERE id = 6" >/dev/null
ug_as intern_fay -c "SELECT count(phone) FROM upgrade_probe" >/dev/null
ug_settle
pgg_ok "new events are written after the update" \
	test "$(ug_sql "SELECT count(*) FROM pii_guard.audit_log")" -gt "$ug_events_before"
pgg_is "... and the chain through them verifies" "$(ug_sql "SELECT count(*) FROM pii_guard.verify_audit()")" 0

# --- the role suites, on the upgraded database -----------------------------------
for suite in "$PGG_REPO"/test/*.sql; do
	if pg_prove --host "$(pgg_sock $ug)" --port 5432 --username postgres --dbname crm \
		"$suite" >"$ug_files/prove.log" 2>&1; then
		echo "  ok - upgraded: $(basename "$suite" .sql) passes"
	else
		echo "  not ok - upgraded: $(basename "$suite" .sql) passes"
		sed 's/^/    # /' "$ug_files/prove.log" | grep -v '^    # ok' | head -20
		PGG_FAILS=$((PGG_FAILS + 1))
	fi
done

# --- the same objects as a fresh install ----------------------------------------------
pgg_psql $ug -d fresh -c "CREATE EXTENSION pii_guard" >/dev/null
ug_catalog() {
	ug_sql "
WITH m AS (SELECT classid, objid FROM pg_depend
            WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
              AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pii_guard'))
SELECT 'member ' || pg_describe_object(classid, objid, 0) FROM m
UNION ALL
SELECT 'function ' || p.oid::regprocedure || ' ' || CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid) ELSE p.prokind::text END
       || ' acl=' || coalesce(p.proacl::text, '-') || ' config=' || coalesce(p.proconfig::text, '-')
       || ' leakproof=' || p.proleakproof || ' volatile=' || p.provolatile::text || ' parallel=' || p.proparallel::text
       || ' secdef=' || p.prosecdef || ' strict=' || p.proisstrict || ' cost=' || p.procost
  FROM m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
UNION ALL
SELECT 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, '-')
       || ' options=' || coalesce(c.reloptions::text, '-') || ' rls=' || c.relrowsecurity || c.relforcerowsecurity
       || ' owner=' || pg_get_userbyid(c.relowner)
       || CASE WHEN c.relkind::text = 'v' THEN ' ' || pg_get_viewdef(c.oid) ELSE '' END
  FROM m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'column ' || c.oid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-')
       || ' acl=' || coalesce(a.attacl::text, '-') || ' generated=' || a.attgenerated::text || ' identity=' || a.attidentity::text
  FROM m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
UNION ALL
SELECT 'constraint ' || con.conrelid::regclass || ' ' || pg_get_constraintdef(con.oid)
  FROM m JOIN pg_constraint con ON m.classid = 'pg_class'::regclass AND con.conrelid = m.objid
UNION ALL
SELECT 'index ' || regexp_replace(pg_get_indexdef(i.indexrelid), 'INDEX \S+ ON', 'INDEX ON')
  FROM m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
  FROM m JOIN pg_trigger t ON m.classid = 'pg_class'::regclass AND t.tgrelid = m.objid AND NOT t.tgisinternal
UNION ALL
SELECT 'policy ' || pol.polrelid::regclass || ' ' || pol.polname || ' ' || pol.polcmd::text || ' ' || pol.polroles::regrole[]::text
       || ' ' || coalesce(pg_get_expr(pol.polqual, pol.polrelid), '-') || ' ' || coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '-')
  FROM m JOIN pg_policy pol ON m.classid = 'pg_class'::regclass AND pol.polrelid = m.objid
UNION ALL
SELECT 'type ' || t.oid::regtype || ' ' || t.typtype::text || ' acl=' || coalesce(t.typacl::text, '-')
       || ' in=' || t.typinput::text || ' out=' || t.typoutput::text || ' recv=' || t.typreceive::text || ' send=' || t.typsend::text
       || ' storage=' || t.typstorage::text || ' align=' || t.typalign::text || ' len=' || t.typlen
  FROM m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
UNION ALL
SELECT 'schema ' || n.nspname || ' acl=' || coalesce(n.nspacl::text, '-')
  FROM pg_namespace n WHERE n.nspname = 'pii_guard'
UNION ALL
SELECT 'event trigger ' || e.evtname || ' ' || e.evtevent || ' ' || e.evtfoid::regproc || ' ' || e.evtenabled::text || ' ' || coalesce(e.evttags::text, '-')
  FROM m JOIN pg_event_trigger e ON m.classid = 'pg_event_trigger'::regclass AND e.oid = m.objid
UNION ALL
SELECT 'default acl ' || pg_get_userbyid(d.defaclrole) || ' ' || d.defaclobjtype::text || ' ' || d.defaclacl::text
  FROM pg_default_acl d WHERE d.defaclnamespace = 'pii_guard'::regnamespace
UNION ALL
SELECT 'config table ' || unnest(extconfig::regclass[])::text FROM pg_extension WHERE extname = 'pii_guard'
ORDER BY 1" "$1"
}
# The previous release, 0.2, with the seed scenario on it, updated too.
pgg_psql $ug -d from02 -c "CREATE EXTENSION pii_guard VERSION '0.2'" >/dev/null
# (its roles exist already: they are the cluster's)
sed '/^CREATE ROLE /d' "$PGG_REPO/test/fixtures/crm.sql" >"$ug_files/crm_tables.sql"
pgg_ok "the seed scenario loads under 0.2" pgg_psql $ug -d from02 -q -o /dev/null -f "$ug_files/crm_tables.sql"
# An application's view that calls column_access(oid, ...), whose role
# argument becomes a regrole: the update says so, naming the view.
ug_sql "CREATE VIEW ca_caller AS SELECT pii_guard.column_access(r.oid, 'pii_guard.profiles', 'role') FROM pg_roles r WHERE r.rolname = 'postgres'" from02
ug_sql "ALTER EXTENSION pii_guard UPDATE" from02 >"$ug_files/ca_caller.out" 2>&1
pgg_ok "the update refuses while a view calls column_access(oid, ...), and names it" \
	grep -q 'ca_caller depends on function column_access' "$ug_files/ca_caller.out"
ug_sql "DROP VIEW ca_caller" from02
# While it runs, a transaction reads the grants and then writes the audit
# log, as the audit worker's cycle does (grant expiries recorded): the
# update must not deadlock with it (it did: the script took the log early
# and the grants late, so it waited for the worker while the worker waited
# for it, and the deadlock detector cancelled the update).  Both commit.
ug_worker_like from02 "$ug_files/worker_like_02.out"
pgg_ok "ALTER EXTENSION pii_guard UPDATE from 0.2 succeeds" ug_sql "ALTER EXTENSION pii_guard UPDATE" from02
wait $ug_worker_like_pid
pgg_ok "... beside a transaction that reads the grants, then writes the audit log" \
	grep -q '^committed' "$ug_files/worker_like_02.out"
pgg_is "... now at $ug_latest" \
	"$(ug_sql "SELECT extversion FROM pg_extension WHERE extname = 'pii_guard'" from02)" "$ug_latest"
ug_catalog fresh >"$ug_files/fresh.txt"
for ug_from in crm:0.1 from02:0.2; do
	ug_catalog "${ug_from%%:*}" >"$ug_files/upgraded.txt"
	if [ "$(wc -l <"$ug_files/fresh.txt")" -gt 100 ] &&
		diff -u "$ug_files/fresh.txt" "$ug_files/upgraded.txt" >"$ug_files/catalog.diff"; then
		echo "  ok - an upgraded ${ug_from#*:} has the same extension objects as a fresh $ug_latest ($(wc -l <"$ug_files/fresh.txt") lines)"
	else
		echo "  not ok - an upgraded ${ug_from#*:} has the same extension objects as a fresh $ug_latest"
		sed 's/^/    # /' "$ug_files/catalog.diff" | head -60
		PGG_FAILS=$((PGG_FAILS + 1))
	fi
done
pgg_stop $ug
