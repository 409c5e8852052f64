#!/usr/bin/env bash
# test/soak.sh -- what `make soak DURATION=<seconds>` runs: the whole of
# pii_guard under a mixed load for a while, then a reckoning.
#
# On a throwaway cluster with the demo's database (examples/: roles,
# schema, SOAK_CUSTOMERS generated customers, the policy), eight clients
# run at once for DURATION seconds (default 120), each as a person of the
# policy and through the masking views only:
#   2 x sales_bob, 1 x sales_carl  read their own customers, look one up by
#                                  phone, update notes and deals, add
#                                  customers (RETURNING id);
#   (all as prepared statements, as applications run them)
#   2 x support_dan                look customers up by phone, correct
#                                  phones and addresses, open tickets;
#   1 x mgr_eve                    read everything, add orders;
#   1 x intern_fay                 read masked pages -- and keeps trying a
#                                  bulk export, refused by her limits;
#   1 x mkt_amy                    channel statistics.
# Meanwhile a controller issues unmask grants that expire a few seconds
# later, rotates the data key and re-encrypts customers.phone in the
# middle of the run, and approves an export for the intern.
#
# At the end it checks: no client hit an unexpected error; every committed
# insert, update and delete of a protected table has its write event (the
# rows of the write events equal the tables' own statistics); every grant's
# end was recorded; the audit chain verifies; every encrypted value of every
# row decrypts; and the intern's export-limit counter equals the rows her
# read events say she was shown.
#
# Environment: DURATION (seconds), SOAK_CUSTOMERS (default 20000), KEEP=1.
set -uo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

./test/deps.sh || exit 1
DURATION=${DURATION:-120}
SOAK_CUSTOMERS=${SOAK_CUSTOMERS:-20000}
DB=soak

pgg_init
pgg_install
pgg_new_cluster soak "max_connections = 60" "synchronous_commit = off"
pgg_start soak
pgg_env soak
S=$PGG_WORK/soak_files
mkdir -p "$S"
chmod 777 "$S"

super() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
as() { local r=$1; shift; psql -X -q -v ON_ERROR_STOP=1 -U "$r" -d "$DB" "$@"; }
val() { super -tAc "$1"; }

echo "== loading the demo database ($SOAK_CUSTOMERS customers)"
psql -X -q -d postgres -c "CREATE DATABASE $DB" >/dev/null
super -c "CREATE EXTENSION pii_guard" >/dev/null
super -f examples/roles.sql >/dev/null
as crm_dba -f examples/schema.sql >/dev/null
as crm_dba -v customers="$SOAK_CUSTOMERS" -f examples/data.sql >/dev/null
as crm_dba -f examples/policy.sql >/dev/null
# The intern's refused exports are part of the load: a function catches
# the refusal (54P01) so that her client carries on; anything else fails.
super <<'SQL' >/dev/null
CREATE SCHEMA soak;
GRANT USAGE ON SCHEMA soak TO PUBLIC;
CREATE TABLE soak.refusals (at timestamptz DEFAULT clock_timestamp(), who name DEFAULT current_user);
GRANT INSERT ON soak.refusals TO PUBLIC;
CREATE FUNCTION soak.try_export() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM (SELECT phone, email FROM public.customers) s WHERE phone IS NOT NULL;
    RETURN n;
EXCEPTION WHEN SQLSTATE '54P01' THEN
    INSERT INTO soak.refusals DEFAULT VALUES;
    RETURN -1;
END $$;
GRANT EXECUTE ON FUNCTION soak.try_export() TO PUBLIC;
-- New phone numbers from sequences: a random one could collide (UNIQUE).
CREATE SEQUENCE soak.new_phones;
CREATE SEQUENCE soak.changed_phones;
GRANT USAGE ON SEQUENCE soak.new_phones, soak.changed_phones TO PUBLIC;
-- The managers add orders; the intern gets a day allowance she does not
-- exhaust, so that only her bulk exports hit a limit (per statement).
GRANT INSERT ON orders TO manager;
GRANT USAGE ON SEQUENCE public_pii.orders_id_seq TO manager;
SELECT pii_guard.set_export_limits('intern', 20, 100000000);
-- (and the sales reps and support a day allowance the load cannot use up)
SELECT pii_guard.set_export_limits('sales', 100, 100000000);
SELECT pii_guard.set_export_limits('support', 100, 100000000);
SQL
n=$SOAK_CUSTOMERS

# --- the clients' scripts ------------------------------------------------------
cat >"$S/sales.sql" <<EOF
\\set id random(1, $n)
SELECT id, name, phone, email, deal_amount FROM customers WHERE sales_owner = current_user ORDER BY id LIMIT 5;
SELECT coalesce(min(phone), '-') AS p FROM (SELECT phone FROM customers WHERE sales_owner = current_user AND id >= :id ORDER BY id LIMIT 1) s \\gset
SELECT id, name FROM customers WHERE phone = :p;
UPDATE customers SET sales_notes = 'called ' || now()::text, deal_amount = deal_amount + 1 WHERE id = :id;
\\if random(1, 10) = 1
INSERT INTO customers (name, phone, email, channel) VALUES ('新客户', '199' || lpad(nextval('soak.new_phones')::text, 8, '0'), 'new' || random() || '@example.com', 'soak') RETURNING id;
\\endif
EOF
cat >"$S/support.sql" <<EOF
\\set id random(1, $n)
SELECT id, name, phone, address, service_tier FROM customers WHERE id = :id;
SELECT coalesce(min(phone), '-') AS p FROM customers WHERE id = :id \\gset
SELECT id FROM customers WHERE phone = :p;
UPDATE customers SET address = address || ' ' WHERE id = :id;
\\if random(1, 5) = 1
UPDATE customers SET phone = '198' || lpad(nextval('soak.changed_phones')::text, 8, '0') WHERE id = :id;
INSERT INTO service_tickets (customer_id, opened_at, channel, category, summary, status, agent)
VALUES (:id, now(), 'hotline', 'soak', 'caller asked about an order', 'open', current_user);
\\endif
EOF
cat >"$S/manager.sql" <<EOF
\\set id random(1, $n)
SELECT id, name, phone, national_id, deal_amount FROM customers WHERE id BETWEEN :id AND :id + 20;
INSERT INTO orders (customer_id, ordered_at, product, quantity, amount, status, channel)
VALUES (:id, now(), 'soak', 1, 9.99, 'paid', 'web');
EOF
cat >"$S/intern.sql" <<EOF
\\set id random(1, $n)
SELECT id, name, phone, email FROM customers WHERE id = :id;
\\if random(1, 20) = 1
SELECT soak.try_export();
\\endif
EOF
cat >"$S/marketing.sql" <<'EOF'
SELECT channel, campaign, count(*) FROM customers GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5;
EOF

# Statistics before: the write events must account for every row change.
tables="customers orders service_tickets"
stats() {
	val "SELECT coalesce(sum(n_tup_ins), 0) || ' ' || coalesce(sum(n_tup_upd), 0) || ' ' || coalesce(sum(n_tup_del), 0)
	       FROM pg_stat_user_tables WHERE schemaname = 'public_pii' AND relname IN ('customers', 'orders', 'service_tickets')"
}
val "SELECT pg_stat_force_next_flush()" >/dev/null
sleep 1
stats_before=$(stats)
start_event=$(val "SELECT coalesce(max(event_id), 0) FROM pii_guard.audit_log")
start_time=$(val "SELECT clock_timestamp()")

echo "== $DURATION s of load: 8 clients"
run() {	# run NAME ROLE CLIENTS SCRIPT
	# (Prepared statements, as applications run them: a looked-up phone
	# number is a parameter, which the masking view's lookup uses.)
	pgbench -n -M prepared -h "$PGHOST" -p "$PGPORT" -U "$2" -c "$3" -j "$3" -T "$DURATION" -f "$4" "$DB" \
		>"$S/$1.log" 2>&1
	echo $? >"$S/$1.rc"
}
run sales_bob sales_bob 2 "$S/sales.sql" &
run sales_carl sales_carl 1 "$S/sales.sql" &
run support support_dan 2 "$S/support.sql" &
run manager mgr_eve 1 "$S/manager.sql" &
run intern intern_fay 1 "$S/intern.sql" &
run marketing mkt_amy 1 "$S/marketing.sql" &

# The controller: grants that end by themselves, a rotation and a
# re-encryption half way, an export approval for the intern.
t0=$(date +%s)
grants=0
rotated=
while [ $(( $(date +%s) - t0 )) -lt "$DURATION" ]; do
	as mgr_eve -tAc "SELECT pii_guard.approve('sales_bob', 'customers', now() + interval '3 seconds',
	                  'soak: callback', '{national_id}', ARRAY[(1 + random() * $n)::int::text])" >/dev/null &&
		grants=$((grants + 1))
	if [ -z "$rotated" ] && [ $(( $(date +%s) - t0 )) -ge $((DURATION / 3)) ]; then
		rotated=$(as crm_dba -tAc "SELECT pii_guard.rotate_data_key()")
		as mgr_eve -tAc "SELECT pii_guard.approve_export('intern_fay', 200, now() + interval '1 hour', 'soak: mailing')" >/dev/null
		as crm_dba -c "CALL pii_guard.reencrypt_column('customers', 'phone', 2000)" >"$S/reencrypt.log" 2>&1 &
		reencrypt=$!
	fi
	sleep 2
done
wait
reencrypt_rc=$(wait "${reencrypt:-0}" 2>/dev/null; echo $?)

# --- the reckoning ----------------------------------------------------------------------
FAILS=0
check() {	# check DESCRIPTION ACTUAL EXPECTED
	if [ "$2" = "$3" ]; then echo "  ok - $1"; else echo "  not ok - $1"; echo "    got:      $2"; echo "    expected: $3"; FAILS=$((FAILS + 1)); fi
}
for c in sales_bob sales_carl support manager intern marketing; do
	check "$c: the client ran without an error" "$(cat "$S/$c.rc")" 0
	tx=$(awk '/number of transactions actually processed/ { print $NF }' "$S/$c.log")
	failed=$(awk -F': ' '/number of failed transactions/ { print $2 }' "$S/$c.log" | cut -d' ' -f1)
	echo "  # $c: ${tx:-?} transactions, ${failed:-0} failed"
done
check "the re-encryption ran without an error" "$(grep -c ERROR "$S/reencrypt.log")" 0
echo "  # $grants grants issued; key rotated to ${rotated:-(none)}; $(val "SELECT count(*) FROM soak.refusals") intern exports refused"

# Let the audit worker write and seal everything queued.
for _ in $(seq 300); do
	[ "$(val "SELECT (SELECT queued FROM pii_guard.audit_queue_status()) = 0
	        AND NOT EXISTS (SELECT 1 FROM pii_guard.audit_log a WHERE NOT EXISTS
	                          (SELECT 1 FROM pii_guard.audit_seal s WHERE s.event_id = a.event_id))")" = t ] && break
	sleep 0.2
done
val "SELECT pg_stat_force_next_flush()" >/dev/null
sleep 1
read -r ins0 upd0 del0 <<<"$stats_before"
read -r ins1 upd1 del1 <<<"$(stats)"
events=$(val "SELECT coalesce(sum(rows) FILTER (WHERE operation = 'INSERT'), 0) || ' ' ||
                     coalesce(sum(rows) FILTER (WHERE operation = 'UPDATE'), 0) || ' ' ||
                     coalesce(sum(rows) FILTER (WHERE operation = 'DELETE'), 0)
                FROM pii_guard.audit_log
               WHERE event_id > $start_event AND kind = 'write'
                 AND relation IN ('public.customers', 'public.orders', 'public.service_tickets')")
check "write events account for every inserted, updated and deleted row" \
	"$events" "$((ins1 - ins0)) $((upd1 - upd0)) $((del1 - del0))"
check "writes happened (not vacuous)" "$([ $((upd1 - upd0)) -gt 0 ] && echo yes)" yes
check "every grant that ended has its grant_expired event" \
	"$(val "SELECT count(*) FROM pii_guard.grants g WHERE g.kind = 'unmask' AND g.valid_until < now() - interval '2 seconds'
	          AND NOT EXISTS (SELECT 1 FROM pii_guard.audit_log a WHERE a.kind = 'admin' AND a.operation = 'grant_expired'
	                            AND a.detail LIKE 'grant ' || g.grant_id || ':%')")" 0
check "the audit chain verifies" "$(val "SELECT count(*) FROM pii_guard.verify_audit()")" 0
check "every encrypted value decrypts" \
	"$(val "SELECT count(*) FILTER (WHERE pii_guard.decrypt(phone) IS NULL AND phone IS NOT NULL)
	            + count(*) FILTER (WHERE pii_guard.decrypt(national_id) IS NULL AND national_id IS NOT NULL)
	            + count(*) FILTER (WHERE pii_guard.decrypt(bank_card) IS NULL AND bank_card IS NOT NULL)
	          FROM public_pii.customers")" 0
check "customers.phone is all under the rotated key, but for later writes under it too" \
	"$(val "SELECT count(*) FROM public_pii.customers WHERE pii_guard.key_id(phone) < ${rotated:-0}")" 0
check "the intern's counted rows (her day, and her approval's use) equal the rows her read events show her" \
	"$(val "SELECT pii_guard.export_usage('intern_fay') + coalesce((SELECT sum(used) FROM pii_guard.export_approvals WHERE role::text = 'intern_fay'), 0)")" \
	"$(val "SELECT coalesce(sum(rows), 0) FROM pii_guard.audit_log WHERE session_role = 'intern_fay' AND kind IN ('read', 'export')
	          AND coalesce(detail, '') NOT LIKE '%under export approval%'")"
check "the intern was refused at least once (limits were hit)" \
	"$(val "SELECT count(*) > 0 FROM soak.refusals")" t
check "no backend crashed" "$(grep -c 'terminated by signal' "$(pgg_log soak)")" 0

echo
if [ "$FAILS" -eq 0 ]; then echo "soak: all checks passed"; else echo "soak: $FAILS checks failed"; fi
pgg_stop soak
[ "$FAILS" -eq 0 ]
