# test/scenario/reencrypt_concurrent.sh -- pii_guard.reencrypt_column()
# re-encrypts a column to the active key in committed batches, safely while
# other sessions write, and resumes where an interrupted run stopped.
#
# Proves:
#  - with two writer sessions updating random rows for the whole run (one
#    writes fresh plaintexts, the other copies envelopes between rows, which
#    can bring values under the old key back into rows already done), every
#    row afterwards decrypts to the value its last writer wrote (no lost
#    update) and is under the active key; if the procedure ends with its
#    warning that writers kept old values coming, a second call after the
#    writers stopped finishes the job;
#  - an interrupted run (its backend terminated while it waits on a row lock
#    half way through) leaves its progress in pii_guard.reencrypt_progress;
#    the next call says "resuming re-encryption ... at block N", does only
#    the rest, removes the progress row, and leaves every row decrypting and
#    under the active key;
#  - a member of pii_guard_admin who is not a superuser, with SELECT and
#    UPDATE on the table, can run the procedure.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

rc_files=$PGG_WORK/reencrypt_concurrent_files
mkdir -p "$rc_files"
rc_rows=20000

rc_sql() { pgg_psql rcc -d rc -tAc "$1"; }

# rc_wait DESC SQL: poll until SQL returns 't' (at most 30 s).
rc_holds() { [ "$(rc_sql "$1")" = t ]; }	# rc_holds SQL: it returns true
rc_wait() {
	pgg_wait 30 rc_holds "$2" && return 0
	echo "  # timed out waiting for: $1"
	return 1
}

# Every row decrypts to the plaintext its last writer recorded beside it, and
# is under the given key: "decrypting|on key|rows".
rc_check() {
	rc_sql "SELECT count(*) FILTER (WHERE pii_guard.decrypt(phone) = expected),
	               count(*) FILTER (WHERE pii_guard.key_id(phone) = $1),
	               count(*)
	          FROM t"
}

pgg_new_cluster rcc "autovacuum = off"
pgg_start rcc
pgg_new_db rcc rc
pgg_psql rcc -d rc <<SQL
CREATE TABLE t (
    id          integer PRIMARY KEY,
    phone       pii_guard.encrypted_text NOT NULL,
    expected    text NOT NULL,          -- the plaintext last written to phone
    writer      integer,                -- which writer wrote it last
    updated_at  timestamptz
);
INSERT INTO t (id, phone, expected)
SELECT g, v, v FROM (SELECT g, '1390' || lpad(g::text, 7, '0') AS v
                       FROM generate_series(1, $rc_rows) g) s;
-- Writers stop when told to (or after 30 s or 5000 updates each).
CREATE TABLE rc_ctl (stop boolean NOT NULL);
INSERT INTO rc_ctl VALUES (false);
CREATE TABLE rc_writer_stats (writer integer, updates integer, older_key_writes integer);
ANALYZE t;
SQL
rc_key_a=$(rc_sql "SELECT DISTINCT pii_guard.key_id(phone) FROM t")
pgg_is "before: $rc_rows rows under the first key" "$(rc_check "$rc_key_a")" \
	"$rc_rows|$rc_rows|$rc_rows"

# --- re-encryption under concurrent writes ----------------------------------------------
# Writer 1 updates a random row to a fresh plaintext; writer 2 copies another
# random row's envelope and plaintext into it (an envelope still under key A
# lands in a row the procedure may already have done).  One transaction per
# update; phone and expected always change together.  The writers start
# before the rotation, and count the values they wrote under a key older than
# the one active just before their UPDATE: for writer 1 that must stay 0
# (a long-lived session must see the rotation), for writer 2 it counts the
# old envelopes it copied.
rc_writer() {	# rc_writer N
	local set_clause
	if [ "$1" = 1 ]; then
		set_clause="UPDATE t SET phone = 'w1-' || i || '-' || x, expected = 'w1-' || i || '-' || x,
		                writer = 1, updated_at = clock_timestamp()
		          WHERE id = x RETURNING pii_guard.key_id(phone) INTO k;"
	else
		set_clause="UPDATE t SET phone = s.phone, expected = s.expected,
		                writer = 2, updated_at = clock_timestamp()
		           FROM t AS s
		          WHERE t.id = x AND s.id = 1 + floor(random() * $rc_rows)::integer
		      RETURNING pii_guard.key_id(t.phone) INTO k;"
	fi
	pgg_psql rcc -d rc -c "
	DO \$w\$
	DECLARE
	    i integer := 0;
	    x integer;
	    k integer;
	    a integer;
	    older integer := 0;
	    t0 timestamptz := clock_timestamp();
	BEGIN
	    LOOP
	        EXIT WHEN i >= 5000 OR clock_timestamp() - t0 > interval '30 s'
	               OR (SELECT stop FROM rc_ctl);
	        i := i + 1;
	        x := 1 + floor(random() * $rc_rows)::integer;
	        -- (not the holder's two rows: their last write must stay its)
	        CONTINUE WHEN x IN (10000, 10001);
	        SELECT key_id INTO a FROM pii_guard.data_keys
	         WHERE purpose = 'encrypt' AND state = 'active';
	        $set_clause
	        IF k < a THEN
	            older := older + 1;
	        END IF;
	        COMMIT;
	        PERFORM pg_sleep(0.0005);
	    END LOOP;
	    INSERT INTO rc_writer_stats VALUES ($1, i, older);
	END
	\$w\$" >"$rc_files/writer$1.out" 2>&1
}
rc_writer 1 &
rc_w1=$!
rc_writer 2 &
rc_w2=$!
rc_wait "both writers under way" \
	"SELECT count(DISTINCT writer) = 2 AND count(*) >= 40 FROM t WHERE writer IN (1, 2)"
rc_rotated_at=$(rc_sql "SELECT clock_timestamp()")
rc_key_b=$(rc_sql "SELECT pii_guard.rotate_data_key()")
rc_wait "both writers write after the rotation" \
	"SELECT count(DISTINCT writer) = 2 AND count(*) >= 40 FROM t
	  WHERE writer IN (1, 2) AND updated_at > '$rc_rotated_at'"

# A third session makes the race certain instead of likely: in one open
# transaction it copies an envelope still under key A, with its plaintext,
# into row 10000 and writes a fresh value into row 10001, both in the middle
# of the table.  The procedure's batch must wait for it, then re-check the
# new row versions: row 10000 needs re-encrypting of its *new* value, row
# 10001 needs nothing.  (Fed through a pipe so that it stays open.)
exec {rc_hold_fd}> >(PGAPPNAME=rc_holder pgg_psql rcc -d rc >"$rc_files/holder.out" 2>&1)
cat >&"$rc_hold_fd" <<SQL
BEGIN;
UPDATE t SET (phone, expected) = (SELECT s.phone, s.expected FROM t AS s
                                   WHERE pii_guard.key_id(s.phone) = $rc_key_a
                                   ORDER BY s.id LIMIT 1),
             writer = 3, updated_at = clock_timestamp()
 WHERE id = 10000;
UPDATE t SET phone = 'held-10001', expected = 'held-10001',
             writer = 3, updated_at = clock_timestamp()
 WHERE id = 10001;
SQL
rc_wait "the holder has updated its rows" \
	"SELECT count(*) = 1 FROM pg_stat_activity
	  WHERE application_name = 'rc_holder' AND state = 'idle in transaction'"

rc_t0=$(rc_sql "SELECT clock_timestamp()")
PGAPPNAME=rc_reencrypt1 pgg_psql rcc -d rc \
	-c "CALL pii_guard.reencrypt_column('t', 'phone', 500)" >"$rc_files/call1.out" 2>&1 &
rc_call1=$!
pgg_ok "concurrent: the procedure waits for the open transaction's rows" \
	rc_wait "the procedure waits for the holder" \
	"SELECT (SELECT pid FROM pg_stat_activity WHERE application_name = 'rc_holder')
	        = ANY (pg_blocking_pids((SELECT pid FROM pg_stat_activity
	                                  WHERE application_name = 'rc_reencrypt1')))"
sleep 0.3	# the writers keep writing meanwhile
echo "COMMIT;" >&"$rc_hold_fd"
exec {rc_hold_fd}>&-
wait "$rc_call1"
rc_call1_rc=$?
rc_t1=$(rc_sql "SELECT clock_timestamp()")
rc_sql "UPDATE rc_ctl SET stop = true"
wait "$rc_w1"
rc_w1_rc=$?
wait "$rc_w2"
rc_w2_rc=$?
sed 's/^/  # /' "$rc_files/call1.out"
pgg_is "concurrent: the procedure ran without error" "$rc_call1_rc" 0
pgg_is "concurrent: both writers ran without error" "$rc_w1_rc $rc_w2_rc" "0 0"
pgg_is "concurrent: both writers wrote while the procedure ran" \
	"$(rc_sql "SELECT count(DISTINCT writer) FROM t
	            WHERE updated_at BETWEEN '$rc_t0' AND '$rc_t1'")" 2
rc_sql "SELECT '  # the procedure ran ' || round(extract(epoch FROM '$rc_t1'::timestamptz - '$rc_t0')::numeric, 2)
               || ' s; rows last written by a writer during that time: ' || count(*)
          FROM t WHERE updated_at BETWEEN '$rc_t0' AND '$rc_t1'"
rc_sql "SELECT '  # writer ' || writer || ': ' || updates || ' updates, '
               || older_key_writes || ' of them wrote a value under an older key'
          FROM rc_writer_stats ORDER BY writer"
pgg_is "concurrent: a session that saw the rotation writes under the new key only" \
	"$(rc_sql "SELECT older_key_writes FROM rc_writer_stats WHERE writer = 1")" 0

# The procedure may end with a warning when writer 2 kept bringing old-key
# values back; with the writers stopped, a second call must finish.
if grep -q 'still under older keys' "$rc_files/call1.out"; then
	echo "  # the writers outpaced the sweep; calling again now that they stopped"
	pgg_ok "concurrent: a second call after the writers stopped succeeds" \
		pgg_psql rcc -d rc -c "CALL pii_guard.reencrypt_column('t', 'phone', 500)"
else
	pgg_ok "concurrent: the procedure reports what it did" \
		grep -q "NOTICE:  re-encrypted [0-9]* values of t.phone to data key $rc_key_b" \
		"$rc_files/call1.out"
fi
pgg_is "concurrent: the open transaction committed its rows" \
	"$(rc_sql "SELECT count(*) FROM t WHERE writer = 3")" 2
pgg_is "concurrent: rows 10000 and 10001 hold their last writes" \
	"$(rc_sql "SELECT count(*) FROM t WHERE id IN (10000, 10001)
	             AND pii_guard.decrypt(phone) = expected AND pii_guard.key_id(phone) = $rc_key_b")" 2
pgg_is "concurrent: every row decrypts to its last write, under the active key" \
	"$(rc_check "$rc_key_b")" "$rc_rows|$rc_rows|$rc_rows"
pgg_is "concurrent: no progress row is left" \
	"$(rc_sql "SELECT count(*) FROM pii_guard.reencrypt_progress")" 0

# --- an interrupted run resumes ----------------------------------------------------------
rc_sql "VACUUM t" >/dev/null
rc_key_c=$(rc_sql "SELECT pii_guard.rotate_data_key()")
# Hold a row lock on the row in the last block: the procedure commits every
# batch before it and then waits there.
rc_last=$(rc_sql "SELECT id FROM t ORDER BY ctid DESC LIMIT 1")
PGAPPNAME=rc_blocker pgg_psql rcc -d rc \
	-c "SELECT 1 FROM t WHERE id = $rc_last FOR UPDATE; SELECT pg_sleep(60)" \
	>/dev/null 2>&1 &
rc_blocker=$!
rc_wait "the blocker holds its row lock" \
	"SELECT count(*) = 1 FROM pg_stat_activity
	  WHERE application_name = 'rc_blocker' AND wait_event = 'PgSleep'"
PGAPPNAME=rc_reencrypt pgg_psql rcc -d rc \
	-c "CALL pii_guard.reencrypt_column('t', 'phone', 500)" >"$rc_files/call2.out" 2>&1 &
rc_call2=$!
pgg_ok "interrupted: the procedure commits batches, then waits on the locked row" \
	rc_wait "the procedure waits on the locked row" \
	"SELECT (SELECT next_block > 0 FROM pii_guard.reencrypt_progress
	          WHERE table_oid = 't'::regclass AND column_name = 'phone')
	    AND EXISTS (SELECT FROM pg_stat_activity
	                 WHERE application_name = 'rc_reencrypt' AND wait_event_type = 'Lock')"
rc_sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'rc_reencrypt'" >/dev/null
wait "$rc_call2"
rc_call2_rc=$?
pgg_ok "interrupted: the terminated CALL failed" [ "$rc_call2_rc" -ne 0 ]
rc_sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'rc_blocker'" >/dev/null
wait "$rc_blocker"

rc_progress=$(rc_sql "SELECT key_id, next_block FROM pii_guard.reencrypt_progress
                       WHERE table_oid = 't'::regclass AND column_name = 'phone'")
pgg_ok "interrupted: reencrypt_progress keeps the key and a block > 0 ($rc_progress)" \
	grep -Eqx "$rc_key_c\|[1-9][0-9]*" <<<"$rc_progress"
rc_block=${rc_progress#*|}
rc_done=$(rc_sql "SELECT count(*) FROM t WHERE pii_guard.key_id(phone) = $rc_key_c")
pgg_ok "interrupted: the committed batches stay done ($rc_done rows on the new key)" \
	[ "$rc_done" -gt 0 -a "$rc_done" -lt "$rc_rows" ]
pgg_is "interrupted: every row still decrypts to its value" \
	"$(rc_sql "SELECT count(*) FILTER (WHERE pii_guard.decrypt(phone) = expected) FROM t")" "$rc_rows"

pgg_psql rcc -d rc -c "CALL pii_guard.reencrypt_column('t', 'phone', 500)" \
	>"$rc_files/call3.out" 2>&1
pgg_is "resumed: the CALL succeeds" "$?" 0
sed 's/^/  # /' "$rc_files/call3.out"
pgg_ok "resumed: NOTICE 'resuming re-encryption of t.phone at block $rc_block'" \
	grep -q "NOTICE:  resuming re-encryption of t.phone at block $rc_block\$" "$rc_files/call3.out"
pgg_ok "resumed: it re-encrypted only the rest ($((rc_rows - rc_done)) values)" \
	grep -q "NOTICE:  re-encrypted $((rc_rows - rc_done)) values of t.phone to data key $rc_key_c" \
	"$rc_files/call3.out"
pgg_is "resumed: the progress row is removed" \
	"$(rc_sql "SELECT count(*) FROM pii_guard.reencrypt_progress")" 0
pgg_is "resumed: every row decrypts to its value, under the active key" \
	"$(rc_check "$rc_key_c")" "$rc_rows|$rc_rows|$rc_rows"

# --- a key administrator who is not a superuser --------------------------------------------
# The procedure runs as its caller; a member of pii_guard_admin (granted
# EXECUTE on it) with SELECT and UPDATE on the table must be able to run it.
pgg_psql rcc -d rc -c "CREATE ROLE rc_keyadmin LOGIN IN ROLE pii_guard_admin;
                       GRANT SELECT, UPDATE ON t TO rc_keyadmin"
rc_key_d=$(rc_sql "SELECT pii_guard.rotate_data_key()")
psql -X -q -h "$(pgg_sock rcc)" -p 5432 -U rc_keyadmin -d rc -v VERBOSITY=verbose \
	-c "CALL pii_guard.reencrypt_column('t', 'phone', 500)" >"$rc_files/call4.out" 2>&1
rc_call4_rc=$?
sed 's/^/  # /' "$rc_files/call4.out" | head -3
pgg_is "pii_guard_admin member: reencrypt_column() succeeds" "$rc_call4_rc" 0
pgg_is "pii_guard_admin member: every row decrypts, under the active key" \
	"$(rc_check "$rc_key_d")" "$rc_rows|$rc_rows|$rc_rows"
# --- a rotation while it runs ----------------------------------------------------------------
# The key is rotated while the procedure waits on a locked row half way
# through: it must finish under the newest key, not the one it started with.
rc_sql "VACUUM t" >/dev/null
rc_key_e=$(rc_sql "SELECT pii_guard.rotate_data_key()")
PGAPPNAME=rc_blocker pgg_psql rcc -d rc \
	-c "SELECT 1 FROM t WHERE id = $rc_last FOR UPDATE; SELECT pg_sleep(60)" \
	>/dev/null 2>&1 &
rc_blocker=$!
rc_wait "the blocker holds its row lock" \
	"SELECT count(*) = 1 FROM pg_stat_activity
	  WHERE application_name = 'rc_blocker' AND wait_event = 'PgSleep'"
PGAPPNAME=rc_reencrypt pgg_psql rcc -d rc \
	-c "CALL pii_guard.reencrypt_column('t', 'phone', 500)" >"$rc_files/call5.out" 2>&1 &
rc_call5=$!
rc_wait "the procedure waits on the locked row" \
	"SELECT EXISTS (SELECT FROM pg_stat_activity
	                 WHERE application_name = 'rc_reencrypt' AND wait_event_type = 'Lock')" >/dev/null
rc_key_f=$(rc_sql "SELECT pii_guard.rotate_data_key()")
rc_sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'rc_blocker'" >/dev/null
wait "$rc_blocker"
wait "$rc_call5"
pgg_is "rotated mid-run: the CALL succeeds" "$?" 0
sed 's/^/  # /' "$rc_files/call5.out"
pgg_is "rotated mid-run: every row decrypts, under the key rotated to mid-run" \
	"$(rc_check "$rc_key_f")" "$rc_rows|$rc_rows|$rc_rows"
pgg_ok "rotated mid-run: the keys differ ($rc_key_e, $rc_key_f)" [ "$rc_key_e" != "$rc_key_f" ]
pgg_stop rcc
