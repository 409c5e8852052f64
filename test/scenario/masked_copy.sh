# test/scenario/masked_copy.sh -- a masked copy of the examples' database
# for developers (pii_guard.anonymize_into and bin/pii_guard_dump), compared
# against its source.
#
# On the examples (roles, schema, 400 customers, policy), plus a table of
# call-backs whose phone is the customer's (to see pseudonyms agree across
# tables), added after the policy with a foreign key that names the
# masking view customers (it references the base table).
#
# Proves:
#  - anonymize_into('dev') as crm_dba (pii_guard_admin, not a superuser)
#    copies every table of the application's schema with all its rows; the
#    copy's columns hold no pii_guard type (no ciphertext), its owner is the
#    caller, the primary keys and the foreign keys between copied tables
#    are there and hold;
#  - pseudonyms keep the form: every phone, ID number, bank card, e-mail
#    and name of the copy is what detect_kind says it is (valid check
#    digits, Luhn), phones keep their prefix, cards their issuer; distinct
#    values get distinct pseudonyms; the same phone in customers and in
#    call_backs gets the same pseudonym; hidden columns are NULL;
#  - no real value: none of the source's phones, ID numbers, bank cards or
#    e-mail addresses (decrypted by the superuser) occurs anywhere in a
#    pg_dump of the copy, nor in pii_guard_dump's export; no name or address
#    of the source is a value of the copy;
#  - a second copy has other pseudonyms (a new secret each time);
#  - each copy is an admin event; the intern may not copy (42501); an
#    existing schema is refused (42P06), so are system schemas (22023);
#  - the copy, made with its definer's rights, runs nothing of the caller's:
#    a domain's check function (the column takes the base type), triggers
#    on tables of its working names in the caller's temporary schema; and
#    copies only what the caller may read (a table it may not: skipped,
#    noticed);
#  - a real value in an unprotected column (a plain table of phone numbers,
#    a note quoting a phone number) makes the copy fail (22000) and leaves
#    nothing behind;
#  - pii_guard_dump's export restores with psql into a database without
#    pii_guard, every row there.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

mc_files=$PGG_WORK/masked_copy_files
mkdir -p "$mc_files"
chmod 777 "$mc_files"

mc_sql() { pgg_psql mc -d "${2:-crm}" -tAc "$1"; }
mc_as() {	# mc_as ROLE SQL
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock mc)" -p 5432 -U "$1" -d crm -tAc "$2"
}
mc_sqlstate() {	# mc_sqlstate ROLE SQL: the SQLSTATE of the statement's error ("no error")
	if psql -X -q -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h "$(pgg_sock mc)" -p 5432 \
		-U "$1" -d crm -c "$2" >"$mc_files/out" 2>"$mc_files/err"; then
		echo "no error"
		return
	fi
	sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): .*/\1/p' "$mc_files/err" | head -1
}

pgg_new_cluster mc
pgg_start mc
pgg_env mc
{
	pgg_new_db mc crm &&
	pgg_psql mc -d crm -f "$PGG_REPO/examples/roles.sql" &&
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock mc)" -p 5432 -U crm_dba -d crm \
		-f "$PGG_REPO/examples/schema.sql" &&
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock mc)" -p 5432 -U crm_dba -d crm \
		-v customers=400 -f "$PGG_REPO/examples/data.sql" &&
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock mc)" -p 5432 -U crm_dba -d crm \
		-f "$PGG_REPO/examples/policy.sql" &&
	# call-backs: the customer's phone again, in another protected table
	mc_as crm_dba "CREATE TABLE call_backs (id bigserial PRIMARY KEY,
	                   customer_id bigint NOT NULL REFERENCES customers, phone pii_guard.encrypted_text,
	                   due date NOT NULL);
	               SELECT pii_guard.protect_column('call_backs', 'phone', 'sensitive', 'pii_guard.mask_phone(text)')" &&
	mc_sql "INSERT INTO public_pii.call_backs (customer_id, phone, due)
	        SELECT id, phone, date '2026-12-01' + (id % 20)::int FROM public_pii.customers WHERE id % 3 = 0"
} >"$mc_files/setup.log" 2>&1
pgg_is "the examples load" "$(grep -c ERROR "$mc_files/setup.log")" 0

# The source's real values (as the superuser): the high-entropy ones, and
# the names and addresses.
mc_sql "SELECT v FROM (SELECT pii_guard.decrypt(phone) FROM public_pii.customers
                       UNION SELECT pii_guard.decrypt(national_id) FROM public_pii.customers
                       UNION SELECT pii_guard.decrypt(bank_card) FROM public_pii.customers
                       UNION SELECT email FROM public_pii.customers) s(v)
         WHERE v IS NOT NULL" >"$mc_files/reals"
pgg_ok "1,200 real values to look for (not vacuous)" test "$(wc -l <"$mc_files/reals")" -ge 1200

# --- the copy -------------------------------------------------------------------------
mc_copy=$(mc_as crm_dba "SELECT copy || ' ' || rows FROM pii_guard.anonymize_into('dev') ORDER BY 1" 2>&1)
pgg_is "anonymize_into as crm_dba copies every table with every row" "$(tr '\n' ',' <<<"$mc_copy")" \
	"dev.call_backs $(mc_sql "SELECT count(*) FROM public_pii.call_backs"),dev.customers 400,dev.orders $(mc_sql "SELECT count(*) FROM public_pii.orders"),dev.service_tickets $(mc_sql "SELECT count(*) FROM public_pii.service_tickets"),"
pgg_is "the copy's tables belong to the caller" \
	"$(mc_sql "SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class WHERE relnamespace = 'dev'::regnamespace AND relkind = 'r'")" crm_dba
pgg_is "no pii_guard type in the copy (no ciphertext)" \
	"$(mc_sql "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
	            WHERE c.relnamespace = 'dev'::regnamespace AND a.atttypid IN
	                  ('pii_guard.encrypted_text'::regtype, 'pii_guard.encrypted_bytea'::regtype)")" 0
pgg_is "primary keys and foreign keys between copied tables" \
	"$(mc_sql "SELECT string_agg(x, ' ' ORDER BY x) FROM (SELECT conrelid::regclass || ':' || contype::text
	                   || CASE contype WHEN 'f' THEN '>' || confrelid::regclass ELSE '' END AS x
	            FROM pg_constraint WHERE connamespace = 'dev'::regnamespace AND contype IN ('p', 'f')) s")" \
	"dev.call_backs:f>dev.customers dev.call_backs:p dev.customers:p dev.orders:f>dev.customers dev.orders:p dev.service_tickets:f>dev.customers dev.service_tickets:p"
pgg_is "every pseudonym has the form of its kind" \
	"$(mc_sql "SELECT count(*) FILTER (WHERE pii_guard.detect_kind(v) IS DISTINCT FROM k) || ' of ' || (count(*) > 1500)
	            FROM dev.customers, LATERAL (VALUES (phone, 'mobile'), (national_id, 'cn_id'), (bank_card, 'bank_card'),
	                                                (email, 'email'), (name, 'cn_name')) s(v, k)
	           WHERE v IS NOT NULL")" "0 of true"
pgg_is "phones keep their prefix, cards their issuer" \
	"$(mc_sql "SELECT count(*) FROM dev.customers d JOIN public_pii.customers s USING (id)
	            WHERE left(d.phone, 3) <> left(pii_guard.decrypt(s.phone), 3)
	               OR left(d.bank_card, 6) <> left(pii_guard.decrypt(s.bank_card), 6)
	               OR length(d.bank_card) <> length(pii_guard.decrypt(s.bank_card))")" 0
pgg_is "distinct values, distinct pseudonyms" \
	"$(mc_sql "SELECT (SELECT count(DISTINCT phone) || '/' || count(DISTINCT national_id) || '/' || count(DISTINCT name) FROM dev.customers)
	                = (SELECT count(DISTINCT pii_guard.decrypt(phone)) || '/' || count(DISTINCT pii_guard.decrypt(national_id))
	                          || '/' || count(DISTINCT name) FROM public_pii.customers)")" t
pgg_is "the same phone in two tables, the same pseudonym" \
	"$(mc_sql "SELECT count(*) || ' ' || count(*) FILTER (WHERE b.phone = c.phone)
	            FROM dev.call_backs b JOIN dev.customers c ON c.id = b.customer_id")" "133 133"
pgg_is "hidden columns are NULL" \
	"$(mc_sql "SELECT count(sales_notes) + (SELECT count(summary) FROM dev.service_tickets) FROM dev.customers")" 0
pgg_is "no name or address of the source is a value of the copy" \
	"$(mc_sql "SELECT count(*) FROM dev.customers d
	            WHERE d.name IN (SELECT name FROM public_pii.customers)
	               OR d.address IN (SELECT address FROM public_pii.customers)")" 0
pg_dump -h "$(pgg_sock mc)" -p 5432 -U crm_dba -n dev -f "$mc_files/dev.sql" crm
pgg_ok "a pg_dump of the copy is not empty (not vacuous)" grep -q '^COPY dev.customers' "$mc_files/dev.sql"
pgg_is "no real phone, ID number, bank card or e-mail anywhere in a dump of the copy" \
	"$(grep -cFf "$mc_files/reals" "$mc_files/dev.sql")" 0

# --- a second copy, the audit, refusals -------------------------------------------------
mc_as crm_dba "SELECT count(*) FROM pii_guard.anonymize_into('dev2')" >/dev/null
pgg_is "a second copy has other pseudonyms" \
	"$(mc_sql "SELECT count(*) FROM dev.customers a JOIN dev2.customers b USING (id)
	            WHERE a.phone = b.phone OR a.national_id = b.national_id")" 0
pgg_is "each copy is an admin event" \
	"$(mc_sql "SELECT count(*) FROM pii_guard.audit_log WHERE kind = 'admin' AND operation = 'anonymize'
	            AND detail LIKE 'masked copy of 4 tables%'")" 2
pgg_is "the intern may not copy (42501)" \
	"$(mc_sqlstate intern_fay "SELECT * FROM pii_guard.anonymize_into('mine')")" 42501
pgg_is "an existing schema is refused (42P06)" \
	"$(mc_sqlstate crm_dba "SELECT * FROM pii_guard.anonymize_into('public')")" 42P06

# --- what the copy must not do as its definer --------------------------------------------
# A domain whose check calls crm_dba's function (which notes who runs it),
# and a table crm_dba may not read.
mc_as crm_dba "CREATE TABLE who_ran (who name);
               CREATE FUNCTION note_runner(text) RETURNS boolean LANGUAGE plpgsql AS
                 'BEGIN INSERT INTO public.who_ran VALUES (current_user); RETURN true; END';
               CREATE DOMAIN checked_text AS text CHECK (public.note_runner(VALUE));
               CREATE TABLE tagged (id integer PRIMARY KEY, tag checked_text);
               INSERT INTO tagged VALUES (1, 'a'), (2, 'b');
               TRUNCATE who_ran" >/dev/null
mc_sql "CREATE TABLE public.payroll (id integer PRIMARY KEY, salary numeric); INSERT INTO public.payroll VALUES (1, 99999)"
mc_as crm_dba "SELECT count(*) FROM pii_guard.anonymize_into('dev4')" >/dev/null 2>"$mc_files/dev4.err"
pgg_is "a domain's check function is not run by the copy (its column takes the base type)" \
	"$(mc_sql "SELECT count(*) FROM public.who_ran") $(mc_sql "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
	                                                           WHERE attrelid = 'dev4.tagged'::regclass AND attname = 'tag'")" "0 text"
pgg_is "a table the caller may not read is not copied" "$(mc_sql "SELECT to_regclass('dev4.payroll') IS NULL")" t
pgg_ok "  ... and the notice says so" grep -q 'table public.payroll not copied: you may not read it' "$mc_files/dev4.err"
# Tables of the copy's working names, with triggers, in the caller's
# temporary schema: dropped, their triggers never run with the copy's rights.
pgg_is "the caller's temporary tables of the working names are not used" \
	"$(mc_as crm_dba "CREATE TEMP TABLE seen (who name);
	                  CREATE TEMP TABLE _anon_map (kind text, real text, fake text, attempt integer);
	                  CREATE FUNCTION pg_temp.note_it() RETURNS trigger LANGUAGE plpgsql AS
	                    'BEGIN INSERT INTO pg_temp.seen VALUES (current_user); RETURN NEW; END';
	                  CREATE TRIGGER note_it BEFORE INSERT ON _anon_map FOR EACH ROW EXECUTE FUNCTION pg_temp.note_it();
	                  SELECT count(*) > 0 FROM pii_guard.anonymize_into('dev6');
	                  SELECT count(*) FROM pg_temp.seen" 2>/dev/null | tr '\n' ' ')" "t 0 "
mc_as crm_dba "DROP SCHEMA dev6 CASCADE" >/dev/null 2>&1
pgg_is "system schemas cannot be copied (22023)" \
	"$(mc_sqlstate crm_dba "SELECT * FROM pii_guard.anonymize_into('dev5', '{pg_catalog}')")" 22023
mc_as crm_dba "DROP TABLE tagged, who_ran; DROP DOMAIN checked_text; DROP FUNCTION note_runner(text)" >/dev/null
mc_sql "DROP TABLE public.payroll"

# --- a real value in an unprotected column stops the copy -------------------------------
mc_as crm_dba "CREATE TABLE phone_list (n integer PRIMARY KEY, phone text)" >/dev/null
mc_sql "INSERT INTO public.phone_list SELECT id, pii_guard.decrypt(phone) FROM public_pii.customers WHERE id <= 3"
pgg_is "real phones in an unprotected table: the copy fails (22000)" \
	"$(mc_sqlstate crm_dba "SELECT * FROM pii_guard.anonymize_into('dev3')")" 22000
pgg_ok "  ... naming the column" grep -q 'phone_list.phone holds real values in 3 rows' "$mc_files/err"
pgg_is "  ... and leaves nothing behind" "$(mc_sql "SELECT to_regnamespace('dev3') IS NULL")" t
mc_sql "TRUNCATE public.phone_list;
        INSERT INTO public.phone_list SELECT 1, 'please call ' || pii_guard.decrypt(phone) || ' after 6pm'
          FROM public_pii.customers WHERE id = 7"
pgg_is "a phone number quoted in a note: the copy fails (22000)" \
	"$(mc_sqlstate crm_dba "SELECT * FROM pii_guard.anonymize_into('dev3')")" 22000
mc_as crm_dba "DROP TABLE phone_list" >/dev/null

# --- the export for developers -----------------------------------------------------------
"$PGG_REPO/bin/pii_guard_dump" -h "$(pgg_sock mc)" -p 5432 -U crm_dba -d crm -f "$mc_files/export.sql" \
	2>"$mc_files/export.err"
pgg_is "pii_guard_dump runs" "$(cat "$mc_files/export.err")" ""
pgg_is "no real phone, ID number, bank card or e-mail in the export" \
	"$(grep -cFf "$mc_files/reals" "$mc_files/export.sql")" 0
pgg_is "the export leaves no schema behind" \
	"$(mc_sql "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pii_guard_dump_%'")" 0
mc_sql "CREATE DATABASE devdb" postgres >/dev/null
pgg_psql mc -d devdb -f "$mc_files/export.sql" >"$mc_files/restore.log" 2>&1
pgg_is "the export restores into a database without pii_guard" "$(grep -c ERROR "$mc_files/restore.log")" 0
pgg_is "  ... with every row" \
	"$(mc_sql "SELECT (SELECT count(*) FROM public.customers) || ' ' || (SELECT count(*) FROM public.orders)
	                  || ' ' || (SELECT count(*) FROM public.call_backs)" devdb)" \
	"400 $(mc_sql "SELECT count(*) FROM public_pii.orders") 133"
pgg_is "no real value in the server log" "$(grep -cFf "$mc_files/reals" "$(pgg_log mc)")" 0

pgg_stop mc
pgg_done
