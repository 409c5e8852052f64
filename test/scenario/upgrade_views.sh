# test/scenario/upgrade_views.sh -- masking views protected under 0.1 come
# through ALTER EXTENSION pii_guard UPDATE to the current version.
#
# Proves, for a table protected under version 0.1 (with a generated column,
# which 0.1's write view left out, a custom mask function, column grants and
# a view of the DBA's built on the masking view):
#  - with the current library and the 0.1 objects, reads are masked as before;
#  - ALTER EXTENSION pii_guard UPDATE succeeds, and the views built by 0.1
#    keep working (masked reads, no WARNING) until they are rebuilt;
#  - pii_guard.refresh_views() rebuilds them in place, with the DBA's view
#    and the grants still there: the write view gets every column, the mask
#    function can no longer be dropped, and writes through the view
#    (column-level UPDATE, INSERT ... RETURNING) work.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

up=upgrade
pgg_new_cluster $up
pgg_start $up
up_sql() { pgg_psql $up -d postgres -tAc "$1"; }
as_clerk() {
	psql -X -q -tA -h "$(pgg_sock $up)" -p 5432 -U clerk -d postgres "$@"
}

pgg_psql $up -d postgres <<'SQL' >/dev/null
CREATE EXTENSION pii_guard VERSION '0.1';
CREATE ROLE clerk LOGIN;
CREATE FUNCTION public.mask3(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT LEAKPROOF
SET search_path = pg_catalog AS $$ SELECT left($1, 3) || '****' $$;
CREATE TABLE customers (
    id     serial PRIMARY KEY,
    name   text NOT NULL,
    phone  pii_guard.encrypted_text,
    score  int GENERATED ALWAYS AS (length(name)) STORED
);
INSERT INTO customers (name, phone) VALUES ('Ann', '13812345678'), ('Bob', '13900001111');
GRANT SELECT, INSERT ON customers TO clerk;
GRANT UPDATE (name, phone) ON customers TO clerk;
SELECT pii_guard.protect_column('customers', 'phone', 'sensitive', 'public.mask3(text)');
CREATE VIEW customer_phones AS SELECT id, phone FROM customers;
GRANT SELECT ON customer_phones TO clerk;
SQL
pgg_is "installed as 0.1" "$(up_sql "SELECT extversion FROM pg_extension WHERE extname = 'pii_guard'")" "0.1"
pgg_is "before the update, the current library masks as 0.1 did" \
	"$(as_clerk -c "SELECT string_agg(phone, ',' ORDER BY id) FROM customers" 2>&1)" "138****,139****"

pgg_ok "ALTER EXTENSION pii_guard UPDATE succeeds" up_sql "ALTER EXTENSION pii_guard UPDATE"
up_latest=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$PGG_REPO/pii_guard.control")
pgg_is "now at $up_latest" "$(up_sql "SELECT extversion FROM pg_extension WHERE extname = 'pii_guard'")" "$up_latest"
pgg_is "the views built by 0.1 still mask, without a WARNING" \
	"$(as_clerk -c "SELECT string_agg(phone, ',' ORDER BY id) FROM customers" 2>&1)" "138****,139****"
pgg_is "refresh_views() rebuilds them, with a view on the masking view in place" \
	"$(up_sql "SELECT pii_guard.refresh_views()" 2>&1)" "1"
pgg_is "the DBA's view on the masking view is still there" \
	"$(up_sql "SELECT to_regclass('public.customer_phones') IS NOT NULL")" "t"
pgg_is "the masking view is not an extension member" \
	"$(up_sql "SELECT count(*) FROM pg_depend WHERE objid = 'public.customers'::regclass AND deptype = 'e'")" "0"
pgg_is "the write view has every column, the generated one too" \
	"$(up_sql "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
	             WHERE attrelid = 'public_pii.customers__pii_write'::regclass AND attnum > 0")" "id,name,phone,score"
pgg_is "reads are masked, without a WARNING" \
	"$(as_clerk -c "SELECT string_agg(phone, ',' ORDER BY id) FROM customers" 2>&1)" "138****,139****"
pgg_is "... through the DBA's view too" \
	"$(as_clerk -c "SELECT string_agg(phone, ',' ORDER BY id) FROM customer_phones" 2>&1)" "138****,139****"
pgg_ok "the mask function in use cannot be dropped" \
	grep -q "cannot drop function mask3(text) because other objects depend on it" \
	<<<"$(pgg_psql $up -d postgres -c "DROP FUNCTION public.mask3(text)" 2>&1)"
pgg_is "a column-level UPDATE through the view writes the named column only" \
	"$(as_clerk -c "UPDATE customers SET name = 'Anna' WHERE id = 1" -c "SELECT name FROM customers WHERE id = 1" 2>&1)" \
	"Anna"
pgg_is "... and leaves the phone as it was" \
	"$(up_sql "SELECT pii_guard.decrypt(phone) FROM public_pii.customers WHERE id = 1")" "13812345678"
pgg_is "INSERT ... RETURNING id through the view" \
	"$(as_clerk -c "INSERT INTO customers (name, phone) VALUES ('Cy', '13700002222') RETURNING id, phone, score" 2>&1)" \
	"3|137****|2"
