#!/usr/bin/env bash
# examples/demo.sh -- what `make demo` runs: a guided tour of pii_guard on a
# customer database of 100,000 generated customers.
#
#   make demo            build, start a throwaway cluster, load examples/,
#                        show each feature, stop and remove the cluster
#   make demo KEEP=1     the same, but leave the cluster running at the end
#                        and print how to connect to it and how to stop it
#   PGHOST=... [PGPORT=...] [PGDATABASE=...] [PGUSER=...] make demo
#                        install into that server instead (see below)
#   DEMO_CUSTOMERS=N     generate N customers instead of 100,000 (at least
#                        5,000: the tour looks at customers 1042 and 4242)
#
# The files it loads, in order:
#   roles.sql    the profiles and people (superuser)
#   schema.sql   customers, orders, service_tickets (as crm_dba, the owner)
#   data.sql     100,000 customers, 200,000 orders, 30,000 tickets
#   policy.sql   privileges, row-level security, classification, profiles,
#                export limits: THE example to copy
#
# Each step prints a heading, then runs psql as the person concerned
# (psql -U <login role>), echoing the SQL it sends.
#
# What the demo leaves behind (KEEP=1, or a server's database) is where
# README.md's "Five-minute tour" is meant to be run: so the demo spends the
# export budget of intern_gus, not of intern_fay, whom the tour uses, and
# changes no customer's data (its key rotation re-encrypts the phone
# numbers, which read the same).  test/scenario/demo.sh runs the tour on
# what the demo leaves.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
PG_MAJOR=${PG_MAJOR:-15}
. test/lib.sh

DB=pii_guard_demo
START=$(date +%s)
export PGAPPNAME=pii_guard_demo		# shows in the audit trail's application_name

./test/deps.sh || exit 1

heading() { printf '\n\n==== %s\n' "$*"; }
note() { printf -- '-- %s\n' "$@"; }
fail() { echo "pii_guard demo: $*" >&2; exit 1; }

# (Checked before anything is installed or started.)
case ${DEMO_CUSTOMERS:-100000} in
	'' | *[!0-9]*) fail "DEMO_CUSTOMERS must be a number of customers, not '$DEMO_CUSTOMERS'" ;;
esac
[ "${DEMO_CUSTOMERS:-100000}" -ge 5000 ] ||
	fail "DEMO_CUSTOMERS=$DEMO_CUSTOMERS is too few: the tour looks at customers 1042 and 4242 (at least 5000)"
elapsed() { echo $(($(date +%s) - START)); }
ms() { date +%s%3N; }
secs() { printf '%d.%d' $((($2 - $1) / 1000)) $(((($2 - $1) % 1000) / 100)); }	# secs T0 T1 (ms)

# psql as the superuser (the one that started the cluster, or $PGUSER).
super() { psql -X -q -v ON_ERROR_STOP=1 -P pager=off -d "${1:-$DB}" "${@:2}"; }

# psql as a demo login role, echoing the statements, readable output.
as() {
	local role=$1
	shift
	psql -X -e -v ON_ERROR_STOP=1 -P pager=off -P null='(null)' \
		-U "$role" -d "$DB" "$@"
}

# Run psql as ROLE with -c SQL, expecting an error with SQLSTATE; prints
# the error as psql shows it.  Output rows go to $OUT.
as_refused() {	# as_refused ROLE SQLSTATE SQL
	local role=$1 state=$2 sql=$3
	echo "$sql"
	if psql -X -q -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -P pager=off -U "$role" -d "$DB" \
		-c "$sql" >"$OUT" 2>"$ERR"; then
		fail "expected SQLSTATE $state, but the statement succeeded"
	fi
	grep -q "ERROR:  $state:" "$ERR" ||
		{ cat "$ERR" >&2; fail "expected SQLSTATE $state"; }
	grep -v '^LOCATION:' "$ERR"
}

# Wait for the audit worker to write the queued read events (~0.2 s).
audit_settle() { sleep 1; }

#--------------------------------------------------------------------------
# Where: a throwaway cluster (default), or the server PGHOST/PGPORT name.
#--------------------------------------------------------------------------
if [ -n "${PGHOST:-}${PGPORT:-}${PGDATABASE:-}" ]; then
	# An existing server.  pii_guard cannot be loaded into a running server:
	# it must already be in its postgresql.conf, and the server restarted:
	#     shared_preload_libraries = 'pii_guard'
	#     pii_guard.master_key_command = '...'   # prints the 64-hex-digit master key
	# The demo then installs (or updates) pii_guard's files into that
	# server's installation with `make install` -- so the server must run on
	# this machine from the installation PG_CONFIG names (by default the
	# Debian package's /usr/lib/postgresql/$PG_MAJOR), and this needs root
	# or write access there.  It creates its roles (cluster-wide, kept if they
	# exist) and a fresh database pii_guard_demo (dropped first if it exists),
	# which it leaves in place at the end for you to explore -- or uses
	# $PGDATABASE as it is, which must not have tables of its own named
	# customers, orders or service_tickets.  Connect as a superuser
	# ($PGUSER).  The demo's login roles have no password: pg_hba.conf must
	# let them connect (e.g. trust, or a peer map, for local connections to
	# this database).
	MODE=server
	PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
	export PATH="$("$PG_CONFIG" --bindir):$PATH"
	heading "Installing into the server at ${PGHOST:-(default socket)}:${PGPORT:-5432}"
	super postgres -tAc "SELECT 1" >/dev/null ||
		fail "cannot connect to the server (PGHOST=${PGHOST:-} PGPORT=${PGPORT:-} PGUSER=${PGUSER:-})"
	[ "$(super postgres -tAc "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")" = t ] ||
		fail "connect as a superuser (PGUSER): the demo creates an extension, roles and a database"
	major=$(super postgres -tAc "SELECT current_setting('server_version_num')::int / 10000")
	[ "$major" = "$PG_MAJOR" ] ||
		fail "the server is PostgreSQL $major, not $PG_MAJOR: run make demo PG_MAJOR=$major"
	preload=$(super postgres -tAc "SHOW shared_preload_libraries")
	[[ ",${preload// /}," == *,pii_guard,* ]] ||
		fail "the server does not preload pii_guard (shared_preload_libraries = '$preload').
Add to its postgresql.conf, then restart it:
    shared_preload_libraries = 'pii_guard'
    pii_guard.master_key_command = '/path/to/command printing the master key (64 hex digits)'"
	keycmd=$(super postgres -tAc "SHOW pii_guard.master_key_command")
	[ -n "$keycmd" ] ||
		fail "pii_guard.master_key_command is not set: pii_guard has no master key.
Set it in postgresql.conf (a command printing 64 hex digits) and restart the server."
	make -s -C "$REPO" PG_CONFIG="$PG_CONFIG" >/dev/null || fail "build failed"
	make -s -C "$REPO" PG_CONFIG="$PG_CONFIG" install >/dev/null ||
		fail "make install failed; as root run: make -C $REPO PG_CONFIG=$PG_CONFIG install -- then make demo again"
	if [ -n "${PGDATABASE:-}" ]; then
		DB=$PGDATABASE
		[ -z "$(super "$DB" -tAc "SELECT string_agg(c, ' ') FROM unnest('{customers,orders,service_tickets}'::text[]) c
		                           WHERE to_regclass('public.' || c) IS NOT NULL")" ] ||
			fail "database $DB already has a customers, orders or service_tickets table"
	else
		super postgres -c "SET client_min_messages = warning" \
			-c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
	fi
	OUT_DIR=$(mktemp -d)
	trap 'rm -rf "$OUT_DIR"' EXIT
else
	MODE=cluster
	heading "Building pii_guard and starting a throwaway cluster"
	pgg_init			# cleans up on exit, also on failure and Ctrl-C
	pgg_install
	pgg_new_cluster demo
	pgg_start demo
	pgg_env demo		# PGHOST (the socket directory), PGPORT, PGUSER=postgres
	super postgres -c "CREATE DATABASE $DB"
	OUT_DIR=$PGG_WORK/output
	mkdir -p "$OUT_DIR"
	echo "cluster at $PGHOST, database $DB ($(elapsed) s)"
fi
OUT=$OUT_DIR/stdout
ERR=$OUT_DIR/stderr

#--------------------------------------------------------------------------
# Load the example: roles, schema, data, policy.
#--------------------------------------------------------------------------
heading "Loading examples/: roles, schema, ${DEMO_CUSTOMERS:-100000} customers, policy"
super "$DB" -c "CREATE EXTENSION IF NOT EXISTS pii_guard"
available=$(super "$DB" -tAc "SELECT available FROM pii_guard.master_keys WHERE which = 'current'")
[ "$available" = t ] ||
	fail "pii_guard's master key is not available: $(super "$DB" -tAc "SELECT problem FROM pii_guard.master_keys WHERE which = 'current'")"
super "$DB" -f examples/roles.sql
if [ "$MODE" = server ]; then
	psql -X -q -U intern_gus -d "$DB" -c "SELECT 1" >/dev/null 2>&1 ||
		fail "cannot connect as the demo's login roles (tried intern_gus): pg_hba.conf must let
crm_dba, mkt_amy, sales_bob, sales_carl, support_dan, mgr_eve, intern_fay, intern_gus and audit_ann
connect to $DB without a password (they have none)."
fi
psql -X -q -v ON_ERROR_STOP=1 -U crm_dba -d "$DB" -f examples/schema.sql
t0=$(ms)
psql -X -q -v ON_ERROR_STOP=1 -U crm_dba -d "$DB" -v customers="${DEMO_CUSTOMERS:-100000}" \
	-f examples/data.sql >/dev/null
t1=$(ms)
as crm_dba -c "SELECT 'customers' AS table_name, count(*) AS rows FROM customers
UNION ALL SELECT 'orders', count(*) FROM orders
UNION ALL SELECT 'service_tickets', count(*) FROM service_tickets"
psql -X -q -v ON_ERROR_STOP=1 -U crm_dba -d "$DB" -f examples/policy.sql >/dev/null
echo "data generated and encrypted in $(secs "$t0" "$t1") s; policy applied; $(elapsed) s so far"

heading "The policy at a glance: what each profile sees of each protected column"
note "(from pii_guard.effective_access(); run as crm_dba, the tables' owner)"
as crm_dba -c "SELECT m.table_name, m.column_name, m.level,
       max(access) FILTER (WHERE profile = 'marketing') AS marketing,
       max(access) FILTER (WHERE profile = 'sales')     AS sales,
       max(access) FILTER (WHERE profile = 'support')   AS support,
       max(access) FILTER (WHERE profile = 'manager')   AS manager,
       max(access) FILTER (WHERE profile = 'intern')    AS intern
  FROM unnest('{marketing,sales,support,manager,intern}'::text[]) AS p(profile)
 CROSS JOIN LATERAL pii_guard.effective_access(p.profile::regrole) WITH ORDINALITY AS m
 GROUP BY m.table_name, m.column_name, m.level
 ORDER BY m.table_name, min(m.ordinality)"

#--------------------------------------------------------------------------
# 1. The same SELECT as each role.
#--------------------------------------------------------------------------
SAMPLE="SELECT id, name, phone, national_id, bank_card, email, address, channel, deal_amount
  FROM customers WHERE id IN (2, 6, 7, 15) ORDER BY id"
heading "1. The same SELECT of four customers, as each role"
note "The application's SQL is unchanged: 'customers' is now pii_guard's masking view," \
	"and what each role gets is its policy. (null): a column hidden from that role."
for role in mgr_eve sales_bob support_dan mkt_amy intern_gus; do
	printf '\n---- as %s\n' "$role"
	as "$role" -c "$SAMPLE"
done
printf '\n---- as audit_ann (the auditor reads the audit trail, not the customers)\n'
as_refused audit_ann 42501 "$SAMPLE"

#--------------------------------------------------------------------------
# 2. Row-level security: a sales rep sees only their own customers.
#--------------------------------------------------------------------------
heading "2. Each sales rep sees only their own customers (row-level security)"
for role in sales_bob sales_carl mgr_eve; do
	printf '\n---- as %s\n' "$role"
	as "$role" -c "SELECT count(*) AS customers_visible FROM customers"
done
printf '\n---- as sales_bob: column-level UPDATE grants -- sales may not change the service tier\n'
as_refused sales_bob 42501 "UPDATE customers SET service_tier = 'platinum' WHERE id = 1"

#--------------------------------------------------------------------------
# 3. Equality search on an encrypted column: the blind index.
#--------------------------------------------------------------------------
PHONE=$(super "$DB" -tAc "SELECT pii_guard.decrypt(phone) FROM public_pii.customers WHERE id = 4242")
heading "3. WHERE phone = '$PHONE': found through the blind index"
note "The phone column holds AES-256-GCM envelopes; '=' compares their blind index (an HMAC)." \
	"As the owner, on the base table: the lookup is an index scan (no plaintext in the index)."
as crm_dba -c "SELECT id, phone AS stored_value FROM public_pii.customers WHERE id = 4242" \
	-c "EXPLAIN (COSTS OFF) SELECT id FROM public_pii.customers WHERE phone = '$PHONE'"
printf '\n---- as mgr_eve, through the view (what the application runs)\n'
note "A filter on the view compares what the role sees. For a role that sees phone in clear," \
	"pii_guard adds the same comparison on the stored column, so the blind index answers:" \
	"one row read, revealed and counted (the Filter line is the role's own filter, kept)."
as mgr_eve -c "EXPLAIN (COSTS OFF) SELECT id, name, phone FROM customers WHERE phone = '$PHONE'" \
	-c "SELECT id, name, phone, national_id, address FROM customers WHERE phone = '$PHONE'"
OWNER=$(super "$DB" -tAc "SELECT sales_owner FROM public_pii.customers WHERE id = 4242")
printf '\n---- as %s, whose customer it is (row-level security and an export limit of 100 rows)\n' "$OWNER"
as "$OWNER" -c "SELECT id, name, phone FROM customers WHERE phone = '$PHONE'"

#--------------------------------------------------------------------------
# 4. The intern's bulk export is refused.
#--------------------------------------------------------------------------
EXPORT="COPY (SELECT id, name, phone, email, address FROM customers ORDER BY id) TO STDOUT"
heading "4. The intern exports all customers: refused (limit: 20 protected rows a day)"
printf '\n---- as intern_gus\n'
as_refused intern_gus 54P01 "$EXPORT"
note "$(wc -l <"$OUT") masked rows reached the client before the refusal; the first three:"
head -3 "$OUT"

#--------------------------------------------------------------------------
# 5. An export approval: 500 rows for 24 hours.
#--------------------------------------------------------------------------
heading "5. mgr_eve approves an export of 500 rows for 24 hours; the intern exports again"
printf '\n---- as mgr_eve (member of pii_guard_approver)\n'
as mgr_eve -c "SELECT pii_guard.approve_export('intern_gus', 500, now() + interval '24 hours',
                                'mailing to customers about the spring campaign') AS grant_id"
used=$(super "$DB" -tAc "SELECT used FROM pii_guard.export_approvals ORDER BY grant_id DESC LIMIT 1")
[ "$used" = 0 ] || fail "the export approval just issued already shows $used of its rows used"
printf '\n---- as intern_gus\n'
as_refused intern_gus 54P01 "$EXPORT"
lines=$(wc -l <"$OUT")
note "$lines lines exported (masked, as the intern sees them): his own allowance for the day was" \
	"spent, so the approval carried every row, and the 501st was refused. Lines 499-500:"
sed -n '499,500p' "$OUT"
[ "$lines" -eq 500 ] || fail "expected 500 exported lines (all of them carried by the approval), got $lines"
printf '\n---- as mgr_eve\n'
as mgr_eve -c "SELECT grant_id, role, rows, used, valid_until::timestamp(0), live FROM pii_guard.export_approvals"

#--------------------------------------------------------------------------
# 6. A time-boxed approval to see one customer's ID number in clear.
#--------------------------------------------------------------------------
K=$(super "$DB" -tAc "SELECT min(id) FROM public_pii.customers WHERE id >= 1042 AND sales_owner = 'sales_bob'")
heading "6. sales_bob needs customer $K's ID number for a contract: mgr_eve approves it for 24 hours"
ID_SQL="SELECT id, name, national_id FROM customers WHERE id = $K"
printf '\n---- as sales_bob, before the approval\n'
as sales_bob -c "$ID_SQL"
printf '\n---- as mgr_eve\n'
as mgr_eve -c "SELECT pii_guard.approve('sales_bob', 'customers', now() + interval '24 hours',
                         'contract signing: identity check', '{national_id}', '{$K}') AS grant_id"
printf '\n---- as sales_bob, after the approval (this row and column only, until it expires)\n'
as sales_bob -c "$ID_SQL" -c "SELECT id, name, national_id FROM customers WHERE id IN ($K, (SELECT min(id) FROM customers WHERE id > $K)) ORDER BY id"
printf '\n---- as support_dan, who has no approval\n'
as support_dan -c "$ID_SQL"

#--------------------------------------------------------------------------
# 7. Key rotation while the data stays readable.
#--------------------------------------------------------------------------
ROT_SQL="SELECT id, name, phone FROM customers WHERE id <= 3 ORDER BY id"
heading "7. Rotating the data key and re-encrypting customers.phone"
printf '\n---- as mgr_eve, before\n'
as mgr_eve -c "$ROT_SQL" >"$OUT_DIR/before"
cat "$OUT_DIR/before"
printf '\n---- as crm_dba (member of pii_guard_admin)\n'
KEYS_SQL="SELECT pii_guard.key_id(phone) AS phone_data_key, count(*) FROM public_pii.customers GROUP BY 1 ORDER BY 1"
as crm_dba -c "$KEYS_SQL" -c "SELECT pii_guard.rotate_data_key() AS new_key"
t0=$(ms)
as crm_dba -c "CALL pii_guard.reencrypt_column('public_pii.customers', 'phone')"
t1=$(ms)
note "re-encrypted in $(secs "$t0" "$t1") s, in batches of 10,000 rows that each commit"
as crm_dba -c "$KEYS_SQL" -c "SELECT key_id, purpose, state, created_at::timestamp(0), retired_at::timestamp(0) FROM pii_guard.key_status WHERE purpose = 'encrypt' ORDER BY key_id"
note "national_id and bank_card are still under the retired key, and readable: retired keys are kept."
printf '\n---- as mgr_eve, after: the same result\n'
as mgr_eve -c "$ROT_SQL" >"$OUT_DIR/after"
cat "$OUT_DIR/after"
cmp -s "$OUT_DIR/before" "$OUT_DIR/after" || fail "the data read differently after the key rotation"

#--------------------------------------------------------------------------
# 8. The auditor's questions.
#--------------------------------------------------------------------------
audit_settle
heading "8. The auditor (audit_ann) asks: who saw customer $K's ID number in clear?"
as audit_ann -c "SELECT event_time::timestamp(0), session_role, kind, operation, access, columns
  FROM pii_guard.audit_row_access
 WHERE relation = 'public.customers' AND row_key = '$K' AND 'national_id' = ANY (columns)
   AND access = 'clear'
 ORDER BY event_time" \
	-c "SELECT event_time::timestamp(0), session_role, action, detail
  FROM pii_guard.audit_admin_changes WHERE action IN ('approve', 'approve_export') ORDER BY event_time"
note "... and everyone who saw it at all, clear or masked:"
as audit_ann -c "SELECT session_role, access, count(*) AS statements
  FROM pii_guard.audit_row_access
 WHERE relation = 'public.customers' AND row_key = '$K' AND 'national_id' = ANY (columns)
 GROUP BY 1, 2 ORDER BY 1, 2"

heading "9. The auditor asks: what did the intern try to export?"
as audit_ann -c "SELECT event_time::timestamp(0), relation, operation, rows, detail
  FROM pii_guard.audit_denials WHERE session_role = 'intern_gus' ORDER BY event_time" \
	-c "SELECT event_time::timestamp(0), relation, operation, rows, columns_masked, detail
  FROM pii_guard.audit_exports WHERE session_role = 'intern_gus' ORDER BY event_time"

heading "10. Is the audit trail intact?  (no rows: verified)"
as audit_ann -c "SELECT * FROM pii_guard.verify_audit()" >"$OUT_DIR/verify"
cat "$OUT_DIR/verify"
grep -q '(0 rows)' "$OUT_DIR/verify" || fail "verify_audit() reported a problem"

#--------------------------------------------------------------------------
# 11. The data inventory, the policy lint, a masked copy for developers.
#--------------------------------------------------------------------------
heading "11. The data inventory and the policy lint (no rows: nothing to flag)"
as crm_dba -c "SELECT relation, column_name, kind, share FROM pii_guard.discover('public')"
note "(nothing unprotected holds personal data: every such column is protected)"
as audit_ann -c "SELECT table_name, column_name, kind, level, mask, clear_to, last_read::timestamp(0)
  FROM pii_guard.inventory" \
	-c "SELECT * FROM pii_guard.check_policy()" >"$OUT_DIR/lint"
cat "$OUT_DIR/lint"
grep -q '^(0 rows)' "$OUT_DIR/lint" || fail "check_policy() found problems in examples/policy.sql"

heading "12. A masked copy for developers: pseudonyms that keep their form, checked against the source"
as crm_dba -c "SELECT copy, rows, pseudonymised, masked, hidden FROM pii_guard.anonymize_into('demo_copy')" \
	-c "SELECT id, name, birth_date, phone, national_id, bank_card, email FROM demo_copy.customers ORDER BY id LIMIT 4"
note "The same four customers as mgr_eve sees them in production:"
as mgr_eve -c "SELECT id, name, birth_date, phone, national_id, bank_card, email FROM customers ORDER BY id LIMIT 4"
note "Each phone keeps its prefix, each card its issuer and a valid Luhn digit, each ID its province and a valid check digit; the copy holds no real value (checked before anonymize_into returned). bin/pii_guard_dump makes the same as a plain-SQL dump."

#--------------------------------------------------------------------------
# 13. A customer asks what is held about them and who saw it.
#--------------------------------------------------------------------------
audit_settle
heading "13. Customer $K asks what is held about them and who saw it (the auditor answers)"
as audit_ann -c "SELECT section, item, value, at::timestamp(0), by_role, detail
  FROM pii_guard.subject_report('customers', '$K')"
note "Values as the auditor sees them (masked: no clearance); an approval for this row would show them in clear. pii_guard.erase_subject() deletes the row on request, audited."

#--------------------------------------------------------------------------
# The end.
#--------------------------------------------------------------------------
heading "Done in $(elapsed) s"
if [ "$MODE" = cluster ]; then
	if [ -n "${KEEP:-}" ]; then
		# test/lib.sh stops every cluster on exit: keep this one running.
		trap - EXIT INT TERM HUP
		stop="$PGG_SERVER_BIN/pg_ctl -D $(pgg_data demo) stop"
		[ "$(id -u)" -eq 0 ] && stop="runuser -u postgres -- $stop"
		cat <<-EOF
		The cluster is still running (KEEP=1), unix socket only. Connect as any demo role:
		    psql -h $PGHOST -p $PGPORT -U mgr_eve $DB
		(roles: crm_dba mkt_amy sales_bob sales_carl support_dan mgr_eve intern_fay intern_gus
		 audit_ann; superuser: postgres).  The demo spent intern_gus's export budget and
		 left intern_fay's whole: README.md's "Five-minute tour" runs as her, on this database.
		Stop it and remove everything with:
		    $stop && rm -rf $PGG_WORK
		EOF
	else
		echo "Stopping and removing the cluster."
	fi
else
	echo "The demo's database $DB stays on the server; connect with:"
	echo "    psql -U mgr_eve $DB        (or any demo role; drop it with DROP DATABASE $DB WITH (FORCE))"
	echo "The demo's roles stay too (roles are cluster-wide); to remove them, after the database:"
	echo "    DROP ROLE crm_dba, mkt_amy, sales_bob, sales_carl, support_dan, mgr_eve, intern_fay, intern_gus,"
	echo "              audit_ann, marketing, sales, support, manager, intern;"
fi
