# test/scenario/dump_restore.sh -- encrypted columns survive pg_dump and
# pg_restore, and the dump carries no plaintext.
#
# Proves:
#  - pg_dump (custom and plain format) of a database with encrypted_text and
#    encrypted_bytea columns contains none of the plaintexts, and neither
#    master key;
#  - pg_restore into a fresh database on a server with the same master key
#    gives back the same plaintexts and the same data keys (two encryption
#    keys, after a rotation), equality still finds rows through the restored
#    btree (UNIQUE) and hash indexes, UNIQUE still rejects a duplicate, and
#    new values are sealed with the restored active key (no new key);
#  - on a server with a different master key the restore itself works, but
#    the first use of a restored key fails with SQLSTATE 55000 "... wrapped by
#    a different master key", for decrypt() and for an INSERT alike, and no
#    data key is created under the wrong master key;
#  - nothing is lost: restarted with the right master key, that same restored
#    database decrypts to the same plaintexts;
#  - the server logs of both clusters contain no plaintext and no master key;
#  - (last, on its own) a UNIQUE violation raised by the server itself for a
#    statement with a plaintext literal does not copy that statement, and so
#    the plaintext, into the server log.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

dr_files=$PGG_WORK/dump_restore_files
mkdir -p "$dr_files"
chmod 777 "$dr_files"

# The plaintexts: 8 phones and documents written under the first encryption
# key, 4 more after rotate_data_key().
dr_phones_1=(13812340001 13812340002 13812340003 13812340004
	13812340005 13812340006 13812340007 13812340008)
dr_phones_2=(13912350009 13912350010 13912350011 13912350012)
dr_phones=("${dr_phones_1[@]}" "${dr_phones_2[@]}")
dr_docs=()
for p in "${dr_phones[@]}"; do dr_docs+=("passport-X${p: -6}"); done

# dr_sql CLUSTER DB SQL: one statement's result, unaligned, tuples only.
dr_sql() { pgg_psql "$1" -d "$2" -tAc "$3"; }

# dr_error CLUSTER DB SQL: run SQL that must fail; print "SQLSTATE message"
# of its first ERROR (or "no error").  The full stderr goes to the file
# $dr_files/last_error for checks on everything the client was told.
dr_error() {
	if pgg_psql "$1" -d "$2" -v VERBOSITY=verbose -c "$3" \
		>/dev/null 2>"$dr_files/last_error"; then
		echo "no error"
		return
	fi
	sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): \(.*\)$/\1 \2/p' "$dr_files/last_error" | head -1
}

# dr_absent DESC FILE: assert that FILE contains no plaintext and no master key.
dr_absent() {
	local desc=$1 file=$2 found=() s
	for s in "${dr_phones[@]}" "${dr_docs[@]}" 13600000020 \
		"$(cat "$PGG_WORK/keys/test-master-1.hex")" \
		"$(cat "$PGG_WORK/keys/test-master-2.hex")"; do
		if grep -qiF -- "$s" "$file"; then found+=("$s"); fi
	done
	pgg_is "$desc" "${found[*]:-}" ""
}

# The plaintexts of the table, in id order: id|phone|document.
dr_plaintexts() {
	dr_sql "$1" "$2" "SELECT id, pii_guard.decrypt(phone),
	                         convert_from(pii_guard.decrypt(doc), 'UTF8')
	                    FROM customers ORDER BY id"
}

# The data keys as stored, wrapped key material included.
dr_keys() {
	dr_sql "$1" "$2" "SELECT key_id, purpose, state, wrapped_key, master_key_fingerprint
	                    FROM pii_guard.data_keys ORDER BY 1"
}

# --- source database ---------------------------------------------------------
pgg_new_cluster dr_src
pgg_start dr_src
pgg_new_db dr_src shop
pgg_psql dr_src -d shop <<'SQL'
CREATE TABLE customers (
    id    integer PRIMARY KEY,
    name  text NOT NULL,
    phone pii_guard.encrypted_text NOT NULL UNIQUE,
    doc   pii_guard.encrypted_bytea
);
CREATE INDEX customers_phone_hash ON customers USING hash (phone);
SQL
# Plaintexts go in through COPY from stdin, so that no statement text that
# could reach a log holds them.
dr_copy_rows() {	# dr_copy_rows FIRST_ID PHONE...
	local id=$1 p
	shift
	for p in "$@"; do
		printf '%s\tcustomer %s\t%s\t%s\n' "$id" "$id" "$p" "passport-X${p: -6}"
		id=$((id + 1))
	done | pgg_psql dr_src -d shop -c "COPY customers (id, name, phone, doc) FROM STDIN"
}
dr_copy_rows 1 "${dr_phones_1[@]}"
dr_first_key=$(dr_sql dr_src shop "SELECT pii_guard.key_id(phone) FROM customers WHERE id = 1")
dr_second_key=$(dr_sql dr_src shop "SELECT pii_guard.rotate_data_key()")
dr_copy_rows 9 "${dr_phones_2[@]}"

dr_expected=$(for i in "${!dr_phones[@]}"; do
	echo "$((i + 1))|${dr_phones[$i]}|${dr_docs[$i]}"
done)
pgg_is "source: all values decrypt" "$(dr_plaintexts dr_src shop)" "$dr_expected"
pgg_is "source: values are under two encryption keys" \
	"$(dr_sql dr_src shop "SELECT string_agg(k::text, ',' ORDER BY k)
	                         FROM (SELECT DISTINCT pii_guard.key_id(phone) AS k FROM customers) s")" \
	"$dr_first_key,$dr_second_key"
dr_src_keys=$(dr_keys dr_src shop)
pgg_is "source: two encrypt keys and one blind index key" \
	"$(dr_sql dr_src shop "SELECT purpose || ':' || state FROM pii_guard.data_keys
	                         WHERE purpose IN ('encrypt', 'blind_index') ORDER BY key_id")" \
	"encrypt:retired
blind_index:active
encrypt:active"

# --- at rest -------------------------------------------------------------------
# After a checkpoint, no plaintext in the relation files (heap, TOAST,
# indexes) or the WAL; the plaintext name column is there, so the search
# does find what is stored in clear.
pgg_psql dr_src -d shop -c "CHECKPOINT" >/dev/null
dr_at_rest=$(for s in "${dr_phones[@]}" "${dr_docs[@]}"; do
	grep -rlaF -- "$s" "$(pgg_data dr_src)/base" "$(pgg_data dr_src)/global" \
		"$(pgg_data dr_src)/pg_wal" 2>/dev/null
done | sort -u)
pgg_is "at rest: no plaintext in tables, indexes, TOAST or WAL" "$dr_at_rest" ""
pgg_ok "at rest: (the search finds the plaintext name column)" \
	grep -rqaF "customer 12" "$(pgg_data dr_src)/base"

# --- an envelope from another database -------------------------------------------
# Key ids start at random: the other database has no key of that id, and
# says so, instead of failing authentication as if the value were tampered.
pgg_new_db dr_src other >/dev/null
pgg_psql dr_src -d other \
	-c "CREATE TABLE t (v pii_guard.encrypted_text)" -c "INSERT INTO t VALUES ('its own key')" >/dev/null
dr_env=$(dr_sql dr_src shop "SELECT phone FROM customers WHERE id = 1")
pgg_psql dr_src -d other -c "INSERT INTO t VALUES ('$dr_env')" >/dev/null
pgg_is "another database's envelope names a key this one does not have (42704)" \
	"$(dr_error dr_src other "SELECT pii_guard.decrypt(v) FROM t WHERE v::text LIKE 'pii_guard:%' AND pii_guard.key_id(v) = $dr_first_key")" \
	"42704 pii_guard data key $dr_first_key does not exist"
pgg_psql dr_src -d postgres -c "DROP DATABASE other" >/dev/null

# --- the dumps -----------------------------------------------------------------
pgg_env dr_src
pgg_ok "pg_dump -Fc succeeds" pg_dump -Fc -d shop -f "$dr_files/shop.dump"
pgg_ok "pg_dump -Fp succeeds" pg_dump -Fp -d shop -f "$dr_files/shop.sql"
pg_restore -f - "$dr_files/shop.dump" >"$dr_files/shop_from_custom.sql"

# Not vacuous: the dumps do hold the rows (as envelopes) and the data keys.
pgg_is "plain dump holds 12 encrypted_text envelopes" \
	"$(grep -c '^[0-9]*	customer [0-9]*	pii_guard:' "$dr_files/shop.sql")" 12
pgg_is "custom dump holds 12 encrypted_text envelopes" \
	"$(grep -c '^[0-9]*	customer [0-9]*	pii_guard:' "$dr_files/shop_from_custom.sql")" 12
pgg_ok "plain dump holds the data keys" \
	grep -q '^COPY pii_guard.data_keys ' "$dr_files/shop.sql"
dr_absent "plain dump: no phone, document or master key" "$dr_files/shop.sql"
dr_absent "custom dump (as text): no phone, document or master key" \
	"$dr_files/shop_from_custom.sql"
dr_absent "custom dump (raw file): no phone, document or master key" "$dr_files/shop.dump"

# --- restore on the same server ------------------------------------------------------
pgg_psql dr_src -d postgres -c "CREATE DATABASE shop_copy"
pgg_ok "pg_restore into a fresh database succeeds" \
	pg_restore --exit-on-error -d shop_copy "$dr_files/shop.dump"
pgg_is "restored: same plaintexts" "$(dr_plaintexts dr_src shop_copy)" "$dr_expected"
pgg_is "restored: same data keys" "$(dr_keys dr_src shop_copy)" "$dr_src_keys"
pgg_is "restored: equality finds an old-key row" \
	"$(dr_sql dr_src shop_copy "SELECT id FROM customers WHERE phone = '${dr_phones[2]}'")" 3
pgg_is "restored: equality finds a new-key row" \
	"$(dr_sql dr_src shop_copy "SELECT id FROM customers WHERE phone = '${dr_phones[10]}'")" 11
pgg_is "restored: bytea equality finds a row" \
	"$(dr_sql dr_src shop_copy "SELECT id FROM customers
	                             WHERE doc = convert_to('${dr_docs[4]}', 'UTF8')::pii_guard.encrypted_bytea")" 5
# Each index on its own answers equality (the other one dropped inside a
# transaction that rolls back).
dr_btree_plan=$(pgg_psql dr_src -d shop_copy -tA <<SQL
BEGIN;
DROP INDEX customers_phone_hash;
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM customers WHERE phone = '${dr_phones[6]}';
SELECT id FROM customers WHERE phone = '${dr_phones[6]}';
ROLLBACK;
SQL
)
pgg_ok "restored: the btree (UNIQUE) index is used for equality" \
	grep -q 'Index Scan using customers_phone_key' <<<"$dr_btree_plan"
pgg_is "restored: the btree index finds the row" "$(tail -1 <<<"$dr_btree_plan")" 7
dr_hash_plan=$(pgg_psql dr_src -d shop_copy -tA <<SQL
BEGIN;
ALTER TABLE customers DROP CONSTRAINT customers_phone_key;
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM customers WHERE phone = '${dr_phones[7]}';
SELECT id FROM customers WHERE phone = '${dr_phones[7]}';
ROLLBACK;
SQL
)
pgg_ok "restored: the hash index is used for equality" \
	grep -q 'Index Scan using customers_phone_hash' <<<"$dr_hash_plan"
pgg_is "restored: the hash index finds the row" "$(tail -1 <<<"$dr_hash_plan")" 8

# UNIQUE rejects a duplicate plaintext.  The duplicate comes from a column,
# not a literal, so that the failing statement logged by the server holds no
# plaintext (the literal case is the last check of this script).
pgg_is "restored: UNIQUE rejects a duplicate phone" \
	"$(dr_error dr_src shop_copy "
	    INSERT INTO customers (id, name, phone)
	    SELECT 100, 'duplicate', p FROM (SELECT pii_guard.decrypt(phone) AS p
	                                      FROM customers WHERE id = 2) s")" \
	"23505 duplicate key value violates unique constraint \"customers_phone_key\""

pgg_is "restored: a new value is sealed under the restored active key" \
	"$(pgg_psql dr_src -d shop_copy -tA <<SQL
INSERT INTO customers (id, name, phone)
SELECT 13, 'new', '137' || '00000013';
SELECT pii_guard.key_id(phone) FROM customers WHERE id = 13;
SQL
)" "$dr_second_key"
pgg_is "restored: no data key was created" \
	"$(dr_keys dr_src shop_copy)" "$dr_src_keys"

# --- restore on a server with another master key -------------------------------------
pgg_new_cluster dr_other \
	"pii_guard.master_key_command = 'cat $PGG_WORK/keys/test-master-2.hex'"
pgg_start dr_other
pgg_psql dr_other -d postgres -c "CREATE DATABASE shop"
pgg_env dr_other
pgg_ok "pg_restore on a server with another master key succeeds" \
	pg_restore --exit-on-error -d shop "$dr_files/shop.dump"
pgg_is "other key: the data keys were restored as they were" \
	"$(dr_keys dr_other shop)" "$dr_src_keys"

dr_wrong='55000 pii_guard data key [0-9]+ is wrapped by a different master key'
dr_got=$(dr_error dr_other shop "SELECT pii_guard.decrypt(phone) FROM customers ORDER BY id")
pgg_ok "other key: decrypt() fails with 55000 'wrapped by a different master key' ($dr_got)" \
	grep -Eqx "$dr_wrong" <<<"$dr_got"
pgg_ok "other key: the error's hint says how to fix it" \
	grep -q 'HINT:  Start the server with the master key' "$dr_files/last_error"
dr_absent "other key: the decrypt error holds no plaintext or master key" "$dr_files/last_error"

dr_got=$(dr_error dr_other shop "INSERT INTO customers (id, name, phone) VALUES (20, 'new', '13600000020')")
pgg_ok "other key: INSERT of a new value fails with 55000 'wrapped by a different master key' ($dr_got)" \
	grep -Eqx "$dr_wrong" <<<"$dr_got"
dr_got=$(dr_error dr_other shop "SELECT pii_guard.encrypt('x')")
pgg_ok "other key: encrypt() fails the same way ($dr_got)" \
	grep -Eqx "$dr_wrong" <<<"$dr_got"
dr_got=$(dr_error dr_other shop "SELECT id FROM customers WHERE phone = '${dr_phones[0]}'")
pgg_ok "other key: equality on a plaintext fails the same way ($dr_got)" \
	grep -Eqx "$dr_wrong" <<<"$dr_got"
dr_got=$(dr_error dr_other shop "SELECT pii_guard.rotate_data_key()")
pgg_ok "other key: rotate_data_key() fails the same way ($dr_got)" \
	grep -Eqx "$dr_wrong" <<<"$dr_got"
pgg_is "other key: no data key was created under the wrong master key" \
	"$(dr_keys dr_other shop)" "$dr_src_keys"
pgg_is "other key: no row was added" \
	"$(dr_sql dr_other shop "SELECT count(*) FROM customers")" 12
pgg_is "other key: master_keys names the other fingerprint" \
	"$(dr_sql dr_other shop "SELECT fingerprint <> (SELECT encode(master_key_fingerprint, 'hex')
	                                                FROM pii_guard.data_keys LIMIT 1)
	                           FROM pii_guard.master_keys WHERE which = 'current'")" t

# Nothing is lost: the same cluster, restarted with the right master key.
pgg_stop dr_other
pgg_conf dr_other "pii_guard.master_key_command = 'cat $PGG_WORK/keys/test-master-1.hex'"
pgg_start dr_other
pgg_is "right key again: the same plaintexts" "$(dr_plaintexts dr_other shop)" "$dr_expected"
pgg_is "right key again: the same data keys" "$(dr_keys dr_other shop)" "$dr_src_keys"
pgg_is "right key again: equality finds the row" \
	"$(dr_sql dr_other shop "SELECT id FROM customers WHERE phone = '${dr_phones[11]}'")" 12

# --- logs ----------------------------------------------------------------------------
pgg_stop dr_src
pgg_stop dr_other
dr_absent "server log (same key): no plaintext, no master key" "$(pgg_log dr_src)"
dr_absent "server log (other key): no plaintext, no master key" "$(pgg_log dr_other)"
pgg_ok "server log (other key): the wrong-key error is logged" \
	grep -q 'is wrapped by a different master key' "$(pgg_log dr_other)"

# --- a server-raised error on a statement with a plaintext literal ------------------
# A UNIQUE violation is raised by PostgreSQL, not by pii_guard, so it lacks
# pii_guard's errhidestmt(); with the default log_min_error_statement = error
# the server logs "STATEMENT: INSERT ... '<plaintext>'" beside it.
pgg_start dr_src
dr_error dr_src shop "INSERT INTO customers (id, name, phone) VALUES (200, 'dup', '${dr_phones[3]}')" >/dev/null
pgg_is "UNIQUE violation on a plaintext literal: rejected" \
	"$(sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): .*/\1/p' "$dr_files/last_error")" 23505
pgg_stop dr_src
pgg_is "UNIQUE violation on a plaintext literal: the plaintext is not in the server log" \
	"$(grep -cF -- "${dr_phones[3]}" "$(pgg_log dr_src)")" 0
