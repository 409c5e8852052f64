#!/usr/bin/env bash
# bench/run.sh -- what `make bench` runs: pii_guard against its peers,
# measured in one run on one throwaway cluster of this machine, printed as
# microseconds per value and ratios, and checked against the targets (README, Performance).
#
#   bench/run.sh [crypto] [views] [audit] [limits] [writes] [discovery] [copy]
#                [privacy] [masking]                         (default: all)
#
# Sections are shell functions of the same name; a long one lives in its own
# file, bench/<section>.sh, sourced below.  To add a section: write the
# function (use sql, bench_times/record, say and check), source its file if
# it has one, and add its name to ALL_SECTIONS.
#
# Environment: BENCH_ROWS (default 1000000), BENCH_RUNS (timed runs per
# measurement, best kept; default 3), BENCH_SECONDS (pgbench run length,
# default 10), CRYPTO_SAMPLE (pgp_sym_* sample, default 20000), WRITES_ROWS
# (the writes section's customers, default 100000), DISCOVER_ROWS (the
# table discover() is timed on, default 10000000), DISCOVERY_LABELLED
# (labelled values per kind and decoy group, default 2000),
# DISCOVERY_DEMO_CUSTOMERS (default 100000), COPY_ROWS (the copy section's
# customers, default 200000), PRIVACY_ROWS (the privacy section's people,
# default 200000), MASKING_ROWS (the masking section's, default 200000),
# ANON_TARBALL (PostgreSQL Anonymizer's source,
# default ../shared/peers/postgresql_anonymizer-1.1.0.tgz), KEEP=1 (keep the
# cluster's directory).
# Results are also written to bench/results/latest.txt.  A missed target is
# reported, not fatal: this is a measurement, not a test.  The exit status is
# non-zero only when something failed.
set -euo pipefail
shopt -s inherit_errexit		# a failing $(sql ...) stops the run too
cd "$(dirname "$0")/.."
. test/lib.sh
. bench/crypto.sh
. bench/writes.sh
. bench/discovery.sh
. bench/privacy.sh
. bench/masking.sh

ALL_SECTIONS="crypto views audit limits writes discovery copy privacy masking"
sections=${*:-$ALL_SECTIONS}
for s in $sections; do
	case " $ALL_SECTIONS " in
		*" $s "*) ;;
		*) echo "bench/run.sh: unknown section $s (sections: $ALL_SECTIONS)" >&2; exit 2 ;;
	esac
done

./test/deps.sh "postgresql-$PG_MAJOR-pgaudit"

N=${BENCH_ROWS:-1000000}
RUNS=${BENCH_RUNS:-3}
SECS=${BENCH_SECONDS:-10}
mkdir -p bench/results
OUT=bench/results/latest.txt
: >"$OUT"

pgg_init
pgg_install

say() { echo "$*" | tee -a "$OUT"; }
bench_die() { echo "bench/run.sh: $*" >&2; exit 1; }

# One cluster for everything, tuned so that timings are single-core and
# comparable: big shared_buffers (every table stays cached), checkpoints only
# when we ask, no synchronous commit waits, no parallel query, no JIT.
# pgaudit is loaded for the audit section's comparison (with no pgaudit.log
# and no pgaudit.role it logs nothing).
pgg_new_cluster bench \
	"shared_preload_libraries = 'pii_guard, pgaudit'" \
	"shared_buffers = '1GB'" "work_mem = '256MB'" "max_wal_size = '8GB'" \
	"checkpoint_timeout = '30min'" "synchronous_commit = off" \
	"max_parallel_workers_per_gather = 0" "jit = off" \
	"max_connections = 40"
pgg_start bench
pgg_env bench
export PGDATABASE=postgres

# sql [psql args]: unaligned, tuples only, stops (and fails) on any error.
sql() { psql -X -q -v ON_ERROR_STOP=1 -tA "$@"; }

sql <<'SQL' >/dev/null
CREATE EXTENSION pii_guard;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION pgaudit;
-- Milliseconds each of `runs` executions of a statement takes, measured in
-- the server (no client round trip), after `warmup` untimed executions.
CREATE FUNCTION bench_times(q text, runs int DEFAULT 1, warmup int DEFAULT 0)
RETURNS float8[] LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    times float8[] := '{}';
BEGIN
    FOR i IN 1..warmup LOOP
        EXECUTE q;
    END LOOP;
    FOR i IN 1..runs LOOP
        t0 := clock_timestamp();
        EXECUTE q;
        times := times || extract(epoch FROM clock_timestamp() - t0)::float8 * 1000;
    END LOOP;
    RETURN times;
END
$$;
-- Milliseconds one statement takes, best of `runs` (after one warm-up run
-- when runs > 1).
CREATE FUNCTION bench_ms(q text, runs int DEFAULT 1) RETURNS float8
LANGUAGE sql AS $$
    SELECT min(t) FROM unnest(bench_times(q, runs, CASE WHEN runs > 1 THEN 1 ELSE 0 END)) t
$$;
GRANT EXECUTE ON FUNCTION bench_times(text, int, int), bench_ms(text, int) TO PUBLIC;
SQL

# record NAME ROWS MS...: keep the best of the runs' milliseconds as µs per
# row in US[NAME], and the spread (worst / best - 1) in SPREAD[NAME].
declare -A US=() SPREAD=()
record() {
	local name=$1 rows=$2
	shift 2
	[ $# -gt 0 ] || bench_die "no timings for $name"
	[ "$rows" -gt 0 ] || bench_die "$name: no rows to divide by (BENCH_ROWS, CRYPTO_SAMPLE?)"
	US[$name]=$(printf '%s\n' "$@" | awk -v n="$rows" '
		NR == 1 || $1 < best { best = $1 } END { printf "%.3f", best * 1000 / n }')
	SPREAD[$name]=$(printf '%s\n' "$@" | awk '
		NR == 1 || $1 < best { best = $1 } NR == 1 || $1 > worst { worst = $1 }
		END { if (NR > 1) printf "%.0f%%", (worst / best - 1) * 100; else print "(1 run)" }')
}

us() {	# us MS ROWS -> microseconds per row, 3 decimals
	awk -v ms="$1" -v n="$2" 'BEGIN { printf "%.3f", ms * 1000 / n }'
}
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
# ratio A B -> A / B, or n/a when B is not positive (nothing to compare with)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
check() {	# check DESCRIPTION ACTUAL OP LIMIT
	if [ "$2" = n/a ]; then
		say "  N/A   $1: not measurable in this run"
	elif awk -v a="$2" -v b="$4" -v op="$3" 'BEGIN { exit !(op == "<=" ? a <= b : a >= b) }'; then
		say "  PASS  $1: $2 (target $3 $4)"
	else
		say "  MISS  $1: $2 (target $3 $4)"
	fi
}

# client_ms ROLE SQL: milliseconds psql takes to run SQL as ROLE and write
# its output to /dev/null, best of RUNS after one warm-up run.
client_ms() {
	local role=$1 stmt=$2 i t0 t1 best=
	for ((i = 0; i <= RUNS; i++)); do
		t0=$(date +%s%N)
		psql -X -q -v ON_ERROR_STOP=1 -U "$role" -c "$stmt" >/dev/null ||
			bench_die "client_ms: $stmt failed as $role"
		t1=$(date +%s%N)
		[ "$i" -eq 0 ] && continue
		t=$(( (t1 - t0) / 1000 ))
		if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
	done
	awk -v us="$best" 'BEGIN { printf "%.3f", us / 1000 }'
}

# ---------------------------------------------------------------------------
views() {
	say "== masking views: $N rows, base table as owner vs masking view as governed roles"
	sql <<SQL >/dev/null
CREATE ROLE bench_clear LOGIN;
CREATE ROLE bench_masked LOGIN;
CREATE TABLE people (id int PRIMARY KEY, name text, email text, city text,
                     phone pii_guard.encrypted_text);
INSERT INTO people
SELECT g, 'Name' || g, 'user' || g || '@example.com', 'city' || (g % 100),
       '138' || lpad(g::text, 8, '0')
  FROM generate_series(1, $N) g;
GRANT SELECT ON people TO bench_clear, bench_masked;
SELECT pii_guard.protect_column('people', 'name', 'sensitive', 'pii_guard.mask_name(text)');
SELECT pii_guard.protect_column('people', 'email', 'sensitive', 'pii_guard.mask_email(text)');
SELECT pii_guard.protect_column('people', 'city', 'internal', 'pii_guard.partial(text,integer,text,integer)', '{2,***,0}');
SELECT pii_guard.protect_column('people', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.set_clearance('bench_clear', 'sensitive');
SELECT pii_guard.set_clearance('bench_masked', 'public');
VACUUM ANALYZE public_pii.people;
SQL
	# (a) The scan as an application sees it: every row of three plaintext
	# columns sent to a client (COPY TO STDOUT into /dev/null), timed from
	# the client, best of RUNS after a warm-up.  This is what the target is
	# about.  (b) The same three columns folded in the server
	# (sum(length(...))): no output at all, so the ratio is the masking
	# machinery's per-value cost against the cheapest possible work per
	# value -- a diagnostic, reported but not held to the target.
	local cols="id, name, email, city" t_base t_clear t_masked
	t_base=$(client_ms postgres "COPY (SELECT $cols FROM public_pii.people) TO STDOUT")
	t_clear=$(client_ms bench_clear "COPY (SELECT $cols FROM public.people) TO STDOUT")
	t_masked=$(client_ms bench_masked "COPY (SELECT $cols FROM public.people) TO STDOUT")
	local q="SELECT sum(length(name) + length(email) + length(city)) FROM"
	local a_base a_clear a_masked t_enc_base t_enc_clear t_enc_masked
	a_base=$(sql -c "SELECT bench_ms('$q public_pii.people', 3)")
	a_clear=$(sql -c "SET ROLE bench_clear" -c "SELECT bench_ms('$q public.people', 3)")
	a_masked=$(sql -c "SET ROLE bench_masked" -c "SELECT bench_ms('$q public.people', 3)")
	t_enc_base=$(sql -c "SELECT bench_ms('SELECT sum(length(pii_guard.decrypt(phone))) FROM public_pii.people', 3)")
	t_enc_clear=$(sql -c "SET ROLE bench_clear" -c "SELECT bench_ms('SELECT sum(length(phone)) FROM public.people', 3)")
	t_enc_masked=$(sql -c "SET ROLE bench_masked" -c "SELECT bench_ms('SELECT sum(length(phone)) FROM public.people', 3)")
	say "  rows of three plaintext columns to a client, µs per row: base table $(us "$t_base" "$N"), view (clear) $(us "$t_clear" "$N"), view (masked) $(us "$t_masked" "$N")"
	say "    ratios to the base table: clear $(ratio "$t_clear" "$t_base")×, masked $(ratio "$t_masked" "$t_base")×"
	say "  the same folded in the server (diagnostic), µs per row: base $(us "$a_base" "$N"), clear $(us "$a_clear" "$N"), masked $(us "$a_masked" "$N")"
	say "    ratios: clear $(ratio "$a_clear" "$a_base")×, masked $(ratio "$a_masked" "$a_base")×;" \
		"per revealed value: clear +$(awk -v a="$a_clear" -v b="$a_base" -v n="$N" 'BEGIN { printf "%.3f", (a - b) * 1000 / n / 3 }') µs," \
		"masked +$(awk -v a="$a_masked" -v b="$a_base" -v n="$N" 'BEGIN { printf "%.3f", (a - b) * 1000 / n / 3 }') µs"
	say "  encrypted phone, µs per value: decrypt() on the base table $(us "$t_enc_base" "$N"), view (clear) $(us "$t_enc_clear" "$N"), view (masked) $(us "$t_enc_masked" "$N")"
	check "masking view scan to a client, clear role (ratio)" "$(ratio "$t_clear" "$t_base")" "<=" 1.3
	check "masking view scan to a client, masked role (ratio)" "$(ratio "$t_masked" "$t_base")" "<=" 1.3
	sql -c "SELECT pii_guard.unprotect_table('people')" -c "DROP TABLE people" \
		-c "DROP OWNED BY bench_clear, bench_masked" -c "DROP ROLE bench_clear, bench_masked" >/dev/null
}

# ---------------------------------------------------------------------------
# pgbench helpers: accounts tables like pgbench's (100,000 rows).
make_accounts() {	# make_accounts NAME
	sql <<SQL >/dev/null
CREATE TABLE $1 (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL,
                 phone pii_guard.encrypted_text, filler char(84));
INSERT INTO $1 SELECT g, 1, 0, '138' || lpad(g::text, 8, '0'), '' FROM generate_series(1, 100000) g;
GRANT SELECT, UPDATE ON $1 TO bench_app;
VACUUM ANALYZE $1;
SQL
}

# Wait until the audit worker has written and sealed everything, so that
# one measurement does not pay for the previous one's events.
drain() {
	local i
	for i in $(seq 300); do
		[ "$(sql -c "SELECT (SELECT queued FROM pii_guard.audit_queue_status()) = 0 AND NOT EXISTS (
			SELECT 1 FROM pii_guard.audit_log a WHERE NOT EXISTS (
				SELECT 1 FROM pii_guard.audit_seal s WHERE s.event_id = a.event_id))")" = t ] && return
		sleep 0.2
	done
}

# One measurement, from a quiet server: the audit worker drained, no
# autovacuum running (one started by the previous run's writes would be
# paid by this one), the tables vacuumed (what a run leaves to vacuum is
# its own), a checkpoint.
tps_once() {	# tps_once SCRIPTFILE [USER [DATABASE [MODE]]] -> transactions per second
	local i
	drain
	for i in $(seq 300); do
		[ "$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")" = 0 ] && break
		sleep 0.2
	done
	sql -d "${3:-postgres}" -c "VACUUM" >/dev/null
	sql -c "CHECKPOINT" >/dev/null
	pgbench -n -h "$PGHOST" -p "$PGPORT" -U "${2:-bench_app}" -M "${4:-simple}" -c 2 -j 2 -T "$SECS" \
		-f "$1" "${3:-postgres}" 2>/dev/null |
		awk '/^tps = / { printf "%.0f", $3 }'
}

tps() {	# tps SCRIPTFILE [USER [DATABASE]] -> transactions per second (best of two runs)
	local best=0 t i
	for i in 1 2; do
		t=$(tps_once "$@")
		[ "${t:-0}" -gt "$best" ] && best=$t
	done
	echo "$best"
}

# Side by side: the runs of several workloads interleaved, round after
# round, and the best of each kept -- so that a drift of the machine over
# the section (a table or the audit log growing, the page cache, other
# work) falls on all of them alike.
declare -A BEST
tps_rounds() {	# tps_rounds ROUNDS NAME:SCRIPTFILE:USER[:MODE] ... -> BEST[NAME]
	local r spec name file user mode t
	for spec in "${@:2}"; do BEST[${spec%%:*}]=0; done
	for r in $(seq "$1"); do
		for spec in "${@:2}"; do
			IFS=: read -r name file user mode <<<"$spec"
			t=$(tps_once "$file" "$user" postgres "${mode:-simple}")
			if [ "${t:-0}" -gt "${BEST[$name]}" ]; then BEST[$name]=$t; fi
		done
	done
}

setup_pgbench_roles() {
	sql -c "SELECT 1 FROM pg_roles WHERE rolname = 'bench_app'" | grep -q 1 && return
	sql <<'SQL' >/dev/null
CREATE ROLE bench_app LOGIN;
CREATE ROLE pgaudit_auditor NOLOGIN;
SELECT pii_guard.set_clearance('bench_app', 'sensitive');
SQL
}

audit() {
	say "== audit: pgbench, 2 clients, ${SECS}s each, 100,000 accounts"
	setup_pgbench_roles
	make_accounts acc_plain
	make_accounts acc_pii
	make_accounts acc_base
	make_accounts acc_pgaudit
	sql <<'SQL' >/dev/null
SELECT pii_guard.protect_column('acc_pii', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('acc_pii', 'abalance', 'internal');
SELECT pii_guard.protect_column('acc_base', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('acc_base', 'abalance', 'internal');
ALTER SYSTEM SET pgaudit.role = 'pgaudit_auditor';
SELECT pg_reload_conf();
GRANT SELECT, UPDATE ON acc_pgaudit TO pgaudit_auditor;
SQL
	local w r t
	for t in plain pii pgaudit; do
		cat >"$PGG_WORK/w_$t.sql" <<EOF
\\set aid random(1, 100000)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE acc_$t SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM acc_$t WHERE aid = :aid;
END;
EOF
		cat >"$PGG_WORK/r_$t.sql" <<EOF
\\set aid random(1, 100000)
SELECT aid, abalance, phone FROM acc_$t WHERE aid = :aid;
EOF
	done
	# The same write audit without the masking view: the table owner writing
	# to the base table, which only the audit triggers see.  (A protected
	# table of its own, updated only by these runs: on acc_pii, which the
	# runs through the view update too, it would pay for twice the history
	# that acc_plain has -- dead rows, split index pages.)
	sed 's/acc_pii/public_pii.acc_base/g' "$PGG_WORK/w_pii.sql" >"$PGG_WORK/w_base.sql"
	local w_plain w_pii w_base w_pgaudit r_on r_off
	tps_rounds 3 "plain:$PGG_WORK/w_plain.sql:bench_app" "base:$PGG_WORK/w_base.sql:postgres" \
		"pgaudit:$PGG_WORK/w_pgaudit.sql:bench_app" "pii:$PGG_WORK/w_pii.sql:bench_app"
	w_plain=${BEST[plain]} w_pii=${BEST[pii]} w_base=${BEST[base]} w_pgaudit=${BEST[pgaudit]}
	say "  TPC-B-like writes (UPDATE + SELECT per transaction), TPS:"
	say "    plain table, no audit                          $w_plain"
	say "    pii_guard, through the masking view            $w_pii  ($(ratio "$w_pii" "$w_plain")× of plain: the write rewritten onto the base table, write and read events)"
	say "    pii_guard write audit alone (base table)       $w_base  ($(ratio "$w_base" "$w_plain")× of plain)"
	say "    pgaudit object audit                           $w_pgaudit  ($(ratio "$w_pgaudit" "$w_plain")× of plain)"
	check "write audit TPS cost, audit alone (1 - ratio)" "$(awk -v a="$w_base" -v b="$w_plain" 'BEGIN { printf "%.2f", 1 - a / b }')" "<=" 0.10
	check "write audit alone ahead of pgaudit's object audit (TPS ratio)" "$(ratio "$w_base" "$w_pgaudit")" ">=" 1.00
	check "write audit TPS cost, through the masking view (1 - ratio)" "$(awk -v a="$w_pii" -v b="$w_plain" 'BEGIN { printf "%.2f", 1 - a / b }')" "<=" 0.20
	# (read audit off: a role like bench_app with pii_guard.audit_reads off)
	sql >/dev/null <<'SQL'
DO $$ BEGIN CREATE ROLE bench_app_quiet LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
ALTER ROLE bench_app_quiet SET pii_guard.audit_reads = off;
SELECT pii_guard.set_clearance('bench_app_quiet', 'sensitive');
GRANT SELECT, UPDATE ON acc_pii TO bench_app_quiet;
SQL
	local mode
	for mode in simple prepared; do
		tps_rounds 3 "off:$PGG_WORK/r_pii.sql:bench_app_quiet:$mode" "on:$PGG_WORK/r_pii.sql:bench_app:$mode"
		r_off=${BEST[off]} r_on=${BEST[on]}
		say "  select-only through the masking view (-M $mode), TPS: read audit off $r_off, on $r_on ($(ratio "$r_on" "$r_off")×)"
		check "read audit TPS cost, -M $mode (1 - ratio)" "$(awk -v a="$r_on" -v b="$r_off" 'BEGIN { printf "%.2f", 1 - a / b }')" "<=" 0.05
	done
	sql -c "ALTER SYSTEM RESET pgaudit.role" -c "SELECT pg_reload_conf()" >/dev/null
}

limits() {
	say "== export limits: pgbench select-only, 2 clients, ${SECS}s each"
	setup_pgbench_roles
	sql -c "SELECT 1 FROM pg_class WHERE relname = 'acc_plain'" | grep -q 1 || make_accounts acc_plain
	if ! sql -c "SELECT 1 FROM pg_class WHERE relname = 'acc_pii'" | grep -q 1; then
		make_accounts acc_pii
		sql -c "SELECT pii_guard.protect_column('acc_pii', 'phone', 'sensitive', 'pii_guard.mask_phone(text)')" >/dev/null
	fi
	cat >"$PGG_WORK/r_plain.sql" <<EOF
\\set aid random(1, 100000)
SELECT aid, abalance, phone FROM acc_plain WHERE aid = :aid;
EOF
	cat >"$PGG_WORK/r_pii.sql" <<EOF
\\set aid random(1, 100000)
SELECT aid, abalance, phone FROM acc_pii WHERE aid = :aid;
EOF
	# pii_guard absent: the same table, phone as plain text, in a database
	# without the extension (the library is still loaded: hooks that find no
	# extension do nothing).
	if ! sql -c "SELECT 1 FROM pg_database WHERE datname = 'nopii'" | grep -q 1; then
		sql -c "CREATE DATABASE nopii" >/dev/null
		sql -d nopii <<'SQL' >/dev/null
CREATE TABLE acc_plain (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL,
                        phone text, filler char(84));
INSERT INTO acc_plain SELECT g, 1, 0, '138' || lpad(g::text, 8, '0'), '' FROM generate_series(1, 100000) g;
GRANT SELECT ON acc_plain TO bench_app;
VACUUM ANALYZE acc_plain;
SQL
	fi
	local r_absent r_plain r_nolimit r_limit
	r_absent=$(tps "$PGG_WORK/r_plain.sql" bench_app nopii)
	r_plain=$(tps "$PGG_WORK/r_plain.sql")
	sql -c "SELECT pii_guard.set_export_limits('bench_app', NULL, NULL)" >/dev/null
	r_nolimit=$(tps "$PGG_WORK/r_pii.sql")
	sql -c "SELECT pii_guard.set_export_limits('bench_app', 1000, 1000000000)" >/dev/null
	r_limit=$(tps "$PGG_WORK/r_pii.sql")
	say "  TPS: pii_guard absent (no extension in the database) $r_absent; an unprotected table beside pii_guard $r_plain;"
	say "       masking view, no limits $r_nolimit; masking view with limits $r_limit"
	say "  ratios: limits on vs pii_guard absent $(ratio "$r_limit" "$r_absent")×; limits on vs off $(ratio "$r_limit" "$r_nolimit")×;" \
		"unprotected table beside pii_guard vs absent $(ratio "$r_plain" "$r_absent")×"
	check "export-limit machinery TPS cost vs the same view without limits (1 - ratio)" \
		"$(awk -v a="$r_limit" -v b="$r_nolimit" 'BEGIN { printf "%.2f", 1 - a / b }')" "<=" 0.05
	check "masking view with limits vs pii_guard absent, TPS cost (1 - ratio)" \
		"$(awk -v a="$r_limit" -v b="$r_absent" 'BEGIN { printf "%.2f", 1 - a / b }')" "<=" 0.05
}

start=$(date +%s)
say "pii_guard benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), PostgreSQL $("$PG_CONFIG" --version | awk '{print $2}'), $(openssl version 2>/dev/null | awk '{print $1, $2}')"
say "(load average at start: $(cut -d' ' -f1-3 /proc/loadavg); other work on this machine skews the figures)"
for s in $sections; do
	"$s"
done
say "(took $(( $(date +%s) - start ))s; results in $OUT)"
