# test/scenario/views_ddl_locks.sh -- a governed role cannot stall readers
# by aiming ALTER TABLE at a masking view's name.
#
# Proves, while another session holds a reader's lock on the masking view
# (a long-running report):
#  - a non-owner's ALTER TABLE customers DROP COLUMN / ADD COLUMN (which
#    pii_guard forwards to the base table and follows with view maintenance)
#    fails at once with 42501 "must be owner of table customers" -- not
#    with 55P03 after waiting for the view's lock, which would have queued
#    every other reader behind it;
#  - a reader that starts meanwhile is not blocked;
#  - the owner's own ALTER TABLE ... ADD COLUMN, once the report is done,
#    works through the view's name.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

vl=vlocks
pgg_new_cluster $vl
pgg_start $vl
pgg_psql $vl -d postgres <<'SQL' >/dev/null
CREATE EXTENSION pii_guard;
CREATE ROLE clerk LOGIN;
CREATE TABLE customers (id int PRIMARY KEY, name text, phone pii_guard.encrypted_text);
INSERT INTO customers VALUES (1, 'Ann', '13812345678'), (2, 'Bob', '13900001111');
GRANT SELECT, UPDATE ON customers TO clerk;
SELECT pii_guard.protect_column('customers', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SQL

vl_sql() { pgg_psql $vl -d postgres -tAc "$1"; }
as_clerk() {
	psql -X -q -h "$(pgg_sock $vl)" -p 5432 -U clerk -d postgres -v VERBOSITY=verbose "$@"
}
# The SQLSTATE of the first ERROR of a clerk's statement, or "no error".
vl_clerk_error() {
	local out
	out=$(as_clerk -c "SET lock_timeout = '5s'" -c "$1" 2>&1)
	sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): \(.*\)$/\1 \2/p' <<<"$out" | head -1 | grep . || echo "no error"
}

# The report: a transaction that has read the masking view and stays open.
PGAPPNAME=vl_report psql -X -q -h "$(pgg_sock $vl)" -p 5432 -U postgres -d postgres \
	-c "BEGIN" -c "SELECT count(*) FROM customers" -c "SELECT pg_sleep(300)" >/dev/null 2>&1 &
vl_report_job=$!
report_holds_view_lock() {
	[ "$(vl_sql "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
	                             WHERE a.application_name = 'vl_report' AND l.granted
	                               AND l.relation = 'public.customers'::regclass)")" = t ]
}
pgg_ok "the report holds a lock on the masking view" pgg_wait 30 report_holds_view_lock

pgg_is "a non-owner's ALTER TABLE ... DROP COLUMN on the view's name fails at once" \
	"$(vl_clerk_error "ALTER TABLE customers DROP COLUMN name")" \
	"42501 must be owner of table customers"
pgg_is "... and so does ALTER TABLE ... ADD COLUMN" \
	"$(vl_clerk_error "ALTER TABLE customers ADD COLUMN note text")" \
	"42501 must be owner of table customers"
pgg_is "... and ALTER TABLE ... RENAME COLUMN" \
	"$(vl_clerk_error "ALTER TABLE customers RENAME COLUMN name TO fullname")" \
	"42501 must be owner of table customers"
pgg_is "a reader is not blocked meanwhile" \
	"$(as_clerk -tA -c "SET lock_timeout = '5s'" -c "SELECT string_agg(phone, ',' ORDER BY id) FROM customers" 2>&1)" \
	"138****5678,139****1111"
pgg_is "no session waits for a lock" \
	"$(vl_sql "SELECT count(*) FROM pg_locks WHERE NOT granted")" 0

vl_sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vl_report'" >/dev/null
wait "$vl_report_job" 2>/dev/null
pgg_ok "the owner's ALTER TABLE ... ADD COLUMN through the view's name works" \
	vl_sql "ALTER TABLE customers ADD COLUMN note text"
pgg_is "... and the view shows the new column" \
	"$(vl_sql "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
	             WHERE attrelid = 'public.customers'::regclass AND attnum > 0")" "id,name,phone,note"
