# test/scenario/master_key_rotation.sh -- master key rotation by re-wrapping
# the data keys; no step makes any value unreadable.
#
# Proves:
#  - values written under master key 1 (two encryption keys, after a data key
#    rotation) still decrypt after a restart with master key 2 as current and
#    key 1 as pii_guard.previous_master_key_command; equality still works and
#    new values can be written, also under a data key created in that state;
#  - pii_guard.key_status says which keys are not yet wrapped by the current
#    master key;
#  - rewrap_data_keys() is refused (42501) to an ordinary role, allowed to a
#    member of pii_guard_admin, returns how many keys it re-wrapped (then 0),
#    and afterwards every key is wrapped by the current master key;
#  - after a restart with master key 2 alone, everything decrypts;
#  - data keys are per database: in a database where nobody ran
#    rewrap_data_keys(), a restart with master key 2 alone makes the values
#    unreadable (55000), and rotate_data_key() there must fail the same way
#    instead of creating an active key under master key 2 that master key 1
#    cannot unwrap; that database keeps working under master key 1;
#  - a restart with master key 1 alone now fails every key use with 55000
#    "wrapped by a different master key" (rewrap_data_keys() and
#    rotate_data_key() too), and changes nothing: back on key 2, everything
#    decrypts, new values can be written, the data keys are as they were;
#  - no master key appears in the server log.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

mr_files=$PGG_WORK/master_key_rotation_files
mkdir -p "$mr_files"
mr_key1="'cat $PGG_WORK/keys/test-master-1.hex'"
mr_key2="'cat $PGG_WORK/keys/test-master-2.hex'"

mr_sql() { pgg_psql mkr -d mr -tAc "$1"; }

# The data keys, their wrapping shortened to a digest: key_id|purpose|state|
# master key fingerprint|md5 of the wrapped key.
mr_keys() {
	mr_sql "SELECT key_id, purpose, state, encode(master_key_fingerprint, 'hex'),
	               left(md5(wrapped_key), 12)
	          FROM pii_guard.data_keys ORDER BY 1"
}

# mr_error ROLE SQL [DB]: run SQL as ROLE that must fail; print "SQLSTATE
# message" of its first ERROR (or "no error").
mr_error() {
	if psql -X -q -h "$(pgg_sock mkr)" -p 5432 -U "$1" -d "${3:-mr}" \
		-v VERBOSITY=verbose -c "$2" >/dev/null 2>"$mr_files/last_error"; then
		echo "no error"
		return
	fi
	sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): \(.*\)$/\1 \2/p' "$mr_files/last_error" | head -1
}

# mr_restart CURRENT PREVIOUS: restart with these key commands ('' = unset).
mr_restart() {
	pgg_stop mkr
	pgg_conf mkr "pii_guard.master_key_command = $1" \
		"pii_guard.previous_master_key_command = $2"
	pgg_start mkr
}

# Rows with the plaintext their id says; returns "decrypted|rows".
mr_check_all() {
	mr_sql "SELECT count(*) FILTER (WHERE pii_guard.decrypt(phone) = '139' || lpad(id::text, 8, '0')
	                                  AND pii_guard.decrypt(doc) = int4send(id)),
	               count(*)
	          FROM t"
}

mr_insert() {	# mr_insert FIRST LAST
	mr_sql "INSERT INTO t SELECT g, '139' || lpad(g::text, 8, '0'), int4send(g)
	          FROM generate_series($1, $2) g"
}

# --- master key 1 ---------------------------------------------------------------
pgg_new_cluster mkr
pgg_start mkr
pgg_new_db mkr mr
pgg_psql mkr -d mr <<'SQL'
CREATE TABLE t (id integer PRIMARY KEY,
                phone pii_guard.encrypted_text UNIQUE,
                doc pii_guard.encrypted_bytea);
CREATE ROLE mr_clerk LOGIN;
CREATE ROLE mr_keyadmin LOGIN IN ROLE pii_guard_admin;
GRANT SELECT, INSERT ON t TO mr_clerk, mr_keyadmin;
SQL
mr_insert 1 500
mr_sql "SELECT pii_guard.rotate_data_key()" >/dev/null
mr_insert 501 1000

# A second database whose keys nobody re-wraps (data keys, and so
# rewrap_data_keys(), are per database).  Its keys stay under master key 1.
pgg_new_db mkr mr_other
pgg_psql mkr -d mr_other -c "CREATE TABLE t (id integer PRIMARY KEY, phone pii_guard.encrypted_text);
	INSERT INTO t SELECT g, '1370000000' || g FROM generate_series(1, 5) g"
mr_other_sql() { pgg_psql mkr -d mr_other -tAc "$1"; }
mr_other_keys() {
	mr_other_sql "SELECT key_id, purpose, state, encode(master_key_fingerprint, 'hex'),
	                     left(md5(wrapped_key), 12)
	                FROM pii_guard.data_keys ORDER BY 1"
}
mr_other_before=$(mr_other_keys)
pgg_is "key 1: 1000 values decrypt" "$(mr_check_all)" "1000|1000"
pgg_is "key 1: values under two encryption keys" \
	"$(mr_sql "SELECT count(DISTINCT pii_guard.key_id(phone)) FROM t")" 2
mr_fp1=$(mr_sql "SELECT fingerprint FROM pii_guard.master_keys WHERE which = 'current'")
# The keys so far, all wrapped by master key 1.
mr_old_ids=$(mr_sql "SELECT string_agg(key_id::text, ',' ORDER BY key_id) FROM pii_guard.data_keys")
mr_nkeys=$(mr_sql "SELECT count(*) FROM pii_guard.data_keys")
mr_wrapped() {
	mr_sql "SELECT key_id, purpose, wrapped_key FROM pii_guard.data_keys
	         WHERE key_id IN ($mr_old_ids) ORDER BY 1"
}
mr_wrapped_before=$(mr_wrapped)

# --- master key 2, key 1 as the previous one --------------------------------------
mr_restart "$mr_key2" "$mr_key1"
pgg_is "key 2 + previous key 1: both master keys loaded" \
	"$(mr_sql "SELECT string_agg(which || ':' || available, ',' ORDER BY which)
	             FROM pii_guard.master_keys")" "current:true,previous:true"
pgg_is "key 2 + previous key 1: the previous one is the old key" \
	"$(mr_sql "SELECT fingerprint FROM pii_guard.master_keys WHERE which = 'previous'")" "$mr_fp1"
mr_fp2=$(mr_sql "SELECT fingerprint FROM pii_guard.master_keys WHERE which = 'current'")
pgg_ok "key 2 + previous key 1: the current one is another key" [ "$mr_fp2" != "$mr_fp1" ]
pgg_is "key 2 + previous key 1: every value decrypts" "$(mr_check_all)" "1000|1000"
pgg_is "key 2 + previous key 1: equality finds old-key and new-key rows" \
	"$(mr_sql "SELECT string_agg(id::text, ',' ORDER BY id) FROM t
	            WHERE phone IN ('13900000007', '13900000777')")" "7,777"
pgg_is "key 2 + previous key 1: no key is wrapped by the current master key yet" \
	"$(mr_sql "SELECT count(*) FILTER (WHERE NOT wrapped_by_current_master_key) || '/' || count(*)
	             FROM pii_guard.key_status WHERE key_id IN ($mr_old_ids)")" "$mr_nkeys/$mr_nkeys"
mr_insert 1001 1100
pgg_is "key 2 + previous key 1: new values are written and decrypt" "$(mr_check_all)" "1100|1100"
mr_new_key=$(mr_sql "SELECT pii_guard.rotate_data_key()")
mr_insert 1101 1200
pgg_is "key 2 + previous key 1: a key created now is wrapped by the current master key" \
	"$(mr_sql "SELECT wrapped_by_current_master_key, master_key_fingerprint
	             FROM pii_guard.key_status WHERE key_id = $mr_new_key")" "t|$mr_fp2"
pgg_is "key 2 + previous key 1: values under three data keys decrypt" "$(mr_check_all)" "1200|1200"

pgg_is "rewrap_data_keys() is refused to an ordinary role (42501)" \
	"$(mr_error mr_clerk "SELECT pii_guard.rewrap_data_keys()")" \
	"42501 permission denied for function rewrap_data_keys"
pgg_is "... which changed nothing" \
	"$(mr_sql "SELECT count(*) FROM pii_guard.key_status WHERE NOT wrapped_by_current_master_key")" \
	"$mr_nkeys"
pgg_is "a pii_guard_admin member re-wraps the old keys" \
	"$(psql -X -q -tA -h "$(pgg_sock mkr)" -p 5432 -U mr_keyadmin -d mr \
		-c "SELECT pii_guard.rewrap_data_keys()")" "$mr_nkeys"
pgg_is "after rewrap every key is wrapped by the current master key" \
	"$(mr_sql "SELECT bool_and(wrapped_by_current_master_key),
	                  bool_and(master_key_fingerprint = '$mr_fp2')
	             FROM pii_guard.key_status")" "t|t"
mr_wrapped_after=$(mr_wrapped)
pgg_is "the re-wrapped keys are the same keys" \
	"$(cut -d'|' -f1,2 <<<"$mr_wrapped_after")" "$(cut -d'|' -f1,2 <<<"$mr_wrapped_before")"
pgg_is "... each with a new wrapping" \
	"$(comm -12 <(echo "$mr_wrapped_before") <(echo "$mr_wrapped_after") | wc -l)" 0
pgg_is "rewrap_data_keys() again has nothing to do" \
	"$(mr_sql "SELECT pii_guard.rewrap_data_keys()")" 0
pgg_is "after rewrap every value decrypts" "$(mr_check_all)" "1200|1200"

# --- master key 2 alone ------------------------------------------------------------
mr_restart "$mr_key2" "''"
pgg_is "key 2 alone: no previous master key" \
	"$(mr_sql "SELECT available FROM pii_guard.master_keys WHERE which = 'previous'")" f
pgg_is "key 2 alone: every value decrypts" "$(mr_check_all)" "1200|1200"
mr_insert 1201 1250
pgg_is "key 2 alone: new values are written and decrypt" "$(mr_check_all)" "1250|1250"
mr_keys_key2=$(mr_keys)

# The database that was not re-wrapped is, correctly, unreadable now; and no
# key may be created there under master key 2 either: the active key would
# be one that master key 1 cannot unwrap.
mr_got=$(mr_error postgres "SELECT pii_guard.decrypt(phone) FROM t" mr_other)
pgg_ok "key 2 alone, database not re-wrapped: decrypt() fails with 55000 ($mr_got)" \
	grep -Eqx '55000 pii_guard data key [0-9]+ is wrapped by a different master key' <<<"$mr_got"
mr_got=$(mr_error postgres "SELECT pii_guard.rotate_data_key()" mr_other)
pgg_ok "key 2 alone, database not re-wrapped: rotate_data_key() fails with 55000 ($mr_got)" \
	grep -Eqx '55000 pii_guard data key [0-9]+ is wrapped by a different master key' <<<"$mr_got"
pgg_is "key 2 alone, database not re-wrapped: no data key was created or retired" \
	"$(mr_other_keys)" "$mr_other_before"

# --- master key 1 alone: refused, harmlessly ---------------------------------------------
mr_restart "$mr_key1" "''"
mr_wrong='55000 pii_guard data key [0-9]+ is wrapped by a different master key'
mr_got=$(mr_error postgres "SELECT pii_guard.decrypt(phone) FROM t")
pgg_ok "key 1 alone: decrypt() fails with 55000 'wrapped by a different master key' ($mr_got)" \
	grep -Eqx "$mr_wrong" <<<"$mr_got"
mr_got=$(mr_error postgres "INSERT INTO t VALUES (5000, '13900005000')")
pgg_ok "key 1 alone: INSERT fails the same way ($mr_got)" grep -Eqx "$mr_wrong" <<<"$mr_got"
mr_got=$(mr_error postgres "SELECT pii_guard.rewrap_data_keys()")
pgg_ok "key 1 alone: rewrap_data_keys() fails the same way ($mr_got)" \
	grep -Eqx "$mr_wrong" <<<"$mr_got"
mr_got=$(mr_error postgres "SELECT pii_guard.rotate_data_key()")
pgg_ok "key 1 alone: rotate_data_key() fails the same way ($mr_got)" \
	grep -Eqx "$mr_wrong" <<<"$mr_got"
pgg_is "key 1 alone: no data key was created or retired" \
	"$(mr_keys)" "$mr_keys_key2"

# The database that was not re-wrapped works under master key 1 as before.
pgg_is "key 1 alone, database not re-wrapped: its values decrypt" \
	"$(mr_other_sql "SELECT string_agg(pii_guard.decrypt(phone), ',' ORDER BY id) FROM t")" \
	"13700000001,13700000002,13700000003,13700000004,13700000005"
mr_got=$(mr_error postgres "INSERT INTO t VALUES (6, '13700000006')" mr_other)
pgg_is "key 1 alone, database not re-wrapped: new values can be written" "$mr_got" "no error"

# --- back on master key 2: nothing was lost ------------------------------------------------
mr_restart "$mr_key2" "''"
pgg_is "key 2 again: every value decrypts" "$(mr_check_all)" "1250|1250"
mr_got=$(mr_error postgres "INSERT INTO t VALUES (5001, '13900005001', int4send(5001))")
pgg_is "key 2 again: new values can be written" "$mr_got" "no error"
pgg_is "key 2 again: the data keys are unchanged" \
	"$(mr_keys)" "$mr_keys_key2"
pgg_stop mkr

pgg_is "the server log shows no master key" \
	"$(grep -ciF -e "$(cat "$PGG_WORK/keys/test-master-1.hex")" \
		-e "$(cat "$PGG_WORK/keys/test-master-2.hex")" "$(pgg_log mkr)")" 0
pgg_is "the server log shows no plaintext of a failed INSERT" \
	"$(grep -cF -e 13900005000 -e 13900005001 -e 13700000006 "$(pgg_log mkr)")" 0
