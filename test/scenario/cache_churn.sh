# test/scenario/cache_churn.sh -- governed roles churning DDL in their own
# temp schemas neither break, open up nor slow down anyone else.
#
# pii_guard keeps per-backend caches (protected tables, access decisions,
# keys, export limits).  A governed role is free to create, replace, alter
# and drop functions, tables and views in its own temp schema (and in a
# schema of its own) as fast as it likes, and to make its own statements
# fail right after; none of that is a policy change.  Seeded on the CRM
# fixture (test/fixtures/crm.sql) with 4,000 more customers and a unique
# index on phone, this runs readers and writers twice for $cc_secs seconds,
# at fixed rates (pgbench -R, one client each, per-transaction logs):
#
#   support_dan   -M prepared  by id, and by phone (the blind index)
#   intern_fay    -M simple    10 masked rows at a time
#   sales_bob     -M prepared  UPDATE and INSERT through the masking view
#   mgr_eve       -M simple    UPDATE through the masking view
#
# once QUIET and once under CHURN: three governed roles loop as fast as
# they can, each in its own session, until the load is over --
#
#   mkt_amy (marketing)   functions: CREATE OR REPLACE FUNCTION pg_temp.f,
#                         ALTER FUNCTION ... COST, CREATE/REPLACE/DROP
#                         FUNCTION in a schema of its own, DROP FUNCTION;
#   churn_zed (a login    objects: CREATE TEMP TABLE, CREATE TEMP VIEW over
#    with no profile)     a temp function, a read of the masking view right
#                         after, DROP VIEW, DROP TABLE;
#   intern_gus (intern)   failures: a read that fails (division by zero)
#                         right after DDL in the same transaction; DDL and a
#                         read under a 1 ms statement_timeout inside a
#                         SAVEPOINT, rolled back to; a read whose own
#                         PL/pgSQL call replaces a temp function --
#
# each block ending with probes of the base table and the write view.  The
# churners' backends run at nice 19, so that on a small machine the
# comparison measures what their DDL does to other sessions through
# pii_guard, not the CPU it takes.  (Autovacuum is off: only the test
# changes anything.)
#
# The churners and support are given SELECT on public_pii.customers and
# on the write view's row key by mistake (with pii_guard's GRANT event
# trigger off, as a restore could), so that only pii_guard's fail-closed
# check stands between them and the base table or the write view.
#
# Proves:
#  (1) no reader or writer client fails in either run (pgbench's exit
#      status and report, and no ERROR of theirs in the server log), and
#      the churners' own statements fail only where they were meant to
#      (22012, 57014 -- and 25P02 after it, should the 1 ms timeout hit the
#      ROLLBACK TO -- and the probes' 42501);
#  (2) nothing becomes unprotected: every probe of the base table and of
#      the write view -- in the churning sessions after each failure, and
#      in fresh sessions afterwards -- is refused with 42501; intern_fay
#      still sees masked values; every read event of the churn window (of
#      a statement that did not fail) names the masking view,
#      public.customers, never a bare OID.  And deterministically, in a
#      single session: a read during which another governed role replaces
#      a function of its own, or an admin changes the policy, and that
#      takes a new lock afterwards (so the change arrives mid-statement)
#      completes, and the session's next statements are still refused the
#      base table and the write view and audited under public.customers;
#      a read cancelled (statement_timeout) while the protected-table list
#      is being reloaded -- the admin holds a lock on it -- leaves the
#      session refused all the same;
#  (3) each reader script's p99 latency under churn is within 2x of the
#      quiet run's (both printed; a quiet p99 under 5 ms counts as 5 ms: on
#      a shared 2-core machine a few scheduling delays make up the quiet
#      p99 of sub-millisecond statements), and it completes at least 80% as
#      many transactions (the rate is fixed: a slowed client falls behind).
#
# Before, any function change anywhere bumped the policy generation and
# flushed every cache of every backend -- and so did any DROP anywhere (the
# sql_drop event trigger's DELETE on protected_tables, and for functions
# its UPDATE of column_rules, fire the policy tables' statement trigger,
# which invalidates the sentinel even when they change no row).  Readers
# re-ran the SPI queries of every decision on every statement (p99 15 to
# 120 times the quiet run's, a quarter of the transactions done); the
# protected-table list was reloaded from ExecutorEnd, where there is no
# snapshot ("cannot execute SQL without an outer snapshot or portal"); and
# a reload that failed left the list empty but current, which switched the
# fail-closed check off for that backend (the write view and the base
# table became readable; reads were audited under the base table's OID).
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

name=churn
cc_secs=${CC_SECS:-10}
pgg_new_cluster $name "log_line_prefix = '%m [%p] %q%u@%d %a '" "autovacuum = off"
pgg_start $name
cc_dir=$PGG_WORK/cache_churn
mkdir -p "$cc_dir"
cc_sql() { pgg_psql $name -d postgres -tAc "$1"; }
cc_as() {	# cc_as ROLE psql-args...: a session as ROLE (application_name $CC_APP)
	local role=$1
	shift
	PGAPPNAME=${CC_APP:-cc_check} psql -X -q -h "$(pgg_sock $name)" -p 5432 -U "$role" -d postgres "$@"
}

pgg_psql $name -d postgres -c "CREATE EXTENSION pii_guard" >/dev/null
pgg_psql $name -d postgres -f "$PGG_REPO/test/fixtures/crm.sql" >/dev/null
pgg_psql $name -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
-- 4,000 more customers (ids 5..4004), every other one sales_bob's.
INSERT INTO public_pii.customers (name, phone, national_id, email, address, channel,
                                  campaign, service_tier, deal_amount, sales_owner)
SELECT 'Cust' || g, '186' || lpad(g::text, 8, '0'), '11010119900307' || lpad(g::text, 4, '0'),
       'c' || g || '@example.com', 'Street ' || g, (ARRAY['web', 'store', 'app'])[1 + g % 3],
       'c' || g % 5, 'standard', g, (ARRAY['sales_bob', 'sales_carl'])[1 + g % 2]
  FROM generate_series(1, 4000) g;
CREATE UNIQUE INDEX customers_phone_key ON public_pii.customers (phone);
ANALYZE public_pii.customers;
-- The churners: governed roles with a schema of their own.
CREATE ROLE intern_gus LOGIN IN ROLE intern;
CREATE ROLE churn_zed LOGIN;
GRANT SELECT ON customers TO churn_zed;
CREATE SCHEMA churn_gus AUTHORIZATION intern_gus;
CREATE SCHEMA churn_amy AUTHORIZATION mkt_amy;
CREATE SCHEMA churn_zed AUTHORIZATION churn_zed;
-- Tells the churners when the load is over.
CREATE TABLE churn_control (stop boolean NOT NULL);
INSERT INTO churn_control VALUES (false);
GRANT SELECT ON churn_control TO PUBLIC;
-- Privileges granted by mistake (last: any GRANT would have them revoked), behind pii_guard's GRANT event trigger
-- (which would revoke them): only the fail-closed check refuses these.
SET session_replication_role = replica;
GRANT SELECT ON public_pii.customers TO intern, marketing, support, churn_zed;
GRANT SELECT (id) ON public_pii.customers__pii_write TO intern, marketing, churn_zed;
RESET session_replication_role;
SQL

# Probes of the base table and the write view, for psql scripts: one line
# "probe base|write SQLSTATE" each (00000: it was read).
cc_probes='SELECT count(*) FROM public_pii.customers \g /dev/null
\echo probe base :SQLSTATE
SELECT count(*) FROM public_pii.customers__pii_write \g /dev/null
\echo probe write :SQLSTATE'
cc_probe() {	# cc_probe ROLE: the probes' SQLSTATEs in a fresh session, "base/write"
	cc_as "$1" -f - 2>/dev/null <<<"$cc_probes" |
		awk '/^probe / { s = s (s == "" ? "" : "/") $3 } END { print s }'
}
for r in intern_gus mkt_amy churn_zed support_dan; do
	pgg_is "$r holds SELECT on the base table (granted by mistake) and on the write view's row key" \
		"$(cc_sql "SELECT has_table_privilege('$r', 'public_pii.customers', 'SELECT')
		        AND has_column_privilege('$r', 'public_pii.customers__pii_write', 'id', 'SELECT')")" t
	pgg_is "before: $r is refused the base table and the write view" "$(cc_probe $r)" "42501/42501"
done

# --- the load ----------------------------------------------------------------
cat >"$cc_dir/dan_id.sql" <<'EOF'
\set id random(5, 4004)
SELECT id, name, phone, email, address, service_tier FROM customers WHERE id = :id;
EOF
cat >"$cc_dir/dan_phone.sql" <<'EOF'
\set p 18600000000 + random(1, 4000)
SELECT id, name, phone FROM customers WHERE phone = :p::text;
EOF
cat >"$cc_dir/fay_masked.sql" <<'EOF'
\set id random(5, 3995)
SELECT id, name, phone, national_id, email, address, channel FROM customers WHERE id BETWEEN :id AND :id + 9;
EOF
cat >"$cc_dir/bob_update.sql" <<'EOF'
\set n random(1, 2000)
UPDATE customers SET email = 'bob' || :n || '@example.com', deal_amount = :n WHERE id = 4 + 2 * :n;
EOF
cat >"$cc_dir/bob_insert.sql" <<'EOF'
INSERT INTO customers (name, phone, email, channel, campaign, sales_owner)
VALUES ('New customer', '15' || lpad(((extract(epoch FROM clock_timestamp()) * 1000000)::bigint % 1000000000)::text, 9, '0'),
        'new@example.com', 'web', 'churn', 'sales_bob');
EOF
cat >"$cc_dir/eve_update.sql" <<'EOF'
\set id random(5, 4004)
UPDATE customers SET address = 'Street ' || :id || ' (checked)', service_tier = 'silver' WHERE id = :id;
EOF
# name role protocol rate scripts
cc_clients="dan support_dan prepared 200 dan_id,dan_phone
fay intern_fay simple 100 fay_masked
bob sales_bob prepared 40 bob_update,bob_insert
eve mgr_eve simple 20 eve_update"
cc_readers="dan:0:dan_id dan:1:dan_phone fay:0:fay_masked"

cc_load() {	# cc_load RUN: every client for $cc_secs seconds, in the background (cc_load_pids)
	local run=$1 who role proto rate scripts f args
	cc_load_pids=()
	while read -r who role proto rate scripts; do
		args=()
		for f in ${scripts//,/ }; do args+=(-f "$cc_dir/$f.sql"); done
		(
			PGAPPNAME=pgbench pgbench -n -h "$(pgg_sock $name)" -p 5432 -U "$role" -c 1 -j 1 \
				-M "$proto" -R "$rate" -T "$cc_secs" -l --log-prefix="$cc_dir/$run.$who" \
				"${args[@]}" postgres >"$cc_dir/$run.$who.out" 2>&1
			echo $? >"$cc_dir/$run.$who.rc"
		) &
		cc_load_pids+=($!)
	done <<<"$cc_clients"
}
# cc_p99 RUN WHO SCRIPT_NO: "p99_ms transactions" of a script's service times
# (pgbench's latency less its schedule lag).
cc_p99() {
	cat "$cc_dir/$1.$2".[0-9]* 2>/dev/null |
		awk -v s="$3" '$4 == s && $3 != "skipped" { print ($3 - ($7 == "" ? 0 : $7)) / 1000 }' |
		sort -n |
		awk '{ v[NR] = $1 } END { if (NR == 0) { print "0 0"; exit }
		      i = int(NR * 0.99); if (i < NR * 0.99) i++; if (i < 1) i = 1
		      printf "%.3f %d\n", v[i], NR }'
}
# cc_clients_ok RUN: every client exited 0 with no aborted client or error.
cc_clients_ok() {
	local run=$1 ok=0 who rest rc
	while read -r who rest; do
		rc=$(cat "$cc_dir/$run.$who.rc" 2>/dev/null || echo none)
		if [ "$rc" != 0 ] || grep -qiE 'aborted|error|failed transactions: [1-9]' "$cc_dir/$run.$who.out"; then
			echo "    # $run $who (exit status $rc):"
			grep -iE 'aborted|error|failed transactions' "$cc_dir/$run.$who.out" | sort | uniq -c | head -5 | sed 's/^/    #   /'
			ok=1
		fi
	done <<<"$cc_clients"
	return $ok
}
# ERRORs of the load's roles logged since line $1 of the server log.
cc_load_errors() {
	tail -n +"$(($1 + 1))" "$(pgg_log $name)" |
		grep -E '\] (support_dan|intern_fay|sales_bob|mgr_eve)@postgres pgbench (ERROR|FATAL):'
}

# --- quiet run ---------------------------------------------------------------
echo "  # quiet run: ${cc_secs}s"
cc_log0=$(wc -l <"$(pgg_log $name)")
cc_load quiet
wait "${cc_load_pids[@]}"
pgg_ok "quiet run: every reader and writer client ran without error" cc_clients_ok quiet
pgg_is "quiet run: no ERROR of theirs in the server log" "$(cc_load_errors "$cc_log0" | wc -l)" 0

# --- churn run ---------------------------------------------------------------
# Three churning sessions, each repeating one of these blocks until the load
# is over (churn_control.stop) or a deadline.  Statements that fail do so
# where the comments say; every block ends with the probes.
cc_head='SELECT :i + 1 AS i, 5 + (:i * 37) % 3990 AS id, 1 + :i % 97 AS cost,
       NOT (SELECT stop FROM public.churn_control)
       AND extract(epoch FROM clock_timestamp()) < :deadline AS go \gset
\if :go'
cc_tail="$cc_probes
\\endif"
cat >"$cc_dir/churn_functions.sql" <<EOF
$cc_head
CREATE OR REPLACE FUNCTION pg_temp.f(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT \$1 + 1';
CREATE OR REPLACE FUNCTION pg_temp.f(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT \$1 - 1';
ALTER FUNCTION pg_temp.f(int) COST :cost;
CREATE OR REPLACE FUNCTION pg_temp.f(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT \$1 * 2';
CREATE FUNCTION :"schema".g(int) RETURNS int LANGUAGE sql AS 'SELECT \$1 * 2';
ALTER FUNCTION :"schema".g(int) COST :cost;
CREATE OR REPLACE FUNCTION :"schema".g(int) RETURNS int LANGUAGE sql AS 'SELECT \$1 * 3';
DROP FUNCTION :"schema".g(int);
CREATE OR REPLACE FUNCTION pg_temp.h() RETURNS int LANGUAGE sql AS 'SELECT 1';
ALTER FUNCTION pg_temp.h() COST :cost;
DROP FUNCTION pg_temp.h();
$cc_tail
EOF
cat >"$cc_dir/churn_objects.sql" <<EOF
$cc_head
CREATE OR REPLACE FUNCTION pg_temp.f(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT \$1 + 1';
CREATE TEMP TABLE t (a int PRIMARY KEY, b text);
CREATE TEMP VIEW v AS SELECT a, pg_temp.f(a) AS fa FROM t;
CREATE FUNCTION :"schema".g(int) RETURNS int LANGUAGE sql AS 'SELECT \$1 * 2';
SELECT id, name, phone FROM customers WHERE id = :id \\g /dev/null
ALTER FUNCTION pg_temp.f(int) COST :cost;
DROP VIEW v;
DROP TABLE t;
DROP FUNCTION :"schema".g(int);
$cc_tail
EOF
cat >"$cc_dir/churn_failures.sql" <<EOF
$cc_head
-- fails (22012) right after DDL in the same transaction
BEGIN;
CREATE OR REPLACE FUNCTION pg_temp.f(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT \$1 - 1';
SELECT id, phone, 1 / (id - id) FROM customers WHERE id = :id \\g /dev/null
ROLLBACK;
$cc_probes
BEGIN;
SAVEPOINT s;
CREATE OR REPLACE FUNCTION pg_temp.h() RETURNS int LANGUAGE sql AS 'SELECT 1';
SET LOCAL statement_timeout = '1ms';
-- may be cancelled (57014), wherever it is
SELECT count(phone) FROM customers WHERE id BETWEEN :id AND :id + 9 \\g /dev/null
ROLLBACK TO s;
-- a read whose own call replaces a temp function
SELECT id, phone, pg_temp.ddl(:i) FROM customers WHERE id = :id \\g /dev/null
COMMIT;
$cc_tail
EOF
cc_churn_script() {	# cc_churn_script KIND > FILE
	cat <<'EOF'
\set VERBOSITY sqlstate
\set i 0
\set go true
CREATE FUNCTION pg_temp.ddl(n int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE OR REPLACE FUNCTION pg_temp.x() RETURNS int LANGUAGE sql AS %L', 'SELECT ' || n);
    RETURN n;
END
$$;
EOF
	# (past the end, a line costs psql nothing)
	for _ in $(seq 30000); do printf '\\if :go\n\\ir churn_%s.sql\n\\endif\n' "$1"; done
}
# role, its schema, what it churns
cc_churners="mkt_amy churn_amy functions
churn_zed churn_zed objects
intern_gus churn_gus failures"
for kind in functions objects failures; do
	cc_churn_script $kind >"$cc_dir/churn.$kind.sql"
done

echo "  # churn run: ${cc_secs}s"
cc_log1=$(wc -l <"$(pgg_log $name)")
cc_deadline=$(($(date +%s) + cc_secs + 30))
cc_churn_pids=()
while read -r role schema kind; do
	PGAPPNAME=churn_$role nice -n 19 psql -X -h "$(pgg_sock $name)" -p 5432 -U "$role" -d postgres \
		-v deadline="$cc_deadline" -v schema="$schema" \
		-f "$cc_dir/churn.$kind.sql" >"$cc_dir/churn.$role.out" 2>&1 &
	cc_churn_pids+=($!)
done <<<"$cc_churners"
cc_churn_backends() { cc_sql "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE application_name LIKE 'churn%'"; }
cc_churners_connected() { [ "$(cc_churn_backends | wc -w)" -ge 3 ]; }
pgg_wait 5 cc_churners_connected
cc_backends=$(cc_churn_backends)
# shellcheck disable=SC2086
[ -n "$cc_backends" ] && renice -n 19 -p $cc_backends >/dev/null 2>&1
cc_t0=$(cc_sql "SELECT now()")
sleep 0.5	# (the churn is under way)
cc_load churn
wait "${cc_load_pids[@]}"
cc_sql "UPDATE churn_control SET stop = true" >/dev/null
pgg_wait 30 pgg_not_running "${cc_churn_pids[@]}"	# (the churners stop at the end of their block)
for p in "${cc_churn_pids[@]}"; do kill "$p" 2>/dev/null && echo "    # churner $p did not stop; killed"; done
wait "${cc_churn_pids[@]}" 2>/dev/null
cc_t1=$(cc_sql "SELECT now()")

pgg_ok "churn run: every reader and writer client ran without error" cc_clients_ok churn
cc_errs=$(cc_load_errors "$cc_log1")
pgg_is "churn run: no ERROR of theirs in the server log" "$(grep -c . <<<"$cc_errs")" 0
[ -n "$cc_errs" ] && sed -E 's/^[^]]*\] //' <<<"$cc_errs" | cut -c1-150 | sort | uniq -c | sort -rn | head -5 | sed 's/^/    # /'
for role in intern_gus mkt_amy churn_zed; do
	out=$cc_dir/churn.$role.out
	blocks=$(grep -c '^probe base' "$out")
	echo "    # $role: $blocks probe rounds; SQLSTATEs: $(grep -oE '^(psql:[^ ]* )?(ERROR|FATAL): +[0-9A-Z]{5}' "$out" |
		awk '{ print $NF }' | sort | uniq -c | awk '{ printf "%s %s  ", $2, $1 }')"
	pgg_ok "churn run: $role churned (at least 20 rounds)" test "$blocks" -ge 20
	pgg_is "churn run: $role's statements failed only where meant to (22012, 57014, 25P02, 42501)" \
		"$(grep -oE '^(psql:[^ ]* )?(ERROR|FATAL): +[0-9A-Z]{5}' "$out" | awk '{ print $NF }' |
			grep -vcE '^(22012|57014|25P02|42501)$')" 0
	pgg_is "churn run: every probe in $role's session was refused with 42501" \
		"$(grep '^probe ' "$out" | grep -vc ' 42501$')" 0
done

# --- after the churn, in fresh sessions ---------------------------------------
for r in intern_gus mkt_amy churn_zed support_dan; do
	pgg_is "after: $r is refused the base table and the write view" "$(cc_probe $r)" "42501/42501"
done
pgg_is "after: intern_fay still sees masked values" \
	"$(cc_as intern_fay -tAc "SELECT name || ' ' || phone || ' ' || national_id FROM customers WHERE id = 5")" \
	"C**** 186****0001 110101********0001"

# A read during which a change arrives, and that takes a new lock after it
# (as PL/pgSQL code does), so that the change is taken in mid-statement,
# after the statement's last look at the protected-table list: a governed
# role's function change, a profile change, and a newly protected table
# (after which the list must be reloaded, whatever else is kept).
cc_admin="psql -X -q -h $(pgg_sock $name) -p 5432 -U postgres -d postgres"
cc_nap() {	# cc_nap TAG CHANGE_COMMAND: support_dan's session; prints its lines
	local tag=$1 change=$2
	rm -f "$cc_dir/nap.$tag.done"
	CC_APP=nap cc_as support_dan -tA -f - 2>&1 <<EOF
\\set VERBOSITY sqlstate
CREATE TEMP TABLE nap_t (a int);
CREATE FUNCTION pg_temp.nap() RETURNS int LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM pg_sleep(3);
    LOCK TABLE pg_temp.nap_t IN ACCESS SHARE MODE;
    RETURN 1;
END
\$\$;
SELECT 'warm', id, phone FROM customers WHERE id = 5;
\\! (sleep 0.5; $change >/dev/null 2>&1; touch $cc_dir/nap.$tag.done) &
SELECT 'nap', id, phone, pg_temp.nap() FROM customers WHERE id = 6;
\\echo nap read :SQLSTATE
\\! test -f $cc_dir/nap.$tag.done && echo change made during the read
$cc_probes
SELECT 'after', id, phone FROM customers WHERE id = 7;
EOF
}
cc_mark=$(cc_sql "SELECT coalesce(max(event_id), 0) FROM pii_guard.audit_log")
for tag in function profile table; do
	case $tag in
	function)
		change="psql -X -q -h $(pgg_sock $name) -p 5432 -U mkt_amy -d postgres -c \"CREATE OR REPLACE FUNCTION churn_amy.f() RETURNS int LANGUAGE sql AS 'SELECT 1'\""
		what="another governed role replaces a function of its own" ;;
	profile)
		change="$cc_admin -c \"SELECT pii_guard.set_clearance('support', 'sensitive', 'all customers, contacts in clear, no deal amounts')\""
		what="an admin changes a profile" ;;
	table)
		change="$cc_admin -c \"CREATE TABLE notes_nap (id int PRIMARY KEY, phone pii_guard.encrypted_text)\" -c \"SELECT pii_guard.protect_column('notes_nap', 'phone', 'sensitive', 'pii_guard.mask_phone(text)')\""
		what="an admin protects another table" ;;
	esac
	out=$(cc_nap $tag "$change")
	pgg_ok "a read during which $what: the change arrived during it" grep -q "^change made during the read" <<<"$out"
	pgg_is "... the read completes" "$(grep -E '^nap( read|\|)' <<<"$out" | tr '\n' ' ')" "nap|6|18600000002|1 nap read 00000 "
	pgg_is "... the session is still refused the base table and the write view" \
		"$(awk '/^probe / { s = s (s == "" ? "" : "/") $3 } END { print s }' <<<"$out")" "42501/42501"
	pgg_is "... and reads on" "$(grep '^after' <<<"$out")" "after|7|18600000003"
done
pgg_ok "(the table was protected)" test "$(cc_sql "SELECT count(*) FROM pii_guard.protected_tables WHERE base = 'public_pii.notes_nap'::regclass")" = 1

# A read cancelled (statement_timeout) while it reloads the protected-table
# list after a table was protected -- the admin holds a lock on the list
# meanwhile -- and then the same session.  The lock holder tells when it
# holds the lock and when it is gone through files: a new session's first
# statement would itself wait for the lock.
cat >"$cc_dir/lock.sh" <<EOF
$cc_admin -c "CREATE TABLE notes_lock (id int PRIMARY KEY, phone pii_guard.encrypted_text)" \\
	-c "SELECT pii_guard.protect_column('notes_lock', 'phone', 'sensitive', 'pii_guard.mask_phone(text)')" >/dev/null
rm -f $cc_dir/locked $cc_dir/unlocked
$cc_admin -c "BEGIN" -c "LOCK pii_guard.protected_tables IN ACCESS EXCLUSIVE MODE" \\
	-c "\\! touch $cc_dir/locked" -c "SELECT pg_sleep(1.5)" -c "COMMIT" \\
	-c "\\! touch $cc_dir/unlocked" >/dev/null 2>&1 &
for i in \$(seq 200); do [ -f $cc_dir/locked ] && break; sleep 0.05; done
EOF
cat >"$cc_dir/unlock.sh" <<EOF
for i in \$(seq 200); do [ -f $cc_dir/unlocked ] && break; sleep 0.05; done
EOF
out=$(CC_APP=cancel cc_as intern_gus -tA -f - 2>&1 <<EOF
\\set VERBOSITY sqlstate
SELECT 'warm', id, phone FROM customers WHERE id = 5;
SET statement_timeout = '500ms';
\\! sh $cc_dir/lock.sh
SELECT 'cancelled', id, phone FROM customers WHERE id = 6;
\\echo cancelled read :SQLSTATE
\\! sh $cc_dir/unlock.sh
RESET statement_timeout;
$cc_probes
SELECT 'after', id, phone FROM customers WHERE id = 8;
EOF
)
pgg_is "a read that reloads the protected-table list while the admin holds it locked is cancelled" \
	"$(grep '^cancelled' <<<"$out")" "cancelled read 57014"
pgg_is "... the session is still refused the base table and the write view" \
	"$(awk '/^probe / { s = s (s == "" ? "" : "/") $3 } END { print s }' <<<"$out")" "42501/42501"
pgg_is "... and reads on, masked" "$(grep '^after' <<<"$out")" "after|8|186****0004"

# --- the audit trail -----------------------------------------------------------
# Reads are handed to the audit worker: wait until what reached audit_log
# stops growing (and the last read above is there).
cc_events() { cc_sql "SELECT count(*) FROM pii_guard.audit_log WHERE kind IN ('read', 'export')"; }
prev=-1
for _ in $(seq 60); do
	now=$(cc_events)
	last=$(cc_sql "SELECT count(*) FROM pii_guard.audit_log WHERE event_id > $cc_mark
	                 AND session_role = 'intern_gus' AND '8' = ANY (row_keys_masked)")
	[ "$now" = "$prev" ] && [ "$last" -ge 1 ] && break
	prev=$now
	sleep 0.5
done
echo "    # read events of the churn window, by relation: $(cc_sql "
	SELECT string_agg(relation || ' ' || operation || ': ' || n, ', ' ORDER BY n DESC)
	  FROM (SELECT relation, operation, count(*) n FROM pii_guard.audit_log
	         WHERE kind IN ('read', 'export') AND event_time BETWEEN '$cc_t0' AND '$cc_t1'
	         GROUP BY 1, 2) s")"
pgg_ok "the readers' reads during the churn are in the audit log" test "$(cc_sql "
	SELECT count(*) FROM pii_guard.audit_log WHERE kind = 'read' AND event_time BETWEEN '$cc_t0' AND '$cc_t1'
	   AND session_role IN ('support_dan', 'intern_fay')")" -ge 10
pgg_is "every read event of the churn window names public.customers (none a bare OID)" "$(cc_sql "
	SELECT count(*) FROM pii_guard.audit_log
	 WHERE kind IN ('read', 'export') AND event_time BETWEEN '$cc_t0' AND '$cc_t1'
	   AND operation NOT LIKE '%(failed)' AND relation IS DISTINCT FROM 'public.customers'")" 0
pgg_is "the fresh sessions' reads name public.customers too" "$(cc_sql "
	SELECT count(*) FROM pii_guard.audit_log
	 WHERE kind IN ('read', 'export') AND event_id > $cc_mark
	   AND operation NOT LIKE '%(failed)' AND relation IS DISTINCT FROM 'public.customers'")" 0

# --- latency -------------------------------------------------------------------
for r in $cc_readers; do
	IFS=: read -r who no script <<<"$r"
	read -r q qn <<<"$(cc_p99 quiet "$who" "$no")"
	read -r c cn <<<"$(cc_p99 churn "$who" "$no")"
	echo "    # $script: p99 quiet ${q} ms ($qn transactions), churn ${c} ms ($cn transactions)"
	pgg_ok "$script: p99 under churn (${c} ms) within 2x of quiet (${q} ms; at least 5 ms)" \
		awk -v q="$q" -v c="$c" 'BEGIN { exit !(q > 0 && c <= 2 * (q > 5 ? q : 5)) }'
	pgg_ok "$script: nearly as many transactions under churn ($cn) as quiet ($qn, at least 80%)" \
		test "$((cn * 10))" -ge "$((qn * 8))"
done
for r in intern_gus mkt_amy churn_zed support_dan; do
	pgg_is "$r still holds the mistaken privileges (the probes tested pii_guard's check)" \
		"$(cc_sql "SELECT has_table_privilege('$r', 'public_pii.customers', 'SELECT')
		        AND has_column_privilege('$r', 'public_pii.customers__pii_write', 'id', 'SELECT')")" t
done
pgg_is "no backend crashed" "$(grep -c 'terminated by signal' "$(pgg_log $name)")" 0
pgg_stop $name
