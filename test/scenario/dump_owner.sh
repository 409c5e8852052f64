# test/scenario/dump_owner.sh -- the owner of the protected tables, who is
# not a superuser, backs them up with pg_dump as README.md says ("Recipe:
# backups by the tables' owner"), and the backup restores with its data and
# its protection.
#
# On the examples' database (examples/roles.sql, schema.sql, 400 customers
# of data.sql, policy.sql: crm_dba owns the tables and is a member of
# pii_guard_admin), with an approval issued and audit events written.
#
# Proves:
#  - the owner cannot read the data keys or the audit trail (42501): the
#    dump gives it no way around that;
#  - pg_dump as the owner, with the options README.md gives a member of
#    pii_guard_admin, succeeds; the dump holds the policy and the
#    approval, no data key, no audit event, and no plaintext of an
#    encrypted column; an owner who is in pii_guard_auditor too dumps the
#    audit trail and its sequence as well;
#  - restored by a superuser into a fresh database, with the data keys from
#    a superuser's dump of pii_guard.data_keys: no error; every row; every
#    encrypted value decrypts the same; the masking views are in place and
#    every person sees what they saw in the source (masks for the intern,
#    clear for support, own rows for sales, hidden for marketing); the base
#    table refuses a governed role; the policy is the same; a new approval
#    gets the next id (the sequence came with the approvals); the new
#    database's audit trail verifies;
#  - pg_dump -t customers holds the masking view only (no data);
#    -t customers -t public_pii.customers -t public_pii.customers__pii_write
#    plus pii_guard.policy_script('customers') restore the table into a
#    fresh database with its data and protection (the same checks), and a
#    write through its masking view works there;
#  - an owner outside pii_guard_admin cannot read the policy; its pg_dump
#    with --exclude-table-data='pii_guard.*' succeeds and holds nothing of
#    pii_guard's tables; restored, the masking views refuse governed roles
#    (fail closed, nothing in clear) until policy_script() of each table is
#    run, and then every person sees what they saw in the source.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

do_files=$PGG_WORK/dump_owner_files
mkdir -p "$do_files"
chmod 777 "$do_files"

# do_sql DB SQL: as the superuser, unaligned, tuples only.
do_sql() { pgg_psql do_src -d "$1" -tAc "$2"; }
# do_as ROLE DB SQL: as a login role.
do_as() {
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock do_src)" -p 5432 -U "$1" -d "$2" -tAc "$3"
}
# do_sqlstate ROLE DB SQL: the SQLSTATE of the statement's error ("no error").
do_sqlstate() {
	if psql -X -q -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h "$(pgg_sock do_src)" -p 5432 \
		-U "$1" -d "$2" -c "$3" >"$do_files/out" 2>"$do_files/err"; then
		echo "no error"
		return
	fi
	sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): .*/\1/p' "$do_files/err" | head -1
}
# do_dump ROLE FILE ARGS...: pg_dump as ROLE; its errors in FILE.err.
do_dump() {
	local role=$1 file=$2
	shift 2
	pg_dump -h "$(pgg_sock do_src)" -p 5432 -U "$role" -Fc -f "$file" "$@" 2>"$file.err"
}
# do_restore DB FILE: pg_restore as the superuser; 0 and no output, or the errors.
do_restore() {
	local rc
	pg_restore -h "$(pgg_sock do_src)" -p 5432 -U postgres -d "$1" "$2" >"$2.restore" 2>&1
	rc=$?
	[ "$rc" -eq 0 ] || sed 's/^/  # /' "$2.restore" | head -10
	return $rc
}
# The pii_guard tables and sequences whose data a dump holds, sorted.
do_pii_data() {	# do_pii_data DUMP
	pg_restore -l "$1" | sed -n 's/.* \(TABLE DATA\|SEQUENCE SET\) pii_guard \([a-z_]*\) .*/\2/p' |
		LC_ALL=C sort | tr '\n' ' '
}
do_fresh_db() { pgg_psql do_src -d postgres -c "CREATE DATABASE $1" >/dev/null; }

# What each person sees of a few customers (no noise() column: its key is
# per database).  Interns may take 20 protected rows a day: 4 per look.
do_view_sql="SELECT id, name, birth_date, phone, national_id, bank_card, email, address,
                    channel, campaign, service_tier FROM customers ORDER BY id LIMIT 4"
do_views() {	# do_views DB: every person's look, one block per person
	local who
	for who in intern_fay support_dan sales_bob mkt_amy mgr_eve crm_dba; do
		echo "== $who"
		do_as "$who" "$1" "$do_view_sql" 2>&1
	done
}
# Every encrypted value, decrypted, as an md5 (as the superuser).
do_plain_sum() {	# do_plain_sum DB TABLE: count and md5 of id|plaintexts
	do_sql "$1" "SELECT count(*) || ' ' || md5(string_agg(concat_ws('|', id, pii_guard.decrypt(phone),
	                       pii_guard.decrypt(national_id), pii_guard.decrypt(bank_card)), ',' ORDER BY id))
	               FROM $2"
}
# The policy of one base table (all of them when none is given).
do_policy() {	# do_policy DB [BASE]
	local where="true"
	[ -n "${2:-}" ] && where="base = '$2'::regclass"
	do_sql "$1" "SELECT 'table', base::text, view_schema || '.' || view_name, write_view_name, row_key
	               FROM pii_guard.protected_tables WHERE $where
	             UNION ALL SELECT 'rule', base::text, column_name, level::text,
	                              coalesce(mask_function, '-') || ' ' || coalesce(mask_args::text, '-')
	               FROM pii_guard.column_rules WHERE $where
	             UNION ALL SELECT 'override', role::text, base::text, column_name, access
	               FROM pii_guard.profile_overrides WHERE $where
	             UNION ALL SELECT 'profile', role::text, clearance::text, coalesce(description, '-'),
	                              max_rows_per_statement || '/' || max_rows_per_day
	               FROM pii_guard.profiles
	             ORDER BY 1, 2, 3, 4"
}
# No plaintext of an encrypted column in a dump (custom format: its data is
# compressed, so the text pg_restore makes of it is searched too).
do_absent() {	# do_absent DESC DUMP
	pg_restore -f "$2.sql" "$2"
	pgg_is "$1: no plaintext of an encrypted column (text of the dump)" \
		"$(grep -cFf "$do_files/plaintexts" "$2.sql")" 0
	pgg_is "$1: no plaintext of an encrypted column (the dump file)" \
		"$(grep -caFf "$do_files/plaintexts" "$2")" 0
}
do_wait_sealed() {	# do_wait_sealed DB: the audit worker has sealed every event
	pgg_wait 10 pgg_audit_settled do_src "$1" || true
}

# --- the source: the examples, an approval, audit events ----------------------------
pgg_new_cluster do_src
pgg_start do_src
pgg_env do_src
{
	pgg_new_db do_src crm &&
	pgg_psql do_src -d crm -f "$PGG_REPO/examples/roles.sql" &&
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock do_src)" -p 5432 -U crm_dba -d crm \
		-f "$PGG_REPO/examples/schema.sql" &&
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock do_src)" -p 5432 -U crm_dba -d crm \
		-v customers=400 -f "$PGG_REPO/examples/data.sql" &&
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock do_src)" -p 5432 -U crm_dba -d crm \
		-f "$PGG_REPO/examples/policy.sql"
} >"$do_files/setup.log" 2>&1
pgg_is "the examples load" "$(grep -c ERROR "$do_files/setup.log")" 0
# (for sales_carl, who is not among the people whose looks are compared:
# approvals are not carried by a single table's dump)
do_grant=$(do_as mgr_eve crm "SELECT pii_guard.approve('sales_carl', 'customers', now() + interval '1 day',
                                                      'customer asked for a call back', '{national_id}', '{1}')")
pgg_is "source: an approval is issued (grant 1)" "$do_grant" 1
pgg_is "source: crm_dba, not a superuser, owns the protected tables" \
	"$(do_sql crm "SELECT string_agg(c.oid::regclass || ' ' || pg_get_userbyid(c.relowner) || ' ' || r.rolsuper, ', '
	                               ORDER BY c.relname)
	                 FROM pii_guard.protected_tables p JOIN pg_class c ON c.oid = p.base
	                 JOIN pg_roles r ON r.oid = c.relowner")" \
	"public_pii.customers crm_dba false, public_pii.orders crm_dba false, public_pii.service_tickets crm_dba false"
do_src_views=$(do_views crm)
pgg_ok "source: the intern sees masks (not vacuous)" grep -q '^1|.*|1[3-9][0-9]\*\*\*\*[0-9]\{4\}|' <<<"$do_src_views"
do_wait_sealed crm
pgg_ok "source: the audit trail has events" test "$(do_sql crm "SELECT count(*) FROM pii_guard.audit_log")" -gt 0
do_src_sum=$(do_plain_sum crm public_pii.customers)
do_src_policy=$(do_policy crm)
# The plaintexts of the encrypted columns (phone, national ID, bank card).
do_sql crm "SELECT v FROM public_pii.customers,
                   LATERAL (VALUES (pii_guard.decrypt(phone)), (pii_guard.decrypt(national_id)),
                                   (pii_guard.decrypt(bank_card))) s(v)
             WHERE v IS NOT NULL" >"$do_files/plaintexts"
pgg_ok "source: 1,000 plaintexts to look for (not vacuous)" test "$(wc -l <"$do_files/plaintexts")" -ge 1000

# --- what the owner may not read ------------------------------------------------------
pgg_is "the owner cannot read the data keys (42501)" \
	"$(do_sqlstate crm_dba crm "SELECT count(*) FROM pii_guard.data_keys")" 42501
pgg_is "the owner cannot read the audit trail (42501)" \
	"$(do_sqlstate crm_dba crm "SELECT count(*) FROM pii_guard.audit_log")" 42501
pgg_is "the owner cannot read the audit sequence (42501)" \
	"$(do_sqlstate crm_dba crm "SELECT last_value FROM pii_guard.audit_log_event_id_seq")" 42501
pgg_is "a governed role cannot read the approvals' sequence (42501)" \
	"$(do_sqlstate intern_fay crm "SELECT last_value FROM pii_guard.grants_grant_id_seq")" 42501
do_plain_refused() {	# a plain pg_dump as the owner fails, on permission
	! pg_dump -h "$(pgg_sock do_src)" -p 5432 -U crm_dba -d crm -f /dev/null 2>"$do_files/plain.err" &&
		grep -q 'permission denied for \(sequence audit_log_event_id_seq\|table audit_log\|table data_keys\)' \
			"$do_files/plain.err"
}
pgg_ok "a plain pg_dump by the owner is refused what it may not read" do_plain_refused

# --- the whole database, by the owner ---------------------------------------------------
pgg_ok "pg_dump by the owner with README's options succeeds" \
	do_dump crm_dba "$do_files/crm_owner.dump" -d crm \
	--exclude-table-data=pii_guard.data_keys --exclude-table-data='pii_guard.audit_log*'
sed 's/^/  # /' "$do_files/crm_owner.dump.err"
pgg_is "owner's dump: the policy and the approval, not the keys or the audit trail" \
	"$(do_pii_data "$do_files/crm_owner.dump")" \
	"column_rules consents consents_consent_id_seq discovered_columns export_grant_use grants grants_grant_id_seq new_columns profile_overrides profiles protected_tables purposes retention_rules sequence_grants shredding "
pgg_ok "owner's dump: the customers' data" \
	grep -q 'TABLE DATA public_pii customers ' <(pg_restore -l "$do_files/crm_owner.dump")
do_absent "owner's dump" "$do_files/crm_owner.dump"
pgg_is "owner's dump: 400 customers, as envelopes (not vacuous)" \
	"$(sed -n '/^COPY public_pii.customers /,/^\\\.$/p' "$do_files/crm_owner.dump.sql" | grep -c 'pii_guard:')" 400

# An owner who is an auditor too dumps the audit trail (and its sequence).
pgg_psql do_src -d crm -c "GRANT pii_guard_auditor TO crm_dba" >/dev/null
pgg_ok "owner and auditor: pg_dump --exclude-table-data=pii_guard.data_keys succeeds" \
	do_dump crm_dba "$do_files/crm_auditor.dump" -d crm --exclude-table-data=pii_guard.data_keys
sed 's/^/  # /' "$do_files/crm_auditor.dump.err"
pgg_is "owner and auditor: the dump holds the policy and the audit trail, not the keys" \
	"$(do_pii_data "$do_files/crm_auditor.dump")" \
	"audit_log audit_log_event_id_seq column_rules consents consents_consent_id_seq discovered_columns export_grant_use grants grants_grant_id_seq new_columns profile_overrides profiles protected_tables purposes retention_rules sequence_grants shredding "
pgg_psql do_src -d crm -c "REVOKE pii_guard_auditor FROM crm_dba" >/dev/null

# The data keys, dumped by a superuser (wrapped by the master key).
pgg_ok "pg_dump of the data keys by a superuser succeeds" \
	do_dump postgres "$do_files/crm_keys.dump" -d crm -a -t pii_guard.data_keys

# --- restored into a fresh database ---------------------------------------------------------
do_fresh_db crm_copy
do_t0=$(do_sql postgres "SELECT clock_timestamp()")
pgg_ok "restore of the owner's dump: no error" do_restore crm_copy "$do_files/crm_owner.dump"
pgg_ok "restore of the data keys: no error" do_restore crm_copy "$do_files/crm_keys.dump"
pgg_is "restored: every customer, every value decrypts the same" \
	"$(do_plain_sum crm_copy public_pii.customers)" "$do_src_sum"
pgg_is "restored: the same policy" "$(do_policy crm_copy)" "$do_src_policy"
pgg_is "restored: the masking views are in place" \
	"$(do_sql crm_copy "SELECT string_agg(c.oid::regclass || ' ' || pg_get_userbyid(c.relowner), ', ' ORDER BY c.relname)
	                      FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace")" \
	"customers pii_guard_owner, orders pii_guard_owner, service_tickets pii_guard_owner"
pgg_is "restored: every person sees what they saw" "$(do_views crm_copy)" "$do_src_views"
pgg_is "restored: the base table refuses a governed role (42501)" \
	"$(do_sqlstate intern_fay crm_copy "SELECT phone FROM public_pii.customers LIMIT 1")" 42501
pgg_is "restored: the approval, and a new one gets the next id" \
	"$(do_as mgr_eve crm_copy "SELECT string_agg(grant_id::text, ',' ORDER BY grant_id) FROM pii_guard.grants"),$(
	   do_as mgr_eve crm_copy "SELECT pii_guard.approve('sales_carl', 'customers', now() + interval '1 hour',
	                                                   'restore test')")" "1,2"
pgg_is "restored: no audit event came from the owner's dump" \
	"$(do_sql crm_copy "SELECT count(*) FROM pii_guard.audit_log WHERE event_time < '$do_t0'")" 0
do_wait_sealed crm_copy
pgg_is "restored: the new audit trail verifies" \
	"$(do_sql crm_copy "SELECT count(*) FROM pii_guard.verify_audit()")" 0

# --- one table ----------------------------------------------------------------------------
# An unqualified -t pattern matches what the dumping role's search_path
# shows: the masking view, which has no data.
pgg_ok "pg_dump -t customers by the owner succeeds" do_dump crm_dba "$do_files/view_only.dump" -d crm -t customers
pgg_is "pg_dump -t customers holds the masking view only" \
	"$(pg_restore -l "$do_files/view_only.dump" | sed -n 's/^[0-9]*; [0-9]* [0-9]* \(TABLE DATA\|TABLE\|VIEW\) /\1 /p')" \
	"VIEW public customers pii_guard_owner"
pgg_ok "pg_dump -t customers -t public_pii.customers -t public_pii.customers__pii_write succeeds" \
	do_dump crm_dba "$do_files/customers.dump" -d crm \
	-t customers -t public_pii.customers -t public_pii.customers__pii_write
sed 's/^/  # /' "$do_files/customers.dump.err"
pgg_is "the table's dump: the table, its data, the masking and write views, nothing of pii_guard" \
	"$(pg_restore -l "$do_files/customers.dump" |
		sed -n 's/^[0-9]*; [0-9]* [0-9]* \(TABLE DATA\|TABLE\|VIEW\|SEQUENCE SET\) \([^ ]* [^ ]*\) .*/\1 \2/p' | LC_ALL=C sort)" \
	"SEQUENCE SET public_pii customers_id_seq
TABLE DATA public_pii customers
TABLE public_pii customers
VIEW public customers
VIEW public_pii customers__pii_write"
do_absent "the table's dump" "$do_files/customers.dump"
do_policy_script() {	# do_policy_script TABLE: as the owner, into TABLE_policy.sql
	do_as crm_dba crm "SELECT pii_guard.policy_script('$1')" >"$do_files/$1_policy.sql"
}
pgg_ok "policy_script('customers') as the owner (pii_guard_admin)" do_policy_script customers
pgg_is "policy_script() is refused to a governed role (42501)" \
	"$(do_sqlstate intern_fay crm "SELECT pii_guard.policy_script('customers')")" 42501

pgg_new_db do_src crm_one >/dev/null
pgg_ok "one table: the data keys restore" do_restore crm_one "$do_files/crm_keys.dump"
pgg_psql do_src -d crm_one -c "CREATE SCHEMA IF NOT EXISTS public_pii" >/dev/null
pgg_ok "one table: the table's dump restores with no error" do_restore crm_one "$do_files/customers.dump"
pgg_ok "one table: the policy script runs" \
	pgg_psql do_src -d crm_one -f "$do_files/customers_policy.sql"
pgg_is "one table: every customer, every value decrypts the same" \
	"$(do_plain_sum crm_one public_pii.customers)" "$do_src_sum"
pgg_is "one table: the same policy" \
	"$(do_policy crm_one public_pii.customers)" "$(do_policy crm public_pii.customers)"
pgg_is "one table: every person sees what they saw" "$(do_views crm_one)" "$do_src_views"
pgg_is "one table: the base table refuses a governed role (42501)" \
	"$(do_sqlstate support_dan crm_one "TABLE public_pii.customers")" 42501
pgg_is "one table: a write through the masking view takes the next id" \
	"$(do_as sales_bob crm_one "INSERT INTO customers (name, phone) VALUES ('new customer', '139' || '00000401')
	                            RETURNING id, phone")" "401|13900000401"
pgg_is "one table: the companion schema is pii_guard's" \
	"$(do_sql crm_one "SELECT obj_description('public_pii'::regnamespace, 'pg_namespace')")" \
	"pii_guard companion schema of public: protected base tables"

# --- an owner outside pii_guard_admin ------------------------------------------------------------
pgg_psql do_src -d crm -c "REVOKE pii_guard_admin FROM crm_dba" >/dev/null
pgg_is "outside pii_guard_admin: the owner cannot read the policy (42501)" \
	"$(do_sqlstate crm_dba crm "SELECT count(*) FROM pii_guard.column_rules")" 42501
pgg_ok "outside pii_guard_admin: pg_dump --exclude-table-data='pii_guard.*' succeeds" \
	do_dump crm_dba "$do_files/crm_app.dump" -d crm --exclude-table-data='pii_guard.*'
sed 's/^/  # /' "$do_files/crm_app.dump.err"
pgg_is "outside pii_guard_admin: the dump holds nothing of pii_guard's tables" \
	"$(do_pii_data "$do_files/crm_app.dump")" ""
do_absent "outside pii_guard_admin" "$do_files/crm_app.dump"
pgg_psql do_src -d crm -c "GRANT pii_guard_admin TO crm_dba" >/dev/null

do_fresh_db crm_app
pgg_ok "outside pii_guard_admin: the dump restores with no error" do_restore crm_app "$do_files/crm_app.dump"
pgg_ok "outside pii_guard_admin: the data keys restore" do_restore crm_app "$do_files/crm_keys.dump"
pgg_is "outside pii_guard_admin: restored without policy, the masking view fails closed (42501)" \
	"$(do_sqlstate intern_fay crm_app "$do_view_sql")" 42501
pgg_is "outside pii_guard_admin: ... and shows nothing" "$(cat "$do_files/out")" ""
pgg_is "outside pii_guard_admin: ... for support too (42501)" \
	"$(do_sqlstate support_dan crm_app "$do_view_sql")" 42501
for t in customers orders service_tickets; do
	pgg_ok "outside pii_guard_admin: policy_script('$t') by a member of pii_guard_admin" do_policy_script "$t"
	pgg_ok "outside pii_guard_admin: the policy script of $t runs" \
		pgg_psql do_src -d crm_app -f "$do_files/${t}_policy.sql"
done
pgg_is "outside pii_guard_admin: then the same policy" \
	"$(do_policy crm_app)" "$(do_policy crm)"
pgg_is "outside pii_guard_admin: then every person sees what they saw" "$(do_views crm_app)" "$do_src_views"
pgg_is "outside pii_guard_admin: every value decrypts the same" \
	"$(do_plain_sum crm_app public_pii.customers)" "$do_src_sum"

pgg_stop do_src
pgg_done
