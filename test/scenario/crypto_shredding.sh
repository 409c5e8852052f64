# test/scenario/crypto_shredding.sh -- retention and erasure destroy a
# person's subject key, and with it that person's values in every dump
# taken before, while everyone else's still decrypt.
#
# A shop: customers (phone and ID number encrypted) and their orders (card
# number encrypted), both under per-customer keys (shred_by: customers by
# their row key, orders by customer_id).
#
# Proves:
#  - every encrypted value is under its customer's own subject key (ids
#    2^31 and up), the same key for a customer's row and its orders, a
#    different key per customer; values decrypt and lookups by phone work;
#  - an UPDATE and an INSERT through the masking view (as the application
#    role) seal under the right key, creating one for a new customer;
#  - a dump (custom format) holds no subject key: no row of
#    pii_guard.subject_keys, none of the wrapped keys;
#  - erase_subject (customer 2, with its orders) and apply_retention
#    (customer 6, signed up 5 years ago, rule: 3 years) destroy those keys:
#    the rows of pii_guard.subject_keys keep when, by whom and why, but no
#    key; audited;
#  - the dump taken before, restored into a new database with the subject
#    keys as they are now (copied with \copy, the recipe the README gives):
#    customers 2 and 6 and their orders no longer decrypt (55000 "the key of
#    this encrypted value was destroyed"; NULL through the masking view),
#    everyone else's do, and every count is intact;
#  - restored without the subject keys, nothing decrypts (42704, "does not
#    exist"): a dump alone never carries what a subject key protects;
#  - in the live database, after VACUUM, the destroyed key's bytes are no
#    longer in pii_guard.subject_keys' data file;
#  - master key rotation re-wraps the live subject keys (rewrap_data_keys),
#    and values still decrypt under the new master key alone;
#  - the server logs hold no plaintext.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

cs_files=$PGG_WORK/crypto_shredding_files
mkdir -p "$cs_files"
chmod 777 "$cs_files"

cs_sql() { pgg_psql cs -d "${2:-shop}" -tAc "$1"; }
cs_error() {	# cs_error DB SQL: "SQLSTATE message" of the first ERROR, or "no error"
	if pgg_psql cs -d "$1" -v VERBOSITY=verbose -c "$2" >/dev/null 2>"$cs_files/err"; then
		echo "no error"
		return
	fi
	sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): \(.*\)$/\1 \2/p' "$cs_files/err" | head -1
}

cs_phones=(13812340001 13812340002 13812340003 13812340004 13812340005 13812340006)
cs_ids=(110101199003071234 440301198512120018 31010419920815432X 110105198001010011
	110101198803030033 110101197707070077)

pgg_new_cluster cs
pgg_start cs
pgg_new_db cs shop
pgg_psql cs -d shop <<'SQL'
CREATE ROLE shop_app LOGIN;
CREATE TABLE customers (
    id           integer PRIMARY KEY,
    name         text NOT NULL,
    phone        pii_guard.encrypted_text,
    national_id  pii_guard.encrypted_text,
    signed_up    date NOT NULL
);
CREATE TABLE orders (
    id           integer PRIMARY KEY,
    customer_id  integer NOT NULL REFERENCES customers ON DELETE CASCADE,
    card         pii_guard.encrypted_text,
    amount       numeric NOT NULL
);
CREATE INDEX ON customers (phone);
GRANT SELECT, INSERT, UPDATE ON customers, orders TO shop_app;
SET client_min_messages = warning;
SELECT pii_guard.protect_table('customers');
SELECT pii_guard.protect_column('customers', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('customers', 'national_id', 'core', 'pii_guard.mask_cn_id(text)');
SELECT pii_guard.protect_table('orders');
SELECT pii_guard.protect_column('orders', 'card', 'core', 'pii_guard.mask_bank_card(text)');
SELECT pii_guard.set_clearance('shop_app', 'core');
SQL
# Plaintexts go in through COPY, so that no statement text holds them.
for i in 0 1 2 3 4 5; do
	signed=$([ "$i" -eq 5 ] && echo "2021-06-01" || echo "2026-01-0$((i + 1))")
	printf '%s\tcustomer %s\t%s\t%s\t%s\n' $((i + 1)) $((i + 1)) "${cs_phones[$i]}" "${cs_ids[$i]}" "$signed"
done | pgg_psql cs -d shop -c "COPY customers (id, name, phone, national_id, signed_up) FROM STDIN"
for i in 1 2 3 4 5 6; do
	printf '%s\t%s\t622202000000000%s\t%s\n' $((i * 10)) "$i" "$i" "$((i * 100))"
	printf '%s\t%s\t622202000000001%s\t%s\n' $((i * 10 + 1)) "$i" "$i" "$((i * 100 + 1))"
done | pgg_psql cs -d shop -c "COPY orders (id, customer_id, card, amount) FROM STDIN"

pgg_is "shred_by re-seals the existing rows (6 customers, 12 orders)" \
	"$(cs_sql "SELECT pii_guard.shred_by('customers')") $(cs_sql "SELECT pii_guard.shred_by('orders', 'customer_id')")" \
	"6 12"
pgg_is "every value is under a subject key" \
	"$(cs_sql "SELECT count(*) FILTER (WHERE pii_guard.key_id(phone) >= 2147483648
	                                   AND pii_guard.key_id(national_id) >= 2147483648),
	                  count(DISTINCT pii_guard.key_id(phone)) FROM public_pii.customers")|$(cs_sql "SELECT count(*) FROM public_pii.orders WHERE pii_guard.key_id(card) >= 2147483648")" \
	"6|6|12"
pgg_is "a customer's row and its orders share its key; the key row names the customer" \
	"$(cs_sql "SELECT bool_and(pii_guard.key_id(o.card) = pii_guard.key_id(c.phone)
	                           AND pii_guard.key_id(c.phone) = pii_guard.key_id(c.national_id)
	                           AND k.subject_base = 'public_pii.customers'::regclass AND k.row_key = c.id::text)
	             FROM public_pii.customers c JOIN public_pii.orders o ON o.customer_id = c.id
	             JOIN pii_guard.subject_keys k ON k.key_id = pii_guard.key_id(c.phone)")" "t"
pgg_is "values decrypt; a lookup by phone finds its row" \
	"$(cs_sql "SELECT string_agg(pii_guard.decrypt(phone), ',' ORDER BY id) FROM public_pii.customers")|$(cs_sql "SELECT id FROM customers WHERE phone = '13812340003'")" \
	"$(IFS=,; echo "${cs_phones[*]}")|3"

# The application writes through the masking views.
psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock cs)" -p 5432 -U shop_app -d shop <<'SQL'
UPDATE customers SET phone = '13912349999' WHERE id = 4;
INSERT INTO customers (id, name, phone, national_id, signed_up)
VALUES (7, 'customer 7', '13812340007', '110101199901010019', '2026-02-01');
INSERT INTO orders (id, customer_id, card, amount) VALUES (70, 7, '6222020000000077', 7);
SQL
pgg_is "an UPDATE through the view: the new value under the customer's own key" \
	"$(cs_sql "SELECT pii_guard.key_id(phone) = pii_guard.key_id(national_id) AND pii_guard.decrypt(phone) = '13912349999'
	             FROM public_pii.customers WHERE id = 4")" "t"
pgg_is "an INSERT through the view: a new key for the new customer, its order under it" \
	"$(cs_sql "SELECT count(*) FROM pii_guard.subject_keys WHERE row_key = '7'")|$(cs_sql "SELECT pii_guard.key_id(c.phone) = pii_guard.key_id(o.card) FROM public_pii.customers c JOIN public_pii.orders o ON o.customer_id = c.id WHERE c.id = 7")" \
	"1|t"

# --- the dump taken before ---------------------------------------------------
pgg_env cs
pgg_ok "pg_dump -Fc succeeds" pg_dump -Fc -d shop -f "$cs_files/before.dump"
pg_restore -f "$cs_files/before.sql" "$cs_files/before.dump"
pgg_ok "(not vacuous: the dump holds the customers' envelopes)" \
	grep -q 'pii_guard:' "$cs_files/before.sql"
pgg_is "the dump holds no row of pii_guard.subject_keys" \
	"$(grep -c 'COPY pii_guard.subject_keys' "$cs_files/before.sql")" "0"
cs_sql "SELECT encode(wrapped_key, 'hex') FROM pii_guard.subject_keys" >"$cs_files/wrapped"
pgg_is "nor any wrapped subject key" \
	"$(grep -c -F -f "$cs_files/wrapped" "$cs_files/before.sql")" "0"
cs_key2=$(cs_sql "SELECT key_id FROM pii_guard.subject_keys WHERE row_key = '2'")
cs_wrapped2=$(cs_sql "SELECT encode(wrapped_key, 'hex') FROM pii_guard.subject_keys WHERE row_key = '2'")

# --- erasure and retention ---------------------------------------------------
pgg_is "erase_subject: customer 2 and its orders deleted" \
	"$(cs_sql "SELECT pii_guard.erase_subject('customers', '2', 'request 2026-0017')")|$(cs_sql "SELECT count(*) FROM orders WHERE customer_id = 2")" \
	"1|0"
cs_sql "SELECT pii_guard.set_retention('customers', 'signed_up', '3 years', 'delete')" >/dev/null
pgg_psql cs -d shop -c "CALL pii_guard.apply_retention()"
pgg_is "apply_retention: customer 6 (signed up 2021) deleted" \
	"$(cs_sql "SELECT string_agg(id::text, ',' ORDER BY id) FROM customers")" "1,3,4,5,7"
pgg_is "the keys of customers 2 and 6 are destroyed, the others live" \
	"$(cs_sql "SELECT string_agg(row_key || ':' || (wrapped_key IS NULL) || ':' || (shredded_at IS NOT NULL), ',' ORDER BY row_key)
	             FROM pii_guard.subject_keys")" \
	"1:false:false,2:true:true,3:false:false,4:false:false,5:false:false,6:true:true,7:false:false"
pgg_is "each destruction says why" \
	"$(cs_sql "SELECT string_agg(row_key || ' ' || split_part(reason, ' before', 1), '; ' ORDER BY row_key)
	             FROM pii_guard.subject_keys WHERE shredded_at IS NOT NULL")" \
	"2 erased: request 2026-0017; 6 retention: signed_up"
pgg_is "admin events: the erasure, the retention batch, two destroyed keys" \
	"$(cs_sql "SELECT string_agg(operation, ',' ORDER BY event_id) FROM pii_guard.audit_log
	             WHERE kind = 'admin' AND operation IN ('erase_subject', 'apply_retention', 'shred_subject')")" \
	"erase_subject,shred_subject,shred_subject,apply_retention"

# --- the old dump, restored ----------------------------------------------------
pgg_psql cs -d postgres -c "CREATE DATABASE restored"
pgg_ok "pg_restore of the dump taken before succeeds" \
	pg_restore --exit-on-error -d restored "$cs_files/before.dump"
pgg_is "restored without the subject keys: every row is there" \
	"$(cs_sql "SELECT count(*) FROM customers" restored)|$(cs_sql "SELECT count(*) FROM orders" restored)" "7|13"
pgg_is "... and nothing decrypts: a dump alone does not carry the keys" \
	"$(cs_error restored "SELECT pii_guard.decrypt(phone) FROM public_pii.customers WHERE id = 1" | cut -d' ' -f1-7)" \
	"42704 pii_guard subject key $(cs_sql "SELECT pii_guard.key_id(phone) FROM public_pii.customers WHERE id = 1" restored) does not"
# The recipe: the subject keys as they are now, copied from the live database.
pgg_psql cs -d shop -c "\\copy pii_guard.subject_keys TO '$cs_files/subject_keys.copy'"
pgg_psql cs -d restored -c "\\copy pii_guard.subject_keys FROM '$cs_files/subject_keys.copy'"
pgg_is "with the keys copied: everyone else's values decrypt" \
	"$(cs_sql "SELECT string_agg(id || ':' || pii_guard.decrypt(phone) || ':' || pii_guard.decrypt(national_id), ',' ORDER BY id)
	             FROM public_pii.customers WHERE id NOT IN (2, 6)" restored)" \
	"1:13812340001:110101199003071234,3:13812340003:31010419920815432X,4:13912349999:110105198001010011,5:13812340005:110101198803030033,7:13812340007:110101199901010019"
pgg_is "... their orders' cards too" \
	"$(cs_sql "SELECT count(*) FROM public_pii.orders WHERE customer_id NOT IN (2, 6) AND pii_guard.decrypt(card) LIKE '62220200000000%'" restored)" "9"
pgg_is "customer 2's values no longer decrypt" \
	"$(cs_error restored "SELECT pii_guard.decrypt(phone) FROM public_pii.customers WHERE id = 2")" \
	"55000 the key of this encrypted value was destroyed"
pgg_is "... nor its orders' cards, nor customer 6's" \
	"$(cs_error restored "SELECT pii_guard.decrypt(card) FROM public_pii.orders WHERE customer_id = 2 LIMIT 1")|$(cs_error restored "SELECT pii_guard.decrypt(national_id) FROM public_pii.customers WHERE id = 6")" \
	"55000 the key of this encrypted value was destroyed|55000 the key of this encrypted value was destroyed"
pgg_is "through the masking view the destroyed values read as NULL, the rest in clear" \
	"$(cs_sql "SELECT string_agg(id || ':' || coalesce(phone, 'NULL'), ',' ORDER BY id) FROM customers" restored)" \
	"1:13812340001,2:NULL,3:13812340003,4:13912349999,5:13812340005,6:NULL,7:13812340007"

# --- the live database: the key bytes are gone after VACUUM -------------------
pgg_psql cs -d shop -c "VACUUM pii_guard.subject_keys" -c "CHECKPOINT"
pgg_is "after VACUUM, customer 2's wrapped key is not in the table's data file" \
	"$(cs_sql "SELECT position(decode('$cs_wrapped2', 'hex') IN pg_read_binary_file(pg_relation_filepath('pii_guard.subject_keys')))")" \
	"0"
pgg_is "(the key id is still named, as destroyed)" \
	"$(cs_sql "SELECT shredded_at IS NOT NULL FROM pii_guard.subject_keys WHERE key_id = $cs_key2")" "t"

# --- master key rotation -------------------------------------------------------
pgg_conf cs "pii_guard.master_key_command = 'cat $PGG_WORK/keys/test-master-2.hex'" \
	"pii_guard.previous_master_key_command = 'cat $PGG_WORK/keys/test-master-1.hex'"
pgg_restart cs
pgg_is "rewrap_data_keys re-wraps the live subject keys too (5) besides the data keys" \
	"$(cs_sql "SELECT pii_guard.rewrap_data_keys() - (SELECT count(*) FROM pii_guard.data_keys)")" "5"
pgg_conf cs "pii_guard.previous_master_key_command = ''"
pgg_restart cs
pgg_is "under the new master key alone, values still decrypt" \
	"$(cs_sql "SELECT string_agg(pii_guard.decrypt(phone), ',' ORDER BY id) FROM public_pii.customers")" \
	"13812340001,13812340003,13912349999,13812340005,13812340007"

pgg_stop cs
cs_leaks=0
for s in "${cs_phones[@]}" "${cs_ids[@]}" 13912349999; do
	if grep -qF -- "$s" "$(pgg_log cs)"; then cs_leaks=$((cs_leaks + 1)); fi
done
pgg_is "the server log holds no plaintext" "$cs_leaks" "0"
pgg_done
