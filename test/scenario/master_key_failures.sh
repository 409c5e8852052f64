# test/scenario/master_key_failures.sh -- a missing, failing or malformed
# master key command never stops the server, and never leaks what it printed.
#
# Proves, for each of: key command unset, a command that exits non-zero
# (after printing a valid-looking key, and plain `false`), a command printing
# non-hex, too few hex digits, and far too many, and one that never finishes
# (killed after pii_guard.master_key_timeout):
#  - the server starts, and logs a WARNING naming the reason;
#  - CREATE EXTENSION pii_guard works;
#  - encrypt(), an INSERT into an encrypted column, equality on a plaintext,
#    rotate_data_key() and decrypt() of values written earlier under a good
#    key all fail with SQLSTATE 55000 "pii_guard master key is not available",
#    the reason as DETAIL and a HINT;
#  - pii_guard.master_keys reports available = false and the reason;
#  - whatever the command printed (a distinctive fake secret) appears neither
#    in the server log nor in any error, and neither does the plaintext of the
#    failed INSERT;
#  - restarted with a good command, the values written before decrypt again
#    (a failing previous_master_key_command beside it is reported, and is
#    harmless).
# And, with a good key: a non-superuser can neither SHOW the key command
# settings (42501) nor see them in pg_settings.  And without
# shared_preload_libraries, CREATE EXTENSION pii_guard fails, saying that it
# must be loaded via shared_preload_libraries.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

mk_files=$PGG_WORK/master_key_failures_files
mkdir -p "$mk_files"
: >"$mk_files/all_errors"

# Every bad command prints something that contains this; it must never be
# seen again.
mk_secret=deadbeefcafef00d
mk_good="pii_guard.master_key_command = 'cat $PGG_WORK/keys/test-master-1.hex'"
mk_plain=13555550001		# plaintext of the INSERT that must fail

mk_sql() { pgg_psql "$1" -d "$2" -tAc "$3"; }

# mk_error CLUSTER DB SQL: run SQL that must fail; print "SQLSTATE message" of
# its first ERROR (or "no error").  Its stderr is kept in $mk_files/last_error
# and appended to $mk_files/all_errors.
mk_error() {
	if pgg_psql "$1" -d "$2" -v VERBOSITY=verbose -c "$3" \
		>/dev/null 2>"$mk_files/last_error"; then
		echo "no error"
	else
		sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): \(.*\)$/\1 \2/p' "$mk_files/last_error" | head -1
	fi
	cat "$mk_files/last_error" >>"$mk_files/all_errors"
}

# Byte size of a cluster's server log, to look at what a restart added.
mk_log_size() { stat -c %s "$(pgg_log "$1")" 2>/dev/null || echo 0; }

# --- a cluster with data written under a good key ------------------------------------
pgg_new_cluster mkf
pgg_start mkf
pgg_new_db mkf mk_data
pgg_psql mkf -d mk_data <<'SQL'
CREATE TABLE t (id integer PRIMARY KEY, phone pii_guard.encrypted_text);
INSERT INTO t SELECT g, '1380000000' || g FROM generate_series(1, 5) g;
SQL
mk_data_expected=$(mk_sql mkf mk_data "SELECT string_agg(pii_guard.decrypt(phone), ',' ORDER BY id) FROM t")
pgg_is "good key: data written" "$mk_data_expected" \
	"13800000001,13800000002,13800000003,13800000004,13800000005"

# mk_case NAME 'CONF VALUE' 'EXPECTED PROBLEM': restart with the given key
# command and check everything a broken key must (and must not) do.
mk_n=0
mk_case() {
	local name=$1 value=$2 problem=$3 mark db got
	mk_n=$((mk_n + 1))
	db=mk_case_$mk_n
	echo "  # case $name"
	pgg_stop mkf
	pgg_conf mkf "pii_guard.master_key_command = $value"
	mark=$(mk_log_size mkf)
	pgg_ok "$name: the server starts" pgg_start mkf
	tail -c +$((mark + 1)) "$(pgg_log mkf)" >"$mk_files/startup_log"
	pgg_ok "$name: the log has a WARNING naming the reason" \
		grep -qF "WARNING:  pii_guard: no master key: $problem" "$mk_files/startup_log"

	pgg_psql mkf -d postgres -c "CREATE DATABASE $db"
	pgg_ok "$name: CREATE EXTENSION pii_guard works" \
		pgg_psql mkf -d "$db" -c "CREATE EXTENSION pii_guard;
			CREATE TABLE t (id integer PRIMARY KEY, phone pii_guard.encrypted_text)"
	pgg_is "$name: master_keys reports it unavailable, with the reason" \
		"$(mk_sql mkf "$db" "SELECT available, fingerprint IS NULL, problem
		                       FROM pii_guard.master_keys WHERE which = 'current'")" \
		"f|t|$problem"

	got=$(mk_error mkf "$db" "SELECT pii_guard.encrypt('x')")
	pgg_is "$name: encrypt() fails with 55000" "$got" \
		"55000 pii_guard master key is not available"
	pgg_ok "$name: ... with the reason as DETAIL" \
		grep -qxF "DETAIL:  $problem." "$mk_files/last_error"
	pgg_ok "$name: ... and a HINT" \
		grep -q '^HINT:  Set pii_guard.master_key_command' "$mk_files/last_error"
	pgg_is "$name: INSERT into an encrypted column fails with 55000" \
		"$(mk_error mkf "$db" "INSERT INTO t VALUES (1, '$mk_plain')")" \
		"55000 pii_guard master key is not available"
	pgg_is "$name: equality on a plaintext fails with 55000" \
		"$(mk_error mkf "$db" "SELECT id FROM t WHERE phone = '$mk_plain'")" \
		"55000 pii_guard master key is not available"
	pgg_is "$name: rotate_data_key() fails with 55000" \
		"$(mk_error mkf "$db" "SELECT pii_guard.rotate_data_key()")" \
		"55000 pii_guard master key is not available"
	pgg_is "$name: decrypt() of values written earlier fails with 55000" \
		"$(mk_error mkf mk_data "SELECT pii_guard.decrypt(phone) FROM t")" \
		"55000 pii_guard master key is not available"
	pgg_is "$name: no data key was created" \
		"$(mk_sql mkf "$db" "SELECT count(*) FROM pii_guard.data_keys")" 0
}

mk_case "unset" "''" \
	"pii_guard.master_key_command is not set"
mk_case "exits 3 after printing a key" "'echo ${mk_secret}${mk_secret}${mk_secret}${mk_secret}; exit 3'" \
	"pii_guard.master_key_command failed: child process exited with exit code 3"
mk_case "false" "'false'" \
	"pii_guard.master_key_command failed: child process exited with exit code 1"
mk_case "non-hex output" "'echo ${mk_secret}${mk_secret}${mk_secret}${mk_secret:0:12}wxyz'" \
	"the output of pii_guard.master_key_command is not 64 hexadecimal digits"
mk_case "too few hex digits" "'echo ${mk_secret}${mk_secret}${mk_secret}'" \
	"the output of pii_guard.master_key_command is not 64 hexadecimal digits"
mk_case "far too many hex digits" "'for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do printf ${mk_secret}; done'" \
	"the output of pii_guard.master_key_command is not 64 hexadecimal digits"

# A command that never finishes: killed (with what it started) after
# pii_guard.master_key_timeout, and the server starts without the key.
pgg_conf mkf "pii_guard.master_key_timeout = 2"
mk_case "hangs" "'echo ${mk_secret}; sleep 597'" \
	"pii_guard.master_key_command did not finish within 2 seconds (pii_guard.master_key_timeout)"
pgg_ok "hangs: the command and what it started were killed" \
	bash -c '! pgrep -f "sleep [5]97" >/dev/null'
pgg_conf mkf "pii_guard.master_key_timeout = 30"

# --- a good key again: nothing was lost ------------------------------------------------
# (With a failing previous_master_key_command beside it: that is reported,
# and does not get in the way of the current key.)
pgg_stop mkf
pgg_conf mkf "$mk_good" \
	"pii_guard.previous_master_key_command = 'echo ${mk_secret}; exit 4'"
mk_mark=$(mk_log_size mkf)
pgg_start mkf
pgg_is "good key again: master_keys reports it available" \
	"$(mk_sql mkf mk_data "SELECT available, problem IS NULL FROM pii_guard.master_keys
	                        WHERE which = 'current'")" "t|t"
pgg_is "failing previous key command: reported in master_keys" \
	"$(mk_sql mkf mk_data "SELECT available, problem FROM pii_guard.master_keys
	                        WHERE which = 'previous'")" \
	"f|pii_guard.previous_master_key_command failed: child process exited with exit code 4"
pgg_ok "failing previous key command: a WARNING in the log" \
	grep -qF "WARNING:  pii_guard: no previous master key: pii_guard.previous_master_key_command failed" \
	<(tail -c +$((mk_mark + 1)) "$(pgg_log mkf)")
pgg_is "good key again: the values written before decrypt" \
	"$(mk_sql mkf mk_data "SELECT string_agg(pii_guard.decrypt(phone), ',' ORDER BY id) FROM t")" \
	"$mk_data_expected"

# The key command settings are hidden from a non-superuser.
pgg_psql mkf -d mk_data -c "CREATE ROLE mk_clerk LOGIN"
mk_clerk_error() {
	if psql -X -q -h "$(pgg_sock mkf)" -p 5432 -U mk_clerk -d mk_data \
		-v VERBOSITY=verbose -c "$1" >/dev/null 2>"$mk_files/last_error"; then
		echo "no error"
	else
		sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): .*/\1/p' "$mk_files/last_error" | head -1
	fi
	cat "$mk_files/last_error" >>"$mk_files/all_errors"
}
pgg_is "non-superuser: SHOW pii_guard.master_key_command is refused (42501)" \
	"$(mk_clerk_error "SHOW pii_guard.master_key_command")" 42501
pgg_is "non-superuser: SHOW pii_guard.previous_master_key_command is refused (42501)" \
	"$(mk_clerk_error "SHOW pii_guard.previous_master_key_command")" 42501
pgg_is "non-superuser: current_setting() is refused (42501)" \
	"$(mk_clerk_error "SELECT current_setting('pii_guard.master_key_command')")" 42501
pgg_is "non-superuser: the settings are not in pg_settings" \
	"$(psql -X -q -tA -h "$(pgg_sock mkf)" -p 5432 -U mk_clerk -d mk_data \
		-c "SELECT count(*) FROM pg_settings
		     WHERE name IN ('pii_guard.master_key_command',
		                    'pii_guard.previous_master_key_command')")" 0
pgg_is "superuser: the settings are in pg_settings" \
	"$(mk_sql mkf mk_data "SELECT count(*) FROM pg_settings
	                        WHERE name IN ('pii_guard.master_key_command',
	                                       'pii_guard.previous_master_key_command')")" 2
pgg_stop mkf

# Nothing a bad command printed, and no plaintext of a failed INSERT, is in
# the log or in any error.
pgg_is "the server log never shows what a key command printed" \
	"$(grep -ciF "$mk_secret" "$(pgg_log mkf)")" 0
pgg_is "no error ever shows what a key command printed" \
	"$(grep -ciF "$mk_secret" "$mk_files/all_errors")" 0
pgg_is "the server log never shows the plaintext of a failed INSERT" \
	"$(grep -cF "$mk_plain" "$(pgg_log mkf)")" 0
pgg_is "the server log never shows the master key" \
	"$(grep -ciF "$(cat "$PGG_WORK/keys/test-master-1.hex")" "$(pgg_log mkf)")" 0

# --- without shared_preload_libraries ----------------------------------------------------
pgg_new_cluster mknopre "shared_preload_libraries = ''"
pgg_start mknopre
pgg_is "not preloaded: CREATE EXTENSION pii_guard fails with 55000" \
	"$(mk_error mknopre postgres "CREATE EXTENSION pii_guard")" \
	"55000 pii_guard must be loaded via shared_preload_libraries"
pgg_ok "not preloaded: ... with a HINT to add it" \
	grep -q "^HINT:  Add pii_guard to shared_preload_libraries" "$mk_files/last_error"
pgg_is "not preloaded: LOAD fails the same way" \
	"$(mk_error mknopre postgres "LOAD 'pii_guard'")" \
	"55000 pii_guard must be loaded via shared_preload_libraries"
pgg_is "not preloaded: nothing of the extension is left behind" \
	"$(mk_sql mknopre postgres "SELECT count(*) FROM pg_namespace WHERE nspname = 'pii_guard'")" 0
pgg_stop mknopre
